"""Chapter 2 exercises: softmax by hand, and one head's causal attention weights.

Chapter 2 works with a single head and no head axis: queries and keys are `(B, T, D)`.
"""

from __future__ import annotations

import math

import torch

from ..attention import manual_attention
from .core import Case, CheckResult, Exercise, Mistake, randn


# --------------------------------------------------------------------- softmax by hand
def _softmax_cases() -> list[Case]:
    masked = randn(4, 4, seed=12).masked_fill(~torch.ones(4, 4, dtype=torch.bool).tril(), float("-inf"))
    return [
        # square first: a sum without keepdim=True broadcasts without an error only when rows == columns
        Case("scores of shape (5, 5)", (randn(5, 5, seed=11),)),
        Case("causally masked scores, -inf above the diagonal", (masked,)),
        Case("large scores (around ±100, as an unscaled wide head makes)", (randn(2, 3, 6, seed=13, scale=100.0),)),
        Case("T=1 (one score: its weight must be 1)", (randn(1, 1, seed=14),)),
    ]


def _row_max(s):
    return s.max(dim=-1, keepdim=True).values


def _softmax_no_max(s):
    e = s.exp()
    return e / e.sum(dim=-1, keepdim=True)


def _softmax_no_keepdim(s):
    e = (s - _row_max(s)).exp()
    return e / e.sum(dim=-1)             # (T,) broadcasts as a row: column j divided by row j's sum


def _softmax_over_columns(s):
    e = (s - s.max(dim=-2, keepdim=True).values).exp()
    return e / e.sum(dim=-2, keepdim=True)


def _softmax_over_everything(s):
    e = (s - s.max()).exp()
    return e / e.sum()


def _softmax_global_max(s):
    e = (s - s.max()).exp()              # one maximum for the whole tensor, not one per row
    return e / e.sum(dim=-1, keepdim=True)


def _softmax_max_without_keepdim(s):
    e = (s - s.max(dim=-1).values).exp()  # (T,) broadcasts as a row: column j minus row j's max
    return e / e.sum(dim=-1, keepdim=True)


def _softmax_no_exp(s):
    return s / s.sum(dim=-1, keepdim=True)


SOFTMAX = Exercise(
    name="softmax by hand",
    reference=lambda s: torch.softmax(s, dim=-1),
    cases=_softmax_cases,
    success="Each row is positive, sums to 1, and large scores no longer overflow.",
    mistakes=[
        Mistake("softmax.no_max_subtraction",
                "exp() of a large score overflows to inf, and inf / inf is NaN: subtract each row's "
                "maximum first (s - s.max(dim=-1, keepdim=True).values). It changes nothing "
                "mathematically, because softmax ignores a constant added to a whole row.",
                _softmax_no_max),
        Mistake("softmax.sum_without_keepdim",
                "the row sums lost their last dimension, so dividing broadcast them along the wrong "
                "axis (column j was divided by row j's sum): use e.sum(dim=-1, keepdim=True).",
                _softmax_no_keepdim),
        Mistake("softmax.over_columns",
                "the softmax runs down the columns (dim=-2 or dim=0): each row, one query's weights "
                "over the keys, must sum to 1, so normalise over dim=-1.",
                _softmax_over_columns),
        Mistake("softmax.over_everything",
                "you normalised over the whole tensor (a sum with no dim): normalise each row on its "
                "own, e.sum(dim=-1, keepdim=True).",
                _softmax_over_everything),
        Mistake("softmax.global_max",
                "you subtracted the maximum of the whole tensor, not each row's own: a row whose "
                "scores all lie far below the global maximum underflows to exp() = 0 everywhere, "
                "and 0 / 0 is NaN. Subtract s.max(dim=-1, keepdim=True).values.",
                _softmax_global_max),
        Mistake("softmax.max_without_keepdim",
                "the row maxima lost their last dimension (s.max(dim=-1).values is (T,)), so "
                "subtracting them broadcast along the wrong axis: column j got row j's maximum. "
                "Keep the dimension: s.max(dim=-1, keepdim=True).values.",
                _softmax_max_without_keepdim),
        Mistake("softmax.no_exp",
                "the scores are divided by their sum without exponentiating: softmax is "
                "exp(s) / sum(exp(s)), which keeps every weight positive.",
                _softmax_no_exp),
    ],
)


def check_softmax(my_softmax) -> CheckResult:
    """Check `my_softmax(scores) -> weights`, a softmax over the last dimension."""
    return SOFTMAX.check(my_softmax)


# ------------------------------------------------------------ one head's attention weights
def _weights_cases() -> list[Case]:
    # Entries of size 2 make the 1/sqrt(D) factor visible in the weights.
    return [
        Case("B=2, T=5, D=4", (randn(2, 5, 4, seed=21, scale=2.0), randn(2, 5, 4, seed=22, scale=2.0))),
        Case("T=1 (a single query, which may only see itself)",
             (randn(1, 1, 8, seed=23, scale=2.0), randn(1, 1, 8, seed=24, scale=2.0))),
        Case("B=1, T=7, D=16", (randn(1, 7, 16, seed=25, scale=2.0), randn(1, 7, 16, seed=26, scale=2.0))),
    ]


def _future(T: int) -> torch.Tensor:
    return ~torch.ones(T, T, dtype=torch.bool).tril()                # True above the diagonal


def _w_no_softmax(q, k):
    return (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(_future(q.size(-2)), float("-inf"))


ATTENTION_WEIGHTS = Exercise(
    name="attention weights of one head",
    # manual_attention's weights, for one head (B, T, D) -> (B, T, T)
    reference=lambda q, k: manual_attention(q[:, None], k[:, None], k[:, None], return_weights=True)[1][:, 0],
    stored="ATTENTION_WEIGHTS",
    cases=_weights_cases,
    success="These are exactly the weights manual_attention computes: scaled, causal, rows summing to 1.",
    # a mistake without code is stored (its code, one switch away from the answer, is in grading/solutions.py)
    mistakes=[
        Mistake("attention_weights.no_scale",
                "the scores are sqrt(D) times too large, so the weights are too peaked: divide "
                "q @ k^T by sqrt(D) before the softmax."),
        Mistake("attention_weights.scale_by_d",
                "the scores are divided by D; the scale is 1/sqrt(D) (math.sqrt(D) or D ** 0.5)."),
        Mistake("attention_weights.future_filled_with_zero",
                "the future scores were set to 0, and e^0 = 1, so the future still gets weight: "
                "fill them with float('-inf')."),
        Mistake("attention_weights.mask_after_softmax",
                "the future is zeroed after the softmax, so the remaining weights no longer sum to 1: "
                "fill the future scores with -inf before the softmax."),
        Mistake("attention_weights.softmax_over_queries",
                "the softmax runs over the queries (dim=-2 or dim=1): each query's weights over the "
                "keys must sum to 1, so use softmax(dim=-1)."),
        Mistake("attention_weights.no_mask",
                "every position attends to later positions: the causal mask is missing "
                "(scores.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float('-inf')))."),
        Mistake("attention_weights.mask_upside_down",
                "the mask keeps the future and hides the past (triu instead of tril)."),
        Mistake("attention_weights.mask_hides_self",
                "the mask also hides the diagonal (tril(diagonal=-1), or triu() where triu(1) was "
                "meant): each position must see itself, and position 0, which sees nothing else, "
                "gets a row of -inf whose softmax is NaN. Hide only j > i: ~torch.tril(torch.ones(T, T, "
                "dtype=torch.bool))."),
        Mistake("attention_weights.keys_times_queries",
                "the scores are k @ q^T, so row t holds key t against every query: the score of "
                "query t for key s is q_t · k_s, i.e. q @ k.transpose(-2, -1)."),
        Mistake("attention_weights.no_softmax",
                "you returned the masked scores; the weights are their softmax over the keys.",
                _w_no_softmax),
    ],
)


def check_attention_weights(my_attention_weights) -> CheckResult:
    """Check `my_attention_weights(q, k) -> (B, T, T)` for q, k of shape (B, T, D)."""
    return ATTENTION_WEIGHTS.check(my_attention_weights)
