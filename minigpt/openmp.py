"""How long OpenMP's idle threads spin before they sleep: set before torch is loaded.

torch's CPU kernels run on OpenMP (GNU libgomp in the Linux wheels). At the end of each parallel
operation a thread that has finished its share spins, burning its CPU, for up to 300,000 loops
(libgomp's default) waiting for the others. Alone on a machine, that saves a sleep and a
wake-up per operation. When several
processes share the cores (a class's kernels on one server, two test runs at once), a spinning
thread takes the CPU from the very thread it waits for, and each operation can take many time
slices instead of one. Measured on this project's 2-core machine: processes that each train
chapter 8's model for 60 steps with two threads (`python bench/classroom.py spin`; whole
processes, start-up included; six tries each):

    GOMP_SPINCOUNT      alone          two at once
    default (300,000)   8.6-15.0 s     13.0-70.8 s   (over 30 s in 5 of 6 tries)
    10,000              10.1-15.1 s    12.0-14.4 s
    1,000               11.2-16.3 s    12.2-14.5 s
    (one thread each)   13.2-17.8 s    12.0-14.0 s

Alone, the machine's own noise is as large as any difference between the settings; two at
once, a spin of 10,000 loops removes the collapse. (10,000 rather than 1,000: in a quieter
stretch, run by hand, alone, 1,000 took 9.1-9.9 s, 10,000 8.2-9.0 s and the default 8.3-8.7 s.)
So `import minigpt` sets it when you have not chosen a policy yourself. libgomp reads the variable
once, when torch loads it: this module must not import torch, and `minigpt` must be imported
before torch for it to apply (the book's first cell does so). Other OpenMP runtimes (LLVM's on
macOS) ignore the variable.
"""

from __future__ import annotations

import os
import sys
from typing import MutableMapping

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
