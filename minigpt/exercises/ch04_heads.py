"""Chapter 4 exercises: split the channels into heads, merge them back, and a whole
multi-head attention module, with the reshape and transpose mistakes they invite."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..attention import CausalSelfAttention
from ..config import GPTConfig
from ..language import tr
from .core import Case, CheckResult, Exercise, Mistake, randn


# ------------------------------------------------------------------------ split heads
def _split_cases() -> list[Case]:
    # T, H and D all differ in the first case, so every wrong reshape gives a different tensor.
    return [
        Case("B=2, T=6, C=12, 3 heads of D=4", (randn(2, 6, 12, seed=41), 3)),
        Case("one head (H=1, D=C=8)", (randn(2, 5, 8, seed=42), 1)),
        Case("T=1 (one position), 2 heads", (randn(1, 1, 8, seed=43), 2)),
    ]


def _split_reshape_no_transpose(t, n_head):
    B, T, C = t.shape
    return t.reshape(B, n_head, T, C // n_head)


def _split_no_transpose(t, n_head):
    B, T, C = t.shape
    return t.view(B, T, n_head, C // n_head)


def _split_interleaved(t, n_head):
    B, T, C = t.shape
    return t.view(B, T, C // n_head, n_head).permute(0, 3, 1, 2)


def _split_h_and_d_swapped(t, n_head):
    B, T, C = t.shape
    return t.view(B, T, C // n_head, n_head).transpose(1, 2)


SPLIT_HEADS = Exercise(
    name="split heads",
    reference=None,                 # the package splits inside CausalSelfAttention: stored outputs
    stored="SPLIT_HEADS",
    cases=_split_cases,
    success="Head h holds channels h*D .. (h+1)*D - 1 of every position, in order.",
    mistakes=[
        Mistake("split_heads.reshape_without_transpose",
                "t.reshape(B, H, T, D) has the right shape but reads the memory in (T, C) order, so "
                "'position' 1 of head 0 holds channels D..2D-1 of position 0, and head 1 starts with "
                "positions T/H and later: the causal mask then lets early positions see later ones. "
                "Use t.view(B, T, H, D).transpose(1, 2).",
                _split_reshape_no_transpose),
        Mistake("split_heads.no_transpose",
                "the result is (B, T, H, D): view(B, T, H, D) is the first step, then move the head "
                "axis forward with .transpose(1, 2) to get (B, H, T, D).",
                _split_no_transpose),
        Mistake("split_heads.channels_interleaved",
                "head h got channels h, h+H, h+2H, ... (view(B, T, D, H)); each head owns a "
                "contiguous block of D channels: view(B, T, H, D).",
                _split_interleaved),
        Mistake("split_heads.h_and_d_swapped",
                "the head count and the head size are swapped (view(B, T, D, H)): there are H heads "
                "of D = C // H channels each.",
                _split_h_and_d_swapped),
    ],
)


def check_split_heads(my_split_heads) -> CheckResult:
    """Check `my_split_heads(t, n_head)`: (B, T, C) -> (B, H, T, D)."""
    return SPLIT_HEADS.check(my_split_heads)


# ------------------------------------------------------------------------ merge heads
def _merge_cases() -> list[Case]:
    return [
        Case("B=2, 3 heads, T=6, D=4", (randn(2, 3, 6, 4, seed=51),)),
        Case("one head (H=1)", (randn(2, 1, 5, 8, seed=52),)),
        Case("T=1 (one position), 2 heads", (randn(1, 2, 1, 4, seed=53),)),
    ]


def _merge_no_transpose(y):
    B, H, T, D = y.shape
    return y.reshape(B, T, H * D)


def _merge_interleaved(y):
    B, H, T, D = y.shape
    return y.permute(0, 2, 3, 1).reshape(B, T, H * D)


def _merge_sum(y):
    return y.sum(dim=1)


MERGE_HEADS = Exercise(
    name="merge heads",
    reference=None,                 # the package merges inside CausalSelfAttention: stored outputs
    stored="MERGE_HEADS",
    cases=_merge_cases,
    success="Position t's channels are head 0's D outputs, then head 1's, ... as in the split.",
    mistakes=[
        Mistake("merge_heads.without_transpose",
                "y.view(B, T, C) (or reshape) without the transpose reads the (B, H, T, D) memory "
                "in order, so position 0's channels are filled with head 0's outputs for positions "
                "0, 1, ...: positions get mixed, silently. Use y.transpose(1, 2).contiguous().view(B, T, C).",
                _merge_no_transpose),
        Mistake("merge_heads.channels_interleaved",
                "the channels came out interleaved (channel d*H + h); merging must undo the split, "
                "so head h goes back to channels h*D .. (h+1)*D - 1: transpose(1, 2), then view.",
                _merge_interleaved),
        Mistake("merge_heads.summed",
                "the heads were summed into D channels; merging concatenates them side by side into "
                "C = H * D channels (c_proj mixes them afterwards).",
                _merge_sum),
    ],
)


def check_merge_heads(my_merge_heads) -> CheckResult:
    """Check `my_merge_heads(y)`: (B, H, T, D) -> (B, T, C)."""
    return MERGE_HEADS.check(my_merge_heads)


# ------------------------------------------------------------ a multi-head attention module
class _PackageMultiHeadAttention(CausalSelfAttention):
    """`CausalSelfAttention` built from (n_embd, n_head), the constructor the exercise asks for."""

    def __init__(self, n_embd: int, n_head: int):
        super().__init__(GPTConfig(vocab_size=1, block_size=64, n_embd=n_embd, n_head=n_head,
                                   n_layer=1, dropout=0.0, attn_impl="manual"))

    def forward(self, x):
        return super().forward(x)


def _mha_cases() -> list[Case]:
    return [
        Case("B=2, T=6, C=12, 3 heads", (randn(2, 6, 12, seed=61), 3)),
        Case("one head (H=1), T=5, C=8", (randn(2, 5, 8, seed=62), 1)),
        Case("T=1 (one position), 2 heads, C=8", (randn(1, 1, 8, seed=63), 2)),
    ]


def _run_module(solution, case: Case):
    """Build the student's module, give it the same seeded weights as the package's, run it."""
    x, n_head = case.args
    C = x.size(-1)
    g = torch.Generator().manual_seed(1000 + C + n_head)
    # weights of size ~0.3 make the scores large enough that the scale and mask show
    weights = {"c_attn.weight": 0.3 * torch.randn(3 * C, C, generator=g),
               "c_attn.bias": 0.1 * torch.randn(3 * C, generator=g),
               "c_proj.weight": 0.3 * torch.randn(C, C, generator=g),
               "c_proj.bias": 0.1 * torch.randn(C, generator=g)}
    module = solution(C, n_head)
    for name in ("c_attn", "c_proj"):
        layer = getattr(module, name, None)
        if not isinstance(layer, nn.Linear):
            raise AttributeError(tr("the module needs a layer self.{name} = nn.Linear(...), "
                                    "as in the text (GPT-2's parameter names)", name=name))
        layer.load_state_dict({"weight": weights[f"{name}.weight"], "bias": weights[f"{name}.bias"]})
    module.eval()
    with torch.no_grad():
        return module(x.clone())


MULTI_HEAD_ATTENTION = Exercise(
    name="multi-head attention module",
    reference=_PackageMultiHeadAttention,
    stored="MULTI_HEAD_ATTENTION",
    cases=_mha_cases,
    run=_run_module,
    success="Your module computes what minigpt.CausalSelfAttention computes, with the same weights.",
    # stored: each mistake's code is the whole module with one step wrong (grading/solutions.py)
    mistakes=[
        Mistake("multi_head_attention.split_without_transpose",
                "the heads were split with reshape(B, H, T, D) instead of view(B, T, H, D).transpose(1, 2): "
                "the shapes fit, but each head's 'positions' are slices of other positions, so the "
                "causal mask no longer protects the future."),
        Mistake("multi_head_attention.merge_without_transpose",
                "the heads were merged with view(B, T, C) without transpose(1, 2) first, which mixes "
                "positions: use out.transpose(1, 2).contiguous().view(B, T, C)."),
        Mistake("multi_head_attention.softmax_over_queries",
                "the softmax runs over the queries (dim=-2): each query's weights over the keys must "
                "sum to 1, so use softmax(dim=-1)."),
        Mistake("multi_head_attention.scale_by_sqrt_c",
                "the scores are divided by sqrt(C), the full width; each head's dot product has "
                "D = C // H terms, so divide by sqrt(D)."),
        Mistake("multi_head_attention.no_scale",
                "the scores are sqrt(D) times too large: divide q @ k^T by sqrt(D)."),
        Mistake("multi_head_attention.no_mask",
                "positions attend to later positions: apply the causal mask (or call "
                "minigpt.manual_attention, which does)."),
        Mistake("multi_head_attention.mask_after_softmax",
                "the future is hidden after the softmax, so the kept weights no longer sum to 1: "
                "fill the future scores with -inf before the softmax."),
        Mistake("multi_head_attention.mask_off_by_one",
                "each position also sees the next one: the mask is off by one (tril(diagonal=1)); "
                "position t may see 0..t, so keep torch.tril(torch.ones(T, T))."),
        Mistake("multi_head_attention.softmax_over_heads",
                "the softmax runs over dim=1, which in (B, H, T, T) scores is the heads: use "
                "softmax(dim=-1), over the keys."),
        Mistake("multi_head_attention.q_and_k_swapped",
                "the first two chunks of c_attn were read as k, q: c_attn's output is q, k, v in "
                "that order (q, k, v = self.c_attn(x).split(C, dim=2)), the order GPT-2's weights use."),
        Mistake("multi_head_attention.k_and_v_swapped",
                "the last two chunks of c_attn were read as v, k: c_attn's output is q, k, v in "
                "that order (q, k, v = self.c_attn(x).split(C, dim=2))."),
        Mistake("multi_head_attention.no_projection",
                "the merged heads are returned without self.c_proj: the last step mixes the heads' "
                "outputs with c_proj."),
    ],
)


def check_multi_head_attention(MyMultiHeadAttention) -> CheckResult:
    """Check a module class built as `MyMultiHeadAttention(n_embd, n_head)`, with layers
    `c_attn` (C -> 3C) and `c_proj` (C -> C), whose forward maps (B, T, C) -> (B, T, C)."""
    return MULTI_HEAD_ATTENTION.check(MyMultiHeadAttention)
