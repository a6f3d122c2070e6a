"""The benchmark harness's bookkeeping, checked without timing anything: which number is the
median, which process settings each side gets, what a report's JSON and log header record,
and the run folder's small promises. Clocks are faked, children are faked or tiny, so every
expected number is exact. (Added after a mutation review: each test here fails when one of
these promises is broken in the code.)"""

import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from minigpt import GPTConfig, MiniGPT

REPO = Path(__file__).resolve().parent.parent
REAL_RUN = subprocess.run


class StepClock:
    """A fake `time.perf_counter` for code that reads the clock exactly twice around each
    timed call: the second reading of each pair comes `durations[i]` seconds after the first."""

    def __init__(self, durations):
        self.durations, self.reading = iter(durations), 0

    def __call__(self):
        self.reading += 1
        return 0.0 if self.reading % 2 else next(self.durations)


class ManualClock:
    """A fake `time.perf_counter` that moves only when the code under test advances it."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ bench/harness.py
def test_median_is_the_middle_value_not_the_mean():
    """Every reported step time is a median: one slow step (another job on the machine) must not
    move it, as it would move a mean."""
    from bench.harness import _median
    assert _median([1.0, 30.0, 2.0]) == 2.0
    assert _median([5.0]) == 5.0


def fake_train_children(calls):
    """A stand-in for `run_child` that records each call and answers like `bench.child train`,
    with scripted step times: seed steps take 2x what minigpt's take, the matmuls alone 0.5x."""
    per_side = {"seed": iter([[0.4, 0.2, 9.0], [0.2, 0.2, 0.2], [0.2, 0.3, 0.2]]),
                "minigpt": iter([[0.1, 0.1, 5.0], [0.1, 0.1, 0.1], [0.15, 0.1, 0.1]])}
    peaks = iter([1e11, 3e11, 2e11, 4e11, 5e11, 6e11])

    def run_child(*args, env=None):
        calls.append((args, env))
        which = args[1]
        steps = next(per_side[which])
        return {"step_s": steps, "matmuls_only_s": [s / 2 for s in steps] if which == "minigpt" else [],
                "peak": next(peaks)}
    return run_child


def test_bench_train_alternates_the_sides_with_the_same_settings_and_reports_medians(monkeypatch):
    """bench_train: seed and minigpt children alternate, get the same arguments (but the side)
    and the same environment; every child's step counts, each side's number is the median of all
    its steps, tokens/s is batch x block per step, the peak is the median of every peak measured
    (the parent's and each child's), and the speed-up is minigpt's tokens/s over the seed's."""
    from bench import harness
    from bench.mfu import train_flops_per_token
    calls = []
    monkeypatch.setattr(harness, "run_child", fake_train_children(calls))
    r = harness.bench_train(torch.device("cpu"), peak=7e11, steps=3, rounds=3, batch_size=2)
    assert [args[1] for args, _ in calls] == ["seed", "minigpt"] * 3
    assert {args[:1] + args[2:] for args, _ in calls} == {("train", "--steps", "3", "--batch-size", "2",
                                                          "--device", "cpu")}
    envs = [env for _, env in calls]
    assert all(env is not None and env == envs[0] for env in envs)
    assert r["seed"]["all_steps_s"] == [0.4, 0.2, 9.0, 0.2, 0.2, 0.2, 0.2, 0.3, 0.2]
    assert r["seed"]["step_s"] == 0.2 and r["minigpt"]["step_s"] == 0.1
    tokens = 2 * 128                                           # batch x the seed's block size
    assert r["seed"]["tokens_per_s"] == pytest.approx(tokens / 0.2)
    assert r["minigpt"]["tokens_per_s"] == pytest.approx(tokens / 0.1)
    assert r["speedup"] == pytest.approx(2.0)
    assert r["all_peaks"] == [7e11, 1e11, 3e11, 2e11, 4e11, 5e11, 6e11] and r["peak_flops"] == 4e11
    config = GPTConfig(vocab_size=65)
    flops = train_flops_per_token(config, MiniGPT(config).num_parameters(exclude_positions=True))
    assert r["minigpt"]["mfu"] == pytest.approx(tokens / 0.1 * flops / 4e11)
    assert r["matmuls_only"]["step_s"] == 0.05
    assert r["matmuls_only"]["share_of_minigpt_step"] == pytest.approx(0.5)


def test_run_benchmarks_train_measures_the_peak_and_hands_it_on(monkeypatch, capsys):
    """`python -m bench train` without `peak`: the matmul peak is still measured (MFU needs it),
    recorded in GFLOP/s, and is the first of the peaks bench_train takes the median of."""
    from bench import harness
    monkeypatch.setattr(harness, "matmul_peak", lambda device: 7e11)
    monkeypatch.setattr(harness, "run_child", fake_train_children([]))
    results = harness.run_benchmarks(["train"], device="cpu")
    assert results["matmul_peak_gflops"] == 700.0
    assert results["train"]["all_peaks"][0] == 7e11
    assert "speed-up minigpt / seed: 2.00x" in capsys.readouterr().out


def test_run_benchmarks_sets_the_threads_and_writes_where_it_ran_to_the_json(monkeypatch, tmp_path, restore_threads):
    """--threads is applied before anything is measured, and the JSON file named by --json holds
    the results with their provenance: the device in words (with the thread count), torch's
    version, the commit and UTC time, and the load average; written whole (no temporary file left)."""
    from bench import harness
    from minigpt.device import pick_device
    pick_device("cpu")                       # the process's thread rule has run: it cannot undo ours
    torch.set_num_threads(1)
    monkeypatch.setattr(harness, "bench_flash", lambda device: {
        "T": 8, "method": "fake", "manual_bytes": 2**20, "flash_bytes": 2**19, "ratio_flash_over_manual": 0.5})
    out = tmp_path / "results.json"
    results = harness.run_benchmarks(["flash"], device="cpu", threads=2, json_path=out)
    assert torch.get_num_threads() == 2
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(results))
    assert written["torch"] == torch.__version__ and written["device"].startswith("cpu (2 threads")
    assert written["where"].startswith("python -m bench flash, ") and " UTC at " in written["where"]
    assert len(written["load_average_at_start"].split()) == 3 or written["load_average_at_start"] == "unknown"
    assert written["flash"]["ratio_flash_over_manual"] == 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


class TimedGPT(MiniGPT):
    """A MiniGPT whose generate and _next_logits move a ManualClock by scripted amounts, so
    bench_generate's numbers are exact; `log` records what ran."""
    clock: ManualClock
    durations: dict
    log: list
    differ_without_cache = False

    def generate(self, idx, max_new_tokens, temperature=1.0, use_cache=True, **kwargs):
        self._in_generate = True
        try:
            out = super().generate(idx, max_new_tokens, temperature=temperature, use_cache=use_cache, **kwargs)
        finally:
            self._in_generate = False
        if max_new_tokens == 8:
            name, seconds = "warm-up", 100.0
        else:
            name = "minigpt_kv_cache" if use_cache else "minigpt_no_cache"
            seconds = self.durations[name].pop(0)
            if name == "minigpt_no_cache" and self.differ_without_cache:
                out = out.clone()
                out[0, -1] = (out[0, -1] + 1) % self.config.vocab_size
        self.log.append(name)
        self.clock.advance(seconds)
        return out

    def _next_logits(self, *args, **kwargs):
        if not getattr(self, "_in_generate", False):
            self.clock.advance(0.002)                     # 2 ms per token in the latency table
        return super()._next_logits(*args, **kwargs)


def run_bench_generate(monkeypatch, differ_without_cache=False):
    from bench import harness
    clock, log = ManualClock(), []
    durations = {"seed": [1.0, 2.0, 9.0], "minigpt_no_cache": [4.0, 8.0, 6.0],
                 "minigpt_kv_cache": [0.5, 4.0, 1.0]}
    TimedGPT.clock, TimedGPT.durations, TimedGPT.log = clock, durations, log
    TimedGPT.differ_without_cache = differ_without_cache
    real_seed_copy = harness.seed_copy_of

    def timed_seed_copy(model):
        seed = real_seed_copy(model)
        real_generate = seed.generate

        def generate(idx, max_new_tokens, **kwargs):
            out = real_generate(idx, max_new_tokens, **kwargs)
            warm_up = max_new_tokens == 8
            log.append("seed warm-up" if warm_up else "seed")
            clock.advance(100.0 if warm_up else durations["seed"].pop(0))
            return out
        seed.generate = generate
        return seed
    monkeypatch.setattr(harness, "time", types.SimpleNamespace(perf_counter=clock))
    monkeypatch.setattr(harness, "MiniGPT", TimedGPT)
    monkeypatch.setattr(harness, "seed_copy_of", timed_seed_copy)
    monkeypatch.setattr(harness, "GPTConfig", lambda **kw: GPTConfig(**kw, n_embd=16, n_head=2, n_layer=1))
    return harness.bench_generate(torch.device("cpu"), new_tokens=12, rounds=3), log


def test_bench_generate_warms_up_first_and_reports_median_tokens_per_second(monkeypatch):
    """bench_generate: an untimed warm-up of both models (the seed's too: else its first timed
    call pays the one-time costs), then the three sides in turn for each round; each side
    reports its median time as tokens/s (12 tokens here), every round's tokens/s, the speed-up
    of the KV cache over the seed loop, and the latency table in milliseconds per token."""
    r, log = run_bench_generate(monkeypatch)
    assert log == ["seed warm-up", "warm-up"] + ["seed", "minigpt_no_cache", "minigpt_kv_cache"] * 3
    assert r["seed"]["seconds"] == 2.0 and r["seed"]["tokens_per_s"] == 6.0
    assert r["seed"]["all_tokens_per_s"] == [12.0, 6.0, 12 / 9.0]
    assert r["minigpt_no_cache"]["tokens_per_s"] == 2.0
    assert r["minigpt_kv_cache"]["seconds"] == 1.0 and r["minigpt_kv_cache"]["tokens_per_s"] == 12.0
    assert r["speedup_kv_cache_vs_seed"] == 2.0
    assert r["identical_tokens"] is True
    for kind in ("no_cache", "kv_cache"):
        assert list(r["ms_per_token_by_context"][kind]) == [32, 128, 256, 511]
        assert all(ms == pytest.approx(2.0) for ms in r["ms_per_token_by_context"][kind].values())


def test_bench_generate_sees_any_side_whose_tokens_differ(monkeypatch):
    """identical_tokens compares every side with the seed loop, not only the cached one."""
    r, _ = run_bench_generate(monkeypatch, differ_without_cache=True)
    assert r["identical_tokens"] is False


def test_bench_attention_leaves_out_the_warm_up_round_and_reports_medians(monkeypatch):
    """bench_attention: round 0 warms up and is not counted; each side's number is the median of
    the timed rounds; the speed-up is manual's median over dropout_attention's. Both sides run
    in this process with the allocator tuned once (the training setting)."""
    import minigpt.attention as attention
    from bench import harness
    clock = ManualClock()
    script = {"manual_attention": [100.0, 3.0, 1.0, 2.0], "dropout_attention": [100.0, 1.0, 0.5, 9.0]}

    def fake(name):
        def side(q, k, v, *args, **kwargs):
            clock.advance(script[name].pop(0))
            return q * 1.0                                  # cheap, with a backward
        return side
    tuned = []
    monkeypatch.setattr(attention, "manual_attention", fake("manual_attention"))
    monkeypatch.setattr(attention, "dropout_attention", fake("dropout_attention"))
    monkeypatch.setattr(harness, "time", types.SimpleNamespace(perf_counter=clock))
    monkeypatch.setattr(harness, "tune_cpu_allocator", lambda: tuned.append(True))
    r = harness.bench_attention(torch.device("cpu"), rounds=3)
    assert r["manual_attention"]["all_s"] == [3.0, 1.0, 2.0] and r["manual_attention"]["median_s"] == 2.0
    assert r["dropout_attention"]["all_s"] == [1.0, 0.5, 9.0] and r["dropout_attention"]["median_s"] == 1.0
    assert r["speedup"] == 2.0 and tuned == [True]


def test_run_child_runs_from_the_repository_root_and_raises_with_the_child_s_error(monkeypatch, tmp_path):
    """A child is started in the checkout (where `-m bench.child` is found) wherever the caller
    is; a failing child raises with its own error message (here argparse's)."""
    from bench import harness
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    with pytest.raises(RuntimeError, match="invalid choice: 'no-such-job'"):
        harness.run_child("no-such-job")


# ------------------------------------------------------------------ bench/child.py
def test_train_child_times_the_asked_steps_after_untimed_warm_up_in_training_mode(monkeypatch, capsys):
    """`python -m bench.child train`, on a tiny model: --steps timed steps after untimed warm-up
    steps, in training mode (dropout on); minigpt's side tunes the allocator and times each
    step's matmuls alone, the seed's side does neither (it runs as the seed code would)."""
    from bench import child
    tuned, modes, timed = [], [], []

    class Spy(MiniGPT):
        def forward(self, *args, **kwargs):
            modes.append(self.training)
            return super().forward(*args, **kwargs)
    real_time_calls = child.time_calls
    monkeypatch.setattr(child, "time_calls", lambda fn, n, device: timed.append((fn.__name__, n)) or
                        real_time_calls(fn, n, device))
    monkeypatch.setattr(child, "MiniGPT", Spy)
    monkeypatch.setattr(child, "GPTConfig", lambda vocab_size: GPTConfig(vocab_size=vocab_size, block_size=8,
                                                                         n_embd=16, n_head=2, n_layer=1))
    monkeypatch.setattr(child, "matmul_peak", lambda device: 1e9)
    monkeypatch.setattr(child, "tune_cpu_allocator", lambda: tuned.append(True))
    child.main(["train", "minigpt", "--steps", "2", "--batch-size", "1", "--device", "cpu"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(result["step_s"]) == 2 and len(result["matmuls_only_s"]) == 2 and result["peak"] == 1e9
    assert tuned == [True] and modes and all(modes)
    step_runs = sum(n for name, n in timed if name == "step")
    assert timed[0][0] == "step" and step_runs > len(result["step_s"])        # warm-up first, not reported
    timed.clear()
    child.main(["train", "seed", "--steps", "3", "--batch-size", "1", "--device", "cpu"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(result["step_s"]) == 3 and result["matmuls_only_s"] == []
    assert tuned == [True]                                     # not again for the seed's side


# ------------------------------------------------------------------ bench/__main__.py
def test_bench_main_hands_threads_device_and_json_to_the_run(monkeypatch, tmp_path):
    import bench.__main__ as bench_main
    seen = {}
    monkeypatch.setattr(bench_main, "run_benchmarks", lambda what, **kw: seen.update(what=what, **kw))
    out = tmp_path / "r.json"
    assert bench_main.main(["flash", "--device", "cpu", "--threads", "1", "--json", str(out)]) == 0
    assert seen == {"what": ["flash"], "device": "cpu", "threads": 1, "json_path": out}


def test_bench_refuses_a_json_file_it_may_not_write(monkeypatch, tmp_path):
    """The permission check (root passes os.access for everything, so it is faked here)."""
    from bench.__main__ import _json_path_problem
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert "cannot be written (permissions)" in _json_path_problem(tmp_path / "r.json")


# ------------------------------------------------------------------ bench/compile_cpu.py
def test_compile_cpu_reports_medians_in_ms_and_the_break_even_from_the_first_compiled_step(monkeypatch, tmp_path):
    """With a scripted clock: three eager warm-up steps, the first compiled step (the compile
    time), two more compiled steps (the backward graph's first runs), then the timed steps; the
    JSON has each side's median in ms, the break-even step count, and where it ran."""
    from bench import compile_cpu
    warm = [0.5, 0.5, 0.5, 7.0, 0.9, 0.9]
    eager, compiled = [0.010, 0.030, 0.011], [0.008, 0.020, 0.009]
    monkeypatch.setattr(compile_cpu, "time", types.SimpleNamespace(perf_counter=StepClock(warm + eager + compiled)))
    out = tmp_path / "compile.json"
    assert compile_cpu.main(["--backend", "eager", "--rounds", "1", "--steps", "3", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["first_compiled_step_s"] == 7.0
    assert r["eager_step_ms"] == pytest.approx(11.0) and r["compiled_step_ms"] == pytest.approx(9.0)
    assert r["speedup"] == pytest.approx(11 / 9) and r["break_even_steps"] == pytest.approx(3500)
    assert r["all_ms"] == {"eager": [10.0, 30.0, 11.0], "compiled": [8.0, 20.0, 9.0]}
    assert r["torch"] == torch.__version__ and r["device"].startswith("cpu") and len(r["load_average"]) == 3


# ------------------------------------------------------------------ bench/provenance.py
def test_log_header_names_the_commit_the_utc_time_torch_and_the_machine(monkeypatch, tmp_path):
    """The header is the same wherever the script is started from and whatever the time zone:
    the checkout's commit, the time in UTC, torch's version and CPU kernels, the CPU count and
    the machine's description."""
    from bench.provenance import log_header
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    monkeypatch.chdir(tmp_path)                     # not a git checkout
    monkeypatch.setenv("TZ", "Asia/Tokyo")          # UTC+9: local time is not UTC
    time.tzset()
    try:
        before = time.strftime('%Y-%m-%d %H:%M', time.gmtime())
        header = log_header("python -m bench.x", " (a test CPU)")
        after = time.strftime('%Y-%m-%d %H:%M', time.gmtime())
    finally:
        monkeypatch.undo()
        time.tzset()
    assert commit and f" UTC at {commit}; torch {torch.__version__}, CPU kernels " in header
    assert header.startswith((f"# python -m bench.x, {before} UTC", f"# python -m bench.x, {after} UTC"))
    assert header.endswith(f", {os.cpu_count()} CPUs (a test CPU)")


def test_load_average_and_cpu_name(monkeypatch, tmp_path):
    """All three load averages, in order; the CPU's *model name* line, not the 'model' number
    line that comes before it in /proc/cpuinfo."""
    from bench import provenance
    monkeypatch.setattr(os, "getloadavg", lambda: (0.321, 0.66, 0.924))
    assert provenance.load_average() == "0.32 0.66 0.92"
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\ncpu family\t: 6\nmodel\t\t: 85\nmodel name\t: Test CPU @ 2.00GHz\n")
    monkeypatch.setattr(provenance, "Path", lambda path: cpuinfo if path == "/proc/cpuinfo" else Path(path))
    assert provenance.cpu_name() == "Test CPU @ 2.00GHz"


# ------------------------------------------------------------------ bench/answers.py
def test_answers_child_sets_its_thread_count_before_measuring(monkeypatch, restore_threads):
    from bench import answers
    seen = []
    monkeypatch.setitem(answers.CHILDREN, "threads", lambda: seen.append(torch.get_num_threads()))
    wanted = 2 if torch.get_num_threads() == 1 else 1
    assert answers.main(["--child", "threads", "--threads", str(wanted)]) == 0
    assert seen == [wanted]


def test_answers_parent_gives_each_child_its_kernel_and_threads_and_prints_the_header_first(monkeypatch, capsys):
    """Each child of `kernels` runs in the checkout with its own ATEN_CPU_CAPABILITY, even when the
    parent's environment has another one, and with its --threads; the log starts with the header."""
    from bench import answers
    calls = []

    def fake_run(command, **kwargs):
        if command[0] == "git":                        # the log header's commit
            return REAL_RUN(command, **kwargs)
        calls.append((command, kwargs))
        return subprocess.CompletedProcess(command, 0, "CPU kernels x: evaluate val 1.0000 (1 s)\n", "")
    monkeypatch.setattr(answers.subprocess, "run", fake_run)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "sse-from-the-parent")
    assert answers.main(["kernels"]) == 0
    assert [kw["env"]["ATEN_CPU_CAPABILITY"] for _, kw in calls] == ["default", "avx2", "avx512"]
    for command, kw in calls:
        assert command[1:] == ["-m", "bench.answers", "--child", "kernels", "--threads", "2"]
        assert Path(kw["cwd"]) == answers.ROOT and kw["env"]["PYTHONPATH"] == str(answers.ROOT)
    assert capsys.readouterr().out.startswith("# python -m bench.answers, ")


def test_answers_threads_runs_the_command_on_its_own_thread_count_and_quotes_the_final_loss(
        monkeypatch, capsys, restore_threads):
    from bench import answers
    commands = []

    def fake_run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 0, "val_loss 2.5000  (early)\nstep 9\nval_loss 1.5000  (whole)\n", "")
    monkeypatch.setattr(answers.subprocess, "run", fake_run)
    torch.set_num_threads(1)
    answers.measure_threads()
    (command,) = commands
    assert command[command.index("--threads") + 1] == "1"
    assert "cpu-quick on 1 thread(s): val loss 1.5000" in capsys.readouterr().out


def test_compare_kernels_counts_only_numbers_printed_under_every_kernel_to_four_decimals(capsys):
    from bench.answers import compare_kernels
    compare_kernels({"default": ["08 | loss ≈ 1.2340 (book: 1.23)", "06 | gap ≈ 2.0000 (book: 2.0)"],
                     "avx2": ["08 | loss ≈ 1.2342 (book: 1.23)", "06 | gap ≈ 2.0000 (book: 2.0)"],
                     "avx512": ["08 | loss ≈ 1.2340 (book: 1.23)"]})
    out = capsys.readouterr().out
    assert "1 checked numbers under 3 kernels (default, avx2, avx512): 0 identical to four decimals, 1 not:" in out
    assert "08 loss: 1.2340, 1.2342, 1.2340 (spread 0.0002)" in out


# ------------------------------------------------------------------ bench/nbval_times.py
def fake_nbval(calls, returncode):
    def run(command, cwd=None, **kwargs):
        if command[0] == "git":                        # the log header's commit
            return REAL_RUN(command, cwd=cwd, **kwargs)
        calls.append((command, cwd))
        junit = next(a for a in command if a.startswith("--junitxml=")).split("=", 1)[1]
        Path(junit).write_text('<testsuites><testsuite name="pytest">'
                               '<testcase classname="08_training.ipynb" name="Cell 0" time="1.5"/>'
                               '<testcase classname="08_training.ipynb" name="Cell 1" time="2.5"/>'
                               '</testsuite></testsuites>', encoding="utf-8")
        return subprocess.CompletedProcess(command, returncode, "1 failed, 1 passed in 4s\n", "")
    return run


def test_nbval_times_logs_where_and_under_what_load_it_ran_and_passes_on_failure(monkeypatch, capsys):
    """The log has the header, the CPU's name and the load before and after; a chapter whose cells
    fail makes the exit status 1 even though its times are printed."""
    from bench import nbval_times
    calls = []
    monkeypatch.setattr(nbval_times.subprocess, "run", fake_nbval(calls, returncode=1))
    assert nbval_times.main(["08_training"]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"# python -m bench.nbval_times --book en, ") and f"({nbval_times.cpu_name()})" in out
    assert "load average before: " in out and "load average after: " in out
    assert "08_training" in out and "4.0 s" in out
    assert Path(calls[0][1]) == REPO / "notebooks" and calls[0][0][-1] == "08_training.ipynb"
    monkeypatch.setattr(nbval_times.subprocess, "run", fake_nbval(calls, returncode=0))
    assert nbval_times.main(["--book", "zh", "08_training"]) == 0
    assert Path(calls[1][1]) == REPO / "zh" / "notebooks"


# ------------------------------------------------------------------ minigpt/run_folder.py
def test_temporary_names_carry_the_writer_s_pid_and_are_cleaned(monkeypatch, tmp_path):
    """Two processes writing the same name use different temporaries (the PID is in the name),
    and the cleanup recognises them."""
    from minigpt import run_folder
    monkeypatch.setattr(run_folder.os, "getpid", lambda: 4242)
    first = run_folder.temporary_path(tmp_path, "step-000500")
    monkeypatch.setattr(run_folder.os, "getpid", lambda: 4343)
    second = run_folder.temporary_path(tmp_path, "step-000500")
    assert first.name == ".step-000500.tmp-4242" and second.name == ".step-000500.tmp-4343"
    first.mkdir()
    second.write_text("")
    assert sorted(p.name for p in run_folder.clean_temporary_files(tmp_path)) == [first.name, second.name]


def test_checkpoint_size_counts_adams_two_moments_only_with_the_optimizer():
    """The free-space check needs weights + AdamW's two moments (12 bytes a parameter in fp32)
    for a training checkpoint, and only the weights without the optimizer."""
    from minigpt.run_folder import checkpoint_nbytes
    model = MiniGPT(GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=2, n_layer=1))
    n = sum(p.numel() for p in model.parameters())
    assert checkpoint_nbytes(model) >= 12 * n
    assert 4 * n <= checkpoint_nbytes(model, with_optimizer=False) < checkpoint_nbytes(model)


def test_has_checkpoint_sees_a_complete_step_folder_without_latest(tmp_path):
    """A run killed between renaming its first step folder into place and writing `latest`
    still holds a checkpoint (a new run there must not start over it)."""
    from minigpt.run_folder import has_checkpoint
    assert not has_checkpoint(tmp_path)
    (tmp_path / "step-000002").mkdir()
    assert not has_checkpoint(tmp_path)                          # incomplete: no description yet
    (tmp_path / "step-000002" / "minigpt.json").write_text("{}")
    assert has_checkpoint(tmp_path)


# ------------------------------------------------------------------ minigpt/resume.py
TRAJECTORY_CHANGES = {"max_iters": 5, "batch_size": 3, "learning_rate": 1e-2, "min_lr": 1e-5, "warmup_iters": 7,
                      "weight_decay": 0.5, "beta1": 0.8, "beta2": 0.9, "grad_clip": 0.5, "autocast": False}


@pytest.mark.parametrize("name", sorted(TRAJECTORY_CHANGES))
def test_resume_warns_about_every_setting_that_changes_the_trajectory(small_data, tmp_path, name):
    """Each optimizer and schedule setting, listed here one by one (not read from the module's
    own list), changes the numbers: resuming with another value must say so."""
    import dataclasses
    import warnings
    from minigpt import TrainConfig
    from minigpt.resume import ResumeWarning, check_resumable, data_fingerprint
    model = MiniGPT(GPTConfig(vocab_size=small_data.tokenizer.vocab_size, block_size=8, n_embd=16, n_head=2,
                              n_layer=1))
    saved = TrainConfig(max_iters=4, batch_size=4, learning_rate=3e-3, min_lr=3e-4, warmup_iters=1,
                        weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0, autocast=True, device="cpu")
    ckpt = types.SimpleNamespace(tokenizer=small_data.tokenizer, model=types.SimpleNamespace(config=model.config),
                                 trainer_tensors={"optimizer": torch.zeros(1)}, path=tmp_path,
                                 train_state={"history": {}, "step": 2, "train_config": saved.to_dict(),
                                              "data_sha256": data_fingerprint(small_data),
                                              "num_threads": torch.get_num_threads()})
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)
        check_resumable(ckpt, model, small_data, saved, tmp_path, torch.device("cpu"))    # same: silent
    changed = dataclasses.replace(saved, **{name: TRAJECTORY_CHANGES[name]})
    with pytest.warns(ResumeWarning, match=f"{name} {getattr(saved, name)!r} -> {TRAJECTORY_CHANGES[name]!r}"):
        check_resumable(ckpt, model, small_data, changed, tmp_path, torch.device("cpu"))


def test_the_data_fingerprint_sees_the_validation_split_and_where_it_starts():
    """Other validation ids with the same training ids, and the same ids split at another place,
    are other data."""
    from minigpt.resume import data_fingerprint

    def data(train, val):
        return types.SimpleNamespace(train=torch.tensor(train), val=torch.tensor(val))
    assert data_fingerprint(data([1, 2, 3], [4, 5])) == data_fingerprint(data([1, 2, 3], [4, 5]))
    assert data_fingerprint(data([1, 2, 3], [4, 5])) != data_fingerprint(data([1, 2, 3], [4, 6]))
    assert data_fingerprint(data([1, 2, 3], [4, 5])) != data_fingerprint(data([1, 2], [3, 4, 5]))


def test_the_output_folder_check_wants_all_the_room_the_checkpoints_need(monkeypatch, tmp_path):
    """A disk with a byte less than the checkpoints need is refused before the run starts; one
    with exactly enough is accepted."""
    from minigpt import run_folder
    from minigpt.errors import CheckpointError
    need = 10_000_000
    for free, refused in ((need - 1, True), (need // 2 + 1, True), (need, False)):
        monkeypatch.setattr(run_folder.shutil, "disk_usage", lambda path, free=free: types.SimpleNamespace(free=free))
        if refused:
            with pytest.raises(CheckpointError, match="MB free but this run's checkpoints need about 10.0 MB"):
                run_folder.check_output_folder(tmp_path / "run", need)
        else:
            assert run_folder.check_output_folder(tmp_path / "run", need) == tmp_path / "run"
