"""next_token_probs: temperature, top-k (exactly k, even with ties), top-p (nucleus)."""

import math

import pytest
import torch
from torch.testing import assert_close

from minigpt import next_token_probs


def logits_for(probs):
    return torch.tensor(probs, dtype=torch.float32).log()


def test_plain_softmax_and_shapes():
    logits = torch.randn(2, 3, 11)
    probs = next_token_probs(logits)
    assert probs.shape == logits.shape and probs.dtype == torch.float32
    assert_close(probs, torch.softmax(logits, -1))
    assert_close(probs.sum(-1), torch.ones(2, 3))


def test_temperature_scales_logits():
    logits = torch.randn(4, 9)
    assert_close(next_token_probs(logits, temperature=0.5), torch.softmax(logits / 0.5, -1))
    assert_close(next_token_probs(logits, temperature=3), torch.softmax(logits / 3, -1))


def test_temperature_zero_is_one_hot_argmax():
    logits = torch.randn(5, 13)
    probs = next_token_probs(logits, temperature=0)
    assert torch.equal(probs, torch.nn.functional.one_hot(logits.argmax(-1), 13).float())
    # filters do not change greedy decoding
    assert torch.equal(next_token_probs(logits, 0, top_k=3, top_p=0.5), probs)


def test_top_k_keeps_exactly_k_even_with_ties():
    logits = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, -1.0], [3.0, 2.0, 2.0, 2.0, 2.0, 1.0]])
    for k in (1, 2, 3):
        probs = next_token_probs(logits, top_k=k)
        assert ((probs > 0).sum(-1) == k).all(), (k, probs)
        assert_close(probs.sum(-1), torch.ones(2))
    probs = next_token_probs(logits, top_k=2)
    assert probs[1, 0] > 0                      # the unique best is always among them


def test_top_k_keeps_the_k_largest_renormalised():
    logits = torch.randn(3, 20)
    probs = next_token_probs(logits, top_k=5)
    top = logits.topk(5, -1)
    assert ((probs > 0).sum(-1) == 5).all()
    assert_close(probs.gather(-1, top.indices), torch.softmax(top.values, -1))
    assert_close(next_token_probs(logits, top_k=20), torch.softmax(logits, -1))   # k >= V: no-op
    assert_close(next_token_probs(logits, top_k=99), torch.softmax(logits, -1))


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = logits_for([[0.5, 0.3, 0.15, 0.05]])
    assert_close(next_token_probs(logits, top_p=0.7), torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    assert_close(next_token_probs(logits, top_p=0.4), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    kept = next_token_probs(logits, top_p=0.9)
    assert_close(kept, torch.tensor([[0.5, 0.3, 0.15, 0.0]]) / 0.95)
    assert_close(next_token_probs(logits, top_p=1.0), torch.softmax(logits, -1))


def test_top_p_against_a_brute_force_reference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 12, generator=g) * 2
    probs = torch.softmax(logits, -1)
    for p in (0.05, 0.3, 0.5, 0.77, 0.95):
        out = next_token_probs(logits, top_p=p)
        assert not torch.isnan(out).any()
        for row, full in zip(out, probs):
            sorted_probs, order = full.sort(descending=True)
            cumulative = sorted_probs.cumsum(0)
            if ((cumulative - p).abs() < 1e-5).any():
                continue                        # a boundary case: float rounding decides
            n_keep = int((cumulative < p).sum()) + 1          # smallest prefix reaching p
            expected = torch.zeros_like(full)
            expected[order[:n_keep]] = sorted_probs[:n_keep] / sorted_probs[:n_keep].sum()
            assert_close(row, expected)


@pytest.mark.parametrize("p,kept", [(0.5, [0, 1]), (0.9, [0, 1, 2, 3]), (1e-6, [0]), (1e-12, [0])])
def test_top_p_never_masks_everything(p, kept):
    """However small p, the most likely token stays; on a uniform row the smallest prefix
    reaching p is kept, tied tokens taken lowest id first (the quarters add up exactly in float)."""
    logits = logits_for([[0.99, 0.005, 0.003, 0.002], [0.25, 0.25, 0.25, 0.25]])
    probs = next_token_probs(logits, top_p=p)
    assert not torch.isnan(probs).any()
    assert_close(probs.sum(-1), torch.ones(2))
    assert probs[0, 0] == 1.0                       # 0.99 alone already reaches p
    assert probs[1].nonzero().flatten().tolist() == kept
    assert_close(probs[1, kept], torch.full((len(kept),), 1 / len(kept)))


def test_top_k_then_top_p():
    logits = logits_for([[0.4, 0.3, 0.2, 0.1]])
    # top-k 2 renormalises to [4/7, 3/7]; top-p 0.5 then keeps only the first
    assert_close(next_token_probs(logits, top_k=2, top_p=0.5), torch.tensor([[1.0, 0, 0, 0]]))
    assert_close(next_token_probs(logits, top_k=2, top_p=0.6), torch.tensor([[4 / 7, 3 / 7, 0, 0]]))


def test_masked_logits_do_not_make_nan():
    logits = torch.tensor([[2.0, float("-inf"), 1.0, float("-inf")]])
    for kw in ({}, {"top_k": 3}, {"top_p": 0.5}, {"top_k": 1, "top_p": 0.1}):
        probs = next_token_probs(logits, **kw)
        assert not torch.isnan(probs).any() and probs[0, 1] == 0 and probs[0, 3] == 0


@pytest.mark.parametrize("kw,message", [
    ({"temperature": -1.0}, r"temperature must be a number >= 0 \(0 = greedy\), got -1.0"),
    ({"temperature": float("nan")}, "temperature must be a number >= 0"),
    ({"temperature": math.inf}, "temperature must be a number >= 0"),
    ({"temperature": True}, "temperature must be a number >= 0"),
    ({"temperature": "1"}, "temperature must be a number >= 0"),
    ({"top_k": 0}, r"top_k must be a positive integer or None, got 0"),
    ({"top_k": -3}, "top_k must be a positive integer"),
    ({"top_k": 2.5}, "top_k must be a positive integer"),
    ({"top_k": True}, "top_k must be a positive integer"),
    ({"top_p": 0.0}, r"top_p must be in \(0, 1\] or None, got 0.0"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ({"top_p": -0.2}, r"top_p must be in \(0, 1\]"),
    ({"top_p": False}, r"top_p must be in \(0, 1\]"),
])
def test_invalid_settings_raise_value_error(kw, message):
    with pytest.raises(ValueError, match=message):
        next_token_probs(torch.randn(1, 5), **kw)


def test_numpy_scalars_from_a_sweep_are_accepted():
    # a sweep over np.arange hands in NumPy scalars: they mean what the Python numbers mean
    np = pytest.importorskip("numpy")
    logits = torch.randn(2, 9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(next_token_probs(logits, np.float32(0.7), np.int64(5), np.float64(0.9)),
                       next_token_probs(logits, 0.7, 5, 0.9))
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        next_token_probs(logits, top_k=np.int64(0))
    with pytest.raises(ValueError, match="temperature must be a number >= 0"):
        next_token_probs(logits, temperature=np.float32("nan"))
    from minigpt import GPTConfig, MiniGPT
    gpt = MiniGPT(GPTConfig(vocab_size=9, block_size=8, n_embd=8, n_head=2, n_layer=1, dropout=0.0))
    start = torch.zeros(1, 1, dtype=torch.long)
    a = gpt.generate(start, 5, temperature=np.float32(0.8), top_k=np.int64(4),
                     generator=torch.Generator().manual_seed(1))
    b = gpt.generate(start, 5, temperature=0.8, top_k=4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


@pytest.mark.parametrize("temperature", [1e-38, 1e-45, 1e-30])
def test_tiny_temperatures_do_not_overflow_to_nan(temperature):
    """logits / 1e-38 overflow to +-inf and softmax(+inf) is NaN: the result must be the limit."""
    logits = torch.tensor([[1.0, 3.0, 2.0], [-1.0, -2.0, -3.0], [50.0, -50.0, 0.0]])
    probs = next_token_probs(logits, temperature=temperature)
    assert not torch.isnan(probs).any()
    assert torch.equal(probs, torch.nn.functional.one_hot(logits.argmax(-1), 3).float())
    ties = next_token_probs(torch.tensor([[2.0, 2.0, -1.0]]), temperature=temperature)
    assert_close(ties, torch.tensor([[0.5, 0.5, 0.0]]))       # tied best tokens share the mass


def test_rows_that_do_not_overflow_are_unchanged_bit_for_bit():
    logits = torch.randn(4, 50) * 3
    assert torch.equal(next_token_probs(logits, temperature=0.7), torch.softmax(logits / 0.7, -1))


def test_generate_with_a_tiny_temperature_is_greedy():
    from conftest import random_ids, tiny_model
    model = tiny_model(scale=0.5)
    idx = random_ids(2, 5)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(model.generate(idx, 8, temperature=1e-38, generator=g),
                       model.generate(idx, 8, temperature=0))


def test_generated_ids_can_enter_a_training_step():
    """generate runs under no_grad, not inference_mode: its output is an ordinary tensor."""
    from conftest import random_ids, tiny_model
    model = tiny_model()
    out = model.generate(random_ids(1, 4), 6, temperature=0)
    assert not out.is_inference()
    model.train()
    _, loss = model(out[:, :-1], out[:, 1:])
    loss.backward()
    assert model.wte.weight.grad is not None


# ------------------------------------------------------------ ties, broken logits, tiny temperatures
def lowest_ids_reference(logits_row, k):
    """The JavaScript twin's rule (minigpt/web/static/minigpt-web/sampling.js): sort by logit,
    best first, ties by the lower id; keep the first k."""
    order = sorted(range(len(logits_row)), key=lambda i: (-logits_row[i], i))
    return sorted(order[:k])


def test_top_k_among_ties_keeps_the_lowest_ids():
    logits = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])   # 8 tied at the top
    assert next_token_probs(logits, top_k=2).nonzero().flatten().tolist() == [4, 5]
    # a token above the tie always stays; the one place left goes to the lowest tied id
    logits = torch.tensor([2.0, 5.0, 2.0, 1.0, 2.0, 2.0])
    assert next_token_probs(logits, top_k=2).nonzero().flatten().tolist() == [0, 1]


def lowest_ids_top_p_reference(logits_row, temperature, top_p):
    """The page's rule for top-p: walk the tokens best first (ties by the lower id) and keep
    each one while the probability of the tokens before it is below p."""
    order = sorted(range(len(logits_row)), key=lambda i: (-logits_row[i], i))
    probs = torch.softmax(torch.tensor(logits_row, dtype=torch.float64) / temperature, dim=-1)
    kept, before = [], 0.0
    for rank, i in enumerate(order):
        if rank == 0 or before < top_p:
            kept.append(i)
        before += float(probs[i])
    return sorted(kept)


def test_top_p_among_ties_keeps_the_lowest_ids():
    # 65 equal logits: one token reaches p = 0.01, and it is id 0 (an unstable sort kept id 40)
    assert next_token_probs(torch.zeros(65), top_p=0.01).nonzero().flatten().tolist() == [0]
    # one clear winner and 64 ties: the ties that reach p are the lowest ids, 0..54
    logits = torch.zeros(65)
    logits[64] = 3.0
    kept = next_token_probs(logits, top_p=0.9).nonzero().flatten().tolist()
    assert kept == lowest_ids_top_p_reference(logits.tolist(), 1.0, 0.9)
    assert kept[-1] == 64 and kept[:-1] == list(range(len(kept) - 1))


@pytest.mark.parametrize("temperature", [1.0, 0.7, 3.0])
@pytest.mark.parametrize("setting, values", [("top_k", (1, 2, 5, 11)), ("top_p", (0.1, 0.35, 0.5, 0.8))])
def test_the_filters_agree_with_the_page_on_many_tied_rows(setting, values, temperature):
    g = torch.Generator().manual_seed(0)
    logits = torch.randint(0, 4, (200, 12), generator=g).float()       # values 0-3: ties everywhere
    for value in values:
        probs = next_token_probs(logits, temperature, **{setting: value})
        for row, probs_row in zip(logits.tolist(), probs):
            expected = (lowest_ids_reference(row, value) if setting == "top_k"
                        else lowest_ids_top_p_reference(row, temperature, value))
            assert probs_row.nonzero().flatten().tolist() == expected, (setting, value, row)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_top_k_among_ties_is_the_same_on_cuda():
    g = torch.Generator().manual_seed(1)
    logits = torch.randint(0, 3, (64, 300), generator=g).float()
    for k in (1, 7, 150):
        on_cpu = next_token_probs(logits, top_k=k) > 0
        on_gpu = next_token_probs(logits.cuda(), top_k=k).cpu() > 0
        assert torch.equal(on_cpu, on_gpu)


@pytest.mark.parametrize("bad,name", [(float("nan"), "NaN"), (float("inf"), r"\+inf")])
@pytest.mark.parametrize("temperature", [0, 1.0])
def test_broken_logits_raise_instead_of_giving_nan(bad, name, temperature):
    from minigpt.sampling import NonFiniteLogitsError
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, bad, 1.0]])
    with pytest.raises(NonFiniteLogitsError, match=rf"the logits hold {name}.*weights or its input are broken"):
        next_token_probs(logits, temperature)


def test_a_row_with_every_token_masked_is_refused():
    from minigpt import MiniGPTError
    with pytest.raises(MiniGPTError, match=r"every logit of a row is -inf"):
        next_token_probs(torch.full((1, 4), float("-inf")))


@pytest.mark.parametrize("temperature", [1e-300, 1e-46, 2.0**-150])
def test_a_temperature_that_is_zero_in_float32_is_greedy(temperature):
    """1e-300 is 0 in float32 (logits / 0 would be inf and NaN): it decodes greedily, like 0."""
    logits = torch.tensor([[1.0, 3.0, 3.0, 2.0], [-1.0, -2.0, -3.0, 0.5]])
    probs = next_token_probs(logits, temperature=temperature)
    assert torch.equal(probs, next_token_probs(logits, temperature=0))
    assert probs[0].tolist() == [0.0, 1.0, 0.0, 0.0]                  # the lowest id among ties


def test_generate_with_a_temperature_that_is_zero_in_float32_is_greedy():
    from conftest import random_ids, tiny_model
    model = tiny_model(scale=0.5)
    idx = random_ids(2, 5)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(model.generate(idx, 8, temperature=1e-300, top_k=3, generator=g),
                       model.generate(idx, 8, temperature=0))


def test_the_cli_samples_greedily_with_a_temperature_that_is_zero_in_float32(capsys):
    from minigpt.cli import main
    common = ["sample", "--device", "cpu", "--prompt", "ROMEO:", "--max-new-tokens", "20"]
    assert main(common + ["--temperature", "1e-300", "--seed", "1"]) == 0
    tiny = capsys.readouterr().out
    assert main(common + ["--temperature", "0", "--seed", "2"]) == 0
    assert capsys.readouterr().out == tiny and tiny.startswith("ROMEO:") and len(tiny) > 20


def test_top_k_ranks_the_raw_logits_before_the_temperature_rounds_them():
    # 1.9 and the next float32 above it are two logits; divided by 1.3 they round to one value
    # (a tie). top_k=1 keeps the larger raw logit, not whichever the scaled tie happens to favour.
    # (Found by mutation: choosing on the scaled logits passed every other test.)
    low = torch.tensor(1.9)
    logits = torch.stack([low, torch.nextafter(low, torch.tensor(2.0))])[None]
    assert logits[0, 0] / 1.3 == logits[0, 1] / 1.3
    assert torch.equal(next_token_probs(logits, 1.3, top_k=1), torch.tensor([[0.0, 1.0]]))
