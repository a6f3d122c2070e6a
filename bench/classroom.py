"""The shared-server benchmark (issue 11): many notebook kernels on one small machine.

A class on one JupyterHub server runs several kernels at once on a few cores. This script
measures what that costs compared with running the same jobs one after another:

    python bench/classroom.py kernels                 # 4 kernels: chapters 6, 8, 6, 8
    python bench/classroom.py nbval --runs 2          # 2 nbval runs of the whole book
    python bench/classroom.py nbval --chapters 03 06  # ... of some chapters only
    python bench/classroom.py kernels --threads auto 1 --json out.json
    python bench/classroom.py nbval --settle 0.5      # each batch starts on a quiet machine
    python bench/classroom.py spin                    # OpenMP's spin count: alone vs two at once
    python bench/classroom.py rule --scenario after-own-job   # thread rules right after your job
    python bench/classroom.py rule --scenario busy            # ... beside another 2-thread job
    python bench/classroom.py rule --scenario together        # ... 4 jobs started together

Each job is a real process: `jupyter nbconvert --execute` on a copy of a chapter (the
repository's notebooks are never written) or `pytest --nbval` on the chapters. Every job runs
twice: once alone, one after another (the sequential total), and once all at the same time
(the concurrent wall time). The aim of issue 11: concurrent <= 1.2 x sequential, every job
passing. `--threads` repeats the experiment for several thread settings: `auto` is minigpt's
own choice (`pick_device`), a number sets MINIGPT_THREADS for every job.

Each job's time runs from its own start to its own end, also when jobs run at once. Other work
on the machine changes every number here: the load average is printed before each batch, so a
reader can tell a quiet measurement from a noisy one. The results and what they decided are in
bench/results/cpu_sharing.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
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


# ------------------------------------------------------------------ the thread rule (issue 22)
# Candidate rules for torch's CPU thread count, each a function of the CPUs the process may use
# and of what it can read about the rest of the machine at the moment it decides (`read_signals`).
# minigpt/cpu.py implements the one these scenarios supported (busy); the others stay here.
CANDIDATES = {
    # the rule before issue 22: one thread when the 1-minute load average reaches the CPUs
    "load1": lambda usable, sig: 1 if sig["load1"] >= usable else usable,
    # always the CPUs the process may use (affinity and cgroup quota), whatever else runs
    "usable": lambda usable, sig: usable,
    # leave a CPU to each task that is runnable right now (/proc/loadavg's running count)
    "running": lambda usable, sig: max(1, usable - int(sig["running_others"] + 0.5)),
    # leave the CPUs other processes kept busy over the last 50 ms (/proc/stat): minigpt's rule
    # since issue 22 ('auto' runs the package's own code)
    "busy": lambda usable, sig: max(1, usable - int(sig["busy_cpus"] + 0.5)),
}


def read_signals(window_s: float = 0.05, samples: int = 10) -> dict:
    """What a rule can know when it decides: the 1-minute load average, the tasks runnable
    besides this one (/proc/loadavg's fourth field, averaged over `samples` reads in the window)
    and how many of this process's CPUs other processes kept busy over the window
    (/proc/stat, read as minigpt.cpu.busy_cpus reads it; this process sleeps meanwhile)."""
    from minigpt import cpu
    before = Path("/proc/stat").read_text()
    running = []
    for _ in range(samples):
        running.append(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]))
        time.sleep(window_s / samples)
    after = Path("/proc/stat").read_text()
    return {"load1": os.getloadavg()[0], "running_others": sum(running) / samples - 1,
            "busy_cpus": cpu.busy_cpus_between(before, after, set(os.sched_getaffinity(0)))}


def train_under_rule(rule: str, steps: int) -> dict:
    """The job the rule scenarios run (in a fresh process): import minigpt, decide the thread
    count by `rule` (a candidate, 'auto' for minigpt's own, or a number), train chapter 8's
    model for `steps` steps. Returns what it saw, what it chose and how long training took."""
    import torch
    import minigpt
    from minigpt import cpu
    signals = read_signals()
    usable = cpu.usable_cpus()
    if rule == "auto":
        minigpt.pick_device("cpu")
        threads, reason = torch.get_num_threads(), cpu.configure_cpu_threads().reason
    else:
        threads = int(rule) if rule.isdigit() else CANDIDATES[rule](usable, signals)
        reason = rule
        torch.set_num_threads(threads)
    book = minigpt.PRESETS["book"]
    data = minigpt.TextData.shakespeare()
    cfg = minigpt.TrainConfig(**dict(book.train, max_iters=steps, eval_interval=10**9), device="cpu")
    torch.manual_seed(cfg.seed)
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=data.tokenizer.vocab_size, **book.model))
    start = time.perf_counter()
    minigpt.train(model, data, cfg, progress=False)
    return {"rule": rule, "threads": threads, "reason": reason, "usable": usable,
            "signals": signals, "train_s": time.perf_counter() - start,
            "would_choose": {name: f(usable, signals) for name, f in CANDIDATES.items()}}


def rule_job(rule: str, steps: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "_train", "--rule", rule, "--steps", str(steps)]


def _job_report(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _describe(report: dict, job_s: float) -> str:
    sig = report["signals"]
    choices = " ".join(f"{k}={v}" for k, v in report["would_choose"].items())
    return (f"rule {report['rule']}: {report['threads']} thread{'s' if report['threads'] > 1 else ''}, "
            f"training {report['train_s']:.1f} s, process {job_s:.1f} s | saw load1 {sig['load1']:.2f}, "
            f"running others {sig['running_others']:.1f}, busy CPUs {sig['busy_cpus']:.2f} -> {choices}")


def measure_rule(scenario: str, rules: list[str], steps: int, copies: int, warm_steps: int,
                 delay_s: float, settle_below: Optional[float]) -> list[dict]:
    """The three scenarios of issue 22, each in one run so that its ratios share the machine's
    mood. after-own-job: a 2-thread job of `warm_steps` steps, then each rule's job right after
    it, one after another. busy: beside a 2-thread job of `warm_steps` steps, each rule's job
    starts `delay_s` later (one batch per rule). together: `copies` jobs start at once, one batch
    per rule, against the same jobs with 2 threads one after another."""
    env = job_env("auto")
    load = os.getloadavg()[0]
    print(f"[rule: {scenario}] {steps} steps per job; load average before {load:.2f}", flush=True)
    results = []
    if scenario == "after-own-job":
        commands = [rule_job("2", warm_steps)] + [rule_job(r, steps) for r in rules]
        run = run_jobs(commands, env, concurrent=False, cwd=ROOT, settle_below=settle_below)
        print(f"  your own job (2 threads, {warm_steps} steps): {run['job_s'][0]:.1f} s", flush=True)
        for i, rule in enumerate(rules, start=1):
            report = _job_report(run["stdout"][i])
            print(f"  then {_describe(report, run['job_s'][i])}", flush=True)
            results.append({"scenario": scenario, "job_s": run["job_s"][i], **report})
    elif scenario == "busy":
        for rule in rules:
            commands = [rule_job("2", warm_steps), rule_job(rule, steps)]
            run = run_jobs(commands, env, concurrent=True, cwd=ROOT, settle_below=settle_below,
                           start_delays=[0.0, delay_s])
            report = _job_report(run["stdout"][1])
            print(f"  {_describe(report, run['job_s'][1])}; the other job (2 threads, {warm_steps} "
                  f"steps) {run['job_s'][0]:.1f} s; both done after {run['wall_s']:.1f} s", flush=True)
            results.append({"scenario": scenario, "job_s": run["job_s"][1], "other_job_s": run["job_s"][0],
                            "wall_s": run["wall_s"], **report})
    else:
        sequential = run_jobs([rule_job("2", steps) for _ in range(copies)], env, concurrent=False,
                              cwd=ROOT, settle_below=settle_below)
        print(f"  {copies} jobs, 2 threads, one after another: {sequential['wall_s']:.1f} s "
              f"(jobs {', '.join(f'{t:.0f}' for t in sequential['job_s'])} s)", flush=True)
        for rule in rules:
            run = run_jobs([rule_job(rule, steps) for _ in range(copies)], env, concurrent=True,
                           cwd=ROOT, settle_below=settle_below)
            reports = [_job_report(out) for out in run["stdout"]]
            threads = [r["threads"] for r in reports]
            print(f"  {copies} at once, rule {rule}: {run['wall_s']:.1f} s = "
                  f"{run['wall_s'] / sequential['wall_s']:.2f} x sequential; threads {threads}; "
                  f"jobs {', '.join(f'{t:.0f}' for t in run['job_s'])} s; load before "
                  f"{run['load_before']:.2f}", flush=True)
            results.append({"scenario": scenario, "rule": rule, "wall_s": run["wall_s"],
                            "sequential_s": sequential["wall_s"], "threads": threads,
                            "job_s": run["job_s"], "reports": reports})
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


def _finish(proc: subprocess.Popen, started: float, index: int, times: list, codes: list,
            outputs: list) -> None:
    """Wait for one job and record its own end: a job that ends early is not charged for the
    jobs that run on after it."""
    out, err = proc.communicate()
    times[index], codes[index], outputs[index] = time.perf_counter() - started, proc.returncode, out
    if proc.returncode:
        print(f"  job {index} failed:\n{err[-2000:]}", file=sys.stderr)


def run_jobs(commands: list[list[str]], env: dict[str, str], concurrent: bool,
             cwd: Path, settle_below: Optional[float] = None,
             start_delays: Optional[list[float]] = None) -> dict:
    """Run the commands one after another or all at once; the wall time, each job's own time
    (from its start to its own end) and its standard output. `start_delays` (concurrent only)
    starts job i that many seconds after the first."""
    if settle_below is not None:
        settle(settle_below)
    load = os.getloadavg()[0]
    n = len(commands)
    times, codes, outputs = [0.0] * n, [0] * n, [""] * n
    start = time.perf_counter()
    if concurrent:
        delays = start_delays or [0.0] * n
        waiters = []
        for i in sorted(range(n), key=lambda j: delays[j]):
            time.sleep(max(0.0, start + delays[i] - time.perf_counter()))
            t0 = time.perf_counter()
            proc = subprocess.Popen(commands[i], env=env, cwd=cwd, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            waiter = threading.Thread(target=_finish, args=(proc, t0, i, times, codes, outputs))
            waiter.start()
            waiters.append(waiter)
        for waiter in waiters:
            waiter.join()
    else:
        for i, cmd in enumerate(commands):
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            _finish(proc, t0, i, times, codes, outputs)
    return {"wall_s": time.perf_counter() - start, "job_s": times, "returncodes": codes,
            "load_before": load, "stdout": outputs}


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
    for run in (sequential, together):
        run.pop("stdout")                 # the notebooks' and pytest's own output
    ratio = together["wall_s"] / sequential["wall_s"]
    passed = not any(sequential["returncodes"]) and not any(together["returncodes"])
    print(f"  together / sequential = {ratio:.2f} (aim <= 1.2); every job passed: {passed}", flush=True)
    return {"kind": kind, "threads": threads, "jobs": names, "sequential": sequential,
            "concurrent": together, "ratio": ratio, "passed": passed,
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("kernels", "nbval", "spin", "rule", "_train"),
                        help="kernels: execute chapters in separate kernels; nbval: whole nbval runs; "
                             "spin: OpenMP's spin count, one training process alone and two at once; "
                             "rule: candidate thread rules in one scenario (--scenario)")
    parser.add_argument("--steps", type=int, default=60, help="spin, rule: training steps per process")
    parser.add_argument("--reps", type=int, default=3, help="spin: repetitions")
    parser.add_argument("--scenario", choices=("after-own-job", "busy", "together"), default="together",
                        help="rule: right after your own 2-thread job; beside another 2-thread job; "
                             "--copies jobs started together")
    parser.add_argument("--rules", nargs="+", default=None,
                        help=f"rule: any of {', '.join(CANDIDATES)}, auto (minigpt's) or a thread count")
    parser.add_argument("--rule", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--warm-steps", type=int, default=600,
                        help="rule: steps of the other 2-thread job (after-own-job, busy)")
    parser.add_argument("--delay", type=float, default=5.0,
                        help="rule, busy: seconds between the other job's start and the rule's job")
    parser.add_argument("--chapters", nargs="*", default=[],
                        help="chapter numbers (kernels: default 06 08; nbval: default all)")
    parser.add_argument("--copies", "--runs", type=int, default=None,
                        help="jobs per batch (kernels, rule: 4, nbval: 2)")
    parser.add_argument("--threads", nargs="+", default=["auto"],
                        help="'auto' (minigpt's choice) and/or numbers for MINIGPT_THREADS")
    parser.add_argument("--settle", type=float, default=None, metavar="LOAD",
                        help="before each batch, wait until the 1-minute load average is below LOAD")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.kind == "_train":             # one job of the rule scenarios, in its own process
        print(json.dumps(train_under_rule(args.rule, args.steps)), flush=True)
        return 0
    copies = args.copies or (2 if args.kind == "nbval" else 4)
    if args.kind == "spin":               # a failed training job stops it with its own message
        results = measure_spin(args.steps, args.reps)
    elif args.kind == "rule":
        rules = args.rules or (["2", "1"] if args.scenario != "together" else [*CANDIDATES, "1"])
        results = measure_rule(args.scenario, rules, args.steps, copies, args.warm_steps, args.delay,
                               args.settle)
    else:
        results = [measure(args.kind, args.chapters, copies, t, args.settle) for t in args.threads]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r.get("passed", True) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
