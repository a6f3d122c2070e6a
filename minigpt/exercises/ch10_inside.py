"""Chapter 10 exercises: a block's attention maps rebuilt from its weights, and a head's score
on a chosen key offset (the previous character, or an induction target), and the mistakes
they invite."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import GPTConfig
from ..model import MiniGPT
from .core import Case, CheckResult, Exercise, Mistake


def _model(n_head: int, seed: int) -> MiniGPT:
    """A small seeded model with large weights, so that its heads are far from uniform."""
    torch.manual_seed(seed)
    model = MiniGPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=n_head, n_embd=16,
                              dropout=0.0))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5.0)
        for name, p in model.named_parameters():     # LayerNorm gains and biases away from 1 and 0,
            if ".ln_" in name:                       # so that forgetting ln_1 shows
                p.add_(torch.randn_like(p))
    return model.eval()


# ------------------------------------------------------------- a block's attention maps
@torch.no_grad()
def _reference_maps(block, x):
    return block.attn(block.ln_1(x), return_weights=True)[1]


def _map_cases() -> list[Case]:
    g = torch.Generator().manual_seed(3)
    two_heads, one_head = _model(2, seed=4), _model(1, seed=5)
    return [
        Case("block 0 of a 2-head model, x of shape (2, 6, 16)",
             (two_heads.blocks[0], 2.0 * torch.randn(2, 6, 16, generator=g))),
        Case("block 1 of the same model, x of shape (1, 9, 16)",
             (two_heads.blocks[1], 2.0 * torch.randn(1, 9, 16, generator=g))),
        Case("T = 1 (one position, which can only look at itself)",
             (two_heads.blocks[0], 2.0 * torch.randn(1, 1, 16, generator=g))),
        Case("one head (n_head = 1, head size 16), x of shape (1, 5, 16)",
             (one_head.blocks[0], 2.0 * torch.randn(1, 5, 16, generator=g))),
    ]


ATTENTION_MAPS = Exercise(
    name="a block's attention maps",
    reference=_reference_maps,
    stored="ATTENTION_MAPS",
    cases=_map_cases,
    success="Your maps are MiniGPT.attention_maps: ln_1, then q and k from c_attn, per head, scaled and masked.",
    mistakes=[
        Mistake("maps.no_ln_1",
                "the maps were computed from x itself: in a Pre-LN block attention reads "
                "block.ln_1(x), so apply ln_1 before c_attn."),
        Mistake("maps.no_scale",
                "the scores are sqrt(D) times too large: divide q @ k^T by sqrt(head size), "
                "with head size = n_embd / n_head, not n_embd."),
        Mistake("maps.heads_split_without_transpose",
                "the heads were split with view(B, H, T, D), which mixes positions and heads: "
                "view(B, T, H, D) first, then transpose(1, 2)."),
        Mistake("maps.keys_from_values",
                "the keys came from the third chunk of c_attn: its output is q, k, v in that "
                "order, so the keys are the *second* n_embd channels."),
        Mistake("maps.mask_after_softmax",
                "the future was hidden after the softmax, so the rows no longer sum to 1: fill "
                "the future scores with -inf before the softmax."),
        Mistake("maps.softmax_over_queries",
                "the softmax ran over dim=-2, the queries: each row (one query) must sum to 1 over "
                "the keys, so take softmax(dim=-1)."),
        Mistake("maps.mask_hides_self",
                "the mask also hides the diagonal (triu(0) instead of triu(1)): a query may look at "
                "its own position, and the first query, which sees nothing else, gets a row of "
                "-inf whose softmax is NaN."),
        Mistake("maps.no_mask",
                "positions attend to later positions: the causal mask is missing (fill the "
                "scores above the diagonal with -inf)."),
    ],
)


def check_attention_maps(my_maps) -> CheckResult:
    """Check `my_maps(block, x) -> (B, H, T, T)`, the attention weights of `block` (a Pre-LN
    `minigpt.Block`) for its input x (B, T, C), against `block.attn(..., return_weights=True)`."""
    return ATTENTION_MAPS.check(my_maps)


# ------------------------------------------------------- a head's score at a key offset
def _causal_maps(L, H, T, seed, sharp=3.0):
    g = torch.Generator().manual_seed(seed)
    scores = sharp * torch.randn(L, H, T, T, generator=g)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    return F.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


@torch.no_grad()
def _model_maps(text_len, seed):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 11, (1, text_len), generator=g)
    return _model(2, seed=6).attention_maps(idx)[:, 0]               # (L, H, T, T)


def _offset_cases() -> list[Case]:
    return [
        Case("a model's maps (2 layers, 2 heads, T = 14), offset 1 (previous character), first_row 8",
             (_model_maps(14, seed=7), 1, 8)),
        Case("random causal maps (3 layers, 4 heads, T = 12), offset 3 (an induction target), "
             "first_row 5", (_causal_maps(3, 4, 12, seed=8), 3, 5)),
        Case("one layer, one head, T = 2: a single query row (first_row 1), offset 1",
             (_causal_maps(1, 1, 2, seed=9), 1, 1)),
        Case("offset 0 (each query's weight on itself), T = 6, first_row 2",
             (_causal_maps(2, 3, 6, seed=10), 0, 2)),
    ]


OFFSET_SCORE = Exercise(
    name="a head's score at a key offset",
    reference=None,                 # no package function: stored outputs (grading/solutions.py)
    stored="OFFSET_SCORE",
    cases=_offset_cases,
    success="Row i of a map is query i; its weight on key i - offset sits offset places left of the diagonal.",
    mistakes=[
        Mistake("offset_score.rows_and_columns_swapped",
                "you read entries above the diagonal (a key after its query: row i - offset and "
                "column i, or row i and column i + offset, as diagonal(offset) with a positive "
                "offset does), where the causal mask leaves 0. Rows are queries and columns keys: "
                "query i's weight on key i - offset is maps[..., i, i - offset], below the diagonal."),
        Mistake("offset_score.one_key_too_near",
                "the key is one position too close (i - offset + 1): for the previous character "
                "(offset 1) that is the query's weight on itself, the diagonal."),
        Mistake("offset_score.one_key_too_far",
                "the key is one position too far back (i - offset - 1): for offset 1 that is "
                "two characters back."),
        Mistake("offset_score.all_rows",
                "the average included the first rows: average over queries i = first_row .. T - 1 "
                "only (the first rows have so few keys that any head looks focused there)."),
        Mistake("offset_score.ignores_first_row",
                "first_row was ignored: the average ran over every query that has a key offset "
                "places back (i >= offset); average over i = first_row .. T - 1 only, as asked "
                "(the first rows have so few keys that any head looks focused there)."),
        Mistake("offset_score.sum_not_mean",
                "the weights were summed over the query rows: the score is their mean, a number "
                "between 0 and 1 comparable with the uniform baseline."),
    ],
)


def check_offset_scores(my_scores) -> CheckResult:
    """Check `my_scores(maps, offset, first_row) -> (L, H)` (maps (L, H, T, T); the mean weight on
    key i - offset over query rows i >= first_row)."""
    return OFFSET_SCORE.check(my_scores)
