"""The one place that decides which device runs the book (CUDA > MPS > CPU)."""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import time
from typing import Optional, Union

import torch

# Sharing the CPU (threads, OpenMP's spin, the allocator) lives in cpu.py; tune_cpu_allocator
# stays importable from here for the callers that import it from device.
from .cpu import configure_cpu_threads, thread_choice, tune_cpu_allocator  # noqa: F401
from .errors import UsageError, is_whole_number

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def pick_device(preferred: Union[str, torch.device, None] = "auto") -> torch.device:
    """'auto' picks CUDA if present, then Apple's MPS, else the CPU.

    Naming a device that is not available is an error (rather than a silent fallback),
    so a run that was meant for the GPU never crawls along on the CPU unnoticed.
    The first call in a process also fits torch's CPU thread count to the CPUs this process
    may really use (`minigpt.cpu.configure_cpu_threads` has the rule).
    """
    if isinstance(preferred, torch.device):
        preferred = str(preferred)
    if preferred is not None and not isinstance(preferred, str):    # pick_device(0) would mean "auto"
        hint = f"; GPU {preferred} is 'cuda:{preferred}'" if is_whole_number(preferred, 0) else ""
        raise UsageError(f"device must be a name such as 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps', got "
                         f"{preferred!r}{hint}.")
    preferred = (preferred or "auto").lower()
    configure_cpu_threads()
    kind = preferred.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise UsageError(f"unknown device {preferred!r}; use one of {', '.join(DEVICE_CHOICES)}.")
    mps_ok = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_ok else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' was requested but PyTorch sees no CUDA GPU "
                         "(is this a CPU-only torch build?); use device='auto' or 'cpu'.")
    if kind == "mps" and not mps_ok:
        raise UsageError("device 'mps' was requested but is not available; use device='auto' or 'cpu'.")
    try:
        device = torch.device(preferred)
    except RuntimeError:            # 'cuda:x', 'cuda:-1': torch's message names no caller
        raise UsageError(f"device {preferred!r} is not one torch knows; a GPU is 'cuda' or 'cuda:N' "
                         "(N counts from 0).") from None
    _check_gpu_number(device, "pick_device")
    return device


def _check_gpu_number(device: torch.device, who: str) -> None:
    """'cuda:3' on a machine with one GPU fails at the first tensor moved there, deep inside
    torch ("invalid device ordinal"): said here, with the numbers there are."""
    count = torch.cuda.device_count() if device.type == "cuda" and device.index is not None else 0
    if count and device.index >= count:         # (no GPU at all is said where that is checked)
        raise UsageError(f"{who}: device {str(device)!r} asks for GPU number {device.index}, but this machine has "
                         f"{count} CUDA GPU{'s' if count != 1 else ''}, numbered from 0 (cuda:0"
                         f"{f' to cuda:{count - 1}' if count > 1 else ''}); use 'cuda' for the first one.")


def as_device(device, who: str, present: bool = True) -> torch.device:
    """torch.device(device), or a UsageError that names `who` when torch knows no such device
    (torch's own message, "Expected one of cpu, cuda, ... device type at start of device
    string: gpu", comes from deep inside and names no caller), or when this machine lacks it:
    'cuda' on a laptop, copied from a Colab notebook, failed inside torch with "Torch not
    compiled with CUDA enabled" or "Cannot access accelerator device when none is available".
    `present=False` skips that second check, for a rule that only reads the device's kind."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"{who}'s device {device!r} is not one torch knows; use 'cpu', 'cuda' (or 'cuda:1') or "
                         "'mps', or the device minigpt.pick_device() returns.") from None
    if present and device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{who}'s device {str(device)!r}: PyTorch sees no CUDA GPU on this machine (is this a "
                         "CPU-only torch build?); use 'cpu', or the device minigpt.pick_device() returns.")
    if present:
        _check_gpu_number(device, who)
    if present and device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UsageError(f"{who}'s device 'mps' is not available on this machine; use 'cpu', or the device "
                         "minigpt.pick_device() returns.")
    return device


# bf16 runs natively from compute capability 8.0 (Ampere: A100, RTX 30xx) on; a T4 (7.5) or
# V100 (7.0) only emulates it, slower than fp32
NATIVE_BF16_CAPABILITY = (8, 0)


def autocast_dtype(device: torch.device, enabled: bool = True) -> Optional[torch.dtype]:
    """The reduced precision autocast uses on `device`, or None for float32.

    CUDA GPUs with native bf16 (compute capability 8.0 and later) get bfloat16; older ones
    (Colab's T4 is 7.5, V100 7.0) get float16, which needs a gradient scaler in training (see
    `train`). The capability decides, not `torch.cuda.is_bf16_supported()`, which also counts
    emulated bf16 and says yes on a T4. AMD GPUs (ROCm) have bf16. On a CPU, bf16 matmuls
    are far slower than fp32 (no fast path on most laptops), so CPUs and MPS run in float32.
    """
    device = as_device(device, "autocast", present=False)   # "cuda" or a torch.device, as everywhere
    if not enabled or device.type != "cuda":                 # float32 on MPS and CPUs, present or not
        return None
    as_device(device, "autocast")                            # a CUDA GPU must be here to be asked
    if torch.version.hip:
        return torch.bfloat16
    index = device.index if device.index is not None else torch.cuda.current_device()
    native_bf16 = torch.cuda.get_device_capability(index) >= NATIVE_BF16_CAPABILITY
    return torch.bfloat16 if native_bf16 else torch.float16


def describe_precision(device: torch.device, enabled: bool = True) -> str:
    """What `autocast` does on `device`, for the training header: e.g. 'bf16 autocast'."""
    dtype = autocast_dtype(device, enabled)
    if dtype is None:
        return "fp32"
    return "bf16 autocast" if dtype == torch.bfloat16 else "fp16 autocast + gradient scaler"


def autocast(device: torch.device, enabled: bool = True):
    """Autocast to `autocast_dtype(device)` (bf16 or fp16 on CUDA); a no-op elsewhere."""
    dtype = autocast_dtype(device, enabled)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


def synchronize(device: torch.device) -> None:
    """Wait until the GPU (CUDA or Apple MPS) has finished its queued work; no-op on a CPU.

    Needed before reading a clock: GPU calls return as soon as the work is queued.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_calls(fn, n: int, device: torch.device) -> list[float]:
    """Seconds taken by each of n calls of fn(), waiting for the device after each one."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def median_ms(fn, device: torch.device, reps: int = 7) -> float:
    """Median of `reps` timed calls of fn() in milliseconds, after one untimed warm-up call.

    The median, not the mean: a call slowed by another job on a busy machine moves it little,
    which keeps a table of many timings taken at different moments steady.
    """
    time_calls(fn, 1, device)
    return statistics.median(time_calls(fn, reps, device)) * 1e3


def set_seed(seed: int) -> None:
    """Seed Python's and PyTorch's generators (CPU and every GPU).

    The seed is a whole number from 0 to 2**64 - 1, what torch's generators hold: "42" or 1.5
    (which torch would quietly read as 1) and True are refused, as TrainConfig.seed refuses them.
    """
    if not is_whole_number(seed, 0) or seed > 2**64 - 1:
        raise UsageError(f"set_seed takes a whole number from 0 to 2**64 - 1, got {seed!r}.")
    random.seed(seed)
    torch.manual_seed(seed)


def describe(device: torch.device) -> str:
    """The device in words, e.g. 'cpu (2 threads: torch's default; 2 usable CPUs)'."""
    device = as_device(device, "describe")
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        choice = thread_choice()
        why = f": {choice.reason}" if choice is not None else ""
        n = torch.get_num_threads()
        return f"cpu ({n} thread{'s' if n > 1 else ''}{why})"
    return device.type


def timing_conditions(device: torch.device) -> str:
    """What a timing ran on, for the cells that print one: the device in words and the 1-minute
    load average ('unknown' on Windows, which has none), e.g. "cpu (2 threads: ...); load
    average 1.7". A number in milliseconds means little without both."""
    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "unknown"
    return f"{describe(device)}; load average {load}"


def missing_compiler() -> Optional[str]:
    """Why torch.compile's inductor backend cannot build code here, or None.

    torch.compile is lazy: without a working C++ compiler it fails only at the first call,
    deep inside a training step. Asking inductor for its compiler up front (the private
    helper it uses itself; skipped where a torch version lacks it) turns that into a warning.
    """
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except Exception:                  # another torch layout: let torch.compile decide
        return None
    try:
        get_cpp_compiler()
    except Exception as err:           # torch._inductor.exc.InvalidCxxCompiler
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def maybe_compile(model: torch.nn.Module, enabled: Optional[bool]):
    """torch.compile the model when asked and possible; otherwise return it unchanged."""
    if not enabled:
        return model
    import warnings
    problem = missing_compiler()
    if problem is not None:
        warnings.warn(f"--compile needs a working C++ compiler, and none was found ({problem}); running "
                      "eagerly. Install one (apt-get install g++, or Xcode's command-line tools) to compile.")
        return model
    try:
        return torch.compile(model)
    except Exception as err:  # e.g. an unsupported Python (a missing compiler shows only at the first call)
        warnings.warn(f"torch.compile is unavailable here ({err}); running eagerly.")
        return model
