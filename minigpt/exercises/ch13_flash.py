"""Chapter 13 exercises: the online softmax and tiled (flash) attention, and their mistakes.

Rescaling bugs only show when a later chunk raises the running maximum, so every case is
built to make that happen (scores that grow along the row, or large random ones).
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from ..attention import flash_attention
from .core import Case, CheckResult, Exercise, Mistake, call_function


class _OpRecorder(TorchDispatchMode):
    """Records every aten operation a solution runs: its name, the sizes of its tensor inputs
    and the shape of its output. The two exercises ask for a *method* (one chunk, one tile at a
    time), and an answer that computes the right numbers another way (torch.softmax over the
    whole row, F.scaled_dot_product_attention, a full strip of scores) shows in these records."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[int], tuple]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sizes = [a.numel() for a in args if isinstance(a, torch.Tensor)]
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else ()
        self.calls.append((func.overloadpacket.__name__, sizes, shape))
        return out


# ------------------------------------------------------------ one row, chunk by chunk
# operations that, applied to all S scores at once, mean the row was not read chunk by chunk
_WHOLE_ROW_OPS = {"max", "amax", "_softmax", "_log_softmax", "logsumexp", "exp", "exp_"}


def _run_row(solution, case: Case):
    """Output 0: the weighted sum. Output 1: whether the row was read one chunk at a time,
    as asked (a max, exp or softmax over all S scores at once is the two-pass softmax)."""
    scores, _, chunk = case.args
    with _OpRecorder() as recorder:
        out = call_function(solution, case)
    S = scores.numel()
    whole = any(name in _WHOLE_ROW_OPS and sizes and sizes[0] >= S for name, sizes, _ in recorder.calls)
    if chunk < S and whole:
        return out, f"looks at all {S} scores at once (a max, exp or softmax over the whole row)"
    return out, "reads the row one chunk at a time"


def _no_max(scores, values, chunk):
    l, acc = scores.new_tensor(0.0), values.new_zeros(values.size(1))
    for s, v in zip(scores.split(chunk), values.split(chunk)):
        p = torch.exp(s)
        l, acc = l + p.sum(), acc + p @ v
    return acc / l


def _row_cases() -> list[Case]:
    g = torch.Generator().manual_seed(13)
    rising = torch.linspace(0, 12, 10) + 0.5 * torch.randn(10, generator=g)   # max rises chunk by chunk
    return [
        Case("10 scores that rise along the row, chunks of 4 (the last one shorter)",
             (rising, torch.randn(10, 3, generator=g), 4)),
        Case("large scores (up to ~300): exp would overflow without the max, chunks of 3",
             (100 * torch.randn(8, generator=g), torch.randn(8, 2, generator=g), 3)),
        Case("chunks of 1 (the classic one-pass online softmax)",
             (torch.linspace(-2, 5, 6), torch.randn(6, 4, generator=g), 1)),
        Case("a single key (S = 1): the output is its value", (torch.tensor([3.0]), torch.randn(1, 5, generator=g), 4)),
    ]


ONLINE_SOFTMAX = Exercise(
    name="online softmax (one row)",
    # no package function reads a row chunk by chunk: the outputs of grading/solutions.py's
    # are stored (torch.softmax(scores, 0) @ values gives the same numbers, all at once)
    reference=None,
    stored="ONLINE_SOFTMAX",
    cases=_row_cases,
    run=_run_row,
    success="The running max, normaliser and weighted sum are rescaled together whenever the max rises.",
    mistakes=[
        Mistake("online_softmax.whole_row_at_once",
                "the numbers are right, but the row was not read chunk by chunk: a max, exp or "
                "softmax over all the scores at once is the ordinary (two-pass) softmax. Keep a "
                "running max m, normaliser l and weighted sum acc, and update them from one chunk "
                "at a time.",
                lambda scores, values, chunk: torch.softmax(scores, dim=0) @ values),
        Mistake("online_softmax.max_not_rescaled",
                "each chunk was exponentiated against its own max and the sums were never "
                "rescaled: keep a running max m, and when a chunk raises it to m_new multiply "
                "both l and acc by exp(m - m_new) before adding the chunk."),
        Mistake("online_softmax.normaliser_not_rescaled",
                "acc is rescaled but the normaliser l is not: when the max rises, l must shrink by "
                "exp(m - m_new) too (l = l * exp(m - m_new) + p.sum())."),
        Mistake("online_softmax.acc_not_rescaled",
                "the normaliser l is rescaled but the weighted sum acc is not: acc = acc * "
                "exp(m - m_new) + p @ v."),
        Mistake("online_softmax.no_final_division",
                "the result was never divided by the normaliser: return acc / l."),
        Mistake("online_softmax.no_max",
                "exp(scores) overflowed to inf (NaN after the division): subtract the running max "
                "before exp, as torch.softmax does.",
                _no_max),
    ],
)


def check_online_softmax(my_attend) -> CheckResult:
    """Check `my_attend(scores, values, chunk)`: (S,), (S, D) -> (D,)."""
    return ONLINE_SOFTMAX.check(my_attend)


# --------------------------------------------------------------------- tiled attention
def _skipping_flops(q: torch.Tensor, block: int) -> int:
    """The matmul work of tiled attention that skips the key tiles after each query tile:
    two products (scores, then weights @ values) per computed tile, 2 flops per multiply-add."""
    B, H, T, D = q.shape
    pairs = sum(min(block, T - i) * min(block, T - j)
                for i in range(0, T, block) for j in range(0, min(i + block, T), block))
    return 2 * 2 * B * H * pairs * D


_PRODUCTS = {"mm", "bmm", "addmm", "baddbmm"}      # what q @ k.T and p @ v become in aten


def _run_tiled(solution, case: Case):
    """Output 0: the attention output. Output 1: how it was computed. Asked: one (block, block)
    score tile at a time, skipping the key tiles after each query tile. The matmul work
    (counted by torch's FlopCounterMode) tells skipping from visiting every key tile (about
    1.5x the work in the first two cases); the recorded products tell a tile from a strip of
    scores wider than one tile; a fused kernel does no matmul of its own at all."""
    q = case.args[0]
    block, D = case.kwargs["block"], q.size(-1)
    with FlopCounterMode(display=False) as counter, _OpRecorder() as recorder:
        out = call_function(solution, case)
    fused = sorted({name for name, _, _ in recorder.calls if "scaled_dot_product" in name})
    if fused:
        return out, f"calls a fused attention kernel ({', '.join(fused)}) instead of computing tiles"
    # scores are the products whose last dimension runs over keys (p @ v's runs over the D channels)
    widest = max((shape[-1] for name, _, shape in recorder.calls
                  if name in _PRODUCTS and shape and shape[-1] != D), default=0)
    if widest > block:
        return out, f"builds rows of {widest} scores at once, wider than one tile of {block} keys"
    if q.size(-2) == 1:
        # one query, one key: there is nothing to skip, and the work says nothing (p @ v contracts
        # over one key, which einsum computes as a product that FlopCounterMode does not count)
        return out, "skips the key tiles after each query tile"
    work = counter.get_total_flops() / _skipping_flops(q, block)
    if work < 0.75:
        return out, f"does {work:.2f}x the matmul work of the tiles: the scores are not tile products"
    if work <= 1.25:
        return out, "skips the key tiles after each query tile"
    return out, f"visits key tiles after the query tile too ({work:.2f}x the matmul work of skipping them)"


def _tiled_qkv(B: int, H: int, T: int, D: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return tuple(2 * torch.randn(B, H, T, D, generator=g) for _ in range(3))


def _tile_cases() -> list[Case]:
    return [
        Case("B=2, H=2, T=10, D=4, tiles of 4 (T not a multiple of the tile)",
             _tiled_qkv(2, 2, 10, 4, seed=1), {"block": 4}),
        Case("one head, T=9, tiles of 3", _tiled_qkv(1, 1, 9, 8, seed=2), {"block": 3}),
        Case("T=1 (a single query)", _tiled_qkv(1, 2, 1, 4, seed=3), {"block": 4}),
        Case("one tile larger than the sequence (T=5, tiles of 8)", _tiled_qkv(1, 2, 5, 4, seed=4), {"block": 8}),
    ]


TILED_ATTENTION = Exercise(
    name="tiled attention with an online softmax",
    # the package's flash attention with square tiles: manual_attention's output, and the work
    # of a tiling that skips the future key tiles (it stops at the diagonal, within a tile too)
    reference=lambda q, k, v, block: flash_attention(q, k, v, block_q=block, block_k=block),
    stored="TILED_ATTENTION",
    cases=_tile_cases,
    run=_run_tiled,
    success="Same output as manual_attention, one (block x block) score tile at a time.",
    mistakes=[
        Mistake("tiled_attention.fused_kernel",
                "the output is right, but F.scaled_dot_product_attention (or another fused kernel) "
                "computed it: the exercise is to write the tiles yourself, one (block, block) "
                "score tile and one online-softmax update at a time."),
        Mistake("tiled_attention.query_strips",
                "the output is right, but each query tile's scores against all its keys were built "
                "at once and put through an ordinary softmax: take the keys one (block, block) tile "
                "at a time and combine the tiles with the online softmax (running max m, "
                "normaliser l, weighted sum acc)."),
        Mistake("tiled_attention.max_not_rescaled",
                "the running sums were not rescaled when a key tile raised the row max: multiply "
                "l and acc by exp(m - m_new) before adding the new tile."),
        Mistake("tiled_attention.no_scale",
                "the scores are sqrt(D) times too large: divide each query tile (or its scores) by "
                "sqrt(D) before the exponentials."),
        Mistake("tiled_attention.acc_not_rescaled",
                "the normaliser l is rescaled but the weighted sum acc is not: when a tile raises the "
                "row max, acc = acc * exp(m - m_new) + p @ v_tile."),
        Mistake("tiled_attention.future_tiles_not_skipped",
                "the output is right, but the key loop visits every tile, also those that start "
                "after the query tile's last row, where the mask hides everything: the exercise "
                "asks you to skip them (range(0, min(i + block, T), block)), which is where tiling "
                "saves up to half the work of causal attention (a third in these cases)."),
        Mistake("tiled_attention.normaliser_not_rescaled",
                "acc is rescaled but the normaliser l is not: l = l * exp(m - m_new) + p.sum(-1)."),
        Mistake("tiled_attention.no_final_division",
                "the output was never divided by the normaliser: write acc / l for each query tile."),
        Mistake("tiled_attention.no_diagonal_mask",
                "future tiles are skipped, but inside the diagonal tile queries still see later "
                "keys: mask the scores where key position > query position."),
        Mistake("tiled_attention.no_mask_no_skip",
                "every query sees every key: skip the key tiles that start after the query tile "
                "and mask the diagonal tile (key position > query position)."),
        Mistake("tiled_attention.tile_local_mask",
                "the mask compares positions *within* the tile (0..block-1), so tiles below the "
                "diagonal are masked too: compare absolute positions, j + column vs i + row."),
        Mistake("tiled_attention.skips_diagonal_tile",
                "the key loop stops before the diagonal tile, so the first queries have no keys "
                "at all (0 / 0 = NaN): loop over key tiles up to the end of the query tile, "
                "range(0, min(i + block, T), block)."),
    ],
)


def check_tiled_attention(my_tiled_attention) -> CheckResult:
    """Check `my_tiled_attention(q, k, v, block)` against `minigpt.manual_attention` (the output)
    and `minigpt.flash_attention` (the work done)."""
    return TILED_ATTENTION.check(my_tiled_attention)

