"""Chapter 14: the self-test questions that have one checkable answer (a shape, a count, an option).

The package holds each question's number, its text and the form of its answer, not the answer.
The answer key (each right answer, why it is right, and the tempting wrong answers with the hint
each deserves) is in the full edition's notebook, notebooks/14_self_test.ipynb, in one hidden
cell that registers it: `use_answer_key({...})`. With a key registered, `check_self_test("11.3",
answer)` says right or wrong, through `minigpt.exercises.check_answer`. Without one (the student
edition leaves that cell out) it checks only the answer's form (a letter 'a' to 'd', a whole
number, a shape) and says the answer is recorded: it is graded after submission, by
grading/hidden.py, which reads the key from the full edition's notebook file. Nothing in a
student's kernel can then tell a right answer from a wrong one.

The answer may be a value or a function returning it (the notebook's cells are functions, so
nbgrader's student edition, which replaces a solution with `raise NotImplementedError()`, gets
"not implemented yet" instead of a crash).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import UsageError, is_whole_number
from ..language import tr
from .core import FAILED, RECORDED, CheckResult, _answer, _is_number, _sentence, check_answer, read_answer


@dataclass(frozen=True)
class Question:
    number: str                      # "chapter.question", as in the chapter's headings
    text: str
    form: str                        # what a right answer looks like, said with any wrong one
    kind: str                        # "option" (one of `options`), "count" (a whole number) or "shape"
    options: str = ""                # the letters of an option question, e.g. "abcd"


LETTER = "one letter, the option you choose, as a string: {}"
WHOLE = "a whole number (an int) of {}"
SHAPE = "a shape: a tuple of ints, such as (3, 4, 5)"


QUESTIONS = {q.number: q for q in [
    Question("1.1", "How many distinct tokens (characters) does tinyshakespeare have?",
             WHOLE.format("characters: how many different characters occur in the text"), "count"),
    Question("1.4", "Which loss does a model that knows nothing give? "
                    "(a) 0, (b) ln 65, (c) 1/65, (d) 65",
             LETTER.format("'a', 'b', 'c' or 'd' (not the loss's value)"), "option", "abcd"),
    Question("2.3", "By what do the scores q·k get divided? (a) D, (b) √D, (c) T, (d) nothing",
             LETTER.format("'a', 'b', 'c' or 'd'"), "option", "abcd"),
    Question("3.1", "Where is the causal mask applied? (a) to the scores, before the softmax, "
                    "(b) to the weights, after the softmax, (c) to the values",
             LETTER.format("'a', 'b' or 'c'"), "option", "abc"),
    Question("4.1", "Shape of q after splitting C = 64 channels into H = 8 heads, for B = 2, T = 5?",
             SHAPE, "shape"),
    Question("7.1", "How many parameters does weight tying share in the pretrained model "
                    "(V = 65, C = 256)?",
             WHOLE.format("parameters"), "count"),
    Question("9.1", "Which decoding does temperature 0 mean? (a) uniform sampling, (b) greedy, "
                    "(c) sampling from the model's distribution",
             LETTER.format("'a', 'b' or 'c' (not the decoding's name)"), "option", "abc"),
    Question("10.1", "Shape of model.attention_maps(idx) for the pretrained model "
                     "(6 layers, 8 heads) and idx of shape (1, 20)?",
             SHAPE, "shape"),
    Question("10.2", "In the pretrained model, where do the heads that track the start of the "
                     "current word put their weight? (a) on the space or newline before the word, "
                     "(b) on the word's first letter, (c) on position 0",
             LETTER.format("'a', 'b' or 'c'"), "option", "abc"),
    Question("11.3", "Bytes of the pretrained model's KV cache (6 layers, 8 K/V heads of size 32) "
                     "for 64 sequences of 256 tokens in bfloat16?",
             WHOLE.format("bytes, not MiB or GB (1 MiB = 2**20 bytes)"), "count"),
    Question("12.2", "With 8 query heads and 2 K/V heads, which K/V head does query head 6 read?",
             "the index of one K/V head, an int counting from 0", "count"),
    Question("12.3", "Output width of c_attn with C = 256, 8 heads of D = 32 and n_kv_head = 2?",
             WHOLE.format("output channels"), "count"),
    Question("13.2", "Causal tiled attention, T = 200, tiles of 64 x 64: how many of the 16 tiles "
                     "are computed?",
             WHOLE.format("tiles"), "count"),
    Question("15.1", "How many merges does BPETokenizer.train(text, 512) learn (when the text has "
                     "that many pairs to merge)?",
             WHOLE.format("merges"), "count"),
    Question("16.2", "How many parameters does a rank-8 LoRA adapter add to one attn.c_attn of the "
                     "pretrained model (256 inputs, 768 outputs)?",
             WHOLE.format("parameters"), "count"),
]}

_KEY: dict = {}                    # number -> {"answer", "explanation", "wrong"}, once registered


def use_answer_key(key: Optional[dict]) -> None:
    """Register the answer key, {number: {"answer": ..., "explanation": "...", "wrong": {value:
    hint}}} (the full edition's hidden cell does); None removes it."""
    _KEY.clear()
    if key is None:
        return
    unknown = [number for number in key if number not in QUESTIONS]
    if unknown:
        raise UsageError(f"the answer key has no question {', '.join(map(repr, unknown))}; the "
                         f"questions are {', '.join(QUESTIONS)}.")
    for number, entry in key.items():
        if "answer" not in entry:
            raise UsageError(f"the answer key's question {number} has no 'answer'.")
        _KEY[number] = {"answer": entry["answer"], "explanation": entry.get("explanation", ""),
                        "wrong": dict(entry.get("wrong", {}))}


def check_self_test(number: str, given: Any) -> CheckResult:
    """Check the answer to self-test question `number` ("11.3"); `given` is a value or a function.
    Without an answer key registered (`use_answer_key`), only the answer's form is checked."""
    if number not in QUESTIONS:
        raise UsageError(f"no checkable self-test question {number!r}; the questions are "
                         f"{', '.join(QUESTIONS)}.")
    q = QUESTIONS[number]
    if q.kind == "option":   # an option: "B", "(b)" and " b " all mean "b"
        given = (lambda answer: lambda: _option(answer()))(given) if callable(given) else _option(given)
    entry = _KEY.get(number)
    if entry is not None:
        return check_answer(f"question {number}", given, entry["answer"], entry["explanation"],
                            entry["wrong"], q.form)
    return _answer(_check_form(q, given))


def _option(answer: Any) -> Any:
    return answer.strip().strip("()").strip().lower() if isinstance(answer, str) else answer


def _right_form(q: Question, given: Any) -> bool:
    if q.kind == "option":
        return isinstance(given, str) and len(given) == 1 and given in q.options
    if q.kind == "count":
        return _is_number(given) and math.isfinite(given) and float(given).is_integer()
    return isinstance(given, tuple) and all(is_whole_number(n, 0) for n in given)


def _check_form(q: Question, given: Any) -> CheckResult:
    """Without the key: the answer's form only, and the same words for a right and a wrong one."""
    question = f"question {q.number}"
    given, unanswered = read_answer(question, given)
    if unanswered is not None:
        return unanswered
    if not _right_form(q, given):
        return CheckResult(question, FAILED, tr("{given} is not an answer of the right form: the answer is {form}.",
                                                given=repr(given), form=_sentence(tr(q.form))))
    return CheckResult(question, RECORDED, tr("{given} has the right form, and it is recorded: this edition has "
                                              "no answer key, so your answer is graded after you submit.",
                                              given=repr(given)))
