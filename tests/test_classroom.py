"""The classroom edition, end to end with nbgrader, on a small chapter made for the test:
solutions become `raise NotImplementedError()`, the student edition runs to the end with
every exercise "not implemented yet", the full edition gets full marks, and an unsolved or
wrong submission gets none. tests/test_grading.py plays issue 17's students on chapter 3;
`make classroom` plays them on every chapter."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("classroom", ROOT / "tools" / "classroom.py")
classroom = importlib.util.module_from_spec(spec)
spec.loader.exec_module(classroom)

SOLVED = '''def my_attention(q, k, v):
    """Causal scaled dot-product attention: (B, H, T, D) -> (B, H, T, D)."""
    ### BEGIN SOLUTION
    T, D = q.size(-2), q.size(-1)
    scores = (q @ k.transpose(-2, -1) / D ** 0.5).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(),
                                                              float("-inf"))
    return (scores - scores.amax(-1, keepdim=True)).exp() @ v / (scores - scores.amax(-1, keepdim=True)).exp().sum(
        -1, keepdim=True)
    ### END SOLUTION'''
WRONG = '''def my_attention(q, k, v):
    """Causal scaled dot-product attention: (B, H, T, D) -> (B, H, T, D)."""
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v'''


def write_chapter(folder: Path, solution: str) -> Path:
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# 03 A test chapter"),
        nbformat.v4.new_code_cell("import minigpt\nimport torch"),
        nbformat.v4.new_code_cell(solution),
        nbformat.v4.new_code_cell("minigpt.exercises.check_causal_attention(my_attention)"),
        nbformat.v4.new_code_cell("print('the rest of the chapter still runs')"),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "03_test.ipynb"
    nbformat.write(notebook, path)
    return path


def test_real_chapters_carry_nbgrader_metadata():
    classroom.set_folders(ROOT / "notebooks", ROOT / "_classroom")
    assert classroom.tag(check_only=True) == 0, "run: python tools/classroom.py tag"


def test_tag_marks_solution_and_check_cells(tmp_path):
    path = write_chapter(tmp_path / "nb", SOLVED)
    classroom.set_folders(tmp_path / "nb", tmp_path / "course")
    assert classroom.tag(check_only=True) == 1               # untagged: reported
    assert classroom.tag(check_only=False) == 0
    assert classroom.tag(check_only=True) == 0               # idempotent
    cells = json.loads(path.read_text())["cells"]
    assert cells[2]["metadata"]["nbgrader"]["solution"] is True
    assert cells[2]["metadata"]["nbgrader"]["grade_id"] == "03_test-my_attention"
    assert cells[3]["metadata"]["nbgrader"] == {
        "grade": True, "solution": False, "locked": True, "points": 1,
        "grade_id": "03_test-check_causal_attention", "schema_version": 3}


def test_student_edition_and_autograde(tmp_path, monkeypatch):
    pytest.importorskip("nbgrader", reason="the classroom extra: pip install -e '.[classroom]'")
    write_chapter(tmp_path / "nb", SOLVED)
    classroom.set_folders(tmp_path / "nb", tmp_path / "course")
    classroom.tag(check_only=False)

    assert classroom.student(run=True) == 0                  # runs to the end, exercise open
    released = json.loads((tmp_path / "course/release/03_test/03_test.ipynb").read_text())
    code = next("".join(c["source"]) for c in released["cells"] if c["metadata"].get("nbgrader", {}).get("solution"))
    assert "raise NotImplementedError()" in code and "amax" not in code

    assert classroom.autograde() == 0                        # the full edition: full marks

    real_grade = classroom.grade                             # a grading run that wrote no row for

    def grade_without_rows(folder, **options):               # the student is not full marks
        real_grade(folder, **options)
        table = folder / "grades.csv"
        table.write_text(table.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    with monkeypatch.context() as patch:
        patch.setattr(classroom, "grade", grade_without_rows)
        assert classroom.autograde() == 1

    unsolved = tmp_path / "unsolved"
    unsolved.mkdir()
    shutil.copy2(tmp_path / "course/release/03_test/03_test.ipynb", unsolved)
    assert classroom.autograde("unsolved-student", unsolved) == 1

    wrong_folder = tmp_path / "wrong"
    wrong = json.loads((tmp_path / "nb/03_test.ipynb").read_text())
    wrong["cells"][2]["source"] = WRONG                     # the full edition's solution cell
    wrong_folder.mkdir()
    (wrong_folder / "03_test.ipynb").write_text(json.dumps(wrong))
    assert classroom.autograde("wrong-student", wrong_folder) == 1


def test_instructor_guide_lists_every_catalogued_mistake():
    classroom.set_folders(ROOT / "notebooks", ROOT / "_classroom")
    assert classroom.catalogue(check_only=True) == 0, "run: python tools/classroom.py catalogue"


def test_instructor_guide_states_each_chapter_s_cell_time_limit():
    # the limit follows each chapter's stored run, so re-running a chapter can change it
    row = next(line for line in (ROOT / "book" / "instructor_guide.md").read_text(encoding="utf-8").splitlines()
               if line.startswith("| per-cell time limit (`cell_limit`)"))
    stated = [int(cell.strip().removesuffix(" s")) for cell in row.strip("|").split("|")[1:]]
    chapters = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))[1:]      # chapter 1 has no exercise
    assert stated == [classroom.cell_limit(path) for path in chapters], "update the guide's cell_limit row"


def test_no_later_cell_needs_an_unsolved_exercise():
    """In the student edition every solution raises NotImplementedError: a later cell that calls
    the student's function (other than its check) would stop "Run all" there, unless it falls
    back to the book's own function."""
    offenders = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        solved = set()
        for index, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
            if cell["cell_type"] != "code":
                continue
            text, meta = "".join(cell["source"]), cell["metadata"].get("nbgrader", {})
            if meta.get("solution"):
                solved.update(classroom.DEFINED.findall(text))
            elif not meta.get("grade") and "except NotImplementedError" not in text:
                used = solved & set(re.findall(r"\w+", text))
                if used:
                    offenders.append(f"{path.name} cell {index} uses {sorted(used)}")
    assert not offenders, offenders


def test_the_answer_key_cell_leaves_the_student_edition():
    """A cell tagged `answer-key` (chapter 14's) is removed wherever it stands, with or without
    an "Answers" dropdown before it; the rest stays."""
    key = {"cell_type": "code", "metadata": {"tags": ["hide-cell", "answer-key"]},
           "source": 'minigpt.exercises.use_answer_key({"1.1": {"answer": 65}})'}
    question = {"cell_type": "code", "metadata": {}, "source": 'minigpt.exercises.check_self_test("1.1", answer_1_1)'}
    notebook = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# 14"}, key, question]}
    assert classroom.strip_answers(notebook) == 1
    assert notebook["cells"][1:] == [question]
    full = json.loads((ROOT / "notebooks" / "14_self_test.ipynb").read_text(encoding="utf-8"))
    limit = classroom.cell_limit(ROOT / "notebooks" / "14_self_test.ipynb")
    classroom.shape_assignment(full, "14_self_test", None, {}, limit)
    sources = "\n".join(classroom.source_text(c) for c in full["cells"])   # (nbgrader clears the outputs)
    assert "use_answer_key" not in sources and "100663296" not in sources


@pytest.mark.parametrize("chapter", sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
def test_every_course_notebook_is_valid_for_nbgrader(chapter):
    """The "How you are graded" cell once carried an id into chapter 16, an nbformat 4.4
    notebook whose cells have none: nbgrader logged the notebook as invalid on every autograde."""
    import nbformat
    path = ROOT / "notebooks" / f"{chapter}.ipynb"
    notebook = json.loads(path.read_text(encoding="utf-8"))
    classroom.shape_assignment(notebook, chapter, None, {}, classroom.cell_limit(path))
    nbformat.validate(nbformat.from_dict(notebook))


def test_the_prose_counts_the_students_make_classroom_plays():
    """README and the guide (both editions) describe grading/students.py's players: one row per
    player in the guide's table, and the README's count of them and of those who must score 0."""
    spec = importlib.util.spec_from_file_location("players", ROOT / "grading" / "students.py")
    players = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(players)
    zeros = sum(players.expected(s, "04_multi_head_attention", 3.0) == 0 for s in players.STUDENTS)
    for guide, header in ((ROOT / "book" / "instructor_guide.md", "| student | hands in | fair score |"),
                          (ROOT / "zh" / "book" / "instructor_guide.md", "| 学生 | 交上来的是 | 应得分数 |")):
        table = guide.read_text(encoding="utf-8").split(header, 1)[1].split("\n\n", 1)[0]
        assert len(table.strip().splitlines()) - 1 == len(players.STUDENTS), guide    # less the --- row
    words = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
            "sixteen seventeen eighteen nineteen twenty".split()
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"`make classroom` plays {words[len(players.STUDENTS)]} students" in readme
    assert f"and {words[zeros]} who skip or game the work 0" in readme


def test_the_readme_counts_the_exercises_and_mistakes_the_catalogue_holds():
    head = re.search(r"(\d+) exercises, (\d+) catalogued mistakes", classroom.catalogue_markdown("en"))
    self_tests = sum(classroom.source_text(cell).count("check_self_test(")
                     for cell in json.loads((ROOT / "notebooks" / "14_self_test.ipynb").read_text())["cells"]
                     if cell["cell_type"] == "code")
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert (f"{head[1]} code exercises whose checks name the mistake ({head[2]} catalogued mistakes) and "
            f"{self_tests} checked self-test questions") in readme
