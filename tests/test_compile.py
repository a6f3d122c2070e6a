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
