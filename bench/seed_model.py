"""The benchmarks' reference side: our re-implementation of the seed chapter's model.

Written the way the seed wrote it: an explicit (1, 1, T, T) mask buffer, dropout on the
attention matrix, and a `generate` loop that recomputes the whole context for every token.
Parameter names are GPT-2's, the same as `minigpt.MiniGPT`, so `seed_copy_of` can load a
MiniGPT's weights and both sides of a benchmark compute with the same numbers.

`SeedGPT(config, fused_attention=True, bias=False)` is nanoGPT's model as its
`train_shakespeare_char` recipe runs it: the same shape and parameter names, attention by
`F.scaled_dot_product_attention(..., is_causal=True)` (nanoGPT's flash path, no mask buffer) and
no biases in the linear layers or the LayerNorms (nanoGPT's `bias = False`). The GPU
time-to-quality benchmark's nanoGPT side uses it; the defaults are the seed's model, unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from minigpt import GPTConfig, MiniGPT


class SeedAttention(nn.Module):
    """The seed's attention: a (1, 1, T, T) mask buffer, softmax, dropout, weighted sum.

    With `fused=True`, nanoGPT's flash path instead: one `F.scaled_dot_product_attention` call
    with `is_causal=True` and the attention dropout inside it (no mask buffer)."""

    def __init__(self, c: GPTConfig, fused: bool = False, bias: bool = True):
        super().__init__()
        self.n_head, self.head_dim = c.n_head, c.n_embd // c.n_head
        self.fused, self.dropout = fused, c.dropout
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=bias)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=bias)
        self.attn_dropout, self.resid_dropout = nn.Dropout(c.dropout), nn.Dropout(c.dropout)
        if not fused:
            self.register_buffer("mask", torch.tril(torch.ones(c.block_size, c.block_size))[None, None])

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if self.fused:             # nanoGPT's CausalSelfAttention with self.flash
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None,
                                               dropout_p=self.dropout if self.training else 0, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
            att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
            att = self.attn_dropout(F.softmax(att, dim=-1))
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class SeedMLP(nn.Module):
    def __init__(self, c: GPTConfig, bias: bool = True):
        super().__init__()
        self.c_fc, self.gelu = nn.Linear(c.n_embd, 4 * c.n_embd, bias=bias), nn.GELU()
        self.c_proj, self.dropout = nn.Linear(4 * c.n_embd, c.n_embd, bias=bias), nn.Dropout(c.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class SeedBlock(nn.Module):
    def __init__(self, c: GPTConfig, fused_attention: bool = False, bias: bool = True):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(c.n_embd, bias=bias), SeedAttention(c, fused_attention, bias)
        self.ln_2, self.mlp = nn.LayerNorm(c.n_embd, bias=bias), SeedMLP(c, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class SeedGPT(nn.Module):
    """Same parameter names as MiniGPT, so `load_state_dict(minigpt.state_dict())` works.

    `fused_attention=True, bias=False`: nanoGPT's model (see the module's docstring)."""

    def __init__(self, c: GPTConfig, fused_attention: bool = False, bias: bool = True):
        super().__init__()
        self.config = c
        self.wte, self.wpe = nn.Embedding(c.vocab_size, c.n_embd), nn.Embedding(c.block_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(SeedBlock(c, fused_attention, bias) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, bias=bias)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight

    def forward(self, idx, targets=None):
        T = idx.size(1)
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        for _ in range(max_new_tokens):
            idx_cond = idx[:, -self.config.block_size:]
            logits = self(idx_cond)[0][:, -1, :]
            if temperature == 0:       # the seed divides by temperature; we allow greedy here
                next_id = logits.argmax(-1, keepdim=True)
            else:
                probs = F.softmax(logits / temperature, dim=-1)
                next_id = torch.multinomial(probs, 1)
            idx = torch.cat((idx, next_id), dim=1)
        return idx


def seed_copy_of(model: MiniGPT) -> SeedGPT:
    """A SeedGPT holding `model`'s weights (only the seed's mask buffer is new)."""
    seed = SeedGPT(model.config).to(model.device)
    missing, unexpected = seed.load_state_dict(model.state_dict(), strict=False)
    if unexpected or not all(k.endswith("attn.mask") for k in missing):
        raise RuntimeError(f"SeedGPT cannot hold this MiniGPT's weights: missing {missing}, "
                           f"unexpected {unexpected}")
    return seed
