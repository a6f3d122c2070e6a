"""The HTML that places an in-page widget in a notebook output, and so in the book's page.

Each function returns a `WebWidget`: Jupyter shows its `_repr_html_`, nbval and plain text
see a short stable repr. The HTML is a `<div>` with the widget's settings as JSON, a
fallback sentence (what a reader without JavaScript, or an untrusted notebook, sees), and
`<script src>` tags for the shared files that Sphinx copies to `_build/html/minigpt-web/`
(see `html_extra_path` in `_config.yml`). The weights are one shared asset, loaded once per
page; the page's own HTML stays a few kilobytes.
"""

from __future__ import annotations

import html as html_lib
import json
from typing import Optional, Sequence, Union

from .export import DEFAULT_MODEL

# Where the shared files are, relative to a chapter page (notebooks/NN.html, book/x.html).
BASE = "../minigpt-web/"
NEEDS = ("This live view runs the model in your web browser: it needs JavaScript and the book's "
         "model file (minigpt-web/{model}.js), so it works in the rendered book, even offline, and "
         "not inside Jupyter, where the sliders above run the same model in your kernel.")


class WebWidget:
    """An in-page widget as a display object (the HTML is in `.data`)."""

    def __init__(self, kind: str, html: str, summary: str):
        self.kind, self.data, self.summary = kind, html, summary

    def _repr_html_(self) -> str:
        return self.data

    def __repr__(self) -> str:
        return f"WebWidget({self.kind}: {self.summary})"


def _widget(kind: str, scripts: Sequence[str], config: dict, base: str) -> str:
    config = dict(config, src=f"{base}{config['model']}.js")
    attr = html_lib.escape(json.dumps(config, sort_keys=True, ensure_ascii=False), quote=True)
    tags = "".join(f'<script src="{base}{name}"></script>' for name in ("model.js", "sampling.js", "widgets.js", *scripts))
    return (f'<link rel="stylesheet" href="{base}widgets.css">'
            f'<div class="mg-widget" data-mg-widget="{kind}" data-mg-config="{attr}">'
            f'<p class="mg-fallback">{html_lib.escape(NEEDS.format(model=config["model"]))}</p></div>'
            f"{tags}<script>window.MiniGPTWeb && MiniGPTWeb.mountAll && MiniGPTWeb.mountAll();</script>")


def generator(prompt: str = "ROMEO:\n", temperature: float = 0.8, top_k: Optional[int] = None,
              top_p: Optional[float] = None, seed: int = 0, length: int = 200,
              model: str = DEFAULT_MODEL, base: str = BASE) -> WebWidget:
    """Chapter 9's live generator: prompt, temperature/top-k/top-p sliders, seed, Generate."""
    from ..sampling import check_sampling_settings
    check_sampling_settings(temperature, top_k, top_p)
    if not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}.")
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive number of characters, got {length!r}.")
    config = {"model": model, "prompt": prompt, "temperature": temperature, "top_k": top_k,
              "top_p": top_p, "seed": seed, "length": length}
    html = _widget("generator", ["generator.js"], config, base)
    return WebWidget("generator", html, f"prompt {prompt!r}, temperature {temperature}, seed {seed}")


def attention_explorer(texts: Union[Sequence[str], dict], layer: int = 0, head: int = 0,
                       max_chars: int = 128, model: str = DEFAULT_MODEL, base: str = BASE) -> WebWidget:
    """Chapter 10's attention explorer over prepared `texts` (a list, or {label: text}) and the
    reader's own text: layer/head pickers, a labelled heatmap with hover, all heads small."""
    if isinstance(texts, dict):
        items = [{"label": str(k), "text": str(v)} for k, v in texts.items()]
    else:
        items = [{"label": (t[:28] + "…" if len(t) > 29 else t).replace("\n", "↵"), "text": t} for t in texts]
    if not items:
        raise ValueError("give at least one prepared text for the explorer.")
    too_long = [t["label"] for t in items if len(t["text"]) > max_chars]
    if too_long:
        raise ValueError(f"prepared texts longer than max_chars={max_chars}: {too_long}; shorten them.")
    config = {"model": model, "texts": items, "layer": layer, "head": head, "max_chars": max_chars}
    html = _widget("attention", ["attention_explorer.js"], config, base)
    return WebWidget("attention explorer", html, f"{len(items)} prepared texts, layer {layer} head {head}")


def standalone_page(widgets: Sequence[WebWidget], title: str = "minigpt in the page") -> str:
    """A complete HTML document around `widgets` (tests and the benchmark open it from file://).
    Build the widgets with base=STATIC_DIR.as_uri() + "/" so their scripts are found."""
    body = "\n".join(w.data for w in widgets)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html_lib.escape(title)}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
            f'<body style="font-family:sans-serif;margin:1rem">{body}</body></html>')
