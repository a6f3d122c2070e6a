"""How long each chapter's code took in its stored run: `python tools/chapter_times.py [notebooks...]`.

nbconvert records when each cell started and finished (cell metadata `execution`); the sum over
a chapter's code cells is the time its code ran in that execution, kernel start-up excluded.
The stored runs were made at different times, some on a busy machine, so this is a quick look,
not the book's table: book/running.md and the instructor guide quote nbval's timings of one
whole-book run (`pytest --nbval --durations=0`, the cells' times added up per chapter).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _seconds(cell: dict) -> float:
    run = cell["metadata"]["execution"]
    start, end = (datetime.fromisoformat(run[k].replace("Z", "+00:00"))
                  for k in ("iopub.execute_input", "shell.execute_reply"))
    return (end - start).total_seconds()


def chapter_seconds(path: Path) -> float:
    """Seconds the chapter's code cells ran for, summed; raises if a cell has no recorded run."""
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    missing = [i for i, c in enumerate(cells) if "execution" not in c.get("metadata", {})]
    if missing:
        raise ValueError(f"{path.name}: code cells {missing} have no recorded run; execute the notebook first")
    return sum(_seconds(c) for c in cells)


def main(argv=None) -> int:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])] or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    status = 0
    for path in paths:
        try:
            print(f"{path.name:45s} {chapter_seconds(path):6.1f} s")
        except ValueError as err:          # a chapter saved without running: say so, go on
            print(err)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
