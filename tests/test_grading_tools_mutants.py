"""What a mutation review of the grading tools found unchecked: grading/execute.py's replay after
a dead kernel, `tools/classroom.py grade`'s rows (the roster, a score nbgrader read but the hidden
tests did not print, a previous run's feedback, a misnamed notebook, the teacher's --timeout, the
grader's files changed while grading), the nbgrader command's environment, `autograde` on a
chapter without a row, and the sync tools (tools/rerun_check.py, tools/zh_edition.py).

Each test calls the code directly with small made-up inputs (nbgrader, the kernel and the
gradebook replaced by fakes where the code would start them), so that the file runs in seconds;
tests/test_grading.py plays the real nbgrader pipeline."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import load_file_module

ROOT = Path(__file__).resolve().parents[1]


classroom = load_file_module("classroom_for_mutants", ROOT / "tools" / "classroom.py")
sys.path.insert(0, str(ROOT / "tools"))
import rerun_check  # noqa: E402
import zh_edition  # noqa: E402


# ------------------------------------------------------------------ grading/execute.py
def _executor():
    """A ResilientExecute (grading/execute.py) whose kernel is a recorder: no kernel starts."""
    pytest.importorskip("nbgrader", reason="the classroom extra: pip install -e '.[classroom]'")
    nbformat = pytest.importorskip("nbformat")
    execute = load_file_module("execute_for_mutants", ROOT / "grading" / "execute.py")
    ex = execute.ResilientExecute()
    grade = lambda **meta: {"nbgrader": meta}
    ex.nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 03 A chapter"),
        nbformat.v4.new_code_cell("import torch"),                                                    # 1
        nbformat.v4.new_code_cell("def my_f(x):\n    return x", metadata=grade(grade=False, solution=True)),  # 2
        nbformat.v4.new_code_cell("grade(my_f)", metadata=grade(grade=True, solution=False)),        # 3: a graded check
        nbformat.v4.new_code_cell("answer = my_f(2)", metadata=grade(grade=True, solution=True)),    # 4: answer and grade
        nbformat.v4.new_code_cell("helper = 3"),                                                     # 5
        nbformat.v4.new_code_cell("my_f(helper)"),                                                   # 6: the kernel dies here
        nbformat.v4.new_code_cell("print('after')"),                                                 # 7
    ])
    ex.replayed, ex.restarts = [], []
    ex._restart = lambda: ex.restarts.append(len(ex.replayed))
    return execute, ex


def test_a_dead_kernel_replays_every_code_cell_before_it_but_the_graded_checks():
    """After the kernel died in cell 6, the new kernel runs cells 1-5 again (the one just before
    the dead cell too: a later cell may need what it defines), the solution cells included, the
    graded checks not (they define nothing the rest needs and would print a grade again), each
    without adding to the kernel's history."""
    _, ex = _executor()

    def execute_cell(cell, index, store_history=True):
        ex.replayed.append((index, store_history))

    ex.execute_cell = execute_cell
    ex._replay(6)
    assert ex.replayed == [(1, False), (2, False), (4, False), (5, False)]
    assert ex.restarts == []


def test_the_cells_replayed_after_a_dead_kernel_keep_the_graded_runs_outputs(tmp_path):
    """nbclient's execute_cell stores the cell it ran back into the notebook: the replay of cell 0
    (in the new kernel) replaced the graded run's cell 0, so the student's feedback showed the
    replay's outputs before the dead cell. Runs two kernels (cell 1 kills the first): cell 0
    prints the first kernel's process id, cell 2 the second's."""
    nbformat = pytest.importorskip("nbformat")
    execute = _executor()[0]
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os\nprint(os.getpid())"),
        nbformat.v4.new_code_cell("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
        nbformat.v4.new_code_cell("print(os.getpid())"),
    ])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    graded, _ = execute.ResilientExecute(timeout=60).preprocess(notebook, {"metadata": {"path": str(tmp_path)}})
    first, died, after = graded.cells
    assert died.outputs[0]["ename"] == "DeadKernelError"
    assert first.outputs[0]["text"] != after.outputs[0]["text"], "cell 0 shows the replay's kernel"
    assert first.execution_count == 1


def test_a_kernel_that_dies_again_while_replaying_is_restarted_and_the_replay_stops():
    """The kernel died again in the replay (the earlier cell itself runs out of memory): a fresh
    kernel is started and nothing more is replayed, so that the later cells run in a live kernel."""
    execute, ex = _executor()

    def execute_cell(cell, index, store_history=True):
        ex.replayed.append(index)
        if index == 2:
            raise execute.DeadKernelError("died again")

    ex.execute_cell = execute_cell
    ex._replay(6)
    assert ex.replayed == [1, 2] and ex.restarts == [2]


def test_the_cell_a_kernel_dies_in_gets_an_error_and_the_rest_goes_on(monkeypatch):
    """The dead cell's output is an error (nbgrader gives a graded cell with no error its full
    points), a new kernel is started and the cells before it are replayed."""
    execute, ex = _executor()
    calls = []

    def dies(self, cell, resources, index):
        raise execute.DeadKernelError("Kernel died")

    monkeypatch.setattr(execute.Execute, "preprocess_cell", dies)
    ex._replay = lambda upto: calls.append(("replay", upto))
    ex._restart = lambda: calls.append(("restart",))
    ex.resources = {"marker": 1}
    cell = ex.nb.cells[6]
    returned, resources = ex.preprocess_cell(cell, {}, 6)
    assert returned is cell and resources == {"marker": 1}
    assert [o["output_type"] for o in cell.outputs] == ["error"]
    assert cell.outputs[0]["ename"] == "DeadKernelError" and "this cell scores 0" in cell.outputs[0]["evalue"]
    assert calls == [("restart",), ("replay", 6)]


def test_a_restart_stops_the_old_client_and_starts_a_new_one():
    """The restart kills the kernel at once, closes the old client's channels and opens a new
    client: without the new client every later cell would fail on a closed channel."""
    execute, ex = _executor()
    calls = []

    class Manager:
        async def restart_kernel(self, now=False):
            calls.append(("restart_kernel", now))

    async def new_client():
        calls.append(("new client",))

    ex.km = Manager()
    ex.kc = SimpleNamespace(stop_channels=lambda: calls.append(("stop_channels",)))
    ex.async_start_new_kernel_client = new_client
    execute.ResilientExecute._restart(ex)
    assert calls == [("restart_kernel", True), ("stop_channels",), ("new client",)]


# ------------------------------------------------------------------ tools/classroom.py grade
CH = "03_test"
SOLUTION = {"grade": False, "solution": True, "locked": False, "grade_id": f"{CH}-my_f", "schema_version": 3}
CHECK = {"grade": True, "solution": False, "locked": True, "points": 2.0, "grade_id": f"{CH}-check_f",
         "schema_version": 3}
RELEASED = "def my_f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"


def _notebook(solution: str) -> dict:
    nbformat = pytest.importorskip("nbformat")
    return json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 03 A chapter"),
        nbformat.v4.new_code_cell("import minigpt"),
        nbformat.v4.new_code_cell(solution, metadata={"nbgrader": SOLUTION}),
        nbformat.v4.new_code_cell("minigpt.exercises.check_f(my_f)", metadata={"nbgrader": CHECK}),
    ])))


def _feedback(path: Path, printed: float, shown: str) -> None:
    """An autograded notebook whose graded cell printed `Score: printed / 2` and showed `shown`."""
    cell = {"cell_type": "code", "metadata": {"nbgrader": CHECK}, "source": "", "execution_count": 3,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": f"Score: {printed:g} / 2\n"},
                        {"output_type": "execute_result", "data": {"text/plain": shown}, "metadata": {},
                         "execution_count": 3}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


@pytest.fixture
def fake_course(tmp_path, monkeypatch):
    """`grade` on one chapter, with nbgrader, its gradebook and the grader's files faked:
    what nbgrader scored (the gradebook) and what the feedback shows are set per student."""
    api = pytest.importorskip("nbgrader.api", reason="the classroom extra: pip install -e '.[classroom]'")
    repo, course, submitted = tmp_path / "repo", tmp_path / "course", tmp_path / "submitted"
    for name in ("minigpt/core.py", "grading/hidden.py"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("original")
    (repo / "notebooks").mkdir()
    monkeypatch.setattr(classroom, "ROOT", repo)
    monkeypatch.setattr(classroom, "GRADING", repo / "grading")
    monkeypatch.setattr(classroom, "NOTEBOOKS", repo / "notebooks")
    monkeypatch.setattr(classroom, "COURSE", course)
    release = _notebook(RELEASED)
    (course / "source" / CH).mkdir(parents=True)
    (course / "source" / CH / f"{CH}.ipynb").write_text(json.dumps(release))
    (course / classroom.RELEASED_CELLS).write_text(json.dumps(
        {CH: [classroom._cell_hash(classroom.source_text(c)) for c in release["cells"]]}))
    state = SimpleNamespace(gradebook={}, feedback={}, calls=[], tamper=False, submitted=submitted)

    def hand_in(student: str, solution: str = RELEASED, name: str = f"{CH}.ipynb") -> None:
        (submitted / student / CH).mkdir(parents=True, exist_ok=True)
        (submitted / student / CH / name).write_text(json.dumps(_notebook(solution)))

    def nbgrader(*args, force=True, check=True):
        state.calls.append(args)
        if args[0] == "autograde":
            for student, (printed, shown) in state.feedback.items():
                _feedback(course / "autograded" / student / CH / f"{CH}.ipynb", printed, shown)
            if state.tamper:     # a student's cell rewrote the grading
                (repo / "grading" / "hidden.py").write_text("def grade(*a, **k): return 2")
        return 0

    class Gradebook:
        def __init__(self, url):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update_or_create_student(self, student_id):
            pass

        def find_assignment(self, name):
            return SimpleNamespace(max_score=2.0)

        def find_submission(self, assignment, student_id):
            if student_id not in state.gradebook:
                raise api.MissingEntry()
            return SimpleNamespace(score=state.gradebook[student_id])

    monkeypatch.setattr(classroom, "nbgrader", nbgrader)
    monkeypatch.setattr(classroom, "generate", lambda assignment: None)
    monkeypatch.setattr(api, "Gradebook", Gradebook)
    state.hand_in = hand_in
    return state


def _rows(submitted: Path) -> dict[str, dict]:
    with open(submitted / "grades.csv", encoding="utf-8") as table:
        return {row["student"]: row for row in csv.DictReader(table)}


def test_grade_gives_every_student_the_row_they_earned(fake_course, tmp_path, capsys):
    """The rows a teacher reads: a full score; a score nbgrader read but the hidden tests did not
    print (the display was forged) cut to the printed one; a previous run's feedback is no grade
    of this run; a misnamed notebook named; an untouched release told apart; a student on the
    roster who handed in nothing, and a folder not on the roster, each with a row."""
    answer = "def my_f(x):\n    return x"
    for student in ("ana", "bo", "cy", "zed"):
        fake_course.hand_in(student, answer)
    fake_course.hand_in("dee")                                    # the release, handed back
    fake_course.hand_in("fay", answer, name=f"{CH}-Copy1.ipynb")  # nbgrader grades nothing there
    fake_course.gradebook.update(ana=2.0, bo=2.0, cy=2.0, dee=0.0, zed=1.0)
    fake_course.feedback.update(ana=(2, "2.0"), bo=(0, "2.0"), dee=(0, "0.0"), zed=(1, "1.0"))
    # cy: nbgrader failed on this run and left the feedback of an earlier one
    _feedback(classroom.COURSE / "autograded" / "cy" / CH / f"{CH}.ipynb", 2, "2.0")
    old = time.time() - 3600
    os.utime(classroom.COURSE / "autograded" / "cy" / CH / f"{CH}.ipynb", (old, old))
    roster = tmp_path / "roster.txt"
    roster.write_text("ana\nbo\ncy\ndee\neve\nfay\n")
    assert classroom.grade(fake_course.submitted, timeout=7, roster=roster) == 1     # cy and fay are not graded
    rows = _rows(fake_course.submitted)
    got = {s: (float(r["score"]), float(r["max_score"])) for s, r in rows.items()}
    assert got == {"ana": (2, 2), "bo": (0, 2), "cy": (0, 2), "dee": (0, 2), "eve": (0, 2), "fay": (0, 2), "zed": (1, 2)}
    assert rows["ana"]["note"] == ""
    assert "the hidden tests printed 0" in rows["bo"]["note"]
    assert rows["cy"]["note"].startswith("nbgrader could not grade it")
    assert rows["dee"]["note"] == "handed in as released: no answer written"
    assert rows["eve"]["note"] == "no submission"
    assert rows["fay"]["note"].startswith(f"handed in {CH}-Copy1.ipynb, not {CH}.ipynb")
    assert rows["zed"]["note"].startswith("not on the roster")
    assert not any("roster" in rows[s]["note"] for s in ("ana", "bo", "cy", "dee", "eve", "fay"))
    out = capsys.readouterr().out
    assert f"NOT GRADED (0 in grades.csv) cy/{CH}" in out and f"NOT GRADED (0 in grades.csv) fay/{CH}" in out
    # the teacher's --timeout is the limit nbgrader runs each cell under
    assert [c for c in fake_course.calls if c[0] == "autograde"] == [("autograde", CH, "--ResilientExecute.timeout=7")]


def test_grade_writes_no_grades_when_a_student_rewrote_the_grading(fake_course):
    """A cell that rewrote grading/hidden.py while the notebooks ran would pass every later
    answer: `grade` refuses to write grades.csv."""
    fake_course.hand_in("ana", "def my_f(x):\n    return x")
    fake_course.gradebook["ana"] = 2.0
    fake_course.feedback["ana"] = (2, "2.0")
    fake_course.tamper = True
    with pytest.raises(classroom.MiniGPTError, match=r"changed while the notebooks ran: grading/hidden\.py"):
        classroom.grade(fake_course.submitted)
    assert not (fake_course.submitted / "grades.csv").exists()


def test_nbgrader_runs_without_minigpt_grading_and_with_this_pythons_tools(monkeypatch, tmp_path):
    """The grade must not depend on MINIGPT_GRADING, so nbgrader's kernels never see it; and
    nbgrader finds `alembic` and the kernel in this Python's folder first."""
    seen = {}

    def run(command, cwd, env):
        seen.update(command=command, env=env)
        return SimpleNamespace(returncode=0)

    monkeypatch.setattr(classroom, "COURSE", tmp_path)
    monkeypatch.setattr(classroom.subprocess, "run", run)
    monkeypatch.setenv("MINIGPT_GRADING", "1")
    monkeypatch.setenv("PATH", "/usr/bin")
    assert classroom.nbgrader("autograde", CH) == 0
    assert "MINIGPT_GRADING" not in seen["env"]
    assert seen["env"]["PATH"].split(os.pathsep)[:2] == [str(Path(sys.executable).parent), "/usr/bin"]
    assert seen["command"] == [sys.executable, "-m", "nbgrader", "autograde", CH, "--force"]


def test_autograde_is_not_full_marks_when_a_chapter_has_no_row(monkeypatch, tmp_path, capsys):
    """`make autograde` must fail when grading wrote no row for a chapter: a missing row is no
    marks, not full marks."""
    (tmp_path / "nb").mkdir()
    for name in ("03_a", "04_b"):
        (tmp_path / "nb" / f"{name}.ipynb").write_text("{}")
    monkeypatch.setattr(classroom, "NOTEBOOKS", tmp_path / "nb")
    monkeypatch.setattr(classroom, "COURSE", tmp_path / "course")
    (tmp_path / "course").mkdir()
    monkeypatch.setattr(classroom, "make_course", lambda: ["03_a", "04_b"])

    def grade(folder, **options):
        (folder / "grades.csv").write_text("student,assignment,score,max_score,note\n"
                                           "answer-key,03_a,2.0,2.0,\n")
    monkeypatch.setattr(classroom, "grade", grade)
    assert classroom.autograde() == 1
    assert "no grade in grades.csv for: 04_b" in capsys.readouterr().out


def test_a_roster_row_without_the_id_column_is_skipped(tmp_path):
    """A spreadsheet export drops the empty cells at a row's end: a row that stops before the
    `id` column names no student (it must neither stop the grading nor add a student)."""
    path = tmp_path / "roster.csv"
    path.write_text("name,id\nAna Lima,ana\nBo Ng\ncy name,cy\n", encoding="utf-8")
    assert classroom.read_roster(path) == ["ana", "cy"]


def test_a_csv_roster_of_the_id_column_alone_is_read_as_a_csv(tmp_path):
    """nbgrader's student CSV with only its `id` column has no comma: its header is not a student
    (who would get a 'no submission' row in every chapter)."""
    path = tmp_path / "roster.csv"
    path.write_text("id\nana\nbo\n", encoding="utf-8")
    assert classroom.read_roster(path) == ["ana", "bo"]
    path.write_text("ID\r\nana\r\n", encoding="utf-8")
    assert classroom.read_roster(path) == ["ana"]


def test_tag_check_reports_an_untagged_chapter_and_changes_nothing(tmp_path, monkeypatch, capsys):
    """`tag --check` (CI) only reports: the chapter without nbgrader metadata is named and left
    as it is; `tag` then writes it."""
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("def my_f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION"),
        nbformat.v4.new_code_cell("minigpt.exercises.check_f(my_f)")])
    path = tmp_path / "03_a.ipynb"
    nbformat.write(notebook, path)
    before = path.read_bytes()
    monkeypatch.setattr(classroom, "NOTEBOOKS", tmp_path)
    assert classroom.tag(check_only=True) == 1
    assert "nbgrader metadata out of date in: 03_a.ipynb" in capsys.readouterr().out
    assert path.read_bytes() == before
    assert classroom.tag(check_only=False) == 0 and classroom.tag(check_only=True) == 0


def test_expected_writes_what_is_out_of_date_and_check_only_reports_it(tmp_path, monkeypatch, capsys):
    """`expected --check` names a missing stored output and one no exercise owns, and writes
    nothing; `expected` writes the missing one, removes the orphan and leaves an agreeing file
    alone; then --check finds nothing."""
    torch = pytest.importorskip("torch")
    import minigpt.exercises as exercises
    outputs = {"a": torch.tensor([1.0]), "b": torch.tensor([2.0])}
    solutions = SimpleNamespace(
        stored_outputs=lambda exercise: {"out": outputs[exercise.stored]},
        disagreements=lambda exercise, old, fresh: [] if torch.equal(old["out"], fresh["out"])
        else [f"{exercise.stored}.pt differs"])
    monkeypatch.setattr(classroom, "EXPECTED", tmp_path)
    monkeypatch.setattr(classroom, "load_solutions", lambda: solutions)
    monkeypatch.setattr(exercises, "EXERCISES", [SimpleNamespace(stored="a"), SimpleNamespace(stored="b"),
                                                 SimpleNamespace(stored=None)])
    torch.save({"out": torch.tensor([1.0])}, tmp_path / "a.pt")
    torch.save({}, tmp_path / "orphan.pt")
    old = time.time() - 3600
    os.utime(tmp_path / "a.pt", (old, old))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert classroom.expected(check_only=True) == 1
    out = capsys.readouterr().out
    assert "out of date: b.pt is missing" in out and "out of date: orphan.pt belongs to no exercise" in out
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert classroom.expected(check_only=False) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]
    assert (tmp_path / "a.pt").stat().st_mtime == old
    assert torch.equal(torch.load(tmp_path / "b.pt", weights_only=True)["out"], outputs["b"])
    assert classroom.expected(check_only=True) == 0


# ------------------------------------------------------------------ tools/rerun_check.py
def test_a_name_the_cell_found_missing_is_not_counted_as_changed():
    """Cell 1 defines a function that reads `w`, which later cells define: running cell 1 again
    works, so it is not reported. A cell that read `w` when a later cell rebinds it is."""
    sources = {1: "def f():\n    return w", 2: "w = 3", 3: "w = 4"}
    before = [{}, {"f": "id:1"}, {"f": "id:1", "w": "3"}]          # the namespace before cells 1, 2, 3
    end = {"f": "id:1", "w": "4"}
    assert rerun_check.changed_reads(sources, before, end) == []
    sources = {1: "w = 3", 2: "print(w)", 3: "w = 4"}
    before = [{}, {"w": "3"}, {"w": "3"}]
    assert rerun_check.changed_reads(sources, before, {"w": "4"}) == [(2, ["w"])]


def test_shell_lines_are_left_out_before_parsing():
    """`!pip install ...` is IPython, not Python: the cell is still read."""
    assert rerun_check.names_read_from_outside("!pip install minigpt\ny = z + 1") == {"z"}


def test_lists_are_compared_by_their_values(tmp_path):
    """A list a later cell appends to is changed (the same object, other values); a list built
    again with the same values is not (another object, the same values). Runs a kernel."""
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in (
        "xs = [1, 2]\nys = [0]", "print(xs, ys)", "xs = [1, 2]\nys.append(1)")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "chapter.ipynb"
    nbformat.write(notebook, path)
    assert rerun_check.changed_reads(*rerun_check.fingerprints_per_cell(path, 60)) == [(1, ["ys"])]


# ------------------------------------------------------------------ tools/zh_edition.py
def _zh_repo(tmp_path: Path, english: str, units: list) -> Path:
    (tmp_path / "book").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "book" / "page.md").write_text(english, encoding="utf-8")
    zh_edition.write_translation(zh_edition.translation_file("page", tmp_path), units)
    return tmp_path


def test_stale_counts_a_section_added_to_the_page(tmp_path):
    """A section added at the end of the English page has no unit: the page is not in sync
    (the units that are there all match, so only the count tells)."""
    Unit = zh_edition.Unit
    repo = _zh_repo(tmp_path, "# Page\n\nText.\n\n## New part\n\nMore text.\n",
                    [Unit("# Page\n\nText.\n\n", "# 页面\n\n正文。\n\n")])
    issues = zh_edition.problems(repo)["page"]
    assert issues == ["1 units but the page has 2 (run `refresh page`)"]


def test_stale_names_untranslated_and_unchinese_units(tmp_path):
    """A unit whose Chinese is blank is untranslated; one whose "Chinese" is English copied over
    has no Chinese: both keep the edition out of sync."""
    Unit = zh_edition.Unit
    repo = _zh_repo(tmp_path, "# Page\n\nText here.\n\n## Part\n\nMore text.\n",
                    [Unit("# Page\n\nText here.\n\n", "  \n"), Unit("## Part\n\nMore text.\n", "## Part\n\nMore text.\n")])
    issues = zh_edition.problems(repo)["page"]
    assert issues == ["unit 0: untranslated: # Page", "unit 1: the Chinese part has no Chinese"]
    with pytest.raises(SystemExit, match="not in sync"):      # and `build` refuses it
        zh_edition.build(repo)
    assert not (repo / "zh" / "book" / "page.md").exists()


def test_refresh_of_a_unit_split_in_two_leaves_both_untranslated():
    """B was rewritten as two sections: the old B's Chinese fits neither, so both are new
    (untranslated) and the units line up with the page again."""
    Unit = zh_edition.Unit
    units = zh_edition.realign([Unit("A", "甲"), Unit("B", "乙"), Unit("C", "丙")], ["A", "B1", "B2", "C"])
    assert [(u.english, u.chinese) for u in units] == [("A", "甲"), ("B1", ""), ("B2", ""), ("C", "丙")]


def test_build_keeps_the_zh_outputs_of_unchanged_cells_only():
    """A code cell whose source changed takes the English notebook's outputs, not the zh run's
    outputs of the old code."""
    new = {"cells": [{"cell_type": "code", "id": "a", "source": ["x = 1"], "outputs": ["en a"], "execution_count": 1},
                     {"cell_type": "code", "id": "b", "source": ["y = 2"], "outputs": ["en b"], "execution_count": 2}]}
    old = {"cells": [{"cell_type": "code", "id": "a", "source": ["x = 1"], "outputs": ["zh a"], "execution_count": 5},
                     {"cell_type": "code", "id": "b", "source": ["y = 1"], "outputs": ["zh b"], "execution_count": 6}]}
    zh_edition.keep_outputs(new, old)
    assert [(c["outputs"], c["execution_count"]) for c in new["cells"]] == [(["zh a"], 5), (["en b"], 2)]


def test_code_drift_sees_a_changed_tag_not_a_new_run(tmp_path):
    """A zh notebook whose cell lost a tag (`hide-cell`) is not what the build makes; one only
    run again (outputs, execution timestamps) is."""
    nbformat = pytest.importorskip("nbformat")
    (tmp_path / "book").mkdir()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A chapter"),
                                               nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["hide-cell"]})])
    (tmp_path / "notebooks").mkdir()
    nbformat.write(notebook, tmp_path / "notebooks" / "01_a.ipynb")
    zh_edition.write_translation(zh_edition.translation_file("01_a", tmp_path), [zh_edition.Unit("# A chapter", "# 一章")])
    [built] = zh_edition.build(tmp_path)
    assert zh_edition.code_drift(tmp_path) == []
    zh = json.loads(built.read_text(encoding="utf-8"))
    zh["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "1"}]
    zh["cells"][1]["metadata"]["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00Z"}
    built.write_text(json.dumps(zh), encoding="utf-8")
    assert zh_edition.code_drift(tmp_path) == []
    zh["cells"][1]["metadata"]["tags"] = []
    built.write_text(json.dumps(zh), encoding="utf-8")
    assert len(zh_edition.code_drift(tmp_path)) == 1
