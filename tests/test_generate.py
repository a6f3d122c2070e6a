"""generate(): KV cache == no cache (greedy and sampled, past block_size), greedy == argmax."""

import pytest
import torch
from torch.testing import assert_close

from conftest import TINY, random_ids, tiny_model
from minigpt import MiniGPTError
from minigpt.sampling import NonFiniteLogitsError


# several architectures; weights drawn with a larger std so that logits are well separated
CONFIGS = {
    "learned-sdpa": {},
    "gqa": {"n_kv_head": 2},
    "mqa-rope": {"n_kv_head": 1, "pos_encoding": "rope"},
    "rope-flash": {"pos_encoding": "rope", "attn_impl": "flash"},
    "sinusoidal-manual": {"pos_encoding": "sinusoidal", "attn_impl": "manual"},
    "post-ln": {"norm": "post"},
    "post-ln-gqa-rope-sdpa": {"norm": "post", "n_kv_head": 2, "pos_encoding": "rope"},
}


def model_for(name):
    return tiny_model(scale=0.3, **CONFIGS[name])


@pytest.mark.parametrize("name", CONFIGS)
def test_cache_equals_no_cache_greedy_past_block_size(name):
    model = model_for(name)
    prompt = random_ids(2, 3)
    n_new = 3 * TINY["block_size"]                          # well past block_size (16)
    cached = model.generate(prompt, n_new, temperature=0, use_cache=True)
    fresh = model.generate(prompt, n_new, temperature=0, use_cache=False)
    assert cached.shape == (2, 3 + n_new)
    assert torch.equal(cached[:, :3], prompt)
    assert torch.equal(cached, fresh)
    assert len(set(cached[0].tolist())) > 2                 # not a degenerate constant output


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("kw", [{"temperature": 1.0}, {"temperature": 0.8, "top_k": 5},
                                {"temperature": 1.2, "top_p": 0.9}])
def test_cache_equals_no_cache_sampled(name, kw):
    model = model_for(name)
    prompt = random_ids(2, 5)
    outs = [model.generate(prompt, 40, use_cache=use_cache,
                           generator=torch.Generator().manual_seed(42), **kw)
            for use_cache in (True, False)]
    assert torch.equal(outs[0], outs[1])
    # and a different seed gives a different sample (the generator is really used)
    other = model.generate(prompt, 40, generator=torch.Generator().manual_seed(43), **kw)
    assert not torch.equal(other, outs[0])


@pytest.mark.parametrize("name", CONFIGS)
def test_one_cached_step_matches_a_full_recompute(name):
    model = model_for(name)
    idx = random_ids(2, 12)
    full = model(idx)[0]                                     # (B, T, V)
    caches = model.new_kv_caches(2)
    with torch.no_grad():
        prefill = model._next_logits(idx[:, :7], caches)     # positions 0..6
        chunk = model._next_logits(idx[:, 7:11], caches)     # 4 queries against 11 keys
        step = model._next_logits(idx[:, 11:], caches)       # one query against 12 keys
    assert caches[0].length == 12
    assert_close(prefill, full[:, 6], atol=1e-5, rtol=1e-5)
    assert_close(chunk, full[:, 10], atol=1e-5, rtol=1e-5)
    assert_close(step, full[:, 11], atol=1e-5, rtol=1e-5)


def argmax_decode(model, idx, n):
    block = model.config.block_size
    for _ in range(n):
        logits = model(idx[:, -block:])[0][:, -1]
        idx = torch.cat([idx, logits.argmax(-1, keepdim=True)], 1)
    return idx


@pytest.mark.parametrize("name", ["learned-sdpa", "mqa-rope", "post-ln"])
def test_temperature_zero_is_argmax_decoding(name):
    model = model_for(name)
    prompt = random_ids(2, 4)
    expected = argmax_decode(model, prompt, 25)
    assert torch.equal(model.generate(prompt, 25, temperature=0), expected)
    assert torch.equal(model.generate(prompt, 25, temperature=0, use_cache=False), expected)


def test_batch_rows_are_independent():
    model = model_for("gqa")
    prompt = random_ids(3, 6)
    together = model.generate(prompt, 20, temperature=0)
    for i in range(3):
        assert torch.equal(model.generate(prompt[i:i + 1], 20, temperature=0)[0], together[i])


def test_prompt_longer_than_block_size():
    model = model_for("rope-flash")
    prompt = random_ids(1, 40)
    a = model.generate(prompt, 5, temperature=0)
    b = model.generate(prompt, 5, temperature=0, use_cache=False)
    assert a.shape == (1, 45) and torch.equal(a, b)
    assert torch.equal(a, argmax_decode(model, prompt, 5))


def test_generate_restores_training_mode_and_zero_tokens():
    model = model_for("learned-sdpa").train()
    prompt = random_ids(1, 3)
    assert torch.equal(model.generate(prompt, 0), prompt)
    np = pytest.importorskip("numpy")       # a NumPy count is taken, as the sampling settings are
    assert model.generate(prompt, np.int64(2), temperature=0).shape == (1, 5)
    model.generate(prompt, 3)
    assert model.training


@pytest.mark.parametrize("kw,message", [
    ({"max_new_tokens": -1}, "max_new_tokens must be a non-negative integer"),
    ({"max_new_tokens": 2.0}, "max_new_tokens must be a non-negative integer"),
    ({"max_new_tokens": 5, "temperature": -0.5}, "temperature must be a number >= 0"),
    ({"max_new_tokens": 5, "top_k": 0}, "top_k must be a positive integer"),
    ({"max_new_tokens": 5, "top_p": 1.5}, r"top_p must be in \(0, 1\]"),
])
def test_generate_rejects_bad_settings(kw, message):
    with pytest.raises(MiniGPTError, match=message):
        model_for("learned-sdpa").generate(random_ids(1, 3), **kw)


@pytest.mark.parametrize("temperature", [0, 0.8])
@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_from_nan_weights_names_the_cause(temperature, use_cache):
    """Greedy decoding from NaN logits used to emit token 0 forever, silently."""
    model = model_for("learned-sdpa")
    with torch.no_grad():
        model.ln_f.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLogitsError, match=r"the model produced NaN logits at generation step 1: "
                                                   r"its weights or its input are broken"):
        model.generate(random_ids(1, 3), 5, temperature=temperature, use_cache=use_cache,
                       generator=torch.Generator().manual_seed(0))


def test_generation_reports_the_step_where_logits_broke():
    """A weight that breaks only later positions: the error names the step where it happened."""
    model = model_for("learned-sdpa")
    prompt = random_ids(1, 3)                 # positions 0-2; step 4 is the first to read position 5
    with torch.no_grad():
        model.wpe.weight[5] = float("inf")
    for use_cache in (True, False):
        assert model.generate(prompt, 3, temperature=0, use_cache=use_cache).shape == (1, 6)
        with pytest.raises(NonFiniteLogitsError, match=r"(NaN|inf) logits at generation step 4"):
            model.generate(prompt, 4, temperature=0, use_cache=use_cache)
