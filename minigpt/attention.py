"""Causal self-attention, three ways, plus the pieces the later chapters add to it.

Shapes: B batch, T query positions, S key positions (S = T without a cache),
H query heads, Hkv key/value heads, D head size, C = H * D model width.

* `manual_attention`: the textbook formula with an explicit (T, S) mask. It can also
  return the attention weights, which is what the heatmaps need.
* `torch.nn.functional.scaled_dot_product_attention` ("sdpa"): PyTorch's fused kernel.
* `flash_attention`: tiles over keys with an online softmax, so it never holds the
  (T, S) score matrix; written in plain PyTorch for teaching, not for speed.
* `dropout_attention`: `manual_attention` with dropout and a hand-written backward pass,
  for training on a CPU, where SDPA has no fused kernel that does dropout.

Positions (learned, sinusoidal, RoPE) live in `positions.py`, the KV cache in `kv_cache.py`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ATTN_IMPLS, ConfigError, GPTConfig
from .kv_cache import KVCache
from .positions import apply_rope
from .device import as_device
from .dropout import Dropout, dropout, keep_mask
from .errors import ModelInputError, UsageError, is_whole_number


# ---------------------------------------------------------------------------- masks
def causal_mask(T: int, S: Optional[int] = None, device=None) -> torch.Tensor:
    """(T, S) boolean mask, True where query i may look at key j.

    Queries are the last T of the S positions, so query i sits at position S - T + i
    and may see keys 0 .. S - T + i.
    """
    S = T if S is None else S
    # Under torch.compile with dynamic shapes T and S are symbolic (SymInt, not int): the
    # check runs on plain ints only, so it never adds a guard or a graph break.
    if isinstance(device, str):        # a name ("cuda:0"); the model passes torch.devices
        device = as_device(device, "causal_mask")
    if type(T) is int and type(S) is int and not 0 <= T <= S:
        raise UsageError(f"causal_mask needs 0 <= T <= S (the T queries are the last T of S positions), "
                         f"got T={T}, S={S}; pass S >= T, or leave S out for T x T.")
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


# --------------------------------------------------------------- three attentions
def _check_qkv(q, k, v, dropout_p, who: str):
    """One-line errors for the attention functions a reader calls by hand (chapters 2, 12, 13):
    torch would otherwise fail inside a matmul ("size of tensor a (4) must match ..."), or
    flash_attention would return NaN rows for more queries than keys. Skipped while compiling:
    the model's own calls are right by construction, and checks on symbolic sizes add guards.
    k and v may broadcast over q's batch and heads (a batch or a head of 1: multi-query).
    Returns dropout_p as a Python float (a numpy float or a one-element tensor is taken too)."""
    if torch.compiler.is_compiling():
        return dropout_p
    if not all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in (q, k, v)):
        got = ", ".join(str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__ for t in (q, k, v))
        raise ModelInputError(f"{who} takes q, k, v of shape (B, H, T, D), got {got}; one head (B, T, D) "
                              "becomes H = 1 with t[:, None].")
    (B, H, T, D), (S, Hkv) = q.shape, (k.size(2), k.size(1))
    if k.shape[:3] != v.shape[:3] or k.size(0) not in (1, B) or k.size(-1) != D:
        raise ModelInputError(f"{who}: k and v must be (B, H, S, D) with q's B = {B} and D = {D}, got q "
                              f"{tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}.")
    if Hkv not in (1, H):
        fix = (f"repeat each key/value head {H // Hkv} times first (repeat_kv, chapter 12)"
               if H % Hkv == 0 else "give k and v as many heads as q")
        raise ModelInputError(f"{who}: q has {H} heads but k and v have {Hkv}; {fix}.")
    if T > S:
        raise ModelInputError(f"{who}: q has T = {T} positions but k and v only S = {S}; the queries are the last "
                              "T of the S positions, so T <= S.")
    try:                                # a float, a numpy float or a one-element tensor
        p = None if isinstance(dropout_p, (bool, str, bytes)) else float(dropout_p)
    except (TypeError, ValueError, RuntimeError):
        p = None
    if p is None or not 0 <= p < 1:
        raise UsageError(f"{who}: dropout_p must be a number in [0, 1), got {dropout_p!r}.")
    return p


def manual_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     dropout_p: float = 0.0, training: bool = False,
                     return_weights: bool = False, *, check: bool = True):
    """softmax(q k^T / sqrt(D) + mask) v.   q (B, H, T, D), k/v (B, H, S, D) -> (B, H, T, D).

    `check=False` skips the argument checks (CausalSelfAttention's own calls, once per layer
    and generated token, whose shapes are right by construction)."""
    if check:
        dropout_p = _check_qkv(q, k, v, dropout_p, "manual_attention")
    T, S, D = q.size(-2), k.size(-2), q.size(-1)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))        # (B, H, T, S)
    scores = scores.masked_fill(~causal_mask(T, S, q.device), float("-inf"))
    weights = F.softmax(scores, dim=-1)                                # rows sum to 1
    dropped = dropout(weights, dropout_p, training)
    y = dropped @ v                                                    # (B, H, T, D)
    return (y, weights) if return_weights else y


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    dropout_p: float = 0.0, training: bool = False,
                    block_q: int = 128, block_k: int = 128, *, check: bool = True) -> torch.Tensor:
    """Causal attention by tiles with an online softmax (FlashAttention's algorithm).

    For each tile of queries we walk over tiles of keys, keeping per query row a running
    max `m`, a running normaliser `l` and an un-normalised output `acc`. When a new tile
    raises the max, the old sums are rescaled by exp(m_old - m_new). Peak extra memory is
    one (block_q, block_k) tile per head instead of the whole (T, S) score matrix. Key tiles
    entirely in a query tile's future are skipped. `check=False`: as in manual_attention.
    """
    if check:
        dropout_p = _check_qkv(q, k, v, dropout_p, "flash_attention")
        for name, size in (("block_q", block_q), ("block_k", block_k)):
            if not is_whole_number(size, 1):
                raise UsageError(f"flash_attention: {name} is a tile length, a whole number >= 1, got {size!r}.")
    B, H, T, D = q.shape
    S = k.size(-2)
    offset = S - T                      # absolute position of query 0
    scale = 1.0 / math.sqrt(D)
    out = torch.empty_like(q)
    for q0 in range(0, T, block_q):
        q1 = min(q0 + block_q, T)
        q_tile = q[:, :, q0:q1] * scale                                   # (B, H, tq, D)
        m = q.new_full((B, H, q1 - q0, 1), float("-inf"))
        l = q.new_zeros((B, H, q1 - q0, 1))
        acc = q.new_zeros((B, H, q1 - q0, D))
        last_key = offset + q1                # keys at positions >= last_key are all future
        for k0 in range(0, last_key, block_k):
            k1 = min(k0 + block_k, last_key)
            s = q_tile @ k[:, :, k0:k1].transpose(-2, -1)                 # (B, H, tq, tk)
            if k1 > offset + q0:              # this tile crosses the diagonal: mask it
                qpos = torch.arange(offset + q0, offset + q1, device=q.device)[:, None]
                kpos = torch.arange(k0, k1, device=q.device)[None, :]
                s = s.masked_fill(kpos > qpos, float("-inf"))
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
            p = torch.exp(s - m_new)                                      # un-normalised probs
            correction = torch.exp(m - m_new)                             # rescale old sums
            l = l * correction + p.sum(dim=-1, keepdim=True)
            # dropping entries of p before the V product equals dropping normalised weights
            p = dropout(p, dropout_p, training)
            acc = acc * correction + p @ v[:, :, k0:k1]
            m = m_new
        out[:, :, q0:q1] = acc / l
    return out


class _DroppedCausalAttention(torch.autograd.Function):
    """`manual_attention` with dropout, forward and backward written out for the CPU.

    Same maths, fewer passes over the (B*H, T, S) score-sized tensors, which on a CPU cost
    about as much as the attention matmuls themselves:
    * the causal mask is added as a 0/-inf bias inside the q k^T matmul (`baddbmm`, which
      also applies the 1/sqrt(D) scale): no separate scale or masked_fill, and nothing to
      undo in the backward pass (masked weights are 0, so their gradient is 0);
    * the dropout mask is 0/1 and its 1/(1-p) scale is applied to the (B*H, T, D) output
      and gradient, which are S/D times smaller than the weights.
    Computing only the blocks below the diagonal was tried too: the smaller, strided
    matmuls ate the saving on a 2-core CPU.
    Inputs q (B*H, T, D), k/v (B*H, S, D), keep (B*H, T, S) of 0.0/1.0.
    """

    @staticmethod
    def forward(ctx, q, k, v, keep, scale, keep_scale):
        T, S = q.size(1), k.size(1)
        bias = torch.zeros(T, S, dtype=q.dtype, device=q.device).masked_fill_(
            ~causal_mask(T, S, q.device), float("-inf"))                     # (T, S)
        scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=scale)     # (BH, T, S)
        weights = torch.softmax(scores, dim=-1)
        kept = weights * keep                                               # dropout, unscaled
        y = torch.bmm(kept, v).mul_(keep_scale)                             # (BH, T, D)
        ctx.scale, ctx.keep_scale = scale, keep_scale
        ctx.save_for_backward(q, k, v, weights, kept, y)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        q, k, v, weights, kept, y = ctx.saved_tensors
        grad_kept_y = grad_y * ctx.keep_scale                               # (BH, T, D)
        grad_v = torch.bmm(kept.transpose(1, 2), grad_kept_y)               # (BH, S, D)
        # d loss / d kept = keep_scale * grad_y v^T, and through the dropout and the softmax
        #   grad_scores = kept * G - weights * rowsum(kept * G),   G = keep_scale * grad_y v^T
        # where rowsum(kept * G) = rowsum(grad_y * y): a sum over D, not over S (the same
        # shortcut FlashAttention's backward uses), so the mask itself is not needed here.
        grad_scores = torch.bmm(grad_kept_y, v.transpose(1, 2)).mul_(kept)  # (BH, T, S)
        row_dot = (grad_y * y).sum(dim=-1, keepdim=True)                   # (BH, T, 1)
        grad_scores.addcmul_(weights, row_dot, value=-1.0)
        grad_q = torch.bmm(grad_scores, k).mul_(ctx.scale)                   # (BH, T, D)
        grad_k = torch.bmm(grad_scores.transpose(1, 2), q).mul_(ctx.scale)   # (BH, S, D)
        return grad_q, grad_k, grad_v, None, None, None


def dropout_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float) -> torch.Tensor:
    """Causal attention with dropout on the weights, for training on a CPU.

    Equal to `manual_attention(q, k, v, dropout_p, training=True)` given the same random
    state (it draws the same mask). q (B, H, T, D), k/v (B, H, S, D) -> (B, H, T, D).
    """
    B, H, T, D = q.shape
    S = k.size(2)
    keep = keep_mask((B * H, T, S), dropout_p, q.device, q.dtype)
    y = _DroppedCausalAttention.apply(q.reshape(B * H, T, D), k.reshape(B * H, S, D),
                                      v.reshape(B * H, S, D), keep, 1.0 / math.sqrt(D),
                                      1.0 / (1.0 - dropout_p))
    return y.view(B, H, T, D)


# --------------------------------------------------------------------- the module
def check_width(x: torch.Tensor, n_embd: int, layer: str) -> None:
    """A one-line ModelInputError unless x is (B, T, n_embd): calling a layer by hand with the
    wrong width would otherwise fail inside a matmul or LayerNorm, several frames down."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.size(-1) != n_embd:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        hint = "; one sequence (T, C) becomes a batch of one with x[None]" if getattr(x, "dim", int)() == 2 else ""
        raise ModelInputError(f"{layer} takes x of shape (B, T, C) with C = n_embd = {n_embd}, got {got}{hint}.")


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with optional grouped-query heads and RoPE.

    Parameter names follow GPT-2: `c_attn` projects x to queries, keys and values in one
    matmul, `c_proj` mixes the heads back into the residual stream.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = int(config.n_kv_head)     # a plain int for torch.compile (see config._SameAsNHead)
        self.head_dim = config.head_dim
        self.attn_impl = config.attn_impl
        self.use_rope = config.pos_encoding == "rope"
        self.dropout = config.dropout
        self.kv_width = self.n_kv_head * self.head_dim
        # q: C channels, k and v: kv_width each (= C for plain multi-head attention)
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * self.kv_width, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = Dropout(config.dropout)

    def forward(self, x: torch.Tensor, rope: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                cache: Optional[KVCache] = None, return_weights: bool = False,
                impl: Optional[str] = None):
        """x (B, T, C) -> (B, T, C); with return_weights also the weights (B, H, T, S)."""
        check_width(x, self.c_proj.out_features, "CausalSelfAttention")
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split([C, self.kv_width, self.kv_width], dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)        # (B, H, T, D)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)     # (B, Hkv, T, D)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)     # (B, Hkv, T, D)
        if self.use_rope:
            if rope is None:
                raise ModelInputError("this layer uses RoPE: pass rope=(cos, sin) for the positions of x "
                                      "(minigpt.rope_cos_sin makes them), or call the whole MiniGPT.")
            cos, sin = rope
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.append(k, v)                                        # (B, Hkv, S, D)
        if self.n_kv_head != self.n_head:
            # each group of n_head / n_kv_head query heads shares one key/value head
            repeat = self.n_head // self.n_kv_head
            k = k.repeat_interleave(repeat, dim=1)                           # (B, H, S, D)
            v = v.repeat_interleave(repeat, dim=1)

        if impl is not None and impl not in ATTN_IMPLS:
            raise ConfigError(f"impl={impl!r} is unknown; choose one of {', '.join(map(repr, ATTN_IMPLS))}.")
        impl = "manual" if return_weights else (impl or self.attn_impl)
        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if impl == "sdpa" and dropout_p > 0 and x.device.type == "cpu" and not torch.compiler.is_compiling():
            # SDPA's fused CPU kernel has no dropout; its fallback is the manual formula with
            # a slow random mask. dropout_attention is that formula with fewer passes. Under
            # torch.compile SDPA stays: the compiler fuses its fallback, and dropout_attention's
            # in-place mask draw would split the graph.
            out = dropout_attention(q, k, v, dropout_p)
        elif impl == "manual":
            out = manual_attention(q, k, v, dropout_p, self.training, return_weights, check=False)
            if return_weights:
                out, weights = out
        elif impl == "sdpa":
            S = k.size(2)
            if T == S:
                out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
            elif T == 1:   # one new query attends to every cached key: no mask needed
                out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
            else:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T, S, x.device),
                                                     dropout_p=dropout_p)
        else:
            out = flash_attention(q, k, v, dropout_p, self.training, check=False)
        out = out.transpose(1, 2).contiguous().view(B, T, C)                # merge heads
        out = self.resid_dropout(self.c_proj(out))
        return (out, weights) if return_weights else out
