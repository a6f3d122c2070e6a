"""nbgrader's Execute preprocessor, made to lose only the cell in which a kernel dies.

nbgrader 0.9 gives up on the whole notebook when the kernel dies (out of memory, a crash in
native code): the student gets 0 and no feedback. `ResilientExecute` records the death as an
error in that cell (so nbgrader scores that cell 0), starts a new kernel, runs the cells before
it again without keeping their outputs (graded cells are skipped: they define nothing the
rest needs), and goes on. A cell that runs past the time limit is interrupted by nbgrader's
own `interrupt_on_timeout` and costs only that cell too. nbgrader loads this class through
the course's nbgrader_config.py (`c.Autograde.autograde_preprocessors`).
"""

from __future__ import annotations

import copy

from nbclient.exceptions import DeadKernelError
from nbclient.util import run_sync
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute

DIED = ("the kernel died while running this cell (most often it ran out of memory): this cell "
        "scores 0; a new kernel ran the cells before it again and graded the cells after it")


class ResilientExecute(Execute):
    """Execute, where a dead kernel costs the cell it died in and nothing else."""

    def preprocess_cell(self, cell, resources, index):
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self.log.warning("kernel died in cell %d: restarting and replaying the cells before it", index)
            cell.outputs = [NotebookNode(output_type="error", ename="DeadKernelError", evalue=DIED,
                                         traceback=[f"DeadKernelError: {DIED}"])]
            self._restart()
            self._replay(index)
            return cell, self.resources

    async def _async_restart(self) -> None:
        await self.km.restart_kernel(now=True)
        if self.kc is not None:
            self.kc.stop_channels()
        await self.async_start_new_kernel_client()

    _restart = run_sync(_async_restart)

    def _replay(self, upto: int) -> None:
        for index, cell in enumerate(self.nb.cells[:upto]):
            grade = cell.get("metadata", {}).get("nbgrader", {})
            if cell.cell_type != "code" or (grade.get("grade") and not grade.get("solution")):
                continue
            try:
                self.execute_cell(copy.deepcopy(cell), index, store_history=False)
            except DeadKernelError:   # it died again before the cell that killed it: start clean
                self._restart()
                return
