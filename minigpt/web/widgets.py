"""The HTML that places an in-page widget in a notebook output, and so in the book's page;
and the kernel-side attention explorer (ipywidgets) that Jupyter and Colab show instead.

Each in-page function returns a `WebWidget`: Jupyter shows its `_repr_html_`, nbval and plain
text see a short stable repr. The HTML is a `<div>` with the widget's settings as JSON, a
fallback sentence (what a reader without JavaScript, or an untrusted notebook, sees), and the
inline `loader.js`, which adds `<script src>` tags for the shared files that Sphinx copies to
`_build/html/minigpt-web/` (see `html_extra_path` in `_config.yml`). Inside a Jupyter output
area the loader requests nothing (those files are not served there) and shows the widget's
Jupyter text instead. The weights are one shared asset, loaded once per page; the page's own
HTML stays a few kilobytes.

Language: what this module writes for a reader (the fallback and Jupyter sentences, example
labels, the kernel explorer's controls and messages) goes through `minigpt.tr`, so after
`minigpt.set_language("zh")` it is Chinese (entries in minigpt/locale/zh/widgets.json). The
in-page widgets choose their own language from the page's `<html lang>` (see widgets.js).
"""

from __future__ import annotations

import html as html_lib
import json
from functools import lru_cache
from typing import Optional, Sequence, Union

from ..errors import UsageError, is_whole_number
from ..language import tr
from .export import DEFAULT_MODEL, STATIC_DIR

# Where the shared files are, relative to a chapter page (notebooks/NN.html, book/x.html).
BASE = "../minigpt-web/"


def _needs(model: str, jupyter: str) -> str:
    return tr("This live view runs the model in your web browser: it needs JavaScript and the book's "
              "model file (minigpt-web/{model}.js), so it works in the rendered book, even offline. {jupyter}",
              model=model, jupyter=jupyter)


def _jupyter_text(kind: str) -> str:
    """What each widget says inside Jupyter, where its files are not served: where to look instead."""
    if kind == "generator":
        return tr("Inside Jupyter, the sliders above run the same model in your kernel.")
    if kind == "attention":
        return tr("Inside Jupyter, the next cell's explorer (minigpt.web.widgets.kernel_attention_explorer) "
                  "runs the same model in your kernel.")
    return tr("Inside Jupyter, the cell above computes the same table in your kernel: change its text and "
              "position and run it again.")


SCRIPTS = {"generator": ["generator.js"], "attention": ["attention_explorer.js"], "layers": ["layer_lens.js"]}


def _bad(message: str) -> UsageError:
    return UsageError(message)


class WebWidget:
    """An in-page widget as a display object (the HTML is in `.data`)."""

    def __init__(self, kind: str, html: str, summary: str):
        self.kind, self.data, self.summary = kind, html, summary

    def _repr_html_(self) -> str:
        return self.data

    def __repr__(self) -> str:
        return f"WebWidget({self.kind}: {self.summary})"


def _widget(kind: str, config: dict, base: str) -> str:
    config = dict(config, src=f"{base}{config['model']}.js")
    attr = html_lib.escape(json.dumps(config, sort_keys=True, ensure_ascii=False), quote=True)
    scripts = ["model.js", "sampling.js", "widgets.js", *SCRIPTS[kind]]
    jupyter = _jupyter_text(kind)
    needs = _needs(config["model"], jupyter)
    loader = (STATIC_DIR / "loader.js").read_text(encoding="utf-8").replace("</", "<\\/")
    return (f'<div class="mg-widget" data-mg-widget="{kind}" data-mg-config="{attr}" '
            f'data-mg-base="{html_lib.escape(base, quote=True)}" '
            f'data-mg-scripts="{html_lib.escape(json.dumps(scripts), quote=True)}" '
            f'data-mg-jupyter="{html_lib.escape(jupyter, quote=True)}">'
            f'<p class="mg-fallback">{html_lib.escape(needs)}</p></div>'
            f"<script>{loader}</script>")


@lru_cache(maxsize=8)
def _asset_head_of(path: str, mtime_ns: int) -> dict:
    """The "config" and "chars" of an asset file, read without decoding its weights (a few MB
    of JSON); a field that is missing or unreadable is None."""
    from pathlib import Path
    text = Path(path).read_text(encoding="utf-8")
    head = {}
    for name, kind in (("config", dict), ("chars", str)):
        start = text.find(f'"{name}":')
        try:
            value = json.JSONDecoder().raw_decode(text, start + len(name) + 3)[0] if start >= 0 else None
        except ValueError:
            value = None
        head[name] = value if isinstance(value, kind) else None
    return head


def _asset_head(model: str) -> dict:
    """What the page will know of a model the package ships: its "config" (the model shape) and
    "chars" (the vocabulary); both None for a model it does not ship (the page checks then)."""
    from .export import asset_path
    path = asset_path(model)
    return _asset_head_of(str(path), path.stat().st_mtime_ns) if path.is_file() else {"config": None, "chars": None}


def _asset_config(model: str) -> Optional[dict]:
    return _asset_head(model)["config"]


def _check_known_characters(text: str, model: str, what: str) -> None:
    """A text the page would refuse (a character the model does not know) is refused here, where
    the chapter's author sees it, not by a widget that cannot start on the reader's page."""
    from ..data import CharTokenizer
    chars = _asset_head(model)["chars"]
    if chars is None:
        return
    problem = unknown_character_message(CharTokenizer(list(chars)), text)
    if problem:
        raise _bad(f"{what}: {problem}")


def _whole(value, low: int, high: int, what: str) -> None:
    if not is_whole_number(value, low) or value > high:
        raise _bad(f"{what} must be a whole number from {low} to {high}, got {value!r}.")


def _check_max_chars(max_chars, shape: Optional[dict], prepared: Sequence[tuple] = ()) -> None:
    """A text the page reads must fit the model's window (the explorer and the layer view), and
    each prepared (label, text) must fit max_chars."""
    _whole(max_chars, 1, shape["block_size"] if shape else 10 ** 6,
           "max_chars" + (f" (the model reads at most {shape['block_size']} characters)" if shape else ""))
    too_long = [label for label, text in prepared if len(text) > max_chars]
    if too_long:
        raise _bad(f"prepared texts longer than max_chars={max_chars}: {too_long}; shorten them.")


def _check_string(value, what: str) -> None:
    """A text setting is a str (None or a number failed later, inside len() or slicing)."""
    if not isinstance(value, str):
        raise _bad(f"{what} must be a string, got {type(value).__name__} {value!r}.")


def _check_texts(texts) -> None:
    """The explorers' prepared texts: a list of strings or a {label: text} dict, at least one.
    One string alone was split into one-character texts, a dropdown of single letters."""
    if isinstance(texts, str):
        raise _bad(f"texts must be a list of texts (or {{label: text}}), got one string {texts[:20]!r}; "
                   "pass it in a list: [text].")
    if not isinstance(texts, (dict, list, tuple)):
        raise _bad(f"texts must be a list of texts (or {{label: text}}), got {type(texts).__name__}.")
    for text in (texts.values() if isinstance(texts, dict) else texts):
        _check_string(text, "each prepared text")
    if not texts:
        raise _bad("give at least one prepared text for the explorer.")


def _on_steps(value: float, step: float) -> bool:
    return abs(value / step - round(value / step)) < 1e-6


def _check_page_settings(where: str, temperature, top_k, top_p, seed, max_new_tokens,
                         config: Optional[dict]) -> None:
    """Settings the page's controls can show as given. A range slider snaps to its steps and
    clamps to its ends (temperature 0.01 would become 0, greedy) and a text field refuses what
    it cannot read, so anything else is refused here, where the chapter's code sets it."""
    from ..sampling import check_sampling_settings
    check_sampling_settings(temperature, top_k, top_p)
    if not (temperature == 0 or 0.05 <= temperature <= 2 and _on_steps(temperature, 0.05)):
        raise _bad(f"{where}temperature {temperature!r}: the page's slider goes from 0 (greedy) to 2 in steps "
                   "of 0.05; pick one of those values.")
    if top_p is not None and not (0.05 <= top_p <= 1 and _on_steps(top_p, 0.01)):
        raise _bad(f"{where}top_p {top_p!r}: the page's slider goes from 0.05 to 1 in steps of 0.01; pick one "
                   "of those values (or None).")
    _whole(seed, 0, 2 ** 32 - 1, f"{where}seed")
    if config is not None:
        if top_k is not None:
            _whole(top_k, 1, config["vocab_size"], f"{where}top_k (the model has {config['vocab_size']} tokens)")
        if max_new_tokens is not None:
            _whole(max_new_tokens, 1, config["block_size"] - 1,
                   f"{where}max_new_tokens (the page generates inside the {config['block_size']}-character window)")
    elif max_new_tokens is not None:
        _whole(max_new_tokens, 1, 10 ** 6, f"{where}max_new_tokens")


def _example(example: dict, config: Optional[dict] = None) -> dict:
    """One "Try:" button of the generator: a label, a prompt and the settings it sets."""
    if not isinstance(example, dict) or "label" not in example or "prompt" not in example:
        raise _bad(f"an example needs at least a 'label' and a 'prompt', got {example!r}.")
    unknown = set(example) - {"label", "prompt", "temperature", "top_k", "top_p", "seed", "max_new_tokens", "note"}
    if unknown:
        raise _bad(f"unknown example keys {sorted(unknown)}; use label, prompt, temperature, top_k, top_p, "
                   "seed, max_new_tokens, note.")
    out = {"temperature": 1.0, "top_k": None, "top_p": None, "seed": 0, **example}
    _check_page_settings(f"example {out['label']!r}: ", out["temperature"], out["top_k"], out["top_p"],
                         out["seed"], out.get("max_new_tokens"), config)
    out["label"] = tr(str(out["label"]))            # the chapter's label, in the reader's language
    if out.get("note"):
        out["note"] = tr(str(out["note"]))
    return out


def generator(prompt: str = "ROMEO:\n", temperature: float = 0.8, top_k: Optional[int] = None,
              top_p: Optional[float] = None, seed: int = 0, max_new_tokens: int = 200,
              model: str = DEFAULT_MODEL, base: str = BASE,
              examples: Sequence[dict] = ()) -> WebWidget:
    """Chapter 9's live generator: prompt, temperature/top-k/top-p sliders, seed, Generate.
    `examples`: one-click "Try:" buttons, each {label, prompt, temperature, top_k, top_p, seed}
    (optional: max_new_tokens, note), that set the widget and generate. `max_new_tokens` is the
    number of characters to generate, the name `generate` and the CLI use."""
    _check_string(prompt, "prompt")
    if not prompt:                        # the page refuses to generate from nothing: say it here
        raise _bad("the prompt is empty: give at least one character to continue, e.g. 'ROMEO:\\n'.")
    if not isinstance(examples, (list, tuple)) or not all(isinstance(e, dict) for e in examples):
        raise _bad(f"examples must be a list of dicts ({{label, prompt, temperature, ...}}), got {examples!r}.")
    shape = _asset_config(model)
    _check_page_settings("", temperature, top_k, top_p, seed, max_new_tokens, shape)
    for label, text in [("prompt", prompt), *((f"example {e.get('label')!r}", e.get("prompt", ""))
                                              for e in examples if isinstance(e, dict))]:
        _check_known_characters(text, model, label)
    config = {"model": model, "prompt": prompt, "temperature": temperature, "top_k": top_k,
              "top_p": top_p, "seed": seed, "max_new_tokens": max_new_tokens,
              "examples": [_example(e, shape) for e in examples]}
    html = _widget("generator", config, base)
    return WebWidget("generator", html, f"prompt {prompt!r}, temperature {temperature}, seed {seed}"
                     + (f", {len(examples)} examples" if examples else ""))


def attention_explorer(texts: Union[Sequence[str], dict], layer: int = 0, head: int = 0,
                       max_chars: int = 128, model: str = DEFAULT_MODEL, base: str = BASE) -> WebWidget:
    """Chapter 10's attention explorer over prepared `texts` (a list, or {label: text}) and the
    reader's own text: layer/head pickers, a labelled heatmap with hover, all heads small."""
    _check_texts(texts)
    if isinstance(texts, dict):
        items = [{"label": tr(str(k)), "text": str(v)} for k, v in texts.items()]
    else:
        items = [{"label": (t[:28] + "…" if len(t) > 29 else t).replace("\n", "↵"), "text": t} for t in texts]
    shape = _asset_config(model)
    if shape is not None:                 # the page's pickers hold these layers and heads only
        _whole(layer, 0, shape["n_layer"] - 1, f"layer (the model has {shape['n_layer']} layers)")
        _whole(head, 0, shape["n_head"] - 1, f"head (the model has {shape['n_head']} heads)")
    _check_max_chars(max_chars, shape, [(t["label"], t["text"]) for t in items])
    for item in items:
        _check_known_characters(item["text"], model, f"prepared text {item['label']!r}")
    config = {"model": model, "texts": items, "layer": layer, "head": head, "max_chars": max_chars}
    html = _widget("attention", config, base)
    return WebWidget("attention explorer", html, f"{len(items)} prepared texts, layer {layer} head {head}")


def layer_predictions(text: str, position: Optional[int] = None, top_k: int = 5, max_chars: int = 128,
                      model: str = DEFAULT_MODEL, base: str = BASE) -> WebWidget:
    """Chapter 10's "what each layer predicts" view: for a chosen position of `text` (default:
    the last), the top `top_k` next characters after the embedding and after each block (the
    final LayerNorm and the tied head applied to the residual stream, `minigpt.viz.layer_logits`)."""
    _check_string(text, "text")
    shape = _asset_config(model)
    _check_max_chars(max_chars, shape)
    if not text or len(text) > max_chars:
        raise _bad(f"text must have 1 to {max_chars} characters, got {len(text)}.")
    if position is not None and not (is_whole_number(position, 0) and position < len(text)):
        raise _bad(f"position must be a whole number in 0..{len(text) - 1} for this text, got {position!r}.")
    _check_known_characters(text, model, "text")
    _whole(top_k, 1, 10, "top_k")
    config = {"model": model, "text": text, "position": position, "top_k": top_k, "max_chars": max_chars}
    return WebWidget("layers", _widget("layers", config, base),
                     f"{len(text)} characters, position {len(text) - 1 if position is None else position}")


def standalone_page(widgets: Sequence[WebWidget], title: str = "minigpt in the page", lang: str = "en") -> str:
    """A complete HTML document around `widgets` (tests and the benchmark open it from file://).
    Build the widgets with base=STATIC_DIR.as_uri() + "/" so their scripts are found. `lang`
    is the page's language ("zh-CN" makes the widgets speak Chinese, as in the Chinese book)."""
    if isinstance(widgets, WebWidget):
        widgets = [widgets]               # one widget is a page of one
    body = "\n".join(w.data for w in widgets)
    return (f'<!DOCTYPE html><html lang="{html_lib.escape(lang, quote=True)}"><head><meta charset="utf-8">'
            f'<title>{html_lib.escape(title)}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
            f'<body style="font-family:sans-serif;margin:1rem">{body}</body></html>')


# ------------------------------------------------------------- the same explorer, in the kernel
@lru_cache(maxsize=None)
def _shakespeare_chars() -> frozenset:
    from ..data import load_shakespeare
    return frozenset(load_shakespeare())


def unknown_character_message(tokenizer, text: str) -> Optional[str]:
    """The first character of `text` that `tokenizer` does not know, said the way the page says
    it (with the vocabulary named: a reader who types Chinese learns why it cannot work), or None."""
    known = tokenizer.stoi
    for position, ch in enumerate(text):
        if ch in known:
            continue
        fields = dict(character=json.dumps(ch, ensure_ascii=False), code=f"U+{ord(ch):04X}", position=position,
                      n=len(known))
        if set(known) == _shakespeare_chars():
            return tr("character {character} ({code}) at position {position} is not in this model's {n}-character "
                      "vocabulary: it knows only the {n} characters of tinyshakespeare (English letters, punctuation, "
                      "space and newline). Remove or replace it.", **fields)
        return tr("character {character} ({code}) at position {position} is not in this model's {n}-character "
                  "vocabulary. Remove or replace it.", **fields)
    return None


class KernelAttentionExplorer:
    """Chapters 4 and 10's attention explorer for a live notebook (JupyterLab, Notebook, Colab),
    where the in-page widget's files are not served: ipywidgets controls run in the kernel.

    The same controls as the page: a prepared text or your own, layer, head, and a readout of
    one query/key cell (picked with two sliders: a kernel cannot follow the mouse over a
    picture). The maps are `model.attention_maps`, computed once per text; a layer, head or
    cursor change redraws the picture only. `.widget` is the ipywidgets box. Its words follow
    `minigpt.set_language` at the time it is made (the readout and messages as they are said).
    """

    def __init__(self, model, tokenizer, texts: Union[Sequence[str], dict], layer: int = 0, head: int = 0,
                 max_chars: Optional[int] = None):
        import ipywidgets as w
        from ..data import CharTokenizer
        if not isinstance(tokenizer, CharTokenizer):      # the maps are labelled character by character
            raise _bad(f"the explorer labels its maps with characters, and this tokenizer is a "
                       f"{type(tokenizer).__name__}: use a character-level model (chapter 15's BPE tokens "
                       "span several characters).")
        _check_texts(texts)
        cfg = model.config
        items = ([(tr(str(label)), text) for label, text in texts.items()] if isinstance(texts, dict)
                 else [(t.replace("\n", "↵")[:28], t) for t in texts])
        # A text longer than the model's window has no attention map: cap the box at the window.
        max_chars = min(128, cfg.block_size) if max_chars is None else max_chars
        _check_max_chars(max_chars, {"block_size": cfg.block_size}, items)
        if not (is_whole_number(layer, 0) and is_whole_number(head, 0) and layer < cfg.n_layer
                and head < cfg.n_head):
            raise _bad(f"layer must be in 0..{cfg.n_layer - 1} and head in 0..{cfg.n_head - 1}, "
                       f"got layer={layer!r}, head={head!r}.")
        self.model, self.tokenizer, self.texts, self.max_chars = model, tokenizer, items, max_chars
        self.chars: list[str] = []
        self.maps = None                                  # (L, H, T, T) on the CPU
        self.draws = 0
        self._quiet = False
        wide = w.Layout(width="36em")
        self.preset = w.Dropdown(options=[(label, i) for i, (label, _) in enumerate(items)] + [(tr("your own text"), -1)],
                                 value=0, description=tr("text"), layout=wide)
        self.text = w.Textarea(value=items[0][1], continuous_update=False, layout=w.Layout(width="36em", height="4em"),
                               placeholder=tr("your own text, at most {n} characters", n=max_chars))
        self.error = w.HTML()
        self.layer = w.Dropdown(options=list(range(cfg.n_layer)), value=layer, description=tr("layer"),
                                layout=w.Layout(width="12em"))
        self.head = w.Dropdown(options=list(range(cfg.n_head)), value=head, description=tr("head"),
                               layout=w.Layout(width="12em"))
        self.query = w.IntSlider(value=0, min=0, max=0, description=tr("query ↓"), continuous_update=False, layout=wide)
        self.key = w.IntSlider(value=0, min=0, max=0, description=tr("key →"), continuous_update=False, layout=wide)
        self.image = w.Image(format="png", layout=w.Layout(width="30em"))
        self.readout = w.HTML()
        self.preset.observe(self._on_preset, names="value")
        self.text.observe(lambda change: self.compute(), names="value")
        for control in (self.layer, self.head, self.query, self.key):
            control.observe(lambda change: self.draw(), names="value")
        self.widget = w.VBox([self.preset, self.text, self.error, w.HBox([self.layer, self.head]),
                              self.query, self.key, self.readout, self.image])
        self.compute()

    def _on_preset(self, change) -> None:
        if change["new"] >= 0:
            self.text.value = self.texts[change["new"]][1]        # its observer recomputes

    def compute(self) -> None:
        """Read the text box: new maps, or the reason there are none (the old picture is removed)."""
        import torch
        text = self.text.value
        if self.preset.value >= 0 and text != self.texts[self.preset.value][1]:
            self.preset.value = -1
        if not text:
            problem = tr("the text is empty: type at least one character.")
        elif len(text) > self.max_chars:
            problem = tr("the text has {n} characters; the explorer shows at most {max}: shorten it.",
                         n=len(text), max=self.max_chars)
        else:
            problem = unknown_character_message(self.tokenizer, text)
        if problem:
            self.error.value = f"<span style='color:#c62828'>{html_lib.escape(problem)}</span>"
            self.maps, self.chars = None, []
            self.image.value = b""
            self.readout.value = tr("No map: fix the text above.")
            return
        ids = self.tokenizer.encode(text)
        self.error.value = ""
        idx = torch.tensor([ids], device=self.model.device)
        self.maps = self.model.attention_maps(idx)[:, 0].float().cpu()        # (L, H, T, T)
        self.chars = list(text)
        T = len(self.chars)
        self._quiet = True                                      # one draw, after both sliders fit the text
        try:
            for slider in (self.query, self.key):
                slider.max = T - 1
                slider.value = min(slider.value, T - 1)
        finally:
            self._quiet = False
        self.draw()

    def readout_text(self) -> str:
        """What the cursor (query, key) reads in the current head, worded as the page's readout."""
        i, j, layer, head = self.query.value, self.key.value, self.layer.value, self.head.value
        q, k = json.dumps(self.chars[i], ensure_ascii=False), json.dumps(self.chars[j], ensure_ascii=False)
        if j > i:
            return tr("query {query} (position {i}) cannot see key {key} (position {j}): it is in the future (masked).",
                      query=q, i=i, key=k, j=j)
        return tr("query {query} (position {i}) → key {key} (position {j}): weight {weight} (layer {layer}, head {head})",
                  query=q, i=i, key=k, j=j, weight=f"{float(self.maps[layer, head, i, j]):.4f}", layer=layer, head=head)

    def draw(self) -> None:
        """The current head as a PNG with the cursor outlined, and the readout."""
        if self.maps is None or self._quiet:
            return
        import io
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle
        from ..viz import figure_font, plot_attention, tr_figure
        layer, head, T = self.layer.value, self.head.value, len(self.chars)
        fig = Figure(figsize=(5.2, 4.6))
        ax = fig.subplots()
        plot_attention(self.maps[layer, head], self.chars, ax=ax,
                       title=tr_figure("layer {layer}, head {head}: query ↓, key →", layer=layer, head=head))
        if T > 40:                                              # letters would overlap: position ticks
            ticks = list(range(0, T, 10))
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.set_yticks(ticks, [str(t) for t in ticks])
        fig.colorbar(ax.images[0], ax=ax, shrink=0.8).set_label(tr_figure("attention weight"), **figure_font())
        ax.add_patch(Rectangle((self.key.value - 0.5, self.query.value - 0.5), 1, 1, fill=False,
                               edgecolor="red", lw=1.5))
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
        self.image.value = buffer.getvalue()
        self.readout.value = f"<code>{html_lib.escape(self.readout_text())}</code>"
        self.draws += 1

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)

    def __repr__(self) -> str:
        return f"KernelAttentionExplorer({len(self.texts)} prepared texts, layer {self.layer.value} head {self.head.value})"


def kernel_attention_explorer(model, tokenizer, texts: Union[Sequence[str], dict], layer: int = 0,
                              head: int = 0, max_chars: Optional[int] = None) -> KernelAttentionExplorer:
    """The attention explorer for a live notebook (ipywidgets in the kernel): see
    `KernelAttentionExplorer`. The rendered book uses `attention_explorer` instead. `max_chars`
    (the longest text the box takes) defaults to 128 or the model's window, whichever is less."""
    return KernelAttentionExplorer(model, tokenizer, texts, layer, head, max_chars)
