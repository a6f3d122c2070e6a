"""Plots used by the book: attention heatmaps and loss curves (matplotlib, imported lazily)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def _labels(tokens: Sequence[str]) -> list[str]:
    return [{"\n": "\\n", " ": "␣", "\t": "\\t"}.get(t, t) for t in tokens]


def plot_attention(weights: torch.Tensor, tokens: Sequence[str], ax=None, title: Optional[str] = None,
                   cmap: str = "viridis"):
    """Heatmap of one head's weights (T, T): row = query position, column = key position."""
    import matplotlib.pyplot as plt
    weights = weights.detach().float().cpu()
    if weights.dim() != 2:
        raise ValueError(f"plot_attention expects one (T, T) matrix, got shape {tuple(weights.shape)}; "
                         "index a layer, batch row and head first, e.g. maps[layer, 0, head].")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.imshow(weights, cmap=cmap, vmin=0.0, vmax=1.0)
    labels = _labels(tokens)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_attention_grid(maps: torch.Tensor, tokens: Sequence[str], layers: Optional[Sequence[int]] = None,
                        heads: Optional[Sequence[int]] = None, size: float = 2.2):
    """A grid of heatmaps, one row per layer and one column per head, for maps (L, H, T, T)."""
    import matplotlib.pyplot as plt
    maps = maps.detach().float().cpu()
    if maps.dim() == 5:          # (L, B, H, T, T) as returned by MiniGPT.attention_maps
        maps = maps[:, 0]
    layers = list(range(maps.size(0))) if layers is None else list(layers)
    heads = list(range(maps.size(1))) if heads is None else list(heads)
    fig, axes = plt.subplots(len(layers), len(heads), figsize=(size * len(heads), size * len(layers)),
                             squeeze=False)
    labels = _labels(tokens)
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            ax = axes[r][c]
            ax.imshow(maps[layer, head], cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"head {head}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=9)
    if len(labels) <= 40:
        fig.suptitle("rows: query position, columns: key position; text: " + "".join(tokens)[:60],
                     fontsize=9)
    fig.tight_layout()
    return fig


def plot_losses(history: dict, ax=None, label: str = "", smooth: int = 20):
    """Training loss per step (smoothed) and the periodic validation estimates."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    steps, losses = history["step"], history["loss"]
    if smooth > 1 and len(losses) >= smooth:
        kernel = torch.ones(smooth) / smooth
        smoothed = torch.nn.functional.conv1d(torch.tensor(losses)[None, None], kernel[None, None])[0, 0]
        ax.plot(steps[smooth - 1:], smoothed.tolist(), label=f"{label} train".strip())
    else:
        ax.plot(steps, losses, label=f"{label} train".strip())
    evals = history.get("eval", [])
    if evals:
        ax.plot([e["step"] for e in evals], [e["val"] for e in evals], "o--", label=f"{label} val".strip())
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.legend()
    return ax
