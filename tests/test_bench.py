"""Benchmark helpers that the reported numbers depend on (the benchmarks themselves are not tests)."""

import torch

from minigpt import GPTConfig, MiniGPT
from minigpt.bench import step_matmuls, train_flops_per_token


def test_flops_per_token_counts_6n_plus_causal_attention():
    config = GPTConfig(vocab_size=65)                       # the seed configuration
    n = MiniGPT(config).num_parameters(exclude_positions=True)
    attention = 6 * 6 * 8 * 32 * 128                        # 6 L H D T: half of 12 L H D T
    assert train_flops_per_token(config, n) == 6 * n + attention


def test_step_matmuls_runs_every_shape_of_a_step(monkeypatch):
    """The matmul-only step does 3 products per linear layer and 6 per attention layer."""
    config = GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=4, n_kv_head=2, n_layer=2)
    calls = {"mm": 0, "bmm": 0}
    for name, counted_as in (("mm", "mm"), ("bmm", "bmm"), ("baddbmm", "bmm")):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _real=real, _as=counted_as, **k:
                            (calls.__setitem__(_as, calls[_as] + 1), _real(*a, **k))[1])
    step_matmuls(config, batch_size=3, device=torch.device("cpu"))()
    assert calls == {"mm": 3 * (4 * 2 + 1), "bmm": 6 * 2}
