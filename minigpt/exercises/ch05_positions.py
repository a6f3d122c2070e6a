"""Chapter 5 exercises: the sinusoidal table and RoPE attention, and the mistakes they invite."""

from __future__ import annotations

from ..attention import manual_attention
from ..positions import apply_rope, rope_cos_sin, sinusoidal_table
from .core import Case, CheckResult, Exercise, Mistake, qkv


# ------------------------------------------------------------------ the sinusoidal table
def _table_cases() -> list[Case]:
    return [
        Case("64 positions, dim = 32", (64, 32)),
        Case("a single position (position 0 only)", (1, 8)),
        Case("dim = 2 (one sine/cosine pair)", (10, 2)),
        Case("200 positions, dim = 16", (200, 16)),
    ]


SINUSOIDAL = Exercise(
    name="sinusoidal position table",
    reference=sinusoidal_table,
    stored="SINUSOIDAL",
    cases=_table_cases,
    success="Each position has its own fingerprint, and any position can be computed.",
    # stored: each mistake's code is the table with one switch flipped (grading/solutions.py)
    mistakes=[
        Mistake("sinusoidal.sin_cos_swapped",
                "sine and cosine are swapped: even channels 0, 2, 4, ... hold sin(pos * omega_i), "
                "odd channels hold cos."),
        Mistake("sinusoidal.exponent_i_over_dim",
                "the frequencies fall too slowly: omega_i = 10000 ** (-2i / dim) for pair i "
                "(channels 2i and 2i+1); with arange(0, dim, 2) the 2 is already in the numbers."),
        Mistake("sinusoidal.halves_not_interleaved",
                "the sines fill the first half and the cosines the second (torch.cat); the table "
                "interleaves them: table[:, 0::2] = sin, table[:, 1::2] = cos."),
        Mistake("sinusoidal.positions_start_at_1",
                "positions start at 1; the first row is position 0 (all sines 0, all cosines 1): "
                "use torch.arange(n_positions)."),
    ],
)


def check_sinusoidal(my_sinusoidal) -> CheckResult:
    """Check `my_sinusoidal(n_positions, dim) -> (n_positions, dim)` against `minigpt.sinusoidal_table`."""
    return SINUSOIDAL.check(my_sinusoidal)


# ------------------------------------------------------------------------- RoPE attention
def _reference_rope(x):
    cos, sin = rope_cos_sin(x.size(-2), x.size(-1))
    return apply_rope(x, cos, sin)


def _rope_attention(q, k, v, rotate_q=True, rotate_k=True, rotate_v=False, rope=None):
    rope = rope or _reference_rope
    q = rope(q) if rotate_q else q
    k = rope(k) if rotate_k else k
    v = rope(v) if rotate_v else v
    return manual_attention(q, k, v)


def _rope_cases() -> list[Case]:
    # T = 1 is position 0, where every rotation is the identity: only an offset shows there.
    return [
        Case("x of shape (B, H, T, D) = (2, 3, 6, 8)", (qkv(2, 3, 6, 8, seed=1)[0],)),
        Case("T = 1 (position 0 only: no rotation at all)", (qkv(1, 2, 1, 8, seed=2)[0],)),
        Case("one head, T = 40, D = 16 (the slow pairs turn too)", (qkv(1, 1, 40, 16, seed=3)[0],)),
    ]


ROPE = Exercise(
    name="RoPE",
    reference=_reference_rope,
    stored="ROPE",
    cases=_rope_cases,
    success="Each pair (x[2i], x[2i+1]) at position m is turned by m * theta_i, as minigpt.apply_rope does.",
    mistakes=[
        Mistake("rope.positions_start_at_1",
                "RoPE positions start at 1, not 0: the first token must not be rotated "
                "(angles = torch.arange(T)[:, None] * theta)."),
        Mistake("rope.rotate_half_convention",
                "you paired channel i with channel i + D/2 (the 'rotate-half' convention of "
                "Hugging Face's Llama code). That is a correct RoPE too, but this book pairs "
                "neighbours (x[2i], x[2i+1]) as the RoFormer paper does; the two differ by a fixed "
                "permutation of channels, so the outputs differ element by element. Rotate "
                "x[..., 0::2] and x[..., 1::2] together."),
        Mistake("rope.exponent_i_over_d",
                "the frequencies fall too slowly: theta_i = 10000 ** (-2i / D) for pair i "
                "(torch.arange(0, D, 2) / D already holds the 2i)."),
        Mistake("rope.positive_exponent",
                "the frequencies grow instead of falling: theta_i = 10000 ** (-2i / D), with a minus "
                "sign (1 / base ** (...))."),
        Mistake("rope.wrong_base",
                "the frequency base is not 10000: theta_i = 10000 ** (-2i / D)."),
        Mistake("rope.rotates_backwards",
                "each pair is turned by minus the angle: the new pair is "
                "(x0 cos - x1 sin, x0 sin + x1 cos)."),
        Mistake("rope.halves_not_interleaved",
                "the pairs are rotated right, but the results were concatenated (torch.cat: every "
                "pair's first member, then every second member) instead of put back in their "
                "places: stack the two results on a new last axis and flatten, so that channels 2i "
                "and 2i+1 hold pair i again."),
        Mistake("rope.sign_slip",
                "a sign slipped: the first member of a pair is x0 cos - x1 sin (minus), the second "
                "x0 sin + x1 cos. With a plus in both, the map is not a rotation and lengths change."),
        Mistake("rope.no_rotation",
                "nothing is rotated: the output equals the input.",
                lambda x: x.clone()),
    ],
)


def check_rope(my_rope) -> CheckResult:
    """Check `my_rope(x) -> (B, H, T, D)`, RoPE at positions 0..T-1, against `minigpt.apply_rope`."""
    return ROPE.check(my_rope)


def _rope_attention_cases() -> list[Case]:
    return [
        Case("B=2, H=3, T=6, D=8", qkv(2, 3, 6, 8, seed=1)),
        Case("T=1 (a single query, at position 0)", qkv(1, 2, 1, 8, seed=2)),
        Case("one head, T=40, D=16", qkv(1, 1, 40, 16, seed=3)),
    ]


ROPE_ATTENTION = Exercise(
    name="RoPE attention",
    reference=lambda q, k, v: _rope_attention(q, k, v),
    stored="ROPE_ATTENTION",
    cases=_rope_attention_cases,
    success=("Queries and keys are rotated by their positions, values are not: the scores now "
             "depend on relative positions."),
    mistakes=[
        Mistake("rope_attention.rotates_values",
                "the values are rotated too: RoPE rotates only q and k, because position should "
                "decide who attends to whom, not change what is passed along.",
                lambda q, k, v: _rope_attention(q, k, v, rotate_v=True)),
        Mistake("rope_attention.only_queries",
                "only the queries are rotated: rotate the keys by their positions as well, or the "
                "score depends on the query's absolute position instead of the distance m - n.",
                lambda q, k, v: _rope_attention(q, k, v, rotate_k=False)),
        Mistake("rope_attention.only_keys",
                "only the keys are rotated: rotate the queries by their positions as well.",
                lambda q, k, v: _rope_attention(q, k, v, rotate_q=False)),
        Mistake("rope_attention.rotate_half_convention",
                "you paired channel i with channel i + D/2 (the 'rotate-half' convention of Hugging "
                "Face's Llama code), which the chapter warns about: it is a correct RoPE too, but "
                "this book pairs neighbours (x[2i], x[2i+1]), and the two give different scores "
                "for the same weights. Rotate x[..., 0::2] and x[..., 1::2] together."),
        Mistake("rope_attention.sign_slip",
                "a sign slipped in the rotation: the first member of a pair is x0 cos - x1 sin "
                "(minus), the second x0 sin + x1 cos; with a plus in both, q and k are not rotated "
                "and the scores no longer depend on the distance alone."),
        Mistake("rope_attention.rotates_backwards",
                "q and k are turned by minus their angles: the new pair is "
                "(x0 cos - x1 sin, x0 sin + x1 cos), as in minigpt.apply_rope."),
        Mistake("rope_attention.no_rotation",
                "nothing is rotated: apply RoPE to q and k before the attention scores.",
                lambda q, k, v: manual_attention(q, k, v)),
    ],
)


def check_rope_attention(my_rope_attention) -> CheckResult:
    """Check `my_rope_attention(q, k, v) -> (B, H, T, D)`: RoPE on q and k (positions 0..T-1),
    then causal attention, against `minigpt.apply_rope` + `minigpt.manual_attention`."""
    return ROPE_ATTENTION.check(my_rope_attention)
