"""Plots used by the book (matplotlib, imported lazily): attention heatmaps and next-token bar
charts, and what each layer predicts (`layer_logits`, chapter 10). The live
widgets of the rendered book live in `minigpt.web` (one way of shipping widgets).

Language: a figure's words (axis labels, titles) go through `tr_figure`, the figure's twin of
`minigpt.tr`: after `minigpt.set_language("zh")` they are Chinese, drawn with `figure_font()`,
*if* matplotlib has a font that can draw Chinese (Noto Sans CJK, Source Han Sans, WenQuanYi,
SimHei, Microsoft YaHei, PingFang...). Without one (Colab and many Linux machines have none)
the figure keeps its English: legible words rather than empty boxes.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import torch

from .errors import UsageError, is_whole_number
from .language import language, tr

# Families that draw Simplified Chinese, best first (the first one matplotlib knows is used).
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "Sarasa Gothic SC", "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC",
             "Hiragino Sans GB", "Droid Sans Fallback", "AR PL UMing CN", "Noto Sans CJK JP", "Noto Sans CJK TC")


_CJK_FILE = re.compile(r"cjk|wqy|wenquanyi|sourcehan|droidsansfallback|simhei|msyh|pingfang|sarasa|uming")


@lru_cache(maxsize=None)
def cjk_font() -> Optional[str]:
    """The first family of CJK_FONTS that matplotlib can use on this machine, or None. A font
    installed after matplotlib built its font cache (apt install fonts-noto-cjk) is missing
    from that cache: the system's CJK font files are then added to it (a quick scan)."""
    from matplotlib import font_manager

    def first() -> Optional[str]:
        installed = {font.name for font in font_manager.fontManager.ttflist}
        return next((name for name in CJK_FONTS if name in installed), None)

    if first() is None:
        for path in font_manager.findSystemFonts():
            if _CJK_FILE.search(re.sub(r"[-_ ]", "", Path(path).name.lower())):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):      # a file FreeType cannot read
                    pass
    return first()


def _chinese_figures() -> bool:
    return language() == "zh" and cjk_font() is not None


def tr_figure(english: str, **fields) -> str:
    """Words for a figure: `tr(english, **fields)` when figures can be Chinese (see the module
    docstring), else the English with its fields filled in. Pass `**figure_font()` with them."""
    if _chinese_figures():
        return tr(english, **fields)
    return english.format(**fields) if fields else english


def figure_font() -> dict:
    """Keyword arguments for a matplotlib text drawn in Chinese: the CJK family first, DejaVu
    Sans (matplotlib's own) for what it lacks. Empty in English."""
    return {"fontfamily": [cjk_font(), "DejaVu Sans"]} if _chinese_figures() else {}


def _labels(tokens: Sequence[str]) -> list[str]:
    return [{"\n": "\\n", " ": "␣", "\t": "\\t"}.get(t, t) for t in tokens]


def _check_tokens(tokens, who: str) -> None:
    """Labels are a string (one character a position) or a sequence of strings."""
    if isinstance(tokens, str):
        return
    if not isinstance(tokens, (list, tuple)) or not all(isinstance(t, str) for t in tokens):
        raise UsageError(f"{who}'s tokens are the labels, a list of strings (or one string, a character "
                         f"a position), got {type(tokens).__name__}: e.g. list(text) or tokenizer.chars.")


def _as_maps(weights, who: str) -> torch.Tensor:
    """Attention weights as a float32 CPU tensor; a numpy array or nested lists are taken too
    (a reader may have computed weights by hand), anything else is named."""
    if not isinstance(weights, torch.Tensor):
        try:
            weights = torch.as_tensor(weights)
        except (TypeError, ValueError, RuntimeError):
            raise UsageError(f"{who} takes attention weights as a tensor (or a numpy array), got "
                             f"{type(weights).__name__}.") from None
    return weights.detach().float().cpu()


def plot_attention(weights: torch.Tensor, tokens: Sequence[str], ax=None, title: Optional[str] = None,
                   cmap: str = "viridis"):
    """Heatmap of one head's weights (T, T): row = query position, column = key position."""
    import matplotlib.pyplot as plt
    weights = _as_maps(weights, "plot_attention")
    if weights.dim() != 2 or weights.size(0) != weights.size(1):   # the labels go on both axes
        raise UsageError(f"plot_attention expects one (T, T) matrix, got shape {tuple(weights.shape)}; "
                         "index a layer, batch row and head first, e.g. maps[layer, 0, head].")
    _check_tokens(tokens, "plot_attention")
    if len(tokens) != weights.size(0):       # labels on the wrong rows would mislead silently
        raise UsageError(f"plot_attention got a {weights.size(0)}x{weights.size(1)} matrix but "
                         f"{len(tokens)} token labels; pass one label per position (the decoded tokens "
                         "of the input the maps came from).")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.imshow(weights.numpy(), cmap=cmap, vmin=0.0, vmax=1.0)
    labels = _labels(tokens)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel(tr_figure("key (attended to)"), **figure_font())
    ax.set_ylabel(tr_figure("query (attending)"), **figure_font())
    if title:
        ax.set_title(title, fontsize=9, **figure_font())
    return ax


def plot_attention_head(model, tokenizer, text: str, layer: int, head: int, ax=None,
                        size: float = 6.0):
    """One head of `model` on `text`, large, with the characters on both axes and each row's
    strongest key outlined; the title names the layer, the head and the text (newlines shown
    as ↵). Returns the axes. The live version of this view is chapter 10's explorer
    (`minigpt.web.widgets.attention_explorer`)."""
    import matplotlib.pyplot as plt
    n_layer, n_head = model.config.n_layer, model.config.n_head
    if not (is_whole_number(layer, 0) and layer < n_layer and is_whole_number(head, 0) and head < n_head):
        raise UsageError(f"layer must be a whole number in 0..{n_layer - 1} and head in 0..{n_head - 1}, "
                         f"got layer={layer!r}, head={head!r}.")
    if not isinstance(text, str) or not text:
        raise UsageError(f"text must be a non-empty string to draw attention over, got {text!r}.")
    ids = tokenizer.encode(text)
    idx = torch.tensor([ids], device=model.device)
    weights = model.attention_maps(idx)[layer, 0, head].float().cpu()       # (T, T)
    if ax is None:
        _, ax = plt.subplots(figsize=(size, size))
    # one label per token, not per character: a BPE token spans several characters
    plot_attention(weights, [tokenizer.decode([i]) for i in ids], ax=ax)
    T = len(ids)
    for i in range(T):                               # outline where each query looks most
        j = int(weights[i].argmax())
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", lw=1.2))
    fontsize = max(6, min(11, int(220 / max(T, 1))))
    ax.tick_params(labelsize=fontsize)
    shown = text.replace("\n", "↵")
    ax.set_title(tr_figure("layer {layer}, head {head} on {text}", layer=layer, head=head,
                           text=shown[:48] + ("…" if len(shown) > 48 else "")), fontsize=10, **figure_font())
    return ax


def plot_attention_grid(maps: torch.Tensor, tokens: Sequence[str], layers: Optional[Sequence[int]] = None,
                        heads: Optional[Sequence[int]] = None, size: float = 2.2):
    """A grid of heatmaps, one row per layer and one column per head, for maps (L, H, T, T)."""
    import matplotlib.pyplot as plt
    maps = _as_maps(maps, "plot_attention_grid")
    _check_tokens(tokens, "plot_attention_grid")
    if maps.dim() in (4, 5) and 0 in maps.shape:
        raise UsageError(f"plot_attention_grid got maps of shape {tuple(maps.shape)}, with nothing to draw along "
                         "a dimension of size 0.")
    if maps.dim() == 5:          # (L, B, H, T, T) as returned by MiniGPT.attention_maps
        maps = maps[:, 0]
    if maps.dim() != 4:
        raise UsageError(f"plot_attention_grid expects maps of shape (L, H, T, T) or (L, B, H, T, T), "
                         f"got {tuple(maps.shape)}; for one layer's (H, T, T) maps pass maps[None].")
    layers = list(range(maps.size(0))) if layers is None else list(layers)
    heads = list(range(maps.size(1))) if heads is None else list(heads)
    for what, chosen, count in (("layers", layers, maps.size(0)), ("heads", heads, maps.size(1))):
        if not chosen or not all(is_whole_number(i) and -count <= i < count for i in chosen):
            raise UsageError(f"plot_attention_grid's {what} must be a non-empty list of numbers in 0..{count - 1} "
                             f"(these maps have {count}), got {chosen!r}.")
    fig, axes = plt.subplots(len(layers), len(heads), figsize=(size * len(heads), size * len(layers)),
                             squeeze=False)
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            ax = axes[r][c]
            ax.imshow(maps[layer, head].numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(tr_figure("head {head}", head=head), fontsize=9, **figure_font())
            if c == 0:
                ax.set_ylabel(tr_figure("layer {layer}", layer=layer), fontsize=9, **figure_font())
    if len(tokens) <= 40:
        fig.suptitle(tr_figure("rows: query position, columns: key position; text: {text}",
                               text="".join(tokens)[:60]), fontsize=9, **figure_font())
    fig.tight_layout()
    return fig


def plot_next_token_probs(probs: torch.Tensor, tokens: Sequence[str], k: int = 15, ax=None,
                          title: Optional[str] = None, order: Optional[Sequence[int]] = None):
    """Bar chart of a next-token distribution probs (V,): the k most likely tokens, best first.

    Pass `order` (token ids) to keep the same bars in the same places across several panels,
    e.g. the top-k of the unfiltered distribution, so filtered-out tokens show as empty slots.
    """
    import matplotlib.pyplot as plt
    if not isinstance(probs, torch.Tensor) or probs.dim() > 1 and probs.size(0) != 1 or probs.dim() > 2:
        got = tuple(probs.shape) if isinstance(probs, torch.Tensor) else type(probs).__name__
        raise UsageError(f"plot_next_token_probs draws one distribution: a tensor of shape (V,) or (1, V), got "
                         f"{got}; pick one row, e.g. probs[0].")
    # a 16-bit softmax sums to 1 only within its rounding (bf16: 3 significant digits)
    sum_tolerance = 2e-2 if probs.dtype in (torch.float16, torch.bfloat16) else 1e-3
    probs = probs.detach().float().cpu().reshape(-1)
    _check_tokens(tokens, "plot_next_token_probs")
    if probs.numel() != len(tokens):
        raise UsageError(f"got {probs.numel()} probabilities but {len(tokens)} token labels; pass the "
                         "tokenizer's characters (tokenizer.chars), one label per token id.")
    total, lowest = float(probs.sum()), float(probs.min())
    # raw logits drawn on a 0..1 "probability" axis would look like a plot and mean nothing
    if not (lowest >= 0 and abs(total - 1) < sum_tolerance):
        raise UsageError(f"these are not probabilities (smallest {lowest:.3g}, sum {total:.4g}, not >= 0 and 1): "
                         "pass next_token_probs(logits) or torch.softmax(logits, dim=-1), not the logits.")
    if not is_whole_number(k, 1):
        raise UsageError(f"k is the number of bars, a whole number >= 1, got {k!r}.")
    ids = list(order)[:k] if order is not None else probs.topk(min(k, probs.numel())).indices.tolist()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    labels = _labels([tokens[i] for i in ids])
    ax.bar(range(len(ids)), probs[ids].tolist(), color="#4c72b0")
    ax.set_xticks(range(len(ids)), labels, fontsize=9, family="monospace")
    ax.set_ylim(0, 1)
    ax.set_ylabel(tr_figure("probability"), **figure_font())
    if title:
        ax.set_title(title, fontsize=9, **figure_font())
    return ax


@torch.no_grad()
def layer_logits(model, idx: torch.Tensor) -> torch.Tensor:
    """What each layer predicts (the "logit lens"): the final LayerNorm and the tied head applied
    to the residual stream after the embedding and after every block, as if the model stopped
    there. idx (B, T) -> logits (n_layer + 1, B, T, V); the last entry is model(idx)'s logits.
    The in-page twin is `Model.layerLogits` in minigpt/web/static/minigpt-web/model.js."""
    residuals = []                                   # each (B, T, C)
    hooks = [model.blocks[0].register_forward_pre_hook(lambda module, args: residuals.append(args[0]))]
    hooks += [block.register_forward_hook(lambda module, args, out: residuals.append(out))
              for block in model.blocks]
    was_training = model.training
    model.eval()                                     # no dropout in the picture
    try:
        model(idx)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return torch.stack([model.lm_head(model.ln_f(x)) for x in residuals])
