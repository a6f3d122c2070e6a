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

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Iterable, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError

from .errors import CheckpointError, MiniGPTError, UsageError, is_whole_number
from .model import MiniGPT

DEFAULT_TARGETS = ("attn.c_attn", "attn.c_proj")
ADAPTABLE = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
ADAPTER_FORMAT = "minigpt-lora-adapters"
ADAPTER_FORMAT_VERSION = 1
ADAPTER_FILE, ADAPTER_META = "adapters.safetensors", "lora.json"
PathLike = Union[str, os.PathLike]


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


def _check_rank_alpha(rank, alpha) -> None:
    if not is_whole_number(rank, 1):
        raise LoRAError(f"LoRA rank must be a positive integer, got {rank!r}; try rank=8.")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise LoRAError(f"LoRA alpha must be a positive number, got {alpha!r}; alpha = 2 * rank is usual.")


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
    found = {t: [] for t in targets}
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear):
            continue
        for t in targets:
            if name == t or name.endswith("." + t):
                found[t].append(name)
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


def lora_parameter_count(model: nn.Module) -> int:
    """Numbers in the adapters (what LoRA trains): r * (in + out) per adapted layer."""
    return sum(m.lora_A.numel() + m.lora_B.numel() for m in lora_layers(model).values())


def merge_lora(model: MiniGPT) -> MiniGPT:
    """A new plain MiniGPT whose adapted weights are W + (alpha / r) B A; `model` is unchanged.
    Its logits equal the adapted model's, and it runs at the base model's cost."""
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


def save_adapters(model: MiniGPT, directory: PathLike) -> Path:
    """Write the adapters alone (plus the rank, alpha, targets and the base model's config)
    to a new or empty folder: a fine-tune costs a few hundred KB, not a whole model."""
    from .checkpoint import _save_tensors, _sha256, _write_json
    if not lora_layers(model):
        raise LoRAError("this model has no LoRA adapters to save; add them with add_lora(model, ...).")
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UsageError(f"{str(directory)!r} exists and is not an empty folder; adapters are written "
                         "into a new or empty folder. Choose another one.")
    tensors = adapter_tensors(model)
    for name, t in tensors.items():
        if not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"adapter {name} contains NaN or inf values; nothing was written.")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _save_tensors(tensors, directory / ADAPTER_FILE)
        meta = {"format": ADAPTER_FORMAT, "version": ADAPTER_FORMAT_VERSION,
                "lora": dict(getattr(model, "lora_settings", {})),
                "base_config": model.config.to_dict(),
                "base_fingerprint": base_fingerprint(model),
                "files": {ADAPTER_FILE: _sha256(directory / ADAPTER_FILE)}}
        _write_json(directory / ADAPTER_META, meta)
    except (OSError, SafetensorError) as err:      # safetensors reports a full or read-only disk its own way
        for name in (ADAPTER_FILE, ADAPTER_META):  # the folder was empty: leave it so, for the next try
            with contextlib.suppress(OSError):
                (directory / name).unlink()
        raise CheckpointError(f"could not write adapters to {str(directory)!r}: "
                              f"{getattr(err, 'strerror', None) or err}.") from None
    return directory


def is_adapter_folder(path: PathLike) -> bool:
    """True when `path` holds saved adapters (its lora.json), which are not a model to load."""
    return (Path(path) / ADAPTER_META).is_file()


def load_adapters(model: MiniGPT, directory: PathLike) -> MiniGPT:
    """Add the adapters saved in `directory` to `model` (the base model they were trained on,
    without adapters) and return it. A base of another shape is refused, naming the field."""
    from safetensors.torch import load_file

    from .checkpoint import _sha256, config_differences
    from .config import GPTConfig
    directory = Path(directory)
    meta_path = directory / ADAPTER_META
    if not meta_path.is_file():
        raise CheckpointError(f"{str(directory)!r} holds no LoRA adapters (no {ADAPTER_META}); pass the "
                              "folder written by save_adapters or `train --lora-rank`.")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        lora, base = meta["lora"], GPTConfig.from_dict(meta["base_config"])
        rank, alpha, targets = lora["rank"], lora["alpha"], lora["targets"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{str(meta_path)!r} is not a valid adapter description ({err}).") from None
    if meta.get("format") != ADAPTER_FORMAT or meta.get("version", 0) > ADAPTER_FORMAT_VERSION:
        raise CheckpointError(f"{str(meta_path)!r} is not a minigpt adapter description this version reads.")
    # dropout changes training, not the weights: adapters fit a base of another dropout
    differ = config_differences(base, model.config, ignore=("dropout",))
    if differ:
        raise LoRAError(f"these adapters were trained on another base model ({'; '.join(differ)}); "
                        "load them onto the model they were trained on (e.g. load_pretrained()).")
    saved = meta.get("base_fingerprint") or {}          # folders from before it was stored: no check
    if not isinstance(saved, dict) or not all(isinstance(v, (int, float)) for v in saved.values()):
        raise CheckpointError(f"{str(meta_path)!r} is not a valid adapter description (base_fingerprint).")
    here = base_fingerprint(model)
    moved = [name for name, value in saved.items()
             if name in here and abs(here[name] - value) > 0.01 * max(abs(value), 1e-6)]
    if moved:
        raise LoRAError(f"these adapters were trained on the same shape of model but other weights ({moved[0]}: mean "
                        f"|w| {here[moved[0]]:.4g} here, {saved[moved[0]]:.4g} when they were saved); load them onto "
                        "the model they were trained on (e.g. load_pretrained()), not a new MiniGPT.")
    file = directory / ADAPTER_FILE
    try:
        if _sha256(file) != meta.get("files", {}).get(ADAPTER_FILE):
            raise CheckpointError(f"{str(file)!r} is corrupted or truncated: its sha256 does not match "
                                  f"{ADAPTER_META}'s. Save the adapters again.")
        tensors = load_file(file)
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"cannot read {str(file)!r} ({err}).") from None
    # the shapes the adapters must have, from a model on the meta device (no memory, no change
    # to `model`): a refused folder leaves the caller's model as it was
    with torch.device("meta"):
        probe = add_lora(MiniGPT(model.config), rank, alpha, targets)
    expected = {k: v.shape for k, v in probe.state_dict().items() if ".lora_" in k}
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
