"""Sharing the CPU: torch's thread count, OpenMP's spin, and the memory allocator.

Three settings decide how well torch's CPU kernels share a machine with other work (a class's
kernels on one server, two test runs at once, a container with a CPU quota):

- `limit_openmp_spinning` (run by `import minigpt`, before torch loads): how long OpenMP's idle
  threads spin before they sleep.
- `configure_cpu_threads` (run by `pick_device`): how many threads torch uses, from what you
  chose, the CPUs this process may use (`usable_cpus`: affinity mask and cgroup quota) and the
  CPUs other work keeps busy at that moment (`busy_cpus`).
- `tune_cpu_allocator` (run by `train` on a CPU): keep freed memory for the next step.

The measurements behind each choice are in bench/results/cpu_sharing.md, made with
`python bench/classroom.py spin` and `python bench/classroom.py rule`. This module imports torch
only inside functions: the spin limit must be set before torch is first loaded.
"""

from __future__ import annotations

import math
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, MutableMapping, Optional, Union

from .errors import UsageError

# ------------------------------------------------------------------ OpenMP's spin
# torch's CPU kernels run on OpenMP (GNU libgomp in the Linux wheels). A thread that has finished
# its share of an operation spins, holding its CPU, for up to 300,000 loops (libgomp's default)
# waiting for the others; with more busy threads than cores it holds the very CPU the thread it
# waits for needs. libgomp reads the limit once, when torch loads it. Other OpenMP runtimes
# (LLVM's on macOS) ignore the variable.
SPIN_ENV = "GOMP_SPINCOUNT"
SPIN_COUNT = "10000"
# A user who sets any of these has chosen how OpenMP waits; that choice is kept.
USER_WAIT_ENVS = (SPIN_ENV, "OMP_WAIT_POLICY")


def limit_openmp_spinning(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Set GOMP_SPINCOUNT=10000 unless a wait policy is already chosen or torch is already
    loaded (then it would have no effect). Returns whether it was set."""
    if any(environ.get(name, "").strip() for name in USER_WAIT_ENVS) or "torch" in sys.modules:
        return False
    environ[SPIN_ENV] = SPIN_COUNT
    return True


# ------------------------------------------------------------------ the CPUs this process may use
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


# ------------------------------------------------------------------ what other work does right now
BUSY_WINDOW_S = 0.05    # how long `busy_cpus` watches /proc/stat (its counters tick every 10 ms)


def _cpu_jiffies(stat_text: str) -> dict[int, tuple[int, int]]:
    """CPU number -> (busy, total) time counters from /proc/stat's `cpuN` lines."""
    counters = {}
    for line in stat_text.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and len(fields) >= 4:
            values = [int(v) for v in fields]
            idle = values[3] + (values[4] if len(values) > 4 else 0)     # idle + iowait
            counters[int(name[3:])] = (sum(values) - idle, sum(values))
    return counters


def busy_cpus_between(before: str, after: str, cpus: Optional[set[int]] = None) -> float:
    """How many CPUs were busy between two reads of /proc/stat, counting only `cpus` (this
    process's affinity mask; None = all): 1.5 means one CPU busy all the time and another half."""
    first, second = _cpu_jiffies(before), _cpu_jiffies(after)
    busy = 0.0
    for cpu_id, (busy1, total1) in second.items():
        if cpu_id in first and (cpus is None or cpu_id in cpus):
            busy0, total0 = first[cpu_id]
            if total1 > total0:
                busy += (busy1 - busy0) / (total1 - total0)
    return busy


def busy_cpus(window_s: float = BUSY_WINDOW_S, root: Union[str, Path] = "/") -> Optional[float]:
    """How many of this process's CPUs other work keeps busy right now: /proc/stat read twice,
    `window_s` apart, while this process sleeps. None where there is no /proc/stat (macOS,
    Windows). Unlike the 1-minute load average, it has forgotten a job that just finished and
    already sees jobs that just started."""
    import time
    stat = Path(root) / "proc/stat"
    before = _read(stat)
    if before is None:
        return None
    time.sleep(window_s)
    after = _read(stat) or ""
    try:
        cpus: Optional[set[int]] = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = None
    return busy_cpus_between(before, after, cpus)


# ------------------------------------------------------------------ torch's thread count
THREADS_ENV = "MINIGPT_THREADS"


def max_threads() -> int:
    """The most threads minigpt accepts when asked (MINIGPT_THREADS, --threads): 4x the CPUs
    here. More threads than CPUs only slows torch down, and tens of thousands make OpenMP fail
    ("Thread creation failed") or crash the process without a word."""
    return 4 * (os.cpu_count() or 1)


# Variables through which a user already tells OpenMP/MKL (and so torch) how many threads to use.
USER_THREAD_ENVS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Set in every process torchrun starts; torchrun sets OMP_NUM_THREADS=1 for its processes when it
# starts more than one per machine and OMP_NUM_THREADS is not set already.
TORCHRUN_ENVS = ("TORCHELASTIC_RUN_ID", "LOCAL_WORLD_SIZE")


@dataclass(frozen=True)
class ThreadChoice:
    """How many threads torch uses on the CPU, and why (shown by `device.describe`)."""
    threads: int
    reason: str


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _who_set(name: str, value: str, env: Mapping[str, str]) -> str:
    """Who set a thread variable: torchrun sets OMP_NUM_THREADS=1 when it starts several
    processes per machine (unless it was set before), so under torchrun that value is its."""
    if name == "OMP_NUM_THREADS" and value == "1" and any(env.get(v) for v in TORCHRUN_ENVS):
        per_machine = env.get("LOCAL_WORLD_SIZE", "").strip()
        if not per_machine.isdigit() or int(per_machine) > 1:
            return ("OMP_NUM_THREADS=1 from torchrun, its default for several processes per "
                    "machine unless you set it before")
    return f"{name}={value} set by you"


def choose_cpu_threads(current: int, usable: int, env: Mapping[str, str],
                       set_by_user: bool = False, busy: Optional[float] = None,
                       schedulable: Optional[int] = None) -> ThreadChoice:
    """The thread rule, as a pure function of what the process knows (tested on its own).

    1. `MINIGPT_THREADS=N` in the environment wins: N threads, even above `usable` (you
       asked for it; a value that is not a positive integer, or above `max_threads()`, is an
       error, never ignored).
    2. A count already chosen is kept as it is, never raised and never lowered: set with
       `torch.set_num_threads` after importing minigpt (`set_by_user`), or through
       `OMP_NUM_THREADS` / `MKL_NUM_THREADS` (yours, or torchrun's).
    3. Otherwise torch's count, lowered to the CPUs the process may use (affinity mask and
       cgroup quota) and never raised: torch's default counts the host's cores.
    4. ... and lowered again to the CPUs that other work leaves free right now: `busy` is how
       many of the `schedulable` CPUs (the affinity mask) other processes kept busy over the
       last 50 ms (`busy_cpus`), rounded; at least one thread. Two threads beside another
       job on two cores wait for each other; right after your own job has ended, or beside
       light work, every usable CPU is used (bench/results/cpu_sharing.md has the measurements
       of this rule and of the 1-minute load average it replaces).
    """
    text = env.get(THREADS_ENV)
    if text is not None and text.strip():
        try:
            wanted = int(text)
        except ValueError:
            wanted = 0
        if wanted < 1:
            raise UsageError(f"{THREADS_ENV}={text!r} is not a positive number of threads; "
                             f"set it to e.g. 1 or 2, or unset it to let minigpt choose.")
        if wanted > max_threads():
            raise UsageError(f"{THREADS_ENV}={wanted} threads on a machine with {os.cpu_count() or 1} CPU(s): "
                             f"set it to at most {max_threads()} (usually the number of CPUs or fewer), "
                             f"or unset it to let minigpt choose.")
        return ThreadChoice(wanted, f"{THREADS_ENV}={wanted}")
    for name in USER_THREAD_ENVS:
        value = env.get(name, "").strip()
        if value:
            return ThreadChoice(current, _who_set(name, value, env))
    if set_by_user:
        return ThreadChoice(current, "set by you with torch.set_num_threads")
    schedulable = usable if schedulable is None else schedulable
    if busy is not None:
        taken = min(schedulable, int(busy + 0.5))          # round half up: 1.5 busy CPUs -> 2
        free = max(1, schedulable - taken)
        if free < min(current, usable):
            return ThreadChoice(free, f"{_plural(taken, 'CPU')} of {schedulable} busy with other "
                                      f"work when the device was picked")
    if current > usable:
        return ThreadChoice(usable, _plural(usable, "usable CPU"))
    return ThreadChoice(current, f"torch's default; {_plural(usable, 'usable CPU')}")


# torch's thread count when `import minigpt` finished (remember_torch_threads): if it differs
# when the device is picked, the user called torch.set_num_threads, and that choice is kept.
_THREADS_AT_IMPORT: Optional[int] = None
_THREAD_CHOICE: Optional[ThreadChoice] = None


def remember_torch_threads() -> None:
    """Note torch's thread count now (`import minigpt` calls it once torch is loaded)."""
    global _THREADS_AT_IMPORT
    import torch
    _THREADS_AT_IMPORT = torch.get_num_threads()


def configure_cpu_threads(force: bool = False) -> ThreadChoice:
    """Apply `choose_cpu_threads` once per process (pick_device calls it); return the choice.

    Later calls return the first choice without touching torch again, so a thread count you
    set afterwards with `torch.set_num_threads` stays. `force=True` decides again. The thread
    count changes a seeded run's floats in the last digits: set MINIGPT_THREADS to make runs
    on a busy and an idle machine give the same numbers.
    """
    global _THREAD_CHOICE
    import torch
    if _THREAD_CHOICE is not None and not force:
        return _THREAD_CHOICE
    current = torch.get_num_threads()
    set_by_user = _THREADS_AT_IMPORT is not None and current != _THREADS_AT_IMPORT
    try:
        schedulable: Optional[int] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):      # no affinity call (macOS, Windows): no busy rule
        schedulable = None
    chosen = set_by_user or any(os.environ.get(n, "").strip() for n in (THREADS_ENV, *USER_THREAD_ENVS))
    busy = busy_cpus() if schedulable is not None and not chosen else None    # 50 ms, once
    choice = choose_cpu_threads(current, usable_cpus(), os.environ, set_by_user=set_by_user,
                                busy=busy, schedulable=schedulable)
    if choice.threads != current:
        torch.set_num_threads(choice.threads)
    _THREAD_CHOICE = choice
    return choice


def thread_choice() -> Optional[ThreadChoice]:
    """The choice `configure_cpu_threads` made in this process, or None before it ran."""
    return _THREAD_CHOICE


@contextmanager
def threads_asked_for(threads: int) -> Iterator[None]:
    """A command's `--threads N`: N threads for torch in this process and in every process it
    starts, for as long as the command runs (`with threads_asked_for(n): ...`).

    `torch.set_num_threads(N)` alone is not enough. Where N is torch's own default count,
    `configure_cpu_threads` cannot tell that it was asked for, and on a busy machine the
    busy-CPU rule would lower it; and a child process (each side of a benchmark) would choose
    again from the load of its own moment, so the two sides of a comparison could train on
    different counts. MINIGPT_THREADS=N is the rule's "you asked for
    it" (rule 1 of `choose_cpu_threads`), here and in the children, which inherit it.
    """
    global _THREAD_CHOICE
    import torch
    before = os.environ.get(THREADS_ENV)
    os.environ[THREADS_ENV] = str(threads)
    torch.set_num_threads(threads)
    _THREAD_CHOICE = None                  # the next pick_device decides again, with N asked for
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = before


# ------------------------------------------------------------------ the allocator
_ALLOCATOR_TUNED = False


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
