"""Every measured number the prose quotes is one something in the repository measured.

A number with four or more decimals in the English prose (the chapters' markdown cells, the
book's pages, README.md, CONTRIBUTING.md) is a measurement: a loss, a probability. It must
appear, digit for digit, in a stored output or a code cell of a chapter (`expect(...,
book=...)` prints the book's value next to the reader's), in a log under `bench/results/`,
or in a test that asserts it. A review found an answer in chapter 14 still quoting chapter
16's losses from before they were re-measured; this test fails on such a number. The zh
edition's numbers are compared with these by the translation checks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEASUREMENT = re.compile(r"(?<![\w.])\d+\.\d{4,}(?![\w.])")

# Numbers quoted from a run whose log is not in the repository, with the reason; each must
# still be quoted (an entry nobody quotes any more fails, so the list cannot go stale).
QUOTED_FROM_ELSEWHERE = {
    "1.4554": "README: best val of an earlier session's H200 run, recorded in issue 19's text",
    "1.4700": "README: nanoGPT's best val in that H200 run, recorded in issue 19's text",
}


def prose() -> list[tuple[str, str]]:
    """(where, text) of every piece of English prose."""
    pieces = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        pieces += [(f"{path.name}, cell {i}", "".join(cell["source"]))
                   for i, cell in enumerate(cells) if cell["cell_type"] == "markdown"]
    for path in [*sorted((ROOT / "book").glob("*.md")), ROOT / "README.md", ROOT / "CONTRIBUTING.md"]:
        pieces.append((str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")))
    return pieces


def evidence() -> str:
    """Everything that measures: chapter code and outputs, benchmark logs, tests."""
    texts = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "code":
                continue
            texts.append("".join(cell["source"]))
            for output in cell.get("outputs", []):
                texts.append("".join(output.get("text", "")))
                texts += ["".join(value) for kind, value in output.get("data", {}).items()
                          if kind.startswith("text/")]
    texts += [path.read_text(encoding="utf-8", errors="replace")
              for path in sorted((ROOT / "bench" / "results").iterdir()) if path.is_file()]
    texts += [path.read_text(encoding="utf-8") for path in sorted((ROOT / "tests").glob("test_*.py"))
              if path.name != Path(__file__).name]
    return "\n".join(texts)


def test_every_four_decimal_number_in_the_prose_is_measured_somewhere():
    measured = evidence()
    unmeasured, quoted = [], set()
    for where, text in prose():
        for match in MEASUREMENT.finditer(text):
            number = match.group()
            quoted.add(number)
            if number not in measured and number not in QUOTED_FROM_ELSEWHERE:
                context = text[max(0, match.start() - 60):match.end() + 20].replace("\n", " ")
                unmeasured.append(f"{where}: {number}  (...{context}...)")
    assert not unmeasured, ("numbers that no cell prints and no log or test holds; measure them (a cell, "
                            "or bench/answers.py and its log) or correct them:\n" + "\n".join(unmeasured))
    assert not set(QUOTED_FROM_ELSEWHERE) - quoted, "QUOTED_FROM_ELSEWHERE lists numbers nobody quotes"


def test_the_check_sees_a_number_that_nothing_measured():
    """The pattern finds four-decimal numbers in prose, not version numbers or three-decimal ones."""
    found = [m.group() for m in MEASUREMENT.finditer("val 7.3141 (LoRA), torch 2.13.0, lr 0.004, v1.2345.6")]
    assert found == ["7.3141"]
    assert "7.3141" not in evidence()
