"""Write the first code cell of every chapter from one template: `python tools/sync_first_cell.py [--check]`.

The cell installs minigpt where it is missing (Colab) from the one place that says where the
book's package comes from: pyproject.toml's `[project.urls] Repository` and `version`, as
"minigpt @ git+<Repository>@v<version>" (so every release needs the git tag v<version>).
The template is tools/first_cell.tmpl. `--check` changes nothing: it prints what would change
and exits 1 when a chapter's first cell differs from the template (tests/test_install.py fails
then too). The cell carries the tag `hide-input` (FIRST_CELL_TAGS): the book shows a reader the
chapter, not 20 lines of install plumbing, behind a "show code" toggle; the cell still runs and
defines `device`. Outputs and other metadata of the cell are kept: the cell prints nothing when
minigpt is already installed, so the stored (empty) output stays true.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from string import Template

try:
    import tomllib
except ModuleNotFoundError:          # Python < 3.11 (requirements.txt installs tomli there)
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "first_cell.tmpl"
NOTEBOOKS = REPO / "notebooks"
FIRST_CELL_TAGS = ("hide-input",)    # Jupyter Book collapses the install code; other tags are kept


def install_source(repo: Path = REPO) -> str:
    """The pip requirement the first cell installs: the tag of this version in the repository."""
    project = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return f"minigpt @ git+{project['urls']['Repository']}@v{project['version']}"


def first_cell_source(repo: Path = REPO) -> str:
    """The first code cell every chapter must have, rendered from the template."""
    text = TEMPLATE.read_text(encoding="utf-8")
    return Template(text).substitute(default_source=install_source(repo)).rstrip("\n")


def chapters(notebooks: Path = NOTEBOOKS) -> list[Path]:
    return sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))


def _first_code_cell(notebook: dict) -> dict:
    return next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")


def drift(path: Path, expected: str) -> str:
    """A unified diff from the chapter's first code cell to the template, and the tags it lacks
    ('' when they agree)."""
    cell = _first_code_cell(json.loads(path.read_text(encoding="utf-8")))
    actual = "".join(cell["source"])
    tags = cell.get("metadata", {}).get("tags", [])
    missing = [tag for tag in FIRST_CELL_TAGS if tag not in tags]
    report = f"{path.name}: the first cell lacks the tag(s) {missing}\n" if missing else ""
    if actual == expected:
        return report
    now, wanted = (actual + "\n").splitlines(keepends=True), (expected + "\n").splitlines(keepends=True)
    return report + "".join(difflib.unified_diff(now, wanted, f"{path.name} (now)", f"{path.name} (template)"))


def write(path: Path, expected: str) -> None:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    lines = expected.splitlines(keepends=True)
    cell = _first_code_cell(notebook)
    cell["source"] = lines
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    tags += [tag for tag in FIRST_CELL_TAGS if tag not in tags]
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="print what would change; exit 1 if anything would")
    args = parser.parse_args(argv)
    expected = first_cell_source()
    changed = []
    for path in chapters():
        diff = drift(path, expected)
        if not diff:
            continue
        changed.append(path.name)
        if args.check:
            sys.stdout.write(diff)
        else:
            write(path, expected)
    verb = "differ from" if args.check else "rewritten from"
    print(f"{len(changed)} of {len(chapters())} chapters {verb} tools/first_cell.tmpl"
          + (f": {', '.join(changed)}" if changed else ""))
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
