"""Position encodings (chapter 5): the sinusoidal table and rotary embeddings (RoPE).

Learned positions are just an `nn.Embedding` (`MiniGPT.wpe`); this module holds the two
fixed encodings.

RoPE pair convention: this package rotates *interleaved* pairs (x[0], x[1]), (x[2], x[3]), ...
as in the original RoFormer paper and Meta's Llama code. Hugging Face's Llama/GPT-NeoX code
uses the *rotate-half* convention instead, pairing x[i] with x[i + D/2]. Both are correct
rotary embeddings; they differ by a fixed permutation of each head's channels, so their
outputs differ element by element while the attention scores they produce are the same once
q and k are permuted alike.
"""

from __future__ import annotations

import math
import numbers

import torch

from .errors import UsageError, is_whole_number


def _even_width(dim, what: str) -> None:
    """Both tables pair channels (sine with cosine, or the two halves of a rotation)."""
    if not is_whole_number(dim, 2) or dim % 2:
        raise UsageError(f"{what} must be an even whole number of channels (they are used in pairs), got {dim!r}.")


def _position_count(n_positions) -> None:
    """A table has one row per position, so its length is a count: 0, 1, 2, ..."""
    if not is_whole_number(n_positions, 0):
        raise UsageError(f"n_positions must be a whole number >= 0 (one table row per position), got {n_positions!r}.")


def sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """(n_positions, dim) fixed sine/cosine table of "Attention Is All You Need"."""
    _even_width(dim, "dim")
    _position_count(n_positions)
    position = torch.arange(n_positions, dtype=torch.float32)[:, None]          # (P, 1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_positions, dim)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table


def rope_cos_sin(n_positions: int, head_dim: int, base: float = 10000.0):
    """cos and sin tables, each (n_positions, head_dim / 2), for rotary embeddings."""
    _even_width(head_dim, "head_dim")
    _position_count(n_positions)
    # pair i turns by base**(-2i/D) radians per position, slower for each later pair; at base <= 1
    # none would be slower than the first (and at base <= 0 the powers are NaN)
    if isinstance(base, bool) or not isinstance(base, numbers.Real) or not 1 < base < math.inf:
        raise UsageError(f"base must be a number > 1 (it sets the slowest pair's turn; 10000 is usual, Llama 3 uses "
                         f"500000), got {base!r}.")
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.arange(n_positions, dtype=torch.float32)[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[2i], x[2i+1]) of x (B, H, T, D) by angle pos * theta_i.

    cos/sin are (T, D/2) for the positions of x. Rotations preserve length, and the dot
    product of two rotated vectors depends only on the difference of their positions.
    """
    # Treat each pair as a complex number x[2i] + i*x[2i+1]; rotating it by angle a is one
    # complex multiplication by cos(a) + i*sin(a). Same numbers as the four-product form
    # (x_even*cos - x_odd*sin, x_even*sin + x_odd*cos), in fewer, larger operations.
    T, D = x.shape[-2], x.shape[-1]
    if tuple(cos.shape) != (T, D // 2) or tuple(sin.shape) != (T, D // 2):
        raise UsageError(f"cos and sin must be (T, D/2) = ({T}, {D // 2}) for x of shape {tuple(x.shape)}, got "
                         f"{tuple(cos.shape)} and {tuple(sin.shape)}; slice the tables to x's positions "
                         f"(cos[:T]) and build them for head_dim {D}.")
    if x.device.type not in ("cpu", "cuda"):        # e.g. MPS, whose complex support varies
        x_even, x_odd = x[..., 0::2], x[..., 1::2]
        return torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), -1).flatten(-2)
    # complex numbers exist in float32 and float64 only: half-precision x (a model moved to
    # bfloat16 or float16, tables included) is rotated in float32 and cast back
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    pairs = torch.view_as_complex(x.to(work).reshape(*x.shape[:-1], -1, 2).contiguous())
    rotated = torch.view_as_real(pairs * torch.complex(cos.to(work), sin.to(work))).flatten(-2)
    return rotated.to(x.dtype)
