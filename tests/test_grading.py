"""The graded course (issue 17): the students of the issue's table, played through the real
nbgrader pipeline (`tools/classroom.py grade`, what `make grade` runs) on chapter 3, and the
hidden tests' parts on their own. `make classroom` plays them on every chapter."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("classroom_for_grading", ROOT / "tools" / "classroom.py")
classroom = importlib.util.module_from_spec(spec)
spec.loader.exec_module(classroom)
CHAPTER = "03_causal_mask"
_players = importlib.util.spec_from_file_location("students_for_grading", ROOT / "grading" / "students.py")
players = importlib.util.module_from_spec(_players)
_players.loader.exec_module(players)
WORKER = players.WORKER

MASK = '''def my_causal_mask(T, S):
    """(T, S) bool, True where query i (at position S - T + i) may look at key j."""
{body}'''
ATTENTION = '''def my_attention(q, k, v):
    """Causal scaled dot-product attention: (B, H, T, D) -> (B, H, T, D)."""
{body}'''
RIGHT_MASK = "    return torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T)"
RIGHT_ATTENTION = '''    T, D = q.size(-2), q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)
    scores = scores.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
    return torch.exp(scores - scores.amax(-1, keepdim=True)) @ v / torch.exp(
        scores - scores.amax(-1, keepdim=True)).sum(-1, keepdim=True)'''
BLANK = "    raise NotImplementedError()"

# student -> (mask cell, attention cell, expected (mask points, attention points), words the feedback must hold)
STUDENTS = {
    "blank": (MASK.format(body=BLANK), ATTENTION.format(body=BLANK), (0, 0), ["not implemented"]),
    "env-switch": ('import os\nos.environ["MINIGPT_GRADING"] = "0"\n' + MASK.format(body=BLANK),
                   ATTENTION.format(body=BLANK), (0, 0), []),
    "monkeypatch": ("minigpt.exercises.check_causal_mask = lambda *a, **k: None\n"
                    "minigpt.exercises.check_causal_attention = lambda *a, **k: None\n"
                    "torch.allclose = lambda *a, **k: True\n"
                    + MASK.format(body="    return torch.zeros(T, S, dtype=torch.bool)"),
                    ATTENTION.format(body="    return v"), (0, 0), ["torch.allclose was replaced"]),
    "package-direct": (MASK.format(body="    return minigpt.causal_mask(T, S)"),
                       ATTENTION.format(body="    return minigpt.manual_attention(q, k, v)"), (0, 0),
                       ["causal_mask (minigpt/attention.py)", "manual_attention (minigpt/attention.py)"]),
    "package-aliased": ("import importlib as _il\n_helper = getattr(_il.import_module('minigpt.attention'), "
                        "'causal' + '_mask')\n" + MASK.format(body="    return _helper(T, S)"),
                        "from torch.nn.functional import scaled_dot_product_attention as _fast\n"
                        + ATTENTION.format(body="    return _fast(q, k, v, is_causal=True)"), (0, 0),
                        ["causal_mask (minigpt/attention.py)", "scaled_dot_product_attention"]),
    # the visible check's inputs, memorised: it passes the visible check, not the hidden test
    "lookup-table": ("_seen = {(c.args[0], c.args[1]): torch.ones(c.args[0], c.args[1], dtype=torch.bool)"
                     ".tril(c.args[1] - c.args[0]) for c in minigpt.exercises.CAUSAL_MASK.cases()}\n"
                     + MASK.format(body="    return _seen.get((T, S), torch.zeros(T, S, dtype=torch.bool))"),
                     "_answers = {round(c.args[0].sum().item(), 4): minigpt.exercises.CAUSAL_ATTENTION.reference("
                     "*c.args) for c in minigpt.exercises.CAUSAL_ATTENTION.cases()}\n"
                     + ATTENTION.format(body="    return _answers.get(round(q.sum().item(), 4), torch.zeros_like(v))"), (0, 0), []),
    # partly right: the mask ignores the cached keys (right in the one case of four where T == S),
    # the attention is not scaled (right only for T = 1, where one weight is 1 whatever the scale:
    # v returned unchanged is right there too, so that case counts only beside one that takes work)
    "partly-right": (MASK.format(body="    return torch.ones(T, S, dtype=torch.bool).tril()"),
                     ATTENTION.format(body=RIGHT_ATTENTION.replace(" / math.sqrt(D)", "")), (0.25, 0),
                     ["Likely mistake", "sqrt(D)", "they count beside a case that takes work"]),
    "right-by-hand": (MASK.format(body=RIGHT_MASK), ATTENTION.format(body=RIGHT_ATTENTION), (1, 1), []),
    # the package's functions, called by a worker thread the first cell started (grading/students.py)
    "worker-thread": (WORKER + MASK.format(body="    return _elsewhere(lambda: minigpt.causal_mask(T, S))"),
                      ATTENTION.format(body="    return _elsewhere(lambda: minigpt.manual_attention(q, k, v))"),
                      (0, 0), ["a thread your notebook started earlier"]),
}


def load_hidden():
    spec = importlib.util.spec_from_file_location("hidden_for_tests", ROOT / "grading" / "hidden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def release_notebook(course: Path) -> dict:
    return json.loads((course / "release" / CHAPTER / f"{CHAPTER}.ipynb").read_text(encoding="utf-8"))


def submit(notebook: dict, cells: dict[str, str], folder: Path, student: str) -> None:
    """The student edition with the solution cells (by grade id) written as the student did."""
    notebook = json.loads(json.dumps(notebook))
    for cell in notebook["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in cells:
            cell["source"] = cells[grade_id]
    target = folder / student / CHAPTER
    target.mkdir(parents=True)
    (target / f"{CHAPTER}.ipynb").write_text(json.dumps(notebook), encoding="utf-8")


_FREE_MIB = classroom.available_memory_mib()
JOBS = 2 if classroom.whole_cpus() >= 2 and (_FREE_MIB is None or _FREE_MIB >= 2 * classroom.JOB_MEMORY_MIB) else 1


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Chapter 3's course made, the students submitted, `grade` run once for all of them."""
    pytest.importorskip("nbgrader", reason="the classroom extra: pip install -e '.[classroom]'")
    tmp = tmp_path_factory.mktemp("graded")
    (tmp / "nb").mkdir()
    shutil.copy2(ROOT / "notebooks" / f"{CHAPTER}.ipynb", tmp / "nb")
    classroom.set_folders(tmp / "nb", tmp / "course")
    assert classroom.student() == 0
    released = release_notebook(tmp / "course")
    submitted = tmp / "submitted"
    for student, (mask, attention, _, _) in STUDENTS.items():
        submit(released, {f"{CHAPTER}-my_causal_mask": mask, f"{CHAPTER}-my_attention": attention},
               submitted, student)
    key = submitted / "answer-key" / CHAPTER
    key.mkdir(parents=True)
    shutil.copy2(ROOT / "notebooks" / f"{CHAPTER}.ipynb", key)
    # a notebook of an earlier release (the book updated since): its changed install cell, which
    # runs pip through subprocess, is the release's, not the student's
    old = json.loads(json.dumps(released))
    install = next(c for c in old["cells"] if "MINIGPT_SOURCE" in classroom.source_text(c))
    install["source"] = classroom.source_text(install).replace("@v", "@v0.0.9-was-")
    record = tmp / "course" / classroom.RELEASED_CELLS
    known = json.loads(record.read_text())
    record.write_text(json.dumps({CHAPTER: known[CHAPTER] + [classroom._cell_hash(install["source"])]}))
    submit(old, {f"{CHAPTER}-my_causal_mask": MASK.format(body=BLANK)}, submitted, "old-release")
    submit(released, {}, submitted, "untouched")          # the release handed back as it came
    # the right notebook and a copy beside it; and a student with only a chapter never released
    shutil.copy2(submitted / "blank" / CHAPTER / f"{CHAPTER}.ipynb", submitted / "blank" / CHAPTER / f"{CHAPTER}-Copy1.ipynb")
    (submitted / "erin" / "04_multi_head_attention").mkdir(parents=True)
    shutil.copy2(ROOT / "notebooks" / "04_multi_head_attention.ipynb", submitted / "erin" / "04_multi_head_attention")
    # the class list: every student, and one who handed nothing in; the answer key is not on it
    (tmp / "roster.txt").write_text("# spring class\n" + "\n".join([*STUDENTS, "dana-absent", "erin", "old-release", "untouched"]) + "\n")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        # two notebooks at a time (one where the machine has not the cores or memory for two):
        # every score below holds with nbgrader processes side by side on one gradebook
        assert classroom.grade(submitted, roster=tmp / "roster.txt", jobs=JOBS) == 1  # erin's chapter 4 is not graded
    assert "NOT GRADED (no row in grades.csv) erin/04_multi_head_attention: no such assignment" in printed.getvalue()
    assert JOBS == 1 or re.search(r"graded \d+ notebooks in \d+ s, 2 at a time", printed.getvalue())
    with open(submitted / "grades.csv", encoding="utf-8") as table:
        rows = {r["student"]: r for r in csv.DictReader(table)}
    return tmp, rows


def feedback(tmp: Path, student: str) -> list[str]:
    """The text each graded cell of a student's autograded notebook printed, in order."""
    notebook = json.loads((tmp / "course" / "autograded" / student / CHAPTER / f"{CHAPTER}.ipynb").read_text())
    out = []
    for cell in notebook["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            out.append("".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                               + " ".join(o.get("traceback", [])) for o in cell.get("outputs", [])))
    return out


def test_grades_csv_has_one_row_per_student(graded):
    _, rows = graded
    assert set(rows) == set(STUDENTS) | {"answer-key", "dana-absent", "erin", "old-release", "untouched"}
    assert all(r["assignment"] == CHAPTER and float(r["max_score"]) == 2 for r in rows.values())
    # on the roster, nothing handed in: a row with 0; handed in, not on the roster: named
    assert (rows["dana-absent"]["score"], rows["dana-absent"]["note"]) == ("0.0", "no submission")
    assert "not on the roster" in rows["answer-key"]["note"]
    assert not any("roster" in rows[student]["note"] for student in STUDENTS)
    # a student known here (a folder) without this chapter: a row all the same
    assert (rows["erin"]["score"], rows["erin"]["note"]) == ("0.0", "no submission")
    # an earlier release's cells are not the student's: nothing for review
    assert rows["old-release"]["note"] == "" and float(rows["old-release"]["score"]) == 0
    # no answer written is told apart from a wrong one
    assert (rows["untouched"]["score"], rows["untouched"]["note"]) == ("0.0", "handed in as released: no answer written")
    # work in a copy beside the graded notebook is named
    assert rows["blank"]["note"] == f"also handed in {CHAPTER}-Copy1.ipynb (not graded: only {CHAPTER}.ipynb is)"


def test_the_feedback_shows_the_cases_not_the_hidden_tests(graded):
    tmp, _ = graded
    assert classroom.nbgrader("generate_feedback", CHAPTER, "--student", "package-direct") == 0
    html = (tmp / "course" / "feedback" / "package-direct" / CHAPTER / f"{CHAPTER}.html").read_text(encoding="utf-8")
    assert "drawn at grading time (seed" in html and "causal_mask (minigpt/attention.py)" in html
    assert "BEGIN HIDDEN TESTS" not in html and "hidden.py" not in html


def test_answer_key_gets_full_marks(graded):
    _, rows = graded
    assert float(rows["answer-key"]["score"]) == 2


@pytest.mark.parametrize("student", list(STUDENTS))
def test_each_student_gets_the_fair_score(graded, student):
    tmp, rows = graded
    expected, words = sum(STUDENTS[student][2]), STUDENTS[student][3]
    assert float(rows[student]["score"]) == pytest.approx(expected, abs=0.011), feedback(tmp, student)
    text = "\n".join(feedback(tmp, student))
    assert "drawn at grading time (seed" in text
    for word in words:
        assert word in text, (word, text)


def test_student_edition_holds_no_answer(graded):
    """No solution line, answer admonition, hidden test or grading path of the full edition is
    readable in the student edition; the "How you are graded" cell is there."""
    tmp, _ = graded
    released = json.dumps(release_notebook(tmp / "course"))
    full = json.loads((ROOT / "notebooks" / f"{CHAPTER}.ipynb").read_text(encoding="utf-8"))
    for cell in full["cells"]:
        text = classroom.source_text(cell)
        for block in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", text, re.DOTALL):
            for line in block.strip().splitlines():
                assert json.dumps(line.strip())[1:-1] not in released, line
        if classroom.ANSWERS.search(text):
            body = classroom.ANSWERS.search(text).group(0)
            for line in body.splitlines()[2:-1]:
                if len(line.strip()) > 20:
                    assert json.dumps(line.strip())[1:-1] not in released, line
    for secret in ("admonition} Answers", "BEGIN HIDDEN TESTS", "hidden.py", "_grading"):
        assert secret not in released
    assert "How you are graded" in released


def test_hidden_grade_reads_no_environment(monkeypatch):
    """Graded with MINIGPT_GRADING set to anything, or unset, a wrong answer scores 0."""
    hidden = load_hidden()
    for value in ("0", "1", None):
        if value is None:
            monkeypatch.delenv("MINIGPT_GRADING", raising=False)
        else:
            monkeypatch.setenv("MINIGPT_GRADING", value)
        assert hidden.grade("check_softmax", lambda s: s) == 0


def test_watcher_names_a_forbidden_softmax_under_any_name(capsys):
    import torch
    hidden = load_hidden()
    by_hand = lambda s: (s - s.amax(-1, keepdim=True)).exp() / (s - s.amax(-1, keepdim=True)).exp().sum(-1, keepdim=True)  # noqa: E731
    assert hidden.grade("check_softmax", by_hand) == 1
    for forbidden in (lambda s: s.softmax(-1), lambda s: torch.nn.Softmax(dim=-1)(s),
                      lambda s: torch.special.softmax(s, -1)):
        assert hidden.grade("check_softmax", forbidden) == 0
        assert "0 points: your answer used" in capsys.readouterr().out


def test_copied_book_helper_is_recognised(capsys):
    """Chapter 13's hide-cell helper `tiles_in_order`, pasted under another name, scores 0."""
    hidden = load_hidden()
    cells = json.loads((ROOT / "notebooks" / "13_flash_attention.ipynb").read_text(encoding="utf-8"))["cells"]
    helper = next(classroom.source_text(c) for c in cells if "def tiles_in_order(" in classroom.source_text(c))
    helper = helper[:helper.index("\n\n\n") if "\n\n\n" in helper else len(helper)]
    namespace = {}
    exec("import math, torch\n" + helper.replace("tiles_in_order", "my_own_loop"), namespace)
    copied = lambda q, k, v, block: namespace["my_own_loop"](q, k, v, block, lambda tiles: tiles)  # noqa: E731
    assert hidden.grade("check_tiled_attention", copied, seed=1) == 0
    assert "a copy of the book's helper tiles_in_order" in capsys.readouterr().out


MODULE_WITH_SPLIT_BUG = """
import math, torch, torch.nn as nn

def my_split_heads(t, n_head):          # the bug: no transpose
    B, T, C = t.shape
    return t.reshape(B, n_head, T, C // n_head)

class MyAttentionFromScratch(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (my_split_heads(t, self.n_head) for t in self.c_attn(x).split(C, dim=2))
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.n_head)
        scores = scores.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
"""


def test_one_bug_in_split_costs_one_point():
    """Chapter 4's module is graded with the reference split put in the notebook's namespace
    (as a notebook's globals), so the split's bug costs the split's point only."""
    hidden = load_hidden()
    namespace = {}
    exec(MODULE_WITH_SPLIT_BUG, namespace)
    buggy = namespace["my_split_heads"]
    assert hidden.grade("check_split_heads", buggy) < 1                # right only for one head
    assert hidden.grade("check_multi_head_attention", namespace["MyAttentionFromScratch"], namespace=namespace) == 1
    assert namespace["my_split_heads"] is buggy                      # put back after grading


def test_only_and_weights_shape_the_assignment(tmp_path):
    full = json.loads((ROOT / "notebooks" / f"{CHAPTER}.ipynb").read_text(encoding="utf-8"))
    limit = classroom.cell_limit(ROOT / "notebooks" / f"{CHAPTER}.ipynb")
    names = classroom.shape_assignment(full, CHAPTER, {"my_attention"}, {"my_attention": 3}, limit)
    assert names == ["my_causal_mask", "my_attention"]
    graded = [c for c in full["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    assert len(graded) == 1 and graded[0]["metadata"]["nbgrader"]["points"] == 3
    assert "BEGIN HIDDEN TESTS" in classroom.source_text(graded[0])
    how = classroom.source_text(full["cells"][1])
    assert "How you are graded" in how and "3 points" in how and "Practice, not graded" in how
    pytest.importorskip("nbgrader")  # make_course refuses to start without it
    with pytest.raises(classroom.MiniGPTError, match="no exercise named my_typo"):
        classroom.set_folders(ROOT / "notebooks", tmp_path / "course")
        classroom.make_course({"my_typo"}, {})


def write_chapter(folder: Path, attention_body: str) -> Path:
    """A two-exercise chapter whose first graded cell runs `attention_body`."""
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# 03 A test chapter"),
        nbformat.v4.new_code_cell("import math\nimport minigpt\nimport torch"),
        nbformat.v4.new_code_cell(ATTENTION.format(body="    ### BEGIN SOLUTION\n" + attention_body
                                                   + "\n    ### END SOLUTION")),
        nbformat.v4.new_code_cell("minigpt.exercises.check_causal_attention(my_attention)"),
        nbformat.v4.new_code_cell(MASK.format(body="    ### BEGIN SOLUTION\n" + RIGHT_MASK + "\n    ### END SOLUTION")),
        nbformat.v4.new_code_cell("minigpt.exercises.check_causal_mask(my_causal_mask)"),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "03_test.ipynb"
    nbformat.write(notebook, path)
    return path


def test_dead_kernel_and_timeout_cost_only_their_cell(tmp_path):
    """A student whose answer kills the kernel (as running out of memory does), and one whose
    answer never returns: each loses that exercise only, with a line of feedback."""
    pytest.importorskip("nbgrader", reason="the classroom extra: pip install -e '.[classroom]'")
    write_chapter(tmp_path / "nb", RIGHT_ATTENTION)
    classroom.set_folders(tmp_path / "nb", tmp_path / "course")
    classroom.tag(check_only=False)
    assert classroom.student() == 0
    released = json.loads((tmp_path / "course/release/03_test/03_test.ipynb").read_text())
    key = "03_test-my_attention"
    for student, body in (("dies", "    import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)"),
                          ("loops", "    while True:\n        pass")):
        notebook = json.loads(json.dumps(released))
        for cell in notebook["cells"]:
            if cell["metadata"].get("nbgrader", {}).get("grade_id") == key:
                cell["source"] = ATTENTION.format(body=body)
            if cell["metadata"].get("nbgrader", {}).get("grade_id") == "03_test-my_causal_mask":
                cell["source"] = MASK.format(body=RIGHT_MASK)
        (tmp_path / "sub" / student / "03_test").mkdir(parents=True)
        (tmp_path / "sub" / student / "03_test" / "03_test.ipynb").write_text(json.dumps(notebook))
    assert classroom.grade(tmp_path / "sub", timeout=20) == 0
    with open(tmp_path / "sub" / "grades.csv") as table:
        rows = {r["student"]: float(r["score"]) for r in csv.DictReader(table)}
    assert rows == {"dies": 1.0, "loops": 1.0}
    died = json.loads((tmp_path / "course/autograded/dies/03_test/03_test.ipynb").read_text())
    assert any("the kernel died while running this cell" in json.dumps(c.get("outputs", []))
               for c in died["cells"])
    looped = json.loads((tmp_path / "course/autograded/loops/03_test/03_test.ipynb").read_text())
    assert any("CellTimeoutError" in json.dumps(c.get("outputs", [])) for c in looped["cells"])


def student_edition(path: Path) -> dict:
    """A chapter's student edition, made in-process by the same steps as `make student`:
    classroom.py's shaping, then nbgrader's own ClearSolutions and ClearHiddenTests."""
    nbformat = pytest.importorskip("nbformat")
    preprocessors = pytest.importorskip("nbgrader.preprocessors")
    notebook = json.loads(path.read_text(encoding="utf-8"))
    classroom.shape_assignment(notebook, path.stem, None, {}, classroom.cell_limit(path))
    node = nbformat.reads(json.dumps(notebook), as_version=4)     # sources joined, as nbgrader reads them
    resources = {}
    for step in (preprocessors.ClearSolutions(), preprocessors.ClearHiddenTests()):
        node, resources = step.preprocess(node, resources)
    return node


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem[:2])
def test_no_answer_is_readable_in_any_student_edition(path):
    """Every chapter: no line of a solution, of an "Answers" dropdown or of a hide-cell helper
    after it, no hidden test and no grading path is left in the student edition."""
    released = "\n".join(classroom.source_text(c) for c in student_edition(path)["cells"])
    full = json.loads(path.read_text(encoding="utf-8"))["cells"]
    secrets, public, after_answers = [], [], False
    solution = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.DOTALL)
    for cell in full:
        text = classroom.source_text(cell)
        secrets += solution.findall(text)
        if cell["cell_type"] == "markdown" and classroom.ANSWERS.search(text):
            secrets += [m.group(0).split("\n", 1)[1] for m in classroom.ANSWERS.finditer(text)]
            public.append(classroom.ANSWERS.sub("", text))
            after_answers = True
        elif (after_answers and "hide-cell" in cell.get("metadata", {}).get("tags", [])) or \
                classroom.ANSWER_KEY_TAG in cell.get("metadata", {}).get("tags", []):
            secrets.append(text)
        else:
            public.append(solution.sub("", text))
    public = "\n".join(public)          # what the chapter teaches in the open may appear again
    leaked = [line.strip() for block in secrets for line in block.splitlines()
              if len(line.strip()) > 24 and not line.strip().startswith("```") and line.strip() in released
              and line.strip() not in public]
    assert not leaked, leaked[:5]
    for marker in ("admonition} Answers", "BEGIN HIDDEN TESTS", "hidden.py", "_grading", "BEGIN SOLUTION",
                   "use_answer_key", "solutions.py"):
        assert marker not in released
    if any(c.get("metadata", {}).get("nbgrader", {}).get("grade") for c in full):
        assert "## How you are graded" in released


def book_definition(chapter: str, name: str) -> str:
    """The source of the function or class `name` (decorators included) as the chapter's
    notebook defines it in the open."""
    import ast
    for cell in json.loads((ROOT / "notebooks" / f"{chapter}.ipynb").read_text(encoding="utf-8"))["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] != "code":
            continue
        for node in ast.parse(text).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
                lines = text.splitlines()
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                return "\n".join(lines[first - 1:node.end_lineno]) + "\n"
    raise LookupError(f"{chapter} defines no {name}")


def test_package_calls_on_the_graders_own_models_are_seen(capsys):
    """model.generate on a model the grading built (from its private package) is still the
    package's generate; a chapter helper called under another name is still that helper."""
    import torch
    hidden = load_hidden()
    greedy = lambda model, idx, n: model.generate(idx, n, temperature=0)  # noqa: E731
    assert hidden.grade("check_greedy_generate", greedy) == 0
    assert "MiniGPT.generate (minigpt/model.py)" in capsys.readouterr().out
    namespace = {"torch": torch}
    book = book_definition("07_the_whole_gpt", "my_dropout")
    exec(book, namespace)
    renamed = namespace["my_dropout"]
    assert hidden.grade("check_dropout", lambda x, p, training: renamed(x, p, training), namespace=namespace) == 0
    assert "the chapter's own my_dropout" in capsys.readouterr().out
    # the same code, not the chapter's object (a student's own function): full marks
    exec(book.replace("def my_dropout(", "def mine("), namespace)
    assert hidden.grade("check_dropout", namespace["mine"], namespace=namespace) == 1


def test_a_students_own_function_named_like_the_chapters_helper_is_their_work(capsys):
    """Only the book's own definition of a chapter helper (`layer_norm` in chapter 6) is
    forbidden to call: a student who wrote a function of that name differently did the work,
    and a student who calls the book's, under any name, did not. Every helper a spec names is
    recognised when the book's definition is run."""
    import ast
    import inspect
    import math
    hidden = load_hidden()
    own = ("def layer_norm(x, gamma, beta):\n    mean = x.mean(-1, keepdim=True)\n    centred = x - mean\n"
           "    return centred * (centred.pow(2).mean(-1, keepdim=True) + 1e-5).rsqrt() * gamma + beta\n")
    answer = "def my_layer_norm(x, gamma, beta):\n    return layer_norm(x, gamma, beta)\n"
    for definition, score in ((own, 1), (book_definition("06_layernorm_residuals_preln", "layer_norm"), 0)):
        namespace = {"torch": torch}
        exec(definition + answer, namespace)
        assert hidden.grade("check_layer_norm", namespace["my_layer_norm"], namespace=namespace) == score
        assert ("the chapter's own layer_norm" in capsys.readouterr().out) == (score == 0)
    # run as a kernel runs a cell: IPython compiles it one statement at a time, the grading
    # compiles the notebook's cell whole (the bytecode of `math.sqrt(...)` differs between the two)
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    try:
        for check, spec in hidden.SPECS.items():
            for chapter, name in spec.copied:
                source = book_definition(chapter, name)
                imports = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
                assert shell.run_cell(imports + "import minigpt\n" + source).success, (check, name)
                watcher = hidden.Watcher(spec, set())

                def functions(obj) -> list:
                    """A function, or every method of a class, unwrapped."""
                    found = [obj] if not isinstance(obj, type) else [f for f in vars(obj).values() if callable(f)]
                    return [inspect.unwrap(f) for f in found]

                def seen(obj) -> bool:
                    """Running `obj` is running the helper."""
                    return any(f"own {name} " in (watcher._verdict(f.__code__) or "") for f in functions(obj))
                assert seen(shell.user_ns[name]), (check, name)
                # Python 3.10 has no co_qualname: the grading finds it again in the cell's source,
                # which IPython keeps in linecache (a class's `forward` is not another class's).
                # The function's __qualname__ is the truth on every Python.
                for function in functions(shell.user_ns[name]):
                    code = function.__code__
                    where = (code.co_firstlineno, code.co_name, hidden._instructions(code, local_names=True))
                    assert hidden._qualnames_in(code.co_filename)[where] == function.__qualname__, (check, name)
                # one statement more at the top of each function: the student's own version
                tree = ast.parse(source)
                for node in ast.walk(tree):
                    if isinstance(node, ast.FunctionDef):
                        node.body.insert(0, ast.parse("_mine = 0").body[0])
                names = {"torch": torch, "nn": torch.nn, "F": torch.nn.functional, "math": math}
                exec(compile(ast.fix_missing_locations(tree), "<student>", "exec"), names)
                assert not seen(names[name]), (check, name)
    finally:
        InteractiveShell.clear_instance()


@pytest.mark.parametrize("hide", [
    "_kept = layer_norm\ndef layer_norm(x, gamma, beta):\n    return x\ndef my_layer_norm(x, gamma, beta):\n"
    "    return _kept(x, gamma, beta)\n",
    "layer_norm.__qualname__ = 'ln'\ndef my_layer_norm(x, gamma, beta):\n    return layer_norm(x, gamma, beta)\n",
    "import functools\n_hidden = [functools.wraps(lambda: 0)(layer_norm)]\ndel layer_norm\n"
    "def my_layer_norm(x, gamma, beta):\n    return _hidden[0](x, gamma, beta)\n",
], ids=["kept-under-another-name", "qualname-changed", "wrapped-in-a-list"])
def test_the_books_helper_is_seen_wherever_it_is_kept(hide, capsys):
    """The book's `layer_norm` is recognised by the code that runs, not by where the notebook
    keeps it: under another name (a new `layer_norm` beside it), with its qualified name
    changed, behind `functools.wraps` in a list."""
    hidden = load_hidden()
    namespace = {"torch": torch}
    exec(book_definition("06_layernorm_residuals_preln", "layer_norm") + hide, namespace)
    assert hidden.grade("check_layer_norm", namespace["my_layer_norm"], namespace=namespace) == 0
    assert "the chapter's own layer_norm" in capsys.readouterr().out


def test_the_worked_solutions_are_forbidden_to_call(capsys):
    """grading/solutions.py is not installed, but a student with a checkout could load it by its
    path: calling anything in it scores 0, like calling the checks' own code."""
    hidden = load_hidden()
    spec = importlib.util.spec_from_file_location("a_students_copy", ROOT / "grading" / "solutions.py")
    theirs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(theirs)
    assert hidden.grade("check_offset_scores", theirs.offset_scores) == 0
    assert "offset_scores (grading/solutions.py)" in capsys.readouterr().out
    assert hidden.grade("check_sliding_cache", theirs.SlidingKVCache) == 0
    assert "grading/solutions.py" in capsys.readouterr().out


def test_exercises_without_a_package_reference_are_graded_on_fresh_inputs(capsys):
    """The references the package lacks (chapter 10's offset scores, 12's GQA, ...) and the
    mistakes it only stores come from grading/solutions.py: fresh inputs, named mistakes."""
    import torch
    hidden = load_hidden()

    def mine(maps, offset, first_row):
        rows = torch.arange(first_row, maps.size(-1))
        return maps[:, :, rows, rows - offset].mean(dim=-1)

    def summed(maps, offset, first_row):          # the catalogue's offset_score.sum_not_mean
        rows = torch.arange(first_row, maps.size(-1))
        return maps[:, :, rows, rows - offset].sum(dim=-1)
    assert hidden.grade("check_offset_scores", mine) == 1
    capsys.readouterr()
    assert hidden.grade("check_offset_scores", summed, seed=5) < 1
    assert "the weights were summed over the query rows" in capsys.readouterr().out

    def grouped(q, k, v):
        group = q.size(1) // k.size(1)
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        T = q.size(-2)
        scores = (q @ k.transpose(-2, -1) / q.size(-1) ** 0.5).masked_fill(
            ~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        return torch.softmax(scores, dim=-1) @ v
    assert hidden.grade("check_grouped_attention", grouped) == 1


def test_the_self_test_is_graded_from_the_full_editions_key(capsys):
    """Chapter 14's key is read from notebooks/14_self_test.ipynb: not the package (which no
    longer holds it) and not the student's kernel (a key registered there changes nothing)."""
    from minigpt.exercises.ch14_self_test import use_answer_key
    hidden = load_hidden()
    key = hidden.answer_key()
    assert key["11.3"]["answer"] == 100663296 and len(key) == 15
    use_answer_key({"1.1": {"answer": 26}})      # a student's own "key", in their kernel
    try:
        assert hidden.grade("check_self_test", "1.1", lambda: 26) == 0
        assert hidden.grade("check_self_test", "1.1", lambda: 65) == 1
    finally:
        use_answer_key(None)
    assert hidden.grade("check_self_test", "1.4", " (B) ") == 1       # read as the visible check reads it
    assert hidden.grade("check_self_test", "4.1", [2, 8, 5, 8]) == 1
    assert hidden.grade("check_self_test", "4.1", (2, 5, 8, 8)) == 0


def test_qualified_names_are_found_without_co_qualname():
    """Python 3.10 code objects have no co_qualname (3.11+). The grading names forbidden code by
    qualified name, so it rebuilds them from the source: the same names 3.11 records, for every
    function and class of the package, and the same lookup for a code object that lacks one."""
    import types
    import minigpt
    hidden = load_hidden()
    checked = 0
    for path in sorted(Path(minigpt.__file__).parent.rglob("*.py")) + sorted((ROOT / "grading").glob("*.py")):
        top = compile(path.read_text(encoding="utf-8"), str(path), "exec")
        for code, qualname in hidden._with_qualnames(top):
            if hasattr(code, "co_qualname"):
                assert qualname == code.co_qualname, (path.name, qualname)
            # as on 3.10: no co_qualname (dis reads the instructions through __code__)
            stripped = types.SimpleNamespace(co_filename=str(path), co_firstlineno=code.co_firstlineno,
                                             co_name=code.co_name, __code__=code)
            assert hidden._qualname(stripped) == qualname
            checked += 1
    assert checked > 500
    nested = [name for _, name in hidden._with_qualnames(compile(
        "class A:\n    def f(self):\n        def g():\n            pass\n", "x", "exec"))]
    assert nested == ["A", "A.f", "A.f.<locals>.g"]


# ------------------------------------------------------------ students who attack the grading
FRAME_READER = '''
import sys
def steal(*args, **kwargs):
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_locals.get("expected") is not None:
            return frame.f_locals["expected"]
        if isinstance(frame.f_locals.get("entry"), dict):
            return frame.f_locals["entry"]["answer"]
        frame = frame.f_back
    raise NotImplementedError()
'''


def test_the_right_answer_is_out_of_reach_while_the_students_code_runs():
    """The right answer is computed after the student's code returned: a function that walks
    up the frames to the grader's `expected` (chapter 14: the key's `entry`) finds nothing.
    Before, it scored full marks in 16 exercises and on every self-test question."""
    hidden = load_hidden()
    namespace = {}
    exec(FRAME_READER, namespace)
    steal = namespace["steal"]
    for check in ("check_softmax", "check_causal_mask", "check_split_heads", "check_top_p", "check_merge",
                  "check_encode", "check_lr_schedule", "check_offset_scores", "check_lora_merge"):
        assert hidden.grade(check, steal, seed=3) == 0, check
    assert hidden.grade("check_self_test", "11.3", steal) == 0
    assert hidden.grade("check_self_test", "11.3", lambda: 100663296) == 1


def test_inputs_changed_in_place_do_not_reach_the_reference():
    """The student's code gets its own copy of each case: zeroing the scores (whose softmax is
    then uniform, which it returns) is wrong wherever the real softmax is not uniform."""
    import torch
    hidden = load_hidden()

    def flatten_then_answer(scores):
        scores.zero_()
        return torch.full_like(scores, 1.0 / scores.size(-1))
    assert hidden.grade("check_softmax", flatten_then_answer, seed=3) < 0.5


def test_answers_that_equal_everything_score_0(capsys):
    """An object whose __eq__ says yes is compared only with a value of exactly its type."""
    hidden = load_hidden()

    class Equal:
        def __eq__(self, other):
            return True
    assert hidden.grade("check_merge", lambda ids, pair, new: Equal(), seed=3) == 0
    assert hidden.grade("check_encode", lambda text, merges: Equal(), seed=3) == 0
    assert hidden.grade("check_self_test", "1.4", lambda: Equal()) == 0

    class Text(str):                  # a str subclass: its own __eq__ is not asked either
        def __eq__(self, other):
            return True
        __hash__ = str.__hash__
    assert hidden.grade("check_self_test", "1.4", lambda: Text("a")) == 0
    assert hidden.grade("check_self_test", "1.4", lambda: Text("b")) == 1


def _softmax_to_script(scores):
    """A softmax for TorchScript to compile (it reads the source of a top-level function)."""
    return torch.softmax(scores, -1)


@pytest.mark.parametrize("how", ["thread", "torchscript", "torch.ops"])
def test_a_forbidden_softmax_is_seen_however_it_is_reached(how, capsys):
    """A softmax run in another thread, inside TorchScript or through torch.ops makes no Python
    call the profiler sees in the grading's thread; the operator watch and the thread watch do."""
    import threading
    import torch
    hidden = load_hidden()
    if how == "thread":
        def answer(scores):
            out = []
            worker = threading.Thread(target=lambda: out.append(torch.softmax(scores, -1)))
            worker.start()
            worker.join()
            return out[0]
    elif how == "torchscript":
        scripted = torch.jit.script(_softmax_to_script)
        answer = lambda scores: scripted(scores)  # noqa: E731
    else:
        answer = lambda scores: torch.ops.aten._softmax.default(scores, -1, False)  # noqa: E731
    assert hidden.grade("check_softmax", answer, seed=3) == 0
    out = capsys.readouterr().out
    assert "0 points: your answer used" in out
    assert ("a thread of your own" if how == "thread" else "torch's operator _softmax") in out


def _swaps():
    import functools
    import math
    import operator
    import os
    import unittest.mock
    import numpy
    import torch

    class Yes:
        def __call__(self, *args, **kwargs):
            return True
    return [
        (torch, "allclose", Yes(), "torch.allclose was replaced by an object of the notebook"),
        (torch, "allclose", unittest.mock.Mock(return_value=True), "unittest.mock.Mock"),
        (torch, "allclose", functools.lru_cache(lambda *a, **k: True), "torch.allclose was replaced"),
        (torch, "equal", operator.is_not, "torch.equal was replaced by another function (is_not)"),
        (torch, "equal", torch.is_same_size, "torch.equal was replaced by another function (is_same_size)"),
        (torch, "randn", torch.zeros, "torch.randn was replaced by another function (zeros)"),
        (torch.Tensor, "double", torch.Tensor.long, "torch.Tensor.double was replaced by another function (long)"),
        (math, "isclose", operator.eq, "math.isclose was replaced"),
        (torch, "softmax", numpy.vectorize(lambda *a, **k: True), "an object of another library (numpy.vectorize)"),
        (os, "urandom", lambda n: bytes(n), "os.urandom was replaced"),
    ]


@pytest.mark.parametrize("index", range(10))
def test_replacing_what_grading_calls_scores_0(index, capsys):
    """Not only lambdas: callable objects (unittest.mock's too), wrapped lambdas, built-ins of
    other modules, another genuine torch function under the name grading calls, and a fixed
    os.urandom (which makes the fresh inputs known in advance)."""
    import torch
    target, name, value, words = _swaps()[index]
    hidden = load_hidden()
    by_hand = lambda s: (s - s.amax(-1, keepdim=True)).exp() / (s - s.amax(-1, keepdim=True)).exp().sum(-1, keepdim=True)  # noqa: E731
    assert hidden.tampering(None) == []                   # the untouched kernel: nothing to report
    saved = vars(target).get(name, None)
    setattr(target, name, value)
    try:
        assert hidden.grade("check_softmax", lambda s: torch.zeros_like(s), seed=3) == 0
        assert hidden.grade("check_softmax", by_hand, seed=3) == 0     # tampering costs the exercise
    finally:
        if saved is None:
            delattr(target, name)
        else:
            setattr(target, name, saved)
    assert words in capsys.readouterr().out
    assert hidden.grade("check_softmax", by_hand, seed=3) == 1


class _SwapSame:
    """A finder a notebook could put first in sys.meta_path: it loads the grading's private
    copy of minigpt/exercises/core.py as usual, then makes its comparison say yes to anything."""

    def find_spec(self, name, path=None, target=None):
        if not name.endswith(".exercises.core") or "_minigpt_grading_" not in name:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            module.same = lambda *args, **kwargs: True
        spec.loader.exec_module = exec_module
        return spec


def test_a_finder_that_swaps_the_private_comparison_scores_0(capsys):
    """A review found this: 26 of 33 checks scored full marks with `return 0`, and the
    feedback looked normal. The finder is named, and it never ran (the Guard)."""
    import torch
    hidden = load_hidden()
    finder = _SwapSame()
    sys.meta_path.insert(0, finder)
    try:
        assert hidden.grade("check_softmax", lambda s: torch.zeros_like(s), seed=3) == 0
        out = capsys.readouterr().out
        assert "sys.meta_path holds a finder with code of the notebook (_SwapSame.find_spec)" in out
        # the grading's guard stops the finder at its call: it never swapped the comparison
        assert "ran inside the grading's own code" in out and "exercises.core.same" not in out
        assert "Score: 0 / 1" in out
    finally:
        sys.meta_path.remove(finder)
    assert hidden.tampering(None) == []


def test_generated_dunders_are_not_taken_for_the_notebook_s_code():
    """dataclasses and collections compile __init__ / __new__ from "<string>": a package class
    of either kind must not make every graded exercise 0 for "tampering"."""
    import collections
    import dataclasses
    import typing
    hidden = load_hidden()
    homes = hidden._library_folders()
    Point = collections.namedtuple("Point", "x y")
    Named = typing.NamedTuple("Named", [("x", int)])
    Data = dataclasses.make_dataclass("Data", ["x"])
    assert [hidden._notebook_code(kind, homes) for kind in (Point, Named, Data)] == [None, None, None]

    class Finder:                       # this file is not a library's: its methods are "the notebook's"
        def find_spec(self, *args):
            return None
    assert hidden._notebook_code(Finder(), homes) == Finder.find_spec.__qualname__


def test_a_padded_copy_of_the_package_is_marked_for_review_and_an_honest_answer_is_not(capsys):
    """A copy with one statement added to each function kept the exact fingerprint from
    matching and scored full marks unremarked. It now carries the review mark (the score
    stands: a person decides); the book's own worked solution, 0.88 alike, does not."""
    import ast
    import inspect
    import minigpt.positions
    hidden = load_hidden()
    tree = ast.parse(inspect.getsource(minigpt.positions))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            node.body.insert(0, ast.parse("_pad = 0").body[0])
    copied = {"__name__": "cell", "__package__": "minigpt"}
    exec(compile(ast.fix_missing_locations(tree), "/tmp/ipykernel_1/cell.py", "exec"), copied)
    assert hidden.grade("check_sinusoidal", copied["sinusoidal_table"], seed=7) == 1
    out = capsys.readouterr().out
    assert re.search(r"⚠ for review: code close to what the exercise forbids, but not a copy of it: "
                     r"sinusoidal_table has (9[5-9]|100)% of its instructions in common with the package's "
                     r"sinusoidal_table \(minigpt/positions.py\)", out), out
    solutions = [c for c in json.loads((ROOT / "notebooks/05_positions.ipynb").read_text(encoding="utf-8"))["cells"]
                 if "def my_table" in "".join(c["source"])]
    honest: dict = {"torch": torch, "math": __import__("math")}
    exec(compile("".join(solutions[0]["source"]), "/tmp/ipykernel_1/cell2.py", "exec"), honest)
    assert hidden.grade("check_sinusoidal", honest["my_table"], seed=7) == 1
    assert "for review" not in capsys.readouterr().out


def test_the_fourth_mask_case_is_never_the_second_one_again():
    """Both are "T=1, S=..."; a review saw S drawn equal for both (seed 2172932253)."""
    hidden = load_hidden()
    core = hidden.load_package()[0].exercises.core
    for seed in list(range(200)) + [2172932253]:
        cases = hidden._draw_masks(core, torch.Generator().manual_seed(seed))
        assert cases[1].args != cases[3].args and 2 <= cases[3].args[1] <= 10


# ------------------------------------------------------------------- the instructor's workflow
def test_only_names_an_exercise_two_chapters_share_by_its_chapter(tmp_path):
    """`my_generate` is an exercise of chapters 9 and 11: a bare name is refused with the two
    ways to write it; `11:my_generate` grades chapter 11's alone."""
    pytest.importorskip("nbgrader")
    classroom.set_folders(ROOT / "notebooks", tmp_path / "course")
    with pytest.raises(classroom.MiniGPTError, match=r"my_generate is an exercise of chapters 09, 11: "
                                                     r"write 09:my_generate or 11:my_generate"):
        classroom.make_course({"my_generate"}, {})
    assert classroom.make_course({"11:my_generate"}, {"11:my_generate": 2}) == ["11_kv_cache"]
    source = json.loads((tmp_path / "course/source/11_kv_cache/11_kv_cache.ipynb").read_text(encoding="utf-8"))
    graded = [c["metadata"]["nbgrader"] for c in source["cells"] if c["metadata"].get("nbgrader", {}).get("grade")]
    assert [(g["grade_id"], g["points"]) for g in graded] == [("11_kv_cache-check_cached_generate", 2)]
    assert not (tmp_path / "course/source/09_decoding").exists()


def test_sessions_release_and_grade_their_own_chapters(tmp_path, capsys):
    """Session 2's ONLY makes and grades its own chapter and leaves session 1's, which has
    submissions, as it was (nbgrader refuses to change a chapter's graded cells then). A
    submission nbgrader cannot read costs that notebook alone: the others are graded, and its
    row in grades.csv says why."""
    pytest.importorskip("nbgrader", reason="the classroom extra: pip install -e '.[classroom]'")
    first = write_chapter(tmp_path / "nb", RIGHT_ATTENTION)
    second = first.with_name("04_test.ipynb")
    second.write_text(first.read_text(encoding="utf-8").replace("# 03 A test chapter", "# 04 Another"),
                      encoding="utf-8")
    classroom.set_folders(tmp_path / "nb", tmp_path / "course")
    classroom.tag(check_only=False)
    assert classroom.student(only={"03:my_attention"}) == 0
    assert sorted(p.name for p in (tmp_path / "course/release").iterdir()) == ["03_test"]
    released = json.loads((tmp_path / "course/release/03_test/03_test.ipynb").read_text())
    submitted = tmp_path / "sub"
    for student in ("ann", "bob", "cy"):
        notebook = json.loads(json.dumps(released))
        for cell in notebook["cells"]:
            if cell["metadata"].get("nbgrader", {}).get("grade_id") == "03_test-my_attention":
                cell["source"] = ATTENTION.format(body=RIGHT_ATTENTION)
                if student == "cy":      # right, but with what only reaching into the grading needs
                    cell["source"] = "import sys\n_caller = sys._getframe\n" + cell["source"]
        (submitted / student / "03_test").mkdir(parents=True)
        (submitted / student / "03_test" / "03_test.ipynb").write_text(json.dumps(notebook))
    (submitted / "bob" / "03_test" / "03_test.ipynb").write_text('{"cells": [')      # cut off
    assert classroom.grade(submitted, only={"03:my_attention"}) == 1
    out = capsys.readouterr().out
    assert "NOT GRADED (0 in grades.csv) bob/03_test: not a readable notebook (NotJSONError)" in out
    with open(submitted / "grades.csv", encoding="utf-8") as table:
        rows = {r["student"]: r for r in csv.DictReader(table)}
    assert float(rows["ann"]["score"]) == 1.0 and rows["ann"]["note"] == ""
    assert float(rows["cy"]["score"]) == 1.0 and rows["cy"]["note"] == "review: the student's cells use frame access"
    assert "READ THIS ONE cy/03_test: review: the student's cells use frame access" in out
    assert float(rows["bob"]["score"]) == 0.0 and "NotJSONError" in rows["bob"]["note"]
    session_one = (tmp_path / "course/source/03_test/03_test.ipynb").read_text()
    # session 2: the other chapter; chapter 3 (with submissions) is neither remade nor regraded
    assert classroom.student(only={"04:my_causal_mask"}) == 0
    assert (tmp_path / "course/source/03_test/03_test.ipynb").read_text() == session_one
    assert (tmp_path / "course/release/04_test/04_test.ipynb").is_file()
    with pytest.raises(classroom.MiniGPTError, match="holds no submission of the chapters --only names"):
        classroom.grade(submitted, only={"04:my_causal_mask"})
    assert "not graded now (no exercise of --only in them): 03_test" in capsys.readouterr().out
    # the repository moved after `make student`: the hidden tests' path to grading/hidden.py is stale
    stale = tmp_path / "course/source/03_test/03_test.ipynb"
    stale.write_text(stale.read_text().replace(str(classroom.GRADING), "/moved/away/grading"))
    with pytest.raises(classroom.MiniGPTError, match="load grading/hidden.py from another folder"):
        classroom.grade(submitted)


def test_a_checkout_named_minigpt_with_its_venv_inside_is_not_the_package():
    """The default clone is a folder called minigpt, with .venv (torch included) inside it:
    torch's files are not the package's (every honest softmax once scored 0 there)."""
    hidden = load_hidden()
    match = hidden._suffix_match
    assert not match("/home/me/minigpt/.venv/lib/python3.11/site-packages/torch/_tensor.py", "minigpt/")
    assert match(str(ROOT / "minigpt" / "attention.py"), "minigpt/")
    assert match(str(ROOT / "minigpt" / "exercises" / "core.py"), "minigpt/exercises/")
    assert match("/home/me/minigpt/.venv/lib/python3.11/site-packages/minigpt/sampling.py", "minigpt/")
    assert match("/anywhere/minigpt/attention.py", "minigpt/attention.py")


def test_honest_answers_that_use_libraries_keep_their_points():
    """A progress bar (tqdm starts a monitor thread of its own) and a count computed with torch
    as a 0-d tensor (chapter 14) are honest; a thread pool made in an earlier cell is not."""
    from concurrent.futures import ThreadPoolExecutor
    from tqdm import tqdm
    hidden = load_hidden()
    by_hand = lambda s: (s - s.amax(-1, keepdim=True)).exp() / (s - s.amax(-1, keepdim=True)).exp().sum(-1, keepdim=True)  # noqa: E731

    def with_a_progress_bar(scores):
        for _ in tqdm(range(2), mininterval=0):
            pass
        return by_hand(scores)
    assert hidden.grade("check_softmax", with_a_progress_bar, seed=3) == 1
    assert hidden.grade("check_self_test", "13.2", lambda: torch.tensor(10)) == 1
    with ThreadPoolExecutor(1) as pool:
        pool.submit(int).result()                   # the pool's thread runs before grading starts
        assert hidden.grade("check_softmax", lambda s: pool.submit(torch.softmax, s, -1).result(), seed=3) == 0


def grade_in_a_fresh_process(cell: str, check: str, answer: str) -> tuple[float, str]:
    """Run `cell` as a notebook's earlier cell, then grade its `answer`, in a Python process of
    its own: the threads and processes the cell starts end with it, and later tests see none."""
    import subprocess
    import sys
    script = (f"import importlib.util, torch\n"
              f"spec = importlib.util.spec_from_file_location('hidden', {str(ROOT / 'grading' / 'hidden.py')!r})\n"
              "hidden = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(hidden)\n"
              f"namespace = {{'torch': torch}}\nexec(compile({cell!r}, '<an earlier cell>', 'exec'), namespace)\n"
              f"print('SCORE', hidden.grade({check!r}, namespace[{answer!r}], namespace=namespace, seed=3), flush=True)\n"
              "import os\nos._exit(0)\n")        # no waiting for the cell's threads and processes
    import os
    import signal
    import tempfile
    # output to a file, not a pipe: a process the cell forked keeps its copy of the pipe open;
    # the whole session is killed afterwards, processes the cell left behind included
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen([sys.executable, "-c", script], stdout=out, stderr=subprocess.STDOUT,
                                 text=True, start_new_session=True)
        try:
            child.wait(timeout=300)
        finally:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out.seek(0)
        text = out.read()
    scores = [line.split()[1] for line in text.splitlines() if line.startswith("SCORE ")]
    assert scores, text
    return float(scores[-1]), text


# grading/students.py's worker-thread: a thread from an earlier cell runs what the answer queues
_EARLIER_CELL_WORKER = WORKER + "def answer(scores):\n    return _elsewhere(lambda: torch.softmax(scores, dim=-1))\n"
# a worker that does not yet run the student's code when grading starts: a timer that fires later
_EARLIER_CELL_TIMER = """
import threading, time
_slot = {}
def _later():
    while True:
        if "scores" in _slot:
            _slot["out"] = torch.softmax(_slot.pop("scores"), -1)
        time.sleep(0.001)
_timer = threading.Timer(0.5, _later)
_timer.daemon = True
_timer.start()
def answer(scores):
    _slot["scores"] = scores
    while "out" not in _slot:
        time.sleep(0.001)
    return _slot.pop("out")
"""
_SUBPROCESS = """
import io, subprocess, sys
def answer(scores):
    buffer = io.BytesIO()
    torch.save(scores, buffer)
    code = ("import io, sys, torch; s = torch.load(io.BytesIO(sys.stdin.buffer.read())); b = io.BytesIO(); "
            "torch.save(torch.softmax(s, -1), b); sys.stdout.buffer.write(b.getvalue())")
    out = subprocess.run([sys.executable, "-c", code], input=buffer.getvalue(), capture_output=True, check=True)
    return torch.load(io.BytesIO(out.stdout))
"""
_PROCESS_POOL = """
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
_pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
_pool.submit(int).result()          # its process runs before grading starts
def answer(scores):
    return _pool.submit(torch.softmax, scores, -1).result()
"""
_EVENT_LOOP_THREAD = """
import asyncio, threading
_loop = asyncio.new_event_loop()
threading.Thread(target=_loop.run_forever, daemon=True).start()
async def _softmax(scores):
    return torch.softmax(scores, -1)
def answer(scores):
    return asyncio.run_coroutine_threadsafe(_softmax(scores), _loop).result()
"""


_RAW_THREAD = """
import _thread, queue
_jobs, _done = queue.Queue(), queue.Queue()
def _worker():
    while True:
        _done.put(torch.softmax(_jobs.get(), -1))
_thread.start_new_thread(_worker, ())
def answer(scores):
    _jobs.put(scores)
    return _done.get()
"""
_DATALOADER_WORKER = """
from torch.utils.data import DataLoader
def answer(scores):
    return next(iter(DataLoader([scores], batch_size=None, num_workers=1, collate_fn=lambda s: torch.softmax(s, -1))))
"""
# a thread the standard library starts (logging's listener) calls the operator through torch.ops
_OPERATOR_IN_A_LIBRARY_THREAD = """
import logging.handlers, queue, types
def answer(scores):
    jobs, done = queue.Queue(), queue.Queue()
    handler = types.SimpleNamespace(handle=lambda s: done.put(torch.ops.aten._softmax.default(s, -1, False)))
    listener = logging.handlers.QueueListener(jobs, handler)
    listener.start()
    jobs.put(scores)
    out = done.get()
    listener.stop()
    return out
"""


@pytest.mark.parametrize("cell, words", [
    (_EARLIER_CELL_WORKER, "a thread your notebook started earlier (Thread-"),
    (_RAW_THREAD, "a thread your notebook started earlier (a thread started with _thread"),
    (_DATALOADER_WORKER, "a process of your own (posix.fork"),
    (_OPERATOR_IN_A_LIBRARY_THREAD, "a thread that runs your code or is fed it"),
    (_EARLIER_CELL_TIMER, "a thread your notebook started earlier (Thread-"),
    (_SUBPROCESS, "a process of your own (_posixsubprocess.fork_exec"),
    (_PROCESS_POOL, "ProcessPoolExecutor.submit (concurrent/futures/process.py)"),
    (_EVENT_LOOP_THREAD, "run_coroutine_threadsafe (asyncio/tasks.py)"),
], ids=["queue-fed-worker", "raw-thread", "dataloader-worker", "operator-in-a-library-thread", "timer",
         "subprocess", "process-pool", "event-loop-thread"])
def test_work_done_outside_the_graders_thread_scores_0(cell, words):
    """What a profiler in the grading's thread cannot see: a worker thread the notebook started
    in an earlier cell (fed through a queue, or a timer that fires during grading), a process,
    an event loop running in another thread."""
    score, out = grade_in_a_fresh_process(cell, "check_softmax", "answer")
    assert score == 0, out
    assert words in out, out


def test_threads_of_the_standard_library_alone_are_named_for_review(capsys):
    """A thread pool made in an earlier cell and fed without `submit`, and a harmless thread
    that runs only the standard library (here a pipe's close, compiled as "<frozen os>") look
    alike from inside the kernel: the score stands, and the feedback names them for review,
    which `make grade` copies into grades.csv."""
    hidden = load_hidden()
    assert hidden.REVIEW_MARK == classroom.REVIEW_MARK
    by_hand = lambda s: (s - s.amax(-1, keepdim=True)).exp() / (s - s.amax(-1, keepdim=True)).exp().sum(-1, keepdim=True)  # noqa: E731
    import os
    import threading
    closing = threading.Thread(target=os.popen("sleep 2").close, daemon=True)
    closing.start()
    assert hidden.grade("check_softmax", by_hand, seed=3) == 1
    closing.join()                  # gone before the next test grades
    out = capsys.readouterr().out
    assert f"{hidden.REVIEW_MARK}threads that run only the standard library's code ran beside the grading" in out
    assert "(Thread-" in out and "close" in out


def test_grade_copies_the_feedbacks_review_lines_into_the_note(tmp_path):
    """`make grade` reads the autograded notebooks' feedback: a line that starts with the review
    mark becomes the note "review: the grading saw ..." of that student's row."""
    saved = classroom.NOTEBOOKS, classroom.COURSE
    classroom.set_folders(tmp_path / "nb", tmp_path / "course")
    try:
        for student, text in (("ann", "Score: 1 / 1\n"),
                              ("cy", f"{classroom.REVIEW_MARK}threads that run only the standard library's code "
                                     "ran beside the grading (Thread-1): a thread pool ...\nScore: 1 / 1\n")):
            folder = tmp_path / "course" / "autograded" / student / "03_test"
            folder.mkdir(parents=True)
            cell = {"cell_type": "code", "source": "", "metadata": {},
                    "outputs": [{"output_type": "stream", "name": "stdout", "text": text}]}
            (folder / "03_test.ipynb").write_text(json.dumps({"cells": [cell]}), encoding="utf-8")
        found = classroom._review_in_feedback({"03_test": ["ann", "bob", "cy"]})
    finally:
        classroom.NOTEBOOKS, classroom.COURSE = saved
    assert found == {("cy", "03_test"): "review: the grading saw threads that run only the standard "
                                        "library's code ran beside the grading"}


@pytest.mark.parametrize("cell, flagged", [
    ("import threading\n_t = threading.Thread(target=print)", True),
    ("from queue import Queue", True),
    ("_pipe = __import__('multiprocessing').Pipe()", True),
    ("import io, subprocess", True),
    ("os.system('python -c 1')", True),
    ("# keep the pairs in a queue. Then merge\nqueue_of_pairs = []\nthread_count = 1", False),
])
def test_review_patterns_name_threads_and_processes(cell, flagged):
    """`make grade` marks for review the cells that hand work to a thread or a process (one
    started in an earlier cell and fed through a pipe is not seen by the watch); words in
    comments and names such as `queue_of_pairs` are not marked. No answer of the book is."""
    pattern = classroom.REVIEW_PATTERNS["threads, processes or queues"]
    assert bool(re.search(pattern, cell, re.MULTILINE)) == flagged
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for book_cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if book_cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
                source = "".join(book_cell["source"])
                assert not [w for w, p in classroom.REVIEW_PATTERNS.items() if re.search(p, source, re.MULTILINE)], path


def _patch_the_graders_comparison(scores):
    """Walk up to the grading frame and make its comparison say yes (no frame of the answer's
    thread holds it now: the zeros are simply wrong)."""
    import sys
    frame = sys._getframe(1)
    while frame is not None:
        if hasattr(frame.f_locals.get("core"), "same"):
            frame.f_locals["core"].same = lambda *a, **k: True
            break
        frame = frame.f_back
    return torch.zeros_like(scores)


def _softmax_with_the_watch_switched_off(scores):
    import sys
    sys.setprofile(None)
    return torch.softmax(scores, -1)


def _softmax_with_the_watch_off(scores):
    import sys
    watcher = sys.getprofile()
    sys.setprofile(None)
    out = torch.softmax(scores, -1)
    sys.setprofile(watcher)
    return out


class _Sneaky(torch.Tensor):
    """A tensor subclass whose own code runs when the grading reads the answer: once the answer
    has left the student's function, it swaps in torch.softmax of the scores it carries."""
    scores = None

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if cls.scores is not None:
            scores, cls.scores = cls.scores, None
            return torch.softmax(scores, -1)
        return super().__torch_function__(func, types, args, kwargs or {})


def _sneaky_answer(scores):
    _Sneaky.scores = scores.clone()
    return torch.zeros_like(scores).as_subclass(_Sneaky)


@pytest.mark.parametrize("answer, words", [
    (_patch_the_graders_comparison, "values differ"),
    # (asking for the watcher is refused before it can be switched off)
    (_softmax_with_the_watch_off, "sys.getprofile (it hands your code the grading's call watcher)"),
    (_softmax_with_the_watch_switched_off, "setprofile (it switches off what the grading watches)"),
    (_sneaky_answer, "Score: 0 / 1"),
])
def test_reaching_into_the_grading_scores_0(answer, words, capsys):
    hidden = load_hidden()
    assert hidden.grade("check_softmax", answer, seed=3) == 0
    assert words in capsys.readouterr().out


def test_the_standard_library_functions_grading_calls_are_checked(monkeypatch, capsys):
    """copy.deepcopy (the student's copy of the cases) and ast.literal_eval (chapter 14's key)."""
    import ast
    import copy
    hidden = load_hidden()
    monkeypatch.setattr(ast, "literal_eval", lambda text: {})
    monkeypatch.setattr(copy, "deepcopy", lambda value, memo=None: value)
    assert hidden.grade("check_self_test", "1.4", lambda: "b") == 0
    out = capsys.readouterr().out
    assert "ast.literal_eval was replaced" in out and "copy.deepcopy was replaced" in out
