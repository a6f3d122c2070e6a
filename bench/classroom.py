"""The shared-server benchmark (issue 11): many notebook kernels on one small machine.

A class on one JupyterHub server runs several kernels at once on a few cores. This script
measures what that costs compared with running the same jobs one after another:

    python bench/classroom.py kernels                 # 4 kernels: chapters 6, 8, 6, 8
    python bench/classroom.py nbval --runs 2          # 2 nbval runs of the whole book
    python bench/classroom.py nbval --chapters 03 06  # ... of some chapters only
    python bench/classroom.py kernels --threads auto 1 --json out.json
    python bench/classroom.py nbval --settle 0.5      # each batch starts on a quiet machine
    python bench/classroom.py spin                    # OpenMP's spin count: alone vs two at once

Each job is a real process: `jupyter nbconvert --execute` on a copy of a chapter (the
repository's notebooks are never written) or `pytest --nbval` on the chapters. Every job runs
twice: once alone, one after another (the sequential total), and once all at the same time
(the concurrent wall time). The aim of issue 11: concurrent <= 1.2 x sequential, every job
passing. `--threads` repeats the experiment for several thread settings: `auto` is minigpt's
own choice (`pick_device`), a number sets MINIGPT_THREADS for every job.

Other work on the machine changes every number here: the load average is printed before each
batch, so a reader can tell a quiet measurement from a noisy one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
VENV_BIN = Path(sys.executable).parent


def chapter_paths(chapters: list[str]) -> list[Path]:
    """'06' -> notebooks/06_....ipynb; no chapters = the whole book."""
    every = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not chapters:
        return every
    paths = []
    for number in chapters:
        found = [p for p in every if p.name.startswith(f"{int(number):02d}_")]
        if not found:
            raise SystemExit(f"no chapter {number!r} in {NOTEBOOKS}; chapters are "
                             f"{', '.join(p.name[:2] for p in every)}.")
        paths += found
    return paths


def kernel_job(notebook: Path, workdir: Path, index: int) -> list[str]:
    """Execute a copy of one chapter in a fresh kernel (what a student's 'Run all' does)."""
    copy = workdir / f"job{index}_{notebook.name}"
    shutil.copy(notebook, copy)
    return [str(VENV_BIN / "jupyter"), "nbconvert", "--to", "notebook", "--execute", "--inplace",
            "--ExecutePreprocessor.timeout=3600", str(copy)]


def nbval_job(notebooks: list[Path]) -> list[str]:
    """The book's own test of the chapters (as `make notebooks` runs it), read-only."""
    return [sys.executable, "-m", "pytest", "-q", "--nbval", "--nbval-sanitize-with",
            str(ROOT / "tests" / "nbval_sanitize.cfg"), "-p", "no:cacheprovider",
            "--nbval-cell-timeout=3600", *map(str, notebooks)]


def training_job(steps: int, threads: int) -> list[str]:
    """A process that trains chapter 8's model (the `book` preset) for `steps` steps."""
    code = ("import sys, torch, minigpt\n"
            f"torch.set_num_threads({threads})\n"
            "book = minigpt.PRESETS['book']\n"
            "data = minigpt.TextData.shakespeare()\n"
            f"cfg = minigpt.TrainConfig(**dict(book.train, max_iters={steps}, eval_interval=10**9), device='cpu')\n"
            "torch.manual_seed(cfg.seed)\n"
            "model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=data.tokenizer.vocab_size, **book.model))\n"
            "minigpt.train(model, data, cfg, progress=False)\n")
    return [sys.executable, "-c", code]


# GOMP_SPINCOUNT values compared by `spin` (minigpt/openmp.py explains the choice)
SPIN_SETTINGS = {"default (300,000)": "300000", "10,000": "10000", "1,000": "1000"}


def measure_spin(steps: int, reps: int) -> list[dict]:
    """Whole-process times (start-up included) of the training job alone and two at once, for
    each spin count with two threads and, for reference, with one thread; the settings take
    turns within each repetition so that a slow spell of the machine hits all of them.
    (The default must be named: `import minigpt` would otherwise set 10,000.)"""
    rows = [(label, {"GOMP_SPINCOUNT": count}, 2) for label, count in SPIN_SETTINGS.items()]
    rows.append(("one thread (10,000)", {"GOMP_SPINCOUNT": "10000"}, 1))
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(reps):
        # every setting alone first, then every pair: a pair's heavy load does not spill into
        # the next setting's time alone
        for mode, copies in (("alone", 1), ("two at once", 2)):
            for label, extra, threads in rows:
                env = {**job_env("auto"), **extra}
                jobs = [training_job(steps, threads) for _ in range(copies)]
                result = run_jobs(jobs, env, concurrent=copies > 1, cwd=ROOT)
                if any(result["returncodes"]):
                    raise SystemExit(f"the training job failed under GOMP_SPINCOUNT={extra['GOMP_SPINCOUNT']}")
                times.setdefault((label, mode), []).append(result["wall_s"])
    print(f"[spin] chapter 8's model, {steps} steps, whole process, {reps} repetitions (s)")
    print(f"  {'GOMP_SPINCOUNT, threads':28} {'alone':>20} {'two at once':>20}")
    results = []
    for label, _, threads in rows:
        cells = [times[(label, mode)] for mode in ("alone", "two at once")]
        text = ["-".join(f"{f(c):.1f}" for f in (min, max)) for c in cells]
        print(f"  {label + ', ' + str(threads) + ' thread' + ('s' if threads > 1 else ''):28} "
              f"{text[0]:>20} {text[1]:>20}", flush=True)
        results.append({"kind": "spin", "setting": label, "threads": threads, "steps": steps,
                        "alone_s": cells[0], "two_at_once_s": cells[1]})
    return results


def job_env(threads: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MINIGPT_THREADS", None)
    if threads != "auto":
        env["MINIGPT_THREADS"] = threads
    return env


def settle(below: float, longest_s: float = 600.0) -> None:
    """Wait until the 1-minute load average is under `below` (at most `longest_s`), so that a
    batch starts on a quiet machine, as a class starts on an idle server, rather than on the
    load the previous batch left behind (which would make every kernel pick one thread)."""
    start = time.perf_counter()
    while os.getloadavg()[0] >= below and time.perf_counter() - start < longest_s:
        time.sleep(5)


def run_jobs(commands: list[list[str]], env: dict[str, str], concurrent: bool,
             cwd: Path, settle_below: Optional[float] = None) -> dict:
    """Run the commands one after another or all at once; wall time and each job's time."""
    if settle_below is not None:
        settle(settle_below)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    times, codes = [0.0] * len(commands), [0] * len(commands)
    if concurrent:
        procs = [(i, time.perf_counter(), subprocess.Popen(cmd, env=env, cwd=cwd,
                                                           stdout=subprocess.DEVNULL,
                                                           stderr=subprocess.PIPE, text=True))
                 for i, cmd in enumerate(commands)]
        for i, t0, proc in procs:
            _, err = proc.communicate()
            times[i], codes[i] = time.perf_counter() - t0, proc.returncode
            if proc.returncode:
                print(f"  job {i} failed:\n{err[-2000:]}", file=sys.stderr)
    else:
        for i, cmd in enumerate(commands):
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
            times[i], codes[i] = time.perf_counter() - t0, proc.returncode
            if proc.returncode:
                print(f"  job {i} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
    return {"wall_s": time.perf_counter() - start, "job_s": times, "returncodes": codes,
            "load_before": load}


def measure(kind: str, chapters: list[str], copies: int, threads: str,
            settle_below: Optional[float] = None) -> dict:
    env = job_env(threads)
    with tempfile.TemporaryDirectory(prefix="classroom-") as tmp:
        workdir = Path(tmp)
        if kind == "kernels":
            notebooks = chapter_paths(chapters or ["06", "08"])
            plan = [notebooks[i % len(notebooks)] for i in range(copies)]
            make = lambda: [kernel_job(nb, workdir, i) for i, nb in enumerate(plan)]   # noqa: E731
            names = [nb.name for nb in plan]
            cwd = workdir
        else:
            notebooks = chapter_paths(chapters)
            make = lambda: [nbval_job(notebooks) for _ in range(copies)]              # noqa: E731
            names = [f"nbval of {len(notebooks)} chapters"] * copies
            cwd = NOTEBOOKS
        print(f"[{kind}, threads={threads}] {copies} jobs: {', '.join(names)}", flush=True)
        sequential = run_jobs(make(), env, concurrent=False, cwd=cwd, settle_below=settle_below)
        print(f"  one after another: {sequential['wall_s']:.1f} s "
              f"(jobs {', '.join(f'{t:.0f}' for t in sequential['job_s'])} s; "
              f"load before {sequential['load_before']:.1f})", flush=True)
        together = run_jobs(make(), env, concurrent=True, cwd=cwd, settle_below=settle_below)
        print(f"  all at once:       {together['wall_s']:.1f} s "
              f"(jobs {', '.join(f'{t:.0f}' for t in together['job_s'])} s; "
              f"load before {together['load_before']:.1f})", flush=True)
    ratio = together["wall_s"] / sequential["wall_s"]
    passed = not any(sequential["returncodes"]) and not any(together["returncodes"])
    print(f"  together / sequential = {ratio:.2f} (aim <= 1.2); every job passed: {passed}", flush=True)
    return {"kind": kind, "threads": threads, "jobs": names, "sequential": sequential,
            "concurrent": together, "ratio": ratio, "passed": passed,
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("kernels", "nbval", "spin"),
                        help="kernels: execute chapters in separate kernels; nbval: whole nbval runs; "
                             "spin: OpenMP's spin count, one training process alone and two at once")
    parser.add_argument("--steps", type=int, default=60, help="spin: training steps per process")
    parser.add_argument("--reps", type=int, default=3, help="spin: repetitions")
    parser.add_argument("--chapters", nargs="*", default=[],
                        help="chapter numbers (kernels: default 06 08; nbval: default all)")
    parser.add_argument("--copies", "--runs", type=int, default=None,
                        help="jobs per batch (kernels: 4, nbval: 2)")
    parser.add_argument("--threads", nargs="+", default=["auto"],
                        help="'auto' (minigpt's choice) and/or numbers for MINIGPT_THREADS")
    parser.add_argument("--settle", type=float, default=None, metavar="LOAD",
                        help="before each batch, wait until the 1-minute load average is below LOAD")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    copies = args.copies or (4 if args.kind == "kernels" else 2)
    if args.kind == "spin":               # a failed training job stops it with its own message
        results = measure_spin(args.steps, args.reps)
    else:
        results = [measure(args.kind, args.chapters, copies, t, args.settle) for t in args.threads]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r.get("passed", True) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
