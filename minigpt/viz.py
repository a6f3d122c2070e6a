"""Plots used by the book (matplotlib, imported lazily): attention heatmaps, loss curves and
next-token bar charts, plus the offline HTML sampling explorer."""

from __future__ import annotations

import hashlib
import html as html_lib
import json
import math
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


def plot_attention_head(model, tokenizer, text: str, layer: int, head: int, ax=None,
                        size: float = 6.0):
    """One head of `model` on `text`, large, with the characters on both axes and each row's
    strongest key outlined; the title names the layer, the head and the text (newlines shown
    as ↵). Returns the axes. The live version of this view is chapter 10's explorer
    (`minigpt.web.widgets.attention_explorer`)."""
    import matplotlib.pyplot as plt
    n_layer, n_head = model.config.n_layer, model.config.n_head
    if not 0 <= layer < n_layer or not 0 <= head < n_head:
        raise ValueError(f"layer must be in 0..{n_layer - 1} and head in 0..{n_head - 1}, "
                         f"got layer={layer}, head={head}.")
    idx = torch.tensor([tokenizer.encode(text)], device=model.device)
    weights = model.attention_maps(idx)[layer, 0, head].float().cpu()       # (T, T)
    if ax is None:
        _, ax = plt.subplots(figsize=(size, size))
    plot_attention(weights, list(text), ax=ax)
    T = len(text)
    for i in range(T):                               # outline where each query looks most
        j = int(weights[i].argmax())
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", lw=1.2))
    fontsize = max(6, min(11, int(220 / max(T, 1))))
    ax.tick_params(labelsize=fontsize)
    shown = text.replace("\n", "↵")
    ax.set_title(f"layer {layer}, head {head} on {shown[:48]!s}{'…' if len(shown) > 48 else ''}",
                 fontsize=10)
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
    if len(tokens) <= 40:
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


def plot_next_token_probs(probs: torch.Tensor, tokens: Sequence[str], k: int = 15, ax=None,
                          title: Optional[str] = None, order: Optional[Sequence[int]] = None):
    """Bar chart of a next-token distribution probs (V,): the k most likely tokens, best first.

    Pass `order` (token ids) to keep the same bars in the same places across several panels,
    e.g. the top-k of the unfiltered distribution, so filtered-out tokens show as empty slots.
    """
    import matplotlib.pyplot as plt
    probs = probs.detach().float().cpu().reshape(-1)
    if probs.numel() != len(tokens):
        raise ValueError(f"got {probs.numel()} probabilities but {len(tokens)} token labels.")
    ids = list(order)[:k] if order is not None else probs.topk(min(k, probs.numel())).indices.tolist()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    labels = _labels([tokens[i] for i in ids])
    ax.bar(range(len(ids)), probs[ids].tolist(), color="#4c72b0")
    ax.set_xticks(range(len(ids)), labels, fontsize=9, family="monospace")
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    if title:
        ax.set_title(title, fontsize=9)
    return ax

# ---------------------------------------------------------------- sampling explorer (static HTML)
# The book is a static site, so ipywidgets callbacks cannot run there. The explorer below is a
# self-contained HTML snippet: the raw logits travel as JSON, and a few lines of inline
# JavaScript (no external scripts, works offline) re-apply temperature, top-k and top-p with the
# same rules as `minigpt.next_token_probs` whenever a slider moves (the JavaScript lives in
# minigpt/web/static/minigpt-web/: sampling.js and sampling_explorer.js). `explorer_probs` is
# the line-by-line Python twin of the JavaScript filter; it draws the initial bars (so the page reads
# even with scripts off) and the tests check it against `next_token_probs`.

def _web_file(name: str) -> str:
    from .web import STATIC_DIR
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def explorer_javascript(uid: str, payload: str) -> str:
    """The explorer's script: sampling.js (the filters) + sampling_explorer.js (the UI)."""
    return (_web_file("sampling.js") + _web_file("sampling_explorer.js").replace("__UID__", json.dumps(uid))
            .replace("__DATA__", payload.replace("</", "<\\/")))



def explorer_probs(logits: Sequence[float], temperature: float = 1.0, top_k: Optional[int] = None,
                   top_p: Optional[float] = None) -> list[float]:
    """Plain-Python twin of the explorer's JavaScript filter (same steps, same order).

    It must agree with `minigpt.next_token_probs`; the tests check that it does.
    """
    logits = [float(x) for x in logits]
    V = len(logits)
    k = V if top_k is None else min(int(top_k), V)
    p = 1.0 if top_p is None else float(top_p)
    order = sorted(range(V), key=lambda i: (-logits[i], i))             # best first, ties by id
    probs = [0.0] * V
    if temperature == 0:                                                 # greedy
        probs[order[0]] = 1.0
        return probs
    kept = order[:k]                                                     # top-k keeps exactly k
    top = logits[kept[0]] / temperature
    for j in kept:
        probs[j] = math.exp(logits[j] / temperature - top)
    total = sum(probs[j] for j in kept)
    for j in kept:
        probs[j] /= total
    if p < 1.0:                                                          # top-p, best token stays
        before = mass = 0.0
        for r, j in enumerate(kept):
            pj = probs[j]
            if r > 0 and before >= p:
                probs[j] = 0.0
            else:
                mass += pj
            before += pj
        for j in kept:
            probs[j] /= mass
    return probs


class SamplingExplorer:
    """The explorer as a display object: Jupyter shows `_repr_html_`, text shows a stable repr."""

    def __init__(self, html: str, n_tokens: int, n_shown: int, n_samples: int):
        self.data = html
        self.n_tokens, self.n_shown, self.n_samples = n_tokens, n_shown, n_samples

    def _repr_html_(self) -> str:
        return self.data

    def __str__(self) -> str:
        return self.data

    def __repr__(self) -> str:
        return (f"SamplingExplorer({self.n_tokens} tokens, {self.n_shown} bars, "
                f"{self.n_samples} precomputed samples)")


def _setting_label(temperature: float, top_k: Optional[int], top_p: Optional[float]) -> str:
    if temperature == 0:
        return "greedy (temperature 0)"
    parts = [f"temperature {temperature:g}"]
    if top_k is not None:
        parts.append(f"top-k {top_k}")
    if top_p is not None and top_p < 1.0:
        parts.append(f"top-p {top_p:g}")
    return ", ".join(parts)


def sampling_explorer_html(logits, labels: Sequence[str], temperature: float = 1.0,
                           top_k: Optional[int] = None, top_p: Optional[float] = None,
                           n_show: int = 12, samples: Optional[Sequence[dict]] = None,
                           title: Optional[str] = None, uid: Optional[str] = None) -> SamplingExplorer:
    """Self-contained HTML sliders (temperature, top-k, top-p) over one next-token distribution.

    logits: (V,) raw next-token logits (a tensor or a list); labels: the V token strings, e.g.
    `tokenizer.chars`. The bars show the `n_show` most likely tokens (fixed order, so you see
    them shrink to zero as filters cut them) and the mass of all the others. `samples` is an
    optional list of dicts with keys temperature, top_k, top_p (None = off) and text: the
    explorer shows the one whose settings are nearest to the sliders'. Nothing is fetched from
    the network; the element id is derived from the content, so the output is deterministic.
    Returns a `SamplingExplorer`; its `.data` is the HTML string.
    """
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().float().cpu().reshape(-1).tolist()
    logits = [round(float(x), 4) for x in logits]
    V = len(logits)
    labels = [str(t) for t in labels]
    if len(labels) != V:
        raise ValueError(f"got {V} logits but {len(labels)} labels; pass one label per token.")
    if not all(math.isfinite(x) for x in logits):
        raise ValueError("logits must be finite: pass the raw logits, before any -inf masking.")
    n_show = max(1, min(int(n_show), V))
    k0 = V if top_k is None else min(int(top_k), V)
    p0 = 1.0 if top_p is None else float(top_p)
    show = sorted(range(V), key=lambda i: (-logits[i], i))[:n_show]
    sample_rows = []
    for s in samples or []:
        k, p = s.get("top_k"), s.get("top_p")
        sample_rows.append({"temperature": float(s["temperature"]),
                            "top_k": V if k is None else min(int(k), V),
                            "top_p": 1.0 if p is None else float(p),
                            "label": s.get("label") or _setting_label(float(s["temperature"]), k, p),
                            "text": str(s["text"])})
    shown_labels = _labels([labels[j] for j in show])
    payload = json.dumps({"logits": logits, "labels": labels, "show": show, "samples": sample_rows},
                         separators=(",", ":"), sort_keys=True)
    if uid is None:
        settings = f"{temperature}|{k0}|{p0}|{n_show}|{title}"
        uid = "mg-explorer-" + hashlib.sha1((payload + settings).encode("utf-8")).hexdigest()[:12]

    # the initial picture, drawn in Python with the twin of the JavaScript filter
    probs = explorer_probs(logits, temperature, top_k, top_p)
    kept = sum(1 for x in probs if x > 0)
    rest = max(0.0, 1.0 - sum(probs[j] for j in show))
    esc = html_lib.escape
    t_text = "0 (greedy)" if temperature == 0 else f"{temperature:.2f}"
    k_text = f"off ({V})" if k0 >= V else str(k0)
    p_text = "off (1.00)" if p0 >= 1.0 else f"{p0:.2f}"
    row_style = "display:flex;align-items:center;gap:6px;margin:1px 0"
    lab_style = "width:2.2em;text-align:right;font-family:monospace"
    track_style = "flex:1;background:#eee;height:14px;border-radius:2px"
    bar_style = "background:#4c72b0;height:14px;border-radius:2px"
    pct_style = "width:4.2em;text-align:right;font-variant-numeric:tabular-nums"
    rows = []
    for r, (j, lab) in enumerate(zip(show, shown_labels)):
        rows.append(
            f'<div style="{row_style}"><span style="{lab_style}">{esc(lab)}</span>'
            f'<div style="{track_style}"><div data-mg="bar{r}" style="{bar_style};'
            f'width:{100 * probs[j]:.2f}%"></div></div>'
            f'<span data-mg="pct{r}" style="{pct_style}">{100 * probs[j]:.1f}%</span></div>')
    sample_html = ""
    if sample_rows:
        def dist(s):
            return abs(s["temperature"] - temperature) / 2 + abs(s["top_k"] - k0) / V + abs(s["top_p"] - p0)
        first = min(sample_rows, key=dist)
        sample_html = (
            '<div style="margin-top:8px"><b>Precomputed seeded sample</b> nearest to the sliders: '
            f'<span data-mg="slabel">{esc(first["label"])}</span>'
            '<pre data-mg="stext" style="white-space:pre-wrap;background:#f7f7f7;padding:6px;'
            f'margin:4px 0;max-height:14em;overflow:auto">{esc(first["text"])}</pre></div>')

    def slider(name, key, lo, hi, step, value, text):
        return (f'<label style="display:flex;align-items:center;gap:6px;margin:2px 0">'
                f'<span style="width:7em">{name}</span>'
                f'<input type="range" data-mg="{key}" min="{lo}" max="{hi}" step="{step}" '
                f'value="{value}" style="flex:1">'
                f'<span data-mg="{key}v" style="width:6em">{text}</span></label>')

    header = f'<div style="font-weight:bold;margin-bottom:4px">{esc(title)}</div>' if title else ""
    js = explorer_javascript(uid, payload)
    html = (
        f'<div id="{esc(uid)}" class="minigpt-explorer" style="font-family:sans-serif;font-size:13px;'
        'max-width:640px;border:1px solid #ccc;border-radius:6px;padding:8px">'
        + header
        + slider("temperature", "T", 0, 2, 0.05, f"{temperature:g}", t_text)
        + slider("top-k", "k", 1, V, 1, k0, k_text)
        + slider("top-p", "p", 0.05, 1, 0.01, f"{p0:g}", p_text)
        + f'<div style="margin:4px 0">tokens kept: <span data-mg="kept">{kept}</span> of {V}</div>'
        + "".join(rows)
        + f'<div style="{row_style}"><span style="{lab_style}">…</span><span>all other {V - n_show} '
        f'tokens: <span data-mg="rest">{100 * rest:.1f}%</span></span></div>'
        + sample_html
        + '<div style="color:#777;font-size:11px;margin-top:4px">Drag the sliders: the bars are '
        'recomputed in your browser from the logits stored in this page (no server, no network).'
        '</div></div>'
        + f"<script>{js}</script>")
    return SamplingExplorer(html, V, n_show, len(sample_rows))
