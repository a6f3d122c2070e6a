"""Where a stored log's numbers come from: the first line of every log in bench/results.

A timing means little without the commit, the torch build, the CPU kernels torch chose and the
machine's load, so the benchmark scripts print them the same way, from here.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def log_header(command: str, machine: str = "") -> str:
    """'# <command>, <UTC time> at <commit>; torch <version>, CPU kernels <capability> by
    default, <n> CPUs<machine>'."""
    import torch
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip() or "?"
    return (f"# {command}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC at {commit}; torch "
            f"{torch.__version__}, CPU kernels {torch.backends.cpu.get_cpu_capability()} by default, "
            f"{os.cpu_count()} CPUs{machine}")


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, e.g. '0.32 0.66 0.92' ('unknown' on Windows)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), or 'unknown CPU'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
