"""Training: an iteration-based loop with AdamW, warm-up + cosine learning rate, gradient
clipping, periodic loss estimates, atomic checkpoints and exact resume.

Everything that makes a run reproducible is explicit: the caller seeds the model's
initialisation (the CLI calls `set_seed(TrainConfig.seed)`), batches come from their own
seeded generator, evaluation batches from another one, and a checkpoint stores every
generator's state next to the AdamW moments, so "train 2N steps" and "train N, stop, resume,
train N" produce the same numbers on a CPU.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F

from .checkpoint import LATEST_FILE, CheckpointError, load_checkpoint, restore_optimizer, save_checkpoint
from .data import TextData, get_batch
from .device import autocast, maybe_compile, pick_device, tune_cpu_allocator
from .model import MiniGPT, eval_mode


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    max_iters: int = 2000           # optimizer steps in the whole run (the schedule's length)
    batch_size: int = 64            # sequences per step
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
    device: str = "auto"            # "auto" = CUDA > MPS > CPU
    compile: bool = False           # torch.compile the model (pays off on long GPU runs)
    autocast: bool = True           # bf16 autocast on CUDA (CPUs always run fp32)

    def __post_init__(self) -> None:
        for name in ("max_iters", "batch_size", "eval_interval", "eval_iters", "checkpoint_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}.")
        if not isinstance(self.warmup_iters, int) or self.warmup_iters < 0:
            raise ValueError(f"TrainConfig.warmup_iters must be >= 0, got {self.warmup_iters!r}.")
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1):
            raise ValueError(f"TrainConfig.learning_rate must be in (0, 1), got {self.learning_rate!r}; "
                             "typical values are 3e-4 to 3e-3.")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("grad_clip and weight_decay must be >= 0.")
        if self.min_lr is not None and not (isinstance(self.min_lr, (int, float))
                                            and 0 <= self.min_lr <= self.learning_rate):
            raise ValueError(f"TrainConfig.min_lr must be between 0 and learning_rate="
                             f"{self.learning_rate}, got {self.min_lr!r}; None means learning_rate / 10.")

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
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class TrainResult:
    model: MiniGPT
    history: dict[str, list] = field(default_factory=dict)
    steps: int = 0
    elapsed: float = 0.0            # seconds spent in this call
    tokens_per_second: float = 0.0
    checkpoint: Optional[Path] = None


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with two groups: weight decay on matrices/embeddings, none on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    extra = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), **extra)


@torch.no_grad()
def estimate_loss(model: MiniGPT, data: TextData, batch_size: int, eval_iters: int,
                  seed: int = 0, device: Optional[torch.device] = None) -> dict[str, float]:
    """Mean loss over `eval_iters` random batches of each split (same batches every call)."""
    device = device or model.device
    out = {}
    with eval_mode(model):
        for split, tokens in (("train", data.train), ("val", data.val)):
            generator = torch.Generator().manual_seed(seed)
            losses = []
            for _ in range(eval_iters):
                x, y = get_batch(tokens, model.config.block_size, batch_size, generator, device)
                with autocast(device):
                    losses.append(model(x, y)[1].float().item())
            out[split] = sum(losses) / len(losses)
    return out


@torch.no_grad()
def evaluate(model: MiniGPT, tokens: torch.Tensor, batch_size: int = 64,
             block_size: Optional[int] = None) -> float:
    """Mean next-token cross-entropy over *all* of `tokens`, in non-overlapping windows.

    This is the number to compare between runs: unlike `estimate_loss` it does not depend
    on which random windows were drawn. The last, shorter window is included.
    """
    block_size = block_size or model.config.block_size
    device = model.device
    n_targets = len(tokens) - 1
    full = n_targets // block_size
    total, count = 0.0, 0
    windows = []
    if full:
        x_all = tokens[:full * block_size].view(full, block_size)
        y_all = tokens[1:full * block_size + 1].view(full, block_size)
        windows = [(x_all[i:i + batch_size], y_all[i:i + batch_size]) for i in range(0, full, batch_size)]
    tail = n_targets - full * block_size
    if tail:
        start = full * block_size
        windows.append((tokens[start:start + tail][None], tokens[start + 1:start + tail + 1][None]))
    with eval_mode(model):
        for x, y in windows:
            x, y = x.to(device), y.to(device)
            with autocast(device):
                logits, _ = model(x)
            total += F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1),
                                     reduction="sum").item()
            count += y.numel()
    return total / count


def _rng_tensors(batch_gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    tensors = {"rng.torch": torch.get_rng_state(), "rng.batches": batch_gen.get_state()}
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    return tensors


def _restore_rng(tensors: dict[str, torch.Tensor], batch_gen: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    batch_gen.set_state(tensors["rng.batches"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)


def train(model: MiniGPT, data: TextData, cfg: TrainConfig, out_dir: Union[str, Path, None] = None,
          resume: bool = False, stop_at: Optional[int] = None, progress: bool = True,
          callback: Optional[Callable[[dict[str, Any]], None]] = None) -> TrainResult:
    """Train `model` on `data` for cfg.max_iters steps (or until step `stop_at`).

    With `out_dir`, checkpoints are written there every cfg.checkpoint_interval steps and at
    the end; `resume=True` continues from the newest one with identical results. A NaN/inf
    loss stops training with TrainingDivergedError and leaves the last good checkpoint.
    `callback` receives a dict after every evaluation (step, train, val, lr, elapsed).
    """
    if data.tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(f"the data has {data.tokenizer.vocab_size} characters but the model's "
                         f"vocab_size is {model.config.vocab_size}; build the model with "
                         f"GPTConfig(vocab_size=data.tokenizer.vocab_size, ...).")
    device = pick_device(cfg.device)
    if device.type == "cpu":
        tune_cpu_allocator()
    model.to(device)
    optimizer = make_optimizer(model, cfg, device)
    batch_gen = torch.Generator().manual_seed(cfg.seed)
    history: dict[str, list] = {"step": [], "loss": [], "lr": [], "grad_norm": [], "eval": []}
    start_step = 0
    out_dir = Path(out_dir) if out_dir is not None else None

    if resume:
        if out_dir is None:
            raise ValueError("resume=True needs out_dir, the folder the earlier run wrote to.")
        try:
            ckpt = load_checkpoint(out_dir, device, with_trainer=True)
        except CheckpointError:
            if not out_dir.exists() or not any(out_dir.iterdir()):
                ckpt = None             # nothing to resume yet: start fresh
            else:
                raise
        if ckpt is not None:
            if ckpt.model.config != model.config:
                raise CheckpointError(f"cannot resume: the checkpoint in {str(out_dir)!r} was trained "
                                      f"with {ckpt.model.config}, not {model.config}.")
            if not ckpt.trainer_tensors:
                raise CheckpointError(f"{str(ckpt.path)!r} holds no optimizer state (an exported "
                                      "model?); resume needs a training checkpoint.")
            model.load_state_dict(ckpt.model.state_dict())
            restore_optimizer(optimizer, ckpt.trainer_tensors, ckpt.train_state["optimizer_param_groups"])
            _restore_rng(ckpt.trainer_tensors, batch_gen, device)
            history = ckpt.train_state["history"]
            start_step = ckpt.train_state["step"]
    elif out_dir is not None and (out_dir / LATEST_FILE).exists():
        raise ValueError(f"{str(out_dir)!r} already holds a checkpoint; pass resume=True "
                         "(CLI: --resume) to continue it, or choose another output folder.")

    step_model = maybe_compile(model, cfg.compile)
    end_step = cfg.max_iters if stop_at is None else min(stop_at, cfg.max_iters)
    block_size = model.config.block_size
    last_saved: Optional[Path] = None

    def checkpoint(step: int) -> Optional[Path]:
        if out_dir is None:
            return None
        state = {"history": history, "train_config": cfg.to_dict(), "step": step}
        return save_checkpoint(out_dir, model, data.tokenizer, step, optimizer, state,
                               _rng_tensors(batch_gen, device))

    def run_eval(step: int, elapsed: float) -> None:
        losses = estimate_loss(model, data, cfg.batch_size, cfg.eval_iters, cfg.seed + 1, device)
        record = {"step": step, "train": losses["train"], "val": losses["val"],
                  "lr": cfg.lr_at(max(step - 1, 0)), "elapsed": elapsed}
        history["eval"].append(record)
        if callback is not None:
            callback(record)

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=end_step, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
    model.train()
    t0 = time.perf_counter()
    step = start_step
    try:
        if start_step == 0 and not history["eval"]:
            run_eval(0, 0.0)
        while step < end_step:
            lr = cfg.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = get_batch(data.train, block_size, cfg.batch_size, batch_gen, device)
            with autocast(device, cfg.autocast):
                _, loss = step_model(x, y)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                where = f"; the last good checkpoint is {str(last_saved)!r}" if last_saved else ""
                raise TrainingDivergedError(
                    f"the loss became {loss_value} at step {step} (learning rate {lr:.2e}){where}. "
                    "Lower learning_rate, raise warmup_iters, or keep grad_clip at 1.0.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                         if cfg.grad_clip > 0 else torch.tensor(float("nan")))
            optimizer.step()
            step += 1
            history["step"].append(step)
            history["loss"].append(loss_value)
            history["lr"].append(lr)
            history["grad_norm"].append(float(grad_norm))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}")
            if step % cfg.eval_interval == 0 or step == cfg.max_iters:
                run_eval(step, time.perf_counter() - t0)
                if bar is not None:
                    bar.set_postfix(loss=f"{loss_value:.3f}", val=f"{history['eval'][-1]['val']:.3f}")
            if out_dir is not None and (step % cfg.checkpoint_interval == 0 or step == end_step):
                last_saved = checkpoint(step)
    except KeyboardInterrupt:
        if out_dir is not None and step > start_step and (last_saved is None or not last_saved.name.endswith(f"{step:06d}")):
            last_saved = checkpoint(step)
            print(f"\ninterrupted: saved step {step} to {str(last_saved)!r}; continue with resume=True (--resume).")
        raise
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - t0
    steps_run = step - start_step
    tokens = steps_run * cfg.batch_size * block_size
    return TrainResult(model=model, history=history, steps=step, elapsed=elapsed,
                       tokens_per_second=tokens / elapsed if elapsed > 0 else 0.0,
                       checkpoint=last_saved)
