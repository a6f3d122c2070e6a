"""torch.compile: the training forward is one graph with dropout on, and the paths that are
not compiled (evaluation, generation) never trigger a compilation.

Graphs are counted with torch._dynamo.explain and compilations with Dynamo's frame counter,
both on the CPU with Dynamo's "eager" backend (no C++ compiler run: these tests take seconds).
"""

import pytest
import torch
import torch._dynamo as dynamo
from torch._dynamo.utils import counters

from minigpt import GPTConfig, MiniGPT


def _model(**overrides) -> MiniGPT:
    torch.manual_seed(0)
    config = dict(vocab_size=11, block_size=16, n_embd=32, n_head=4, n_layer=2, dropout=0.1)
    config.update(overrides)
    return MiniGPT(GPTConfig(**config))


@pytest.mark.parametrize("attn_impl,pos_encoding", [("sdpa", "learned"), ("manual", "learned"),
                                                    ("flash", "learned"), ("sdpa", "rope")])
def test_training_forward_with_dropout_is_one_graph(attn_impl, pos_encoding):
    # the hand-written CPU dropout draws its mask with an in-place random_, which Dynamo cannot
    # trace: before the fix this forward split into 21 graphs (20 breaks) with "manual" attention
    model = _model(attn_impl=attn_impl, pos_encoding=pos_encoding).train()
    x = torch.randint(0, 11, (2, 16))
    dynamo.reset()
    explanation = dynamo.explain(model)(x, x)
    reasons = [b.reason.splitlines()[0] for b in explanation.break_reasons]
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), reasons


def test_compiled_training_step_still_drops_and_learns():
    # under the compiler F.dropout replaces the hand-written mask: it must still drop (two
    # training forwards of the same input differ) and the loss must fall
    model = _model(attn_impl="sdpa").train()
    compiled = torch.compile(model, backend="eager")
    x = torch.randint(0, 11, (4, 16), generator=torch.Generator().manual_seed(1))
    a, b = compiled(x)[0], compiled(x)[0]
    assert not torch.equal(a, b)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        _, loss = compiled(x, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0


def test_eager_dropout_keeps_the_fast_cpu_mask(monkeypatch):
    # outside the compiler the CPU path must still be the hand-written mask, not F.dropout
    import minigpt.dropout as dropout_module
    calls = []
    monkeypatch.setattr(dropout_module.F, "dropout", lambda *a, **k: calls.append(a) or a[0])
    model = _model(attn_impl="sdpa").train()
    model(torch.randint(0, 11, (2, 16)))
    assert calls == []


def test_compiled_training_compiles_once_and_evaluation_and_generation_never(small_data, monkeypatch):
    # train(compile=True) compiles the training forward once for the whole run; evaluation
    # (every eval_interval, and `evaluate` with its shorter last window) and generation (a new
    # length every token) run the eager model, so no call of theirs ever compiles
    from minigpt import TrainConfig, evaluate, train
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **options: real_compile(model, backend="eager"))
    model = _model(vocab_size=small_data.tokenizer.vocab_size, attn_impl="sdpa")
    cfg = TrainConfig(max_iters=6, batch_size=4, learning_rate=3e-3, warmup_iters=2, eval_interval=2,
                      eval_iters=2, device="cpu", compile=True)
    dynamo.reset()
    counters.clear()
    result = train(model, small_data, cfg, progress=False)
    assert len(result.history["eval"]) == 4                   # steps 0, 2, 4, 6
    assert counters["stats"]["unique_graphs"] == 1
    evaluate(result.model, small_data.val[:200], batch_size=3)
    for batch, length in ((1, 3), (2, 5), (3, 9)):
        result.model.generate(torch.zeros(batch, length, dtype=torch.long), 4, temperature=0)
    assert counters["stats"]["unique_graphs"] == 1


def test_cli_says_compile_does_not_pay_on_a_cpu():
    from minigpt.cli import compile_note
    note = compile_note(torch.device("cpu"))
    assert note.startswith("note: --compile on a CPU") and "pays back after about 16,000 steps" in note
    assert compile_note(torch.device("cuda")) is None


def test_compile_without_a_cpp_compiler_warns_and_runs_eagerly(monkeypatch):
    # torch.compile is lazy: without a compiler it used to fail at the first training step with
    # a 100-line InductorError; the missing compiler is found up front instead
    pytest.importorskip("torch._inductor.cpp_builder")
    import torch._inductor.config as inductor_config
    from minigpt.device import maybe_compile, missing_compiler
    monkeypatch.setattr(inductor_config.cpp, "cxx", (None, "/nonexistent/g++"))
    assert "/nonexistent/g++" in missing_compiler()
    model = _model()
    with pytest.warns(UserWarning, match=r"--compile needs a working C\+\+ compiler, and none was found .*running eagerly"):
        assert maybe_compile(model, True) is model


def test_cli_names_compilation_in_the_time_per_step(tmp_path, capsys, monkeypatch):
    """A short compiled run's mean step time is mostly the compiler's (2.9 s against 5 ms eager
    in a review's 5-step run): the line says it is included."""
    from minigpt.cli import main
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **options: real_compile(model, backend="eager"))
    assert main(["train", "--preset", "tiny", "--max-iters", "2", "--compile", "--no-progress", "--threads", "1",
                 "--sample-tokens", "0", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "ms a step without evaluations and checkpoints, compilation included" in out
