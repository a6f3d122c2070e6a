"""Run chapters the way Colab's T4 trains them, on this CPU: fp16 autocast and its gradient scaler.

    python -m bench.t4_imitation CHAPTER [CHAPTER ...] [--log FILE]

e.g. `python -m bench.t4_imitation 06 08` or a notebook's path. Each chapter runs under nbval, as
`make test` runs it, with one change: an IPython startup file (in a throw-away IPYTHONDIR) calls
`install()` below before the first cell, so `minigpt` treats the CPU as a GPU without native
bf16. `train` then runs its forward passes in `torch.autocast("cpu", float16)` and makes an
enabled gradient scaler, the code path a T4 (compute capability 7.5) takes, and evaluation
autocasts too. nbval compares every output with the book's stored one, and the chapters' own
assertions check their numbers with their stated tolerances.

What it shows and what it does not: the CPU's fp16 kernels are not a T4's (other accumulation
order, no tensor cores), so a pass says the chapter's checks survive fp16's rounding and the
scaler's skipped steps, not that a T4 reproduces the stored digits. A chapter that never trains
or evaluates under autocast is reported as "fp16 not exercised". Everything on the CPU runs in
fp16 here, also what a chapter pins to the CPU (`load_pretrained("cpu")`, chapter 16's
`tune_device`), which a T4 runs in float32; so a failing cell whose work is pinned to the CPU
is this imitation's artefact, not the T4's (chapter 12's pooled-model losses, evaluated on
the CPU, move by 0.0001 here). It is slow: fp16 matmuls on
a CPU are several times slower than fp32 (chapter 8 took 26 minutes on the 2-core CI machine).

Per chapter the report gives nbval's verdict, how often autocast was entered, the scaler's
updates and how many of them skipped an overflowed step, and the final scale.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
COUNTS_ENV = "MINIGPT_T4_IMITATION_COUNTS"      # the file the kernel's counters are written to
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
STARTUP = "from bench.t4_imitation import install\ninstall()\n"


def install(patch: Callable[[object, str, object], None] = setattr,
            counts_file: Optional[str] = None) -> dict:
    """Make every `minigpt` module autocast to float16 on the CPU, with an enabled gradient scaler.

    `patch(obj, name, value)` does the replacing: `setattr` in a kernel, pytest's
    `monkeypatch.setattr` in a test (so it is undone). The counters (returned, and rewritten to
    `counts_file` or $MINIGPT_T4_IMITATION_COUNTS after every change, so a kernel that is killed
    still leaves them) say whether the fp16 path really ran.
    """
    device_module = importlib.import_module("minigpt.device")
    train_module = importlib.import_module("minigpt.train")   # `minigpt.train` is also the function

    counts_file = counts_file or os.environ.get(COUNTS_ENV)
    counts = {"autocast_entered": 0, "scaler_updates": 0, "skipped_steps": 0, "final_scale": None}
    original_dtype, original_autocast = device_module.autocast_dtype, device_module.autocast
    original_make_scaler = train_module.make_grad_scaler

    def save():
        if counts_file:
            tmp = f"{counts_file}.tmp"
            Path(tmp).write_text(json.dumps(counts))
            os.replace(tmp, counts_file)        # a reader never sees half a file

    def fp16_on_cpu(device, enabled: bool = True):
        if enabled and torch.device(device).type == "cpu":
            return torch.float16                # what a T4 gets from autocast_dtype
        return original_dtype(device, enabled)

    def counting_autocast(device, enabled: bool = True):
        if enabled and torch.device(device).type == "cpu":
            counts["autocast_entered"] += 1
            save()
            return torch.autocast("cpu", dtype=torch.float16)
        return original_autocast(device, enabled)

    def counting_scaler(device, cfg):
        scaler = original_make_scaler(device, cfg)   # enabled: it asks autocast_dtype, patched below
        if scaler.is_enabled():
            update = scaler.update

            def counted_update(new_scale=None):
                before = scaler.get_scale()
                update(new_scale)
                counts["scaler_updates"] += 1
                counts["skipped_steps"] += scaler.get_scale() < before   # a backed-off scale = a skipped step
                counts["final_scale"] = scaler.get_scale()
                save()
            scaler.update = counted_update
        return scaler

    # Replace the functions wherever a minigpt module imported them by name (`from .device
    # import autocast`), so a module added later is covered without a list to keep up to date.
    replacements = {id(original_dtype): fp16_on_cpu, id(original_autocast): counting_autocast,
                    id(original_make_scaler): counting_scaler}
    for name, module in sorted(sys.modules.items()):
        if module is None or not (name == "minigpt" or name.startswith("minigpt.")):
            continue
        for attr, value in list(vars(module).items()):
            if id(value) in replacements:
                patch(module, attr, replacements[id(value)])
    save()
    return counts


def chapter_paths(chapters: Sequence[str]) -> list[Path]:
    """'06', '6' or a notebook's path -> the notebook; an unknown chapter is a one-line error."""
    paths = []
    for chapter in chapters:
        path = Path(chapter)
        if path.suffix == ".ipynb":
            if not path.is_file():
                raise SystemExit(f"error: no notebook {chapter!r}.")
            paths.append(path.resolve())
            continue
        found = sorted(NOTEBOOKS.glob(f"{chapter.zfill(2)}_*.ipynb")) if chapter.isdigit() else []
        if not found:
            known = ", ".join(p.name[:2] for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))
            raise SystemExit(f"error: no chapter {chapter!r}; give a chapter number ({known}) or a notebook's path.")
        paths.extend(found)
    return paths


def run_chapter(notebook: Path, work: Path, log) -> dict:
    """nbval over one notebook with the imitation installed in its kernel; the counters and verdict."""
    ipython_dir = work / "ipython"
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-t4-imitation.py").write_text(STARTUP)
    counts_file = work / f"{notebook.stem}.json"
    env = dict(os.environ, IPYTHONDIR=str(ipython_dir), **{COUNTS_ENV: str(counts_file)},
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
               "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), str(notebook)]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=notebook.parent, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:                 # nbval's diffs go to the log as they come
        log.write(ANSI_COLOUR.sub("", line))    # nbval colours its diffs even in a pipe
        log.flush()
    returncode = process.wait()
    counts = json.loads(counts_file.read_text()) if counts_file.exists() else None
    return {"notebook": notebook.name, "passed": returncode == 0, "seconds": time.perf_counter() - start,
            "counts": counts}


def summary_line(result: dict) -> str:
    counts = result["counts"]
    if counts is None:
        fp16 = "the imitation did not start in the kernel (no counters written)"
    elif counts["autocast_entered"] == 0:
        fp16 = "fp16 not exercised (no autocast entered)"
    else:
        fp16 = (f"autocast entered {counts['autocast_entered']} times, {counts['scaler_updates']} scaler "
                f"updates, {counts['skipped_steps']} skipped steps, final scale {counts['final_scale']}")
    verdict = "nbval passed" if result["passed"] else "nbval FAILED"
    return f"{result['notebook']}: {verdict} in {result['seconds']:.0f} s; {fp16}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.t4_imitation", description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="+", metavar="CHAPTER", help="a chapter number (06) or a notebook's path")
    parser.add_argument("--log", type=Path, help="also write nbval's output and the summary to this file")
    args = parser.parse_args(argv)
    notebooks = chapter_paths(args.chapters)
    results = []
    with contextlib.ExitStack() as stack:
        logs = [sys.stdout] + ([stack.enter_context(open(args.log, "w"))] if args.log else [])

        class Tee:
            def write(self, text):
                for log in logs:
                    log.write(text)

            def flush(self):
                for log in logs:
                    log.flush()
        tee = Tee()
        tee.write(f"T4 imitation on the CPU: fp16 autocast + gradient scaler; torch {torch.__version__}, "
                  f"{torch.get_num_threads()} threads\n")
        for notebook in notebooks:
            with tempfile.TemporaryDirectory(prefix="t4-imitation-") as work:
                tee.write(f"\n== {notebook.name}\n")
                results.append(run_chapter(notebook, Path(work), tee))
        tee.write("\nsummary\n" + "".join(f"  {summary_line(r)}\n" for r in results))
    return 0 if all(r["passed"] and r["counts"] is not None for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
