"""The benchmark harness (bench/, outside the package): the helpers its reported numbers
depend on, and its child processes (the benchmarks themselves are not tests)."""

import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.child import main as child_main
from bench.mfu import step_matmuls, train_flops_per_token
from bench.seed_model import SeedGPT, seed_copy_of
from minigpt import GPTConfig, MiniGPT

REPO = Path(__file__).resolve().parent.parent


def test_flops_per_token_counts_6n_plus_causal_attention():
    config = GPTConfig(vocab_size=65)                       # the seed configuration
    n = MiniGPT(config).num_parameters(exclude_positions=True)
    attention = 6 * 6 * 8 * 32 * 128                        # 6 L H D T: half of 12 L H D T
    assert train_flops_per_token(config, n) == 6 * n + attention


def test_step_matmuls_runs_every_shape_of_a_step(monkeypatch):
    """The matmul-only step does 3 products per linear layer and 6 per attention layer."""
    config = GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=4, n_kv_head=2, n_layer=2)
    calls = {"mm": 0, "bmm": 0}
    for name, counted_as in (("mm", "mm"), ("bmm", "bmm"), ("baddbmm", "bmm")):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _real=real, _as=counted_as, **k:
                            (calls.__setitem__(_as, calls[_as] + 1), _real(*a, **k))[1])
    step_matmuls(config, batch_size=3, device=torch.device("cpu"))()
    assert calls == {"mm": 3 * (4 * 2 + 1), "bmm": 6 * 2}


def test_seed_copy_computes_what_minigpt_computes():
    """The reference side of every benchmark is the same function with the seed's code."""
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=11, block_size=16, n_embd=32, n_head=4, n_layer=2, dropout=0.0)
    ours = MiniGPT(config).eval()
    seed = seed_copy_of(ours).eval()
    assert isinstance(seed, SeedGPT)
    x = torch.randint(0, 11, (2, 16))
    torch.testing.assert_close(seed(x)[0], ours(x)[0], rtol=1e-5, atol=1e-5)
    prompt = x[:, :3]
    assert torch.equal(seed.generate(prompt, 20, temperature=0),
                       ours.generate(prompt, 20, temperature=0, use_cache=False))


def test_train_child_prints_step_times_as_json(capsys):
    """`python -m bench.child train` in-process with one step: the JSON the harness reads."""
    child_main(["train", "seed", "--steps", "1", "--batch-size", "1", "--device", "cpu"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(result["step_s"]) == 1 and result["step_s"][0] > 0
    assert result["matmuls_only_s"] == [] and result["peak"] > 0


@pytest.mark.parametrize("command", [["-m", "bench", "--help"], ["-m", "minigpt", "bench", "--help"]])
def test_bench_entry_points_start_from_the_repository_root(command):
    proc = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "attention" in proc.stdout


def test_minigpt_bench_outside_a_checkout_says_where_to_run_it(tmp_path):
    """An installed package has no bench/ beside it: one line, exit status 2, no traceback."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "minigpt", site / "minigpt", ignore=shutil.ignore_patterns("__pycache__", "pretrained"))
    proc = subprocess.run([sys.executable, "-m", "minigpt", "bench", "flash"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: the benchmarks are not part of the installed package; run `python -m minigpt bench` (or "
        "`python -m bench`) from a checkout of the minigpt repository, installed with `pip install -e .`."]


def test_bench_rejects_an_unknown_benchmark_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "bench", "trian"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown benchmark(s) trian; choose from peak, train, attention, generate, flash, quick."


def test_bench_refuses_what_would_fail_after_the_run_before_running(tmp_path, capsys):
    # a bad --json or --device once raised a traceback, the --json one after minutes of work
    from bench.__main__ import main as bench_main
    cases = [(["flash", "--json", str(tmp_path / "nodir" / "x.json")], "the folder"),
             (["flash", "--json", str(tmp_path)], "is a folder; name a file")]
    if not torch.cuda.is_available():
        cases.append((["flash", "--device", "cuda"], "device 'cuda' was requested but PyTorch sees no CUDA GPU"))
    for argv, message in cases:
        assert bench_main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not (tmp_path / "nodir").exists()
    with pytest.raises(SystemExit):                      # argparse: exit status 2, one line
        bench_main(["flash", "--threads", "50000"])
    assert "threads on a machine with" in capsys.readouterr().err


def test_bench_quick_removes_its_run_folder(monkeypatch):
    # it left /tmp/minigpt-bench-quick-PID behind (a whole run's checkpoints) after every run
    from bench import harness
    seen = {}

    def fake_train_command(cmd, **kwargs):
        out = Path(cmd[cmd.index("--out") + 1])
        out.mkdir(parents=True)
        (out / "summary.json").write_text(json.dumps({"val_loss": 1.5, "steps": 3}))
        seen["out"] = out
        return subprocess.CompletedProcess(cmd, 0, "step 0  train 4.2\n", "")
    monkeypatch.setattr(harness.subprocess, "run", fake_train_command)
    result = harness.bench_quick(torch.device("meta"))      # not "cpu": no nanoGPT child
    assert result["minigpt"]["val_loss"] == 1.5 and result["log"] == ["step 0  train 4.2"]
    assert not seen["out"].parent.exists()


def test_no_chapter_or_package_module_imports_the_benchmarks():
    """The book's import path stays free of the harness (issue 8: one idea, one room)."""
    offenders = []
    for path in [*(REPO / "minigpt").rglob("*.py"), *(REPO / "notebooks").glob("*.ipynb")]:
        text = path.read_text(encoding="utf-8")
        if "minigpt.bench" in text or "from bench" in text or "import bench" in text:
            offenders.append(path.relative_to(REPO).as_posix())
    assert offenders == [], offenders       # cli.py delegates `bench` to a `python -m bench` child process


def test_gpu_time_to_quality_smoke_runs_every_side_but_compile(tmp_path, capsys):
    """The GPU benchmark's script in its tiny mode on the CPU, so it cannot rot between GPU runs
    (the --compile side is left out: compiling on a 2-core CPU takes minutes)."""
    from bench.gpu_time_to_quality import main
    out = tmp_path / "ttq.json"
    assert main(["--smoke", "--device", "cpu", "--sides", "minigpt", "nanogpt", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["smoke"] and list(results["sides"]) == ["minigpt", "nanogpt"]
    for side in results["sides"].values():
        assert [e["step"] for e in side["evals"]] == [0, 2, 4]
        assert side["target_reached"] is None and side["tokens_per_s"] > 0 and side["returncode"] == 0
        times = [e["since_launch_s"] for e in side["evals"]]
        assert times == sorted(times) and times[0] > 0
    assert "whole_val_split_loss" in results["sides"]["minigpt"]
    for side in results["sides"].values():        # steps 2 to 4, evaluations left out
        assert side["steady_step_ms"] > 0
    out_text = capsys.readouterr().out
    assert "steady step" in out_text
    assert "val <= 1.47: not reached" in out_text


def test_gpu_time_to_quality_reports_a_failed_side_and_runs_the_others(tmp_path, capsys, monkeypatch):
    import bench.gpu_time_to_quality as ttq
    real = ttq.side_command

    def command(side, *args):
        if side == "minigpt":               # a side that dies before its first evaluation
            return [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
        return real(side, *args)
    monkeypatch.setattr(ttq, "side_command", command)
    out = tmp_path / "ttq.json"
    assert ttq.main(["--smoke", "--device", "cpu", "--sides", "minigpt", "nanogpt", "--json", str(out)]) == 1
    sides = json.loads(out.read_text())["sides"]
    assert sides["minigpt"]["returncode"] == 3 and "best_val" not in sides["minigpt"]
    assert sides["nanogpt"]["returncode"] == 0 and sides["nanogpt"]["steady_step_ms"] > 0
    assert "minigpt          FAILED (exit status 3" in capsys.readouterr().out


def test_nanogpt_learning_rate_schedule():
    from bench.gpu_time_to_quality import nanogpt_lr
    assert nanogpt_lr(0) == 1e-3 / 101 and nanogpt_lr(99) == 1e-3 * 100 / 101
    assert nanogpt_lr(100) == 1e-3 and nanogpt_lr(5000) == nanogpt_lr(6000) == 1e-4
    assert abs(nanogpt_lr(2550) - 5.5e-4) < 1e-12                  # half-way down the cosine


def test_compile_cpu_script_runs(tmp_path):
    """bench/compile_cpu.py with Dynamo's eager backend (seconds; the real run compiles for minutes)."""
    from bench.compile_cpu import main
    out = tmp_path / "compile.json"
    assert main(["--backend", "eager", "--rounds", "1", "--steps", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert len(result["all_ms"]["eager"]) == len(result["all_ms"]["compiled"]) == 2
    assert result["eager_step_ms"] > 0 and result["compiled_step_ms"] > 0 and result["first_compiled_step_s"] > 0


def test_gpt2_small_script_converts_and_compares(monkeypatch, capsys):
    # bench/gpt2_small.py builds GPT-2 small (124M); here transformers' default config is
    # shrunk so the script's own code runs in a second
    transformers = pytest.importorskip("transformers")
    from bench import gpt2_small
    real = transformers.GPT2Config
    monkeypatch.setattr(transformers, "GPT2Config",
                        lambda: real(vocab_size=101, n_positions=32, n_embd=32, n_layer=2, n_head=4))
    assert gpt2_small.main(["--tokens", "16"]) == 0
    out = capsys.readouterr().out
    counts = re.search(r"parameters: MiniGPT ([\d,]+), Hugging Face ([\d,]+)", out)
    assert counts and counts.group(1) == counts.group(2)
    assert float(re.search(r"on a \(2, 16\) batch: (\S+)", out).group(1)) < 1e-4
