"""The loss ladder: switch the parts of a GPT on one at a time and measure what each buys.

Rungs (every one trained with the same short budget, measured on the whole validation split):

1. bigram            - a token embedding read straight out by the tied head
2. one head          - + position embeddings and one causal self-attention head
3. multi-head        - the same width split into several heads
4. + MLP             - a feed-forward layer after attention
5. + LayerNorm/residuals - one Pre-LN `Block` (x + attn(ln_1(x)), x + mlp(ln_2(x))) and ln_f
6. full model        - `MiniGPT` with several blocks

Rungs 1-5 are a `RungModel` assembled from the package's own `CausalSelfAttention`, `MLP` and
`Block`; rung 6 is `MiniGPT` itself. All are trained by `minigpt.train`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import CausalSelfAttention
from .config import GPTConfig
from .data import TextData
from .model import MLP, Block, MiniGPT
from .sampling import next_token_probs
from .train import TrainConfig, evaluate, train


class RungModel(nn.Module):
    """A GPT with parts switched off.  idx (B, T) -> logits (B, T, V) [, loss].

    positions: add learned position embeddings (wpe)
    attention: one CausalSelfAttention layer with config.n_head heads
    mlp:       one MLP after it
    residual_norm: wrap attention + MLP in Pre-LN Blocks (config.n_layer of them) plus ln_f
    Without residual_norm the parts are simply chained: x = mlp(attn(x)).
    """

    def __init__(self, config: GPTConfig, positions: bool = True, attention: bool = True,
                 mlp: bool = True, residual_norm: bool = True):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if positions else None
        if residual_norm:
            if not (attention and mlp):
                raise ValueError("residual_norm builds full Blocks: it needs attention and mlp on.")
            self.layers = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
            self.ln_f: nn.Module = nn.LayerNorm(config.n_embd, bias=config.bias)
        else:
            parts = ([CausalSelfAttention(config)] if attention else []) + ([MLP(config)] if mlp else [])
            self.layers = nn.ModuleList(parts)
            self.ln_f = nn.Identity()
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight            # tied, as in MiniGPT
        self.apply(MiniGPT._init_weights)                # N(0, 0.02), zero biases

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None):
        x = self.wte(idx)                                           # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe.weight[:idx.size(1)]
        for layer in self.layers:
            x = layer(x)
        logits = self.lm_head(self.ln_f(x))                         # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


@dataclass
class Rung:
    name: str
    params: int
    val_loss: float
    sample: str


RUNGS = ("bigram", "one head", "multi-head", "+ MLP", "+ LayerNorm/residuals", "full model")


def build_rung(name: str, config: GPTConfig, full_layers: int = 4) -> nn.Module:
    """The model for one rung; `config` gives the width, heads and context of all of them."""
    one = replace(config, n_layer=1)
    if name == "bigram":
        return RungModel(one, positions=False, attention=False, mlp=False, residual_norm=False)
    if name == "one head":
        return RungModel(replace(one, n_head=1, n_kv_head=1), mlp=False, residual_norm=False)
    if name == "multi-head":
        return RungModel(one, mlp=False, residual_norm=False)
    if name == "+ MLP":
        return RungModel(one, residual_norm=False)
    if name == "+ LayerNorm/residuals":
        return RungModel(one)
    if name == "full model":
        return MiniGPT(replace(config, n_layer=full_layers))
    raise ValueError(f"unknown rung {name!r}; choose one of {RUNGS}.")


@torch.no_grad()
def sample(model: nn.Module, data: TextData, length: int = 120, prompt: str = "\n",
           temperature: float = 0.8, seed: int = 0) -> str:
    """Sample `length` characters with a seeded generator (works for any rung)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    idx = torch.tensor([data.tokenizer.encode(prompt)], device=model.device)
    for _ in range(length):
        logits, _ = model(idx[:, -model.config.block_size:])
        probs = next_token_probs(logits[0, -1].cpu(), temperature)
        next_id = torch.multinomial(probs, 1, generator=generator)
        idx = torch.cat((idx, next_id.to(idx.device)[None]), dim=1)
    return data.tokenizer.decode(idx[0, len(prompt):].cpu())


def default_settings(vocab_size: int) -> tuple[GPTConfig, TrainConfig]:
    """Small enough that all six rungs train in about a minute on a 2-core CPU."""
    model = GPTConfig(vocab_size=vocab_size, block_size=32, n_embd=64, n_head=4, n_layer=4,
                      dropout=0.0)
    training = TrainConfig(max_iters=300, batch_size=32, learning_rate=3e-3, warmup_iters=20,
                           eval_interval=300, eval_iters=2, checkpoint_interval=300, device="cpu")
    return model, training


def run_ladder(data: TextData, config: Optional[GPTConfig] = None,
               train_config: Optional[TrainConfig] = None, rungs=RUNGS, full_layers: int = 4,
               sample_length: int = 120, seed: int = 1337, val_tokens: Optional[int] = None) -> list[Rung]:
    """Train every rung with the same budget; return (name, params, val loss, sample) per rung.

    The validation loss is `evaluate` over the whole validation split (or its first
    `val_tokens` tokens), so rungs are compared on exactly the same text.
    """
    default_model, default_train = default_settings(data.tokenizer.vocab_size)
    config = config or default_model
    train_config = train_config or default_train
    val = data.val if val_tokens is None else data.val[:val_tokens]
    table = []
    for name in rungs:
        torch.manual_seed(seed)
        model = build_rung(name, config, full_layers)
        result = train(model, data, train_config, progress=False)
        model = result.model
        params = model.num_parameters()
        loss = evaluate(model, val, batch_size=256)
        table.append(Rung(name, params, loss, sample(model, data, sample_length, seed=seed)))
    return table


def format_table(table: list[Rung], sample_chars: int = 60) -> str:
    """The ladder as a plain-text table (one line per rung, sample shortened)."""
    lines = [f"{'rung':<24}{'params':>9}{'val loss':>10}  sample"]
    for r in table:
        text = r.sample[:sample_chars].replace("\n", " / ")
        lines.append(f"{r.name:<24}{r.params:>9,}{r.val_loss:>10.4f}  {text}")
    return "\n".join(lines)
