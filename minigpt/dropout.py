"""Dropout with a cheaper random mask on the CPU.

On a CPU, `torch.nn.functional.dropout` draws one Bernoulli sample per element, and in the
seed configuration that sampling is a fifth of a whole training step (it runs on the
attention matrix of every layer). Here the keep-mask comes from raw random integers instead:
one `random_()` call on an int64 fills four 16-bit lanes (four elements), and the low 15
bits of each lane are compared with round(p * 2^15). The drop probability is therefore p
rounded to a multiple of 2^-15 (0.1 -> 0.100006), the mask is still drawn from PyTorch's
seeded generator (so runs are reproducible and resumable), and the result is scaled by
1 / (1 - p) as usual.
On GPUs the built-in dropout is already fast and is used unchanged, and so it is under
`torch.compile`: the in-place `random_` draw splits a compiled graph at every dropout
(Dynamo cannot trace it), while the compiler draws F.dropout's mask inside its fused kernels.
A compiled run therefore draws other masks than an eager one (same rate, other random stream).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

_LEVELS = 1 << 15


def _random_lanes(n: int, device=None) -> torch.Tensor:
    """n independent uniform integers in [0, 2^15), as int16."""
    # an int64 draw costs about as much as an int32 one and carries 63 random bits: 4 lanes
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()
    return bits.view(torch.int16)[:n].bitwise_and_(_LEVELS - 1)


def keep_mask(shape, p: float, device=None, dtype=torch.bool) -> torch.Tensor:
    """Mask of `shape`, each entry 1 (True) with probability 1 - p (p to 2^-15), else 0.

    With a float `dtype` the comparison writes 0.0/1.0 directly (no bool tensor to convert).
    """
    n = math.prod(shape)
    lanes = _random_lanes(n, device)
    out = torch.empty(n, dtype=dtype, device=device)
    return torch.ge(lanes, round(p * _LEVELS), out=out).view(shape)


def scaled_keep_mask(shape, p: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """Float mask of `shape` holding 0 (dropped) or 1 / (1 - p) (kept)."""
    return keep_mask(shape, p, device, dtype).mul_(1.0 / (1.0 - p))


class _ScaleByMask(torch.autograd.Function):
    """x * mask, where mask holds 0 or 1/(1-p); the same mask scales the gradient."""

    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Drop-in for F.dropout: zero each entry with probability p, scale the rest by 1/(1-p)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or not 0.0 < p < 1.0 or torch.compiler.is_compiling():
        return F.dropout(x, p, training)
    # one float mask with the 1/(1-p) scale folded in: multiplying by a bool mask would
    # convert it to float again in every forward and backward product
    return _ScaleByMask.apply(x, scaled_keep_mask(x.shape, p, x.device, x.dtype))


class Dropout(nn.Dropout):
    """nn.Dropout with the fast CPU mask above (same `p`, same behaviour in eval mode)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
