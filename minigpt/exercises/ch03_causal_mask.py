"""Chapter 3 exercise: causal scaled dot-product attention, and the mistakes it invites."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..attention import causal_mask, manual_attention
from .core import Case, CheckResult, Exercise, Mistake, qkv


def _cases() -> list[Case]:
    # Large-ish entries (scale 2) make the 1/sqrt(D) factor visible in the softmax.
    return [
        Case("B=2, H=3, T=5, D=4", qkv(2, 3, 5, 4, seed=1, scale=2.0)),
        Case("T=1 (a single query, which may only see itself)", qkv(1, 2, 1, 8, seed=2, scale=2.0)),
        Case("one head, T=7, D=16", qkv(1, 1, 7, 16, seed=3, scale=2.0)),
    ]


def _scores(q, k, scale=True):
    s = q @ k.transpose(-2, -1)                                     # (B, H, T, T)
    return s / math.sqrt(q.size(-1)) if scale else s


def _mask(T: int, diagonal: int = 0) -> torch.Tensor:
    return torch.ones(T, T, dtype=torch.bool).tril(diagonal)        # True = may look


def _no_scale(q, k, v):
    s = _scores(q, k, scale=False).masked_fill(~_mask(q.size(-2)), float("-inf"))
    return F.softmax(s, dim=-1) @ v


def _scale_by_d(q, k, v):
    s = (q @ k.transpose(-2, -1) / q.size(-1)).masked_fill(~_mask(q.size(-2)), float("-inf"))
    return F.softmax(s, dim=-1) @ v


def _mask_after_softmax(q, k, v):
    w = F.softmax(_scores(q, k), dim=-1).masked_fill(~_mask(q.size(-2)), 0.0)
    return w @ v


def _softmax_over_queries(q, k, v):
    s = _scores(q, k).masked_fill(~_mask(q.size(-2)), float("-inf"))
    return F.softmax(s, dim=-2).nan_to_num() @ v


def _no_mask(q, k, v):
    return F.softmax(_scores(q, k), dim=-1) @ v


def _mask_sees_next(q, k, v):
    s = _scores(q, k).masked_fill(~_mask(q.size(-2), diagonal=1), float("-inf"))
    return F.softmax(s, dim=-1) @ v


def _mask_hides_self(q, k, v):
    s = _scores(q, k).masked_fill(~_mask(q.size(-2), diagonal=-1), float("-inf"))
    return F.softmax(s, dim=-1) @ v


def _mask_upside_down(q, k, v):
    T = q.size(-2)
    s = _scores(q, k).masked_fill(~torch.ones(T, T, dtype=torch.bool).triu(), float("-inf"))
    return F.softmax(s, dim=-1) @ v


def _softmax_over_heads(q, k, v):
    s = _scores(q, k).masked_fill(~_mask(q.size(-2)), float("-inf"))
    return F.softmax(s, dim=1).nan_to_num() @ v                     # dim 1 of (B, H, T, T) is the heads


def _returns_output_and_weights(q, k, v):
    return manual_attention(q, k, v, return_weights=True)               # (output, weights)


def _returns_weights(q, k, v):
    return manual_attention(q, k, v, return_weights=True)[1]            # (B, H, T, T)


CAUSAL_ATTENTION = Exercise(
    name="causal attention",
    reference=lambda q, k, v: manual_attention(q, k, v),
    cases=_cases,
    success="Your attention is causal: no position sees a later one.",
    mistakes=[
        Mistake("causal_attention.no_scale",
                "the scores are sqrt(D) times too large: divide q @ k^T by sqrt(D) before the softmax.",
                _no_scale),
        Mistake("causal_attention.scale_by_d",
                "the scores are divided by D; the scale is 1/sqrt(D) (math.sqrt(D) or D ** 0.5).",
                _scale_by_d),
        Mistake("causal_attention.mask_after_softmax",
                "the future is hidden after the softmax, so the kept weights no longer sum to 1: "
                "fill the future scores with -inf *before* the softmax.",
                _mask_after_softmax),
        Mistake("causal_attention.softmax_over_queries",
                "the softmax runs over the wrong dimension: each query's weights over the keys "
                "must sum to 1, so use softmax(dim=-1).",
                _softmax_over_queries),
        Mistake("causal_attention.softmax_over_heads",
                "the softmax runs over dim=1, which in (B, H, T, T) scores is the heads: count "
                "from the end, softmax(dim=-1), so that each query's weights over the keys sum to 1.",
                _softmax_over_heads),
        Mistake("causal_attention.no_mask",
                "every position attends to later positions: the causal mask is missing "
                "(scores.masked_fill(~mask, float('-inf')) with mask = tril of ones).",
                _no_mask),
        Mistake("causal_attention.mask_off_by_one_future",
                "each position also sees the next one: the mask is off by one (tril(diagonal=1)); "
                "use torch.tril(torch.ones(T, T)) so position t sees 0..t.",
                _mask_sees_next),
        Mistake("causal_attention.mask_hides_self",
                "each position is hidden from itself (tril(diagonal=-1)): position t must see "
                "0..t, itself included — and position 0 then has nothing to attend to.",
                _mask_hides_self),
        Mistake("causal_attention.mask_upside_down",
                "the mask keeps the future and hides the past (triu instead of tril).",
                _mask_upside_down),
        Mistake("causal_attention.returns_weights",
                "you returned the attention weights (B, H, T, T); return the weighted sum of the "
                "values, weights @ v, shape (B, H, T, D).",
                _returns_weights),
        Mistake("causal_attention.returns_output_and_weights",
                "you returned a pair (output, weights); the check asks for the output alone, "
                "weights @ v of shape (B, H, T, D), as minigpt.manual_attention returns it.",
                _returns_output_and_weights),
    ],
)


def check_causal_attention(my_attention) -> CheckResult:
    """Check `my_attention(q, k, v) -> (B, H, T, D)` against `minigpt.manual_attention`."""
    return CAUSAL_ATTENTION.check(my_attention)


# ------------------------------------------------------------------ the mask itself
def _mask_cases() -> list[Case]:
    return [
        Case("T=S=5 (training: queries and keys are the same positions)", (5, 5)),
        Case("T=S=1 (one token)", (1, 1)),
        Case("T=3, S=7 (three new queries after four cached keys)", (3, 7)),
        Case("T=1, S=6 (generation with a cache: one new query, six keys)", (1, 6)),
    ]


def _ones(T: int, S: int) -> torch.Tensor:
    return torch.ones(T, S, dtype=torch.bool)


CAUSAL_MASK = Exercise(
    name="causal mask",
    reference=lambda T, S: causal_mask(T, S),
    cases=_mask_cases,
    success="Query i (at position S - T + i) sees keys 0 .. S - T + i, itself included.",
    mistakes=[
        Mistake("causal_mask.upside_down",
                "the mask keeps the future and hides the past (triu instead of tril).",
                lambda T, S: _ones(T, S).triu(S - T)),
        Mistake("causal_mask.true_means_hidden",
                "True marks the hidden positions; here True means 'may look' (what masked_fill(~mask, "
                "-inf) expects): return the lower triangle, not its complement.",
                lambda T, S: ~causal_mask(T, S)),
        Mistake("causal_mask.sees_next",
                "each query also sees the next key: the diagonal is off by one upwards "
                "(tril(diagonal=S - T + 1)); query i may see keys up to its own position.",
                lambda T, S: _ones(T, S).tril(S - T + 1)),
        Mistake("causal_mask.hides_self",
                "each query is hidden from its own key (tril(diagonal=S - T - 1)): position t must see "
                "0..t, itself included, or the first position has nothing to attend to.",
                lambda T, S: _ones(T, S).tril(S - T - 1)),
        Mistake("causal_mask.no_offset",
                "the queries are lined up with the first keys (tril() of a (T, S) matrix); they are the "
                "last T of S positions, so shift the diagonal: tril(diagonal=S - T).",
                lambda T, S: _ones(T, S).tril()),
        Mistake("causal_mask.square_only",
                "the mask is (T, T) and ignores S: with a cache there are S keys, so it must be (T, S).",
                lambda T, S: _ones(T, T).tril()),
        Mistake("causal_mask.float_mask",
                "the mask holds floats (1.0 / 0.0), e.g. torch.tril(torch.ones(T, S)): the mask is "
                "a bool tensor (True = may look), because masked_fill and ~mask need bools (~ of a "
                "float tensor is an error). Build it with dtype=torch.bool.",
                lambda T, S: causal_mask(T, S).float()),
        Mistake("causal_mask.offset_sign",
                "the diagonal is shifted the wrong way (tril(diagonal=T - S)); the offset is S - T, "
                "so a single new query sees every cached key.",
                lambda T, S: _ones(T, S).tril(T - S)),
    ],
)


def check_causal_mask(my_causal_mask) -> CheckResult:
    """Check `my_causal_mask(T, S) -> (T, S) bool` (True = may look) against `minigpt.causal_mask`."""
    return CAUSAL_MASK.check(my_causal_mask)
