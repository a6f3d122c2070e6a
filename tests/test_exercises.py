"""Every exercise passes its reference, says "not implemented yet" for an empty solution,
and recognises each catalogued mistake by name (not just "failed")."""

from __future__ import annotations

import pytest
import torch

import minigpt.exercises as ex
from minigpt.exercises.core import FAILED, NOT_IMPLEMENTED, PASSED, Case, Exercise, same

MISTAKES = [(e, m) for e in ex.EXERCISES for m in e.mistakes]


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=lambda e: e.name)
def test_reference_passes(exercise):
    result = exercise.check(exercise.reference)
    assert result.status == PASSED and result, repr(result)
    assert "all" in result.message and "cases agree" in result.message


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=lambda e: e.name)
def test_not_implemented_is_not_a_crash(exercise):
    def unsolved(*args, **kwargs):
        raise NotImplementedError()
    result = exercise.check(unsolved)
    assert result.status == NOT_IMPLEMENTED and not result
    assert "Not implemented yet" in repr(result)


@pytest.mark.parametrize("exercise,mistake", MISTAKES, ids=lambda x: getattr(x, "key", None) or x.name)
def test_each_mistake_is_diagnosed_by_name(exercise, mistake):
    result = exercise.check(mistake.solution)
    assert result.status == FAILED
    assert result.mistake == mistake.key, repr(result)
    assert mistake.hint in result.message


def test_catalogue_keys_are_unique_and_the_book_has_enough():
    keys = [m.key for _, m in MISTAKES]
    assert len(keys) == len(set(keys))
    assert len(keys) >= 9          # grows with every chapter's module (issue 11 asks for >= 20)


def test_student_exception_is_reported_not_raised():
    def broken(q, k, v):
        return q @ k                                   # (B, H, T, D) @ (B, H, T, D): shapes clash
    result = ex.check_causal_attention(broken)
    assert result.status == FAILED and "raised RuntimeError" in result.message


def test_returning_none_is_named():
    result = ex.check_causal_attention(lambda q, k, v: None)
    assert "forget `return`" in result.message


def test_unknown_mistake_gets_generic_advice():
    result = ex.check_causal_attention(lambda q, k, v: v * 0)
    assert result.status == FAILED and result.mistake is None
    assert "not one of the common mistakes" in result.message


def test_inputs_are_copied_so_in_place_edits_cannot_fool_the_check():
    calls = []

    def editing(x):
        calls.append(x)
        x.zero_()
        return x.clone()
    exercise = Exercise("zero", reference=lambda x: x * 0, cases=lambda: [Case("x", (torch.ones(3),))])
    assert exercise.check(editing)                       # the reference saw the original ones
    assert calls[0] is not exercise.cases()[0].args[0]


def test_same_compares_structure():
    t = torch.ones(2, 3)
    assert same((t, 1), (t.clone(), 1)) and not same(t, t.T) and not same(t, [1.0])
    assert same(0.1 + 0.2, 0.3) and not same(1, 2)


def test_same_is_strict_about_dtype_device_and_nan():
    t = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    assert same(t, t.clone())
    assert not same(t.bool(), t.bool().float())               # a bool answer only for a bool question
    assert not same(torch.ones(2, 2, dtype=torch.bool), t) and not same(t, t.bool())
    assert not same(t.double(), t) and not same(t.to(torch.complex64), t)
    assert not same(t.long(), t) and not same(torch.empty(2, 2, device="meta"), t)
    nan = torch.full((2, 2), float("nan"))
    assert not same(nan, t) and same(nan, nan.clone())       # NaN only where NaN is expected
    assert not same(True, 1) and not same(1, True) and same(True, True)
    assert same({"a": t}, {"a": t.clone()}) and not same({"a": t}, {"b": t})


def test_differences_are_named_by_form_before_values():
    from minigpt.exercises.core import describe_difference
    t = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    assert "meta device" in describe_difference(t, torch.empty(2, 2, device="meta"))
    assert "complex" in describe_difference(t, t.to(torch.complex64))
    said = describe_difference(t, t.double())
    assert "torch.float64" in said and "values would agree" in said
    said = describe_difference(t, torch.ones(2, 2, dtype=torch.bool))
    assert "bool" in said and "values differ" in said
    said = describe_difference(t, torch.tensor([[0.25, float("nan")], [1.0, 0.0]]))
    assert "got NaN" in said and "(0, 1)" in said and "inf" not in said
    ids = torch.tensor([[3, 4, 5]])
    said = describe_difference(ids, torch.tensor([[3, 9, 5]]))
    assert "shape is right" not in said and "expected 4, got 9" in said
    said = describe_difference(torch.tensor(0.5), torch.tensor(0.25))
    assert "shape is right" not in said and "expected 0.5000, got 0.2500" in said


def test_a_torch_not_implemented_error_is_not_an_unsolved_exercise():
    def uses_meta(x):
        return torch.empty(3, device="meta").nonzero()      # torch: no meta kernel
    exercise = Exercise("x", reference=lambda x: x, cases=lambda: [Case("x", (torch.ones(3),))])
    result = exercise.check(uses_meta)
    assert result.status == FAILED and "NotImplementedError" in result.message


def test_check_answer():
    assert ex.check_answer("q", 8, 8, "because").passed
    wrong = ex.check_answer("q", 4, 8, "because", wrong={4: "you counted heads, not layers"})
    assert not wrong and "counted heads" in wrong.message
    assert ex.check_answer("q", ..., 8, "because").status == NOT_IMPLEMENTED


def test_html_view_escapes():
    result = Exercise("x<y>", reference=lambda: 1, cases=lambda: [Case("c")]).check(lambda: 1)
    assert "x&lt;y&gt;" in result._repr_html_()


def test_grading_mode_raises_on_anything_but_a_pass(monkeypatch):
    from minigpt.exercises.core import ExerciseFailed

    def unsolved(q, k, v):
        raise NotImplementedError()
    monkeypatch.setenv("MINIGPT_GRADING", "1")
    with pytest.raises(ExerciseFailed, match="Not implemented yet"):
        ex.check_causal_attention(unsolved)
    with pytest.raises(ExerciseFailed, match="Likely mistake"):
        ex.check_causal_attention(ex.CAUSAL_ATTENTION.mistakes[0].solution)
    with pytest.raises(ExerciseFailed):
        ex.check_answer("q", 4, 8, "because")
    assert ex.check_causal_attention(ex.CAUSAL_ATTENTION.reference) is None  # a pass never raises
    monkeypatch.setenv("MINIGPT_GRADING", "0")
    assert not ex.check_causal_attention(unsolved)                      # answers again


def test_import_minigpt_imports_no_chapter_checks_until_one_is_used():
    """`import minigpt` stays cheap: chapter modules load on first use, one at a time, and the
    registry finds them by name (no hand-written import list)."""
    import subprocess
    import sys
    code = (
        "import sys, minigpt\n"
        "loaded = lambda: sorted(m for m in sys.modules if m.startswith('minigpt.exercises.ch'))\n"
        "assert loaded() == [], loaded()\n"
        "check = minigpt.exercises.check_softmax\n"
        "assert loaded() == ['minigpt.exercises.ch02_attention'], loaded()\n"
        "from minigpt.exercises import check_tiled_attention, EXERCISES, QUESTIONS\n"
        "import minigpt.exercises as ex\n"
        "assert len(loaded()) == len(ex.chapter_modules()) >= 14, loaded()\n"
        "assert EXERCISES[0].name == 'softmax by hand'\n"
        "assert any(e.name.startswith('tiled') for e in EXERCISES)\n"
        "assert ex.exercise_model.__module__.endswith('ch11_kv_cache')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_registry_holds_every_exercise_of_every_chapter_module_once():
    from minigpt.exercises import chapter_modules
    import importlib
    found = [v for name in chapter_modules()
             for v in vars(importlib.import_module(f"minigpt.exercises.{name}")).values()
             if isinstance(v, Exercise)]
    assert len(ex.EXERCISES) == len({id(e) for e in found}) >= 29
    assert len({id(e) for e in ex.EXERCISES}) == len(ex.EXERCISES)


def test_crash_messages_explain_keywords_and_views_without_doubling_the_full_stop():
    def lr_at(step, lr, min_lr, warmup, max_iters):        # the student's own parameter names
        return lr
    said = ex.check_lr_schedule(lr_at).message
    assert "by keyword (learning_rate=..., min_lr=..." in said and "shapes" not in said

    def merge(y):
        B, H, T, D = y.shape
        return y.transpose(1, 2).view(B, T, H * D)        # view after transpose: torch refuses
    said = ex.check_merge_heads(merge).message
    assert ".contiguous()" in said and "instead.." not in said and "instead." in said


def test_token_ids_and_scalars_are_not_said_to_have_the_right_shape():
    def one_token_late(model, idx, max_new_tokens):       # greedy, but the last token replaced
        out = model.generate(idx, max_new_tokens, temperature=0, use_cache=False)
        out[:, -1] = (out[:, -1] + 1) % 11
        return out
    said = ex.check_greedy_generate(one_token_late).message
    assert "shape is right" not in said and "entries differ, the first at index" in said
    from minigpt.exercises.ch08_training import _reference_clip
    said = ex.check_grad_clip(lambda grads, max_norm: (_reference_clip(grads, max_norm)[0], 1.0)).message
    assert "shape is right" not in said and "output 3: expected" in said


def test_no_hint_success_or_case_name_doubles_a_full_stop():
    import re
    doubled = re.compile(r"(?<![.\s])\.\.(?![.\w])")
    for exercise in ex.EXERCISES:
        texts = [exercise.success] + [m.hint for m in exercise.mistakes] + [c.name for c in exercise.cases()]
        assert not [t for t in texts if doubled.search(t)], exercise.name
