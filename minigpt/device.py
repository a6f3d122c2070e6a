"""The one place that decides which device runs the book (CUDA > MPS > CPU)."""

from __future__ import annotations

import contextlib
import math
import os
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Union

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def pick_device(preferred: Union[str, torch.device, None] = "auto") -> torch.device:
    """'auto' picks CUDA if present, then Apple's MPS, else the CPU.

    Naming a device that is not available is an error (rather than a silent fallback),
    so a run that was meant for the GPU never crawls along on the CPU unnoticed.
    The first call in a process also fits torch's CPU thread count to the CPUs this process
    may really use (see `configure_cpu_threads` for the rule).
    """
    if isinstance(preferred, torch.device):
        preferred = str(preferred)
    preferred = (preferred or "auto").lower()
    configure_cpu_threads()
    kind = preferred.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {preferred!r}; use one of {', '.join(DEVICE_CHOICES)}.")
    mps_ok = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_ok else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but PyTorch sees no CUDA GPU "
                         "(is this a CPU-only torch build?); use device='auto' or 'cpu'.")
    if kind == "mps" and not mps_ok:
        raise ValueError("device 'mps' was requested but is not available; use 'auto' or 'cpu'.")
    return torch.device(preferred)


# ------------------------------------------------------------------ CPU threads
THREADS_ENV = "MINIGPT_THREADS"
# Variables through which a user already tells OpenMP/MKL (and so torch) how many threads to use.
USER_THREAD_ENVS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# torch's thread count when this module was imported: if it differs later, the user called
# torch.set_num_threads themselves, and that choice is kept.
_THREADS_AT_IMPORT = torch.get_num_threads()


@dataclass(frozen=True)
class ThreadChoice:
    """How many threads torch uses on the CPU, and why (shown by `describe`)."""
    threads: int
    reason: str


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_cgroups(root: Path) -> dict[str, str]:
    """Controller -> this process's cgroup path, from /proc/self/cgroup ('' = cgroup v2)."""
    paths = {}
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                paths[controller] = parts[2]
    return paths


def _with_ancestors(mount: Path, cgroup_path: str) -> list[Path]:
    """The cgroup's folder and every parent up to the mount point (a limit anywhere applies).

    Inside a container the mount usually *is* the process's cgroup, so the path from
    /proc/self/cgroup does not exist under it; the mount point itself is then checked.
    """
    folders = []
    parts = [p for p in cgroup_path.strip("/").split("/") if p]
    for n in range(len(parts), -1, -1):
        folder = mount.joinpath(*parts[:n])
        if folder.is_dir():
            folders.append(folder)
    return folders


def cgroup_cpu_limit(root: Union[str, Path] = "/") -> Optional[float]:
    """The CPUs the cgroup quota grants this process (e.g. 1.5), or None when there is none.

    cgroup v2: `cpu.max` holds "<quota> <period>" or "max <period>"; cgroup v1:
    `cpu.cfs_quota_us` (-1 = none) and `cpu.cfs_period_us`. Containers (Docker `--cpus`,
    Kubernetes limits) set these while the affinity mask still shows every host core.
    `root` exists for the tests, which fake the files under a temporary folder.
    """
    root = Path(root)
    cgroups = _own_cgroups(root)
    limits = []
    v2_mount = root / "sys/fs/cgroup"
    for folder in _with_ancestors(v2_mount, cgroups.get("", "/")):
        fields = (_read(folder / "cpu.max") or "").split()
        if len(fields) == 2 and fields[0] != "max":
            quota, period = float(fields[0]), float(fields[1])
            if quota > 0 and period > 0:
                limits.append(quota / period)
    for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        mount = root / "sys/fs/cgroup" / name
        for folder in _with_ancestors(mount, cgroups.get("cpu", "/")):
            quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
            try:
                quota_us, period_us = float(quota), float(period)
            except (TypeError, ValueError):
                continue
            if quota_us > 0 and period_us > 0:
                limits.append(quota_us / period_us)
    return min(limits) if limits else None


def usable_cpus(root: Union[str, Path] = "/") -> int:
    """The CPUs this process may really use: its affinity mask, capped by the cgroup quota.

    `os.cpu_count()` is the host's core count, which a container or a `taskset` restricts;
    a fractional quota is rounded up (1.5 CPUs -> 2 threads keep the quota busy).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):          # macOS and Windows have no affinity call
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def choose_cpu_threads(current: int, usable: int, env: Mapping[str, str],
                       set_by_user: bool = False, load: Optional[float] = None,
                       schedulable: Optional[int] = None) -> ThreadChoice:
    """The thread rule, as a pure function of what the process knows (tested on its own).

    1. `MINIGPT_THREADS=N` in the environment wins: N threads, even above `usable` (you
       asked for it; a value that is not a positive integer is an error, never ignored).
    2. A count you already chose is kept as it is, never raised and never lowered: set with
       `torch.set_num_threads` after importing minigpt (`set_by_user`), or through
       `OMP_NUM_THREADS` / `MKL_NUM_THREADS`.
    3. On a busy machine, one thread: when the 1-minute load average (`load`) is at least the
       number of CPUs the process may be scheduled on (`schedulable`, its affinity mask),
       other processes already keep every CPU busy, and a second thread mostly waits for
       its partner (chapter 8's training, one thread vs two under a load average of about 15
       on 2 cores: 1,100 s vs more than 1,800 s). The load is read once, when the device is
       picked; set MINIGPT_THREADS to decide yourself.
    4. Otherwise torch's count is lowered to the CPUs the process may use (affinity mask and
       cgroup quota), never raised: torch's default counts the host's cores, and more
       threads than CPUs make OpenMP threads wait for each other, many times slower.
    """
    text = env.get(THREADS_ENV)
    if text is not None and text.strip():
        try:
            wanted = int(text)
        except ValueError:
            wanted = 0
        if wanted < 1:
            raise ValueError(f"{THREADS_ENV}={text!r} is not a positive number of threads; "
                             f"set it to e.g. 1 or 2, or unset it to let minigpt choose.")
        return ThreadChoice(wanted, f"{THREADS_ENV}={wanted}")
    for name in USER_THREAD_ENVS:
        if env.get(name, "").strip():
            return ThreadChoice(current, f"{name}={env[name].strip()} set by you")
    if set_by_user:
        return ThreadChoice(current, "set by you with torch.set_num_threads")
    schedulable = usable if schedulable is None else schedulable
    if load is not None and current > 1 and load >= schedulable:
        return ThreadChoice(1, f"busy machine: load average {load:.1f} on {schedulable} CPU"
                               f"{'s' if schedulable > 1 else ''}")
    if current > usable:
        return ThreadChoice(usable, f"{usable} usable CPU{'s' if usable > 1 else ''}")
    return ThreadChoice(current, f"torch's default; {usable} usable CPU{'s' if usable > 1 else ''}")


_THREAD_CHOICE: Optional[ThreadChoice] = None


def configure_cpu_threads(force: bool = False) -> ThreadChoice:
    """Apply `choose_cpu_threads` once per process (pick_device calls it); return the choice.

    Later calls return the first choice without touching torch again, so a thread count you
    set afterwards with `torch.set_num_threads` stays. `force=True` decides again.
    """
    global _THREAD_CHOICE
    if _THREAD_CHOICE is not None and not force:
        return _THREAD_CHOICE
    current = torch.get_num_threads()
    try:
        load: Optional[float] = os.getloadavg()[0]
        schedulable: Optional[int] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):      # no load average or affinity (Windows): no load rule
        load = schedulable = None
    choice = choose_cpu_threads(current, usable_cpus(), os.environ,
                                set_by_user=current != _THREADS_AT_IMPORT, load=load,
                                schedulable=schedulable)
    if choice.threads != current:
        torch.set_num_threads(choice.threads)
    _THREAD_CHOICE = choice
    return choice


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA GPUs that support it; a no-op elsewhere.

    On a CPU, bf16 matmuls are far slower than fp32 (no fast path on most laptops), so the
    CPU always runs in fp32.
    """
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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


def best_ms(fn, device: torch.device, reps: int = 3) -> float:
    """Best of `reps` timed calls of fn() in milliseconds, after one untimed warm-up call.

    The best, not the mean: on a busy machine other jobs only ever add time.
    """
    time_calls(fn, 1, device)
    return min(time_calls(fn, reps, device)) * 1e3


def median_ms(fn, device: torch.device, reps: int = 7) -> float:
    """Median of `reps` timed calls of fn() in milliseconds, after one untimed warm-up call.

    Steadier than the best when a table compares many timings taken at different moments.
    """
    time_calls(fn, 1, device)
    return statistics.median(time_calls(fn, reps, device)) * 1e3


def set_seed(seed: int) -> None:
    """Seed Python's and PyTorch's generators (CPU and every GPU)."""
    random.seed(seed)
    torch.manual_seed(seed)


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process instead of handing it back to the OS (glibc only).

    By default glibc serves every allocation above a few MB with a fresh mmap and unmaps it
    on free, so each new activation tensor of a training step page-faults its way in again;
    on a laptop CPU that costs as much as the matmuls of some layers. Disabling mmap for
    allocations and never trimming the heap makes the memory of step N reusable in step
    N + 1. The price: the process keeps its peak memory. Returns True when applied.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        _ALLOCATOR_TUNED = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):   # not Linux/glibc: nothing to tune
        _ALLOCATOR_TUNED = False
    return _ALLOCATOR_TUNED


_ALLOCATOR_TUNED = False


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        why = f": {_THREAD_CHOICE.reason}" if _THREAD_CHOICE is not None else ""
        n = torch.get_num_threads()
        return f"cpu ({n} thread{'s' if n > 1 else ''}{why})"
    return device.type


def maybe_compile(model: torch.nn.Module, enabled: Optional[bool]):
    """torch.compile the model when asked and possible; otherwise return it unchanged."""
    if not enabled:
        return model
    try:
        return torch.compile(model)
    except Exception as err:  # e.g. no C++ compiler, unsupported Python
        import warnings
        warnings.warn(f"torch.compile is unavailable here ({err}); running eagerly.")
        return model
