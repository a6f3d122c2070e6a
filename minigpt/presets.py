"""Named training recipes: a model shape plus its training settings.

Each preset is what `python -m minigpt train --preset NAME` runs. The numbers a preset
reaches are measured and listed in the README (loss, time, device).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError


@dataclass(frozen=True)
class Preset:
    description: str
    model: dict[str, Any] = field(default_factory=dict)   # GPTConfig fields (vocab_size comes from the data)
    train: dict[str, Any] = field(default_factory=dict)   # TrainConfig fields


class UnknownPresetError(UsageError, KeyError):
    """A preset name that is not one of PRESETS' (still a KeyError, as a dict lookup's is)."""

    def __str__(self) -> str:          # KeyError's str() would quote the whole sentence
        return str(self.args[0])


class _Presets(dict):
    """PRESETS: a dict whose missing key names the presets there are."""

    def __missing__(self, name):
        raise UnknownPresetError(f"no preset {name!r}; the presets are {', '.join(map(repr, self))} "
                                 "(names are lower case).")


PRESETS: dict[str, Preset] = _Presets({
    "seed": Preset(
        "the seed chapter's model and optimiser settings (6 layers, 8 heads, 256 wide, "
        "context 128, dropout 0.1, AdamW 3e-4, batch 64)",
        model=dict(block_size=128, n_embd=256, n_head=8, n_layer=6, dropout=0.1),
        train=dict(max_iters=5000, batch_size=64, learning_rate=3e-4, warmup_iters=100,
                   eval_interval=500),
    ),
    "cpu-quick": Preset(
        "reach val_loss <= 1.70 on tinyshakespeare in about two minutes on a 2-core laptop CPU",
        model=dict(block_size=64, n_embd=128, n_head=4, n_layer=3, dropout=0.0,
                   pos_encoding="rope", bias=False, attn_impl="sdpa"),
        train=dict(max_iters=1100, batch_size=32, learning_rate=6e-3, min_lr=3e-4,
                   warmup_iters=50, weight_decay=0.1, beta2=0.99, eval_interval=275,
                   eval_iters=4, checkpoint_interval=1100),
    ),
    "pretrained": Preset(
        "the model shipped in the package (6 layers, 8 heads, 256 wide, context 256); "
        "a few minutes on a GPU",
        model=dict(block_size=256, n_embd=256, n_head=8, n_layer=6, dropout=0.2),
        train=dict(max_iters=2500, batch_size=64, learning_rate=1e-3, min_lr=1e-4,
                   warmup_iters=100, eval_interval=250, checkpoint_interval=500),
    ),
    "gpu": Preset(
        "a larger model for a CUDA GPU (6 layers, 6 heads, 384 wide, context 256, dropout 0.2)",
        model=dict(block_size=256, n_embd=384, n_head=6, n_layer=6, dropout=0.2),
        train=dict(max_iters=2500, batch_size=64, learning_rate=1e-3, min_lr=1e-4,
                   warmup_iters=100, eval_interval=250, checkpoint_interval=500),
    ),
    "tiny": Preset(
        "a toy model for tests and smoke runs (seconds on any machine)",
        model=dict(block_size=32, n_embd=32, n_head=4, n_layer=2, dropout=0.0),
        train=dict(max_iters=50, batch_size=8, learning_rate=3e-3, warmup_iters=5,
                   eval_interval=25, eval_iters=2, checkpoint_interval=25),
    ),
    "book": Preset(
        "the training chapter's CPU run: 4 layers, 128 wide, RoPE, 800 steps (about two minutes "
        "on a 2-core CPU)",
        model=dict(block_size=64, n_embd=128, n_head=4, n_layer=4, dropout=0.0,
                   pos_encoding="rope", bias=False, attn_impl="sdpa"),
        train=dict(max_iters=800, batch_size=32, learning_rate=4e-3, min_lr=2e-4,
                   warmup_iters=50, weight_decay=0.1, beta2=0.99, eval_interval=200,
                   eval_iters=4, checkpoint_interval=800),
    ),
})
