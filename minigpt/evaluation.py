"""Measuring a model: `estimate_loss` (a few random batches, cheap, used during training) and
`evaluate` (every token of a split, the number to compare between runs).

Used by `train` (its periodic estimates), `ladder` (each rung's validation loss), the CLI and
the benchmarks.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import DataError, TextData, get_batch
from .device import autocast as autocast_context
from .errors import UsageError, is_whole_number
from .model import eval_mode, ids_checked


def _check_count(name: str, value, usual: str, largest: Optional[int] = None) -> None:
    """A batch size, number of batches or window length: a positive int, at most `largest`."""
    if not is_whole_number(value, 1):
        raise UsageError(f"{name} must be a positive integer, got {value!r}; {usual} is usual.")
    if largest is not None and value > largest:
        raise UsageError(f"{name} {value} is longer than the model's block_size ({largest}); pass "
                         f"{name}={largest} or less (None uses the model's own).")


@torch.no_grad()
def estimate_loss(model: nn.Module, data: TextData, batch_size: int, eval_iters: int,
                  seed: int = 0, device: Optional[torch.device] = None,
                  autocast: bool = True) -> dict[str, float]:
    """Mean loss over `eval_iters` random batches of each split (same batches every call).

    `autocast` is TrainConfig.autocast: False evaluates in float32 on a GPU too.
    """
    _check_count("batch_size", batch_size, "32")
    _check_count("eval_iters", eval_iters, "20")
    if not is_whole_number(seed, 0):
        raise UsageError(f"estimate_loss's seed must be a whole number >= 0 (it picks the batches), got {seed!r}.")
    if not (hasattr(data, "train") and hasattr(data, "val")):
        raise UsageError(f"estimate_loss needs a TextData (both splits), got {type(data).__name__}; "
                         f"for the loss on one split's tokens use evaluate(model, tokens).")
    device = device or model.device
    out = {}
    with eval_mode(model):
        for split, tokens in (("train", data.train), ("val", data.val)):
            generator = torch.Generator().manual_seed(seed)
            losses = []                # (eval_iters,) 0-dim tensors, read once: one host sync per split
            with ids_checked(model, tokens):       # the split's ids, checked once on the CPU
                for _ in range(eval_iters):
                    x, y = get_batch(tokens, model.config.block_size, batch_size, generator, device)
                    with autocast_context(device, autocast):
                        losses.append(model(x, y)[1].float())
            out[split] = sum(torch.stack(losses).tolist()) / len(losses)
    return out


@torch.no_grad()
def evaluate(model: nn.Module, tokens: torch.Tensor, batch_size: int = 64,
             block_size: Optional[int] = None, autocast: bool = True) -> float:
    """Mean next-token cross-entropy over *all* of `tokens`, in non-overlapping windows.

    This is the number to compare between runs: unlike `estimate_loss` it does not depend
    on which random windows were drawn. The last, shorter window is included.
    `autocast` is TrainConfig.autocast: False evaluates in float32 on a GPU too.
    """
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 1:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise DataError(f"evaluate expects a 1-D tensor of token ids (e.g. data.val), got {shape}.")
    if len(tokens) < 2:      # one (input, target) pair needs two tokens
        raise DataError(f"evaluate needs at least 2 tokens (an input and the target after it), "
                        f"got {len(tokens)}; pass a longer split such as data.val.")
    _check_count("batch_size", batch_size, "64")
    if block_size is None:
        block_size = model.config.block_size
    _check_count("block_size", block_size, "None (the model's own)", largest=model.config.block_size)
    device = model.device
    n_targets = len(tokens) - 1
    full = n_targets // block_size
    sums, count = [], 0                # per-batch loss sums, read once at the end (one host sync)
    windows = []
    if full:
        x_all = tokens[:full * block_size].view(full, block_size)
        y_all = tokens[1:full * block_size + 1].view(full, block_size)
        windows = [(x_all[i:i + batch_size], y_all[i:i + batch_size]) for i in range(0, full, batch_size)]
    tail = n_targets - full * block_size
    if tail:
        start = full * block_size
        windows.append((tokens[start:start + tail][None], tokens[start + 1:start + tail + 1][None]))
    with eval_mode(model), ids_checked(model, tokens):    # every id checked once, not per batch
        for x, y in windows:
            x, y = x.to(device), y.to(device)       # blocking: non_blocking is unsafe from pageable memory on MPS
            with autocast_context(device, autocast):
                logits, _ = model(x)
            sums.append(F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1).long(),
                                        reduction="sum"))
            count += y.numel()
    return sum(torch.stack(sums).tolist()) / count
