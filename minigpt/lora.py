"""LoRA (Hu et al. 2021): fine-tune a frozen model through low-rank updates of its linear layers.

A linear layer y = x W^T + b becomes y = x W^T + b + (alpha / r) * x A^T B^T, with W and b
frozen, A (r, in) random and B (out, r) zero: the adapted model starts equal to the base
model, and only A and B (r * (in + out) numbers a layer) are trained. After training,
W + (alpha / r) * B A is one matrix again (`merge_lora`), so inference costs nothing extra.

    model, tokenizer = minigpt.load_pretrained()
    add_lora(model, rank=8, alpha=16, targets=("attn.c_attn", "attn.c_proj"))
    ...train...                               # only the adapters require grad
    save_adapters(model, "my_adapters")       # a few hundred KB, not the whole model
    plain = merge_lora(model)                 # a MiniGPT with the update folded into W

Targets are the seed's parameter names ("attn.c_attn", "attn.c_proj", "mlp.c_fc",
"mlp.c_proj"): a module is adapted when its dotted name ends with one of them.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Iterable, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError

from .errors import CheckpointError, MiniGPTError, UsageError, is_whole_number
from .model import MiniGPT
from .run_folder import fsync_path, os_reason, temporary_path, write_fix

DEFAULT_TARGETS = ("attn.c_attn", "attn.c_proj")
ADAPTABLE = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
ADAPTER_FORMAT = "minigpt-lora-adapters"
ADAPTER_FORMAT_VERSION = 1
ADAPTER_FILE, ADAPTER_META = "adapters.safetensors", "lora.json"
PathLike = Union[str, os.PathLike]
# where save_adapters stages its files inside an empty target folder when it cannot beside it
_STAGED_INSIDE = re.compile(r"\.adapters\.tmp-\d+")
_NO_FOLDER = object()


class LoRAError(MiniGPTError, ValueError):
    """A LoRA request that cannot work as given (rank, targets, adapters for another model)."""


class LoRALinear(nn.Linear):
    """nn.Linear with a frozen weight/bias plus a trainable low-rank update (alpha / rank) * B A.

    It keeps nn.Linear's `weight` and `bias` names, so the base tensors keep the seed's names
    (blocks.0.attn.c_attn.weight) and the adapters sit beside them (...c_attn.lora_A).
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        if not isinstance(base, nn.Linear):
            raise LoRAError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}; adapt the "
                            f"model's linear layers ({', '.join(ADAPTABLE)}).")
        _check_rank_alpha(rank, alpha)
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None,
                         device=base.weight.device, dtype=base.weight.dtype)
        with torch.no_grad():
            self.weight.copy_(base.weight)
            if base.bias is not None:
                self.bias.copy_(base.bias)
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.rank, self.alpha = rank, float(alpha)
        self.scale = self.alpha / rank
        # A as nn.Linear initialises its weights (Kaiming-uniform, a=sqrt(5)), B zero: B A = 0
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, device=self.weight.device,
                                               dtype=self.weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=self.weight.device,
                                               dtype=self.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:        # (B, T, in) -> (B, T, out)
        update = F.linear(F.linear(x, self.lora_A), self.lora_B)  # through (B, T, r): never B A itself
        return F.linear(x, self.weight, self.bias) + self.scale * update

    def merged_weight(self) -> torch.Tensor:
        """W + (alpha / r) B A, the (out, in) matrix this layer computes with."""
        return self.weight + self.scale * (self.lora_B @ self.lora_A)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha:g}"


def _is_positive_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value > 0)


def _check_rank_alpha(rank, alpha) -> None:
    if not is_whole_number(rank, 1):
        raise LoRAError(f"LoRA rank must be a positive integer, got {rank!r}; try rank=8.")
    if not _is_positive_number(alpha):
        raise LoRAError(f"LoRA alpha must be a positive number, got {alpha!r}; alpha = 2 * rank is usual.")


def _check_arguments(function: str, model, folder=_NO_FOLDER, kind: type = MiniGPT) -> None:
    """A one-line UsageError for a model (or folder) argument of the wrong kind: a string, None
    or swapped arguments otherwise fail deep inside torch or pathlib ('str' object has no
    attribute 'named_modules'), far from the call that caused it."""
    what = "a MiniGPT model" if kind is MiniGPT else "a model (a MiniGPT or another torch.nn.Module)"
    if folder is _NO_FOLDER:
        if not isinstance(model, kind):
            raise UsageError(f"{function} takes {what}, got {type(model).__name__}.")
        return
    if isinstance(model, kind) and isinstance(folder, (str, os.PathLike)):
        return
    swapped = isinstance(folder, nn.Module) and isinstance(model, (str, os.PathLike))
    raise UsageError(f"{function} takes (model, folder): {what}, then the adapters' folder (a path); got "
                     f"({type(model).__name__}, {type(folder).__name__}){'; swap the two' if swapped else ''}.")


def _normalise_targets(targets) -> tuple[str, ...]:
    if isinstance(targets, str):
        targets = (targets,)
    if not isinstance(targets, (list, tuple, set, frozenset)):      # None, a module, a number
        raise LoRAError(f"targets must be module names such as {', '.join(ADAPTABLE)}; got {targets!r}.")
    targets = tuple(targets)
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise LoRAError(f"targets must be module names such as {', '.join(ADAPTABLE)}; got {targets!r}.")
    return targets


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The adapted layers by their dotted names."""
    _check_arguments("lora_layers", model, kind=nn.Module)
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def add_lora(model: MiniGPT, rank: int = 8, alpha: float = 16.0,
             targets: Iterable[str] = DEFAULT_TARGETS) -> MiniGPT:
    """Replace the linear layers named by `targets` with LoRALinear (in place) and freeze
    everything else; returns the model. Only lora_A / lora_B require grad afterwards."""
    if not isinstance(model, MiniGPT):
        raise LoRAError(f"add_lora expects a MiniGPT, got {type(model).__name__}.")
    _check_rank_alpha(rank, alpha)
    targets = _normalise_targets(targets)
    if lora_layers(model):
        raise LoRAError("this model already has LoRA adapters; merge them first (merge_lora) "
                        "or start again from the base model.")
    found = _matching_linears(model, targets)
    missing = [t for t, names in found.items() if not names]
    if missing:
        raise LoRAError(f"LoRA target(s) {', '.join(map(repr, missing))} match no linear layer of the "
                        f"model; use the seed's names: {', '.join(ADAPTABLE)}.")
    adapted = sorted({name for names in found.values() for name in names})
    widths = {name: min(model.get_submodule(name).in_features, model.get_submodule(name).out_features)
              for name in adapted}
    narrowest = min(adapted, key=widths.get)
    width = widths[narrowest]
    if rank > width:       # B A (out, in) has rank <= min(in, out): a larger r only adds numbers
        raise LoRAError(f"LoRA rank {rank} is larger than {narrowest!r} is wide ({width}); a rank above "
                        f"min(in, out) adds parameters but no capacity. Use rank <= {width} (8 is usual).")
    # A weight shared with another module (lm_head is tied to wte) cannot take an adapter: the
    # adapted layer owns a copy of W, so the tie breaks, and merge_lora, which loads the state
    # into a freshly tied MiniGPT, would have to drop one of the two matrices.
    every_name = list(model.named_parameters(remove_duplicate=False))      # a tied tensor: all its names
    for name in adapted:
        weight = model.get_submodule(name).weight
        shared = [other for other, p in every_name if p is weight and other != f"{name}.weight"]
        if shared:
            raise LoRAError(f"{name!r} shares its weight with {shared[0]!r} (tied embeddings), so an "
                            f"adapter there could not be merged back; adapt the blocks' layers: "
                            f"{', '.join(ADAPTABLE)}.")
    for p in model.parameters():
        p.requires_grad_(False)
    for name in adapted:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha))
    model.lora_settings = {"rank": rank, "alpha": float(alpha), "targets": list(targets)}
    return model


def _matching_linears(model: nn.Module, targets: tuple[str, ...]) -> dict[str, list[str]]:
    """The linear layers each target names: those whose dotted name is it or ends with it."""
    found = {t: [] for t in targets}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            for t in targets:
                if name == t or name.endswith("." + t):
                    found[t].append(name)
    return found


def lora_parameter_count(model: nn.Module) -> int:
    """Numbers in the adapters (what LoRA trains): r * (in + out) per adapted layer."""
    _check_arguments("lora_parameter_count", model, kind=nn.Module)
    return sum(m.lora_A.numel() + m.lora_B.numel() for m in lora_layers(model).values())


def merge_lora(model: MiniGPT) -> MiniGPT:
    """A new plain MiniGPT whose adapted weights are W + (alpha / r) B A; `model` is unchanged.
    Its logits equal the adapted model's, and it runs at the base model's cost."""
    _check_arguments("merge_lora", model)
    layers = lora_layers(model)
    if not layers:
        raise LoRAError("this model has no LoRA adapters to merge; add them with add_lora(model, ...).")
    merged = MiniGPT(model.config).to(model.device)
    state = {k: v for k, v in model.state_dict().items() if ".lora_" not in k}
    with torch.no_grad():
        for name, layer in layers.items():
            state[f"{name}.weight"] = layer.merged_weight().detach().clone()
    merged.load_state_dict(state)
    merged.train(model.training)
    return merged


# ----------------------------------------------------------------- adapters-only checkpoints
def adapter_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().to("cpu").contiguous().clone()
            for name, t in model.state_dict().items() if ".lora_" in name}


def base_fingerprint(model: MiniGPT) -> dict[str, float]:
    """The mean |w| of the base model's tensors that LoRA never wraps (the token embedding and
    the LayerNorms), to 4 significant digits: a few numbers to store, unchanged by a move to
    another dtype or device, and far from a freshly initialised model's (LayerNorm weights
    start at exactly 1). load_adapters compares them: the config alone cannot tell the
    pretrained base from a new MiniGPT of the same shape."""
    # float32 on the tensor's own device: MPS has no float64
    return {name: float(f"{p.detach().float().abs().mean().item():.4g}")
            for name, p in model.named_parameters() if name == "wte.weight" or ".ln_" in f".{name}"}


def _describe_lora(model: MiniGPT) -> dict:
    """lora.json's "lora" entry: the rank, alpha and targets with which add_lora rebuilds the
    model's LoRA layers, read from the layers themselves. `model.lora_settings` (what add_lora
    was asked) is only a preference for the targets' spelling: layers put in by hand, as
    chapter 16 does, leave it missing or out of date, and a description taken from it would
    save adapters that cannot be loaded back."""
    layers = lora_layers(model)
    kinds = {(layer.rank, layer.alpha) for layer in layers.values()}
    if len(kinds) > 1:
        example = {(layer.rank, layer.alpha): name for name, layer in reversed(layers.items())}  # the first of each
        listed = "; ".join(f"{name}: rank {r}, alpha {a:g}" for (r, a), name in sorted(example.items()))
        raise LoRAError(f"the model's LoRA layers do not share one rank and alpha ({listed}), and {ADAPTER_META} "
                        "holds one of each; nothing was written. Give every layer the same rank and alpha "
                        "(add_lora(model, rank, alpha, targets) does), or fold them into the weights with "
                        "merge_lora(model) and save that model.")
    (rank, alpha), = kinds
    settings = getattr(model, "lora_settings", None)
    asked = settings.get("targets") if isinstance(settings, dict) else None
    # the shortest names that adapt exactly these layers: what add_lora was asked, else the seed's
    # suffixes ("attn.c_attn" for every block's), else the full names ("blocks.0.attn.c_attn")
    for targets in (asked, sorted({".".join(name.split(".")[-2:]) for name in layers}), sorted(layers)):
        if isinstance(targets, (list, tuple)) and targets and all(isinstance(t, str) and t for t in targets):
            found = _matching_linears(model, tuple(targets))
            if all(found.values()) and set().union(*found.values()) == set(layers):
                return {"rank": rank, "alpha": alpha, "targets": list(targets)}
    raise AssertionError("the full names of the layers always describe them")     # a bug, not bad input


def _adapter_shapes(config, rank: int, alpha: float, targets) -> dict[str, torch.Size]:
    """The adapters' shapes after add_lora(MiniGPT(config), rank, alpha, targets), built on the
    meta device: no memory, and no change to any model the user holds."""
    with torch.device("meta"):
        probe = add_lora(MiniGPT(config), rank, alpha, targets)
    return {k: v.shape for k, v in probe.state_dict().items() if ".lora_" in k}


def save_adapters(model: MiniGPT, directory: PathLike) -> Path:
    """Write the adapters alone (plus the rank, alpha, targets and the base model's config)
    to a new or empty folder: a fine-tune costs a few hundred KB, not a whole model.

    Both files are written into a temporary folder beside `directory` and renamed into place
    together, so an interruption (Ctrl-C, a kill, a full disk) leaves the folder as it was:
    absent or empty, ready for the next try. Adapters that load_adapters could not read back
    (layers of different ranks, an adapter on the tied lm_head) are refused before anything
    is written."""
    from .checkpoint import _save_tensors, _sha256, _write_json
    _check_arguments("save_adapters", model, directory)
    if not lora_layers(model):
        raise LoRAError("this model has no LoRA adapters to save; add them with add_lora(model, ...).")
    directory = Path(directory)
    _refuse_non_empty(directory)
    tensors = adapter_tensors(model)
    for name, t in tensors.items():
        if not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"adapter {name} contains NaN or inf values; nothing was written.")
    lora = _describe_lora(model)
    try:
        expected = _adapter_shapes(model.config, **lora)
    except LoRAError as err:
        raise LoRAError(f"these adapters could not be loaded back, so nothing was written: {err}") from None
    if {k: t.shape for k, t in tensors.items()} != expected:
        raise LoRAError(f"the model's LoRA layers do not fit its config (add_lora({lora['rank']}, {lora['alpha']:g}, "
                        f"{lora['targets']}) on it would make others), so load_adapters could not read them back; "
                        "nothing was written. Adapt the model with add_lora(model, rank, alpha, targets).")
    place = directory.resolve()
    staging = None
    try:
        staging = _staging_folder(place)
        _save_tensors(tensors, staging / ADAPTER_FILE)
        fsync_path(staging / ADAPTER_FILE)
        meta = {"format": ADAPTER_FORMAT, "version": ADAPTER_FORMAT_VERSION, "lora": lora,
                "base_config": model.config.to_dict(),
                "base_fingerprint": base_fingerprint(model),
                "files": {ADAPTER_FILE: _sha256(staging / ADAPTER_FILE)}}
        _write_json(staging / ADAPTER_META, meta)
        _move_into_place(staging, place)
    except BaseException as err:          # a full disk, Ctrl-C or a kill: the folder stays as it was
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, (OSError, SafetensorError)):      # safetensors reports a full disk its own way
            raise CheckpointError(f"could not write adapters to {str(directory)!r}: {os_reason(err)}. "
                                  f"To fix: {write_fix(err)}.") from None
        raise
    return directory


def _refuse_non_empty(directory: Path) -> None:
    """Adapters go into a new or empty folder, never over other files. The staging folder an
    interrupted save left inside (see _staging_folder) does not count: it is not the user's."""
    try:
        if directory.exists() and (not directory.is_dir() or any(
                not _STAGED_INSIDE.fullmatch(p.name) for p in directory.iterdir())):
            raise UsageError(f"{str(directory)!r} exists and is not an empty folder; adapters are written "
                             "into a new or empty folder. Choose another one.")
    except OSError as err:
        raise CheckpointError(f"cannot read {str(directory)!r}: {os_reason(err)}.") from None


def _staging_folder(place: Path) -> Path:
    """A new folder beside `place` (an absolute path) to write the adapters into, or, when
    `place` is an existing empty folder whose parent cannot take one (a shared folder handed to
    each user), a hidden one inside it."""
    place.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_path(place.parent, place.name)
    try:
        staging.mkdir()
    except OSError:
        if not place.is_dir():
            raise
        staging = place / f".adapters.tmp-{os.getpid()}"
        staging.mkdir()
    return staging


def _move_into_place(staging: Path, place: Path) -> None:
    """Rename the staging folder to `place`: a new folder appears complete, and on Linux and
    macOS an empty one is replaced in one step. Where that cannot be done (the staging folder is
    inside `place`, `place` is the current folder, which a process must not pull from under
    itself, or Windows, which renames nothing onto a folder), the two files are moved in,
    lora.json (which tells loading that adapters are there) last."""
    if staging.parent == place.parent and place != Path.cwd().resolve():
        try:
            if place.is_dir():                 # the folder the user made keeps its permissions
                shutil.copymode(place, staging)
            os.rename(staging, place)
            return
        except OSError:
            if not place.is_dir():
                raise
    moved = []
    try:
        for name in (ADAPTER_FILE, ADAPTER_META):
            os.replace(staging / name, place / name)
            moved.append(place / name)
    except BaseException:
        for path in moved:
            path.unlink(missing_ok=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)      # empty now; the adapters are in place whatever happens here


def is_adapter_folder(path: PathLike) -> bool:
    """True when `path` holds saved adapters (its lora.json), which are not a model to load."""
    return (Path(path) / ADAPTER_META).is_file()


def _adapter_folder(path: PathLike) -> Path:
    """The folder of saved adapters at `path`: the folder itself, or its lora.json or
    adapters.safetensors (as load_model takes a checkpoint's minigpt.json)."""
    path = Path(path)
    if path.name in (ADAPTER_META, ADAPTER_FILE) and path.is_file():
        path = path.parent
    if not (path / ADAPTER_META).is_file():
        raise CheckpointError(f"{str(path)!r} holds no LoRA adapters (no {ADAPTER_META}); pass the "
                              "folder written by save_adapters or `train --lora-rank`.")
    return path


def _read_adapter_meta(meta_path: Path) -> dict:
    """lora.json, every entry load_adapters reads checked for its type and range: an edited or
    damaged file is named with its bad field, not met as a TypeError deep in the loader, nor
    as a rank=0 the caller never passed."""
    where = repr(str(meta_path))

    def invalid(field: str, wanted: str, value):
        got = "nothing" if value is None else f"{value!r:.60}"
        return CheckpointError(f"{where} is not a valid adapter description: {field} must be {wanted}, got "
                               f"{got}. Save the adapters again with save_adapters, or restore the file.")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:        # JSONDecodeError and UnicodeDecodeError included
        raise CheckpointError(f"{where} is corrupted or truncated (not valid JSON: {err}).") from None
    except OSError as err:
        raise CheckpointError(f"cannot read {where}: {os_reason(err)}.") from None
    if not isinstance(meta, dict) or meta.get("format") != ADAPTER_FORMAT:
        raise CheckpointError(f"{where} is not a minigpt adapter description (its format is not "
                              f"{ADAPTER_FORMAT!r}); pass the folder written by save_adapters.")
    version = meta.get("version", 0)
    if not is_whole_number(version, 0):
        raise invalid("'version'", "a whole number", version)
    if version > ADAPTER_FORMAT_VERSION:
        raise CheckpointError(f"{where} is adapter format version {version}, newer than this minigpt reads "
                              f"({ADAPTER_FORMAT_VERSION}); upgrade minigpt.")
    lora = meta.get("lora")
    if not isinstance(lora, dict):
        raise invalid("'lora'", "an object with rank, alpha and targets", lora)
    if not is_whole_number(lora.get("rank"), 1):
        raise invalid("'lora.rank'", "a positive integer", lora.get("rank"))
    if not _is_positive_number(lora.get("alpha")):
        raise invalid("'lora.alpha'", "a positive number", lora.get("alpha"))
    targets = lora.get("targets")
    if not (isinstance(targets, list) and targets and all(isinstance(t, str) and t for t in targets)):
        raise invalid("'lora.targets'", "a list of module names", targets)
    if not isinstance(meta.get("base_config"), dict):
        raise invalid("'base_config'", "an object (the base model's GPTConfig)", meta.get("base_config"))
    fingerprint = meta.get("base_fingerprint") or {}      # folders from before it was stored: no check
    if not isinstance(fingerprint, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in fingerprint.values()):
        raise invalid("'base_fingerprint'", "an object of numbers", fingerprint)
    files = meta.get("files")
    if not isinstance(files, dict) or not isinstance(files.get(ADAPTER_FILE), str):
        raise invalid("'files'", f"an object giving the sha256 of {ADAPTER_FILE}", files)
    return meta


def load_adapters(model: MiniGPT, directory: PathLike) -> MiniGPT:
    """Add the adapters saved in `directory` (the folder, or its lora.json) to `model` (the base
    model they were trained on, without adapters) and return it. A base of another shape is
    refused, naming the field."""
    from safetensors.torch import load_file

    from .checkpoint import _sha256, config_differences
    from .config import GPTConfig
    _check_arguments("load_adapters", model, directory)
    directory = _adapter_folder(directory)
    meta_path = directory / ADAPTER_META
    meta = _read_adapter_meta(meta_path)
    rank, alpha, targets = meta["lora"]["rank"], meta["lora"]["alpha"], meta["lora"]["targets"]
    try:
        base = GPTConfig.from_dict(meta["base_config"])
    except (TypeError, ValueError) as err:             # ConfigError is a ValueError
        raise CheckpointError(f"{str(meta_path)!r} is not a valid adapter description: its 'base_config' "
                              f"is not a GPTConfig ({err}).") from None
    # dropout changes training, not the weights: adapters fit a base of another dropout
    differ = config_differences(base, model.config, ignore=("dropout",))
    if differ:
        raise LoRAError(f"these adapters were trained on another base model ({'; '.join(differ)}); "
                        "load them onto the model they were trained on (e.g. load_pretrained()).")
    saved = meta.get("base_fingerprint") or {}
    here = base_fingerprint(model)
    moved = [name for name, value in saved.items()
             if name in here and abs(here[name] - value) > 0.01 * max(abs(value), 1e-6)]
    if moved:
        raise LoRAError(f"these adapters were trained on the same shape of model but other weights ({moved[0]}: mean "
                        f"|w| {here[moved[0]]:.4g} here, {saved[moved[0]]:.4g} when they were saved); load them onto "
                        "the model they were trained on (e.g. load_pretrained()), not a new MiniGPT.")
    file = directory / ADAPTER_FILE
    try:
        if _sha256(file) != meta["files"][ADAPTER_FILE]:
            raise CheckpointError(f"{str(file)!r} is corrupted or truncated: its sha256 does not match "
                                  f"{ADAPTER_META}'s. Save the adapters again.")
        tensors = load_file(file)
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"cannot read {str(file)!r} ({err}).") from None
    # the shapes the adapters must have: a refused folder leaves the caller's model as it was.
    # The config matched above, so targets or a rank this model cannot take are the file's fault
    try:
        expected = _adapter_shapes(model.config, rank, alpha, targets)
    except LoRAError as err:
        raise CheckpointError(f"{str(meta_path)!r} is not a valid adapter description for this model: "
                              f"{err}") from None
    if set(tensors) != set(expected):
        raise CheckpointError(f"{str(file)!r} does not hold the adapters {ADAPTER_META} describes "
                              f"(missing {sorted(set(expected) - set(tensors))[:3]}, unexpected "
                              f"{sorted(set(tensors) - set(expected))[:3]}).")
    for name, t in tensors.items():
        if t.shape != expected[name]:
            raise LoRAError(f"adapter {name} has shape {tuple(t.shape)} but this base model needs "
                            f"{tuple(expected[name])}; load them onto the model they were trained on.")
    add_lora(model, rank, alpha, targets)
    model.load_state_dict({k: v.to(model.device, torch.float32) for k, v in tensors.items()}, strict=False)
    return model
