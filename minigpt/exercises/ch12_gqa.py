"""Chapter 12 exercises: sharing key/value heads (GQA/MQA), and the mistakes they invite.

The one idea that is easy to get wrong is *which* query heads share a key/value head: the
package (like Llama's `repeat_kv`) gives query heads 0..g-1 the first K/V head, g..2g-1 the
second, and so on (`repeat_interleave`). Any other grouping trains fine but cannot load a
checkpoint made with this one, so the checks insist on it.
"""

from __future__ import annotations

import torch

from ..attention import manual_attention
from .core import Case, CheckResult, Exercise, Mistake


# ------------------------------------------------------------------------ repeat_kv
def _tiles_heads(k, n_head):
    return k.repeat(1, n_head // k.size(1), 1, 1)             # [k0, k1, k0, k1, ...]


def _repeats_by_kv_heads(k, n_head):
    return k.repeat_interleave(k.size(1), dim=1)              # n_kv_head copies, not the group size


def _not_repeated(k, n_head):
    return k


def _repeats_positions(k, n_head):
    return k.repeat_interleave(n_head // k.size(1), dim=2)    # dim 2 holds positions, not heads


def _kv(B: int, Hkv: int, S: int, D: int, seed: int) -> torch.Tensor:
    return torch.randn(B, Hkv, S, D, generator=torch.Generator().manual_seed(seed))


def _repeat_cases() -> list[Case]:
    return [
        Case("GQA: 8 query heads, 2 K/V heads (groups of 4)", (_kv(2, 2, 5, 4, seed=1), 8)),
        Case("GQA: 6 query heads, 3 K/V heads (groups of 2)", (_kv(1, 3, 4, 3, seed=2), 6)),
        Case("MQA: 4 query heads, 1 K/V head", (_kv(1, 1, 3, 2, seed=3), 4)),
        Case("MHA: 3 query heads, 3 K/V heads (nothing to repeat)", (_kv(1, 3, 1, 2, seed=4), 3)),
    ]


REPEAT_KV = Exercise(
    name="repeat_kv (GQA head grouping)",
    reference=None,                 # the package repeats inside CausalSelfAttention: stored outputs
    stored="REPEAT_KV",
    cases=_repeat_cases,
    success="Query heads 0..g-1 read K/V head 0, the next g read K/V head 1, and so on.",
    mistakes=[
        Mistake("gqa.repeat_tiles_heads",
                "the heads are grouped wrongly: `repeat` tiles them as [k0, k1, k0, k1, ...], so "
                "query head 1 reads K/V head 1; use k.repeat_interleave(group, dim=1), which gives "
                "[k0, k0, ..., k1, k1, ...] (consecutive query heads share a K/V head).",
                _tiles_heads),
        Mistake("gqa.repeat_by_n_kv_head",
                "each K/V head was repeated n_kv_head times; repeat it group = n_head // n_kv_head "
                "times, so that the result has n_head heads.",
                _repeats_by_kv_heads),
        Mistake("gqa.not_repeated",
                "the K/V heads were not repeated at all: the result must have n_head heads, one "
                "per query head (dim 1 of size n_head).",
                _not_repeated),
        Mistake("gqa.repeats_positions",
                "the positions were repeated instead of the heads: repeat along dim=1 (heads); "
                "dim=2 holds the S positions.",
                _repeats_positions),
    ],
)


def check_repeat_kv(my_repeat_kv) -> CheckResult:
    """Check `my_repeat_kv(k, n_head)`: (B, Hkv, S, D) -> (B, n_head, S, D)."""
    return REPEAT_KV.check(my_repeat_kv)


# ------------------------------------------------------------- grouped-query attention
def _gqa_tiled(q, k, v):
    H = q.size(1)
    return manual_attention(q, _tiles_heads(k, H), _tiles_heads(v, H))


def _qkv(B: int, H: int, Hkv: int, T: int, D: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    q = 2 * torch.randn(B, H, T, D, generator=g)
    return q, 2 * torch.randn(B, Hkv, T, D, generator=g), torch.randn(B, Hkv, T, D, generator=g)


def _gqa_cases() -> list[Case]:
    return [
        Case("8 query heads, 2 K/V heads, T=6", _qkv(2, 8, 2, 6, 4, seed=1)),
        Case("MQA: 4 query heads, 1 K/V head, T=5", _qkv(1, 4, 1, 5, 8, seed=2)),
        Case("T=1 (one query), 6 query heads, 3 K/V heads", _qkv(1, 6, 3, 1, 4, seed=3)),
        Case("MHA: 2 query heads, 2 K/V heads", _qkv(1, 2, 2, 4, 4, seed=4)),
    ]


GQA_ATTENTION = Exercise(
    name="grouped-query attention",
    reference=None,                 # no package function takes fewer K/V heads: stored outputs
    stored="GQA_ATTENTION",
    cases=_gqa_cases,
    success="Each group of consecutive query heads attends with its own shared key/value head.",
    mistakes=[
        Mistake("gqa_attention.heads_tiled",
                "the heads are grouped wrongly (`repeat` tiles the K/V heads, so query head 1 reads "
                "K/V head 1): use repeat_interleave(n_head // n_kv_head, dim=1) on k and v.",
                _gqa_tiled),
        Mistake("gqa_attention.values_grouped_differently",
                "keys and values are grouped differently (keys with repeat_interleave, values with "
                "repeat): a query head must read the values of the same K/V head as its keys."),
        Mistake("gqa_attention.keys_grouped_differently",
                "keys and values are grouped differently (values with repeat_interleave, keys with "
                "repeat): a query head must read the keys of the same K/V head as its values."),
        Mistake("gqa_attention.no_scale",
                "the scores are sqrt(D) times too large: divide q @ k^T by sqrt(D), D the head "
                "size (q.size(-1)), before the softmax."),
        Mistake("gqa_attention.scale_by_sqrt_d_times_group",
                "the scores are divided by sqrt(D * group): sharing a K/V head does not change "
                "the dot product, which still has D terms, so divide by sqrt(D)."),
        Mistake("gqa_attention.mask_upside_down",
                "the mask keeps the future and hides the past (triu instead of tril): query t may "
                "see keys 0..t."),
        Mistake("gqa_attention.queries_pooled",
                "the query heads of a group were averaged into one: GQA shares only keys and "
                "values; every query head keeps its own query and its own output."),
    ],
)


def check_grouped_attention(my_attention) -> CheckResult:
    """Check `my_attention(q, k, v)`: q (B, H, T, D), k/v (B, Hkv, T, D) -> (B, H, T, D)."""
    return GQA_ATTENTION.check(my_attention)
