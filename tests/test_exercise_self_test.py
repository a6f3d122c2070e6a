"""Chapter 14's self-test: the facts its answers state are the book's measured ones, a wrong
answer of the wrong form says what form the answer takes, and without the answer key (the
student edition) a check cannot tell a right answer from a wrong one.

The answer key is not in the package: it is a hidden cell of the full edition's notebook
(notebooks/14_self_test.ipynb, tagged `answer-key`), read here as grading/hidden.py reads it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import minigpt
from minigpt.exercises import QUESTIONS, check_self_test
from minigpt.exercises.ch14_self_test import use_answer_key
from minigpt.exercises.core import FAILED, NOT_IMPLEMENTED, PASSED, RECORDED, ExerciseFailed

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("hidden_for_self_test_tests", ROOT / "grading" / "hidden.py")
hidden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hidden)
KEY = hidden.answer_key()


@pytest.fixture
def key():
    """The full edition: the answer key registered, as its hidden cell does; removed afterwards."""
    use_answer_key(KEY)
    yield KEY
    use_answer_key(None)


def test_the_key_answers_every_question_and_the_package_holds_no_answer():
    assert list(KEY) == list(QUESTIONS)
    import dataclasses
    fields = {f.name for f in dataclasses.fields(next(iter(QUESTIONS.values())))}
    assert fields == {"number", "text", "form", "kind", "options"}
    source = (ROOT / "minigpt" / "exercises" / "ch14_self_test.py").read_text(encoding="utf-8")
    for entry in KEY.values():               # no explanation or hint text is left in the package
        assert entry["explanation"][:40] not in source
        assert not [h for h in entry["wrong"].values() if h[:40] in source]


def test_the_vocabulary_is_described_as_chapter_1_prints_it():
    chars = set(minigpt.load_shakespeare())
    letters = {c for c in chars if c.isalpha()}
    digits = {c for c in chars if c.isdigit()}
    others = chars - letters - digits - {" ", "\n"}
    assert len(chars) == KEY["1.1"]["answer"] == 65
    assert len(letters) == 52 and digits == {"3"}
    assert others == set("!',-.:;?") | {"$", "&"}
    said = KEY["1.1"]["explanation"]
    assert "digits" not in said and "the digit '3'" in said and "'$' and '&'" in said
    assert "8 punctuation marks (! ' , - . : ; ?)" in said


def test_word_start_heads_look_at_the_first_letter_as_chapter_10_measured():
    assert KEY["10.2"]["answer"] == "b" and "first letter" in QUESTIONS["10.2"].text
    assert "0.44" in KEY["10.2"]["explanation"] and "0.24" in KEY["10.2"]["explanation"]


@pytest.mark.parametrize("number,given,form", [
    ("1.4", 4.17, "one letter"), ("9.1", "greedy", "one letter"), ("11.3", "96 MiB", "bytes"),
    ("1.1", 65.5, "whole number"), ("4.1", 4, "a shape"), ("12.2", "one", "index of one K/V head"),
])
@pytest.mark.parametrize("with_key", [True, False], ids=["full-edition", "student-edition"])
def test_a_wrong_answer_of_the_wrong_form_says_the_form(number, given, form, with_key):
    use_answer_key(KEY if with_key else None)
    try:
        result = check_self_test(number, given)
    finally:
        use_answer_key(None)
    assert result.status == FAILED and form in result.message, repr(result)


def test_every_question_says_its_form_and_options_accept_any_spelling(key):
    assert all(q.form for q in QUESTIONS.values())
    assert "bytes" in check_self_test("11.3", 96).message          # 96 MiB, in the wrong unit
    for spelling in ("B", "(b)", " b "):
        assert check_self_test("1.4", spelling).status == PASSED
        assert check_self_test("1.4", lambda: spelling).status == PASSED


def test_with_the_key_every_answer_is_right_and_every_tempting_one_named(key):
    for number, entry in key.items():
        assert check_self_test(number, entry["answer"]), number
        assert check_self_test(number, lambda: entry["answer"]), number
        assert entry["explanation"] in check_self_test(number, entry["answer"]).message
        for wrong, hint in entry["wrong"].items():
            result = check_self_test(number, wrong)
            assert not result and hint in result.message, (number, wrong)


def test_without_the_key_a_right_and_a_wrong_answer_get_the_same_words():
    """The student edition (no key): an answer of the right form is recorded, never judged;
    the words differ only by the answer itself."""
    use_answer_key(None)
    for number, entry in KEY.items():
        right = check_self_test(number, entry["answer"])
        for wrong in entry["wrong"]:
            said = check_self_test(number, wrong)
            assert said.status == right.status == RECORDED and not said and not right, (number, wrong)
            assert said.message.replace(repr(wrong), "X") == right.message.replace(repr(entry["answer"]), "X")
        assert "graded after you submit" in right.message and "Recorded" in repr(right)
        assert check_self_test(number, lambda: entry["answer"]).status == RECORDED


def test_without_the_key_an_unwritten_answer_is_not_implemented_and_grading_mode_records_nothing(monkeypatch):
    use_answer_key(None)

    def unwritten():
        raise NotImplementedError()
    assert check_self_test("1.1", unwritten).status == NOT_IMPLEMENTED
    monkeypatch.setenv("MINIGPT_GRADING", "1")        # an instructor's own course grading the visible check:
    with pytest.raises(ExerciseFailed, match="Recorded"):    # without the key it cannot say right
        check_self_test("1.1", 65)


def test_an_unknown_question_is_a_one_line_usage_error():
    from minigpt.errors import MiniGPTError
    with pytest.raises(MiniGPTError, match="no checkable self-test question '9.9'; the questions are 1.1"):
        check_self_test("9.9", 1)
    with pytest.raises(MiniGPTError, match="the answer key has no question '9.9'"):
        use_answer_key({"9.9": {"answer": 1}})
    use_answer_key(None)


def test_the_answer_key_cell_is_hidden_and_tagged_for_the_student_edition_to_leave_out():
    import json
    cells = json.loads((ROOT / "notebooks" / "14_self_test.ipynb").read_text(encoding="utf-8"))["cells"]
    keyed = [c for c in cells if "use_answer_key(" in "".join(c["source"])]
    assert len(keyed) == 1 and {"hide-cell", "answer-key"} <= set(keyed[0]["metadata"]["tags"])
    first_check = next(i for i, c in enumerate(cells) if "check_self_test(" in "".join(c["source"]))
    assert cells.index(keyed[0]) < first_check
