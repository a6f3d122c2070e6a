"""The loss ladder: switch the parts of a GPT on one at a time and measure what each buys.

Rungs (every one but the first trained with the same short budget, all measured on the whole
validation split):

0. unigram           - letter frequencies counted in the training text, whatever came before:
                       the floor for any model that ignores the context (nothing to train)
1. bigram            - a token embedding read straight out by an (untied) head
2. one head          - + position embeddings and one causal self-attention head
3. multi-head        - the same width split into several heads
4. + MLP             - a feed-forward layer after attention
5. + LayerNorm/residuals - one Pre-LN `Block` (x + attn(ln_1(x)), x + mlp(ln_2(x))) and ln_f
6. full model        - `MiniGPT` with several blocks

Rungs 1-5 are a `RungModel` assembled from the package's own `CausalSelfAttention`, `MLP` and
`Block`, with positions as `config.pos_encoding` says (learned, sinusoidal or RoPE); rung 6 is
`MiniGPT` itself. All are trained by `minigpt.train`. Rungs 2-6 tie the output head to the
token embedding as `MiniGPT` does; the bigram rung cannot (see `build_rung`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import torch
import torch.nn as nn

from .attention import CausalSelfAttention
from .config import ConfigError, GPTConfig
from .data import TextData
from .device import pick_device
from .errors import UsageError
from .evaluation import evaluate
from .model import MLP, Block, MiniGPT, ModelInputError, eval_mode, next_token_loss
from .positions import rope_cos_sin, sinusoidal_table
from .sampling import draw_next_token, next_token_probs
from .train import TrainConfig, train


class RungModel(nn.Module):
    """A GPT with parts switched off.  idx (B, T) -> logits (B, T, V) [, loss].

    positions: add position information the way `config.pos_encoding` says: a learned table
               (`wpe`), the fixed sinusoidal table, or RoPE inside attention (as `MiniGPT`)
    attention: one CausalSelfAttention layer with config.n_head heads
    mlp:       one MLP after it
    residual_norm: wrap attention + MLP in Pre-LN Blocks (config.n_layer of them) plus ln_f
    tie_head:  share the token embedding with the output head, as `MiniGPT` does
    Without residual_norm the parts are simply chained: x = mlp(attn(x)).
    """

    def __init__(self, config: GPTConfig, positions: bool = True, attention: bool = True,
                 mlp: bool = True, residual_norm: bool = True, tie_head: bool = True):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = None
        for name in ("pos_table", "rope_cos", "rope_sin"):      # filled below if used
            self.register_buffer(name, None, persistent=False)
        if positions and config.pos_encoding == "learned":
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
        elif positions and config.pos_encoding == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_table(config.block_size, config.n_embd),
                                 persistent=False)
        elif positions and config.pos_encoding == "rope":
            if not attention:
                raise ConfigError("pos_encoding='rope' rotates queries and keys, so positions need "
                                 "attention on; use pos_encoding='learned' for a rung without it.")
            cos, sin = rope_cos_sin(config.block_size, config.head_dim)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        # without positions, attention must not rotate q and k either
        layer_config = config if positions else replace(config, pos_encoding="learned")
        if residual_norm:
            if not (attention and mlp):
                raise ConfigError("residual_norm builds full Blocks: it needs attention and mlp on.")
            self.layers = nn.ModuleList([Block(layer_config) for _ in range(config.n_layer)])
            self.ln_f: nn.Module = nn.LayerNorm(config.n_embd, bias=config.bias)
        else:
            parts = (([CausalSelfAttention(layer_config)] if attention else [])
                     + ([MLP(layer_config)] if mlp else []))
            self.layers = nn.ModuleList(parts)
            self.ln_f = nn.Identity()
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if tie_head:
            self.wte.weight = self.lm_head.weight        # tied, as in MiniGPT
        self.apply(MiniGPT._init_weights)                # N(0, 0.02), zero biases
        if residual_norm:                                # and GPT-2's residual-projection init
            residual_std = 0.02 / (2 * config.n_layer) ** 0.5
            for name, param in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(param, mean=0.0, std=residual_std)

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None):
        T = idx.size(1)
        if T > self.config.block_size:
            raise ModelInputError(f"sequence of {T} tokens exceeds block_size={self.config.block_size}; "
                                  f"crop the input to its last {self.config.block_size} tokens.")
        x = self.wte(idx)                                           # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe.weight[:T]
        elif self.pos_table is not None:
            x = x + self.pos_table[:T]
        rope = (self.rope_cos[:T], self.rope_sin[:T]) if self.rope_cos is not None else None
        for layer in self.layers:
            x = layer(x) if isinstance(layer, MLP) else layer(x, rope)
        logits = self.lm_head(self.ln_f(x))                         # (B, T, V)
        return logits, next_token_loss(logits, idx, targets)


class UnigramModel(nn.Module):
    """The same next-character distribution at every position: the training text's letter
    frequencies.  idx (B, T) -> logits (B, T, V) [, loss].

    `count(tokens)` sets it; it is never trained. Its validation loss is what a model reaches
    by learning how often each character occurs without using the context at all.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.log_probs = nn.Parameter(torch.full((config.vocab_size,), -math.log(config.vocab_size)))

    @property
    def device(self) -> torch.device:
        return self.log_probs.device

    def num_parameters(self) -> int:
        return self.log_probs.numel()

    @torch.no_grad()
    def count(self, tokens: torch.Tensor) -> "UnigramModel":
        """Set the distribution to the frequencies in `tokens` (add-one smoothing, so an unseen
        character costs a finite loss)."""
        counts = torch.bincount(tokens.reshape(-1).cpu(), minlength=self.config.vocab_size).double() + 1
        self.log_probs.copy_((counts / counts.sum()).log().float())
        return self

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None):
        B, T = idx.shape
        if T > self.config.block_size:
            raise ModelInputError(f"sequence of {T} tokens exceeds block_size={self.config.block_size}; "
                                  f"crop the input to its last {self.config.block_size} tokens.")
        logits = self.log_probs.expand(B, T, -1)                    # (B, T, V), the same at every position
        return logits, next_token_loss(logits, idx, targets)


@dataclass
class Rung:
    name: str
    params: int
    val_loss: float
    sample: str


RUNGS = ("unigram", "bigram", "one head", "multi-head", "+ MLP", "+ LayerNorm/residuals", "full model")


def build_rung(name: str, config: GPTConfig, full_layers: Optional[int] = None) -> nn.Module:
    """The model for one rung; `config` gives the width, heads, context and positions of all.

    Rungs 1-5 have one layer; the full model has `full_layers` blocks, by default
    `config.n_layer` (so `replace(config, n_layer=6)` gives a 6-block full model).
    The bigram rung's head is untied: tied, its logits e_a . e_b would be symmetric
    (a -> b scored like b -> a), which caps a bigram far above the counted one.
    """
    one = replace(config, n_layer=1)
    if name == "unigram":
        return UnigramModel(config)                       # uniform until run_ladder counts the text
    if name == "bigram":
        return RungModel(one, positions=False, attention=False, mlp=False, residual_norm=False,
                         tie_head=False)
    if name == "one head":
        return RungModel(replace(one, n_head=1, n_kv_head=1), mlp=False, residual_norm=False)
    if name == "multi-head":
        return RungModel(one, mlp=False, residual_norm=False)
    if name == "+ MLP":
        return RungModel(one, residual_norm=False)
    if name == "+ LayerNorm/residuals":
        return RungModel(one)
    if name == "full model":
        return MiniGPT(config if full_layers is None else replace(config, n_layer=full_layers))
    raise UsageError(f"unknown rung {name!r}; choose one of {RUNGS}.")


@torch.no_grad()
def sample(model: nn.Module, data: TextData, max_new_tokens: int = 120, prompt: str = "\n",
           temperature: float = 0.8, seed: int = 0) -> str:
    """Sample `max_new_tokens` tokens (characters, for a CharTokenizer) with a seeded generator
    (works for any rung); returns the new text without the prompt.

    The model runs in eval mode and gets its previous mode back afterwards.
    """
    generator = torch.Generator().manual_seed(seed)
    prompt_ids = data.tokenizer.encode(prompt)
    idx = torch.tensor([prompt_ids], device=model.device)
    with eval_mode(model):
        for _ in range(max_new_tokens):
            logits, _ = model(idx[:, -model.config.block_size:])
            probs = next_token_probs(logits[:, -1], temperature)              # (1, V)
            idx = torch.cat((idx, draw_next_token(probs, generator)), dim=1)   # drawn on the CPU
    # cut the prompt off by its token count: a BPE token can hold several characters
    return data.tokenizer.decode(idx[0, len(prompt_ids):].cpu())


def default_settings(vocab_size: int) -> tuple[GPTConfig, TrainConfig]:
    """Small enough that the six trained rungs take about a minute on a 2-core CPU."""
    model = GPTConfig(vocab_size=vocab_size, block_size=32, n_embd=64, n_head=4, n_layer=4,
                      dropout=0.0)
    training = TrainConfig(max_iters=300, batch_size=32, learning_rate=3e-3, warmup_iters=20,
                           eval_interval=300, eval_iters=2, checkpoint_interval=300, device="cpu")
    return model, training


def run_ladder(data: TextData, config: Optional[GPTConfig] = None,
               train_config: Optional[TrainConfig] = None, rungs=RUNGS, full_layers: Optional[int] = None,
               sample_tokens: int = 120, seed: int = 1337, val_tokens: Optional[int] = None) -> list[Rung]:
    """Train every rung with the same budget (the unigram rung is counted from the training
    text instead); return (name, params, val loss, sample) per rung.

    The validation loss is `evaluate` over the whole validation split (or its first
    `val_tokens` tokens), so rungs are compared on exactly the same text. The full model
    has `full_layers` blocks, by default `config.n_layer`. Each rung's sample is
    `sample_tokens` characters long (the CLI's `train --sample-tokens`).
    """
    default_model, default_train = default_settings(data.tokenizer.vocab_size)
    config = config or default_model
    train_config = train_config or default_train
    val = data.val if val_tokens is None else data.val[:val_tokens]
    table = []
    for name in rungs:
        torch.manual_seed(seed)
        model = build_rung(name, config, full_layers)
        if isinstance(model, UnigramModel):
            model = model.count(data.train).to(pick_device(train_config.device))   # counted, not trained
        else:
            model = train(model, data, train_config, progress=False).model
        params = model.num_parameters()
        loss = evaluate(model, val, batch_size=256)
        table.append(Rung(name, params, loss, sample(model, data, sample_tokens, seed=seed)))
    return table


def format_table(table: list[Rung], sample_chars: int = 60) -> str:
    """The ladder as a plain-text table (one line per rung, sample shortened)."""
    lines = [f"{'rung':<24}{'params':>9}{'val loss':>10}  sample"]
    for r in table:
        text = r.sample[:sample_chars].replace("\n", " / ")
        lines.append(f"{r.name:<24}{r.params:>9,}{r.val_loss:>10.4f}  {text}")
    return "\n".join(lines)
