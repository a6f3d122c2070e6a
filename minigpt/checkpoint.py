"""Checkpoints: safetensors for tensors, JSON for everything else, never pickle.

A training run's folder looks like this:

    run/
      latest                 one line: the newest complete step folder
      step-000500/
        model.safetensors    weights, GPT-2 names (the tied lm_head is stored once, as wte)
        trainer.safetensors  AdamW moments and random-number-generator states
        minigpt.json         config, tokenizer, training state, sha256 of both files

A step folder is written under a temporary name and renamed only when complete, and
`latest` is replaced atomically after that, so a crash at any moment leaves the previous
checkpoint intact. An exported model (like the one shipped in the package) is one folder
with `model.safetensors` and `minigpt.json` and no trainer state.

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
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ConfigError, GPTConfig
from .data import CharTokenizer
from .model import MiniGPT

FORMAT = "minigpt-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE, TRAINER_FILE, META_FILE, LATEST_FILE = (
    "model.safetensors", "trainer.safetensors", "minigpt.json", "latest")
PathLike = Union[str, os.PathLike]


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupted, truncated, unsafe or does not fit."""


@dataclass
class Checkpoint:
    model: MiniGPT
    tokenizer: CharTokenizer
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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())


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
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"the saved optimizer state does not fit this model ({err}); "
                              "resume with the same model configuration.") from None


# --------------------------------------------------------------------- saving
def _describe(model: MiniGPT, tokenizer: CharTokenizer,
              train_state: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The minigpt.json fields every checkpoint and export shares."""
    return {"format": FORMAT, "version": FORMAT_VERSION, "config": model.config.to_dict(),
            "tokenizer": tokenizer.to_dict(), "train_state": train_state or {}}


def save_checkpoint(directory: PathLike, model: MiniGPT, tokenizer: CharTokenizer, step: int,
                    optimizer: Optional[torch.optim.Optimizer] = None,
                    train_state: Optional[dict[str, Any]] = None,
                    extra_tensors: Optional[dict[str, torch.Tensor]] = None,
                    keep: int = 2) -> Path:
    """Atomically write step `step` into `directory`; keep the newest `keep` step folders."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    tmp = directory / f".{name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(model_tensors(model), tmp / MODEL_FILE)
    files = {MODEL_FILE: _sha256(tmp / MODEL_FILE)}
    meta = _describe(model, tokenizer, train_state)
    meta["step"] = step
    trainer = dict(extra_tensors or {})
    if optimizer is not None:
        opt_tensors, meta["optimizer_param_groups"] = optimizer_tensors(optimizer)
        trainer.update(opt_tensors)
    if trainer:
        save_file({k: v.contiguous() for k, v in trainer.items()}, tmp / TRAINER_FILE)
        files[TRAINER_FILE] = _sha256(tmp / TRAINER_FILE)
    meta["files"] = files
    _write_json(tmp / META_FILE, meta)
    for f in files:
        _fsync(tmp / f)
    final = directory / name
    if final.exists():                       # re-saving the same step: swap, then delete
        old = directory / f".{name}.old-{os.getpid()}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    latest_tmp = directory / f".{LATEST_FILE}.tmp-{os.getpid()}"
    latest_tmp.write_text(name + "\n", encoding="utf-8")
    _fsync(latest_tmp)
    os.replace(latest_tmp, directory / LATEST_FILE)
    steps = sorted(p for p in directory.glob("step-*") if p.is_dir())
    for stale in steps[:-keep] if keep > 0 else []:
        if stale.name != name:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def export_model(model: MiniGPT, tokenizer: CharTokenizer, directory: PathLike,
                 dtype: Optional[torch.dtype] = None, info: Optional[dict[str, Any]] = None) -> Path:
    """Write weights + config + tokenizer only (e.g. in float16 to halve the size)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp_model = directory / f".{MODEL_FILE}.tmp"
    save_file(model_tensors(model, dtype), tmp_model)
    meta = _describe(model, tokenizer, info)
    meta["files"] = {MODEL_FILE: _sha256(tmp_model)}
    os.replace(tmp_model, directory / MODEL_FILE)
    tmp_meta = directory / f".{META_FILE}.tmp"
    _write_json(tmp_meta, meta)
    os.replace(tmp_meta, directory / META_FILE)
    return directory


# -------------------------------------------------------------------- loading
def resolve_checkpoint(path: PathLike) -> Path:
    """A run folder (follows `latest`), a step/export folder, or its minigpt.json."""
    path = Path(path)
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
    if (path / LATEST_FILE).is_file():
        step_dir = path / (path / LATEST_FILE).read_text(encoding="utf-8").strip()
        if not (step_dir / META_FILE).is_file():
            raise CheckpointError(f"{str(path / LATEST_FILE)!r} points to {step_dir.name!r}, "
                                  "which is missing or incomplete; the run folder was modified "
                                  "by hand. Point to a complete step-* folder instead.")
        return step_dir
    if (path / META_FILE).is_file():
        return path
    raise CheckpointError(f"{str(path)!r} holds no minigpt checkpoint (no {META_FILE} and no "
                          f"{LATEST_FILE} file). Did training run with --out pointing here?")


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{str(folder / META_FILE)!r} is corrupted or truncated "
                              f"(not valid JSON: {err}).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{str(folder / META_FILE)!r} is not a minigpt checkpoint description.")
    if meta.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format version {meta['version']} is newer than this "
                              f"minigpt understands ({FORMAT_VERSION}); upgrade minigpt.")
    return meta


def _load_tensors(folder: Path, filename: str, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    file = folder / filename
    if not file.is_file():
        raise CheckpointError(f"{str(file)!r} is missing; the checkpoint is incomplete.")
    expected = meta.get("files", {}).get(filename)
    if expected is not None and _sha256(file) != expected:
        raise CheckpointError(f"{str(file)!r} is corrupted or truncated: its sha256 does not match "
                              f"the one recorded in {META_FILE}. Use an earlier checkpoint.")
    try:
        return load_file(file)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{str(file)!r} is not a readable safetensors file ({err}).") from None


def load_checkpoint(path: PathLike, device: Union[str, torch.device] = "cpu",
                    with_trainer: bool = False) -> Checkpoint:
    """Rebuild the model (in float32 on `device`) and tokenizer from a checkpoint."""
    folder = resolve_checkpoint(path)
    meta = _read_meta(folder)
    try:
        config = GPTConfig.from_dict(meta["config"])
        tokenizer = CharTokenizer.from_dict(meta["tokenizer"])
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise CheckpointError(f"{str(folder / META_FILE)!r} has an invalid config or tokenizer: "
                              f"{err}") from None
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(f"checkpoint mismatch: the tokenizer has {tokenizer.vocab_size} "
                              f"characters but the model expects vocab_size={config.vocab_size}.")
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
        if t.is_floating_point() and not torch.isfinite(t).all():
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
    """(model, tokenizer) from a checkpoint folder, ready for generation."""
    ckpt = load_checkpoint(path, device)
    return ckpt.model, ckpt.tokenizer
