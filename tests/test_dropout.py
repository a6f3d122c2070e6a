"""minigpt.dropout: the cheaper CPU mask must still be dropout (rate, scaling, gradient)."""

import ctypes

import torch

from minigpt import GPTConfig, MiniGPT, cpu
from minigpt.device import tune_cpu_allocator
from minigpt.dropout import Dropout, dropout, keep_mask


def test_keep_mask_rate_and_independence():
    torch.manual_seed(0)
    mask = keep_mask((400, 500), 0.1)
    assert mask.dtype == torch.bool and mask.shape == (400, 500)
    assert abs(mask.float().mean().item() - 0.9) < 0.003          # 200k draws: sd ~0.0007
    # neighbouring entries come from different bit lanes: no correlation between them
    a, b = mask[:, 0::2].float().flatten(), mask[:, 1::2].float().flatten()
    assert abs((a * b).mean().item() - 0.81) < 0.005
    # four elements share one int64 draw: every lane keeps at the same rate
    lanes = mask.flatten().view(-1, 4).float().mean(0)
    assert (lanes - 0.9).abs().max().item() < 0.005


def test_float_keep_mask_is_zero_one_and_same_draw_as_bool():
    torch.manual_seed(2)
    as_bool = keep_mask((50, 70), 0.2)
    torch.manual_seed(2)
    as_float = keep_mask((50, 70), 0.2, dtype=torch.float32)
    assert as_float.dtype == torch.float32
    assert torch.equal(as_float, as_bool.float())


def test_dropout_scales_kept_entries_and_gradient():
    torch.manual_seed(1)
    x = torch.randn(1000, 64, requires_grad=True)
    y = dropout(x, 0.25)
    kept = y != 0
    torch.testing.assert_close(y[kept], (x * (1 / 0.75))[kept])
    y.sum().backward()
    expected = kept.float() / 0.75
    torch.testing.assert_close(x.grad, expected)


def test_eval_mode_and_p_zero_are_identity():
    x = torch.randn(10, 10)
    layer = Dropout(0.5).eval()
    assert layer(x) is x
    assert dropout(x, 0.0, training=True) is x


def test_same_seed_same_mask():
    torch.manual_seed(3)
    a = keep_mask((64, 64), 0.1)
    torch.manual_seed(3)
    b = keep_mask((64, 64), 0.1)
    assert torch.equal(a, b)


def test_training_model_with_dropout_is_seeded_and_learns():
    config = GPTConfig(vocab_size=11, block_size=16, n_embd=32, n_head=4, n_layer=2, dropout=0.1)
    x = torch.randint(0, 11, (4, 16), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        model = MiniGPT(config).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        run = []
        for _ in range(30):
            _, loss = model(x, x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses.append(run)
    assert losses[0] == losses[1]
    assert losses[0][-1] < losses[0][0] - 1.0


def test_tune_cpu_allocator_sets_mallopt_once(monkeypatch):
    """glibc's mallopt gets M_MMAP_MAX=0 and M_TRIM_THRESHOLD=1 GiB, once per process; where
    there is no glibc (or mallopt refuses) it returns False. libc is faked: the real settings
    would outlive the test."""
    calls = []

    class FakeLibc:
        def __init__(self, answer):
            self.answer = answer

        def mallopt(self, param, value):
            calls.append((param, value))
            return self.answer               # glibc: 1 on success, 0 on error

    def no_glibc(name):
        raise OSError(f"{name}: cannot open shared object file")
    monkeypatch.setattr(cpu, "_ALLOCATOR_TUNED", False)
    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeLibc(1))
    assert tune_cpu_allocator() is True
    assert calls == [(-4, 0), (-1, 1 << 30)]         # M_MMAP_MAX = -4, M_TRIM_THRESHOLD = -1
    assert tune_cpu_allocator() is True and len(calls) == 2       # applied once, then remembered
    monkeypatch.setattr(cpu, "_ALLOCATOR_TUNED", False)
    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeLibc(0))
    assert tune_cpu_allocator() is False                            # mallopt refused
    monkeypatch.setattr(ctypes, "CDLL", no_glibc)
    assert tune_cpu_allocator() is False                            # no glibc: macOS, Windows


def test_keep_mask_drops_exactly_round_p_times_2_to_15_of_the_lane_values(monkeypatch):
    # each 15-bit lane value once: p = 0 keeps every entry, and p drops round(p * 2^15) of them
    import minigpt.dropout as module
    monkeypatch.setattr(module, "_random_lanes", lambda n, device=None: torch.arange(n, dtype=torch.int16))
    for p in (0.0, 0.1, 0.5):
        assert int(keep_mask((1 << 15,), p).sum()) == (1 << 15) - round(p * (1 << 15)), p
