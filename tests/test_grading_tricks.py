"""Tricks that once scored without the work, each now scoring 0 (or flagged for a person):
the score hidden from the display nbgrader reads, library functions that compute the answer,
answers that do no work on the cases where none is needed, a table of the visible check's
model shapes. The hidden tests' parts are called directly (tests/test_grading.py plays the
whole nbgrader pipeline)."""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import re
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import held_by_another_process, load_file_module

ROOT = Path(__file__).resolve().parents[1]


hidden = load_file_module("hidden_for_tricks", ROOT / "grading" / "hidden.py")
classroom = load_file_module("classroom_for_tricks", ROOT / "tools" / "classroom.py")


def score(check: str, answer, seed: int = 0, namespace=None) -> tuple[float, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        points = hidden.grade(check, answer, points=1.0, namespace=namespace or {}, seed=seed)
    return points, out.getvalue()


# ------------------------------------------------------------ the display nbgrader reads
@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()


def _softmax_by_hand(s):
    e = (s - s.amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


def in_cell(shell, check: str, answer):
    """grade() run as a hidden test runs it: inside a cell (IPython's display hook is in place)."""
    shell.user_ns.update(_hidden=hidden, _answer=answer)
    with contextlib.redirect_stdout(io.StringIO()):
        return shell.run_cell(f"_hidden.grade({check!r}, _answer, points=1.0, namespace={{}}, seed=0)")


@pytest.mark.parametrize("trick, named", [
    ("shell.ast_node_interactivity = 'none'", "ast_node_interactivity is 'none'"),
    ("shell.display_formatter.formatters['text/plain'].enabled = False", "text/plain display is turned off"),
    ("shell.input_transformers_post.append(lambda lines: lines)", "input_transformers_post"),
    ("import ast\nshell.ast_transformers.append(ast.NodeTransformer())", "ast_transformers"),
    ("from IPython.core.displayhook import DisplayHook\n"
     "shell.displayhook = type('Quiet', (DisplayHook,), {'__call__': lambda self, value=None: None})(shell=shell)",
     "display hook"),
])
def test_a_hidden_score_fails_the_cell(shell, trick, named):
    """nbgrader gives full points to a graded cell that shows no value: grading must raise."""
    assert in_cell(shell, "check_softmax", _softmax_by_hand).result == 1.0
    exec(trick, {"shell": shell})
    result = in_cell(shell, "check_softmax", _softmax_by_hand)
    assert isinstance(result.error_in_exec, hidden.ScoreNotShown) and named in str(result.error_in_exec)


def test_a_rounded_float_display_is_reset_before_the_score_shows(shell):
    """`%precision 0` (or a float_format that prints anything) would show 0.0 as what it likes."""
    shell.run_line_magic("precision", "0")
    plain = shell.display_formatter.formatters["text/plain"]
    plain.float_format = "1%.0s"
    assert in_cell(shell, "check_softmax", torch.zeros_like).result == 0.0
    assert plain.float_format == "%r" and plain.float_precision == ""
    assert plain(0.67) == "0.67"


def test_the_default_shell_is_no_problem(shell):
    result = in_cell(shell, "check_softmax", _softmax_by_hand)
    assert result.success and result.result == 1.0
    assert hidden.display_problems() in ([], ["the display hook was replaced"])   # outside a cell: none is in place


def _graded_cell(printed: str, shown) -> dict:
    outputs = [{"output_type": "stream", "name": "stdout", "text": printed}]
    if shown is not None:
        outputs.append({"output_type": "execute_result", "data": {"text/plain": shown}, "metadata": {},
                        "execution_count": 3})
    return {"cell_type": "code", "metadata": {"nbgrader": {"grade": True, "solution": False, "points": 1}},
            "outputs": outputs, "source": ""}


@pytest.mark.parametrize("cells, expected", [
    ([_graded_cell("Graded: x\nScore: 1 / 1\n", "1.0"), _graded_cell("Score: 0.5 / 1\n", "0.5")], 1.5),
    ([_graded_cell("Score: 0 / 1\n", None)], 0.0),                    # the value hidden: nbgrader says 1
    ([_graded_cell("Score: 0 / 1\n", "1")], 0.0),                     # shown as something else
    ([_graded_cell("no score printed\n", "1.0")], 0.0),               # the hidden test never ran
])
def test_only_a_shown_score_that_matches_the_printed_one_counts(tmp_path, cells, expected):
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells + [{"cell_type": "markdown", "metadata": {}, "source": ""}]}))
    assert classroom._shown_scores(path) == expected
    assert classroom._shown_scores(tmp_path / "missing.ipynb") is None


@pytest.mark.parametrize("line", ['get_ipython().ast_node_interactivity = "none"', "%config InteractiveShell.x = 1",
                                  "%precision 0", "ip.input_transformers_post.append(f)",
                                  "Path(minigpt.exercises.core.__file__).write_text(s)",
                                  # what a review's attacks used, none of which the patterns saw
                                  "exec(base64.b64decode(payload))", "setattr(importlib.util, name, fake)",
                                  "tree = ast.parse(inspect.getsource(minigpt.attention))",
                                  "sys.meta_path.insert(0, Finder())", "code = compile(src, '<frozen zipimport>', 'exec')"])
def test_the_review_patterns_name_display_and_file_tricks(line):
    assert any(re.search(p, line, re.MULTILINE) for p in classroom.REVIEW_PATTERNS.values()), line


@pytest.mark.parametrize("line", ["model = torch.compile(model)", "pattern = re.compile(r'x')",
                                  "evaluate(model, data.val)", "x = executor_free_code(3)"])
def test_the_run_time_code_pattern_leaves_attribute_calls_and_longer_names_alone(line):
    assert not re.search(classroom.REVIEW_PATTERNS["code made at run time, or the import system"], line), line


# ------------------------------------------------------------ library functions
def _group_norm(x, gamma, beta):
    C = x.size(-1)
    return F.group_norm(x.reshape(-1, C, 1), 1, eps=1e-5).reshape(x.shape) * gamma + beta


def _instance_norm(x, gamma, beta):
    C = x.size(-1)
    return F.instance_norm(x.reshape(-1, 1, C), eps=1e-5).reshape(x.shape) * gamma + beta


def _rms_of_centred(x, gamma, beta):
    centred = x - x.mean(-1, keepdim=True)
    return F.rms_norm(centred, (x.size(-1),), eps=1e-5) * gamma + beta


def _softmax_by_attention(s):
    """One query of 1 against keys s and values eye(n): the weights, softmax(s), come out."""
    rows, n = s.reshape(-1, s.size(-1)).shape
    out = F.scaled_dot_product_attention(torch.ones(rows, 1, 1, 1), s.reshape(rows, 1, n, 1),
                                         torch.eye(n).expand(rows, 1, n, n), scale=1.0)
    return out.reshape(s.shape)


@pytest.mark.parametrize("check, answer", [("check_layer_norm", _group_norm), ("check_layer_norm", _instance_norm),
                                           ("check_layer_norm", _rms_of_centred),
                                           ("check_softmax", _softmax_by_attention)])
def test_a_library_function_that_computes_the_answer_scores_0(check, answer):
    points, text = score(check, answer)
    assert points == 0.0 and "0 points: your answer used" in text, text


def test_the_models_private_helpers_are_no_forward():
    def forward(model, idx):
        return model.lm_head(model.ln_f(model._hidden(idx)))
    points, text = score("check_gpt_forward", forward)
    assert points == 0.0 and "_hidden" in text, text


# ------------------------------------------------------------ answers that do no work
@pytest.mark.parametrize("check, answer", [
    ("check_softmax", torch.ones_like),                               # right for one score
    ("check_rope", lambda x, *args, **kwargs: x),                     # right at position 0
    ("check_repeat_kv", lambda k, *args, **kwargs: k),                          # right for one repeat
    ("check_merge", lambda ids, pair, new: list(ids)),                # right where no pair is found
    ("check_dropout", lambda x, *args, **kwargs: x),                  # right in eval mode and for p = 0
    ("check_causal_attention", lambda q, k, v: v),                    # right for T = 1 (one key, weight 1)
])
def test_an_answer_that_does_no_work_scores_0(check, answer):
    for seed in range(3):
        points, text = score(check, answer, seed=seed)
        assert points == 0.0, text


def test_a_case_that_needs_no_work_counts_beside_one_that_does():
    """Right on T = 1 (no work) and on one real case: both count."""
    calls = []

    def half_right(s):
        calls.append(s.shape)
        return _softmax_by_hand(s) if len(calls) <= 2 else torch.zeros_like(s)
    points, text = score("check_softmax", half_right)
    assert 0.0 < points < 1.0, text


# ------------------------------------------------------------ weight-decay groups
def _decay_matrices(model, weight_decay):
    params = list(model.parameters())
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def test_decay_groups_are_graded_on_model_shapes_drawn_at_grading_time():
    """The visible check's two configs (2 layers, biases; 1 layer, no biases) are not the graded
    ones: a table of their parameter names does not score full marks."""
    from minigpt import MiniGPT, TrainConfig, make_optimizer
    from minigpt.exercises.ch08_training import DECAY_GROUPS
    table = set()
    for case in DECAY_GROUPS.cases():
        model = MiniGPT(case.args[0])
        decayed = {id(p) for g in make_optimizer(model, TrainConfig(weight_decay=0.1), torch.device("cpu")).param_groups
                   if g["weight_decay"] > 0 for p in g["params"]}
        table |= {n for n, p in model.named_parameters() if id(p) in decayed}

    def lookup(model, weight_decay):
        named = list(model.named_parameters())
        return [{"params": [p for n, p in named if n in table], "weight_decay": weight_decay},
                {"params": [p for n, p in named if n not in table], "weight_decay": 0.0}]
    assert all(score("check_decay_groups", _decay_matrices, seed=seed)[0] == 1.0 for seed in range(4))
    assert sum(score("check_decay_groups", lookup, seed=seed)[0] for seed in range(4)) < 4 * 0.75


def test_decay_groups_are_graded_with_a_weight_decay_drawn_at_grading_time():
    """A matrices' group with the visible check's values written in (0.1, or 0.05), or with no
    weight_decay (AdamW's default 0.01 then decays the biases too), scores 0."""
    def written_in(value):
        def answer(model, weight_decay):
            params = list(model.parameters())
            return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": value},
                    {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return answer

    def no_key(model, weight_decay):
        params = list(model.parameters())
        return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.dim() < 2]}]
    for seed in range(3):
        for answer in (written_in(0.1), written_in(0.05), no_key):
            assert score("check_decay_groups", answer, seed=seed)[0] == 0.0, (seed, answer)


# ------------------------------------------------------------ the grader's own files
def test_a_file_the_grading_reads_changed_during_grading_is_named(tmp_path, monkeypatch):
    """A cell that rewrote minigpt/exercises/core.py would pass every later answer: `grade`
    compares the files before and after the notebooks ran."""
    for name in ("minigpt/exercises/core.py", "minigpt/exercises/expected/X.pt", "grading/hidden.py",
                 "notebooks/03_causal_mask.ipynb"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("original")
    monkeypatch.setattr(classroom, "ROOT", tmp_path)
    monkeypatch.setattr(classroom, "GRADING", tmp_path / "grading")
    monkeypatch.setattr(classroom, "NOTEBOOKS", tmp_path / "notebooks")
    before = classroom.grading_files()
    assert len(before) == 4 and classroom.changed_grading_files(before) == []
    (tmp_path / "minigpt/exercises/core.py").write_text("def same(*args): return True")
    (tmp_path / "grading/new.py").write_text("")
    assert classroom.changed_grading_files(before) == ["grading/new.py", "minigpt/exercises/core.py"]


def _notebook_with_points(path: Path, points: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cell = {"cell_type": "code", "metadata": {"nbgrader": {"grade": True, "solution": False, "points": points,
                                                           "grade_id": "03-check_causal_mask"}},
            "outputs": [], "source": "", "execution_count": None}
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def test_grading_with_other_points_than_the_release_is_refused(tmp_path, monkeypatch):
    """Released with WEIGHTS=...=3, graded without it: the students were promised 3 points."""
    course, submitted = tmp_path / "course", tmp_path / "submitted"
    _notebook_with_points(course / "release" / "03_causal_mask" / "03_causal_mask.ipynb", 3.0)
    _notebook_with_points(course / "source" / "03_causal_mask" / "03_causal_mask.ipynb", 1.0)
    _notebook_with_points(submitted / "ana" / "03_causal_mask" / "03_causal_mask.ipynb", 3.0)
    monkeypatch.setattr(classroom, "COURSE", course)
    with pytest.raises(classroom.MiniGPTError, match=r"03-check_causal_mask: 3\.0 -> 1\.0.*ONLY/WEIGHTS that gave"):
        classroom.grade(submitted)
    # a `make student` since the release rewrote release/ with 1 point: the students' notebooks
    # still say 3 (most of them: one edited notebook does not decide)
    _notebook_with_points(course / "release" / "03_causal_mask" / "03_causal_mask.ipynb", 1.0)
    _notebook_with_points(submitted / "bo" / "03_causal_mask" / "03_causal_mask.ipynb", 3.0)
    _notebook_with_points(submitted / "cy" / "03_causal_mask" / "03_causal_mask.ipynb", 1.0)
    with pytest.raises(classroom.MiniGPTError, match=r"03-check_causal_mask: 3\.0 -> 1\.0"):
        classroom.grade(submitted)
    # refused after rebuilding the course's source with other WEIGHTS: the source is put back
    pytest.importorskip("nbgrader", reason="the classroom extra: pip install -e '.[classroom]'")
    before = sorted(p.relative_to(course) for p in course.rglob("*"))
    with pytest.raises(classroom.MiniGPTError, match=r"03_causal_mask-check_causal_mask: None -> 2\.0"):
        classroom.grade(submitted, weights={"check_causal_mask": 2.0})
    assert sorted(p.relative_to(course) for p in course.rglob("*")) == before
    assert classroom._points(course / "source" / "03_causal_mask" / "03_causal_mask.ipynb") == {"03-check_causal_mask": 1.0}


def test_the_course_folder_is_not_taken_for_the_submissions(tmp_path, monkeypatch):
    monkeypatch.setattr(classroom, "COURSE", tmp_path / "course")
    for name in ("source", "release", "submitted"):
        (tmp_path / "course" / name).mkdir(parents=True)
    with pytest.raises(classroom.MiniGPTError, match=r"is the course folder .* point SUBMITTED at .*submitted"):
        classroom.grade(tmp_path / "course")


def test_students_known_from_any_folder_or_an_earlier_grades_csv(tmp_path):
    (tmp_path / "ana" / "02_attention_from_scratch").mkdir(parents=True)
    (tmp_path / "bo").mkdir()                                 # nothing handed in yet
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / "grades.csv").write_text("student,assignment,score,max_score,note\ncy,03_causal_mask,1,1,\n")
    assert classroom._students_of(tmp_path) == {"ana", "bo", "cy"}


def test_grades_of_an_earlier_session_stay_in_grades_csv(tmp_path):
    path = tmp_path / "grades.csv"
    classroom.write_grades(path, {"02_attention_from_scratch"}, [("ana", "02_attention_from_scratch", 1.5, 2.0, "")])
    kept = classroom.write_grades(path, {"03_causal_mask"}, [("ana", "03_causal_mask", 2.0, 2.0, ""),
                                                             ("bo", "03_causal_mask", 0.0, 2.0, "no submission")])
    assert kept == [("ana", "02_attention_from_scratch", "1.5", "2.0", "")]
    rows = path.read_text().splitlines()
    assert rows == ["student,assignment,score,max_score,note", "ana,02_attention_from_scratch,1.5,2.0,",
                    "ana,03_causal_mask,2.0,2.0,", "bo,03_causal_mask,0.0,2.0,no submission"]
    # the totals: a column per chapter, a missing chapter 0, out of the sum of the maxima
    assert (tmp_path / "grades_by_student.csv").read_text().splitlines() == [
        "student,02_attention_from_scratch,03_causal_mask,total,max_total", "ana,1.5,2,3.5,4", "bo,0,0,0,4"]
    classroom.write_grades(path, {"03_causal_mask"}, [("ana", "03_causal_mask", 1.0, 2.0, "")])   # regraded
    assert path.read_text().splitlines()[1:] == ["ana,02_attention_from_scratch,1.5,2.0,", "ana,03_causal_mask,1.0,2.0,"]


def test_a_failed_write_of_grades_csv_keeps_every_earlier_grade(tmp_path, monkeypatch):
    """grades.csv is read back as the earlier sessions' grades, then rewritten: a full disk (or a
    Ctrl-C) in the middle of that write truncated it, and the course's earlier chapters were gone.
    It is now written beside and renamed into place, whole or not at all."""
    path = tmp_path / "grades.csv"
    classroom.write_grades(path, {"02_attention_from_scratch"}, [("ana", "02_attention_from_scratch", 1.5, 2.0, "")])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_open = io.open

    class FillsUp:                                          # the disk fills up mid-file
        def __init__(self, file):
            self.file = file

        def write(self, text):
            self.file.write(text[: len(text) // 2])
            self.file.flush()
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    def open_filling_up(file, mode="r", *args, **kwargs):
        opened = real_open(file, mode, *args, **kwargs)
        return FillsUp(opened) if "w" in mode and str(tmp_path) in str(file) else opened
    for module in (io, __import__("builtins")):                 # Path.open and the open() builtin
        monkeypatch.setattr(module, "open", open_filling_up)
    with pytest.raises(OSError, match="No space left"):
        classroom.write_grades(path, {"03_causal_mask"}, [("ana", "03_causal_mask", 2.0, 2.0, "")])
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before   # no temporary left either


def test_a_grades_csv_saved_again_by_a_spreadsheet_keeps_its_rows(tmp_path):
    """Excel's "CSV UTF-8" writes a byte-order mark first; read as plain utf-8 the first column
    was "\ufeffstudent", and every earlier row went to grades.csv.unreadable."""
    path = tmp_path / "grades.csv"
    path.write_text("student,assignment,score,max_score,note\nZoë,02_attention_from_scratch,1.5,2.0,\n",
                    encoding="utf-8-sig")
    assert classroom._students_of(tmp_path) == {"Zoë"}
    kept = classroom.write_grades(path, {"03_causal_mask"}, [("Zoë", "03_causal_mask", 2.0, 2.0, "")])
    assert kept == [("Zoë", "02_attention_from_scratch", "1.5", "2.0", "")]
    assert not (tmp_path / "grades.csv.unreadable").exists()
    assert path.read_text(encoding="utf-8").splitlines()[1:] == ["Zoë,02_attention_from_scratch,1.5,2.0,",
                                                                 "Zoë,03_causal_mask,2.0,2.0,"]


def test_a_notebook_handed_in_under_another_name_is_named(tmp_path):
    (tmp_path / "ana" / "03_causal_mask").mkdir(parents=True)
    (tmp_path / "ana" / "03_causal_mask" / "03_causal_mask-Copy1.ipynb").write_text("{}")
    (tmp_path / "bo" / "03_causal_mask").mkdir(parents=True)
    (tmp_path / "bo" / "03_causal_mask" / "03_causal_mask.ipynb").write_text("{}")
    (tmp_path / "bo" / "03_causal_mask" / "scratch.ipynb").write_text("{}")      # beside the right one: fine
    assert classroom.misnamed_submissions(tmp_path) == {("ana", "03_causal_mask"): ["03_causal_mask-Copy1.ipynb"]}
    assert classroom.extra_notebooks(tmp_path) == {("bo", "03_causal_mask"): ["scratch.ipynb"]}
    (tmp_path / "bo" / "03_causal_mask" / "03_causal_mask.ipynb").unlink()
    (tmp_path / "bo" / "03_causal_mask" / "scratch.ipynb").unlink()
    with pytest.raises(classroom.MiniGPTError, match=r"ana/03_causal_mask/03_causal_mask-Copy1\.ipynb: rename"):
        classroom.grade(tmp_path)
    with pytest.raises(classroom.MiniGPTError, match="does not exist"):
        classroom.grade(tmp_path / "nowhere")
    with pytest.raises(classroom.MiniGPTError, match="at least 1 second"):
        classroom.grade(tmp_path, timeout=0)


@pytest.mark.parametrize("text, ids", [
    ("ana\n\n# a comment\n bo \nana\n", ["ana", "bo"]),                        # one id per line
    ("id,first_name,last_name,email\nana,Ana,Lima,\nbo,Bo,\"Ng, Jr\",b@x\n", ["ana", "bo"]),   # nbgrader's CSV
    ("\ufeffEmail,ID\nx@y,zoë\n", ["zoë"]),                                    # a spreadsheet's export
])
def test_a_roster_is_read_as_teachers_write_it(tmp_path, text, ids):
    (tmp_path / "roster").write_text(text, encoding="utf-8")
    assert classroom.read_roster(tmp_path / "roster") == ids


@pytest.mark.parametrize("text, problem", [
    (None, "no roster at"), ("# nobody yet\n\n", "names no student"),
    ("name,email\nana,a@x\n", "without an `id` column"), (b"\xff\xfe\x00a", "save it as UTF-8"),
])
def test_a_roster_that_cannot_be_used_is_named(tmp_path, text, problem):
    path = tmp_path / "roster"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(classroom.MiniGPTError, match=re.escape(problem)):
        classroom.read_roster(path)


def test_the_teachers_own_nbgrader_settings_survive_the_rewrite(tmp_path):
    """`make student` and `make grade` rewrite nbgrader_config.py; a late-work penalty the
    teacher set in nbgrader_config_local.py beside it is read after it."""
    pytest.importorskip("nbgrader", reason="the classroom extra: pip install -e '.[classroom]'")
    from traitlets.config.loader import PyFileConfigLoader
    (tmp_path / "nbgrader_config.py").write_text(classroom.CONFIG.format(
        root=str(tmp_path), grading=str(ROOT / "grading"), extra=""))
    assert "penalty_method" not in PyFileConfigLoader("nbgrader_config.py", str(tmp_path)).load_config().get(
        "LateSubmissionPlugin", {})
    (tmp_path / "nbgrader_config_local.py").write_text('c.LateSubmissionPlugin.penalty_method = "zero"\n')
    config = PyFileConfigLoader("nbgrader_config.py", str(tmp_path)).load_config()
    assert config.LateSubmissionPlugin.penalty_method == "zero" and config.CourseDirectory.course_id == "minigpt"


def test_made_up_students_are_graded_in_a_course_of_their_own(monkeypatch):
    """play and autograde grade made-up students: never in the teacher's _classroom/, whose
    gradebook formgrader shows."""
    seen = {}
    monkeypatch.setattr(classroom, "play", lambda *a: seen.setdefault("play", classroom.COURSE) and 0)
    monkeypatch.setattr(classroom, "autograde", lambda *a: seen.setdefault("autograde", classroom.COURSE) and 0)
    monkeypatch.setattr(classroom, "tag", lambda check: seen.setdefault("tag", classroom.COURSE) and 0)
    monkeypatch.setattr(classroom, "course_lock", contextlib.nullcontext)     # no .lock in the checkout
    try:
        for argv in (["play"], ["autograde"], ["tag"]):
            assert classroom.main(argv) == 0
    finally:
        classroom.set_folders(ROOT / "notebooks", ROOT / "_classroom")
    assert seen == {"play": ROOT / "_classroom_check", "autograde": ROOT / "_classroom_check", "tag": ROOT / "_classroom"}


def test_a_second_command_on_a_course_in_use_is_refused(tmp_path, capsys):
    """Two `make grade` runs (or a grade and a `make student`) in one course folder rewrite its
    nbgrader_config.py and released_cells.json and write one gradebook.db, and a failing one puts
    the gradebook back from its own copy, undoing the other's grades: the second is refused with
    the first one's PID and told to wait or use a course folder of its own."""
    course = tmp_path / "course"

    def first_command():                                  # holds the course, in another process
        classroom.set_folders(ROOT / "notebooks", course)
        return classroom.course_lock()
    try:
        with held_by_another_process(first_command) as pid:
            for argv in (["grade", str(tmp_path / "submitted")], ["student"], ["play", "--chapters", "03"]):
                assert classroom.main(["--course", str(course), *argv]) == 2
                err = capsys.readouterr().err
                assert err.count("\n") == 1 and err.startswith("error: ")
                assert f"is in use by another tools/classroom.py command (make student, make grade, make classroom) " \
                       f"(PID {pid} on " in err and "give this one a course folder of its own (--course DIR)" in err
            assert sorted(p.name for p in course.iterdir()) == [".lock"]          # nothing was written
    finally:
        classroom.set_folders(ROOT / "notebooks", ROOT / "_classroom")
    assert classroom.main(["--course", str(course), "grade", str(course)]) == 2   # the holder is gone: free again
    assert "in use" not in capsys.readouterr().err


def test_a_make_student_that_fails_changes_nothing(tmp_path, monkeypatch, capsys):
    """nbgrader refuses a chapter half-way (it has submissions and its graded cells would
    change) after the chapters before it were regenerated: all of it is put back."""
    course = tmp_path / "course"
    for name, text in (("source/02/02.ipynb", "source 2 as released"), ("release/02/02.ipynb", "3 points"),
                       ("gradebook.db", "the gradebook"), ("nbgrader_config.py", "the config")):
        (course / name).parent.mkdir(parents=True, exist_ok=True)
        (course / name).write_text(text)
    monkeypatch.setattr(classroom, "COURSE", course)

    def make_course(only, weights):
        (course / "source" / "02" / "02.ipynb").write_text("source 2, all exercises")
        (course / "source" / "03").mkdir()
        return ["02", "03"]

    def generate(name):
        if name == "03":
            raise classroom.MiniGPTError("nbgrader generate_assignment 03 failed")
        (course / "release" / "02" / "02.ipynb").write_text("1 point")
        (course / "gradebook.db").write_text("the gradebook, changed")
        (course / classroom.RELEASED_CELLS).write_text("{}")

    monkeypatch.setattr(classroom, "make_course", make_course)
    monkeypatch.setattr(classroom, "generate", generate)
    with pytest.raises(classroom.MiniGPTError, match="03 failed"):
        classroom.student()
    assert "nothing in" in capsys.readouterr().err
    files = {str(p.relative_to(course)): p.read_text() for p in course.rglob("*") if p.is_file()}
    assert files == {"source/02/02.ipynb": "source 2 as released", "release/02/02.ipynb": "3 points",
                     "gradebook.db": "the gradebook", "nbgrader_config.py": "the config"}
    assert not (course / "source" / "03").exists()


# ------------------------------------------------------------ nearly right, the package's own code
def _layer_norm_by_hand(x, gamma, beta):
    centred = x - x.mean(-1, keepdim=True)
    return centred * (centred.pow(2).mean(-1, keepdim=True) + 1e-5).rsqrt() * gamma + beta


def test_an_answer_off_by_a_little_scores_0():
    """Grading compares as closely as the check (1e-5; LayerNorm's fresh nearly flat rows 1e-4):
    the right values 0.1% too large (softmax), or 1% (LayerNorm), earn nothing."""
    assert score("check_softmax", _softmax_by_hand)[0] == 1.0
    points, text = score("check_softmax", lambda s: _softmax_by_hand(s) * 1.001)
    assert points == 0.0, text
    assert score("check_layer_norm", _layer_norm_by_hand)[0] == 1.0
    points, text = score("check_layer_norm", lambda x, gamma, beta: _layer_norm_by_hand(x, gamma, beta) * 1.01)
    assert points == 0.0, text


def _package_lr(step, learning_rate, min_lr, warmup_iters, max_iters):
    from minigpt import TrainConfig
    return TrainConfig(learning_rate=learning_rate, min_lr=min_lr, warmup_iters=warmup_iters,
                       max_iters=max_iters).lr_at(step)


def _torch_clip(grads, max_norm):
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params], norm


def _package_mlp(C):
    from minigpt import MLP, GPTConfig
    return MLP(GPTConfig(vocab_size=2, block_size=2, n_embd=C, n_head=1, n_layer=1, dropout=0.0))


def _package_merge(ids, pair, new_id):
    from minigpt.bpe import merge_pair
    return merge_pair(ids, pair, new_id)


def _package_lora_merge(W, A, B, alpha, r):
    from minigpt.lora import LoRALinear
    base = torch.nn.Linear(W.size(1), W.size(0), bias=False)
    with torch.no_grad():
        base.weight.copy_(W)
        layer = LoRALinear(base, r, alpha)
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
        return layer.merged_weight()


@pytest.mark.parametrize("check, answer, named", [
    ("check_lr_schedule", _package_lr, "TrainConfig.lr_at (minigpt/train.py)"),
    ("check_grad_clip", _torch_clip, "clip_grad_norm_ (torch/nn/utils/clip_grad.py)"),
    ("check_cached_generate", lambda model, idx, n: model.generate(idx, n, temperature=0, use_cache=True),
     "MiniGPT.generate (minigpt/model.py)"),
    ("check_mlp", _package_mlp, "MLP.forward (minigpt/model.py)"),
    ("check_merge", _package_merge, "merge_pair (minigpt/bpe.py)"),
    ("check_lora_merge", _package_lora_merge, "LoRALinear.merged_weight (minigpt/lora.py)"),
], ids=lambda x: x if isinstance(x, str) and x.startswith("check_") else "")
def test_the_package_s_own_answer_scores_0(check, answer, named):
    """Each of these computes the right answer with the code the exercise asks the student to
    write (the package's, or torch's clip_grad_norm_): the spec forbids it, and the feedback
    names it."""
    points, text = score(check, answer, seed=1)
    assert points == 0.0 and "0 points: your answer used" in text and named in text, text


# ------------------------------------------------------------ fresh inputs
def test_a_table_of_the_visible_checks_answers_scores_0():
    """The visible cases' right outputs, looked up by their inputs: grading redraws the floats
    (softmax's scores) and the token ids (the greedy loop's prompts), so the table answers
    nothing, or at most a one-token prompt that happened to be drawn again."""
    from minigpt.exercises.ch02_attention import SOFTMAX
    from minigpt.exercises.ch09_decoding import GREEDY_LOOP
    from minigpt.exercises.ch11_kv_cache import exercise_model
    softmaxes = {case.args[0].numpy().tobytes(): torch.softmax(case.args[0], -1) for case in SOFTMAX.cases()}
    assert SOFTMAX.check(lambda s: softmaxes[s.numpy().tobytes()].clone())
    model = exercise_model()
    generated = {(case.args[0].numpy().tobytes(), case.args[0].shape, case.args[1]):
                 model.generate(case.args[0], case.args[1], temperature=0, use_cache=False)
                 for case in GREEDY_LOOP.cases()}
    assert GREEDY_LOOP.check(lambda model, idx, n: generated[idx.numpy().tobytes(), idx.shape, n].clone())
    for seed in range(3):
        points, text = score("check_softmax", lambda s: softmaxes[s.numpy().tobytes()].clone(), seed=seed)
        assert points == 0.0, text
        points, text = score("check_greedy_generate",
                             lambda model, idx, n: generated[idx.numpy().tobytes(), idx.shape, n].clone(), seed=seed)
        assert points <= 0.25, text


def test_redraw_moves_every_weight_of_a_model_and_leaves_the_visible_one_alone():
    from minigpt.exercises.ch07_gpt import FORWARD
    model = FORWARD.cases()[0].args[0]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    moved = hidden.redraw(model, torch.Generator().manual_seed(0))
    for (name, p), q in zip(model.named_parameters(), moved.parameters()):
        assert torch.equal(p, before[name]), name
        assert not torch.equal(p, q), name


# ------------------------------------------------------------ the arithmetic of the score
def test_partial_credit_is_the_share_of_cases_passed():
    """Right on 2 of softmax's 4 cases (T = 1, which needs no work, among the 2 wrong): 0.5,
    and 1.5 of 3 points."""
    def half_right(calls):
        def answer(s):
            calls.append(s.shape)
            return _softmax_by_hand(s) if len(calls) <= 2 else torch.zeros_like(s)
        return answer
    points, text = score("check_softmax", half_right([]))
    assert points == 0.5, text
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert hidden.grade("check_softmax", half_right([]), points=3.0, namespace={}, seed=0) == 1.5
    assert "Score: 1.5 / 3" in out.getvalue()


# ------------------------------------------------------------ chapter 14's questions
def _self_test(number, given):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        points = hidden.grade("check_self_test", number, given, points=1.0)
    return points, out.getvalue()


def test_a_self_test_option_in_any_spelling_scores_and_a_count_one_off_does_not():
    key = hidden.answer_key()
    assert key["2.3"]["answer"] == "b" and key["13.2"]["answer"] == 10
    for spelling in ("b", "(B)", " b "):
        points, text = _self_test("2.3", spelling)
        assert points == 1.0, (spelling, text)
    for wrong in (11, 9, 10.5):
        points, text = _self_test("13.2", wrong)
        assert points == 0.0, (wrong, text)
    assert _self_test("1.1", key["1.1"]["answer"] + 1)[0] == 0.0


# ------------------------------------------------------------ tampering while the answer runs
def test_what_the_answer_replaces_while_it_runs_scores_0():
    """The answer itself swaps torch.allclose for one that says yes: checked again after the
    student's code ran, the swap costs the exercise."""
    saved = torch.allclose

    def swap_then_zeros(s):
        torch.allclose = lambda *args, **kwargs: True
        return torch.zeros_like(s)
    try:
        points, text = score("check_softmax", swap_then_zeros)
    finally:
        torch.allclose = saved
    assert points == 0.0 and "changed what grading relies on" in text, text


# ------------------------------------------- a red-team review's tricks (2026-12-07), each once full marks
def test_a_torch_function_mode_left_on_scores_0():
    """A TorchFunctionMode entered in an earlier cell (or by the answer, and left on) answers
    torch.allclose and torch.equal for the grading's comparison: zeros scored 1/1."""
    from torch.overrides import TorchFunctionMode

    class Yes(TorchFunctionMode):
        def __torch_function__(self, func, types_, args=(), kwargs=None):
            return True if func in (torch.allclose, torch.equal) else func(*args, **(kwargs or {}))

    def enter_then_zeros(s):
        modes.append(Yes().__enter__())
        return torch.zeros_like(s)
    modes = [Yes().__enter__()]                 # an earlier cell
    try:
        points, text = score("check_softmax", torch.zeros_like)
        assert points == 0.0 and "a torch function mode" in text, text
    finally:
        modes.pop().__exit__(None, None, None)
    # entered by the answer, the mode is on in the answer's own thread, which ends with the case:
    # the comparison, in the grading's thread, never meets it, and the zeros are simply wrong
    points, text = score("check_softmax", enter_then_zeros)
    assert points == 0.0 and "values differ" in text, text
    assert torch._C._len_torch_function_stack() == 0
    torch.set_default_device("cpu")             # torch's own mode (a DeviceContext) is no trick
    try:
        assert score("check_softmax", _softmax_by_hand)[0] == 1.0
    finally:
        torch.set_default_device(None)


def _profile_hook():
    return getattr(sys, "getpro" + "file")()          # spelled so that no pattern reads it


@pytest.mark.parametrize("tamper", [
    lambda: setattr(_profile_hook(), "used", type("Sink", (dict,), {"__setitem__": lambda *a: None})()),
    lambda: _profile_hook().used.clear(),
], ids=["records-replaced", "records-emptied"])
def test_the_call_watchers_records_are_out_of_the_answers_reach(tamper):
    """The profiler the grading installs is the Watcher itself: reached through sys.getprofile(),
    its records of forbidden calls were replaced by a dict that keeps nothing (or emptied), and
    torch.softmax scored 1/1."""
    def softmax_unseen(s):
        out = torch.softmax(s, -1)
        tamper()
        return out
    points, text = score("check_softmax", softmax_unseen)
    assert points == 0.0 and "getprofile" in text, text


def test_a_function_of_the_grading_changed_in_place_scores_0():
    """`same.__code__ = ...` keeps the function object (a snapshot by identity saw nothing) and
    makes the comparison say yes: junk scored 1/1, in exercises and in chapter 14's questions."""
    import gc

    def yes_everywhere():
        for module in gc.get_objects():
            if isinstance(module, types.ModuleType) and module.__name__.startswith("_minigpt_grading_") \
                    and module.__name__.endswith(".exercises.core"):
                module.same.__code__ = (lambda *args, **kwargs: True).__code__

    def merge(ids, pair, new_id):
        yes_everywhere()
        return []
    points, text = score("check_merge", merge)
    assert points == 0.0 and "changed the grading's own code" in text and "core.same" in text, text

    def answer():
        yes_everywhere()
        return 12345
    with contextlib.redirect_stdout(io.StringIO()) as out:
        points = hidden.grade("check_self_test", "1.1", answer, points=1.0)
    assert points == 0.0 and "core.same" in out.getvalue(), out.getvalue()


def test_a_profiler_of_the_answers_own_that_hides_its_calls_scores_0():
    """cProfile takes the profile hook from the watcher; the answer calls the package's
    merge_pair unseen, then puts the watcher back (found where threading keeps it for new
    threads): 1/1 before."""
    import cProfile

    from minigpt.bpe import merge_pair

    import threading
    alive = []                          # a profiler collected while enabled would unset the hook

    def merge(ids, pair, new_id):
        watcher = threading._profile_hook       # no call: the watcher is handed to new threads there
        alive.append(cProfile.Profile())
        alive[-1].enable()
        try:
            return merge_pair(ids, pair, new_id)
        finally:
            getattr(sys, "setpro" + "file")(watcher)
    points, text = score("check_merge", merge)
    assert points == 0.0 and "enable" in text, text


def test_a_torch_nn_class_changed_in_an_earlier_cell_scores_0():
    """nn.LayerNorm's forward made to return zeros: every model's ln_f gives 0, its tied lm_head
    logits of 0, and an answer of zeros for the whole GPT's forward scored 1/1."""
    saved = nn.LayerNorm.forward
    nn.LayerNorm.forward = lambda self, x: torch.zeros_like(x)
    try:
        points, text = score("check_gpt_forward",
                             lambda model, idx: torch.zeros(*idx.shape, model.lm_head.out_features))
    finally:
        nn.LayerNorm.forward = saved
    assert points == 0.0 and "torch.nn.LayerNorm.forward was replaced" in text, text


@pytest.mark.parametrize("uncopied", [lambda value, memo: value, copy._deepcopy_atomic], ids=["notebook's", "copy's own"])
def test_a_deepcopy_that_shares_the_models_parameters_scores_0(uncopied):
    """deepcopy's dispatch table made to hand nn.Parameters back uncopied: the student's "own
    copy" of a block is the reference's, zeroing it makes block(x) = x, and x scored 1/1."""
    def zero_then_input(block, x):
        with torch.no_grad():
            for p in block.parameters():
                p.zero_()
        return x.clone()
    copy._deepcopy_dispatch[nn.Parameter] = uncopied
    try:
        points, text = score("check_pre_ln_block", zero_then_input)
    finally:
        del copy._deepcopy_dispatch[nn.Parameter]
    assert points == 0.0 and "deepcopy" in text, text


def test_a_rewritten_standard_output_or_a_forged_float_printer_fails_the_cell(shell):
    """The printed "Score: 0 / 1" rewritten on its way out and the shown 0.0 printed as 1.0 by a
    printer that claims to be IPython's (its __module__ set by hand): both read as full marks."""
    class Rewriter(io.TextIOBase):
        def __init__(self, real):
            self.real = real

        def write(self, text):
            return self.real.write(re.sub(r"Score: [\d.]+ / ([\d.]+)", r"Score: \1 / \1", text))

    shell.user_ns.update(_hidden=hidden, Rewriter=Rewriter)
    with contextlib.redirect_stdout(io.StringIO()):      # the kernel's stream, which the cell wraps
        result = shell.run_cell("import contextlib, sys, torch\n"
                                "contextlib.redirect_stdout(Rewriter(sys.stdout)).__enter__()\n"
                                "_hidden.grade('check_softmax', torch.zeros_like, points=1.0, namespace={}, seed=0)")
    assert isinstance(result.error_in_exec, hidden.ScoreNotShown) and "standard output" in str(result.error_in_exec)

    def fake(value, printer, cycle):
        printer.text("1.0")
    fake.__module__ = "IPython.core.formatters"
    shell.display_formatter.formatters["text/plain"].type_printers[float] = fake
    result = in_cell(shell, "check_softmax", torch.zeros_like)
    assert isinstance(result.error_in_exec, hidden.ScoreNotShown) and "display of float" in str(result.error_in_exec)


@pytest.mark.parametrize("line", [
    "getattr(sys, 'getpro' + 'file')().used = {}", "threading._profile_hook", "p = cProfile.Profile()",
    "for m in gc.get_objects():", "m.same.__code__ = f.__code__", "hook.__closure__[0].cell_contents",
    "Yes().__enter__()", "class Yes(TorchFunctionMode):", "copy._deepcopy_dispatch[nn.Parameter] = f",
    "nn.LayerNorm.forward = lambda self, x: x", "contextlib.redirect_stdout(Out(sys.stdout)).__enter__()",
    "plain.type_printers[float] = fake", "sys.stdout = Out()"])
def test_the_review_patterns_name_the_red_teams_tricks(line):
    assert any(re.search(p, line, re.MULTILINE) for p in classroom.REVIEW_PATTERNS.values()), line


# ---------------------------------------- a second red-team round (2026-12-07), each once full marks
def test_a_kernel_of_the_notebooks_for_torchs_comparison_scores_0():
    """A Python kernel registered for aten::allclose and aten::equal: the dispatcher itself said
    yes to the grading's comparison, and zeros scored 1/1."""
    lib = torch.library.Library("aten", "IMPL")
    try:
        lib.impl("allclose", lambda a, b, rtol=1e-5, atol=1e-8, equal_nan=False: True, "CPU")
        lib.impl("equal", lambda a, b: True, "CPU")
        points, text = score("check_softmax", torch.zeros_like)
    finally:
        lib._destroy()
    assert points == 0.0 and "aten::allclose has a kernel of the notebook's (CPU)" in text, text
    assert score("check_softmax", _softmax_by_hand)[0] == 1.0        # and nothing is left of it


def test_a_hook_on_every_module_scores_0():
    """register_module_forward_hook made every module's output zeros, the reference's model's too."""
    from torch.nn.modules.module import register_module_forward_hook

    def zeros(module, args, out):
        return torch.zeros_like(out) if isinstance(out, torch.Tensor) else out
    handle = register_module_forward_hook(zeros)
    try:
        points, text = score("check_gpt_forward",
                             lambda model, idx: torch.zeros(*idx.shape, model.lm_head.out_features))
    finally:
        handle.remove()
    assert points == 0.0 and "a hook on every nn.Module (_global_forward_hooks)" in text, text


def test_a_forbidden_operator_run_with_torchs_dispatch_switched_off_scores_0():
    """The operator's C function (`_op`, nameless) called inside _DisableTorchDispatch, which the
    operators' watch (a dispatch mode) does not see: torch's softmax scored 1/1."""
    op = torch.ops.aten._softmax.default._op

    def my_softmax(s):
        with torch._C._DisableTorchDispatch():
            return op(s, -1, False)
    points, text = score("check_softmax", my_softmax)
    assert points == 0.0 and "torch's operator _softmax" in text and "_DisableTorchDispatch" in text, text


def test_another_genuine_torch_method_put_on_a_torch_class_scores_0():
    """nn.Linear.forward and nn.GELU.forward made nn.Identity's (torch's own code, so the first
    round's check passed it): the reference MLP was the identity, and x scored 1/1."""
    saved = nn.Linear.forward, nn.GELU.forward
    for layer in (nn.Linear, nn.GELU):
        layer.forward = nn.Identity.forward
    try:
        points, text = score("check_mlp", lambda mlp, x: x.clone())
    finally:
        nn.Linear.forward, nn.GELU.forward = saved
    assert points == 0.0 and "torch.nn.Linear.forward was replaced by Identity.forward" in text, text


def test_a_parameter_that_deepcopy_hands_back_uncopied_scores_0():
    """nn.Parameter.__deepcopy__ made OpOverload's (`return self`, torch's code): the student's copy
    of a block was the reference's, zeroing it made block(x) = x, and x scored 1/1."""
    name = "__deep" + "copy__"
    saved = vars(nn.Parameter)[name]
    type.__setattr__(nn.Parameter, name, vars(torch._ops.OpOverload)[name])

    def zero_then_input(block, x):
        with torch.no_grad():
            for p in block.parameters():
                p.zero_()
        return x.clone()
    try:
        points, text = score("check_pre_ln_block", zero_then_input)
    finally:
        type.__setattr__(nn.Parameter, name, saved)
    assert points == 0.0 and "copying a case gave your code the very tensors" in text, text
    assert "torch.nn.Parameter.__deepcopy__ was replaced by OpOverload.__deepcopy__" in text, text


def test_a_float_printer_in_the_mimebundle_formatter_fails_the_cell(shell):
    """The mimebundle formatter can supply the text/plain nbgrader reads: a printer of floats
    there showed 1.0 for a 0 (with text/plain's own float printer removed)."""
    shell.display_formatter.mimebundle_formatter.type_printers[float] = lambda value, include=None, exclude=None: (
        {"text/plain": "1.0"})
    shell.display_formatter.formatters["text/plain"].type_printers.pop(float)
    result = in_cell(shell, "check_softmax", torch.zeros_like)
    assert isinstance(result.error_in_exec, hidden.ScoreNotShown), result.error_in_exec
    assert "display of float values was replaced (MimeBundleFormatter)" in str(result.error_in_exec)


def test_a_second_score_line_printed_by_the_notebook_does_not_count(tmp_path):
    """`_shown_scores` took the last "Score:" line, which the notebook's own code could print."""
    path = tmp_path / "nb.ipynb"
    cells = [_graded_cell("Graded: x\nScore: 0 / 1\nScore: 1 / 1\n", "1.0")]
    path.write_text(json.dumps({"cells": cells}))
    assert classroom._shown_scores(path) == 0.0


@pytest.mark.parametrize("line", [
    "lib = torch.library.Library('aten', 'IMPL')", "register_module_forward_hook(f)",
    "with torch._C._DisableTorchDispatch():", "op = torch.ops.aten._softmax.default._op",
    "type.__setattr__(nn.Parameter, name, f)", "fmt.mimebundle_formatter.type_printers[float] = f",
    "    layer.forward = nn.Identity.forward"])
def test_the_review_patterns_name_the_second_rounds_tricks(line):
    assert any(re.search(p, line, re.MULTILINE) for p in classroom.REVIEW_PATTERNS.values()), line


def test_a_librarys_own_patch_of_nn_module_is_no_trick():
    """torch.compile (dynamo) wraps nn.Module.__init__ with a function made at run time, and
    transformers adds nn.Module.smart_apply the same way: a notebook that compiled a model
    before a graded cell scored 0 with the first version of the torch.nn class check."""
    from torch._dynamo import mutation_guard
    mutation_guard.install_generation_tagging_init()       # left in place, as torch.compile leaves it
    assert "<locals>" in nn.Module.__init__.__qualname__
    points, text = score("check_softmax", _softmax_by_hand)
    assert points == 1.0, text


# ----------------------------------------- a third red-team round (2026-12-07), each once full marks
def _notebook(source: str, cell: int = 1) -> dict:
    """Run `source` as a notebook cell does: its code is the notebook's (no library file)."""
    namespace = {}
    exec(compile(source, f"<ipython-input-{cell}>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("softmax", [
    lambda s: torch._refs.softmax(s, -1),
    lambda s: torch._decomp.decompositions._softmax(s, -1, False),
    lambda s: torch.sparse.softmax(s.to_sparse(), -1).to_dense(),
    lambda s: torch._masked_softmax(s, torch.zeros_like(s, dtype=torch.bool), -1, None),
    lambda s: (s - s.logsumexp(-1, keepdim=True)).exp(),
], ids=["_refs", "_decomp", "sparse", "_masked_softmax", "logsumexp"])
def test_a_softmax_torch_does_not_call_softmax_scores_0(softmax):
    """torch's reference implementations in Python, its sparse and masked softmax, and a
    normaliser from logsumexp: none reached an operator named softmax, all scored 1/1."""
    points, text = score("check_softmax", softmax)
    assert points == 0.0 and "your answer used" in text, text


def test_an_answer_from_transformers_scores_0():
    """Llama's eager attention computes the causal weights (matmul and softmax, both allowed after
    chapter 2): the libraries installed beside the book may not answer an exercise."""
    ml = pytest.importorskip("transformers.models.llama.modeling_llama")

    def weights(q, k):                                          # (B, T, D) -> (B, T, T)
        T = q.size(-2)
        mask = torch.zeros(T, T).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        module = types.SimpleNamespace(num_key_value_groups=1, training=False)
        return ml.eager_attention_forward(module, q[:, None], k[:, None], k[:, None], mask,
                                          scaling=q.size(-1) ** -0.5)[1][:, 0]
    points, text = score("check_attention_weights", weights)
    assert points == 0.0 and "transformers/" in text, text


def test_importing_torchs_decompositions_from_an_honest_answer_is_no_trick():
    """torch imports parts of torch._decomp lazily, while an honest answer runs: only a call counts."""
    import subprocess
    script = ("import sys; sys.path.insert(0, 'tests'); import test_grading_tricks as t; "
              "assert 'torch._decomp.decompositions_for_rng' not in sys.modules; "
              "print(t.score('check_softmax', t._softmax_by_hand)[0])")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1:] == ["1.0"], out.stdout + out.stderr


def test_a_descriptor_on_torch_tensor_scores_0():
    """`torch.Tensor.detach = Quiet(...)`: not callable, so the check passed it, yet `t.detach()`
    in the grading's comparison ran what its __get__ returned (a tensor of zeros)."""
    saved = vars(torch.Tensor)["detach"]
    namespace = _notebook("import torch\n"
                          "class Quiet:\n"
                          "    def __init__(self, real): self.real = real\n"
                          "    def __get__(self, obj, cls=None): return self.real.__get__(obj, cls) if obj is not None else self.real\n"
                          "torch.Tensor.detach = Quiet(torch.Tensor.detach)\n")
    try:
        points, text = score("check_softmax", torch.zeros_like)
    finally:
        torch.Tensor.detach = saved
    assert isinstance(namespace["Quiet"], type)
    assert points == 0.0 and "torch.Tensor.detach was replaced by a descriptor of the notebook" in text, text


def test_a_class_that_says_it_is_torchs_scores_0():
    """`class allclose: __module__ = "torch"` whose __new__ says True, put in torch.allclose."""
    saved = torch.allclose
    namespace = _notebook("class allclose:\n    __module__ = 'torch'\n"
                          "    def __new__(cls, *args, **kwargs): return True\n")
    torch.allclose = namespace["allclose"]
    try:
        points, text = score("check_softmax", torch.zeros_like)
    finally:
        torch.allclose = saved
    assert points == 0.0 and "torch.allclose was replaced by a class of the notebook" in text, text


def test_a_replaced_round_cannot_raise_the_score(shell):
    """builtins.round replaced by a class that hands back `points` when grade() rounds the score:
    tampering set 0, and the line printed and the value shown said 1 all the same."""
    import builtins
    saved = builtins.round
    namespace = _notebook("import builtins\n_real = builtins.round\n"
                          "class round:\n    __module__ = 'builtins'\n"
                          "    def __new__(cls, number, ndigits=None): return 1.0\n")
    builtins.round = namespace["round"]
    try:
        result = in_cell(shell, "check_softmax", torch.zeros_like)
    finally:
        builtins.round = saved
    assert result.result == 0.0, result.result


def test_the_references_module_is_out_of_the_answers_reach():
    """The answer once reached the reference through its callers' frames and swapped `torch` in
    the reference's module for a stand-in whose softmax gives zeros: every case was then one
    that zeros answer, and all of them counted. Its thread's frames now hold no `exercise`."""
    namespace = _notebook(
        "import sys, torch\n"
        "found = []\n"
        "def swap_then_zeros(s):\n"
        "    frame = sys._getframe(1)\n"
        "    while frame is not None:\n"
        "        if 'exercise' in frame.f_locals:\n"
        "            found.append(frame.f_locals['exercise'])\n"
        "        frame = frame.f_back\n"
        "    return torch.zeros_like(s)\n")
    points, text = score("check_softmax", namespace["swap_then_zeros"])
    assert namespace["found"] == [], "a frame of the answer's thread holds the exercise"
    assert points == 0.0 and "✗" in text, text


# What the answer's thread can reach: its frames, their globals and locals, and what those hold
# (a function's globals and closure, a bound method's object, a class's or an object's namespace,
# the items of containers), a few steps deep. Modules Python can import by name are left out:
# any code reaches those, and the grading is not among them.
_REACH = """
import sys, types
reached = []
def reach(start, steps=5, limit=60000):
    seen, layer = set(), list(start)
    for _ in range(steps):
        following = []
        for value in layer:
            if id(value) in seen or len(seen) > limit:
                continue
            seen.add(id(value))
            reached.append(value)
            if isinstance(value, types.ModuleType):
                if sys.modules.get(value.__name__) is value:
                    continue
                following += list(vars(value).values())
            elif isinstance(value, dict):
                following += list(value.values())
            elif isinstance(value, (list, tuple, set, frozenset)):
                following += list(value)
            elif isinstance(value, types.FunctionType):
                following += [value.__globals__, *(c.cell_contents for c in value.__closure__ or ()
                                                   if c.cell_contents is not None), *(value.__defaults__ or ())]
            elif isinstance(value, types.MethodType):
                following += [value.__self__, value.__func__]
            elif isinstance(value, type):
                following += list(type.__dict__["__dict__"].__get__(value).values())
            elif type(value).__module__ != "builtins" and hasattr(type(value), "__dictoffset__") \
                    and type(value).__dictoffset__:
                following += list(object.__getattribute__(value, "__dict__").values())
        layer = following

def walk_up(s):
    frames, frame = [], sys._getframe()
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    reach([f.f_locals for f in frames] + [f.f_globals for f in frames])
    e = (s - s.amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)
"""


def test_the_answer_runs_where_nothing_leads_to_the_grading():
    """The student's code runs in a thread of its own: from its frames, nothing leads to the
    grading's module, its watcher or guard, the exercise's reference or the worked solutions
    (the four tricks of the third review reached each through the callers' frames)."""
    namespace = _notebook(_REACH)
    points, text = score("check_softmax", namespace["walk_up"], seed=4)
    assert points == 1.0, text
    reached = namespace["reached"]
    assert len(reached) > 100, len(reached)         # (the walk itself works)
    assert not [v for v in reached if v is vars(hidden)], "the grading's module globals"
    assert not [v for v in reached if isinstance(v, (hidden.Watcher, hidden.Guard))], "the watcher or the guard"
    assert not [v for v in reached if isinstance(v, types.ModuleType) and v.__name__.startswith("_minigpt_solutions_")]
    assert not [v for v in reached if type(v).__name__ == "Exercise" and getattr(v, "reference", None) is not None], \
        "an exercise with its reference"
    assert not [v for v in reached if isinstance(v, types.FunctionType) and v.__code__.co_filename.endswith(
        "solutions.py")], "a worked solution"


def test_the_new_threads_hook_holds_no_watcher():
    """`threading._profile_hook` once handed the answer the watcher without a call."""
    import threading
    seen = []

    def look(s):
        seen.append(threading._profile_hook)
        return _softmax_by_hand(s)
    points, text = score("check_softmax", look)
    assert points == 1.0 and seen and all(hook is None for hook in seen), (seen, text)


def _softmax_after(line: str) -> tuple[float, str]:
    """The score of an honest softmax written in the notebook that first runs `line`."""
    namespace = _notebook("import gc, sys, torch, torch.utils._python_dispatch\n"
                          "def look(s):\n"
                          f"    {line}\n"
                          "    e = (s - s.amax(-1, keepdim=True)).exp()\n"
                          "    return e / e.sum(-1, keepdim=True)\n")
    return score("check_softmax", namespace["look"])


@pytest.mark.parametrize("finder", [
    "gc.get_objects()", "gc.get_referrers(s)", "gc.get_referents(s)", "sys._current_frames()",
    "object.__subclasses__()"])
def test_an_answer_that_looks_for_the_grading_elsewhere_scores_0(finder):
    """The heap, the other threads' frames and a class's subclasses hold the grading's objects."""
    points, text = _softmax_after(finder)
    assert points == 0.0 and "it finds the grading's objects" in text, text


def test_code_the_grading_would_run_by_reading_an_object_never_runs():
    """An object of the notebook's put in torch's namespace, whose `__name__` is a property: the
    grading reads it (is it torch's own?), and its code once ran there, in the grading's thread,
    with the grading's frames above it. Now it never runs, and the grade is 0."""
    namespace = _notebook("ran = []\n"
                          "class Sneaky:\n"
                          "    @property\n"
                          "    def __name__(self):\n"
                          "        ran.append(1)\n"
                          "        return 'sneaky'\n"
                          "    def __call__(self, *args):\n"
                          "        return None\n")
    torch.sneaky_helper = namespace["Sneaky"]()
    try:
        points, text = score("check_softmax", _softmax_by_hand)
    finally:
        del torch.sneaky_helper
    assert namespace["ran"] == [], "the notebook's property ran inside the grading"
    assert points == 0.0 and "ran inside the grading's own code" in text and "Sneaky.__name__" in text, text


def test_a_signal_handler_of_the_notebooks_scores_0():
    """A signal handler runs in the grading's thread between any two of its lines, with the
    grading's frames above it, even inside the Guard's own code (which no profiler watches):
    one of the notebook's is refused, wherever the timer lands."""
    import signal
    namespace = _notebook("ran = []\n"
                          "def handler(signum, frame):\n"
                          "    ran.append(frame)\n")
    previous = signal.signal(signal.SIGALRM, namespace["handler"])
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        points, text = score("check_softmax", _softmax_by_hand)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert points == 0.0 and "a signal handler of the notebook's is installed (SIGALRM)" in text, text
    assert hidden._signal_handlers_of_the_notebook() == []


def test_a_library_thread_fed_the_answers_code_scores_0():
    """logging's QueueListener starts a thread (the library's, with the library's target), and
    the answer feeds it a record whose message is an object of the notebook's: formatting it
    runs the notebook's __str__ there, where the watch of the answer's thread does not reach."""
    namespace = _notebook("import io, logging, logging.handlers, queue, torch\n"
                          "class Message:\n"
                          "    def __init__(self, s):\n"
                          "        self.s, self.out = s, None\n"
                          "    def __str__(self):\n"
                          "        self.out = torch.softmax(self.s, -1)\n"
                          "        return 'done'\n"
                          "def answer(s):\n"
                          "    jobs = queue.Queue()\n"
                          "    listener = logging.handlers.QueueListener(jobs, logging.StreamHandler(io.StringIO()))\n"
                          "    listener.start()\n"
                          "    message = Message(s)\n"
                          "    jobs.put(logging.makeLogRecord({'msg': message}))\n"
                          "    listener.stop()\n"
                          "    return message.out\n")
    points, text = score("check_softmax", namespace["answer"])
    assert points == 0.0 and "a thread that runs your code or is fed it" in text, text


def test_the_hidden_block_binds_no_name_in_the_notebook():
    """The hidden test once bound `_grading` (the loaded grading module) in the notebook's
    namespace, where the answer's globals lead. Run as the hidden block runs, the answer sees
    no object of the grading's among its globals, and scores its points."""
    block = classroom.hidden_test("minigpt.exercises.check_softmax(my_softmax)", 1.0)
    namespace = _notebook("import types\n"
                          "import minigpt\n"
                          "seen = []\n"
                          "def my_softmax(s):\n"
                          "    seen.extend(name for name, value in list(globals().items())\n"
                          "                if isinstance(value, types.ModuleType) and 'hidden' in value.__name__\n"
                          "                or 'spec' in name)\n"
                          "    e = (s - s.amax(-1, keepdim=True)).exp()\n"
                          "    return e / e.sum(-1, keepdim=True)\n")
    hidden_part = block.split(classroom.HIDDEN_BEGIN)[-1].split(classroom.HIDDEN_END)[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        points = eval(compile(hidden_part.strip(), "<ipython-input-2>", "eval"), namespace)
    assert points == 1.0, out.getvalue()
    assert namespace["seen"] == [] and not [k for k in namespace if "grading" in k or "spec" in k], sorted(namespace)


def test_chapter_14s_answer_runs_where_the_key_is_out_of_reach():
    """A function answer of chapter 14 runs in a thread of its own too: its frames hold neither
    `answer_key` nor the question."""
    namespace = _notebook("import sys\n"
                          "names = []\n"
                          "def answer():\n"
                          "    frame = sys._getframe(1)\n"
                          "    while frame is not None:\n"
                          "        names.extend(frame.f_globals)\n"
                          "        names.extend(frame.f_locals)\n"
                          "        frame = frame.f_back\n"
                          "    return 12345\n")
    with contextlib.redirect_stdout(io.StringIO()) as out:
        points = hidden.grade("check_self_test", "1.1", namespace["answer"], points=1.0)
    assert points == 0.0 and "Graded: question 1.1" in out.getvalue(), out.getvalue()
    assert namespace["names"] and not {"answer_key", "question", "guarded", "package"} & set(namespace["names"])


@pytest.mark.parametrize("reach", ["torch._C._get_dispatch_stack_at(0)",
                                   "torch.utils._python_dispatch._get_current_dispatch_mode()"])
def test_the_operators_watch_is_out_of_the_answers_reach(reach):
    """The dispatch mode that sees forbidden operators sits on the answer's thread's mode stack:
    handed to the answer, its names could be emptied (no call), and a TorchScript softmax then
    went unseen. Asking for it costs the exercise."""
    points, text = _softmax_after(f"mode = {reach}")
    assert points == 0.0 and "it hands your code the grading's watch of torch's operators" in text, text


def test_a_monitoring_tool_left_on_scores_0(monkeypatch):
    """sys.monitoring (Python 3.12 and later) calls its tools' callbacks in every thread, before
    any profiler: one registered in an earlier cell would see the answer's thread start. (Faked
    here: this machine's Python is 3.11.)"""
    tools = {3: ("spy", 1 << 0)}
    fake = types.SimpleNamespace(get_tool=lambda tool: tools.get(tool, (None, 0))[0],
                                 get_events=lambda tool: tools.get(tool, (None, 0))[1])
    monkeypatch.setattr(sys, "monitoring", fake, raising=False)
    assert hidden._monitoring_tools() == ["a sys.monitoring tool is on ('spy'): its callbacks run inside the grading"]
    tools[3] = ("spy", 0)               # registered, every event off: nothing of it runs
    assert hidden._monitoring_tools() == []


def test_ctrl_c_in_the_answer_stops_the_grading():
    """KeyboardInterrupt raised by the answer's thread reaches the cell, as Ctrl-C does."""
    def interrupted(s):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        score("check_softmax", interrupted)


def test_an_answer_that_is_not_a_def_or_a_class_scores_0():
    """A functools.partial (or a library's callable) runs code that is not the answer's own and
    can be re-pointed at the reference after it was handed in."""
    points, text = score("check_softmax", functools.partial(torch.softmax, dim=-1))
    assert points == 0.0 and "grading takes a function (def) or a class (class)" in text, text
    points, text = score("check_softmax", torch.zeros_like)
    assert points == 0.0 and "grading takes a function" in text, text


def test_a_hook_in_a_standard_module_the_grading_calls_scores_0():
    """site.getsitepackages replaced in an earlier cell: the grading calls it while it builds the
    watcher, and the hook ran there unwatched (it re-pointed the answer at the reference)."""
    import site
    saved = site.getsitepackages
    namespace = _notebook("import site\n_real = site.getsitepackages\n"
                          "def hook(*args): return _real(*args)\n"
                          "site.getsitepackages = hook\n")
    try:
        points, text = score("check_softmax", _softmax_by_hand)
    finally:
        site.getsitepackages = saved
    assert callable(namespace["hook"])
    assert points == 0.0 and "site.getsitepackages was replaced by code of the notebook (hook)" in text, text


@pytest.mark.parametrize("line", [
    "for fr, _ in traceback.walk_stack(None):", "loc = inspect.getargvalues(fr).locals",
    "m.__class__ = reference", "answer.__setstate__((reference, (), {}, None))",
    'g = getattr(ref, "__" + "globals__")', 'code.replace(**{"co_" + "filename": name})',
    '_g = __import__("g" + "c")', "frame = err.__traceback__.tb_frame", "gen.gi_frame.f_locals"])
def test_the_review_patterns_name_the_third_rounds_tricks(line):
    assert any(re.search(p, line, re.MULTILINE) for p in classroom.REVIEW_PATTERNS.values()), line


def test_a_forbidden_function_traced_in_an_earlier_cell_scores_0():
    """torch.softmax traced by make_fx in an earlier cell, with softmax decomposed: the graph runs
    amax, exp, sum and div, all allowed, and the answer that calls it scored 1/1."""
    from torch._decomp import get_decompositions
    from torch.fx.experimental.proxy_tensor import make_fx
    graph = make_fx(lambda s: torch.softmax(s, -1), tracing_mode="symbolic",
                    decomposition_table=get_decompositions([torch.ops.aten._softmax]))(torch.randn(3, 4))
    assert "softmax" not in graph.code
    points, text = score("check_softmax", lambda s: graph(s))
    assert points == 0.0 and "code that torch.fx traced" in text, text


def test_an_honest_answer_compiled_with_torch_compile_keeps_its_marks():
    """torch.compile runs graphs torch.fx generated, and torch._decomp's decompositions, for an
    honest answer too: neither is the student's doing there."""
    compiled = torch.compile(_softmax_by_hand, backend="aot_eager")
    try:
        compiled(torch.randn(2, 3))
    except Exception as err:         # no compiler tool chain, an unsupported Python
        pytest.skip(f"torch.compile does not run here: {type(err).__name__}")
    points, text = score("check_softmax", lambda s: compiled(s))
    assert points == 1.0, text


def test_logsumexp_is_forbidden_where_it_is_the_answer_only():
    """In check_softmax logsumexp computes the normaliser; chapter 13's online softmax may merge
    its tiles' maxima and sums with it."""
    assert "logsumexp" in hidden.SPECS["check_softmax"].forbid_c
    assert "logsumexp" not in hidden.SPECS["check_online_softmax"].forbid_c
