"""A cell run again after the chapter has run to the end still works (tools/rerun_check.py).

Chapter 2's first cells averaged a toy `x` of length `T = 5`; a later cell rebound `x` and `T`
for the attention head (`T = 8`), so running the matrix-form cell again failed with a shape
error. The tool finds such cells; this file tests the tool, then runs it over the chapters that
take seconds (`make rerun-check` runs it over all of them: chapters 6, 8, 15 and 16 train models
and take minutes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import rerun_check  # noqa: E402

# the chapters that train (minutes under nbval: bench/results/cpu_2core_nbval_times.log)
TRAINING_CHAPTERS = ("06", "08", "15", "16")
QUICK_CHAPTERS = [p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
                  if p.name[:2] not in TRAINING_CHAPTERS]


@pytest.mark.parametrize("source,reads", [
    ("x = x + 1", {"x"}),
    ("x += 1", {"x"}),
    ("x = 0\nx += 1", set()),
    ("y = 2\nprint(y, z)", {"print", "z"}),
    ("def f(a):\n    return a + w\nw = 3\nf(1)", set()),        # w is the cell's own by the call
    ("def f(a):\n    return a + w\nf(1)", {"w"}),
    ("[i * k for i in range(3)]", {"k", "range"}),
    ("for t in range(T):\n    s = t\nprint(s)", {"print", "range", "T"}),
    ("import math\nmath.pi", set()),
    ("%matplotlib inline\nplt.plot(x)", {"plt", "x"}),
    ("class A:\n    def g(self):\n        return q\nA()", {"q"}),
])
def test_the_names_a_cell_reads_from_outside(source, reads):
    assert rerun_check.names_read_from_outside(source) == reads


def _notebook(tmp_path, *sources) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# a chapter")] + [nbformat.v4.new_code_cell(s) for s in sources]
    path = tmp_path / "chapter.ipynb"
    nbformat.write(nb, path)
    return path


def test_the_check_finds_a_name_a_later_cell_rebinds(tmp_path, capsys):
    path = _notebook(
        tmp_path,
        "import torch\nT = 5\nx = torch.ones(2, T)",
        "w = torch.tril(torch.ones(T, T))\nprint((x @ w).sum())",      # reads T and x ...
        "T = 8\nx = torch.ones(2, T)",                                 # ... which this cell rebinds
        "model = torch.nn.Linear(2, 2)",
        "model.weight.data.fill_(1.0)\nprint(model.weight.sum())",    # changes what it reads itself
        "same = 3",
        "print(same * 2)",
        "same = 3",                                                    # rebound to the same value
    )
    assert rerun_check.main([str(path), "--timeout", "60"]) == 1
    report = capsys.readouterr().out
    assert "8 code cells, 1 read a name a later cell changes" in report, report
    assert "  cell 2: T, x\n" in report, report         # the markdown cell is cell 0
    assert "cell 5" not in report and "cell 7" not in report


def test_a_cell_is_flagged_when_a_later_cell_changes_a_tensor_in_place(tmp_path, capsys):
    path = _notebook(tmp_path, "import torch\nlogits = torch.zeros(3)", "print(logits.softmax(-1))",
                     "logits[0] = 5.0")
    assert rerun_check.main([str(path)]) == 1
    assert "  cell 2: logits\n" in capsys.readouterr().out


@pytest.mark.parametrize("chapter", QUICK_CHAPTERS, ids=lambda p: p.stem)
def test_every_cell_of_a_chapter_can_run_again_after_the_chapter(chapter, capsys):
    code = rerun_check.main([str(chapter)])
    assert code == 0, capsys.readouterr().out
