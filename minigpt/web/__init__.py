"""The model in the page: a dependency-free JavaScript MiniGPT for the book's static HTML.

* `static/minigpt-web/*.js`: the forward pass, KV cache, prompt prefill, every layer's
  prediction and sampling (`model.js`, `sampling.js`) and the chapter widgets (`generator.js`,
  `attention_explorer.js`, `layer_lens.js`), plain readable files loaded with `<script>` tags
  by `loader.js` (which requests nothing inside Jupyter); `shakespeare_char.js` is the shipped model.
* `export.py`: `export_web` writes a model as such an asset; `load_web_model` reads it back
  into PyTorch (the reference the page is tested against).
* `widgets.py`: the HTML that puts a widget in a notebook output / book page, and the
  kernel-side attention explorer (ipywidgets) for Jupyter and Colab.
"""

from .export import (DEFAULT_MODEL, STATIC_DIR, asset_path, export_pretrained, export_web,
                     load_web_model, read_web_asset)

__all__ = ["DEFAULT_MODEL", "STATIC_DIR", "asset_path", "export_pretrained", "export_web",
           "load_web_model", "read_web_asset"]
