"""No check passes an answer that is not the package's: every registered check is fed answers
built from its own reference with the output replaced (a constant, random values, the right
values in the wrong dtype, a tensor on the meta device, NaN) and must fail with a message,
never pass and never raise; with grading on, it must not pass either."""

from __future__ import annotations

import importlib.util
import math
import random
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import minigpt.exercises as ex
from minigpt.exercises.core import FAILED, Exercise, ExerciseFailed

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("solutions_for_hostile_tests", ROOT / "grading" / "solutions.py")
solutions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(solutions)


_spec = importlib.util.spec_from_file_location("hidden_for_hostile_tests", ROOT / "grading" / "hidden.py")
_hidden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_hidden)
ANSWER_KEY = _hidden.answer_key()       # chapter 14's key, from the full edition's notebook


def _reference(check):
    """The reference a check compares with: the package's, or grading/solutions.py's where the
    package stores its outputs instead."""
    return solutions.live(_exercise_of(check)).reference


def _exercise_of(check) -> Exercise | None:
    """The Exercise a `check_*` function runs (the module-level name its code reads)."""
    for name in check.__code__.co_names:
        value = check.__globals__.get(name)
        if isinstance(value, Exercise):
            return value
    return None


CHECKS = {name: getattr(ex, name) for name in dir(ex)
          if name.startswith("check_") and name not in ("check_answer", "check_self_test")}


def test_every_exercise_has_one_check_and_every_check_one_exercise():
    exercises = {name: _exercise_of(check) for name, check in CHECKS.items()}
    assert all(exercises.values()), [n for n, e in exercises.items() if e is None]
    assert sorted(id(e) for e in exercises.values()) == sorted(id(e) for e in ex.EXERCISES)


# ------------------------------------------------------------------ the hostile answers
def _float(value: float, kind: str, rng: random.Random):
    return {"constant": 1.0, "random": rng.random(), "bool": True, "int": 1, "float64": value,
            "complex": complex(value, 0.0), "meta": torch.empty((), device="meta"),
            "nan": math.nan, "tensor": value}[kind]


def _int(value: int, kind: str, rng: random.Random):
    """A whole number (a token id, a count) replaced; "int" leaves it as it is."""
    return {"constant": 1, "random": rng.randrange(1 << 16), "bool": True, "int": value,
            "float64": float(value), "complex": complex(value), "meta": torch.empty((), device="meta"),
            "nan": math.nan, "tensor": value}[kind]


def _tensor(t: torch.Tensor, kind: str, g: torch.Generator) -> torch.Tensor:
    shape = t.shape
    if kind == "tensor":
        return t                                          # already one
    if kind == "constant":
        return torch.ones_like(t)
    if kind == "random":
        if t.dtype == torch.bool:
            return torch.rand(shape, generator=g) < 0.5
        if t.is_floating_point():
            return torch.rand(shape, generator=g).to(t.dtype)
        return torch.randint(0, 11, shape, generator=g).to(t.dtype)
    if kind == "bool":
        return torch.ones(shape, dtype=torch.bool)
    if kind == "int":
        return torch.ones(shape, dtype=torch.long)
    if kind == "float64":
        return t.detach().double()                        # the right values, in float64
    if kind == "complex":
        return t.detach().to(torch.complex64)             # the right values, complex
    if kind == "meta":
        return torch.empty(shape, dtype=t.dtype, device="meta")
    return torch.full(shape, float("nan"))


def _transform(value, kind, g, rng, changed):
    if isinstance(value, torch.Tensor):
        new = _tensor(value, kind, g)
        changed.append(not (new.dtype == value.dtype and new.device == value.device
                            and torch.equal(new, value.detach())))
        return new
    if isinstance(value, float):
        new = _float(value, kind, rng)
        changed.append(new is not value and not (type(new) is float and new == value))
        return new
    if isinstance(value, int) and not isinstance(value, bool):
        new = _int(value, kind, rng)
        changed.append(not (type(new) is int and new == value))
        return new
    if kind == "tensor" and isinstance(value, (tuple, list)) and value \
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        changed.append(True)
        return torch.tensor(value)                        # the right numbers, as a tensor
    if isinstance(value, (tuple, list)):
        return type(value)(_transform(v, kind, g, rng, changed) for v in value)
    if isinstance(value, dict):
        return {k: _transform(v, kind, g, rng, changed) for k, v in value.items()}
    if isinstance(value, (bool, str)) or value is None:
        return value                                      # a flag or a name: kept as it is
    raise AssertionError(f"an output of type {type(value).__name__} that _transform cannot spoil: extend it")


def hostile(reference, kind: str, changed: list):
    """A solution that runs the reference and replaces its output (see `kind`)."""
    g, rng = torch.Generator().manual_seed(0), random.Random(0)

    def spoil(out):
        return _transform(out, kind, g, rng, changed)

    if isinstance(reference, type) and issubclass(reference, nn.Module):
        class Hostile(reference):
            def forward(self, *args, **kwargs):
                return spoil(super().forward(*args, **kwargs))
        return Hostile
    if isinstance(reference, type):
        methods = {name: (lambda f: lambda self, *a, **k: spoil(f(self, *a, **k)))(member)
                   for name, member in vars(reference).items()
                   if callable(member) and not name.startswith("_")}
        return type("Hostile", (reference,), methods)
    return lambda *args, **kwargs: spoil(reference(*args, **kwargs))


# "int" keeps whole numbers, "float64" keeps Python floats and "tensor" changes only lists of
# numbers, so a check whose output has nothing of that kind is skipped for it; an output type
# _transform does not know fails instead of skipping
KINDS = ["constant", "random", "bool", "int", "float64", "complex", "meta", "nan", "tensor"]
# where a kind spoils only outputs the check does not read, and the answer rightly passes
UNREAD = {("check_decay_groups", "tensor"): "it reads a group's params and weight_decay; "
                                            "'tensor' changes only the group's betas"}
DOUBLED_STOP = re.compile(r"(?<![.\s])\.\.(?![.\w])")    # "instead.." but not "0..t" or "(...)"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("check_name", sorted(CHECKS))
def test_hostile_answer_fails_with_a_message(check_name, kind, monkeypatch):
    monkeypatch.delenv("MINIGPT_GRADING", raising=False)
    check = CHECKS[check_name]
    changed: list = []
    if (check_name, kind) in UNREAD:
        pytest.skip(UNREAD[check_name, kind])
    result = check(hostile(_reference(check), kind, changed))
    if not any(changed):
        pytest.skip(f"{kind}: the reference's output has nothing of that kind to spoil")
    assert result.status == FAILED and not result, repr(result)
    assert "Traceback" not in result.message and not DOUBLED_STOP.search(result.message), result.message
    if kind == "meta":
        assert "meta device" in result.message, result.message
    if kind == "complex":
        assert "complex" in result.message, result.message
    if kind == "nan" and "Likely mistake" not in result.message and "dtype" not in result.message:
        assert "NaN" in result.message and "difference inf" not in result.message, result.message


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("check_name", sorted(CHECKS))
def test_hostile_answer_does_not_pass_under_grading(check_name, kind, monkeypatch):
    monkeypatch.setenv("MINIGPT_GRADING", "1")
    check = CHECKS[check_name]
    changed: list = []
    if (check_name, kind) in UNREAD:
        pytest.skip(UNREAD[check_name, kind])
    solution = hostile(_reference(check), kind, changed)
    try:
        check(solution)
    except ExerciseFailed:
        return
    if not any(changed):
        pytest.skip(f"{kind}: the reference's output has nothing of that kind to spoil")
    pytest.fail(f"{check_name} passed a {kind} answer under grading")


# the checks whose reference output has nothing a kind can spoil (the tests above skip them;
# "tensor" spoils only lists of numbers, so only TENSOR_SPOILS), pinned: a mistake in _transform
# that spoils nothing then fails here instead of turning the tests above into skips
NOTHING_TO_SPOIL = {"int": {"check_encode", "check_merge"}, "float64": {"check_lr_schedule"}}
TENSOR_SPOILS = {"check_decay_groups", "check_encode", "check_merge"}


def test_each_kind_spoils_the_outputs_it_should(monkeypatch):
    monkeypatch.delenv("MINIGPT_GRADING", raising=False)
    nothing: dict = {}
    for name, check in CHECKS.items():
        for kind in KINDS:
            changed: list = []
            if (name, kind) not in UNREAD:
                check(hostile(_reference(check), kind, changed))
                if not any(changed):
                    nothing.setdefault(kind, set()).add(name)
    assert set(CHECKS) - nothing.pop("tensor", set()) == TENSOR_SPOILS
    assert nothing == NOTHING_TO_SPOIL


def test_all_true_bool_fails_every_tensor_check():
    """The issue's own example: torch.ones(shape, dtype=torch.bool) passed 15 of 23 checks."""
    for name, check in CHECKS.items():
        changed: list = []
        result = check(hostile(_reference(check), "bool", changed))    # the stored-output checks too
        assert any(changed), f"{name}: no output of the reference was replaced"
        assert result.status == FAILED, f"{name}: {result!r}"


@pytest.mark.parametrize("with_key", [True, False], ids=["full-edition", "student-edition"])
@pytest.mark.parametrize("number", sorted(ex.QUESTIONS))
@pytest.mark.parametrize("answer", [True, 1 + 0j, math.nan, torch.ones(3, dtype=torch.bool),
                                    torch.empty(2, device="meta"), torch.empty((), device="meta")],
                         ids=["bool", "complex", "nan", "bool-tensor", "meta", "meta-scalar"])
def test_self_test_refuses_hostile_answers(number, answer, with_key, monkeypatch):
    """With the answer key (the full edition) and without it (the student edition, where only
    the form is checked), no hostile answer is right, or even recorded."""
    from minigpt.exercises.ch14_self_test import use_answer_key
    use_answer_key(ANSWER_KEY if with_key else None)
    try:
        monkeypatch.delenv("MINIGPT_GRADING", raising=False)
        result = ex.check_self_test(number, answer)
        said = "is not it" if with_key else "is not an answer of the right form"
        assert result.status == FAILED and said in result.message, repr(result)
        monkeypatch.setenv("MINIGPT_GRADING", "1")
        with pytest.raises(ExerciseFailed):
            ex.check_self_test(number, answer)
    finally:
        use_answer_key(None)


def test_reference_passes_and_no_message_doubles_its_full_stop():
    for exercise in ex.EXERCISES:
        live = solutions.live(exercise)
        messages = [exercise.check(live.reference).message]
        messages += [exercise.check(m.solution).message for m in live.mistakes]
        for message in messages:
            assert not DOUBLED_STOP.search(message), message


# ------------------------------------------------------------------ nearly right is not right
def _nudge(value, how: str, changed: list):
    """Every float of an output nudged ("relative": 0.1% larger, "absolute": 0.001 larger; float
    tensors and Python floats); the rest (ids, flags, names, a model's own parameters) kept."""
    if isinstance(value, torch.Tensor) and value.is_floating_point() and not isinstance(value, nn.Parameter):
        changed.append(True)
        return value.detach() * (1 + 1e-3) if how == "relative" else value.detach() + 1e-3
    if isinstance(value, float):
        changed.append(True)
        return value * (1 + 1e-3) if how == "relative" else value + 1e-3
    if isinstance(value, (tuple, list)):
        return type(value)(_nudge(v, how, changed) for v in value)
    if isinstance(value, dict):
        return {k: _nudge(v, how, changed) for k, v in value.items()}
    return value


# the checks whose answers are token ids or a boolean mask: no float to nudge (pinned, so a check
# whose floats the nudge misses fails below instead of skipping)
NO_FLOATS = {"check_cached_generate", "check_causal_mask", "check_encode", "check_greedy_generate", "check_merge"}


@pytest.mark.parametrize("how", ["relative", "absolute"])
@pytest.mark.parametrize("check_name", sorted(set(CHECKS) - NO_FLOATS))
def test_an_answer_off_by_a_little_fails(check_name, how, monkeypatch):
    """The checks compare within 1e-5 + 1e-4 relative (1e-6 for the learning rate): the right
    values 0.1% too large, or 0.001 too large, are a wrong answer (a tolerance loosened to 1e-2
    would pass one or the other)."""
    monkeypatch.delenv("MINIGPT_GRADING", raising=False)
    changed: list = []
    reference = _reference(CHECKS[check_name])
    if isinstance(reference, type) and issubclass(reference, nn.Module):
        class Nudged(reference):
            def forward(self, *args, **kwargs):
                return _nudge(super().forward(*args, **kwargs), how, changed)
        answer = Nudged
    elif isinstance(reference, type):
        methods = {name: (lambda f: lambda self, *a, **k: _nudge(f(self, *a, **k), how, changed))(member)
                   for name, member in vars(reference).items() if callable(member) and not name.startswith("_")}
        answer = type("Nudged", (reference,), methods)
    else:
        answer = lambda *args, **kwargs: _nudge(reference(*args, **kwargs), how, changed)  # noqa: E731
    result = CHECKS[check_name](answer)
    assert any(changed), f"{check_name}'s reference output holds no float: is it one of NO_FLOATS?"
    assert result.status == FAILED, repr(result)


def test_self_test_options_are_one_letter_without_the_key_too(monkeypatch):
    """Without the key only the form is checked: several letters, or none, are not an option
    (each is a substring of "abcd", so a test of `given in options` alone would record them)."""
    from minigpt.exercises.ch14_self_test import use_answer_key
    monkeypatch.delenv("MINIGPT_GRADING", raising=False)
    use_answer_key(None)
    for answer in ("ab", "abcd", "", "()"):
        result = ex.check_self_test("2.3", answer)
        assert result.status == FAILED and "is not an answer of the right form" in result.message, (answer, result)
    assert ex.check_self_test("2.3", "(B)").status != FAILED
