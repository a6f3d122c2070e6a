"""Chapter 14's self-test: the facts its answers state are the book's measured ones, and a
wrong answer of the wrong form says what form the answer takes."""

from __future__ import annotations

import pytest

import minigpt
from minigpt.exercises import QUESTIONS, check_self_test
from minigpt.exercises.core import FAILED, PASSED


def test_the_vocabulary_is_described_as_chapter_1_prints_it():
    chars = set(minigpt.load_shakespeare())
    letters = {c for c in chars if c.isalpha()}
    digits = {c for c in chars if c.isdigit()}
    others = chars - letters - digits - {" ", "\n"}
    assert len(chars) == QUESTIONS["1.1"].answer == 65
    assert len(letters) == 52 and digits == {"3"}
    assert others == set("!',-.:;?") | {"$", "&"}
    said = QUESTIONS["1.1"].explanation
    assert "digits" not in said and "the digit '3'" in said and "'$' and '&'" in said
    assert "8 punctuation marks (! ' , - . : ; ?)" in said


def test_word_start_heads_look_at_the_first_letter_as_chapter_10_measured():
    question = QUESTIONS["10.2"]
    assert question.answer == "b" and "first letter" in question.text
    assert "0.44" in question.explanation and "0.24" in question.explanation


@pytest.mark.parametrize("number,given,form", [
    ("1.4", 4.17, "one letter"), ("9.1", "greedy", "one letter"), ("11.3", "96 MiB", "bytes"),
    ("1.1", 65.5, "whole number"), ("4.1", 4, "a shape"), ("12.2", "one", "index of one K/V head"),
])
def test_a_wrong_answer_of_the_wrong_form_says_the_form(number, given, form):
    result = check_self_test(number, given)
    assert result.status == FAILED and form in result.message, repr(result)


def test_every_question_says_its_form_and_options_accept_any_spelling():
    assert all(q.form for q in QUESTIONS.values())
    assert "bytes" in check_self_test("11.3", 96).message          # 96 MiB, in the wrong unit
    for spelling in ("B", "(b)", " b "):
        assert check_self_test("1.4", spelling).status == PASSED
        assert check_self_test("1.4", lambda: spelling).status == PASSED


def test_an_unknown_question_is_a_one_line_usage_error():
    from minigpt.errors import MiniGPTError
    with pytest.raises(MiniGPTError, match="no checkable self-test question '9.9'; the questions are 1.1"):
        check_self_test("9.9", 1)
