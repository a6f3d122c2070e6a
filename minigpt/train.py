"""Training: an iteration-based loop with AdamW, warm-up + cosine learning rate, gradient
clipping, periodic loss estimates, atomic checkpoints and exact resume.

Everything that makes a run reproducible is explicit: the caller seeds the model's
initialisation (the CLI calls `set_seed(TrainConfig.seed)`), batches come from their own
seeded generator, evaluation batches from another one, and a checkpoint stores every
generator's state next to the AdamW moments, so "train 2N steps" and "train N, stop, resume,
train N" produce the same numbers on a CPU (with the same thread count: resume warns otherwise).

The loss estimates live in `evaluation`, the resume checks in `resume`.
"""

from __future__ import annotations

import difflib
import math
import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch

from .checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint, restore_optimizer, save_checkpoint
from .run_folder import (LATEST_FILE, META_FILE, check_output_folder, checkpoint_nbytes, clean_temporary_files,
                         has_checkpoint, previous_complete_step, refuse_existing_file, run_lock)
from .config import ConfigError
from .data import DataError, TextData, get_batch
from . import distributed
from .device import (DEVICE_CHOICES, autocast, autocast_dtype, maybe_compile, pick_device, synchronize,
                     tune_cpu_allocator)
from .errors import MiniGPTError, UsageError, is_whole_number, plain_number
from .evaluation import estimate_loss, evaluate  # noqa: F401  (also importable from here, as before)
from .model import MiniGPT
from .resume import ResumeWarning, check_resumable, data_fingerprint, trainer_state  # noqa: F401  (ResumeWarning: as before)

# torch.manual_seed takes seeds up to 2**64 - 1; evaluation seeds with seed + 1
MAX_SEED = 2**63 - 1


class TrainingDivergedError(MiniGPTError, RuntimeError):
    """The loss or the gradients became NaN or infinite."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class TrainConfig:
    max_iters: int = 2000           # optimizer steps in the whole run (the schedule's length)
    batch_size: int = 64            # sequences per step (the global batch, over all processes)
    learning_rate: float = 1e-3     # peak learning rate, reached after warm-up
    min_lr: Optional[float] = None  # floor of the cosine decay; None = learning_rate / 10
    warmup_iters: int = 100         # linear warm-up from 0
    weight_decay: float = 0.1       # applied to matrices only (not biases, LayerNorm gains)
    beta1: float = 0.9
    beta2: float = 0.99             # 0.99 rather than 0.999: small batches, short runs
    grad_clip: float = 1.0          # clip the global gradient norm; 0 disables
    eval_interval: int = 250        # estimate train/val loss every this many steps
    eval_iters: int = 20            # batches per loss estimate
    checkpoint_interval: int = 500  # with an output folder: checkpoint this often (and at the end)
    seed: int = 1337
    device: str = "auto"            # "auto" = CUDA > MPS > CPU; a torch.device is stored as its name
    compile: bool = False           # torch.compile the training step (CPU: no gain measured; GPU: not yet measured)
    autocast: bool = True           # bf16 (fp16 before Ampere) autocast on CUDA, in training and evaluation (CPUs: fp32)
    micro_batch_size: Optional[int] = None  # rows per forward pass and process; fewer = gradient accumulation

    def __post_init__(self) -> None:
        for f in fields(self):           # np.int64(500) from a sweep -> 500 (checks and JSON need it)
            setattr(self, f.name, plain_number(getattr(self, f.name)))
        if isinstance(self.device, torch.device):
            self.device = str(self.device)      # JSON-serialisable in checkpoints
        for name in ("max_iters", "batch_size", "eval_interval", "eval_iters", "checkpoint_interval"):
            value = getattr(self, name)
            if not is_whole_number(value, 1):
                raise ConfigError(f"TrainConfig.{name} must be a positive integer, got {value!r}.")
        if not is_whole_number(self.warmup_iters, 0):
            raise ConfigError(f"TrainConfig.warmup_iters must be >= 0, got {self.warmup_iters!r}.")
        if not (_is_number(self.learning_rate) and 0 < self.learning_rate < 1):
            raise ConfigError(f"TrainConfig.learning_rate must be in (0, 1), got {self.learning_rate!r}; "
                              "typical values are 3e-4 to 3e-3.")
        for name in ("grad_clip", "weight_decay"):
            value = getattr(self, name)
            if not (_is_number(value) and value >= 0):
                raise ConfigError(f"TrainConfig.{name} must be a number >= 0, got {value!r} "
                                  f"(grad_clip 0 disables clipping; weight_decay 0 disables decay).")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not (_is_number(value) and 0 <= value < 1):
                raise ConfigError(f"TrainConfig.{name} must be in [0, 1), got {value!r}; "
                                  "AdamW's usual values are beta1=0.9 and beta2=0.95 to 0.999.")
        if self.min_lr is not None and not (_is_number(self.min_lr)
                                            and 0 <= self.min_lr <= self.learning_rate):
            raise ConfigError(f"TrainConfig.min_lr must be between 0 and learning_rate="
                              f"{self.learning_rate}, got {self.min_lr!r}; None means learning_rate / 10.")
        if not is_whole_number(self.seed, 0) or self.seed > MAX_SEED:
            raise ConfigError(f"TrainConfig.seed must be an integer from 0 to 2**63 - 1, got {self.seed!r}.")
        if not isinstance(self.device, str) or self.device.lower().split(":")[0] not in DEVICE_CHOICES:
            raise ConfigError(f"TrainConfig.device must be one of {', '.join(DEVICE_CHOICES)} (or e.g. "
                              f"'cuda:1', or a torch.device), got {self.device!r}.")
        for name in ("compile", "autocast"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"TrainConfig.{name} must be True or False, got {getattr(self, name)!r}.")

    @property
    def final_lr(self) -> float:
        return self.learning_rate / 10 if self.min_lr is None else self.min_lr

    def lr_at(self, step: int) -> float:
        """Linear warm-up to learning_rate, then cosine decay to final_lr at max_iters."""
        if step < self.warmup_iters:
            return self.learning_rate * (step + 1) / self.warmup_iters
        progress = (step - self.warmup_iters) / max(1, self.max_iters - self.warmup_iters)
        progress = min(progress, 1.0)
        return self.final_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (self.learning_rate - self.final_lr)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """The inverse of to_dict; an unknown key is an error (a misspelt field must not be ignored)."""
        if not isinstance(values, dict):
            raise ConfigError(f"TrainConfig.from_dict expects a dict, got {type(values).__name__}.")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known), key=str)
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), known, n=1)
                hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
            raise ConfigError(f"unknown TrainConfig field(s) {', '.join(hints)}; known fields are "
                              f"{', '.join(known)}.")
        return cls(**values)


@dataclass
class TrainResult:
    model: MiniGPT
    history: dict[str, list] = field(default_factory=dict)
    steps: int = 0
    elapsed: float = 0.0            # seconds spent in this call
    tokens_per_second: float = 0.0
    step_seconds: float = 0.0       # of `elapsed`, in training steps (evaluations, checkpoint writes and
                                    # the last weights' check excluded)
    checkpoint: Optional[Path] = None


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with two groups: weight decay on matrices/embeddings, none on biases and norms.

    `device` is where the model trains ("auto", "cpu", "cuda", a torch.device, e.g. cfg.device):
    on CUDA the update runs as one fused kernel."""
    if not isinstance(cfg, TrainConfig):
        raise UsageError(f"make_optimizer's cfg must be a minigpt.TrainConfig (its learning_rate, betas and "
                         f"weight_decay), got {type(cfg).__name__}; a dict d becomes TrainConfig(**d).")
    device = pick_device(device)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    extra = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), **extra)


def _rng_tensors(batch_gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    tensors = {"rng.torch": torch.get_rng_state(), "rng.batches": batch_gen.get_state()}
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":          # dropout's masks come from the MPS generator there
        tensors["rng.mps"] = torch.mps.get_rng_state()
    return tensors


def _restore_rng(tensors: dict[str, torch.Tensor], batch_gen: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    batch_gen.set_state(tensors["rng.batches"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    elif device.type == "mps" and "rng.mps" in tensors:
        torch.mps.set_rng_state(tensors["rng.mps"])


def make_grad_scaler(device: torch.device, cfg: TrainConfig) -> torch.amp.GradScaler:
    """A gradient scaler for fp16 autocast (GPUs without native bf16); a disabled one otherwise.

    fp16's smallest normal number is 6e-5, so small gradients would flush to zero: the loss is
    multiplied by a large scale before the backward pass and the gradients divided by it
    before clipping; a step whose gradients overflowed is skipped and the scale halved.
    bf16 and float32 have float32's range: the scaler is then disabled, and `step` just
    calls the optimizer.
    """
    fp16 = autocast_dtype(device, cfg.autocast) == torch.float16
    return torch.amp.GradScaler(device.type if fp16 else "cpu", enabled=fp16)


class _ScaleGradient(torch.autograd.Function):
    """The identity in the forward pass; multiplies the gradient by `scale` in the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(scale)
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (scale,) = ctx.saved_tensors
        return grad * scale.to(grad.dtype), None


class _ScaledLoss:
    """Calls `model` and returns its loss with the gradient scaled by `scaler` (fp16 training).

    The backward pass computes what `scaler.scale(loss).backward()` computes, while the loss
    value stays the true one (it is logged and checked for divergence, also when loss * scale
    overflows). Every other attribute is the model's (DDP's `no_sync`, for gradient accumulation).
    """

    def __init__(self, model: Callable, scaler: torch.amp.GradScaler):
        self.model, self.scaler = model, scaler

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        logits, loss = self.model(x, y)
        scale = self.scaler.scale(torch.ones((), device=loss.device))    # the current scale, as a tensor
        return logits, _ScaleGradient.apply(loss, scale)

    def __getattr__(self, name: str):
        return getattr(self.model, name)


def _scaler_tensors(scaler: torch.amp.GradScaler) -> dict[str, torch.Tensor]:
    """The scaler's state as checkpoint tensors (none when it is disabled)."""
    if not scaler.is_enabled():
        return {}
    state = scaler.state_dict()
    return {"amp.scale": torch.tensor(state["scale"], dtype=torch.float64),
            "amp.growth_tracker": torch.tensor(state["_growth_tracker"], dtype=torch.int64)}


def _restore_scaler(scaler: torch.amp.GradScaler, tensors: dict[str, torch.Tensor]) -> None:
    """Continue with the checkpoint's scale; a checkpoint without one (written in bf16 or fp32)
    leaves the scaler at its initial scale."""
    if scaler.is_enabled() and "amp.scale" in tensors:
        state = scaler.state_dict()
        state.update(scale=float(tensors["amp.scale"]), _growth_tracker=int(tensors["amp.growth_tracker"]))
        scaler.load_state_dict(state)


def _clip_and_measure(params: list[torch.Tensor], grad_clip: float) -> torch.Tensor:
    """The global gradient norm (before clipping) as a 0-dim tensor, clipping to grad_clip
    when it is > 0. It stays on the device: the loop reads it together with the loss."""
    if grad_clip > 0:
        return torch.nn.utils.clip_grad_norm_(params, grad_clip)
    norms = [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def _read_step_numbers(loss: torch.Tensor, grad_norm: torch.Tensor) -> tuple[float, float]:
    """The step's loss and gradient norm as Python floats, in one read of the device.

    On a GPU every read of a value waits for all queued work (a host sync), and the GPU idles
    until the next step's kernels arrive. Reading both numbers at once makes that one sync per
    step; it cannot be fewer, since a non-finite loss or gradient must stop the run before the
    update is applied.
    """
    loss_value, grad_norm_value = torch.stack([loss.float(), grad_norm.float().to(loss.device)]).tolist()
    return loss_value, grad_norm_value


class _StopAtStepBoundary:
    """While training, Ctrl-C (SIGINT), SIGTERM or SIGHUP asks the loop to stop at the next
    step boundary.

    Raising KeyboardInterrupt wherever the signal lands could stop between a batch draw and
    the update, or inside a checkpoint write; stopping at a boundary is what lets "Ctrl-C,
    then resume" reproduce the uninterrupted run exactly. A second signal stops at once
    (the last checkpoint on disk stays intact). SIGTERM is what `kill`, a batch scheduler
    pre-empting a job, or a notebook server shutting a kernel down sends first: it is handled
    the same way (the run saves, then stops with KeyboardInterrupt), unless a handler of its
    own is already installed, or the process is one rank of a torchrun job (torchrun's agent
    sends SIGTERM to stop the other ranks when one fails; they wait in a collective and would
    never reach the boundary). SIGHUP (the run's terminal was closed) is handled like SIGTERM,
    with the output sent to os.devnull first: the run saves instead of dying with every step
    since the last checkpoint; under nohup it stays ignored. Outside the main thread, where
    Python cannot install signal handlers, the signals keep their usual meaning; where SIGINT
    is ignored (a job started in the background, or under nohup), it stays ignored, as Python
    itself leaves it.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}       # the handlers this one replaced, to restore

    def __enter__(self) -> "_StopAtStepBoundary":
        if threading.current_thread() is threading.main_thread():
            one_process = not distributed.world().distributed
            hangup = getattr(signal, "SIGHUP", None)          # (not on Windows)
            for sig, replaceable in ((signal.SIGINT, lambda h: h is not signal.SIG_IGN),
                                     (signal.SIGTERM, lambda h: h is signal.SIG_DFL and one_process),
                                     (hangup, lambda h: h is signal.SIG_DFL and one_process)):
                if sig is None:
                    continue
                previous = signal.getsignal(sig)
                if replaceable(previous):
                    signal.signal(sig, self._handle)
                    self._previous[sig] = previous
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if signum == getattr(signal, "SIGHUP", None):
            # the terminal was closed: writing to it can fail (EIO) on the way to the checkpoint,
            # so what would have been printed goes nowhere, as it does under nohup
            devnull = open(os.devnull, "w")
            sys.stdout = sys.stderr = devnull
            return
        what = "interrupt" if signum == signal.SIGINT else "SIGTERM"
        print(f"\n{what}: stopping after this step (Ctrl-C again to stop at once)", flush=True)

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            if previous is None:                  # set from outside Python: put back the default
                previous = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            signal.signal(sig, previous)


def _check_train_arguments(model, data, cfg) -> None:
    """A one-line UsageError for arguments of the wrong kind (text or a tensor for `data`, a
    dict for `cfg`), instead of an AttributeError from deep inside training."""
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
        raise UsageError(f"train's model must be a minigpt.MiniGPT, got {type(model).__name__}.")
    if not (hasattr(data, "tokenizer") and hasattr(data, "train") and hasattr(data, "val")):
        raise UsageError(f"train's data must be a minigpt.TextData (a tokenizer and its train/val splits), "
                         f"got {type(data).__name__}; make one with TextData.from_text(text) or "
                         f"TextData.shakespeare().")
    if not isinstance(cfg, TrainConfig):
        raise UsageError(f"train's cfg must be a minigpt.TrainConfig, got {type(cfg).__name__}; "
                         f"e.g. TrainConfig(max_iters=500).")


def train(model: MiniGPT, data: TextData, cfg: TrainConfig, out_dir: Union[str, Path, None] = None,
          resume: bool = False, stop_at: Optional[int] = None, progress: bool = True,
          callback: Optional[Callable[[dict[str, Any]], None]] = None) -> TrainResult:
    """Train `model` on `data` for cfg.max_iters steps (or until step `stop_at`).

    With `out_dir`, checkpoints are written there every cfg.checkpoint_interval steps and at
    the end; `resume=True` continues from the newest one with identical results. Before the
    first step the folder is checked (writable, room for the checkpoints) and locked against
    a second training process. A checkpoint of step N is written only once the weights after
    N updates have given a finite loss and finite gradients, so a NaN/inf stops training with
    TrainingDivergedError naming a checkpoint that is truly good. Ctrl-C stops at the next
    step boundary, saves, and raises KeyboardInterrupt; resuming then is exact too.
    `callback` receives a dict after every evaluation (step, train, val, lr, elapsed, and
    step_seconds: the part of elapsed spent in training steps).
    The model is left in training mode (dropout on), as after `model.train()`: `generate`,
    `attention_maps` and `evaluate` switch to eval mode themselves; call `model.eval()`
    before calling the model directly for numbers that must not depend on dropout.
    """
    _check_train_arguments(model, data, cfg)
    if data.tokenizer.vocab_size != model.config.vocab_size:
        raise UsageError(f"the data's tokenizer has {data.tokenizer.vocab_size} tokens but the model's "
                         f"vocab_size is {model.config.vocab_size}; build the model with "
                         f"GPTConfig(vocab_size=data.tokenizer.vocab_size, ...).")
    block_size = model.config.block_size
    for split, tokens in (("train", data.train), ("validation", data.val)):
        if len(tokens) <= block_size:      # one window needs block_size + 1 tokens
            raise DataError(f"the {split} split has {len(tokens):,} tokens, too few for windows of "
                            f"block_size={block_size:,}; use a smaller block_size or more text.")
    if stop_at is not None and not is_whole_number(stop_at, 0):
        raise UsageError(f"stop_at must be a step number >= 0 or None, got {stop_at!r}.")
    if callback is not None and not callable(callback):    # checked now, not after the first steps
        raise UsageError(f"callback must be a function that takes one dict (or None), got {callback!r}.")
    if any(p.dtype == torch.float16 for p in model.parameters()):
        # AdamW's eps (1e-8) is 0 in float16 and its second moments underflow: the first step
        # divides by zero, and the message would blame the learning rate
        raise UsageError("the model's weights are float16, which AdamW cannot update (its eps, 1e-8, is 0 in "
                         "float16: the loss becomes NaN at step 1 whatever the learning rate). Train in float32 "
                         "(model.float()); TrainConfig(autocast=True) runs the matmuls in float16 or bfloat16 "
                         "on a GPU.")
    if out_dir is not None and any(".lora_" in name for name, _ in model.named_parameters()):
        # a run folder's checkpoints hold whole plain models; an adapted model has extra tensors
        raise UsageError("a model with LoRA adapters trains without out_dir (checkpoints hold whole models): "
                         "call train(model, data, cfg) and save the adapters with "
                         "minigpt.lora.save_adapters(model, DIR).")
    try:
        device = pick_device(cfg.device)
    except ValueError as err:
        raise ConfigError(f"TrainConfig.device: {err}") from None
    # torchrun: this rank's device; its UsageErrors name what is wrong (e.g. the batch split)
    device = distributed.setup(device, cfg.batch_size, cfg.micro_batch_size)
    if out_dir is None:
        if resume:
            raise UsageError("resume=True needs out_dir, the folder the earlier run wrote to.")
        return _train(model, data, cfg, device, None, False, stop_at, progress, callback)
    out_dir = Path(out_dir)
    if distributed.is_main():
        check_output_folder(out_dir, 3 * checkpoint_nbytes(model))   # the newest two + one being written
    check_run_folder(out_dir, resume)
    with distributed.main_only(run_lock(out_dir)):        # rank 0 writes; the others only read
        if distributed.is_main():
            clean_temporary_files(out_dir)
        check_run_folder(out_dir, resume)     # again under the lock: another run may have written since
        return _train(model, data, cfg, device, out_dir, resume and has_checkpoint(out_dir),
                      stop_at, progress, callback)


def check_run_folder(out_dir: Union[str, Path], resume: bool = False) -> None:
    """The checks of an output folder that need no model: not a file, not a single checkpoint
    folder, and no checkpoint there unless the run resumes. The CLI calls this before it builds
    the data (a BPE vocabulary can take minutes), train() again before it writes."""
    out_dir = Path(out_dir)
    refuse_existing_file(out_dir)
    if (out_dir / META_FILE).exists():
        raise UsageError(f"{str(out_dir)!r} is a single checkpoint folder (an export or a step-* "
                         "folder), not a run folder; training writes and resumes run folders (the "
                         "folder above a step-* folder). Choose another output folder.")
    if not resume and has_checkpoint(out_dir):
        raise UsageError(f"{str(out_dir)!r} already holds a checkpoint; pass resume=True "
                         "(CLI: --resume) to continue it, or choose another output folder.")


def _load_for_resume(out_dir: Path, device: torch.device):
    """The checkpoint `latest` names, with its trainer state. If it cannot be loaded (a disk
    error corrupted it), the error names the run's previous complete step and the one command
    that resumes from it: the run folder keeps the older checkpoint for exactly this case."""
    newest = resolve_checkpoint(out_dir)  # `latest` itself may be the problem: its error says so
    try:
        return load_checkpoint(newest, device, with_trainer=True)
    except CheckpointError as err:
        raise with_resume_hint(err, out_dir) from None


def with_resume_hint(err: CheckpointError, out_dir: Union[str, Path]) -> CheckpointError:
    """`err` (the newest checkpoint of run `out_dir` cannot be read) with the run's previous
    complete step and the one command that resumes from it, or `err` itself when there is none."""
    earlier = previous_complete_step(out_dir)
    if earlier is None:
        return err
    latest = shlex.quote(str(Path(out_dir) / LATEST_FILE))
    return CheckpointError(f"{err} The run's previous checkpoint {earlier.name!r} is complete; to "
                           f"resume from it, run `echo {earlier.name} > {latest}` and resume again.")


def _train(model: MiniGPT, data: TextData, cfg: TrainConfig, device: torch.device,
           out_dir: Optional[Path], resume: bool, stop_at: Optional[int], progress: bool,
           callback: Optional[Callable[[dict[str, Any]], None]]) -> TrainResult:
    if device.type == "cpu":
        tune_cpu_allocator()
    model.to(device)
    optimizer = make_optimizer(model, cfg, device)
    scaler = make_grad_scaler(device, cfg)
    batch_gen = torch.Generator().manual_seed(cfg.seed)
    history: dict[str, list] = {"step": [], "loss": [], "lr": [], "grad_norm": [], "eval": []}
    start_step = 0
    last_saved: Optional[Path] = None

    if resume:
        ckpt = _load_for_resume(out_dir, device)
        check_resumable(ckpt, model, data, cfg, out_dir, device)
        model.load_state_dict(ckpt.model.state_dict())
        restore_optimizer(optimizer, ckpt.trainer_tensors, ckpt.train_state["optimizer_param_groups"])
        try:
            _restore_rng(ckpt.trainer_tensors, batch_gen, device)
        except (KeyError, RuntimeError, TypeError) as err:
            raise CheckpointError(f"{str(ckpt.path)!r} holds unusable random-number-generator "
                                  f"states ({err}); resume from an earlier checkpoint.") from None
        _restore_scaler(scaler, ckpt.trainer_tensors)
        history = ckpt.train_state["history"]
        start_step = ckpt.train_state["step"]
        last_saved = ckpt.path

    step_model = maybe_compile(distributed.prepare(model, device), cfg.compile)
    if scaler.is_enabled():
        step_model = _ScaledLoss(step_model, scaler)
    end_step = cfg.max_iters if stop_at is None else min(stop_at, cfg.max_iters)
    block_size = model.config.block_size
    params = [p for p in model.parameters() if p.requires_grad]

    fingerprint = data_fingerprint(data) if out_dir is not None else None

    def save(step: int, rng: dict[str, torch.Tensor]) -> Path:
        if not distributed.is_main():
            return out_dir / f"step-{step:06d}"        # rank 0 writes it
        return save_checkpoint(out_dir, model, data.tokenizer, step, optimizer,
                               trainer_state(history, cfg, step, fingerprint), rng)

    # seconds this call spent evaluating, writing checkpoints and checking the last weights: the
    # rest is the training steps' time, to compare step speed by (evaluations differ between recipes)
    paused = 0.0

    def run_eval(step: int) -> None:
        nonlocal paused
        synchronize(device)            # the last update may still run on a GPU: it is step time
        began = time.perf_counter()
        losses = estimate_loss(model, data, cfg.batch_size, cfg.eval_iters, cfg.seed + 1, device,
                               autocast=cfg.autocast)
        elapsed = began - t0
        record = {"step": step, "train": losses["train"], "val": losses["val"],
                  "lr": cfg.lr_at(max(step - 1, 0)), "elapsed": elapsed,
                  "step_seconds": elapsed - paused}
        history["eval"].append(record)
        paused += time.perf_counter() - began
        if callback is not None and distributed.is_main():
            callback(record)

    def diverged(what: str, value: float, step: int, lr: float) -> TrainingDivergedError:
        if last_saved is not None:
            where = f"; the last good checkpoint is {str(last_saved)!r} (resume from it: resume=True, --resume)"
        elif out_dir is not None:
            where = "; no checkpoint was written before it"
        else:
            where = ""
        return TrainingDivergedError(
            f"the {what} became {value} at step {step} (learning rate {lr:.2e}){where}. "
            "Lower learning_rate, raise warmup_iters, or keep grad_clip at 1.0.")

    bar = None
    if progress and distributed.is_main():
        from tqdm.auto import tqdm
        bar = tqdm(total=end_step, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
    model.train()
    t0 = time.perf_counter()
    step = start_step
    with _StopAtStepBoundary() as interrupt:
        try:
            if start_step == 0 and not history["eval"]:
                run_eval(0)
            while True:
                stopping = distributed.any_rank(step >= end_step or interrupt.requested)
                if stopping and (out_dir is None or step == start_step):
                    break                      # nothing new to check and save
                check_began = time.perf_counter()
                # the weights after `step` updates are saved once this step's pass finds them good
                saving = out_dir is not None and step > start_step and (stopping or step % cfg.checkpoint_interval == 0)
                boundary_rng = None
                if saving:     # the state at this step boundary: what a checkpoint of `step` stores
                    boundary_rng = _rng_tensors(batch_gen, device)
                    # saved beside the generators; copied only here, as reading the scale syncs
                    boundary_rng.update(_scaler_tensors(scaler))
                lr = cfg.lr_at(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x, y = get_batch(data.train, block_size, cfg.batch_size, batch_gen, device)
                optimizer.zero_grad(set_to_none=True)
                # this rank's rows of the batch, forward and backward (gradients averaged over ranks)
                loss = distributed.forward_backward(step_model, x, y, lambda: autocast(device, cfg.autocast),
                                                    cfg.micro_batch_size)
                if scaler.is_enabled():
                    scaler.unscale_(optimizer)     # clip and measure the true gradients
                with distributed.lost_peer_as_error(distributed.world()):   # NCCL's all-reduce ends here
                    loss_value, grad_norm = _read_step_numbers(loss, _clip_and_measure(params, cfg.grad_clip))
                if not math.isfinite(loss_value):
                    raise diverged("loss", loss_value, step, lr)
                # with fp16's scaler an overflow is expected now and then: scaler.step skips
                # that update and lowers the scale; a non-finite loss still stops the run
                if not math.isfinite(grad_norm) and not scaler.is_enabled():
                    raise diverged("gradient norm", grad_norm, step, lr)
                # the weights after `step` updates gave a finite loss and finite gradients:
                # only now may they be saved as a good checkpoint
                save_seconds = 0.0
                if saving:
                    began = time.perf_counter()
                    last_saved = save(step, boundary_rng)
                    save_seconds = time.perf_counter() - began
                    paused += save_seconds
                if stopping:                   # that forward/backward pass only checked the weights:
                    optimizer.zero_grad(set_to_none=True)
                    assert boundary_rng is not None      # stopping here implies saving (see the break above)
                    _restore_rng(boundary_rng, batch_gen, device)   # leave no trace of it
                    # the check is not a training step either (its save is counted above)
                    paused += time.perf_counter() - check_began - save_seconds
                    break
                scaler.step(optimizer)             # optimizer.step() unless fp16 gradients overflowed
                scaler.update()
                step += 1
                history["step"].append(step)
                history["loss"].append(loss_value)
                history["lr"].append(lr)
                history["grad_norm"].append(grad_norm)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_value:.3f}")
                if step % cfg.eval_interval == 0 or step == cfg.max_iters:
                    run_eval(step)
                    if bar is not None:
                        bar.set_postfix(loss=f"{loss_value:.3f}", val=f"{history['eval'][-1]['val']:.3f}")
        finally:
            if bar is not None:
                bar.close()
    if interrupt.requested:
        if last_saved is not None and last_saved.name == f"step-{step:06d}":
            print(f"interrupted: saved step {step} to {str(last_saved)!r}; continue with "
                  "resume=True in Python, --resume at the command line.", flush=True)
        elif out_dir is None:
            print(f"interrupted at step {step}: train() wrote no checkpoint (it was given no out_dir).", flush=True)
        else:
            print(f"interrupted at step {step}, before anything new was saved.", flush=True)
        raise KeyboardInterrupt
    elapsed = time.perf_counter() - t0
    steps_run = step - start_step
    tokens = steps_run * cfg.batch_size * block_size
    return TrainResult(model=model, history=history, steps=step, elapsed=elapsed,
                       tokens_per_second=tokens / elapsed if elapsed > 0 else 0.0,
                       step_seconds=elapsed - paused, checkpoint=last_saved)
