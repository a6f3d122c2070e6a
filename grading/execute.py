"""nbgrader's Execute preprocessor, made to lose only the cell in which a kernel dies.

nbgrader 0.9 gives up on the whole notebook when the kernel dies (out of memory, a crash in
native code): the student gets 0 and no feedback. `ResilientExecute` records the death as an
error in that cell (so nbgrader scores that cell 0), starts a new kernel, runs the cells before
it again without keeping their outputs (graded cells are skipped: they define nothing the
rest needs), and goes on. A cell that runs past the time limit is interrupted by nbgrader's
own `interrupt_on_timeout` and costs only that cell too. nbgrader loads this class through
the course's nbgrader_config.py (`c.Autograde.autograde_preprocessors`).

It also logs each notebook's grading time and its kernel's peak memory (VmHWM, Linux): the
numbers the instructor guide gives per chapter come from these lines.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from nbclient.exceptions import DeadKernelError
from nbclient.util import run_sync
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute

DIED = ("the kernel died while running this cell (most often it ran out of memory): this cell "
        "scores 0; a new kernel ran the cells before it again and graded the cells after it")


class ResilientExecute(Execute):
    """Execute, where a dead kernel costs the cell it died in and nothing else."""

    def preprocess(self, nb, resources=None, km=None):
        self._peak_kib, start = 0, time.perf_counter()
        result = super().preprocess(nb, resources, km)
        name = (resources or {}).get("unique_key", "notebook")
        self.log.info("graded %s in %.1f s; kernel peak memory %.0f MiB", name, time.perf_counter() - start,
                      self._peak_kib / 1024)
        return result

    def _kernel_peak_kib(self) -> int:
        """The kernel process's peak resident memory so far (0 where /proc cannot tell)."""
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        status = Path(f"/proc/{getattr(process, 'pid', -1)}/status")
        if not status.is_file():
            return 0
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def preprocess_cell(self, cell, resources, index):
        try:
            result = super().preprocess_cell(cell, resources, index)
            self._peak_kib = max(getattr(self, "_peak_kib", 0), self._kernel_peak_kib())
            return result
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
            finally:
                # nbclient's execute_cell stores the cell it ran in nb.cells[index]: the graded
                # notebook (and the student's feedback) keeps the first run's outputs
                self.nb.cells[index] = cell
