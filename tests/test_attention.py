"""The three attention implementations, GQA/MQA, RoPE, the sinusoidal table and KVCache."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from conftest import ALL_IMPLS, tiny_config
import minigpt
from minigpt import (CausalSelfAttention, KVCache, apply_rope, causal_mask, flash_attention,
                     manual_attention, rope_cos_sin, sinusoidal_table)
from minigpt.attention import dropout_attention

TOL = dict(atol=1e-5, rtol=1e-5)


def qkv(B=2, H=3, T=13, S=None, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = T if S is None else S
    return (torch.randn(B, H, T, D, generator=g), torch.randn(B, H, S, D, generator=g),
            torch.randn(B, H, S, D, generator=g))


def reference_attention(q, k, v):
    """Loop over queries: query i (at position S - T + i) sees keys 0 .. S - T + i."""
    T, S, D = q.size(-2), k.size(-2), q.size(-1)
    out = torch.empty_like(q)
    for i in range(T):
        visible = S - T + i + 1
        scores = q[..., i:i + 1, :] @ k[..., :visible, :].transpose(-2, -1) / math.sqrt(D)
        out[..., i:i + 1, :] = torch.softmax(scores, dim=-1) @ v[..., :visible, :]
    return out


# ---------------------------------------------------------------------- masks
def test_causal_mask():
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool())
    # 2 queries that are the last 2 of 4 positions
    assert torch.equal(causal_mask(2, 4), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]).bool())


# ------------------------------------------------------------ function level
@pytest.mark.parametrize("T,S", [(13, 13), (5, 13), (1, 13), (8, 8), (17, 17)])
def test_manual_matches_a_loop_reference(T, S):
    q, k, v = qkv(T=T, S=S)
    assert_close(manual_attention(q, k, v), reference_attention(q, k, v), **TOL)


@pytest.mark.parametrize("T,S,block_q,block_k", [
    (13, 13, 8, 8),     # T not a multiple of the tile
    (13, 13, 4, 8),
    (13, 13, 8, 3),
    (5, 13, 8, 8),      # KV-cache style: 5 new queries after 8 cached keys
    (5, 21, 2, 4),
    (1, 13, 8, 8),      # one new token
    (20, 20, 128, 128),  # a single tile
])
def test_flash_matches_manual_and_sdpa(T, S, block_q, block_k):
    q, k, v = qkv(T=T, S=S)
    ref = manual_attention(q, k, v)
    out = flash_attention(q, k, v, block_q=block_q, block_k=block_k)
    assert out.shape == q.shape
    assert torch.isfinite(out).all()
    assert_close(out, ref, **TOL)
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T, S))
    assert_close(sdpa, ref, **TOL)
    if T == S:
        assert_close(F.scaled_dot_product_attention(q, k, v, is_causal=True), ref, **TOL)


def test_manual_weights_are_causal_distributions():
    q, k, v = qkv(T=6, S=9)
    y, w = manual_attention(q, k, v, return_weights=True)
    assert w.shape == (2, 3, 6, 9)
    assert_close(w.sum(-1), torch.ones(2, 3, 6))
    assert (w[..., ~causal_mask(6, 9)] == 0).all()
    assert_close(y, w @ v)


def test_function_level_gqa_agrees_with_sdpa_gqa():
    """GQA: 4 query heads share 2 key/value heads; repeating k/v per group is the definition."""
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 4, 11, 8, generator=g)
    k, v = torch.randn(2, 2, 11, 8, generator=g), torch.randn(2, 2, 11, 8, generator=g)
    kr, vr = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    assert_close(manual_attention(q, kr, vr), ref, **TOL)
    assert_close(flash_attention(q, kr, vr, block_q=8, block_k=8), ref, **TOL)


def test_flash_dropout_only_in_training():
    """No dropout in eval mode; in training, flash's dropout is manual_attention's: with one
    tile covering the whole (T, S) score matrix (the default 128 x 128 tiles, T = 9) flash draws
    its mask over the same shape as manual_attention, so the same seed gives the same mask and
    the outputs must agree (this catches a missing 1/(1-p) scale or a dropped normaliser)."""
    q, k, v = qkv(T=9)
    assert_close(flash_attention(q, k, v, dropout_p=0.5, training=False, block_q=4, block_k=4),
                 manual_attention(q, k, v), **TOL)
    torch.manual_seed(0)
    one_tile = flash_attention(q, k, v, dropout_p=0.5, training=True)
    torch.manual_seed(0)
    assert_close(one_tile, manual_attention(q, k, v, 0.5, True), **TOL)
    assert not torch.allclose(one_tile, manual_attention(q, k, v))
    # by tiles the masks are drawn tile by tile (other draws): only the change can be checked
    torch.manual_seed(0)
    dropped = flash_attention(q, k, v, dropout_p=0.5, training=True, block_q=4, block_k=4)
    assert not torch.allclose(dropped, manual_attention(q, k, v))


@pytest.mark.parametrize("T,S", [(13, 13), (1, 1), (5, 9), (130, 130)])
def test_dropout_attention_equals_manual_with_the_same_mask(T, S):
    """The CPU training path (bias inside baddbmm, hand-written backward) is manual_attention."""
    q, k, v = qkv(T=T, S=S)
    q = q.transpose(1, 2).contiguous().transpose(1, 2)        # strided like a c_attn split
    grad_out = torch.randn_like(q)
    results = []
    for fn in (lambda *a: dropout_attention(*a, 0.3), lambda *a: manual_attention(*a, 0.3, True)):
        inputs = [t.clone().requires_grad_() for t in (q, k, v)]
        torch.manual_seed(7)
        out = fn(*inputs)
        out.backward(grad_out)
        results.append([out] + [t.grad for t in inputs])
    assert (results[0][0] != 0).any()
    for ours, textbook in zip(*results):
        assert_close(ours, textbook, **TOL)


def test_dropout_attention_drops_and_rescales():
    q, k, v = qkv(B=1, H=1, T=64, D=4)
    v = torch.ones_like(v)                                    # each output = sum of kept weights
    torch.manual_seed(0)
    out = dropout_attention(q, k, v, 0.5)[..., 0]
    # rows of 1/(1-p)-scaled kept weights average to 1 but no longer each sum to 1
    assert not torch.allclose(out, torch.ones_like(out))
    assert abs(out.mean().item() - 1.0) < 0.15


# --------------------------------------------------------------- module level
def _attn(seed=0, **overrides):
    torch.manual_seed(seed)
    return CausalSelfAttention(tiny_config(**overrides)).eval()


def _rope_for(module, start, T, n=64):
    cos, sin = rope_cos_sin(n, module.head_dim)
    return cos[start:start + T], sin[start:start + T]


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_module_implementations_agree_with_and_without_cache(n_kv_head, pos):
    attn = _attn(n_kv_head=n_kv_head, pos_encoding=pos)
    x = torch.randn(2, 13, 32)
    rope_all = _rope_for(attn, 0, 13) if pos == "rope" else None
    outs = {impl: attn(x, rope_all, impl=impl) for impl in ALL_IMPLS}
    assert_close(outs["sdpa"], outs["manual"], **TOL)
    assert_close(outs["flash"], outs["manual"], **TOL)
    # KV cache: 8 positions first, then the remaining 5 as queries against 13 keys
    for impl in ALL_IMPLS:
        cache = KVCache(2, n_kv_head, 16, attn.head_dim)
        r1 = _rope_for(attn, 0, 8) if pos == "rope" else None
        r2 = _rope_for(attn, 8, 5) if pos == "rope" else None
        first = attn(x[:, :8], r1, cache, impl=impl)
        rest = attn(x[:, 8:], r2, cache, impl=impl)
        assert cache.length == 13
        assert_close(torch.cat([first, rest], 1), outs["manual"], **TOL)
        # and one token at a time
        cache.reset()
        steps = [attn(x[:, t:t + 1], _rope_for(attn, t, 1) if pos == "rope" else None, cache, impl=impl)
                 for t in range(13)]
        assert_close(torch.cat(steps, 1), outs["manual"], **TOL)


@pytest.mark.parametrize("n_kv_head", [4, 1])
def test_sdpa_training_with_dropout_on_cpu_equals_manual(n_kv_head):
    """On a CPU, sdpa + dropout trains through dropout_attention: same numbers as manual."""
    results = []
    for impl in ("manual", "sdpa"):
        attn = _attn(n_kv_head=n_kv_head, dropout=0.2, attn_impl=impl).train()
        x = torch.randn(2, 11, 32, generator=torch.Generator().manual_seed(1), requires_grad=True)
        torch.manual_seed(3)
        out = attn(x)
        out.square().sum().backward()
        results.append((out, x.grad, attn.c_attn.weight.grad))
    for ours, textbook in zip(*results):
        assert_close(ours, textbook, **TOL)


@pytest.mark.parametrize("n_kv_head", [1, 2, 4])
def test_c_attn_width(n_kv_head):
    attn = _attn(n_kv_head=n_kv_head)
    head_dim = 32 // 4
    assert attn.c_attn.out_features == 32 + 2 * n_kv_head * head_dim
    assert attn.c_attn.weight.shape == (32 + 2 * n_kv_head * head_dim, 32)


def test_mha_module_matches_a_hand_written_multi_head_attention():
    """n_kv_head == n_head is plain multi-head attention, written out here from scratch."""
    attn = _attn(n_kv_head=4)
    assert attn.n_kv_head == attn.n_head == 4
    x = torch.randn(2, 10, 32)
    W, b = attn.c_attn.weight, attn.c_attn.bias
    q, k, v = (x @ W.T + b).split(32, dim=2)
    heads = lambda t: t.view(2, 10, 4, 8).transpose(1, 2)          # noqa: E731
    y = reference_attention(heads(q), heads(k), heads(v)).transpose(1, 2).reshape(2, 10, 32)
    expected = attn.c_proj(y)
    for impl in ALL_IMPLS:
        assert_close(attn(x, impl=impl), expected, **TOL)
    # and the default n_kv_head=None builds exactly the same layer
    assert _attn(n_kv_head=None).c_attn.weight.shape == attn.c_attn.weight.shape


@pytest.mark.parametrize("n_kv_head", [1, 2])
def test_gqa_equals_mha_with_shared_key_value_heads(n_kv_head):
    """A GQA layer computes what an MHA layer computes when its k/v heads are copies."""
    gqa = _attn(n_kv_head=n_kv_head)
    mha = _attn(seed=5, n_kv_head=4)
    C, D, rep = 32, 8, 4 // n_kv_head
    with torch.no_grad():
        Wq, Wk, Wv = gqa.c_attn.weight.split([C, n_kv_head * D, n_kv_head * D])
        bq, bk, bv = gqa.c_attn.bias.split([C, n_kv_head * D, n_kv_head * D])
        expand = lambda t: t.reshape(n_kv_head, D, *t.shape[1:]).repeat_interleave(rep, 0).reshape(C, *t.shape[1:])  # noqa: E731
        mha.c_attn.weight.copy_(torch.cat([Wq, expand(Wk), expand(Wv)]))
        mha.c_attn.bias.copy_(torch.cat([bq, expand(bk), expand(bv)]))
        mha.c_proj.load_state_dict(gqa.c_proj.state_dict())
    x = torch.randn(3, 12, C)
    for impl in ALL_IMPLS:
        assert_close(gqa(x, impl=impl), mha(x, impl="manual"), **TOL)


def test_rope_layer_requires_the_tables():
    attn = _attn(pos_encoding="rope")
    with pytest.raises(minigpt.MiniGPTError, match=r"pass rope=\(cos, sin\)"):  # (a ValueError too)
        attn(torch.randn(1, 4, 32))


def test_return_weights_shape_with_gqa():
    attn = _attn(n_kv_head=2)
    out, w = attn(torch.randn(2, 7, 32), return_weights=True)
    assert out.shape == (2, 7, 32) and w.shape == (2, 4, 7, 7)
    assert_close(w.sum(-1), torch.ones(2, 4, 7))


# ------------------------------------------------------------------------ RoPE
def _rotate(x, pos, cos, sin):
    return apply_rope(x.view(1, 1, 1, -1), cos[pos:pos + 1], sin[pos:pos + 1]).view(-1)


def test_rope_dot_product_depends_only_on_relative_position():
    D = 16
    cos, sin = rope_cos_sin(128, D)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(D, generator=g, dtype=torch.float64).float(), torch.randn(D, generator=g)
    for delta in (0, 1, 3, 17):
        dots = [torch.dot(_rotate(q, m, cos, sin), _rotate(k, m - delta, cos, sin)).item()
                for m in (delta, delta + 5, delta + 40, delta + 90)]
        assert max(dots) - min(dots) < 1e-4, (delta, dots)
    # ... and it does depend on the difference (otherwise the test above is vacuous)
    d1 = torch.dot(_rotate(q, 10, cos, sin), _rotate(k, 9, cos, sin))
    d2 = torch.dot(_rotate(q, 10, cos, sin), _rotate(k, 3, cos, sin))
    assert abs(d1 - d2) > 1e-3


def test_rope_preserves_norms_and_is_identity_at_position_zero():
    cos, sin = rope_cos_sin(50, 8)
    x = torch.randn(2, 3, 50, 8)
    rotated = apply_rope(x, cos, sin)
    assert rotated.shape == x.shape
    assert_close(rotated.norm(dim=-1), x.norm(dim=-1), **TOL)
    assert_close(rotated[:, :, 0], x[:, :, 0])
    assert not torch.allclose(rotated[:, :, 1:], x[:, :, 1:])
    assert cos.shape == sin.shape == (50, 4)


def test_rope_rotates_pairs_by_position_times_frequency():
    cos, sin = rope_cos_sin(8, 4)
    x = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 1, 4)
    y = apply_rope(x, cos[3:4], sin[3:4]).view(-1)
    theta = torch.tensor([1.0, 1.0 / 100.0])       # base ** (-2i / D) for D = 4
    assert_close(y, torch.stack([torch.cos(3 * theta), torch.sin(3 * theta)], -1).flatten())


def test_sinusoidal_table():
    table = sinusoidal_table(10, 6)
    assert table.shape == (10, 6)
    assert_close(table[0, 0::2], torch.zeros(3))
    assert_close(table[0, 1::2], torch.ones(3))
    assert_close(table[4, 0], torch.tensor(math.sin(4.0)))
    assert table.abs().max() <= 1.0


# -------------------------------------------------------------------- KVCache
def test_kv_cache_append_and_overflow():
    cache = KVCache(1, 2, 5, 4)
    k1, v1 = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    k, v = cache.append(k1, v1)
    assert k.shape == (1, 2, 3, 4) and torch.equal(k, k1) and torch.equal(v, v1)
    k, v = cache.append(torch.zeros(1, 2, 2, 4), torch.zeros(1, 2, 2, 4))
    assert k.shape == (1, 2, 5, 4) and cache.length == 5 == cache.max_len
    with pytest.raises(RuntimeError, match=r"KV cache overflow: 6 positions > capacity 5"):
        cache.append(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4))
    cache.reset()
    assert cache.length == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kv_cache_nbytes_is_the_formula_and_allocates_nothing(dtype):
    from minigpt import kv_cache_nbytes
    cache = KVCache(3, 2, 7, 4, dtype=dtype)
    assert cache.nbytes == 2 * 3 * 2 * 7 * 4 * cache.k.element_size()
    assert kv_cache_nbytes(5, 3, 2, 7, 4, dtype) == 5 * cache.nbytes
    # a 7B-sized cache (32 layers, 32 heads of 128, 4096 tokens, bf16) is sized on the meta device
    assert kv_cache_nbytes(32, 1, 32, 4096, 128, torch.bfloat16) == 2 * 2**30


# --------------------------------------- worked solutions of the chapter 11-13 exercises
def _solutions():
    """grading/solutions.py: the exercises' worked solutions (repository-only, not installed)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "grading" / "solutions.py"
    spec = importlib.util.spec_from_file_location("solutions_for_attention_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chapter_11_to_13_worked_solutions_pass_their_checks():
    import minigpt.exercises as ex
    solutions = _solutions()
    assert ex.check_sliding_cache(solutions.SlidingKVCache)
    assert ex.check_cached_generate(solutions.cached_generate)
    assert ex.check_repeat_kv(solutions.repeat_kv)
    assert ex.check_grouped_attention(solutions.grouped_query_attention)
    assert ex.check_online_softmax(solutions.online_softmax_attend)
    assert ex.check_tiled_attention(solutions.tiled_attention)


@pytest.mark.parametrize("n_kv_head", [1, 2, 4])
def test_gqa_exercise_grouping_is_the_modules_grouping(n_kv_head):
    """The chapter-12 check's grouping (repeat_kv) is the one CausalSelfAttention uses."""
    grouped_query_attention = _solutions().grouped_query_attention
    layer = _attn(n_kv_head=n_kv_head).eval()
    x = torch.randn(2, 6, layer.n_head * layer.head_dim)
    B, T, C = x.shape
    q, k, v = layer.c_attn(x).split([C, layer.kv_width, layer.kv_width], dim=2)
    q = q.view(B, T, layer.n_head, layer.head_dim).transpose(1, 2)
    k, v = (t.view(B, T, n_kv_head, layer.head_dim).transpose(1, 2) for t in (k, v))
    y = grouped_query_attention(q, k, v).transpose(1, 2).reshape(B, T, C)
    with torch.no_grad():
        assert_close(layer.c_proj(y), layer(x), **TOL)


def test_sliding_cache_exercise_keeps_the_latest_positions():
    cache = _solutions().SlidingKVCache(1, 1, 3, 2)
    ks = torch.arange(10.0).view(1, 1, 5, 2)
    k, v = cache.append(ks[:, :, :2], -ks[:, :, :2])
    k, v = cache.append(ks[:, :, 2:], -ks[:, :, 2:])
    assert cache.length == 3 and torch.equal(k, ks[:, :, 2:]) and torch.equal(v, -ks[:, :, 2:])


def test_self_test_questions_answer_right_and_name_each_wrong_answer():
    import importlib.util
    from pathlib import Path

    import minigpt
    from minigpt.exercises import check_self_test
    from minigpt.exercises.ch14_self_test import use_answer_key
    path = Path(__file__).resolve().parents[1] / "grading" / "hidden.py"
    spec = importlib.util.spec_from_file_location("hidden_for_attention_tests", path)
    hidden = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hidden)
    key = hidden.answer_key()                 # the full edition's answer-key cell
    use_answer_key(key)
    try:
        for number, entry in key.items():
            assert check_self_test(number, entry["answer"]), number
            assert check_self_test(number, lambda: entry["answer"]), number
            for wrong, hint in entry["wrong"].items():
                result = check_self_test(number, wrong)
                assert not result and hint in result.message, (number, wrong)
    finally:
        use_answer_key(None)
    # the answers that the package can confirm
    assert key["11.3"]["answer"] == minigpt.kv_cache_nbytes(6, 64, 8, 256, 32, torch.bfloat16)
    cfg = tiny_config(n_embd=256, n_head=8, n_kv_head=2, block_size=8)
    assert key["12.3"]["answer"] == CausalSelfAttention(cfg).c_attn.out_features
    with pytest.raises(ValueError, match="no checkable self-test question"):
        check_self_test("99.9", 1)


def test_attention_memory_names_the_counter_it_read(monkeypatch):
    """Without /proc (macOS) the child's peak is ru_maxrss, which counts start-up: the method
    says so, so a flash measurement that reads 0 there is not taken for a real 0."""
    import subprocess
    from minigpt import memory
    sizes = {"manual": "1048576", "flash": "0"}
    monkeypatch.setattr(subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 0, sizes[argv[3]], ""))
    cpu = torch.device("cpu")
    monkeypatch.setattr(memory.os.path, "exists", lambda path: True)           # Linux
    assert memory.attention_memory(cpu, T=64)["method"] == "peak RSS growth in a fresh process (VmHWM)"
    monkeypatch.setattr(memory.os.path, "exists", lambda path: False)
    result = memory.attention_memory(cpu, T=64)
    assert "ru_maxrss, which counts start-up" in result["method"] and result["ratio_flash_over_manual"] == 0


def test_rope_tables_use_the_base_they_are_given():
    # the model always uses 10,000; the parameter is public (a longer-context RoPE raises it)
    from minigpt.positions import rope_cos_sin
    cos, sin = rope_cos_sin(4, 8, 500000.0)                        # (T, D/2)
    angles = torch.arange(4.0)[:, None] * 500000.0 ** (-torch.arange(0, 8, 2) / 8)
    assert_close(cos, torch.cos(angles))
    assert_close(sin, torch.sin(angles))
    assert not torch.equal(cos, rope_cos_sin(4, 8)[0])


def test_attention_output_is_dropped_entry_by_entry_after_the_projection():
    # with T = 1 the weights' dropout zeroes whole rows (p = 0.5), the residual dropout after
    # c_proj single entries (p = 0.5): 1 - 0.5 * 0.5 = 0.75 of the entries are zero with both
    torch.manual_seed(0)
    layer = CausalSelfAttention(tiny_config(n_embd=16, n_head=1, dropout=0.5, bias=False,
                                            attn_impl="manual")).train()
    zero = (layer(torch.randn(4096, 1, 16)) == 0).float().mean().item()
    assert abs(zero - 0.75) < 0.02, zero


def test_attention_memory_measures_flash_below_manual_and_in_bytes():
    from minigpt import memory
    from minigpt.errors import UsageError
    assert memory._peak_rss_bytes() > 50e6          # this process has imported torch: bytes, not KiB
    result = memory.attention_memory(torch.device("cpu"), T=2048)
    assert result["ratio_flash_over_manual"] < 0.5, result      # measured 0.048
    with pytest.raises(UsageError):
        memory.attention_memory(torch.device("cpu"), T=0)
