"""The GPT: token (+ position) embeddings, a stack of Transformer blocks, a tied LM head.

Parameter names match GPT-2 (`wte`, `wpe`, `blocks.N.ln_1`, `attn.c_attn`, `attn.c_proj`,
`ln_2`, `mlp.c_fc`, `mlp.c_proj`, `ln_f`, `lm_head`), so the tensors map one-to-one onto
a GPT-2 checkpoint's (GPT-2 calls `blocks` `h`).
"""

from __future__ import annotations

import contextlib
import numbers
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import CausalSelfAttention, check_width
from .kv_cache import KVCache
from .positions import rope_cos_sin, sinusoidal_table
from .config import GPTConfig
from .dropout import Dropout
from .errors import ModelInputError
from .sampling import probs_from_checked_logits, check_finite_logits, check_sampling_settings, draw_next_token, is_greedy


class ModelInputTypeError(ModelInputError, TypeError):
    """An argument of the wrong type (a list for a tensor, floats for token ids)."""


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Eval mode (no dropout) inside the `with` block; the model's previous mode afterwards,
    also when the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def ids_checked(model: nn.Module, ids: torch.Tensor):
    """Check every id in `ids` once (e.g. a whole data split, on the CPU); inside the block
    `model` then skips its per-call range check. On a GPU that check reads the device at every
    call (a host sync): an estimate over 20 batches would wait for the GPU 20 times. Models
    other than MiniGPT are left as they are."""
    if not isinstance(model, MiniGPT):
        yield model
        return
    model.check_token_ids(ids)
    previous, model._ids_checked = model._ids_checked, True
    try:
        yield model
    finally:
        model._ids_checked = previous


class MLP(nn.Module):
    """Position-wise feed-forward network: C -> 4C -> GELU -> C."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh" if config.gelu == "tanh" else "none")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:      # (B, T, C) -> (B, T, C)
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """One Transformer block.

    Pre-LN (default, GPT-2):  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
    Post-LN (2017 paper):     x = ln_1(x + attn(x));  x = ln_2(x + mlp(x))
    Pre-LN keeps an un-normalised residual path from input to output, which is why deep
    stacks of it train without warm-up tricks.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.pre_norm = config.norm == "pre"
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, rope=None, cache: Optional[KVCache] = None,
                return_weights: bool = False):
        check_width(x, self.ln_1.normalized_shape[0], "Block")
        if self.pre_norm:
            attn_out = self.attn(self.ln_1(x), rope, cache, return_weights)
        else:
            attn_out = self.attn(x, rope, cache, return_weights)
        weights = None
        if return_weights:
            attn_out, weights = attn_out
        if self.pre_norm:
            x = x + attn_out
            x = x + self.mlp(self.ln_2(x))
        else:
            x = self.ln_1(x + attn_out)
            x = self.ln_2(x + self.mlp(x))
        return (x, weights) if return_weights else x



def check_targets(targets, idx: torch.Tensor) -> None:
    """Targets must be integer token ids shaped like idx (their range is checked by
    MiniGPT.check_token_ids where the model reads ids back)."""
    if not isinstance(targets, torch.Tensor) or targets.dtype.is_floating_point or targets.dtype == torch.bool:
        what = targets.dtype if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ModelInputTypeError(f"targets must be a tensor of token ids (integers) like idx, got {what}; "
                                  "use the y of get_batch, or torch.tensor(ids).")
    if targets.shape != idx.shape:
        raise ModelInputError(f"targets must have the same shape as idx {tuple(idx.shape)}, "
                              f"got {tuple(targets.shape)}.")
    if targets.device != idx.device:
        raise ModelInputError(f"targets are on {targets.device} but idx is on {idx.device}; "
                              "move them with targets.to(idx.device).")


def next_token_loss(logits: torch.Tensor, idx: torch.Tensor,
                    targets: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The mean cross-entropy of logits (B, T, V) against targets (B, T), in float32; targets
    equal to -1 are ignored. None when there are no targets. Shared by MiniGPT and the ladder's
    rungs, so every model of the book scores the same way."""
    if targets is None:
        return None
    check_targets(targets, idx)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1).long(), ignore_index=-1)


class MiniGPT(nn.Module):
    """A decoder-only Transformer language model."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ModelInputTypeError(f"MiniGPT expects a GPTConfig, got {type(config).__name__}; "
                            "build one with GPTConfig(vocab_size=..., ...).")
        config.validate()                  # a config changed after it was made is checked again
        self.config = config
        self._ids_checked = False          # True inside `ids_checked(self, ...)`
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        if config.pos_encoding == "learned":
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
        elif config.pos_encoding == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_table(config.block_size, config.n_embd),
                                 persistent=False)
        else:  # rope: positions enter inside attention, by rotating q and k
            cos, sin = rope_cos_sin(config.block_size, config.head_dim)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying: the input embedding and the output projection share one matrix
        self.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # GPT-2's residual-projection init: each block adds two branch outputs (attention and
        # MLP) to the residual stream, 2 * n_layer in all. Scaling the std of every layer that
        # writes into the stream (`c_proj`) by 1/sqrt(2 * n_layer) keeps the variance of the
        # sum at init about the same whatever the depth (GPT-2 paper, section 2.3; nanoGPT).
        residual_std = 0.02 / (2 * config.n_layer) ** 0.5
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ sizes
    def num_parameters(self, exclude_positions: bool = False) -> int:
        """Parameters counted once (the tied embedding/head matrix is one tensor)."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_positions and self.config.pos_encoding == "learned":
            n -= self.wpe.weight.numel()
        return n

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    # ---------------------------------------------------------------- checks
    def _check_idx(self, idx, read_ids: bool = False) -> torch.Tensor:
        """idx as int64 (B, T) on the model's device, or a ModelInputError saying what is wrong.
        `read_ids`: check the ids' range even in training on a GPU (generate and attention_maps
        switch to eval mode after this check, and read values back anyway)."""
        if not isinstance(idx, torch.Tensor):
            raise ModelInputTypeError(f"idx must be a LongTensor of token ids with shape (B, T), got "
                            f"{type(idx).__name__}; use torch.tensor([tokenizer.encode(text)]).")
        if idx.dim() == 1:
            raise ModelInputError(f"idx must have shape (B, T); got a 1-D tensor of length {idx.numel()}. "
                             "Add a batch dimension with idx[None] or idx.unsqueeze(0).")
        if idx.dim() != 2:
            raise ModelInputError(f"idx must have shape (B, T), got {tuple(idx.shape)}.")
        # empty first: torch.tensor([[]]) is float32, and "convert with idx.long()" would hide
        # the real problem (an empty prompt, or one whose characters were all skipped)
        if idx.size(1) == 0:
            raise ModelInputError("idx has no tokens (T = 0); give at least one token, e.g. a newline.")
        if idx.size(0) == 0:
            raise ModelInputError("idx has no rows (B = 0); give at least one sequence, shape (1, T) for one.")
        if idx.dtype not in (torch.long, torch.int32, torch.int16, torch.uint8):
            raise ModelInputTypeError(f"idx must hold token ids as int64 (torch.long), int32, int16 or uint8, "
                                      f"got dtype {idx.dtype}; convert with idx.long().")
        if self._reads_ids(idx, read_ids):
            self.check_token_ids(idx)
        if idx.device != self.device:
            raise ModelInputError(f"idx is on {idx.device} but the model is on {self.device}; "
                             "move it with idx.to(model.device).")
        return idx.long()

    def _reads_ids(self, idx: torch.Tensor, read_ids: bool = False) -> bool:
        """Whether to check token ids' range here. The check reads values back (a host sync on
        GPUs, a graph break under torch.compile), so it runs where it is cheap: on the CPU and
        at inference, unless the ids were checked once beforehand (`ids_checked`:
        estimate_loss, evaluate)."""
        compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)()
        return not compiling and not self._ids_checked and (idx.device.type == "cpu" or not self.training
                                                            or read_ids)

    def check_token_ids(self, ids: torch.Tensor, targets: bool = False) -> None:
        """Raise ModelInputError unless every id in `ids` is in 0..vocab_size-1 (one read);
        `targets`: -1 is allowed too (a position the loss ignores)."""
        if ids.numel() == 0:           # nothing to check (min/max of nothing is an error)
            return
        low, high = torch.stack([ids.min(), ids.max()]).tolist()
        lowest = -1 if targets else 0
        if targets and high == -1:     # the mean over no positions: a NaN loss, then NaN weights
            raise ModelInputError("every target is -1 (ignored), so there is nothing to score and the loss "
                                  "would be NaN; give at least one target id in 0.."
                                  f"{self.config.vocab_size - 1}, or leave this batch out.")
        if low < lowest or high >= self.config.vocab_size:
            bad = low if low < lowest else high
            if targets:
                raise ModelInputError(f"target id {bad} is outside the vocabulary 0..{self.config.vocab_size - 1} "
                                      "(-1 marks a position to ignore).")
            raise ModelInputError(f"token id {bad} is outside the vocabulary 0..{self.config.vocab_size - 1}; "
                                  "encode text with the tokenizer this model was trained with.")

    # --------------------------------------------------------------- forward
    def _hidden(self, idx: torch.Tensor, caches: Optional[list[KVCache]] = None,
                return_weights: bool = False):
        """Token ids (B, T) -> final hidden states (B, T, C), before ln_f."""
        T = idx.size(1)
        start = caches[0].length if caches else 0
        if start + T > self.config.block_size:
            raise ModelInputError(f"sequence of {start + T} tokens exceeds block_size="
                             f"{self.config.block_size}; crop the input to its last "
                             f"{self.config.block_size} tokens (generate() does this for you).")
        x = self.wte(idx)                                                    # (B, T, C)
        rope = None
        if self.config.pos_encoding == "learned":
            x = x + self.wpe.weight[start:start + T]                         # (T, C) broadcast
        elif self.config.pos_encoding == "sinusoidal":
            x = x + self.pos_table[start:start + T]
        else:
            rope = (self.rope_cos[start:start + T], self.rope_sin[start:start + T])
        x = self.drop(x)
        all_weights = []
        for i, block in enumerate(self.blocks):
            cache = caches[i] if caches else None
            if return_weights:
                x, w = block(x, rope, cache, return_weights=True)
                all_weights.append(w)
            else:
                x = block(x, rope, cache)
        return (x, all_weights) if return_weights else x

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None):
        """idx (B, T) -> logits (B, T, V) and, if targets (B, T) are given, the mean
        cross-entropy loss (targets equal to -1 are ignored)."""
        idx = self._check_idx(idx)
        if targets is not None:
            check_targets(targets, idx)
            if self._reads_ids(idx):
                self.check_token_ids(targets, targets=True)
        x = self.ln_f(self._hidden(idx))
        logits = self.lm_head(x)                                             # (B, T, V)
        return logits, next_token_loss(logits, idx, targets)

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> torch.Tensor:
        """Attention weights of every layer and head: (n_layer, B, n_head, T, T).

        Computed with the explicit-mask path whatever `attn_impl` is (all three give the
        same outputs), in eval mode so dropout does not blur the picture.
        """
        idx = self._check_idx(idx, read_ids=True)
        with eval_mode(self):
            _, weights = self._hidden(idx, return_weights=True)
        return torch.stack(weights)

    # ------------------------------------------------------------- generation
    def new_kv_caches(self, batch_size: int) -> list[KVCache]:
        c = self.config
        dtype = self.lm_head.weight.dtype
        return [KVCache(batch_size, c.n_kv_head, c.block_size, c.head_dim, self.device, dtype)
                for _ in range(c.n_layer)]

    def _next_logits(self, idx: torch.Tensor, caches: Optional[list[KVCache]] = None) -> torch.Tensor:
        """Logits (B, V) for the token after the last one in idx (only that row is projected)."""
        x = self._hidden(idx, caches)
        return self.lm_head(self.ln_f(x[:, -1, :]))

    # no_grad, like every other gradient-free path in the package (estimate_loss, evaluate,
    # attention_maps): inference_mode would be marginally faster, but its tensors can never
    # enter autograd later (e.g. using generated ids in a training step raises).
    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: Optional[int] = None, top_p: Optional[float] = None,
                 use_cache: bool = True, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Extend idx (B, T) by max_new_tokens sampled tokens; returns (B, T + max_new_tokens).

        temperature=0 is greedy decoding (so is a temperature that rounds to 0 in float32, below
        about 1.4e-45); logits holding NaN or inf raise NonFiniteLogitsError. With use_cache the keys and values of earlier
        positions are kept, so each step processes one new token. Once the text outgrows
        block_size the window slides and every cached key is stale (it was computed with
        context that has now dropped out), so from then on each step recomputes the window:
        it computes what use_cache=False computes, never an approximation (the logits agree
        to float rounding, so greedy tokens differ only where two logits are that close).

        A generator may live on any device: the draw happens where the generator is. A CPU
        generator therefore gives the same text for a seed on the CPU and on a GPU (as long as
        the probabilities agree), while a CUDA generator draws from CUDA's own random stream.
        """
        idx = self._check_idx(idx, read_ids=True)
        # numbers.Integral: a NumPy integer is taken, as the sampling settings take NumPy numbers
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
            raise ModelInputError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}.")
        max_new_tokens = int(max_new_tokens)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ModelInputTypeError(f"generator must be a torch.Generator or None, got {generator!r}; "
                                      "for a seed, pass generator=torch.Generator().manual_seed(seed).")
        temperature, top_k, top_p = check_sampling_settings(temperature, top_k, top_p)
        greedy = is_greedy(temperature)
        block_size = self.config.block_size
        with eval_mode(self):
            caches = None
            for step in range(1, max_new_tokens + 1):
                T = idx.size(1)
                if use_cache and T <= block_size:
                    if caches is None:                         # prefill with the whole prompt
                        caches = self.new_kv_caches(idx.size(0))
                        logits = self._next_logits(idx, caches)
                    else:                                      # one new token per step
                        logits = self._next_logits(idx[:, -1:], caches)
                else:
                    logits = self._next_logits(idx[:, -block_size:])
                # NaN logits would give NaN probabilities, and argmax would emit token 0
                check_finite_logits(logits, step)
                if greedy:
                    next_id = logits.argmax(dim=-1, keepdim=True)             # (B, 1)
                else:
                    probs = probs_from_checked_logits(logits, temperature, top_k, top_p)
                    next_id = draw_next_token(probs, generator)               # (B, 1)
                idx = torch.cat((idx, next_id), dim=1)
        return idx
