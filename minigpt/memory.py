"""Peak memory of one attention forward pass, measured (chapter 13: what tiling saves).

    from minigpt.memory import attention_memory
    attention_memory(device, T=4096)    # {"manual_bytes": ..., "flash_bytes": ..., ...}

On CUDA the allocator counts its own peak (`torch.cuda.max_memory_allocated`). On a CPU
nothing does, so each implementation runs in a fresh Python process
(`python -m minigpt.memory IMPL T`) that reports how much its peak resident memory grew
during the call. Allocations of 64 KiB and more go straight to mmap and back to the OS when
freed (the environment below sets glibc's thresholds), so the high-water mark counts what
was live at once, not what malloc kept around.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import torch

from .attention import flash_attention, manual_attention
from .device import as_device
from .errors import UsageError, is_whole_number

IMPLS = {"manual": manual_attention, "flash": flash_attention}
_CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def _peak_rss_bytes() -> int:
    """This process's peak resident memory.

    VmHWM is the process's own high-water mark; ru_maxrss also counts the parent's memory at
    fork time (kept across exec), which hides anything smaller than the parent.
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024
    except (OSError, StopIteration):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss if sys.platform == "darwin" else rss * 1024     # macOS reports bytes, Linux KiB


def _reset_peak_rss() -> None:
    """Linux: set the high-water mark to the current RSS, so start-up peaks do not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _inputs(T: int, device: torch.device):
    torch.manual_seed(0)
    return [torch.randn(1, 8, T, 32, device=device) for _ in range(3)]   # batch 1, 8 heads, head size 32


def measure_in_this_process(impl: str, T: int) -> int:
    """Peak RSS growth of one CPU forward pass of `impl` ("manual" or "flash")."""
    q, k, v = _inputs(T, torch.device("cpu"))
    _reset_peak_rss()
    base = _peak_rss_bytes()
    with torch.no_grad():
        IMPLS[impl](q, k, v)
    return _peak_rss_bytes() - base


def attention_memory(device: torch.device, T: int = 4096) -> dict:
    """Extra peak memory of one forward pass (batch 1, 8 heads, head size 32) per implementation."""
    device = as_device(device, "attention_memory")
    if not is_whole_number(T, 1):      # checked here: a child process would fail with its own traceback
        raise UsageError(f"attention_memory's T is a sequence length, a whole number >= 1, got {T!r}.")
    result = {"T": T}
    if device.type == "cuda":
        q, k, v = _inputs(T, device)
        for name, fn in IMPLS.items():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            with torch.no_grad():
                fn(q, k, v)
            torch.cuda.synchronize()
            result[f"{name}_bytes"] = torch.cuda.max_memory_allocated() - before
        result["method"] = "torch.cuda.max_memory_allocated"
    else:
        env = dict(os.environ, **_CHILD_ENV)
        for name in IMPLS:
            out = subprocess.run([sys.executable, "-m", "minigpt.memory", name, str(T)],
                                 capture_output=True, text=True, env=env)
            if out.returncode != 0:
                raise RuntimeError(f"the memory measurement of {name} at T={T} failed:\n{out.stderr}")
            result[f"{name}_bytes"] = int(out.stdout.strip().splitlines()[-1])
        result["method"] = ("peak RSS growth in a fresh process (VmHWM)" if os.path.exists("/proc/self/status")
                            # macOS: the peak since the process started, imports included, so
                            # a forward pass that needs less than importing torch reads as 0
                            else "peak RSS growth in a fresh process (ru_maxrss, which counts start-up)")
    result["ratio_flash_over_manual"] = result["flash_bytes"] / max(result["manual_bytes"], 1)
    return result


if __name__ == "__main__":          # the child process of attention_memory: IMPL T
    print(measure_in_this_process(sys.argv[1], int(sys.argv[2])))
