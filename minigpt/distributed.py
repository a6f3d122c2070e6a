"""Data-parallel training: several processes, one model each, one shared gradient.

Launched by `torchrun`, every process (a *rank*) holds a full copy of the model and of the
optimizer. Each step, every rank draws the same global batch of `batch_size` rows (the
batch generator is seeded identically, so all ranks draw exactly what one process would
draw), keeps its own slice of `batch_size / world_size` rows, and computes the gradient of
its slice's mean loss. PyTorch's `DistributedDataParallel` then all-reduces the gradients
(sums them and divides by the number of ranks) while the backward pass runs, so every rank
holds the gradient of the whole batch's mean loss and takes the same optimizer step: the
copies stay identical without ever sending weights.

    torchrun --standalone --nproc_per_node=2 -m minigpt train ...          # one machine
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d \\
             --rdzv-endpoint=HOST:29500 --rdzv-id=run1 -m minigpt train ...  # on each machine

Without torchrun (no WORLD_SIZE in the environment, or WORLD_SIZE=1) everything here is a
no-op and training runs exactly as in one process. Communication is gloo between CPU
processes and NCCL between CUDA GPUs (one GPU per rank, `cuda:LOCAL_RANK`).

A rank that crashes closes its connections; the others' next all-reduce fails at once
(gloo: "Connection closed/reset by peer") and `forward_backward` turns that into
`RankFailedError`, one line saying what happened and how to resume. A rank that hangs
instead is caught by the process group's timeout (`DEFAULT_TIMEOUT_S`).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Optional

import torch
import torch.distributed as dist

from .errors import MiniGPTError, UsageError, is_whole_number

# How long a collective (all-reduce, broadcast) waits for the other ranks before failing.
# Rank 0 alone writes checkpoints while the others wait in the next all-reduce, so this
# must cover the slowest checkpoint write; a crashed rank is detected long before it.
DEFAULT_TIMEOUT_S = 300
_timeout_s = DEFAULT_TIMEOUT_S      # the one setup() used, for the error message


class RankFailedError(MiniGPTError, RuntimeError):
    """Another process of a data-parallel run crashed, was killed or stopped answering."""


@dataclass(frozen=True)
class World:
    rank: int = 0            # this process, 0 .. world_size - 1 (over all machines)
    world_size: int = 1      # processes in the run
    local_rank: int = 0      # this process on its machine: picks the GPU

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and the progress bar; the others only compute."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{name}={text!r} is not an integer; torchrun sets it, do not set it by hand.") from None


def world() -> World:
    """This process's place in the run: from the process group once joined, else from the
    variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK), else a single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


def is_main() -> bool:
    return world().is_main


def setup(device: torch.device, batch_size: int, micro_batch_size: Optional[int] = None,
          timeout_s: float = DEFAULT_TIMEOUT_S) -> torch.device:
    """Join torchrun's process group (if launched by torchrun) and return this rank's device.

    Also checks, before any work, that the global batch splits into equal shares (every
    rank's mean loss must weigh the same number of rows for their average to be the whole
    batch's mean) and each share into whole micro-batches.
    """
    w = world()
    rows = check_batch_split(batch_size, w.world_size, micro_batch_size)
    if not w.distributed:
        return device
    if device.type == "mps":
        raise UsageError("data-parallel training needs gloo (CPU) or NCCL (CUDA); Apple's MPS has "
                         "neither. Run torchrun with --device cpu, or train in one process.")
    if device.type == "cuda":
        if w.local_rank >= torch.cuda.device_count():
            raise UsageError(f"rank {w.rank} wants GPU {w.local_rank} but this machine has "
                             f"{torch.cuda.device_count()}; use --nproc_per_node <= the GPU count.")
        device = torch.device("cuda", w.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        global _timeout_s
        _timeout_s = timeout_s
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=timedelta(seconds=timeout_s))
    if w.is_main:
        print(f"data parallel: {w.world_size} processes ({dist.get_backend()}), "
              f"{rows} of the {batch_size} rows each per step", file=sys.stderr, flush=True)
    return device


def check_batch_split(batch_size: int, world_size: int, micro_batch_size: Optional[int] = None) -> int:
    """Rows per rank; a UsageError naming the fix when the batch does not split evenly."""
    if micro_batch_size is not None and not is_whole_number(micro_batch_size):
        raise UsageError(f"micro_batch_size must be a positive integer or None, got {micro_batch_size!r}.")
    if batch_size % world_size != 0:
        below = batch_size - batch_size % world_size
        raise UsageError(f"batch_size={batch_size} does not split evenly over {world_size} processes; "
                         f"use a multiple of {world_size} (e.g. {below or world_size} or {below + world_size}).")
    rows = batch_size // world_size
    if micro_batch_size is not None and (micro_batch_size < 1 or rows % micro_batch_size != 0):
        divisors = [d for d in range(1, rows + 1) if rows % d == 0]
        raise UsageError(f"micro_batch_size={micro_batch_size} must divide the {rows} rows each process "
                         f"gets per step (batch_size {batch_size} / {world_size} processes); "
                         f"choose one of {divisors}.")
    return rows


def main_only(context: contextlib.AbstractContextManager) -> contextlib.AbstractContextManager:
    """`context` on rank 0, nothing on the others: e.g. the lock on the output folder, which
    guards against a second *run* writing there, not against this run's other ranks."""
    return context if is_main() else contextlib.nullcontext()


def any_rank(flag: bool) -> bool:
    """True on every rank if it is True on any: decisions that change the control flow
    (stop here, e.g. after Ctrl-C, which reaches the ranks at slightly different moments)
    must be the same on all ranks, or one would wait forever in an all-reduce."""
    if not world().distributed:
        return flag
    with lost_peer_as_error(world()):
        value = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _collective_device() -> torch.device:
    # NCCL reduces CUDA tensors only; gloo reduces CPU tensors
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def prepare(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Wrap `model` for data-parallel training (a no-op in one process).

    Call it after restoring a checkpoint, so that every rank starts from the same state.
    DDP broadcasts rank 0's weights at construction (a safety net: they are equal anyway),
    and ranks other than 0 then switch to their own dropout random stream, derived from the
    shared one, so that their rows are not dropped with copies of rank 0's masks. Rank 0
    keeps the stream one process would have, which is the one checkpoints store.
    """
    w = world()
    if not w.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel
    # the only buffers are position tables computed from the config: no need to sync them
    # before every forward pass (the keyword was renamed in torch 2.13)
    no_buffer_sync = ({"forward_sync_buffers": False}
                      if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                      else {"broadcast_buffers": False})
    with lost_peer_as_error(w):
        ddp = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, **no_buffer_sync)
    if w.rank > 0:
        torch.manual_seed(int(torch.randint(0, 2**62, (1,))) + w.rank)
    return ddp


def forward_backward(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                     autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                     micro_batch_size: Optional[int] = None) -> torch.Tensor:
    """Forward and backward on this rank's share of the global batch x, y (B, T).

    Leaves in every parameter's .grad the gradient of the mean loss over all B rows (DDP
    averages the ranks' gradients), and returns that mean loss, the same number on every
    rank, as a 0-dim tensor on the model's device: reading it is a host sync on a GPU, which
    the caller does once per step, together with the gradient norm. The share is split into
    micro-batches of `micro_batch_size` rows when it would not fit in memory at once
    (gradient accumulation); each micro-batch's loss is divided by their number, so the
    summed gradients are those of the mean.
    In one process without micro-batches this is exactly `loss.backward(); loss.detach()`.
    """
    w = world()
    rows = check_batch_split(x.size(0), w.world_size, micro_batch_size)
    x = x[w.rank * rows:(w.rank + 1) * rows]
    y = y[w.rank * rows:(w.rank + 1) * rows]
    micro = micro_batch_size or rows
    n_micro = rows // micro
    total = None
    with lost_peer_as_error(w):
        for i in range(n_micro):
            last = i == n_micro - 1
            # DDP all-reduces during the backward pass; for all but the last micro-batch the
            # gradients just accumulate locally (no_sync), one all-reduce per step in all
            skip_sync = model.no_sync() if (not last and hasattr(model, "no_sync")) else contextlib.nullcontext()
            with skip_sync:
                with autocast():
                    _, loss = model(x[i * micro:(i + 1) * micro], y[i * micro:(i + 1) * micro])
                (loss / n_micro if n_micro > 1 else loss).backward()
            total = loss.detach() if total is None else total + loss.detach()
        mean_loss = total / n_micro if n_micro > 1 else total
        if w.distributed:       # the logged loss is the whole batch's mean, as in one process
            mean_loss = mean_loss.float().clone()
            dist.all_reduce(mean_loss)      # SUM: gloo has no AVG
            mean_loss /= w.world_size
        return mean_loss


@contextlib.contextmanager
def lost_peer_as_error(w: World):
    """Turn the process group's error about a lost peer into one RankFailedError line;
    any other exception (a bug in our code) keeps its traceback."""
    try:
        yield
    except RuntimeError as err:
        if not (w.distributed and is_communication_error(err)):
            raise
        raise RankFailedError(
            f"rank {w.rank} of {w.world_size} lost contact with the other processes of this "
            f"data-parallel run (one crashed, was killed, or did not answer within {_timeout_s:.0f} s; "
            f"look at the other ranks' output for why). The run stops here; rerun the same command "
            f"with --resume to continue from the last checkpoint. [{_first_line(err)}]") from None


def is_communication_error(err: BaseException) -> bool:
    """Whether an exception comes from the process group (a lost peer, a timeout), not from
    our own code: gloo and NCCL raise plain RuntimeErrors, recognisable by their text."""
    dist_error = getattr(dist, "DistError", None)
    if dist_error is not None and isinstance(err, dist_error):
        return True
    text = str(err)
    return any(s in text for s in ("gloo", "Gloo", "NCCL", "Connection closed by peer",
                                   "Connection reset by peer", "Timed out waiting"))


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]


def quiet_other_ranks() -> None:
    """On ranks other than 0, send prints (stdout) to /dev/null: rank 0 reports for the run.
    Errors (stderr) stay visible on every rank."""
    if not is_main():
        sys.stdout = open(os.devnull, "w")


def shutdown() -> None:
    """Leave the process group (once training is over; a no-op in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
