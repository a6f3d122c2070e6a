"""Write a trained MiniGPT as one static `.js` asset that the book's pages run in the browser.

The asset is a script that registers the model in `window.MINIGPT_WEB_MODELS[name]`: config,
vocabulary, a short description (which model, its validation loss) and every tensor as
base64 bytes. A `<script src>` tag loads it, which works from `file://` (where `fetch` is
blocked), so the built book runs offline from a folder.

Quantisation: `"int8"` stores each weight matrix row as int8 with one float32 scale per row
(`weight = q * scale`, `scale = max|row| / 127`): a quarter of the float32 size, so the
shipped model's asset stays well under the repository's 10 MB file limit. Vectors (biases,
LayerNorm) stay float32. `load_web_model` rebuilds the *quantised* model in PyTorch, the
reference the page's numbers are tested against; `"float16"` and `"float32"` are the
alternatives when size does not matter.

    python -m minigpt export-web --out path/to/model.js [--checkpoint DIR] [--quantize int8]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
from pathlib import Path
from typing import Optional, Union

import torch

from ..checkpoint import refuse_adapted_model
from ..config import ConfigError, GPTConfig
from ..data import CharTokenizer, DataError
from ..errors import MiniGPTError
from ..model import MiniGPT
from ..run_folder import fsync_path, nearest_existing_parent

QUANTIZE = ("int8", "float16", "float32")
STATIC_DIR = Path(__file__).resolve().parent / "static" / "minigpt-web"
DEFAULT_MODEL = "shakespeare_char"
# minigpt.evaluate over the whole validation split on a CPU (bench/web_speed.py --quality):
# float32 model 1.47867, its int8 copy 1.47884 nats/char.
PRETRAINED_INT8_VAL_LOSS = 1.4788
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PREFIX = "(globalThis.MINIGPT_WEB_MODELS = globalThis.MINIGPT_WEB_MODELS || {})"


class WebExportError(MiniGPTError, ValueError):
    """A model, tokenizer, path or asset that the web export cannot write or read."""


class WebAssetNotFoundError(WebExportError, FileNotFoundError):
    """No web asset at the given path."""


def asset_path(name: str = DEFAULT_MODEL) -> Path:
    """Where the package keeps the asset of a named model (the shipped one by default)."""
    return STATIC_DIR / f"{name}.js"


def _b64(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.contiguous().numpy().tobytes()).decode("ascii")


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, K) float weight -> (int8 (R, K), float32 scales (R,)), one scale per row."""
    weight = weight.detach().float().cpu()
    scale = weight.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))       # an all-zero row stays 0
    q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 weights the page computes with: q * scale, rounded to float32 once."""
    return q.float() * scale[:, None]


def _encode_tensor(tensor: torch.Tensor, quantize: str) -> dict:
    tensor = tensor.detach().float().cpu()
    entry = {"shape": list(tensor.shape)}
    if quantize == "int8" and tensor.dim() == 2:
        q, scale = quantize_int8(tensor)
        entry.update(dtype="int8", data=_b64(q), scale=_b64(scale))
    elif quantize == "float16" and tensor.dim() == 2:
        entry.update(dtype="float16", data=_b64(tensor.half()))
    else:                                   # vectors (biases, LayerNorm) stay exact
        entry.update(dtype="float32", data=_b64(tensor))
    return entry


def _check_info(info: Optional[dict]) -> None:
    """`info` goes into the asset as JSON: a dict of names to numbers, strings, lists or dicts.
    A tensor (a val loss straight from a loss tensor) failed in json.dumps after the checks."""
    if info is None:
        return
    if not isinstance(info, dict):
        raise WebExportError(f"info must be a dict such as {{'val_loss': 1.48}}, got {type(info).__name__}.")
    for key, value in info.items():
        try:
            json.dumps({key: value})
        except (TypeError, ValueError):
            hint = "; pass float(value) or value.item()" if isinstance(value, torch.Tensor) else ""
            raise WebExportError(f"info[{key!r}] is a {type(value).__name__}, which JSON cannot hold: give "
                                 f"numbers, strings, lists or dicts{hint}.") from None


def export_web(model: MiniGPT, tokenizer: CharTokenizer, path: Union[str, Path],
               name: Optional[str] = None, quantize: str = "int8",
               info: Optional[dict] = None) -> Path:
    """Write `model` + `tokenizer` as a browser asset at `path` (a `.js` file); return the path.

    name: the key the pages look the model up by (default: the file name without `.js`).
    info: a few facts the page shows, e.g. {"description": "...", "val_loss": 1.48}.
    """
    if not isinstance(model, MiniGPT):
        raise WebExportError(f"export_web expects a MiniGPT, got {type(model).__name__}.")
    if not isinstance(tokenizer, CharTokenizer):
        raise WebExportError(f"the in-page model reads characters, and this model's tokenizer is a "
                             f"{type(tokenizer).__name__}: export a character-level model (one trained "
                             "without --tokenizer bpe).")
    if tokenizer.vocab_size != model.config.vocab_size:
        raise WebExportError(f"the tokenizer has {tokenizer.vocab_size} characters but the model's "
                         f"vocab_size is {model.config.vocab_size}; pass the tokenizer it was trained with.")
    refuse_adapted_model(model, "a web asset")
    if quantize not in QUANTIZE:
        raise WebExportError(f"quantize must be one of {', '.join(map(repr, QUANTIZE))}, got {quantize!r}.")
    path = Path(path)
    if path.suffix != ".js":
        raise WebExportError(f"the asset is a script: give a path ending in .js, got {str(path)!r}.")
    if name is not None and not isinstance(name, str):
        raise WebExportError(f"name must be a string (1-64 letters, digits, '_' or '-'), got {name!r}.")
    _check_info(info)
    if not _NAME.match(name or path.stem):
        where = "" if name else f" (taken from the file name {path.name!r}: pass a name, --name at the command line)"
        raise WebExportError(f"name {name or path.stem!r} must be 1-64 letters, digits, '_' or '-'{where}.")
    name = name or path.stem
    _check_writable_path(path)
    tensors = {}
    for key, value in model.state_dict().items():
        if key == "lm_head.weight":        # tied to wte.weight: stored once
            continue
        _refuse_non_finite(key, value, quantize)
        tensors[key] = _encode_tensor(value, quantize)
    config = model.config.to_dict()
    asset = {"format": "minigpt-web", "version": 1, "name": name, "quantize": quantize,
             "config": config, "chars": "".join(tokenizer.chars),
             "info": dict(info or {}), "tensors": tensors}
    text = (f"/* minigpt web asset {name!r}: written by minigpt.web.export_web "
            f"({quantize}); load it with a <script> tag. */\n"
            f"{_PREFIX}[{json.dumps(name)}] =\n{json.dumps(asset, separators=(',', ':'))};\n")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        fsync_path(tmp)                 # on disk before its name is: a crash leaves the old asset
        os.replace(tmp, path)           # a page never loads half an asset, an old one stays whole
    except BaseException as err:        # a full disk, or Ctrl-C: the temporary file goes too
        try:
            tmp.unlink(missing_ok=True)
        except OSError:                 # the folder itself was the problem
            pass
        if not isinstance(err, OSError):
            raise
        raise WebExportError(f"cannot write {str(path)!r}: {err.strerror or err}; choose another --out "
                             "(a .js path in a folder you can write).") from None
    return path


def _refuse_non_finite(name: str, value: torch.Tensor, quantize: str) -> None:
    """A NaN or inf weight would reach the page and make every probability NaN: refuse it
    here, when the asset is written (float16 overflow included)."""
    value = value.detach().float()
    if not bool(torch.isfinite(value).all()):
        raise WebExportError(f"the model's {name} contains NaN or inf values; nothing was written. "
                             "Export a checkpoint from before the run diverged.")
    if quantize == "float16" and value.dim() == 2 and not bool(torch.isfinite(value.half()).all()):
        raise WebExportError(f"{name} holds values up to {float(value.abs().max()):.4g}, beyond float16's "
                             "range (65504): they would be stored as inf. Use --quantize int8 or float32.")


def read_web_asset(path: Union[str, Path]) -> dict:
    """The dictionary stored in an asset written by `export_web`."""
    path = Path(path)
    if not path.is_file():
        raise WebAssetNotFoundError(f"no web asset at {str(path)!r}; write one with minigpt.web.export_web.")
    not_an_asset = WebExportError(f"{str(path)!r} is not a minigpt web asset (written by export_web).")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise not_an_asset from None
    except OSError as err:
        raise WebExportError(f"cannot read {str(path)!r}: {err.strerror or err}.") from None
    start, end = text.find("=\n{"), text.rstrip().rfind("};")
    if start < 0 or end < 0 or _PREFIX not in text:
        raise not_an_asset
    try:
        asset = json.loads(text[start + 2:end + 1])
    except (ValueError, RecursionError):
        raise not_an_asset from None
    if not isinstance(asset, dict) or asset.get("format") != "minigpt-web":
        raise not_an_asset
    return asset


def _decode_tensor(entry: dict) -> torch.Tensor:
    raw = bytearray(base64.b64decode(entry["data"]))
    shape = entry["shape"]
    if entry["dtype"] == "int8":
        q = torch.frombuffer(raw, dtype=torch.int8).reshape(shape)
        scale = torch.frombuffer(bytearray(base64.b64decode(entry["scale"])), dtype=torch.float32)
        return dequantize_int8(q, scale)
    dtype = {"float16": torch.float16, "float32": torch.float32}[entry["dtype"]]
    return torch.frombuffer(raw, dtype=dtype).reshape(shape).float()


def load_web_model(path: Union[str, Path]) -> tuple[MiniGPT, CharTokenizer]:
    """(model, tokenizer) with exactly the weights the page uses, in eval mode on the CPU.

    For an int8 asset this is the quantised model: the PyTorch reference for the page's logits.
    """
    asset = read_web_asset(path)
    try:
        config = GPTConfig.from_dict(asset["config"])
    except (KeyError, TypeError, ConfigError) as err:
        raise WebExportError(f"{str(path)!r} holds no valid model config ({err}); write it again with "
                             "export_web.") from None
    model = MiniGPT(config)
    try:
        if not isinstance(asset["tensors"], dict):
            raise TypeError(f"its tensors are a {type(asset['tensors']).__name__}, not a table of names")
        state = {key: _decode_tensor(entry) for key, entry in asset["tensors"].items()}
        state["lm_head.weight"] = state["wte.weight"]
        model.load_state_dict(state)
        tokenizer = CharTokenizer(list(asset["chars"]))
    except (KeyError, TypeError, ValueError, RuntimeError, DataError) as err:
        raise WebExportError(f"{str(path)!r} is a damaged minigpt web asset ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:160] if str(err) else 'missing entry'}); "
                             "write it again with export_web.") from None
    model.eval()
    return model, tokenizer


def _check_writable_path(path: Path) -> None:
    """The asset's path is not a folder and does not lie below a file or a folder this user may
    not enter (Path.exists raises PermissionError there)."""
    try:
        if path.is_dir():
            raise WebExportError(f"{str(path)!r} is a folder; the asset is one .js file: give a file path (--out).")
        blocking = nearest_existing_parent(path)
        if not blocking.is_dir():
            raise WebExportError(f"cannot write {str(path)!r}: {str(blocking)!r} on its path is a file; choose "
                                 "another --out (a .js path in a folder you can write).")
    except PermissionError as err:
        raise WebExportError(f"cannot write {str(path)!r}: {err.strerror or 'Permission denied'} on {str(err.filename or path)!r}; "
                             "choose another --out (a .js path in a folder you can write).") from None


def export_pretrained(path: Optional[Union[str, Path]] = None, quantize: str = "int8",
                      name: Optional[str] = None) -> Path:
    """Write the shipped pretrained model's asset: by default into the package, under the name
    the book's pages load it by; to another `path`, under `name` or that file's stem."""
    from ..checkpoint import load_model
    from ..pretrained import PRETRAINED_NAME, pretrained_info, pretrained_path
    model, tokenizer = load_model(pretrained_path(), "cpu")
    summary = pretrained_info().get("summary", {})
    info = {"description": f"minigpt's shipped model '{PRETRAINED_NAME}' (tinyshakespeare, "
                           f"{model.num_parameters():,} parameters)",
            "val_loss": summary.get("val_loss"), "parameters": model.num_parameters()}
    if quantize == "int8":
        info["val_loss_quantized"] = PRETRAINED_INT8_VAL_LOSS
    if path is None:
        path, name = asset_path(PRETRAINED_NAME), PRETRAINED_NAME
    return export_web(model, tokenizer, path, name, quantize, info)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minigpt export-web",
                                     description="Write a model as a .js asset for the book's in-page model.")
    parser.add_argument("--out", required=True, help="the .js file to write")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint folder, or 'pretrained' (the default: the shipped model)")
    parser.add_argument("--name", default=None, help="the name pages look it up by (default: file stem)")
    parser.add_argument("--quantize", default="int8", choices=QUANTIZE)
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    if not args.out.strip():        # Path("") is "." : never fall back to the package's own asset
        raise WebExportError("--out is empty: give the path of the .js file to write, e.g. --out model.js.")
    if args.checkpoint is not None and not args.checkpoint.strip():
        raise WebExportError("--checkpoint is empty: give a checkpoint folder, or leave --checkpoint out "
                             "to export the shipped model.")
    _check_writable_path(Path(args.out))      # before the model loads (export_web checks again, for its callers)
    if Path(args.out).is_file() and not args.force and Path(args.out).suffix == ".js":
        raise WebExportError(f"{args.out!r} exists; export-web does not overwrite a file: choose another "
                             "--out, or add --force to replace it.")
    from ..pretrained import checkpoint_or_pretrained, pretrained_path
    checkpoint = None if args.checkpoint is None else checkpoint_or_pretrained(args.checkpoint)
    if checkpoint is None or checkpoint == pretrained_path():
        out = export_pretrained(args.out, args.quantize, args.name)
    else:
        from ..checkpoint import load_model
        model, tokenizer = load_model(checkpoint, "cpu")
        out = export_web(model, tokenizer, args.out, args.name, args.quantize)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":       # through the CLI: a user's error is one line there, not a traceback
    from ..cli import main as cli_main
    sys.exit(cli_main(["export-web", *sys.argv[1:]]))
