"""Checkpoints: safetensors for tensors, JSON for everything else, never pickle.

A checkpoint is one folder (a training run's step folder, or an export):

    step-000500/
      model.safetensors    weights, GPT-2 names (the tied lm_head is stored once, as wte)
      trainer.safetensors  AdamW moments and random-number-generator states
      minigpt.json         config, tokenizer, training state, sha256 of both files

The run folder around the step folders (its lock, `latest`, temporary folders, the disk
check) is `run_folder.py`. A step folder is written under a temporary name and renamed only
when complete, and `latest` is replaced atomically after that, so a crash at any moment
leaves the previous checkpoint intact; the temporary folders a crash leaves behind are
removed by the next run that takes the folder's lock. `minigpt.json` is covered too: the
sha256 of everything in it but the file checksums is stored in model.safetensors' header,
so an edited description (say `norm` changed from pre to post) is refused instead of
loading a different model. An exported model (like the one shipped in the package) is one
folder with `model.safetensors` and `minigpt.json` and no trainer state.

`torch.load` is never called: unpickling can run arbitrary code, so a `.pt`/`.pth` file is
refused with an explanation instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .config import ConfigError, GPTConfig
from .data import CharTokenizer
from .bpe import BPETokenizer, tokenizer_from_dict
from .device import pick_device
from .errors import CheckpointError, UsageError, is_whole_number
from .lora import is_adapter_folder
from .model import MiniGPT
from .run_folder import (LATEST_FILE, META_FILE, complete_steps, fsync_path, is_run_folder, os_reason,
                         previous_complete_step, read_latest, remove_old_steps, step_name, temporary_path,
                         write_fix, write_latest)

FORMAT = "minigpt-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE, TRAINER_FILE = "model.safetensors", "trainer.safetensors"    # META_FILE: run_folder
DESCRIPTION_KEY = "minigpt.json.sha256"     # in model.safetensors' header
PathLike = Union[str, os.PathLike]


@dataclass
class Checkpoint:
    model: MiniGPT
    tokenizer: CharTokenizer | BPETokenizer
    path: Path
    train_state: dict[str, Any] = field(default_factory=dict)
    trainer_tensors: dict[str, torch.Tensor] = field(default_factory=dict)


# ------------------------------------------------------------------- helpers
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _description_sha256(meta: dict[str, Any]) -> str:
    """sha256 of minigpt.json's content minus `files` (which holds the weights' own sha256).

    Computed on the JSON round trip of the description, so the writer (Python objects,
    tuples) and the reader (parsed JSON) hash the same text.
    """
    described = json.loads(json.dumps({k: v for k, v in meta.items() if k != "files"}))
    text = json.dumps(described, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())


def refuse_adapted_model(model: MiniGPT, what: str) -> None:
    """A UsageError when `model` carries LoRA adapters: `what` (a checkpoint, a web asset) holds a
    plain model, and the adapters' extra tensors would make one that no loader can rebuild (the
    page's model.js would even skip them without a word, running the base model)."""
    adapters = sorted(name for name in model.state_dict() if ".lora_" in name)
    if adapters:
        raise UsageError(f"this model has LoRA adapters ({adapters[0]}, ...): {what} holds a plain "
                         "model. Merge them first (minigpt.lora.merge_lora(model)), or save the adapters "
                         "alone with minigpt.lora.save_adapters(model, DIR).")


def model_tensors(model: MiniGPT, dtype: Optional[torch.dtype] = None) -> dict[str, torch.Tensor]:
    """The state dict as safetensors wants it: contiguous CPU tensors, tied head once."""
    tensors = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":      # same storage as wte.weight
            continue
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t.contiguous().clone()
    return tensors


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    """Split an optimizer's state into tensors (for safetensors) and param groups (for JSON)."""
    state = optimizer.state_dict()
    tensors = {}
    for index, per_param in state["state"].items():
        for name, value in per_param.items():
            value = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim.{index}.{name}"] = value.detach().to("cpu").contiguous().clone()
    return tensors, state["param_groups"]


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                      param_groups: list) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in param_groups]
    # load_state_dict would also bring back the saved run's settings (betas, weight decay,
    # `fused`, made for its device); this run's TrainConfig made `optimizer`, and its settings
    # win: the checkpoint gives the moments and step counts only (the resume warning names
    # what changed)
    settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"the saved optimizer state does not fit this model ({err}); "
                              "resume with the same model configuration.") from None
    for group, own in zip(optimizer.param_groups, settings):
        group.update(own)


# --------------------------------------------------------------------- saving
def _describe(model: MiniGPT, tokenizer: CharTokenizer | BPETokenizer,
              train_state: Optional[dict[str, Any]], what: str = "train_state") -> dict[str, Any]:
    """The minigpt.json fields every checkpoint and export shares.

    Checked here, before any file is written, because loading checks the same: a tokenizer
    whose vocabulary is not the model's would make a checkpoint nobody can load, and a
    train_state JSON cannot hold (a tensor, a numpy number) would fail halfway through the write.
    """
    if not isinstance(tokenizer, (CharTokenizer, BPETokenizer)):
        raise UsageError(f"the tokenizer must be a minigpt CharTokenizer or BPETokenizer (the one the model was "
                         f"trained with), got {type(tokenizer).__name__}.")
    if tokenizer.vocab_size != model.config.vocab_size:
        raise UsageError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                         f"{model.config.vocab_size}: a checkpoint of the two could never be loaded. Pass the "
                         "tokenizer the model was built for (GPTConfig.vocab_size = tokenizer.vocab_size).")
    if train_state is not None and not isinstance(train_state, dict):
        raise UsageError(f"{what} must be a dict or None, got {type(train_state).__name__}.")
    for key, value in (train_state or {}).items():
        if not isinstance(key, str):    # JSON would turn 1 into "1" and refuse (1, 2)
            raise UsageError(f"{what}'s keys are names (str), got {key!r}.")
        try:
            json.dumps({key: value}, allow_nan=True)
        except (TypeError, ValueError):
            hint = " (use .item() for a one-number tensor)" if isinstance(value, torch.Tensor) else ""
            raise UsageError(f"{what}[{key!r}] is of type {type(value).__name__}, which minigpt.json cannot hold; "
                             f"store plain numbers, strings, lists and dicts{hint}.") from None
    return {"format": FORMAT, "version": FORMAT_VERSION, "config": model.config.to_dict(),
            "tokenizer": tokenizer.to_dict(), "train_state": train_state or {}}


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: Optional[dict] = None) -> None:
    """safetensors' save_file, with the permissions of any file the user creates.

    save_file creates its file readable by the owner alone (mode 0600), so a model exported
    on a shared machine (a classroom server) could not be read by anyone else; the process's
    umask decides here, as it does for the JSON beside it.
    """
    save_file(tensors, path, metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def finite_weights(model: MiniGPT, dtype: Optional[torch.dtype] = None) -> dict[str, torch.Tensor]:
    """model_tensors(model, dtype), refused with a CheckpointError if any value is NaN or
    infinite, so that a broken model is stopped when it is written, not when it is loaded.
    With dtype=torch.float16 that includes weights beyond float16's range (|w| > 65504),
    which the conversion turns into inf. A model with LoRA adapters is refused too: its extra
    tensors would make a checkpoint that load_model cannot rebuild."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise UsageError(f"dtype must be a floating-point torch.dtype (torch.float16, torch.bfloat16 or "
                         f"torch.float32), got {dtype!r}.")
    refuse_adapted_model(model, "a checkpoint")
    tensors = model_tensors(model, dtype)
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            if dtype is not None and bool(torch.isfinite(model.state_dict()[name]).all()):
                biggest = float(model.state_dict()[name].abs().max())
                raise CheckpointError(
                    f"{name} holds values up to {biggest:.4g}, beyond {dtype}'s range "
                    f"({torch.finfo(dtype).max:.6g}): they would be stored as inf. Save it in "
                    "float32 (drop --fp16).")
            raise CheckpointError(f"the model's {name} contains NaN or inf values; nothing was written. "
                                  "Save an earlier checkpoint of the run, before it diverged.")
    return tensors


def _write_weights(path: Path, weights: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """model.safetensors, whose header records the sha256 of the description in `meta`."""
    _save_tensors(weights, path, metadata={DESCRIPTION_KEY: _description_sha256(meta)})


def save_checkpoint(directory: PathLike, model: MiniGPT, tokenizer: CharTokenizer | BPETokenizer, step: int,
                    optimizer: Optional[torch.optim.Optimizer] = None,
                    train_state: Optional[dict[str, Any]] = None,
                    trainer_tensors: Optional[dict[str, torch.Tensor]] = None,
                    keep: Optional[int] = 2) -> Path:
    """Atomically write step `step` into `directory`; keep the newest `keep` step folders
    (None: keep them all).

    `trainer_tensors` (e.g. random-number-generator states) are stored in trainer.safetensors
    beside the optimizer's moments, and come back as `Checkpoint.trainer_tensors`.
    Weights with NaN or inf values are refused before anything is written. A write that
    fails (disk full, permissions) removes its temporary folder and raises a CheckpointError;
    the previous checkpoint stays intact.
    """
    directory = Path(directory)
    name = step_name(step)
    tmp = temporary_path(directory, name)
    final = directory / name
    if keep is not None and not is_whole_number(keep, 1):
        raise UsageError(f"keep must be a whole number >= 1 (the newest step folders kept) or None (keep "
                         f"every one), got {keep!r}.")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise UsageError(f"optimizer must be a torch.optim.Optimizer (its moments are saved) or None, got "
                         f"{type(optimizer).__name__}.")
    trainer = dict(trainer_tensors or {})
    not_tensors = sorted(key for key, value in trainer.items() if not isinstance(value, torch.Tensor))
    if not_tensors:
        raise UsageError(f"trainer_tensors holds tensors only; {not_tensors[0]!r} is of type "
                         f"{type(trainer[not_tensors[0]]).__name__} (put plain values in train_state).")
    weights = finite_weights(model)
    meta = _describe(model, tokenizer, train_state)
    meta["step"] = step
    old = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        if optimizer is not None:
            opt_tensors, meta["optimizer_param_groups"] = optimizer_tensors(optimizer)
            trainer.update(opt_tensors)
        _write_weights(tmp / MODEL_FILE, weights, meta)
        files = {MODEL_FILE: _sha256(tmp / MODEL_FILE)}
        if trainer:
            _save_tensors({k: v.contiguous() for k, v in trainer.items()}, tmp / TRAINER_FILE)
            files[TRAINER_FILE] = _sha256(tmp / TRAINER_FILE)
        meta["files"] = files
        _write_json(tmp / META_FILE, meta)
        for f in files:
            fsync_path(tmp / f)
        if final.exists():                       # re-saving the same step: swap, then delete
            old = temporary_path(directory, name, "old")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
            old = None
        else:
            tmp.rename(final)
        write_latest(directory, name)
    except (OSError, SafetensorError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        _put_back(old, final)
        # the newest complete step but this one: when only `latest` failed, this one was already
        # renamed into place, complete, but `latest` still names the earlier one
        previous = [p.name for p in complete_steps(directory) if p.name != name]
        kept = f"; the earlier checkpoint {previous[-1]!r} is intact" if previous else ""
        raise CheckpointError(f"could not write checkpoint {name!r} in {str(directory)!r}: "
                              f"{os_reason(err)}{kept}. To fix: {write_fix(err)}.") from None
    except BaseException:           # a bug, or Ctrl-C: no half-written folder stays behind
        shutil.rmtree(tmp, ignore_errors=True)
        _put_back(old, final)
        raise
    if keep is not None:
        remove_old_steps(directory, keep, name)
    return final


def _put_back(old: Optional[Path], final: Path) -> None:
    """A re-save of the same step that failed between its two renames: the step moved aside is
    the only copy of it (its name is a temporary one, which the next resume would delete), so
    it goes back to its name before the error is raised."""
    if old is not None and old.exists() and not final.exists():
        try:
            old.rename(final)
        except OSError:             # the error being raised names the folder's trouble already
            pass


def _holds_training_state(directory: Path) -> bool:
    return (directory / TRAINER_FILE).exists() or is_run_folder(directory)


def _holds_export(directory: Path) -> bool:
    """True when directory/minigpt.json is a minigpt checkpoint's description (an earlier
    export): the only thing `overwrite=True` may replace."""
    try:
        _read_meta(directory)
    except CheckpointError:
        return False
    return True


def export_model(model: MiniGPT, tokenizer: CharTokenizer | BPETokenizer, directory: PathLike,
                 dtype: Optional[torch.dtype] = None, info: Optional[dict[str, Any]] = None,
                 overwrite: bool = False) -> Path:
    """Write weights + config + tokenizer only (e.g. in float16 to halve the size).

    Weights with NaN or inf values (also a float16 overflow) are refused before anything is
    written. The folder must be new or empty: an existing export is replaced only with
    `overwrite=True` (CLI: --force), and a training checkpoint or run folder, saved adapters or
    a folder of other files never, so an export can never destroy a run that is meant to be
    resumed, nor files it did not write.
    """
    if not (isinstance(model, MiniGPT) and hasattr(tokenizer, "encode") and isinstance(directory, (str, os.PathLike))):
        raise UsageError(f"export_model takes (model, tokenizer, folder): a MiniGPT, its tokenizer and a path; got "
                         f"({type(model).__name__}, {type(tokenizer).__name__}, {type(directory).__name__}).")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{str(directory)!r} is an existing file; export writes a folder. "
                              "Choose a new folder name.")
    try:
        non_empty = directory.is_dir() and any(directory.iterdir())
    except OSError as err:
        raise CheckpointError(f"cannot read {str(directory)!r}: {os_reason(err)}.") from None
    if non_empty and _holds_training_state(directory):
        raise CheckpointError(f"{str(directory)!r} holds a training checkpoint or run; export never "
                              "writes into one (resuming it would break). Choose a new folder.")
    if non_empty and overwrite:
        from .lora import ADAPTER_META
        if (directory / ADAPTER_META).exists():
            raise CheckpointError(f"{str(directory)!r} holds LoRA adapters ({ADAPTER_META}); export never writes "
                                  "into them. Choose a new or empty folder.")
        if not _holds_export(directory):
            raise CheckpointError(f"{str(directory)!r} is not empty and holds no earlier export (no {META_FILE} "
                                  "written by minigpt); --force (overwrite=True) replaces only an exported model, "
                                  "never other files. Choose a new or empty folder.")
    if non_empty and not overwrite:
        raise CheckpointError(f"{str(directory)!r} already exists and is not empty; export writes only "
                              "into a new or empty folder. Choose another folder, or pass --force "
                              "(overwrite=True) to replace the exported model there.")
    weights = finite_weights(model, dtype)
    meta = _describe(model, tokenizer, info, what="info")
    # a new folder is built beside its place and renamed into it, so it appears complete; an
    # existing one (an export replaced with --force, an empty folder, "." itself) gets its files
    # replaced one by one, each atomically (minigpt.json, which loading reads first, comes last)
    in_place = directory.is_dir()
    staging = directory if in_place else directory.parent / f".{directory.name}.tmp-{os.getpid()}"
    written: list[Path] = []
    try:
        staging.mkdir(parents=True, exist_ok=True)
        tmp_model = staging / f".{MODEL_FILE}.tmp-{os.getpid()}"
        tmp_meta = staging / f".{META_FILE}.tmp-{os.getpid()}"
        written += [tmp_model, tmp_meta]
        _write_weights(tmp_model, weights, meta)
        meta["files"] = {MODEL_FILE: _sha256(tmp_model)}
        _write_json(tmp_meta, meta)
        fsync_path(tmp_model)
        os.replace(tmp_model, staging / MODEL_FILE)
        os.replace(tmp_meta, staging / META_FILE)
        if not in_place:                                   # a new folder appears complete
            staging.rename(directory)
    except BaseException as err:    # a full disk, or Ctrl-C: no temporary file stays behind
        if in_place:
            for path in written:
                path.unlink(missing_ok=True)
        else:
            shutil.rmtree(staging, ignore_errors=True)
        if not isinstance(err, (OSError, SafetensorError)):
            raise                   # a bug keeps its traceback, Ctrl-C stays Ctrl-C
        raise CheckpointError(f"could not export to {str(directory)!r}: {os_reason(err)}. "
                              f"To fix: {write_fix(err)}.") from None
    return directory


# -------------------------------------------------------------------- loading
def _resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    try:
        return pick_device(device)
    except ValueError as err:           # a device the user named that is missing or unknown
        raise UsageError(str(err)) from None


def resolve_checkpoint(path: PathLike) -> Path:
    """A run folder (follows `latest`), a step/export folder, or its minigpt.json."""
    path = Path(path)
    try:
        if not path.exists():
            raise CheckpointError(f"no checkpoint at {str(path)!r}: the path does not exist.")
        if path.is_file():
            if path.name in (META_FILE, MODEL_FILE):
                return path.parent
            with open(path, "rb") as f:
                head = f.read(4)
            kind = ("a pickle (torch.save) file" if head[:1] == b"\x80" or head[:2] == b"PK"
                    else "not a minigpt checkpoint")
            raise CheckpointError(
                f"{str(path)!r} is {kind}. minigpt loads only folders holding model.safetensors and "
                "minigpt.json, and never unpickles files, because unpickling can run arbitrary code. "
                "Pass the checkpoint folder written by `python -m minigpt train --out DIR`.")
        if (path / LATEST_FILE).exists():
            return read_latest(path)
        if (path / META_FILE).is_file():
            return path
        if is_adapter_folder(path):
            raise CheckpointError(f"{str(path)!r} holds LoRA adapters alone, not a model: load the base model "
                                  "and add them with minigpt.lora.load_adapters(model, folder).")
        complete = complete_steps(path)
        if complete:          # killed after the first step folder was renamed, before `latest`
            return complete[-1]
        os.listdir(path)      # a folder we may not read says so, rather than "holds no checkpoint"
    except OSError as err:
        raise CheckpointError(f"cannot read {str(path)!r}: {os_reason(err)}.") from None
    raise CheckpointError(f"{str(path)!r} holds no minigpt checkpoint (no {META_FILE} and no "
                          f"{LATEST_FILE} file). Did training run with --out pointing here?")


def _read_meta(folder: Path) -> dict[str, Any]:
    where = repr(str(folder / META_FILE))
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{where} is corrupted or truncated (not valid JSON: {err}).") from None
    except (OSError, RecursionError) as err:
        raise CheckpointError(f"cannot read {where}: {os_reason(err)}.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not a minigpt checkpoint description.")
    version = meta.get("version", 0)
    if not is_whole_number(version):
        raise CheckpointError(f"{where} has an invalid format version {version!r}.")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format version {version} is newer than this "
                              f"minigpt understands ({FORMAT_VERSION}); upgrade minigpt.")
    # every entry the loader reads must have the type it expects (an edited file says so here,
    # instead of an AttributeError deep inside the loader)
    expected = {"config": dict, "tokenizer": dict, "files": dict, "train_state": dict,
                "step": int, "optimizer_param_groups": list}
    for key, kind in expected.items():
        value = meta.get(key)
        required = key in ("config", "tokenizer")
        if (value is None and required) or (value is not None and (
                not isinstance(value, kind) or isinstance(value, bool))):
            raise CheckpointError(f"{where} is invalid: {key!r} must be a JSON "
                                  f"{'object' if kind is dict else kind.__name__}, got {value!r:.60}.")
    for name, digest in meta.get("files", {}).items():
        if name not in (MODEL_FILE, TRAINER_FILE) or not isinstance(digest, str):
            raise CheckpointError(f"{where} is invalid: 'files' must map {MODEL_FILE!r} and "
                                  f"{TRAINER_FILE!r} to sha256 strings, got {name!r}: {digest!r:.60}.")
    return meta


def _load_tensors(folder: Path, filename: str, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    file = folder / filename
    if not file.is_file():
        raise CheckpointError(f"{str(file)!r} is missing; the checkpoint is incomplete.")
    expected = meta.get("files", {}).get(filename)
    try:
        if expected is not None and _sha256(file) != expected:
            raise CheckpointError(f"{str(file)!r} is corrupted or truncated: its sha256 does not match "
                                  f"the one recorded in {META_FILE}. Use an earlier checkpoint.")
        tensors = load_file(file)
        if filename == MODEL_FILE:
            with safe_open(file, framework="pt") as f:
                recorded = (f.metadata() or {}).get(DESCRIPTION_KEY)
            # checkpoints written before the description was covered have no record to check
            if recorded is not None and recorded != _description_sha256(meta):
                raise CheckpointError(
                    f"{str(folder / META_FILE)!r} was edited after the checkpoint was written: it no "
                    f"longer matches the description recorded in {filename}'s header, so it would "
                    "load a different model than the one trained. Restore the original file.")
        return tensors
    except (SafetensorError, ValueError) as err:
        raise CheckpointError(f"{str(file)!r} is not a readable safetensors file ({err}).") from None
    except OSError as err:
        raise CheckpointError(f"cannot read {str(file)!r}: {os_reason(err)}.") from None


@dataclass
class CheckpointSummary:
    """What a checkpoint describes, read from its minigpt.json alone (no weights loaded)."""
    path: Path                      # the step (or export) folder
    config: GPTConfig
    step: Optional[int]             # None for an export
    train_state: dict[str, Any]
    tokenizer: Any = None           # CharTokenizer or BPETokenizer: what the run's ids mean


def _config_and_tokenizer(folder: Path, meta: dict[str, Any]):
    """(GPTConfig, tokenizer) from a checkpoint's minigpt.json, or a CheckpointError naming it."""
    try:
        config = GPTConfig.from_dict(meta["config"])
        tokenizer = tokenizer_from_dict(meta["tokenizer"])      # "char" or "bpe", stored as JSON
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise CheckpointError(f"{str(folder / META_FILE)!r} has an invalid config or tokenizer: "
                              f"{err}") from None
    return config, tokenizer


def read_summary(path: PathLike) -> CheckpointSummary:
    """The config, tokenizer, step and training state of a checkpoint, without reading its
    weights (the weights' checksums are checked when the checkpoint is loaded)."""
    folder = resolve_checkpoint(path)
    meta = _read_meta(folder)
    config, tokenizer = _config_and_tokenizer(folder, meta)
    return CheckpointSummary(folder, config, meta.get("step"), dict(meta.get("train_state", {})), tokenizer)


# Config fields that change how a model computes but not what: every attention implementation
# computes the same function with the same weights, so a run may continue with another one.
INTERCHANGEABLE_FIELDS = ("attn_impl",)


def config_differences(saved: GPTConfig, wanted: GPTConfig, ignore: tuple = ()) -> list[str]:
    """The fields in which `wanted` describes another model than `saved` ("n_layer=2, not 4"),
    leaving out the INTERCHANGEABLE_FIELDS and `ignore`; empty when the checkpoint's weights fit `wanted`."""
    a, b = saved.to_dict(), wanted.to_dict()
    return [f"{name}={a[name]!r}, not {b[name]!r}" for name in a
            if name not in INTERCHANGEABLE_FIELDS + tuple(ignore) and a[name] != b[name]]


def load_checkpoint(path: PathLike, device: Union[str, torch.device] = "cpu",
                    with_trainer: bool = False) -> Checkpoint:
    """Rebuild the model (in float32 on `device`) and tokenizer from a checkpoint.

    `device` follows `pick_device`'s convention, as everywhere in minigpt: "auto" (CUDA > MPS >
    CPU), "cpu", "cuda", "cuda:1", "mps" or a torch.device; a device that is missing is a
    UsageError, before anything is read.
    """
    device = _resolve_device(device)
    folder = resolve_checkpoint(path)
    try:
        return _load_folder(folder, device, with_trainer)
    except CheckpointError as err:
        earlier = previous_complete_step(path)         # None unless `path` is a run folder
        if earlier is None:
            raise
        raise CheckpointError(f"{err} The run's previous checkpoint {str(earlier)!r} is complete: "
                              "load that folder instead.") from None


def _load_folder(folder: Path, device: torch.device, with_trainer: bool) -> Checkpoint:
    """load_checkpoint for one checkpoint folder (a step or export folder)."""
    meta = _read_meta(folder)
    config, tokenizer = _config_and_tokenizer(folder, meta)
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(f"checkpoint mismatch: the tokenizer has {tokenizer.vocab_size} "
                              f"{'characters' if isinstance(tokenizer, CharTokenizer) else 'tokens'} but the model "
                              f"expects vocab_size={config.vocab_size}.")
    tensors = _load_tensors(folder, MODEL_FILE, meta)
    model = MiniGPT(config)
    expected = model_tensors(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint weights do not match its config: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}.")
    for name, t in tensors.items():
        if t.shape != expected[name].shape:
            raise CheckpointError(f"checkpoint mismatch: {name} has shape {tuple(t.shape)}, the "
                                  f"config needs {tuple(expected[name].shape)}.")
        if not t.is_floating_point():
            raise CheckpointError(f"checkpoint tensor {name} has dtype {t.dtype}; weights are floats.")
        if not torch.isfinite(t).all():
            raise CheckpointError(f"checkpoint tensor {name} contains NaN or inf values.")
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
    model.to(device)
    model.eval()
    trainer = {}
    if with_trainer and TRAINER_FILE in meta.get("files", {}):
        trainer = _load_tensors(folder, TRAINER_FILE, meta)
    state = dict(meta.get("train_state", {}))
    state["step"] = meta.get("step", state.get("step"))
    state["optimizer_param_groups"] = meta.get("optimizer_param_groups")
    return Checkpoint(model, tokenizer, folder, state, trainer)


def load_model(path: PathLike, device: Union[str, torch.device] = "cpu"):
    """(model, tokenizer) from a checkpoint folder, ready for generation (device: as in
    `load_checkpoint`, "auto" included)."""
    ckpt = load_checkpoint(path, device)
    return ckpt.model, ckpt.tokenizer
