"""The classroom edition, made by nbgrader itself.

    python tools/classroom.py tag [--check]   # nbgrader cell metadata in notebooks/*.ipynb
    python tools/classroom.py student [--run] # _classroom/release/<chapter>/: the student edition
    python tools/classroom.py autograde       # grade the full edition as a student; exit 1 unless full marks
    python tools/classroom.py catalogue       # the mistakes each check names, into book/instructor_guide.md

The chapters are written the way nbgrader courses are: each exercise's solution sits between
`### BEGIN SOLUTION` and `### END SOLUTION` inside a function body, and the cell after it
calls a `minigpt.exercises.check_*` function. `tag` gives those cells the metadata nbgrader
needs (solution cells, and autograded cells worth 1 point each), so an instructor's own
nbgrader course can take the notebooks unchanged. `student` lays out an nbgrader course in
`_classroom/` (one assignment per chapter) and runs `nbgrader generate_assignment`, which
replaces each solution by `raise NotImplementedError()` and clears the outputs. `autograde`
submits the full edition as the student "answer-key" and runs `nbgrader autograde` with
MINIGPT_GRADING=1, so a check that does not pass raises and costs its point.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
COURSE = ROOT / "_classroom"
ANSWER_KEY = "answer-key"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CHECK_CALL = re.compile(r"minigpt\.exercises\.(check_\w+)\(")
DEFINED = re.compile(r"^(?:def|class)\s+(\w+)", re.MULTILINE)

CONFIG = """\
# nbgrader configuration of the minigpt classroom course (written by tools/classroom.py).
c = get_config()
c.CourseDirectory.course_id = "minigpt"
c.CourseDirectory.root = {root!r}
# Chapter 8 trains a model: give every cell time on a slow or shared CPU.
c.Execute.timeout = 1800
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
"""


def set_folders(notebooks: Path, course: Path) -> None:
    """Work on other folders than the repository's (the tests use copies)."""
    global NOTEBOOKS, COURSE
    NOTEBOOKS, COURSE = notebooks.resolve(), course.resolve()


def source_text(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def chapters() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def nbgrader_metadata(notebook: dict, chapter: str) -> list[tuple[int, dict]]:
    """(cell index, nbgrader metadata) for every solution cell and every check cell."""
    found, used = [], set()

    def unique(name: str) -> str:
        grade_id, n = f"{chapter}-{name}", 2
        while grade_id in used:
            grade_id, n = f"{chapter}-{name}-{n}", n + 1
        used.add(grade_id)
        return grade_id

    solved = set()                  # names a solution cell defines: the student's answers
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        text = source_text(cell)
        if BEGIN in text:
            if END not in text:
                raise SystemExit(f"{chapter}, cell {index}: '{BEGIN}' without '{END}'.")
            names = DEFINED.findall(text)
            solved.update(names)
            meta = {"grade": False, "solution": True, "locked": False,
                    "grade_id": unique(names[0] if names else f"solution-{index}"), "schema_version": 3}
            found.append((index, meta))
        elif CHECK_CALL.search(text) and solved & set(re.findall(r"\w+", text)):
            # a check of the student's own answer (a check the chapter runs on its own
            # example, e.g. a deliberately wrong function, is text to read, not a grade)
            meta = {"grade": True, "solution": False, "locked": True, "points": 1,
                    "grade_id": unique(CHECK_CALL.search(text).group(1)), "schema_version": 3}
            found.append((index, meta))
    return found


def tag(check_only: bool) -> int:
    """Write nbgrader metadata into the chapters (or, with --check, report cells that lack it)."""
    stale = []
    for path in chapters():
        notebook = json.loads(path.read_text(encoding="utf-8"))
        wanted = dict(nbgrader_metadata(notebook, path.stem))
        changed = False
        for index, cell in enumerate(notebook["cells"]):
            want = wanted.get(index)
            if cell.get("metadata", {}).get("nbgrader") != want:
                changed = True
                if want is None:
                    cell["metadata"].pop("nbgrader", None)
                else:
                    cell.setdefault("metadata", {})["nbgrader"] = want
        if changed:
            stale.append(path.name)
            if not check_only:
                path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if check_only and stale:
        print("nbgrader metadata out of date in: " + ", ".join(stale)
              + "\nrun: python tools/classroom.py tag")
        return 1
    print(("up to date" if not stale else "tagged: " + ", ".join(stale)))
    return 0


def exercise_chapters() -> list[Path]:
    return [p for p in chapters()
            if nbgrader_metadata(json.loads(p.read_text(encoding="utf-8")), p.stem)]


def nbgrader(*args: str, grading: bool = False) -> None:
    # nbgrader runs `alembic` (database set-up) and kernels by name: both from this Python's folder
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, MINIGPT_GRADING="1" if grading else "0", PATH=path)
    command = [sys.executable, "-m", "nbgrader", *args, "--force"]
    subprocess.run(command, cwd=COURSE, env=env, check=True)


def make_course() -> list[str]:
    """Lay out _classroom/ with one nbgrader assignment per chapter that has exercises."""
    try:
        import nbgrader  # noqa: F401
    except ImportError:
        raise SystemExit("nbgrader is not installed: pip install -e '.[classroom]' (or `make student`).")
    COURSE.mkdir(exist_ok=True)
    (COURSE / "nbgrader_config.py").write_text(CONFIG.format(root=str(COURSE)))
    names = []
    for path in exercise_chapters():
        folder = COURSE / "source" / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, folder / path.name)
        names.append(path.stem)
    return names


def student(run: bool = False) -> int:
    """Generate the student edition; with `run`, execute it and check every exercise is open."""
    names = make_course()
    for name in names:
        nbgrader("generate_assignment", name)
    print(f"student edition: {COURSE / 'release'}")
    return run_student_edition(names) if run else 0


def run_student_edition(names: list[str]) -> int:
    """Execute each student notebook top to bottom in a fresh kernel (as a student's
    "Run all" would) and check that every exercise answers "not implemented yet"."""
    import nbformat
    from nbconvert.preprocessors import ExecutePreprocessor

    problems = []
    for name in names:
        path = COURSE / "release" / name / f"{name}.ipynb"
        notebook = nbformat.read(path, as_version=4)
        executor = ExecutePreprocessor(timeout=1800, kernel_name="python3")
        try:
            executor.preprocess(notebook, {"metadata": {"path": str(path.parent)}})
        except Exception as err:  # a cell raised: the student edition must run to the end
            problems.append(f"{name}: {type(err).__name__}: {str(err).strip().splitlines()[-1]}")
            continue
        checks = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade")]
        for cell in checks:
            shown = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                            for o in cell.get("outputs", []))
            if "Not implemented yet" not in shown:
                problems.append(f"{name}: check cell {cell.metadata.nbgrader.grade_id} showed {shown[:120]!r}")
        print(f"{name}: ran to the end, {len(checks)} exercises open")
    for problem in problems:
        print("PROBLEM", problem)
    return 1 if problems else 0


def autograde(student_id: str = ANSWER_KEY, submissions: Optional[Path] = None) -> int:
    """Autograde `submissions/<chapter>.ipynb` (default: the full edition) as `student_id`;
    exit status 1 unless every chapter gets full marks."""
    from nbgrader.api import Gradebook

    names = make_course()
    source = submissions or NOTEBOOKS
    for name in names:
        nbgrader("generate_assignment", name)        # records the assignment and its cells
        submitted = COURSE / "submitted" / student_id / name
        submitted.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / f"{name}.ipynb", submitted / f"{name}.ipynb")
    with Gradebook(f"sqlite:///{COURSE / 'gradebook.db'}") as gradebook:
        gradebook.update_or_create_student(student_id)
    for name in names:
        nbgrader("autograde", name, "--student", student_id, grading=True)
    short = []
    with Gradebook(f"sqlite:///{COURSE / 'gradebook.db'}") as gradebook:
        for name in names:
            submission = gradebook.find_submission(name, student_id)
            print(f"{name}: {submission.score:g} / {submission.max_score:g}")
            if submission.score < submission.max_score:
                short.append(name)
    if short:
        print("not full marks: " + ", ".join(short))
        return 1
    print(f"full marks in all {len(names)} chapters with exercises")
    return 0


CATALOGUE_START = "<!-- mistake catalogue: written by `python tools/classroom.py catalogue`; do not edit -->"
CATALOGUE_END = "<!-- end of mistake catalogue -->"
GUIDE = ROOT / "book" / "instructor_guide.md"


def catalogue_markdown() -> str:
    """Every exercise and the mistakes its check names, by chapter, as Markdown."""
    import inspect

    from minigpt.exercises import EXERCISES

    lines, chapter = [], None
    for exercise in EXERCISES:
        module = inspect.getmodule(exercise.cases).__name__.rsplit(".", 1)[-1]   # chNN_topic
        number = int(module[2:4])
        if number != chapter:
            chapter = number
            lines += ["", f"**Chapter {number}**", ""]
        lines.append(f"- *{exercise.name}* ({len(exercise.mistakes)} mistakes):")
        lines += [f"  - `{m.key}`: {m.hint}" for m in exercise.mistakes]
    total = sum(len(e.mistakes) for e in EXERCISES)
    head = f"{len(EXERCISES)} exercises, {total} catalogued mistakes."
    return "\n".join([CATALOGUE_START, "", head, *lines, "", CATALOGUE_END])


def catalogue(check_only: bool) -> int:
    """Write the catalogue into the instructor guide (or, with --check, report drift)."""
    text = GUIDE.read_text(encoding="utf-8")
    if CATALOGUE_START not in text or CATALOGUE_END not in text:
        raise SystemExit(f"{GUIDE} has no catalogue markers ({CATALOGUE_START!r} ... {CATALOGUE_END!r}).")
    before, rest = text.split(CATALOGUE_START, 1)
    after = rest.split(CATALOGUE_END, 1)[1]
    new = before + catalogue_markdown() + after
    if new == text:
        print("up to date")
        return 0
    if check_only:
        print(f"the mistake catalogue in {GUIDE.name} is out of date: run python tools/classroom.py catalogue")
        return 1
    GUIDE.write_text(new, encoding="utf-8")
    print(f"catalogue written into {GUIDE}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tag_parser = sub.add_parser("tag", help="write nbgrader cell metadata into notebooks/*.ipynb")
    tag_parser.add_argument("--check", action="store_true", help="only report notebooks that need it")
    student_parser = sub.add_parser("student", help="make the student edition in _classroom/release/")
    student_parser.add_argument("--run", action="store_true",
                                help="also execute it and check that every exercise is still open")
    grade_parser = sub.add_parser("autograde", help="autograde the full edition; exit 1 unless full marks")
    grade_parser.add_argument("--student", default=ANSWER_KEY, help="the student id to grade as")
    grade_parser.add_argument("--submissions", type=Path, help="folder of submitted chapters "
                              "(default: the full edition in notebooks/)")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="folder of the chapters")
    parser.add_argument("--course", type=Path, default=COURSE, help="the nbgrader course folder to write")
    catalogue_parser = sub.add_parser("catalogue", help="write the mistake catalogue into book/instructor_guide.md")
    catalogue_parser.add_argument("--check", action="store_true", help="only report whether it is out of date")
    args = parser.parse_args(argv)
    set_folders(args.notebooks, args.course)
    if args.command == "tag":
        return tag(args.check)
    if args.command == "catalogue":
        return catalogue(args.check)
    if args.command == "student":
        return student(args.run)
    return autograde(args.student, args.submissions)


if __name__ == "__main__":
    sys.exit(main())
