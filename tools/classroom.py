"""The classroom edition, made by nbgrader itself, graded by hidden tests.

    python tools/classroom.py tag [--check]        # nbgrader cell metadata in notebooks/*.ipynb
    python tools/classroom.py student [--run] [--only NAMES] [--weights NAME=POINTS,...]
                                                   # _classroom/release/<chapter>/: the student edition
    python tools/classroom.py grade SUBMITTED [--only NAMES] [--weights ...] [--timeout SECONDS] [--roster FILE]
                                    [--jobs N]     # autograde SUBMITTED/<student>/<chapter>/<chapter>.ipynb,
                                                   # write SUBMITTED/grades.csv (earlier sessions' rows kept)
    python tools/classroom.py play [--students A,B] [--chapters 03,04] [--jobs N]
                                                   # grade grading/students.py's players on every chapter
    python tools/classroom.py autograde [--jobs N] # grade the full edition as a student; exit 1 unless full marks
    python tools/classroom.py catalogue            # the mistakes each check names, into book/instructor_guide.md
    python tools/classroom.py expected [--check]   # the outputs the package stores of grading/solutions.py

`--notebooks DIR` and `--course DIR` (the chapters, the nbgrader course) go before the command.

The chapters are written the way nbgrader courses are: each exercise's solution sits between
`### BEGIN SOLUTION` and `### END SOLUTION` inside a function body, and the cell after it
calls a `minigpt.exercises.check_*` function. `tag` gives those cells the metadata nbgrader
needs (solution cells, and autograded cells worth 1 point each), so an instructor's own
nbgrader course can take the notebooks unchanged.

`student` lays out an nbgrader course in `_classroom/` (one assignment per chapter). The
course's *source* copy of each chapter is the full edition changed at generation time (the
chapters in notebooks/ are never edited):

* every graded check cell gets a hidden test (`### BEGIN HIDDEN TESTS`), which nbgrader strips
  from the student edition and puts back at autograde. The hidden test loads
  `grading/hidden.py` by its path and grades the student's function on inputs drawn at grading
  time, against a private copy of the package, watching for forbidden calls; its last line is
  the cell's partial score (nbgrader reads a displayed number as the points). Why it is built
  that way, and its limits, are in grading/hidden.py's docstring. The visible check stays in
  the cell: it is the student's practice feedback and decides nothing.
* `--only` keeps some exercises graded (names: the student's function, e.g. `my_softmax`, the
  check, e.g. `check_softmax`, either after the chapter's number where two chapters share a
  name, `11:my_generate`, or nbgrader's grade id); only the chapters that hold one are made
  (and graded), the others are left as an earlier session made them; in those chapters the
  other exercises stay as ungraded practice (still checked, no points). `--weights
  my_softmax=2,...` sets points (default 1).
* a "How you are graded" cell after the title says what is graded, for how many points, and
  the rules.
* the answers leave: every "Answers" admonition (chapter 14's included), the `hide-cell`
  code cells after it (they compute the answers to the questions), and chapter 14's answer key
  (the cell tagged `answer-key`): there `check_self_test` checks an answer's form only, and
  grading/hidden.py reads the key from the full edition.

`nbgrader generate_assignment` then replaces each solution by `raise NotImplementedError()`,
removes the hidden tests and clears the outputs. `grade` (`make grade SUBMITTED=DIR`) runs
`nbgrader autograde` on every submission with a per-cell time limit sized from the chapter's
recorded cell times and a kernel that may die in one cell without costing the others
(grading/execute.py), then writes DIR/grades.csv. `--jobs N` (`make grade ... JOBS=N`) grades N
notebooks at once, one nbgrader process each, each kernel on its share of the cores; it is
refused beyond the whole CPUs or the free memory, where it would cost students cells to the
clock or to a dead kernel. `autograde` submits the full edition as the
student "answer-key": it must get full marks. No step sets or reads MINIGPT_GRADING.

`expected` writes `minigpt/exercises/expected/<EXERCISE>.pt`: the package holds no worked
solution (they are in `grading/solutions.py`, which is not installed), so for the exercises
and mistakes whose code is there, the package ships their outputs on the visible cases. Run it
after editing a solution, a mistake or a case (`--check` only reports; the tests fail while a
stored output disagrees with grading/solutions.py).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import glob
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from datetime import datetime
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))                 # minigpt from this checkout
from minigpt.cpu import THREADS_ENV, cgroup_cpu_limit, usable_cpus  # noqa: E402
from minigpt.errors import MiniGPTError  # noqa: E402
from minigpt.run_folder import run_lock, write_text_atomically  # noqa: E402
NOTEBOOKS = ROOT / "notebooks"
COURSE = ROOT / "_classroom"
TEACHER_COURSE = COURSE               # COURSE is the folder in use (set_folders); this, the default
# play and autograde (and `make classroom`) grade made-up students: in a course of their own, so
# that the teacher's gradebook, release and formgrader never see them
CHECK_COURSE = ROOT / "_classroom_check"
ANSWER_KEY = "answer-key"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CHECK_CALL = re.compile(r"minigpt\.exercises\.(check_\w+)\(")
CHECK_LINE = re.compile(r"^minigpt\.exercises\.(check_\w+)\((.*)\)\s*$", re.MULTILINE)
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
GRADING = ROOT / "grading"
ANSWERS = re.compile(r"^(`{3,})\{admonition\} Answers.*?^\1[ \t]*$\n?", re.MULTILINE | re.DOTALL)
ANSWERS_GONE = "*(The answers to these questions are not in this edition: ask your instructor.)*\n"
ANSWER_KEY_TAG = "answer-key"       # chapter 14's answer key: a hidden cell of the full edition only
DEFINED = re.compile(r"^(?:def|class)\s+(\w+)", re.MULTILINE)

CONFIG = """\
# nbgrader configuration of the minigpt classroom course (written by tools/classroom.py).
c = get_config()
c.CourseDirectory.course_id = "minigpt"
c.CourseDirectory.root = {root!r}
# Chapter 8 trains a model: give every cell time on a slow or shared CPU. `grade` passes each
# chapter's own limit (cell_limit) on the command line.
c.Execute.timeout = 1800
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
# A kernel that dies costs the cell it died in, not the notebook (grading/execute.py).
import sys
sys.path.insert(0, {grading!r})
from execute import ResilientExecute
from nbgrader.preprocessors import (IgnorePattern, LimitOutput, SaveAutoGrades, AssignLatePenalties,
                                    CheckCellMetadata)
from nbconvert.preprocessors import ClearMetadataPreprocessor
c.Autograde.autograde_preprocessors = [ResilientExecute, IgnorePattern, ClearMetadataPreprocessor,
                                       LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
# The feedback shows each graded cell's output (the seed, one line per case, the likely
# mistake), not the hidden tests' code, which names the grader's files by their path.
from nbgrader.preprocessors import GetGrades, ClearHiddenTests
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
{extra}
# Your own settings (e.g. c.LateSubmissionPlugin.penalty_method = "zero") go in
# nbgrader_config_local.py beside this file: it is read last and never rewritten.
load_subconfig("nbgrader_config_local.py")
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
    found = []
    for path in chapters():
        try:
            notebook = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:     # a merge conflict's markers, a bad save
            raise MiniGPTError(f"{path} is not a readable notebook ({err}): restore it "
                               f"(git checkout -- {path.name} in its folder) and run this again") from None
        if nbgrader_metadata(notebook, path.stem):
            found.append(path)
    return found


def nbgrader_command(*args: str, force: bool = True) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run `nbgrader ARGS` with this Python."""
    # nbgrader runs `alembic` (database set-up) and kernels by name: both from this Python's
    # folder. MINIGPT_GRADING is removed: the grade never depends on it (grading/hidden.py).
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {k: v for k, v in os.environ.items() if k != "MINIGPT_GRADING"}
    env["PATH"] = path
    return [sys.executable, "-m", "nbgrader", *args, *(["--force"] if force else [])], env


def nbgrader(*args: str, force: bool = True, check: bool = True) -> int:
    """Run `nbgrader ARGS` in the course folder; its exit status. With `check`, a failure is a
    one-line error (nbgrader has printed its reasons above it)."""
    command, env = nbgrader_command(*args, force=force)
    status = subprocess.run(command, cwd=COURSE, env=env).returncode
    if check and status != 0:
        hint = (" nbgrader refuses to change the graded cells of a chapter that has submissions: keep "
                "that chapter's --only as it was when it was released" if args[0] == "generate_assignment" else "")
        raise MiniGPTError(f"nbgrader {' '.join(args[:2])} failed (exit status {status}); its messages are "
                           f"above.{hint}")
    return status


# ------------------------------------------------------------------ several notebooks graded at once
# What one notebook graded beside others holds at its peak: its grading kernel (899 MiB, chapter
# 16's, the largest in the instructor guide's table) and the nbgrader process that runs it (125 MiB
# resident, measured on 2026-12-07): 1,024 MiB, and a sixth more to spare.
JOB_MEMORY_MIB = 1200
SQLITE_WAIT_S = 600     # how long one nbgrader process waits while another writes the gradebook
GRADEBOOK_BUSY = "database is locked"      # SQLite's message when it gives up on a write


def available_memory_mib(root: Path = Path("/")) -> Optional[float]:
    """Memory free for new work, in MiB: /proc/meminfo's MemAvailable, capped by what a cgroup
    memory limit leaves (a container's --memory, a JupyterHub server's mem_limit, where
    MemAvailable still counts the whole host). None where neither can be read (macOS).
    A cgroup's use counts its page cache; the inactive part of it is given back on demand, so
    it is counted as free (what Kubernetes calls the working set is the rest)."""
    from minigpt.cpu import _own_cgroups, _read, _with_ancestors
    left = []
    for line in (_read(root / "proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            left.append(int(line.split()[1]) / 1024)
    cgroups = _own_cgroups(root)
    # (the cgroup's folders, its limit file, its use file, memory.stat's inactive page cache line)
    for folders, limit_file, used_file, cache in (
            (_with_ancestors(root / "sys/fs/cgroup", cgroups.get("", "/")), "memory.max", "memory.current",
             "inactive_file"),
            (_with_ancestors(root / "sys/fs/cgroup/memory", cgroups.get("memory", "/")), "memory.limit_in_bytes",
             "memory.usage_in_bytes", "total_inactive_file")):
        for folder in folders:
            limit, used = _read(folder / limit_file), _read(folder / used_file)
            if not (limit and limit.isdigit() and used and used.isdigit()) or int(limit) >= 2**62:
                continue            # no limit here ("max", or v1's page-rounded 2**63)
            stat = dict(line.split() for line in (_read(folder / "memory.stat") or "").splitlines()
                        if len(line.split()) == 2)
            reclaimable = int(stat.get(cache, "0")) if stat.get(cache, "0").isdigit() else 0
            left.append(max(0, int(limit) - int(used) + reclaimable) / 2**20)
    return min(left) if left else None


def whole_cpus() -> int:
    """The cores a grading kernel each can have to itself: the CPUs this process may use, with a
    cgroup quota rounded down (usable_cpus rounds 1.5 CPUs up to 2 threads, which keeps the quota
    busy; two kernels on 1.5 CPUs would each be throttled to 0.75 of a core)."""
    limit = cgroup_cpu_limit()
    return usable_cpus() if limit is None else max(1, min(usable_cpus(), math.floor(limit)))


def check_jobs(jobs: int, cpus: int, memory_mib: Optional[float]) -> None:
    """Refuse a --jobs that would cost students points: fewer than one core per grading kernel
    (cells run slower than the stored run their time limits are sized from), or less memory
    than the kernels need (a kernel out of memory dies and costs its cell)."""
    if jobs < 1:
        raise MiniGPTError(f"--jobs {jobs}: give 1 or more (1 grades one notebook at a time)")
    def fewer(n: int) -> str:
        return f"use --jobs {n} or fewer" if n > 1 else "use --jobs 1 (one notebook at a time)"
    if jobs > cpus:
        raise MiniGPTError(f"--jobs {jobs} on {cpus} whole CPU{'s' if cpus > 1 else ''}: each grading kernel would "
                           "get less than a core, its cells could run past the time limits sized from the "
                           f"stored run, and a student would lose a cell to the clock: {fewer(cpus)}")
    if memory_mib is not None and jobs > 1 and jobs * JOB_MEMORY_MIB > memory_mib:
        fits = max(1, int(memory_mib // JOB_MEMORY_MIB))
        raise MiniGPTError(f"--jobs {jobs} needs about {jobs * JOB_MEMORY_MIB / 1024:.1f} GiB ({JOB_MEMORY_MIB} MiB "
                           f"per notebook graded at once) and {memory_mib / 1024:.1f} GiB is free: a kernel "
                           f"out of memory dies and costs the student its cell; {fewer(fits)}")


def student_glob(student_id: str) -> str:
    """The --student pattern that matches this id's folder alone: nbgrader reads it as a glob,
    strips spaces around it and traitlets unquotes it ('ann' -> ann), so those characters at
    either end are put in brackets ([ ]ann matches " ann" only)."""
    pattern = glob.escape(student_id)
    if pattern[:1] in (" ", "\t", "'", '"'):
        pattern = f"[{pattern[0]}]{pattern[1:]}"
    if pattern[-1:] in (" ", "\t", "'", '"'):
        pattern = f"{pattern[:-1]}[{pattern[-1]}]"
    return pattern


def kernel_threads(jobs: int, env: dict[str, str]) -> tuple[str, Optional[str]]:
    """(MINIGPT_THREADS for each kernel, a warning or None): each kernel keeps to its share of the
    whole cores, since kernels that each take them all slow one another down. A value you set
    yourself wins (minigpt reads it before OMP_NUM_THREADS); a blank one counts as unset."""
    cpus = whole_cpus()
    share = max(1, cpus // max(1, jobs))
    own = env.get(THREADS_ENV, "").strip()
    if not own:
        return str(share), None
    if own.isdigit() and int(own) * jobs > cpus:
        return own, (f"warning: {THREADS_ENV}={own} for each of {jobs} kernels is {int(own) * jobs} threads on "
                     f"{cpus} CPUs: they slow one another down (leave {THREADS_ENV} unset for {share} each)")
    return own, None


_children: dict[int, subprocess.Popen] = {}     # the nbgrader processes running now, by PID


def _autograde_one(assignment: str, student_id: str, limit: int, threads: str) -> tuple[int, str, float]:
    """nbgrader autograde of one student's notebook in a process of its own: (exit status, its
    messages, seconds)."""
    import time
    # the gradebook is one SQLite file: a process that finds it locked by another's write waits
    # for it (writes take milliseconds) instead of failing after SQLite's default 5 s
    database = f"sqlite:///{COURSE / 'gradebook.db'}?timeout={SQLITE_WAIT_S}"
    command, env = nbgrader_command("autograde", assignment, f"--student={student_glob(student_id)}",
                                    f"--ResilientExecute.timeout={limit}", f"--CourseDirectory.db_url={database}")
    env[THREADS_ENV] = threads
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=COURSE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, errors="replace")
    _children[process.pid] = process
    try:
        messages, _ = process.communicate()
    finally:
        _children.pop(process.pid, None)
    return process.returncode, messages, time.perf_counter() - start


def autograde_at_once(work: list[tuple[str, str, int]], jobs: int) -> tuple[dict[str, list[float]], set]:
    """nbgrader autograde each (assignment, student id, cell limit) of `work`, in that order,
    `jobs` at a time, each in a process of its own whose messages are printed in one piece when it
    ends. Returns each assignment's seconds per notebook, and the (student id, assignment) pairs
    the gradebook refused twice as busy (not graded)."""
    import signal
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
    threads, warning = kernel_threads(min(jobs, len(work)), dict(os.environ))
    if warning:
        print(warning, flush=True)
    seconds: dict[str, list[float]] = {}
    busy_twice = set()
    waiting = deque((assignment, student_id, limit, 0) for assignment, student_id, limit in work)
    running = {}
    # the main thread hands out a notebook only when one ends, so that at most `jobs` run, they
    # start in the order given, and once Ctrl-C is pressed no other starts
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            while waiting or running:
                while waiting and len(running) < jobs:
                    item = waiting.popleft()
                    running[pool.submit(_autograde_one, item[0], item[1], item[2], threads)] = item
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    assignment, student_id, limit, tries = running.pop(future)
                    status, messages, took = future.result()
                    if status != 0 and GRADEBOOK_BUSY in messages:
                        if tries == 0:
                            # SQLite refuses at once, without waiting, a write that could deadlock
                            # with another process's: the notebook goes next, not scored 0
                            print(f"--- {student_id}/{assignment}: the gradebook was busy ({GRADEBOOK_BUSY}); "
                                  "grading it again ---", flush=True)
                            waiting.appendleft((assignment, student_id, limit, 1))
                            continue
                        busy_twice.add((student_id, assignment))
                    seconds.setdefault(assignment, []).append(took)
                    failed = "" if status == 0 else f", nbgrader exit status {status}"
                    print(f"--- {student_id}/{assignment}: {took:.0f} s{failed} ---\n{messages.rstrip()}", flush=True)
        except BaseException:
            # Ctrl-C (or a bug here): start no more; stop the running ones, which a Ctrl-C sent to
            # this process alone (kill -INT, a process manager) would not reach
            live = list(_children.values())
            if live:
                print(f"stopping {len(live)} running notebook{'s' if len(live) > 1 else ''}", flush=True)
            for process in live:
                with contextlib.suppress(OSError):
                    process.send_signal(signal.SIGINT)
            raise
    return seconds, busy_twice


RELEASED_CELLS = "released_cells.json"      # in the course folder: assignment -> hashes of released cells


def _cell_hash(source: str) -> str:
    import hashlib
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def released_cells() -> dict[str, set]:
    """assignment -> the hashes of the cells of every release `generate` made of it."""
    try:
        return {a: set(hashes) for a, hashes in
                json.loads((COURSE / RELEASED_CELLS).read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def generate(assignment: str) -> None:
    """nbgrader generate_assignment, then remember the released cells: a notebook handed in
    from an earlier release (before the book was updated) holds that release's cells, which
    are not the student's own."""
    nbgrader("generate_assignment", assignment)
    known = released_cells()
    cells = _cells(COURSE / "release" / assignment / f"{assignment}.ipynb") or []
    known[assignment] = known.get(assignment, set()) | {_cell_hash(source_text(c)) for c in cells}
    (COURSE / RELEASED_CELLS).write_text(json.dumps({a: sorted(h) for a, h in known.items()}, indent=1) + "\n",
                                         encoding="utf-8")


# ------------------------------------------------------------------ shaping an assignment
def cell_limit(path: Path) -> int:
    """Seconds one cell may run at autograde: 8x the chapter's slowest recorded cell (the
    stored run; a busy shared CPU is slower, chapter 8 1.7x beside the unit suite with
    minigpt's OpenMP spin limit (bench/results/cpu_2core_nbval_times.log) and far more without
    it, and the graded cells' hidden tests run the student's code again), at least 2 min, at
    most 20 min."""
    slowest = max(cell_seconds(path), default=0.0)
    return int(min(1200, max(120, math.ceil(8 * slowest))))


def cell_seconds(path: Path) -> list[float]:
    """How long each code cell of the notebook's stored run took (its execution metadata; a
    cell without it is left out)."""
    seconds = []
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        run = cell.get("metadata", {}).get("execution", {})
        if cell["cell_type"] == "code" and "iopub.execute_input" in run and "shell.execute_reply" in run:
            start, end = (datetime.fromisoformat(run[k].replace("Z", "+00:00"))
                          for k in ("iopub.execute_input", "shell.execute_reply"))
            seconds.append((end - start).total_seconds())
    return seconds


def exercise_key(check_text: str, solved: set) -> tuple[str, str]:
    """(the student's name the check cell grades, the check's name) of a check cell."""
    check = CHECK_CALL.search(check_text).group(1)
    names = [w for w in re.findall(r"\w+", check_text.split(check, 1)[1]) if w in solved]
    return (names[0] if names else check), check


def exercises_of(notebook: dict, chapter: str) -> list[tuple[int, str, str]]:
    """(cell index, the student's name, the check) of every graded check cell."""
    meta = dict(nbgrader_metadata(notebook, chapter))
    solved, found = set(), []
    for index, cell in enumerate(notebook["cells"]):
        if index in meta and meta[index]["solution"]:
            solved.update(DEFINED.findall(source_text(cell)))
        elif index in meta and meta[index]["grade"]:
            found.append((index, *exercise_key(source_text(cell), solved)))
    return found


def hidden_test(check_text: str, points: float) -> str:
    """The check cell of the source edition: the visible check, and the hidden test around it."""
    match = CHECK_LINE.search(check_text)
    if match is None:
        raise SystemExit(f"a graded cell's last line must be `minigpt.exercises.check_x(...)`: {check_text!r}")
    check, args = match.group(1), match.group(2)
    # one expression, and no name bound in the notebook: a name there (the loaded module, its
    # spec) would lead the student's code, through its function's globals, to the grading
    loader = (f'(lambda spec: (lambda module: spec.loader.exec_module(module) or module)(\n'
              f'    __import__("importlib.util").util.module_from_spec(spec)))(\n'
              f'    __import__("importlib.util").util.spec_from_file_location(\n'
              f'        "_minigpt_hidden_" + __import__("os").urandom(6).hex(), {str(GRADING / "hidden.py")!r})\n'
              f')')
    return "\n".join([
        HIDDEN_BEGIN,
        '__import__("os").environ.pop("MINIGPT_GRADING", None)   # the visible check must never raise',
        '__import__("sys").stderr = __import__("sys").stdout     # nbgrader zeroes a cell that writes to stderr',
        HIDDEN_END,
        check_text.strip(),
        HIDDEN_BEGIN,
        loader + f'.grade({check!r}, {args}, points={float(points)!r}, namespace=globals())',
        HIDDEN_END,
    ])


def parse_weights(text: Optional[str]) -> dict[str, float]:
    weights = {}
    for item in filter(None, (text or "").split(",")):
        name, _, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise MiniGPTError(f"--weights: {item!r} is not NAME=POINTS (e.g. my_softmax=2)") from None
        if weights[name.strip()] <= 0:
            raise MiniGPTError(f"--weights: {item!r}: points must be positive")
    return weights


def strip_answers(notebook: dict) -> int:
    """Remove every "Answers" admonition, the hide-cell code cells after one (they compute the
    answers) and every cell tagged `answer-key` (chapter 14's answer key); return how many
    pieces were removed."""
    removed, after_answers, kept = 0, False, []
    for cell in notebook["cells"]:
        text = source_text(cell)
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] == "markdown" and ANSWERS.search(text):
            cell["source"] = ANSWERS.sub(ANSWERS_GONE, text)
            removed, after_answers = removed + 1, True
        elif ANSWER_KEY_TAG in tags or (after_answers and cell["cell_type"] == "code" and "hide-cell" in tags):
            removed += 1
            continue
        kept.append(cell)
    notebook["cells"] = kept
    return removed


def how_graded(graded: list[tuple[str, str, float]], practice: list[str], limit: int) -> dict:
    """The markdown cell that tells the student how this notebook is graded."""
    total = sum(points for _, _, points in graded)
    rows = "\n".join(f"| `{name}` | `{check}` | {points:g} |" for name, check, points in graded)
    lines = ["## How you are graded", ""]
    if graded:
        lines += [f"This notebook is graded out of **{total:g} points**:", "",
                  "| your answer | checked by | points |", "| --- | --- | --- |", rows, ""]
    else:
        lines += ["Nothing in this notebook is graded: every exercise is practice.", ""]
    if practice:
        lines += ["Practice, not graded (the checks still answer): " + ", ".join(f"`{n}`" for n in practice) + ".", ""]
    lines += [
        "- When your notebook is graded, each graded exercise runs again on **new inputs drawn at "
        "grading time**, not the ones the check in this notebook uses: an answer that only fits "
        "those inputs scores 0.",
        "- The points of an exercise are split evenly over its cases; your feedback lists every "
        "case you miss, with the likely mistake when the check knows it.",
        "- **The exercise is your own work**: an answer that calls the function it asks you to "
        "write (the package's version, or torch's where the text says \"by hand\"), or a copy of "
        "the package's code, scores 0 for that exercise, however it is imported or renamed; a copy "
        "with a few lines changed is marked for your instructor to read. Using what earlier "
        "chapters built (and the text says to use) is fine.",
        "- The visible checks are for practice: changing them, torch or environment variables does "
        "not change your grade, and when the grading notices such a change the exercise scores 0.",
        f"- Each cell may run for at most {limit} seconds when graded. A cell that runs longer, or "
        "that crashes the kernel (for example by running out of memory), scores 0; the rest of the "
        "notebook is graded as usual.",
        "- Before you submit, run *Kernel → Restart & Run All*: the notebook is graded top to "
        "bottom in a fresh kernel.",
    ]
    return {"cell_type": "markdown", "id": "how-you-are-graded", "metadata": {}, "source": "\n".join(lines)}


def exercise_keys(chapter: str, name: str, check: str, grade_id: str) -> set:
    """The names --only and --weights may give an exercise by: the student's function
    (`my_generate`), the check (`check_cached_generate`), either after the chapter's number
    (`11:my_generate`) and nbgrader's grade id (`11_kv_cache-my_generate`)."""
    return {name, check, f"{chapter[:2]}:{name}", f"{chapter[:2]}:{check}", grade_id}


def shape_assignment(notebook: dict, chapter: str, only: Optional[set], weights: dict,
                     limit: int) -> list[str]:
    """Turn a copy of a chapter into the course's source edition (see the module docstring);
    return the names of its exercises."""
    found = exercises_of(notebook, chapter)
    meta = dict(nbgrader_metadata(notebook, chapter))
    graded, practice = [], []
    for index, name, check in found:
        cell = notebook["cells"][index]
        keys = exercise_keys(chapter, name, check, meta[index]["grade_id"])
        if only is not None and not keys & only:
            cell["metadata"].pop("nbgrader", None)          # an ordinary cell: practice
            practice.append(name)
            continue
        points = next((weights[key] for key in keys if key in weights), 1.0)
        cell["metadata"]["nbgrader"] = dict(meta[index], points=points)
        cell["source"] = hidden_test(source_text(cell), points)
        graded.append((name, check, points))
    strip_answers(notebook)
    title = next((i for i, c in enumerate(notebook["cells"]) if c["cell_type"] == "markdown"), -1)
    notebook["cells"].insert(title + 1, how_graded(graded, practice, limit))
    return [name for _, name, _ in found]


def _selection(only: Optional[set], weights: dict) -> dict[str, set]:
    """chapter stem -> the keys of its exercises (exercise_keys); a name of --only or --weights
    that is no exercise's, or that names exercises of two chapters, is a one-line error."""
    keys_of: dict[str, set] = {}
    bare: dict[str, set] = {}
    exercises: list[set] = []                   # the keys of each exercise
    for path in exercise_chapters():
        notebook = json.loads(path.read_text(encoding="utf-8"))
        meta = dict(nbgrader_metadata(notebook, path.stem))
        keys_of[path.stem] = set()
        for index, name, check in exercises_of(notebook, path.stem):
            keys = exercise_keys(path.stem, name, check, meta[index]["grade_id"])
            keys_of[path.stem] |= keys
            exercises.append(keys)
            for key in (name, check):
                bare.setdefault(key, set()).add(path.stem)
    if not keys_of:
        raise MiniGPTError(f"{NOTEBOOKS} holds no chapter with exercises (NN_name.ipynb with nbgrader cells; "
                           "run `python tools/classroom.py tag` after adding one)")
    asked = set(only or ()) | set(weights)
    known = set().union(*keys_of.values())
    unknown = sorted(asked - known)
    if unknown:
        names = sorted(k for k in known if ":" not in k and "-" not in k and not k.startswith("check_"))
        raise MiniGPTError(f"no exercise named {', '.join(unknown)}; the exercises are: {', '.join(names)}")
    for key in sorted(asked):
        chapters_with = sorted(bare.get(key, ()))
        if len(chapters_with) > 1:
            choices = " or ".join(f"{c[:2]}:{key}" for c in chapters_with)
            raise MiniGPTError(f"{key} is an exercise of chapters {', '.join(c[:2] for c in chapters_with)}: "
                               f"write {choices}")
    if only is not None:                        # a weight for an exercise --only leaves ungraded
        unused = sorted(k for k in weights if not any(k in keys and keys & only for keys in exercises))
        if unused:
            raise MiniGPTError(f"--weights {', '.join(unused)}: not graded with this --only; add it to "
                               "--only or leave out its weight")
    return keys_of


def make_course(only: Optional[set] = None, weights: Optional[dict] = None) -> list[str]:
    """Lay out _classroom/ with one nbgrader assignment per chapter that has exercises; with
    `only`, only the chapters that hold one of its exercises (the others are left as they are:
    a chapter released in an earlier session keeps its graded cells, which nbgrader refuses to
    change once it has submissions)."""
    try:
        import nbgrader  # noqa: F401
    except ImportError:
        raise SystemExit("nbgrader is not installed: pip install -e '.[classroom]' (or `make student`).")
    weights = weights or {}
    keys_of = _selection(only, weights)
    COURSE.mkdir(exist_ok=True)
    (COURSE / "nbgrader_config.py").write_text(CONFIG.format(root=str(COURSE), grading=str(GRADING), extra=""))
    names = []
    for path in exercise_chapters():
        if only is not None and not keys_of[path.stem] & only:
            continue
        folder = COURSE / "source" / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        notebook = json.loads(path.read_text(encoding="utf-8"))
        shape_assignment(notebook, path.stem, only, weights, cell_limit(path))
        (folder / path.name).write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        names.append(path.stem)
    return names


# what making a course writes: on a failure, each is put back as it was
_COURSE_STATE = ("source", "release", "gradebook.db", RELEASED_CELLS, "nbgrader_config.py")


@contextlib.contextmanager
def unchanged_on_failure():
    """Keep the course folder's source, release, gradebook and config as they were if the block
    fails: nbgrader refuses a chapter half-way (one with submissions whose graded cells would
    change) after earlier chapters were regenerated, which would change what they release."""
    import tempfile
    COURSE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=COURSE, prefix=".before-") as kept:
        for name in _COURSE_STATE:
            if (COURSE / name).is_dir():
                shutil.copytree(COURSE / name, Path(kept) / name, symlinks=True)
            elif (COURSE / name).exists():
                shutil.copy2(COURSE / name, Path(kept) / name)
        try:
            yield
        except BaseException:
            for name in _COURSE_STATE:
                current, before = COURSE / name, Path(kept) / name
                if current.is_dir():
                    shutil.rmtree(current)
                elif current.exists():
                    current.unlink()
                if before.exists():
                    shutil.move(str(before), str(current))
            print(f"nothing in {COURSE} was changed (source, release and gradebook are as they were)",
                  file=sys.stderr)
            raise


def student(run: bool = False, only: Optional[set] = None, weights: Optional[dict] = None) -> int:
    """Generate the student edition; with `run`, execute it and check every exercise is open.
    A failure (nbgrader refusing one chapter) leaves the course as it was."""
    with unchanged_on_failure():
        names = make_course(only, weights)
        for name in names:
            generate(name)
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
        # the checks of the student's own answers, graded or practice (a check the chapter runs
        # on its own example, e.g. a deliberately wrong function, answers "not yet" by design)
        solved = {name for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution")
                  for name in DEFINED.findall(c.source)}
        checks = [c for c in notebook.cells if c.cell_type == "code" and CHECK_CALL.search(c.source)
                  and solved & set(re.findall(r"\w+", c.source.split(CHECK_CALL.search(c.source).group(1), 1)[1]))]
        for cell in checks:
            shown = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                            for o in cell.get("outputs", []))
            if "Not implemented yet" not in shown and "not implemented" not in shown.lower():
                problems.append(f"{name}: check cell {cell.source.strip()[:60]!r} showed {shown[:120]!r}")
        print(f"{name}: ran to the end, {len(checks)} exercises open")
    for problem in problems:
        print("PROBLEM", problem)
    return 1 if problems else 0


# ------------------------------------------------------------------------------ grading
def submitted_layout(submitted: Path) -> dict[str, list[str]]:
    """assignment -> students, from SUBMITTED/<student>/<assignment>/<assignment>.ipynb."""
    found: dict[str, list[str]] = {}
    for path in sorted(submitted.glob("*/*/*.ipynb")):
        student_id, assignment = path.parent.parent.name, path.parent.name
        if path.stem == assignment:
            found.setdefault(assignment, []).append(student_id)
    return found


def read_roster(path: Path) -> list[str]:
    """The student ids of a class list: one per line (blank lines and `#` comments skipped), or
    a CSV file with an `id` column (the file `nbgrader db student import` reads)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise MiniGPTError(f"no roster at {path}: ROSTER names a file with one student id per line "
                           "(or nbgrader's student CSV, with an `id` column)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise MiniGPTError(f"the roster {path} cannot be read ({err}): save it as UTF-8 text") from None
    lines = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if lines and ("," in lines[0] or lines[0].lower() == "id"):   # a CSV, maybe of the id column only
        header = [name.strip().lower() for name in next(csv.reader([lines[0]]))]
        if "id" not in header:
            raise MiniGPTError(f"the roster {path} is a CSV file without an `id` column (its header is "
                               f"{lines[0]!r}): name the column of student ids `id`, as nbgrader's does")
        column = header.index("id")
        ids = [row[column].strip() for row in csv.reader(lines[1:]) if len(row) > column]
    else:
        ids = lines
    ids = [i for i in ids if i]
    if not ids:
        raise MiniGPTError(f"the roster {path} names no student: write one student id per line")
    return sorted(set(ids))


def _cells(path: Path) -> Optional[list]:
    """The cells of a notebook file, or None if it is missing or not a notebook."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return None


def _earlier_grades(path: Path) -> list[dict]:
    """The rows of a grades.csv this command wrote earlier. "utf-8-sig": a spreadsheet that
    saved the file again (Excel's "CSV UTF-8") put a byte-order mark before "student", and
    plain utf-8 would read that column as "\ufeffstudent" and lose every earlier row."""
    with open(path, newline="", encoding="utf-8-sig") as earlier:
        return list(csv.DictReader(earlier))


def write_grades(path: Path, graded_now: set, rows: list) -> list:
    """Write grades.csv: `rows` (this run's, of the assignments `graded_now`) and the rows an
    earlier session wrote for other assignments, which stay (one file for the course). Returns
    the rows kept."""
    kept = []
    try:
        kept = [(r["student"], r["assignment"], r["score"], r["max_score"], r["note"])
                for r in _earlier_grades(path) if r.get("assignment") not in graded_now]
    except FileNotFoundError:
        pass
    except (OSError, KeyError, csv.Error) as err:      # not the file this command writes: keep it
        backup = path.with_name(path.name + ".unreadable")
        shutil.copy2(path, backup)
        print(f"{path} could not be read ({err}); kept as {backup}")
    table = [["student", "assignment", "score", "max_score", "note"],
             *sorted(kept + rows, key=lambda row: (str(row[0]), str(row[1])))]
    _write_csv_atomically(path, table)    # it holds every earlier chapter's grades: never half of it
    write_totals(path.with_name("grades_by_student.csv"), kept + rows)
    return kept


def write_totals(path: Path, rows: list) -> None:
    """grades_by_student.csv: one row per student, a column per assignment, and the total out of
    the maximum over every assignment in grades.csv (a missing chapter counts 0)."""
    assignments = sorted({str(row[1]) for row in rows})
    most = {a: max(float(row[3]) for row in rows if row[1] == a) for a in assignments}
    scores: dict[str, dict[str, float]] = {}
    for student_id, assignment, score, _, _ in rows:
        scores.setdefault(str(student_id), {})[str(assignment)] = float(score)
    table = [["student", *assignments, "total", "max_total"]]
    for student_id in sorted(scores):
        got = [scores[student_id].get(a, 0.0) for a in assignments]
        table.append([student_id, *(f"{g:g}" for g in got), f"{sum(got):g}", f"{sum(most.values()):g}"])
    _write_csv_atomically(path, table)


def _write_csv_atomically(path: Path, table: list) -> None:
    """Write the rows of `table` to the CSV file `path` whole or not at all: a Ctrl-C, a full
    disk or a crash mid-write leaves the previous file (grades.csv is read back as the earlier
    sessions' grades, so half a file would lose them)."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(table)   # the text file's own newlines
    write_text_atomically(path.parent, path.name, text.getvalue())


def _points(path: Path) -> dict[str, float]:
    """grade_id -> points of a notebook's graded cells ({} if there is no such notebook)."""
    return {meta["grade_id"]: float(meta.get("points", 0)) for cell in _cells(path) or []
            if (meta := cell.get("metadata", {}).get("nbgrader", {})).get("grade") and "grade_id" in meta}


def grading_files() -> dict[str, str]:
    """path -> sha256 of every file the hidden tests read: the package, its stored answers, the
    grading code and the full edition's notebooks. Students' code runs with the grading's rights:
    a cell that rewrote one of them would change every later grade."""
    import hashlib
    paths = [*sorted((ROOT / "minigpt").rglob("*.py")), *sorted((ROOT / "minigpt/exercises/expected").glob("*")),
             *sorted(GRADING.glob("*.py")), *sorted(NOTEBOOKS.glob("*.ipynb"))]
    return {(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in paths if p.is_file()}


def changed_grading_files(before: dict[str, str]) -> list[str]:
    after = grading_files()
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))


def _other_notebooks(submitted: Path, beside_the_graded_one: bool) -> dict[tuple[str, str], list[str]]:
    """(student, assignment) -> the notebooks in SUBMITTED/<student>/<assignment>/ other than
    <assignment>.ipynb, in the folders that hold that one too (or, if not `beside_the_graded_one`,
    in those that do not). nbgrader grades only <assignment>.ipynb."""
    found = {}
    for folder in sorted(p for p in submitted.glob("*/*") if p.is_dir()):
        graded = folder / f"{folder.name}.ipynb"
        others = sorted(p.name for p in folder.glob("*.ipynb") if p != graded)
        if others and graded.is_file() == beside_the_graded_one:
            found[(folder.parent.name, folder.name)] = others
    return found


def misnamed_submissions(submitted: Path) -> dict[tuple[str, str], list[str]]:
    """The notebooks handed in under another name (a "Copy1", a renamed file) where
    <assignment>.ipynb is missing: nbgrader would grade nothing there."""
    return _other_notebooks(submitted, beside_the_graded_one=False)


def extra_notebooks(submitted: Path) -> dict[tuple[str, str], list[str]]:
    """The other notebooks beside <assignment>.ipynb: work kept in a "Copy1" beside it would
    score nothing unseen."""
    return _other_notebooks(submitted, beside_the_graded_one=True)


def _students_of(submitted: Path) -> set[str]:
    """Every student the course knows here: a folder in SUBMITTED (whatever it holds) or a row
    of an earlier grades.csv, so that grading one chapter at a time leaves nobody out."""
    known = {p.name for p in submitted.iterdir() if p.is_dir() and not p.name.startswith(".")}
    try:
        known |= {row["student"] for row in _earlier_grades(submitted / "grades.csv") if row.get("student")}
    except (OSError, KeyError, csv.Error):
        pass
    return known


def _joined(*notes: Optional[str]) -> str:
    """Notes for one row of grades.csv, the empty ones left out."""
    return "; ".join(filter(None, notes))


def _promised_points(submitted: Path, assignment: str, names: list[str]) -> dict[str, float]:
    """grade_id -> points, as the students' own notebooks show them (the release they were
    given; the notebooks of most students agree, so one edited notebook changes nothing).
    Falls back on the course's release folder."""
    from collections import Counter
    seen = Counter()
    for student_id in names:
        points = _points(submitted / student_id / assignment / f"{assignment}.ipynb")
        if points:
            seen[tuple(sorted(points.items()))] += 1
    if seen:
        return dict(seen.most_common(1)[0][0])
    return _points(COURSE / "release" / assignment / f"{assignment}.ipynb")


def grading_order(layout: dict[str, list[str]], source: Path, limits: dict[str, int]) -> list[tuple[str, str, int]]:
    """(assignment, student id, cell limit) of every submission, the chapters whose stored run
    took longest first: the last notebooks to end are then short ones, and no core waits long
    for them while the others are done."""
    stored = {a: sum(cell_seconds(source / a / f"{a}.ipynb")) for a in layout}
    return [(a, student_id, limits[a]) for a in sorted(layout, key=lambda a: -stored[a]) for student_id in layout[a]]


def grade(submitted: Path, only: Optional[set] = None, weights: Optional[dict] = None,
          timeout: Optional[int] = None, roster: Optional[Path] = None, jobs: int = 1) -> int:
    """nbgrader autograde every submission in `submitted`; write submitted/grades.csv.
    `timeout` overrides the per-cell limit (cell_limit) of every chapter. With a `roster`
    (read_roster), a student on it who handed in nothing still gets a row per chapter, and a
    submission under an id not on it is named (a typo in a folder name makes a second student).
    `jobs` > 1 grades that many notebooks at once (autograde_at_once), each kernel with its share
    of the cores."""
    import time
    try:
        from nbgrader.api import Gradebook
    except ImportError:
        raise SystemExit("nbgrader is not installed: pip install -e '.[classroom]' (or `make student`).")

    submitted = submitted.resolve()
    if not submitted.is_dir():
        raise MiniGPTError(f"{submitted} does not exist (or is not a folder): point SUBMITTED at "
                           "nbgrader's submitted folder")
    if submitted == COURSE or ((submitted / "source").is_dir() and (submitted / "release").is_dir()):
        raise MiniGPTError(f"{submitted} is the course folder (it holds source/ and release/), not the "
                           f"students' submissions: point SUBMITTED at {COURSE / 'submitted'}, where "
                           "`nbgrader collect` puts them")
    if timeout is not None and timeout < 1:
        raise MiniGPTError(f"--timeout {timeout}: a cell needs at least 1 second (leave it out for "
                           "each chapter's own limit)")
    if jobs != 1:
        check_jobs(jobs, whole_cpus(), available_memory_mib())
    enrolled = read_roster(roster) if roster is not None else None
    layout = submitted_layout(submitted)
    misnamed = misnamed_submissions(submitted)
    if not layout:
        hint = (f" (it holds notebooks under other names, e.g. {'/'.join(next(iter(misnamed)))}/"
                f"{next(iter(misnamed.values()))[0]}: rename each to <assignment>.ipynb)" if misnamed else "")
        raise MiniGPTError(f"{submitted} holds no <student>/<assignment>/<assignment>.ipynb{hint}: "
                           "point SUBMITTED at nbgrader's submitted folder")
    # a refusal below (points, a moved checkout, nbgrader) leaves the course as it was
    with unchanged_on_failure():
        source = (COURSE / "source")
        if only is not None or weights or not source.is_dir():
            selected = make_course(only, weights)
            if only is not None:            # this session's chapters; earlier sessions' stay graded as they were
                skipped = sorted(a for a in layout if a not in selected)
                layout = {a: names for a, names in layout.items() if a in selected}
                if skipped:
                    print(f"not graded now (no exercise of --only in them): {', '.join(skipped)}")
                if not layout:
                    raise MiniGPTError(f"{submitted} holds no submission of the chapters --only names "
                                       f"({', '.join(selected)})")
        unknown = sorted(a for a in layout if not (source / a / f"{a}.ipynb").is_file())
        never_released = []
        if unknown and len(unknown) < len(layout):      # grade the others; list these at the end
            never_released = [f"{s}/{a}: no such assignment in {source} (a chapter without exercises, or "
                              f"never released)" for a in unknown for s in layout[a]]
            layout = {a: names for a, names in layout.items() if a not in unknown}
            unknown = []
        if unknown:
            raise MiniGPTError(f"no assignment named {', '.join(unknown)} in {source}: run "
                               "`python tools/classroom.py student` (with the same --only/--weights) first")
        # the points each graded cell was released with (what the students were told, as their
        # notebooks show) against the points of the source just rebuilt: a WEIGHTS forgotten at
        # grading time, or a `make student` run since the release, would change them
        changed = []
        for a in layout:
            promised, now = _promised_points(submitted, a, layout[a]), _points(source / a / f"{a}.ipynb")
            if promised and now != promised:
                cells = [f"{cell}: {promised.get(cell)} -> {now.get(cell)}" for cell in sorted(promised.keys() | now.keys())
                         if promised.get(cell) != now.get(cell)]
                changed.append(f"{a} ({', '.join(cells)})")
        if changed:
            raise MiniGPTError(f"the points of {'; '.join(changed)} differ from those of the notebooks the "
                               "students handed in (first the students', then the course's now): grade with "
                               "the ONLY/WEIGHTS that gave the students their points")
        texts = {a: (source / a / f"{a}.ipynb").read_text(encoding="utf-8") for a in layout}
        moved = sorted(a for a, text in texts.items() if HIDDEN_BEGIN in text and str(GRADING / "hidden.py") not in text)
        if moved:       # the hidden tests load grading/hidden.py by the path it had when they were made
            raise MiniGPTError(f"the hidden tests of {', '.join(moved)} load grading/hidden.py from another "
                               f"folder (the repository was moved or copied since `make student`): run "
                               "`make student` again here, with the same ONLY/WEIGHTS, then grade")
        config = CONFIG.format(root=str(COURSE), grading=str(GRADING),
                               extra=f"c.CourseDirectory.submitted_directory = {str(submitted)!r}\n")
        (COURSE / "nbgrader_config.py").write_text(config)
        misnamed = {key: names for key, names in misnamed.items() if key[1] in layout}
        extra = {key: names for key, names in extra_notebooks(submitted).items() if key[1] in layout}
        students = sorted(_students_of(submitted) | {s for s, _ in misnamed} | set(enrolled or ()))
        for assignment in layout:
            generate(assignment)      # records the assignment and its cells
    # read after the release is made: the cells a student wrote are those it does not hold
    unreadable, review, as_released = _read_submissions(submitted, layout)
    with Gradebook(f"sqlite:///{COURSE / 'gradebook.db'}") as gradebook:
        for student_id in students:
            gradebook.update_or_create_student(student_id)
    untouched = grading_files()
    # an autograded notebook older than this is a previous run's (mtimes may be whole seconds)
    started = math.floor(time.time()) - 1
    limits = {a: timeout or cell_limit(source / a / f"{a}.ipynb") for a in layout}
    busy = set()        # (student, assignment) the gradebook refused twice, with --jobs
    if jobs == 1:
        for assignment, names in layout.items():
            start = time.perf_counter()
            # one notebook nbgrader cannot grade (not JSON, cells removed) must not stop the others:
            # nbgrader grades the rest and exits non-zero; that notebook's row says so below
            nbgrader("autograde", assignment, f"--ResilientExecute.timeout={limits[assignment]}", check=False)
            seconds = time.perf_counter() - start
            print(f"graded {assignment}: {len(names)} notebooks in {seconds:.0f} s "
                  f"({seconds / len(names):.1f} s per notebook; cell limit {limits[assignment]} s)")
    else:
        work = grading_order(layout, source, limits)
        start = time.perf_counter()
        taken, busy = autograde_at_once(work, jobs)
        for assignment, names in layout.items():
            each = taken.get(assignment, [0.0])
            print(f"graded {assignment}: {len(names)} notebooks, {sum(each) / len(each):.1f} s per notebook "
                  f"({jobs} at a time; cell limit {limits[assignment]} s)")
        print(f"graded {len(work)} notebooks in {time.perf_counter() - start:.0f} s, {jobs} at a time")
    tampered = changed_grading_files(untouched)
    if tampered:        # a student's cell, or an edit made meanwhile: this run's grades cannot be trusted
        raise MiniGPTError(
            f"files the grading reads changed while the notebooks ran: {', '.join(tampered[:8])}"
            f"{' ...' if len(tampered) > 8 else ''}, so this run's grades cannot be trusted and no grades.csv "
            "was written. Either a student's code wrote them (it runs with the grading's rights) or someone "
            "edited them meanwhile: see what changed with `git status` and `git diff -- minigpt grading "
            "notebooks`, restore what is not yours (git checkout -- FILE), grade again, and read the "
            "notebooks marked for the grader's files.")
    for key, seen in _review_in_feedback(layout).items():
        review[key] = _joined(review.get(key), seen)
    rows, not_graded = [], []
    with Gradebook(f"sqlite:///{COURSE / 'gradebook.db'}") as gradebook:
        for assignment, names in layout.items():
            max_score = gradebook.find_assignment(assignment).max_score
            for student_id in students:
                note = unreadable.get((student_id, assignment), "")
                if (student_id, assignment) in misnamed:
                    note = (f"handed in {', '.join(misnamed[student_id, assignment])}, not {assignment}.ipynb: "
                            "rename it and grade again")
                try:
                    score = 0.0 if note else gradebook.find_submission(assignment, student_id).score
                except Exception:       # nbgrader's MissingEntry: no submission, or it could not be graded
                    score = 0.0
                    note = "nbgrader could not grade it; see its log above" if student_id in names else "no submission"
                graded_copy = COURSE / "autograded" / student_id / assignment / f"{assignment}.ipynb"
                if (student_id, assignment) in busy:
                    score, note = 0.0, ("not graded: the gradebook was busy with another nbgrader process "
                                        "twice; grade again (fewer --jobs)")
                elif not note and student_id in names and (not graded_copy.is_file()
                                                           or graded_copy.stat().st_mtime < started):
                    # nbgrader failed on it (it keeps the submission's row, deletes the feedback)
                    score, note = 0.0, ("nbgrader could not grade it; see its log above (a notebook of "
                                        "another release, or with graded cells removed: ask for it again)")
                shown = _shown_scores(graded_copy)
                if score and shown is not None and shown < score - 1e-6:
                    review[(student_id, assignment)] = _joined(
                        review.get((student_id, assignment)),
                        f"nbgrader read {score:g} points but the hidden tests printed {shown:g}: a graded "
                        f"cell's shown value was hidden or replaced, so {shown:g} counts")
                    score = shown
                if note and note != "no submission":
                    not_graded.append(f"{student_id}/{assignment}: {note}")
                if (student_id, assignment) in as_released and not note:
                    note = "handed in as released: no answer written"
                if (student_id, assignment) in extra:
                    note = _joined(note, f"also handed in {', '.join(extra[student_id, assignment])} "
                                         f"(not graded: only {assignment}.ipynb is)")
                if enrolled is not None and student_id not in enrolled:
                    note = _joined(note, "not on the roster: check the folder's student id "
                                         "(a misspelt one is graded as another student)")
                if (student_id, assignment) in review:
                    note = _joined(note, review[(student_id, assignment)])
                rows.append((student_id, assignment, round(score, 2), max_score, note))
    kept = write_grades(submitted / "grades.csv", set(layout), rows)
    print(f"grades: {submitted / 'grades.csv'} ({len(rows)} rows graded now"
          f"{f', {len(kept)} kept from earlier sessions' if kept else ''}), totals per student: "
          f"{submitted / 'grades_by_student.csv'}; feedback: {COURSE / 'autograded'}")
    for line in not_graded:
        print(f"NOT GRADED (0 in grades.csv) {line}")
    for line in never_released:
        print(f"NOT GRADED (no row in grades.csv) {line}")
    for (student_id, assignment), line in sorted(review.items()):
        print(f"READ THIS ONE {student_id}/{assignment}: {line} (its score stands; grading cannot "
              "rule out that it was forged)")
    return 1 if not_graded or never_released else 0


# What a notebook needs only to reach around the grading (its callers' frames, the profiler,
# torch's dispatch modes, the builtins its hidden cells use, the grader's files) or to replace
# what it relies on. Honest answers in these chapters use none of them; grading cannot see
# every such trick from inside the kernel, so `grade` names them for a person to read.
REVIEW_MARK = "⚠ for review: "      # grading/hidden.py's: a feedback line for a person to read
_WORKERS = "_thread|threading|queue|multiprocessing|subprocess|concurrent|asyncio"   # the modules that run code elsewhere
REVIEW_PATTERNS = {
    # (frames reached through traceback's and inspect's helpers, a generator's or an exception's)
    "frame access": r"_getframe|\bf_(?:locals|globals|back|code)\b|\btb_(?:frame|next)\b|inspect\.(?:stack|currentframe|trace)|"
                    r"gc\.get_referr|\bwalk_(?:stack|tb)\b|\bextract_stack\b|\bget(?:argvalues|outerframes|innerframes|frameinfo)\b|"
                    r"\b(?:gi|cr|ag)_frame\b|__traceback__|\bexc_info\b|_current_frames",
    # (and the names built from pieces, `getattr(sys, "getpro" + "file")`; cProfile, which takes
    # the profile hook; threading's copy of the hook, which hands over the grading's watcher)
    "the profiler or tracer": r"\b(?:set|get)profile\b|\b(?:set|get)trace\b|getpro|setpro|_profile_hook|_trace_hook|"
                              r"\bc?Profile\b|_lsprof|sys\.monitoring|getattr\s*\(\s*sys\b",
    "torch's dispatch modes": r"_disable_current_modes|_pop_mode|_python_dispatch|Torch(?:Function|Dispatch)Mode|"
                              r"__torch_(?:function|dispatch)__|_push_on_torch|\.__enter__\s*\(\s*\)|"
                              r"_Disable\w*Dispatch\w*|_Exclude\w*Guard|DispatchKey|\._op\b",
    # kernels of one's own for torch's operators, hooks on every module
    "torch's operators or every module's hooks": r"torch\.library|\bLibrary\s*\(|register_module_\w+|_global_\w+hooks",
    # a function changed in place, found through the garbage collector or a closure
    "code objects, closures or the garbage collector": r"__(?:code|closure|defaults|kwdefaults|globals)__|cell_contents|"
                                                         r"\bgc\s*\.|\bimport\s+gc\b|\bco_\w*|['\"]co_",
    # an object turned into another class (the grading's reference) after it was built, or its
    # state replaced wholesale
    "an object's class or state swapped": r"__class__\s*=[^=]|['\"]__class__['\"]|__setstate__|\.__dict__\s*(?:\[|\.update\b)",
    "copying (deepcopy's tables)": r"_deepcopy_dispatch|\bcopyreg\b|__deepcopy__|__reduce(?:_ex)?__",
    "the standard output or the value printers": r"redirect_std(?:out|err)|\bsys\.(?:__)?std(?:out|err)\b|"
                                                 r"type_printers|\bfor_type\b",
    "builtins replaced": r"__builtins__|^\s*(?:def\s+__import__|__import__\s*=)",
    "ctypes": r"\bctypes\b",
    # a forbidden function traced in an earlier cell with its operators decomposed (make_fx): the
    # graph then runs only allowed operators
    "torch's tracers and decompositions": r"\bmake_fx\b|\btorch\.fx\b|symbolic_trace|\bGraphModule\b|_decomp\b|"
                                          r"\bget_decompositions\b|\b_refs\b|\b_prims\b|\btorch\.export\b",
    "a module's function replaced": r"^\s*(?:torch|nn|F|math|os|sys|copy|ast|json|importlib|builtins|minigpt|threading)"
                                    r"(?:\.\w+)+\s*=[^=]|\.(?:forward|__call__|__deepcopy__)\s*=[^=]",
    "the grader's files": r"hidden\.py|solutions\.py|\.ipynb|_classroom|gradebook|sqlite3|__file__|write_(?:text|bytes)",
    # the display nbgrader reads a score from, and the code of the cells that follow
    "IPython's display or input": r"get_ipython|InteractiveShell|ast_node_interactivity|input_transformers|"
                                  r"ast_transformers|display_formatter|displayhook|float_format|events\.register|"
                                  r"mimebundle|deferred_printers|ipython_display|"
                                  r"^\s*%(?:config|precision)\b",
    "signal handlers": r"signal\.(?:signal|setitimer|alarm)",
    # code the patterns above cannot read (built from a string at run time, or the package's own
    # read with getsource and changed), and Python's import system, which loads the grading
    # (and names built from pieces: "__" + "globals__", getattr(x, "co_" + "filename"))
    "code made at run time, or the import system": r"(?<![.\w])(?:exec|eval|compile)\s*\(|\b(?:base64|marshal|zlib)\b|"
                                                   r"__import__\s*\(|\bsys\.modules\b|['\"]__['\"]\s*\+|\+\s*['\"]\w*__['\"]|"
                                                   r"\bgetattr\s*\([^)]*\+|"
                                                   r"inspect\.getsource|\b(?:set|del)attr\s*\(|__(?:set|del)attr__\s*\(|\bmeta_path\b|"
                                                   r"\bpath_hooks\b|\bpath_importer_cache\b|\bimportlib\b",
    # work done where the grading's watch is not: a process started in an earlier cell and fed
    # through a pipe is not seen while grading runs (threads and started processes are)
    "threads, processes or queues": rf"\b(?:{_WORKERS})(?:\.\w|\s+import\b)|\bimport\s+(?:[\w.]+\s*,\s*)*(?:{_WORKERS})\b"
                                    rf"|__import__\(\s*['\"](?:{_WORKERS})|\bos\.(?:fork|system|popen|\w*spawn\w*|exec\w*)\b",
}


def _review_in_feedback(layout: dict) -> dict:
    """(student, assignment) -> what the hidden tests saw but could not judge (their feedback
    lines that start with REVIEW_MARK), read from the autograded notebooks."""
    found = {}
    for assignment, names in layout.items():
        for student_id in names:
            path = COURSE / "autograded" / student_id / assignment / f"{assignment}.ipynb"
            cells = _cells(path)
            if cells is None:
                continue            # not graded: its row says why
            lines = {line[len(REVIEW_MARK):].split(" (", 1)[0] for cell in cells for output in cell.get("outputs", [])
                     for line in "".join(output.get("text", "")).splitlines() if line.startswith(REVIEW_MARK)}
            if lines:
                found[(student_id, assignment)] = "review: the grading saw " + ", ".join(sorted(lines))
    return found


SCORE_LINE = re.compile(r"^Score: ([\d.]+) / ([\d.]+)$", re.MULTILINE)


def _shown_scores(path: Path) -> Optional[float]:
    """The notebook's score as its hidden tests printed it, counting a graded cell only when
    the value nbgrader reads from it (its execute_result) is the score it printed; None if the
    autograded notebook cannot be read. A notebook that hid or replaced that value (IPython's
    display changed) gets 0 for the cell, where nbgrader would give it full points."""
    cells = _cells(path)
    if cells is None:
        return None
    total = 0.0
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        outputs = cell.get("outputs", [])
        printed = SCORE_LINE.findall("".join("".join(o.get("text", "")) for o in outputs if o.get("output_type") == "stream"))
        results = [o for o in outputs if o.get("output_type") == "execute_result"]
        # one score line: a second one printed by the notebook's code (a display hook of its own)
        # would otherwise be the one read
        if len(printed) != 1 or len(results) != 1 or any(o.get("output_type") == "error" for o in outputs):
            continue
        try:
            shown = float("".join(results[0].get("data", {}).get("text/plain", "")))
        except ValueError:
            continue
        if abs(shown - float(printed[-1][0])) < 1e-9:
            total += shown
    return total


def _read_submissions(submitted: Path, layout: dict) -> tuple[dict, dict, set]:
    """Read every submission once: (student, assignment) -> why nbgrader cannot read it (not
    JSON, not a notebook; the others are left to nbgrader), (student, assignment) -> the
    REVIEW_PATTERNS found in the cells the student wrote (the solution cells, and cells the
    released notebook does not have), and the submissions whose solution cells are all as
    released (a 0 for no answer, not for a wrong one)."""
    import nbformat
    unreadable, review, as_released = {}, {}, set()
    every_release = released_cells()        # grade has just generated this release: it is in there
    for assignment, names in layout.items():
        released = every_release.get(assignment, set())
        for student_id in names:
            try:
                cells = nbformat.read(submitted / student_id / assignment / f"{assignment}.ipynb", as_version=4).cells
            except Exception as err:        # nbformat's NotJSONError, a validation error, a bad encoding
                unreadable[(student_id, assignment)] = f"not a readable notebook ({type(err).__name__}); ask for it again"
                continue
            solutions = [c for c in cells if c.metadata.get("nbgrader", {}).get("solution")]
            if solutions and all(_cell_hash(c.source) in released for c in solutions):
                as_released.add((student_id, assignment))
            theirs = "\n".join(c.source for c in cells if c.cell_type == "code"
                               and (c.metadata.get("nbgrader", {}).get("solution") or _cell_hash(c.source) not in released))
            hits = [what for what, pattern in REVIEW_PATTERNS.items() if re.search(pattern, theirs, re.MULTILINE)]
            if hits:
                review[(student_id, assignment)] = "review: the student's cells use " + ", ".join(hits)
    return unreadable, review, as_released


def autograde(student_id: str = ANSWER_KEY, submissions: Optional[Path] = None, jobs: int = 1) -> int:
    """Autograde `submissions/<chapter>.ipynb` (default: the full edition) as `student_id`;
    exit status 1 unless every chapter gets full marks."""
    import tempfile

    names = make_course()
    source = submissions or NOTEBOOKS
    with tempfile.TemporaryDirectory(dir=COURSE) as folder:
        for name in names:
            target = Path(folder) / student_id / name
            target.mkdir(parents=True)
            shutil.copy2(source / f"{name}.ipynb", target / f"{name}.ipynb")
        grade(Path(folder), jobs=jobs)
        with open(Path(folder) / "grades.csv", encoding="utf-8") as table:
            rows = [r for r in csv.DictReader(table) if r["student"] == student_id]
    short = []
    for row in rows:
        print(f"{row['assignment']}: {float(row['score']):g} / {float(row['max_score']):g}")
        if float(row["score"]) < float(row["max_score"]):
            short.append(row["assignment"])
    ungraded = sorted(set(names) - {row["assignment"] for row in rows})   # no row is no marks
    if ungraded:
        print("no grade in grades.csv for: " + ", ".join(ungraded))
    if short:
        print("not full marks: " + ", ".join(short))
    if short or ungraded:
        return 1
    print(f"full marks in all {len(names)} chapters with exercises")
    return 0


def play(students: Optional[list[str]] = None, chapters_wanted: Optional[set] = None, jobs: int = 1) -> int:
    """Play the students of issue 17 (grading/students.py) on every chapter through `grade`;
    exit status 1 unless each gets its fair score."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("classroom_students", GRADING / "students.py")
    players = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(players)
    names = [n for n in make_course() if chapters_wanted is None or n[:2] in chapters_wanted or n in chapters_wanted]
    for name in names:
        generate(name)
    played = COURSE / "played"
    shutil.rmtree(played, ignore_errors=True)
    helper = ""
    for name in names:
        full = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))
        release = json.loads((COURSE / "release" / name / f"{name}.ipynb").read_text(encoding="utf-8"))
        for cell in full["cells"]:
            if "def tiles_in_order(" in source_text(cell):
                helper = source_text(cell).split("\n\n\n")[0]
        for student_id in students or players.STUDENTS:
            notebook = players.submission(student_id, name, full, release, helper)
            if notebook is not None:
                folder = played / student_id / name
                folder.mkdir(parents=True)
                (folder / f"{name}.ipynb").write_text(json.dumps(notebook, ensure_ascii=False), encoding="utf-8")
    grade(played, jobs=jobs)
    wrong = []
    with open(played / "grades.csv", encoding="utf-8") as table:
        for row in csv.DictReader(table):
            if not (played / row["student"] / row["assignment"]).is_dir():
                continue                     # this student does not play this chapter
            fair = players.expected(row["student"], row["assignment"], float(row["max_score"]))
            mark = "ok" if abs(float(row["score"]) - fair) <= 0.02 else "WRONG"
            print(f"{mark:5} {row['assignment']:32} {row['student']:16} {float(row['score']):6.2f} "
                  f"(fair {fair:.2f} of {float(row['max_score']):g})")
            if mark != "ok":
                wrong.append(f"{row['student']} in {row['assignment']}")
    if wrong:
        print("not the fair score: " + ", ".join(wrong) + f" (feedback: {COURSE / 'autograded'})")
        return 1
    print(f"every student got the fair score in {len(names)} chapters")
    return 0


# ------------------------------------------------------------------ the stored outputs
EXPECTED = ROOT / "minigpt" / "exercises" / "expected"


def load_solutions():
    """grading/solutions.py, loaded by its path (it is not a package), with this checkout's minigpt."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("classroom_solutions", GRADING / "solutions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expected(check_only: bool) -> int:
    """Write the outputs the package stores (minigpt/exercises/expected/*.pt) from
    grading/solutions.py; a file whose outputs already agree (to the exercise's tolerance: a
    run on another CPU differs in the last bits) is left as it is. With --check, only report."""
    import torch

    from minigpt.exercises import EXERCISES

    solutions = load_solutions()
    EXPECTED.mkdir(exist_ok=True)
    wanted, problems, written = set(), [], []
    for exercise in EXERCISES:
        if not exercise.stored:
            continue
        path = EXPECTED / f"{exercise.stored}.pt"
        wanted.add(path.name)
        fresh = solutions.stored_outputs(exercise)
        old = torch.load(path, weights_only=True) if path.is_file() else None
        differ = [f"{path.name} is missing"] if old is None else solutions.disagreements(exercise, old, fresh)
        if not differ:
            continue
        if check_only:
            problems += differ
        else:
            torch.save(fresh, path)
            written.append(path.name)
    extra = sorted(p.name for p in EXPECTED.glob("*.pt") if p.name not in wanted)
    if check_only:
        problems += [f"{name} belongs to no exercise" for name in extra]
        for problem in problems:
            print("out of date:", problem)
        if problems:
            print("run: python tools/classroom.py expected")
            return 1
        print(f"up to date ({len(wanted)} files)")
        return 0
    for name in extra:
        (EXPECTED / name).unlink()
    print(f"{len(wanted)} files in {EXPECTED}: written {', '.join(written) or 'none'}"
          + (f"; removed {', '.join(extra)}" if extra else ""))
    return 0


CATALOGUE_START = "<!-- mistake catalogue: written by `python tools/classroom.py catalogue`; do not edit -->"
CATALOGUE_END = "<!-- end of mistake catalogue -->"
GUIDE = ROOT / "book" / "instructor_guide.md"


def catalogue_markdown(lang: str = "en") -> str:
    """Every exercise and the mistakes its check names, by chapter, as Markdown: in English, or
    in Chinese (`lang="zh"`) with the names and hints the checks print there (minigpt/locale/zh),
    so that a teacher finds a student's feedback sentence word for word."""
    import inspect

    from minigpt.exercises import EXERCISES
    from minigpt.language import language, set_language, tr

    words = {"en": ("**Chapter {n}**", "- *{name}* ({k} mistakes):", "  - `{key}`: {hint}",
                    "{n} exercises, {total} catalogued mistakes."),
             "zh": ("**第 {n} 章**", "- *{name}*（{k} 种错误）：", "  - `{key}`：{hint}",
                    "共 {n} 个练习，收录了 {total} 种错误。")}[lang]
    before = language()
    set_language(lang)
    try:
        lines, chapter = [], None
        for exercise in EXERCISES:
            module = inspect.getmodule(exercise.cases).__name__.rsplit(".", 1)[-1]   # chNN_topic
            number = int(module[2:4])
            if number != chapter:
                chapter = number
                lines += ["", words[0].format(n=number), ""]
            lines.append(words[1].format(name=tr(exercise.name), k=len(exercise.mistakes)))
            lines += [words[2].format(key=m.key, hint=tr(m.hint)) for m in exercise.mistakes]
    finally:
        set_language(before)
    total = sum(len(e.mistakes) for e in EXERCISES)
    head = words[3].format(n=len(EXERCISES), total=total)
    return "\n".join([CATALOGUE_START, "", head, *lines, "", CATALOGUE_END])


def _with_catalogue(text: str, lang: str) -> str:
    if CATALOGUE_START not in text or CATALOGUE_END not in text:
        raise SystemExit(f"no catalogue markers ({CATALOGUE_START!r} ... {CATALOGUE_END!r}) in the {lang} guide.")
    before, rest = text.split(CATALOGUE_START, 1)
    return before + catalogue_markdown(lang) + rest.split(CATALOGUE_END, 1)[1]


def catalogue(check_only: bool) -> int:
    """Write the catalogue into the instructor guide and into its Chinese translation (and
    zh/book's page built from it), or, with --check, report drift."""
    sys.path.insert(0, str(ROOT / "tools"))
    import zh_edition

    stale = []
    text = GUIDE.read_text(encoding="utf-8")
    new = _with_catalogue(text, "en")
    if new != text:
        stale.append(GUIDE.name)
        if not check_only:
            GUIDE.write_text(new, encoding="utf-8")
    path = zh_edition.translation_file(GUIDE.stem)
    units = zh_edition.read_translation(path)
    where = [i for i, u in enumerate(units) if CATALOGUE_START in u.chinese]
    if len(where) != 1:
        raise SystemExit(f"{path} must hold the catalogue markers in exactly one unit, found {len(where)}.")
    unit = units[where[0]]
    chinese = _with_catalogue(unit.chinese, "zh")
    if chinese != unit.chinese:
        stale.append(path.name + " (中文)")
        if not check_only:
            unit.chinese = chinese
            zh_edition.write_translation(path, units)
            zh_edition.build(only=[GUIDE.stem])      # zh/book/instructor_guide.md from it
    if not stale:
        print("up to date")
        return 0
    if check_only:
        print(f"the mistake catalogue is out of date in {', '.join(stale)}: run python tools/classroom.py catalogue")
        return 1
    print(f"catalogue written into {', '.join(stale)}")
    return 0


def course_lock():
    """Hold the course folder for one command: `student`, `grade`, `play` and `autograde` each
    rewrite its nbgrader_config.py and released_cells.json, write its gradebook.db, and put the
    gradebook back from their own copy when they fail, so two at once in one folder would undo
    each other's work. A second one is refused with the holder's PID (the lock is the
    kernel's: it goes with the process, however that ends)."""
    COURSE.mkdir(parents=True, exist_ok=True)
    return run_lock(COURSE, holder="another tools/classroom.py command (make student, make grade, make classroom)",
                    fix="wait for it to finish, or give this one a course folder of its own (--course DIR)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tag_parser = sub.add_parser("tag", help="write nbgrader cell metadata into notebooks/*.ipynb")
    tag_parser.add_argument("--check", action="store_true", help="only report notebooks that need it")
    student_parser = sub.add_parser("student", help="make the student edition in _classroom/release/")
    student_parser.add_argument("--run", action="store_true",
                                help="also execute it and check that every exercise is still open")
    submit_parser = sub.add_parser("grade", help="autograde SUBMITTED/<student>/<assignment>/<assignment>.ipynb "
                                   "and write SUBMITTED/grades.csv")
    submit_parser.add_argument("submitted", type=Path, help="nbgrader's submitted folder")
    submit_parser.add_argument("--timeout", type=int, help="seconds a cell may run (default: sized per chapter)")
    submit_parser.add_argument("--roster", type=Path, help="the class list: one student id per line, or "
                               "nbgrader's student CSV (an `id` column); everyone on it gets a row")
    for shaped in (student_parser, submit_parser):
        shaped.add_argument("--only", help="comma-separated exercises to grade (e.g. my_softmax,check_causal_mask); "
                            "the others become ungraded practice")
        shaped.add_argument("--weights", help="points per exercise, e.g. my_softmax=2,my_attention=3 (default 1)")
    grade_parser = sub.add_parser("autograde", help="autograde the full edition; exit 1 unless full marks")
    grade_parser.add_argument("--student", default=ANSWER_KEY, help="the student id to grade as")
    grade_parser.add_argument("--submissions", type=Path, help="folder of submitted chapters "
                              "(default: the full edition in notebooks/)")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="folder of the chapters")
    parser.add_argument("--course", type=Path, help="the nbgrader course folder to write (default _classroom/; "
                        "_classroom_check/ for play and autograde, whose students are made up)")
    play_parser = sub.add_parser("play", help="grade issue 17's students (grading/students.py) on every chapter; "
                                 "exit 1 unless each gets the fair score")
    play_parser.add_argument("--students", help="comma-separated subset of the students")
    play_parser.add_argument("--chapters", help="comma-separated chapter numbers (e.g. 03,04)")
    for parallel in (submit_parser, grade_parser, play_parser):
        parallel.add_argument("--jobs", type=int, default=1,
                              help=f"notebooks graded at once, each kernel with its share of the cores "
                                   f"(default 1; at most the whole CPUs, about {JOB_MEMORY_MIB} MiB each)")
    catalogue_parser = sub.add_parser("catalogue", help="write the mistake catalogue into book/instructor_guide.md")
    catalogue_parser.add_argument("--check", action="store_true", help="only report whether it is out of date")
    expected_parser = sub.add_parser("expected", help="write the outputs the package stores "
                                     "(minigpt/exercises/expected/) from grading/solutions.py")
    expected_parser.add_argument("--check", action="store_true", help="only report what is out of date")
    args = parser.parse_args(argv)
    set_folders(args.notebooks, args.course or (CHECK_COURSE if args.command in ("play", "autograde") else TEACHER_COURSE))
    try:
        if args.command == "tag":
            return tag(args.check)
        if args.command == "catalogue":
            return catalogue(args.check)
        if args.command == "expected":
            return expected(args.check)
        if getattr(args, "jobs", 1) != 1:         # before the course is made or a notebook runs
            check_jobs(args.jobs, whole_cpus(), available_memory_mib())
        with course_lock():
            if args.command in ("student", "grade"):
                only = {n.strip() for n in args.only.split(",") if n.strip()} if args.only else None
                weights = parse_weights(args.weights)
                if args.command == "student":
                    return student(args.run, only, weights)
                return grade(args.submitted, only, weights, args.timeout, args.roster, args.jobs)
            if args.command == "play":
                return play(args.students.split(",") if args.students else None,
                            set(args.chapters.split(",")) if args.chapters else None, args.jobs)
            return autograde(args.student, args.submissions, args.jobs)
    except MiniGPTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
