"""Every exercise passes its reference, says "not implemented yet" for an empty solution,
and recognises each catalogued mistake by name (not just "failed"). The references and
mistakes the package holds no code for come from grading/solutions.py (repository-only): the
check, reading the outputs the package stores, must still pass the one and name the others,
and the stored outputs must be what grading/solutions.py computes now."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import minigpt.exercises as ex
from minigpt.exercises.core import EXPECTED, FAILED, NOT_IMPLEMENTED, PASSED, Case, Exercise, same, stored_outputs

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("solutions_for_exercise_tests", ROOT / "grading" / "solutions.py")
solutions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(solutions)

LIVE = {id(e): solutions.live(e) for e in ex.EXERCISES}       # with the code the package leaves out
MISTAKES = [(e, m) for e in ex.EXERCISES for m in LIVE[id(e)].mistakes]
STORED = [e for e in ex.EXERCISES if e.stored]


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=lambda e: e.name)
def test_reference_passes(exercise):
    result = exercise.check(LIVE[id(exercise)].reference)
    assert result.status == PASSED and result, repr(result)
    assert "all" in result.message and "cases agree" in result.message


@pytest.mark.parametrize("name", sorted(solutions.WORKED))
def test_worked_solutions_pass_their_checks(name):
    """grading/solutions.py's worked solutions of exercises whose reference is the package's own
    (a greedy loop, a cached generator, the online softmax, tiling, LoRA by hand)."""
    assert getattr(ex, name).check(solutions.WORKED[name]), name


def _layer_norm_by_var_mean(x, gamma, beta):
    var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
    return gamma * (x - mean) / (var + 1e-5).sqrt() + beta


def _layer_norm_in_float64(x, gamma, beta):
    d = x.double()
    mean = d.mean(-1, keepdim=True)
    var = ((d - mean) ** 2).mean(-1, keepdim=True)
    return (gamma.double() * (d - mean) / torch.sqrt(var + 1e-5) + beta.double()).float()


def _lr_at_with_tensors(step, learning_rate, min_lr, warmup_iters, max_iters):
    if step < warmup_iters:
        return learning_rate * (step + 1) / warmup_iters
    progress = torch.tensor(min(1.0, (step - warmup_iters) / max(1, max_iters - warmup_iters)))
    return min_lr + 0.5 * (1 + torch.cos(torch.pi * progress)) * (learning_rate - min_lr)    # float32


def _tiles_with_einsum(q, k, v, block, key_block=None):
    """Tiled attention with einsum; key_block (default: block) is the key tiles' width."""
    B, H, T, D = q.shape
    key_block = key_block or block
    outs = []
    for i in range(0, T, block):
        qi = q[:, :, i:i + block]
        n = qi.size(2)
        m, l = torch.full((B, H, n, 1), float("-inf")), torch.zeros(B, H, n, 1)
        acc = torch.zeros(B, H, n, D)
        for j in range(0, i + n, key_block):
            s = torch.einsum("bhqd,bhkd->bhqk", qi, k[:, :, j:j + key_block]) / D ** 0.5
            future = torch.arange(j, j + s.size(-1))[None, :] > torch.arange(i, i + n)[:, None]
            s = s.masked_fill(future, float("-inf"))
            m_new = torch.maximum(m, s.amax(-1, keepdim=True))
            p, a = (s - m_new).exp(), (m - m_new).exp()
            l = a * l + p.sum(-1, keepdim=True)
            acc = a * acc + torch.einsum("bhqk,bhkd->bhqd", p, v[:, :, j:j + key_block])
            m = m_new
        outs.append(acc / l)
    return torch.cat(outs, 2)


@pytest.mark.parametrize("check, solution", [
    ("check_layer_norm", _layer_norm_by_var_mean),
    ("check_layer_norm", _layer_norm_in_float64),
    ("check_lr_schedule", _lr_at_with_tensors),
    ("check_tiled_attention", _tiles_with_einsum),
], ids=lambda x: x if isinstance(x, str) else x.__name__)
def test_correct_solutions_written_differently_pass(check, solution):
    """A student who does the work must not lose marks: these failed before (float32 rounding
    of a mean around 0.7, of a 0-d tensor's rate, and einsum's uncounted product for T=1)."""
    result = getattr(ex, check)(solution)
    assert result.status == PASSED, repr(result)


@pytest.mark.parametrize("exercise", STORED, ids=lambda e: e.stored)
def test_stored_outputs_are_what_grading_solutions_computes_now(exercise):
    """minigpt/exercises/expected/<EXERCISE>.pt holds the outputs of grading/solutions.py on the
    visible cases (floats to the exercise's tolerance): edit a solution, a mistake or a case
    without running `python tools/classroom.py expected`, and this fails."""
    problems = solutions.disagreements(exercise, stored_outputs(exercise.stored), solutions.stored_outputs(exercise))
    assert not problems, f"{problems[:5]}: run python tools/classroom.py expected"


def _chapter_modules():
    import importlib
    return [importlib.import_module(f"minigpt.exercises.{name}") for name in ex.chapter_modules()]


def test_what_is_stored_is_exactly_what_has_no_code_in_the_package():
    names = {name: value for module in _chapter_modules() for name, value in vars(module).items()
             if isinstance(value, Exercise)}
    for name, exercise in names.items():
        codeless = exercise.reference is None or any(m.solution is None for m in exercise.mistakes)
        assert bool(exercise.stored) == codeless, name
        assert exercise.stored in ("", name), f"{name} stores its outputs as {exercise.stored}"
        if exercise.reference is None:
            assert exercise.stored in solutions.REFERENCES, name
    assert {m.key for e in ex.EXERCISES for m in e.mistakes if m.solution is None} == set(solutions.MISTAKES)
    assert set(solutions.REFERENCES) == {e.stored for e in ex.EXERCISES if e.reference is None}
    assert sorted(p.stem for p in EXPECTED.glob("*.pt")) == sorted(e.stored for e in STORED)


def test_stale_stored_outputs_are_an_error_not_a_wrong_answer():
    """Outputs stored for other cases (a case edited, `expected` not run) stop the check with
    the command to run, instead of judging the student against the wrong numbers."""
    from minigpt.exercises.core import StaleOutputs
    stale = Exercise("x", reference=None, cases=lambda: [Case("another case", (1,))], stored="SPLIT_HEADS")
    with pytest.raises(StaleOutputs, match="tools/classroom.py expected"):
        stale.check(lambda t: t)


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
    live = LIVE[id(exercise)]                 # the hidden tests diagnose with the code itself
    assert live.check(mistake.solution).mistake == mistake.key


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
    """The student's code gets its own copy of the inputs: zeroing them in place changes
    neither the case nor the right answer, so the check judges the answer against the
    reference run on the original ones. (Every `cases()` call returns the same tensor `ones`:
    without the copies, the edit would reach the reference's run too.)"""
    ones = torch.ones(3)
    exercise = Exercise("plus one", reference=lambda x: x + 1, cases=lambda: [Case("x", (ones,))])
    seen = []

    def zero_then_answer(x):          # answers for the input it has just zeroed: 1s, not 2s
        seen.append(x)
        x.zero_()
        return x + 1
    # without the copies the reference would see the zeros too, expect 1s, and pass this
    assert exercise.check(zero_then_answer).status == FAILED
    assert seen[0] is not ones and torch.equal(ones, torch.ones(3))

    def answer_then_zero(x):          # right (2s), then vandalises its input
        y = x + 1
        x.zero_()
        return y
    # without the copies the reference would see zeros and expect 1s: a right answer would fail
    assert exercise.check(answer_then_zero).status == PASSED
    assert torch.equal(ones, torch.ones(3))


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
    # a shape or a count computed with torch is the same answer as one typed in
    for shape in ((2, 8, 5, 8), [2, 8, 5, 8], torch.Size([2, 8, 5, 8]), tuple(torch.tensor([2, 8, 5, 8]))):
        assert ex.check_answer("q", shape, (2, 8, 5, 8), "because").passed, shape
    assert ex.check_answer("q", torch.tensor(8), 8, "because").passed


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


# ------------------------------------------------------------- no worked solution in the package
def _is_public(obj) -> bool:
    """torch's, the standard library's, or the minigpt API outside minigpt.exercises."""
    import inspect
    module = getattr(obj, "__module__", None) or ""
    if inspect.ismodule(obj) or module.split(".")[0] in ("torch", "math", "builtins", "typing"):
        return True
    name = getattr(obj, "__name__", "_")
    return module.startswith("minigpt.") and not module.startswith("minigpt.exercises") and not name.startswith("_")


def _reads_only_public_api(obj, seen=None) -> bool:
    """True for a thin adapter: a function or class of minigpt.exercises whose code reads only the
    public API (and other such adapters), e.g. manual_attention's weights for one head."""
    import inspect
    import types
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return True
    seen.add(id(obj))
    functions = [v for v in vars(obj).values() if inspect.isfunction(v)] if inspect.isclass(obj) else [obj]
    for function in functions:
        function = inspect.unwrap(function)
        codes, names = [function.__code__], set()
        while codes:
            code = codes.pop()
            names.update(code.co_names)
            codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        for name in names & set(function.__globals__):
            value = function.__globals__[name]
            if _is_public(value):
                continue
            if (inspect.isfunction(value) or inspect.isclass(value)) and _reads_only_public_api(value, seen):
                continue
            return False
    return True


# What each reference in the package is: the public API the book teaches and then uses (calling
# or pasting it is caught by the grading's watcher); the exercises missing here store outputs.
REFERENCE_IS = {
    "softmax by hand": "torch.softmax",
    "attention weights of one head": "manual_attention(return_weights=True), for one head",
    "causal attention": "manual_attention",
    "causal mask": "causal_mask",
    "multi-head attention module": "CausalSelfAttention",
    "sinusoidal position table": "sinusoidal_table",
    "RoPE": "rope_cos_sin and apply_rope",
    "RoPE attention": "apply_rope, then manual_attention",
    "MLP": "MLP",
    "LayerNorm": "F.layer_norm",
    "Pre-LN block": "Block.forward",
    "dropout": "minigpt.dropout.dropout",
    "GPT forward pass": "MiniGPT.forward",
    "warm-up + cosine learning rate": "TrainConfig.lr_at",
    "gradient clipping by global norm": "torch.nn.utils.clip_grad_norm_",
    "AdamW weight-decay groups": "make_optimizer",
    "temperature + top-k": "next_token_probs",
    "top-p (nucleus)": "next_token_probs",
    "greedy decoding loop": "MiniGPT.generate",
    "a block's attention maps": "CausalSelfAttention(return_weights=True)",
    "greedy generation with a KV cache": "MiniGPT.generate",
    "tiled attention with an online softmax": "flash_attention",
    "merge a pair (BPE)": "minigpt.bpe.merge_pair",
    "LoRA linear forward": "LoRALinear",
    "merge a LoRA update into W": "LoRALinear.merged_weight",
}
# the module-level adapters those references are written with
ADAPTERS = {
    "ch04_heads._PackageMultiHeadAttention": "multi-head attention module",
    "ch05_positions._reference_rope": "RoPE",
    "ch05_positions._rope_attention": "RoPE attention",
    "ch06_blocks._ReferenceMLP": "MLP",
    "ch08_training._reference_lr_at": "warm-up + cosine learning rate",
    "ch08_training._reference_clip": "gradient clipping by global norm",
    "ch08_training._reference_groups": "AdamW weight-decay groups",
    "ch10_inside._reference_maps": "a block's attention maps",
    "ch16_fine_tuning._reference_forward": "LoRA linear forward",
    "ch16_fine_tuning._reference_merge": "merge a LoRA update into W",
}
# other things that pass a check because they are the public API too
PUBLIC_TOO = {
    ("rope_attention.no_rotation", "causal attention"),                     # it is manual_attention
    ("gqa_attention.heads_tiled", "causal attention"),                      # manual_attention when every
    ("minigpt.exercises.ch12_gqa._gqa_tiled", "causal attention"),          # query head has its own K/V head
    ("reference of greedy generation with a KV cache", "greedy decoding loop"),   # MiniGPT.generate
}


def test_every_reference_is_the_public_api_or_absent():
    """A check's reference is the package's public API (directly or through a thin adapter that
    reads nothing else), or it is not in the package at all (its outputs are stored)."""
    assert {e.name for e in ex.EXERCISES if e.reference is not None} == set(REFERENCE_IS)
    for exercise in ex.EXERCISES:
        assert exercise.reference is None or _reads_only_public_api(exercise.reference), exercise.name
    import importlib
    for name in ADAPTERS:
        module, attribute = name.split(".")
        assert _reads_only_public_api(getattr(importlib.import_module(f"minigpt.exercises.{module}"), attribute))


def _candidates():
    """Everything importable from minigpt.exercises that could be an answer: every function and
    class its chapter modules define (public or not), what the argument-free ones build (a
    class factory's default class), and every mistake the package holds code for."""
    import inspect
    for module in _chapter_modules():
        for name, value in vars(module).items():
            if name.startswith("check_") or not (inspect.isfunction(value) or inspect.isclass(value)) \
                    or value.__module__ != module.__name__:
                continue
            yield f"{module.__name__}.{name}", value
            if inspect.isfunction(value) and all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                                                 for p in inspect.signature(value).parameters.values()):
                built = value()
                if callable(built):
                    yield f"{module.__name__}.{name}()", built
    for exercise in ex.EXERCISES:
        for mistake in exercise.mistakes:
            if mistake.solution is not None:
                yield mistake.key, mistake.solution


def test_nothing_in_the_package_passes_a_check_but_the_public_api(monkeypatch):
    """The student cannot import (or read with `??`) a worked solution: run every candidate
    (and every reference) through every exercise's check; what passes is exactly the public API
    listed above. A worked solution put back into minigpt/exercises fails this test."""
    monkeypatch.delenv("MINIGPT_GRADING", raising=False)
    candidates = list(_candidates())
    candidates += [(f"reference of {e.name}", e.reference) for e in ex.EXERCISES if e.reference is not None]
    assert len(candidates) > 150
    passed = {(name, exercise.name) for name, candidate in candidates for exercise in ex.EXERCISES
              if exercise._check(candidate).passed}
    allowed = {(f"reference of {name}", name) for name in REFERENCE_IS} | PUBLIC_TOO | {
        (f"minigpt.exercises.{name}", exercise) for name, exercise in ADAPTERS.items()}
    assert passed == allowed, (sorted(passed - allowed), sorted(allowed - passed))


def test_the_installed_package_holds_the_stored_outputs_and_no_grading_code(tmp_path):
    """The wheel (what a hub installs): minigpt only, with the stored outputs; no grading/."""
    import shutil
    import subprocess
    import sys
    import zipfile
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "minigpt", source / "minigpt", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "grading", source / "grading", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp_path / "wheel")], cwd=source, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    names = zipfile.ZipFile(next((tmp_path / "wheel").glob("*.whl"))).namelist()
    stored = sorted(n for n in names if n.startswith("minigpt/exercises/expected/"))
    assert stored == sorted(f"minigpt/exercises/expected/{e.stored}.pt" for e in STORED)
    assert not [n for n in names if "grading" in n or "solutions" in n]


def test_question_answers_are_compared_closely_and_by_type():
    # the graded questions' comparison: 1.001 is not 1.0, and an object claiming to equal
    # everything is no answer
    from minigpt.exercises.core import check_answer

    class EqualsAnything:
        def __eq__(self, other):
            return True
        __hash__ = object.__hash__
    assert not same(1.0, 1.001) and not same(torch.tensor([1.0]), torch.tensor([1.001]))
    assert not check_answer("question 1.1", 0.501, 0.5, "x").passed
    assert not same(EqualsAnything(), "b")
    assert not check_answer("question 1.1", EqualsAnything(), "b", "x").passed


def test_a_crash_is_put_down_to_a_catalogued_mistake_only_when_its_message_agrees():
    from minigpt.exercises.core import Mistake

    def overflowing(a):
        raise RuntimeError("the cache overflowed")

    def unrelated(a):
        raise RuntimeError("something unrelated")
    exercise = Exercise("demo", reference=lambda a: a * 2, cases=lambda: [Case("c", (torch.ones(2),))],
                        mistakes=[Mistake("demo.overflow", "does your cache overflow?", solution=overflowing)])
    assert exercise.check(overflowing).mistake == "demo.overflow"
    result = exercise.check(unrelated)
    assert not result.passed and result.mistake is None


# ------------------------------------------------------- what the adapters must not let through
def test_sampling_filter_compares_probabilities_in_vocabulary_order():
    """Only the tied case is compared as sorted probabilities: elsewhere the right numbers in
    another order (each row sorted, so token 0 holds the best token's probability) are wrong."""
    from minigpt import next_token_probs
    result = ex.check_sampling_filter(lambda logits, temperature, top_k: next_token_probs(
        logits, temperature, top_k).sort(dim=-1, descending=True).values)
    assert result.status == FAILED, repr(result)


def test_dropout_kept_entries_share_one_factor():
    """Every kept entry is multiplied by the same 1 / (1 - p): factors that differ by a percent
    from entry to entry, right on average, are not a dropout."""
    def wobbly(x, p, training):
        if not training or p == 0:
            return x
        g = torch.Generator().manual_seed(1)
        keep = torch.rand(x.shape) >= p
        return x * keep / (1 - p) * (1 + 0.02 * (torch.rand(x.shape, generator=g) - 0.5))
    result = ex.check_dropout(wobbly)
    assert result.status == FAILED and "differs between entries" in result.message, repr(result)


def test_decay_groups_hold_only_the_models_parameters():
    """A group holding a tensor that is not one of the model's parameters is wrong: the
    optimizer would update something the model never uses."""
    def with_a_stranger(model, weight_decay):
        params = list(model.parameters())
        return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.dim() < 2] + [torch.nn.Parameter(torch.zeros(3))],
                 "weight_decay": 0.0}]
    result = ex.check_decay_groups(with_a_stranger)
    assert result.status == FAILED, repr(result)


def test_decay_groups_must_use_the_weight_decay_they_are_given():
    """The matrices' group carries the argument: 0.1 written in (right for the first case only),
    any other positive number, or a group with no weight_decay at all (AdamW then applies its
    default, 0.01, to the biases and LayerNorm parameters too) is a wrong answer."""
    def groups(matrices_decay, rest):
        def answer(model, weight_decay):
            params = list(model.parameters())
            return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": matrices_decay(weight_decay)},
                    {"params": [p for p in params if p.dim() < 2], **rest}]
        return answer
    assert ex.check_decay_groups(groups(lambda wd: wd, {"weight_decay": 0.0})).status == PASSED
    written_in = ex.check_decay_groups(groups(lambda wd: 0.1, {"weight_decay": 0.0}))
    assert written_in.status == FAILED and "weight_decay=0.05" in written_in.message, repr(written_in)
    assert "decayed by 0.1, not by the weight_decay asked for (0.05)" in written_in.message, repr(written_in)
    assert ex.check_decay_groups(groups(lambda wd: 123.0, {"weight_decay": 0.0})).status == FAILED
    no_key = ex.check_decay_groups(groups(lambda wd: wd, {}))
    assert no_key.status == FAILED and "a group has no weight_decay" in no_key.message, repr(no_key)
    assert "Traceback" not in no_key.message


def test_a_module_with_dropout_layers_passes_the_multi_head_check():
    """The check runs the student's module in eval mode: dropout layers as nanoGPT has them
    (attn_dropout, resid_dropout) are the right answer, not a random one."""
    import math

    class WithDropout(torch.nn.Module):
        def __init__(self, n_embd, n_head):
            super().__init__()
            self.n_head = n_head
            self.c_attn = torch.nn.Linear(n_embd, 3 * n_embd)
            self.c_proj = torch.nn.Linear(n_embd, n_embd)
            self.attn_dropout = torch.nn.Dropout(0.5)
            self.resid_dropout = torch.nn.Dropout(0.5)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                       for t in self.c_attn(x).split(C, dim=2))
            scores = (q @ k.transpose(-2, -1) / math.sqrt(C // self.n_head)).masked_fill(
                ~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
            y = self.attn_dropout(torch.softmax(scores, dim=-1)) @ v
            return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))
    result = ex.check_multi_head_attention(WithDropout)
    assert result.status == PASSED, repr(result)


def test_a_cache_that_returns_views_of_its_buffers_passes():
    """append may return slices of the cache's own buffers (the notebook's skeleton keeps
    zero-filled buffers): the check keeps a copy of what each append returned, so a later
    append that slides the buffers does not change an earlier answer."""
    class ViewCache:
        def __init__(self, batch_size, n_kv_head, max_len, head_dim):
            self.k = torch.zeros(batch_size, n_kv_head, max_len, head_dim)
            self.v = torch.zeros_like(self.k)
            self.length, self.max_len = 0, max_len

        def append(self, k, v):
            keys = torch.cat([self.k[:, :, :self.length], k], dim=2)[:, :, -self.max_len:]
            values = torch.cat([self.v[:, :, :self.length], v], dim=2)[:, :, -self.max_len:]
            self.length = keys.size(2)
            self.k[:, :, :self.length] = keys
            self.v[:, :, :self.length] = values
            return self.k[:, :, :self.length], self.v[:, :, :self.length]
    result = ex.check_sliding_cache(ViewCache)
    assert result.status == PASSED, repr(result)


def test_tiles_twice_as_wide_as_asked_fail_the_tiled_check():
    """The exercise asks for (block x block) score tiles: key tiles of 2 * block (the same work
    within 25%, since the future tiles are still skipped) build rows wider than one tile."""
    def wide_tiles(q, k, v, block):
        return _tiles_with_einsum(q, k, v, block, key_block=2 * block)
    result = ex.check_tiled_attention(wide_tiles)
    assert result.status == FAILED and "wider than one tile" in result.message, repr(result)
