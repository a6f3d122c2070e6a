"""The small modules every chapter leans on: the error classes, the presets' lookup,
`expect` (a number checked against the book's within a tolerance), and the reader's language."""

from __future__ import annotations

import math

import pytest
import torch

import minigpt
from minigpt import CheckpointError, GPTConfig, MiniGPT
from minigpt.errors import MiniGPTError
from minigpt.reproduce import NumberOutOfToleranceError, expect


# ------------------------------------------------------------------ errors and presets
def test_an_unknown_preset_says_the_sentence_unquoted():
    with pytest.raises(KeyError) as caught:
        minigpt.PRESETS["Tiny"]
    said = str(caught.value)
    assert said.startswith("no preset 'Tiny'; the presets are 'seed', ") and said.endswith("(names are lower case).")


def test_errors_are_also_the_python_errors_a_notebook_catches(tmp_path):
    # `except RuntimeError` for a checkpoint folder, `except ValueError` for a wrong input
    with pytest.raises(RuntimeError) as caught:
        minigpt.load_checkpoint(tmp_path / "no_such_run")
    assert isinstance(caught.value, CheckpointError)
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=2, n_layer=1))
    with pytest.raises(ValueError) as caught:
        model(torch.tensor([[1, 2, 3]]), torch.tensor([[1, 2, 11]]))
    assert isinstance(caught.value, MiniGPTError)


# ------------------------------------------------------------------ expect
def test_expect_prints_both_numbers_and_returns_the_measured_one(capsys):
    assert expect("val loss", 1.7519, book=1.7376, tol=0.05) == 1.7519
    assert capsys.readouterr().out == "val loss ≈ 1.7519 (book: 1.7376 ± 0.05)\n"
    assert expect("loss", torch.tensor(2.5), book=2.0, tol=0.5, digits=2) == 2.5     # exactly at the edge
    assert capsys.readouterr().out == "loss ≈ 2.50 (book: 2.00 ± 0.5)\n"


@pytest.mark.parametrize("value", [1.8, 1.6, math.nan, math.inf])
def test_expect_fails_outside_the_tolerance_and_on_nan(value):
    with pytest.raises(NumberOutOfToleranceError, match=r"the book measured 1.7000 and promises agreement within ± 0.05"):
        expect("val loss", value, book=1.7, tol=0.05)


@pytest.mark.parametrize("tol, wanted", [(0, "positive"), (-0.1, "positive"), (math.nan, "finite")])
def test_expect_needs_a_positive_tolerance(tol, wanted):
    with pytest.raises(ValueError, match=rf"tol must be a {wanted} number"):
        expect("x", 1.0, book=1.0, tol=tol)


# ------------------------------------------------------------------ the reader's language
@pytest.fixture
def chinese():
    minigpt.set_language("zh")
    yield
    minigpt.set_language("en")


def test_language_codes_are_read_in_any_case():
    try:
        minigpt.set_language("ZH-Hans")
        assert minigpt.language() == "zh"
        minigpt.set_language("EN")
        assert minigpt.language() == "en"
    finally:
        minigpt.set_language("en")


def test_a_message_missing_from_the_catalogue_is_said_in_english(chinese):
    message = "a message no catalogue has: {n} of {what!r} at {x:.2f}"
    assert minigpt.tr(message, n=3, what="loss", x=1.23456) == "a message no catalogue has: 3 of 'loss' at 1.23"
    assert minigpt.tr("no fields, {braces} kept") == "no fields, {braces} kept"


def test_an_english_message_without_fields_is_said_as_written():
    assert minigpt.tr("a set such as {1, 2}") == "a set such as {1, 2}"
