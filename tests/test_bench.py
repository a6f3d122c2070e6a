"""The benchmark harness (bench/, outside the package): the helpers its reported numbers
depend on, and its child processes (the benchmarks themselves are not tests)."""

import json
import re
import os
import shutil
import signal
import subprocess
import sys
import time
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
    (tmp_path / "file.txt").write_text("")
    cases = [(["flash", "--json", str(tmp_path / "nodir" / "x.json")], "the folder"),
             (["flash", "--json", str(tmp_path)], "is a folder; name a file"),
             (["flash", "--json", str(tmp_path / "file.txt" / "x.json")], "on its path is a file, not a folder")]
    if not torch.cuda.is_available():
        cases.append((["flash", "--device", "cuda"], "device 'cuda' was requested but PyTorch sees no CUDA GPU"))
        cases.append((["flash", "--device", "cuda"], "use --device auto or --device cpu"))
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
    assert results["targets"] == [1.6, 1.5, 1.47] and "cut_short" not in results
    for side in results["sides"].values():
        assert [e["step"] for e in side["evals"]] == [0, 2, 4]
        assert side["target_reached"] is None and side["tokens_per_s"] > 0 and side["returncode"] == 0
        assert side["reached"] == {"1.60": None, "1.50": None, "1.47": None}
        assert side["cut_short"] is False and "failed" not in side
        times = [e["since_launch_s"] for e in side["evals"]]
        assert times == sorted(times) and times[0] > 0
    assert "whole_val_split_loss" in results["sides"]["minigpt"]
    for side in results["sides"].values():        # steps 2 to 4, evaluations left out
        assert side["steady_step_ms"] > 0 and side["tokens_per_step"] == 2 * 16      # batch x context
        assert side["steady_tokens_per_s"] == round(32 / (side["steady_step_ms"] / 1e3))
    out_text = capsys.readouterr().out
    assert "steady step" in out_text
    assert "val <= 1.60: not reached; val <= 1.50: not reached; val <= 1.47: not reached" in out_text


def test_gpu_time_to_quality_sides_get_the_same_environment_but_their_own_caches(tmp_path, monkeypatch):
    from bench.gpu_time_to_quality import SIDES, side_env
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    envs = {side: side_env(tmp_path / side) for side in SIDES}
    caches = [(env["TORCHINDUCTOR_CACHE_DIR"], env["TRITON_CACHE_DIR"]) for env in envs.values()]
    assert len({path for pair in caches for path in pair}) == 2 * len(SIDES)
    assert all(not Path(path).exists() for pair in caches for path in pair)      # fresh: made by the side
    rest = [{k: v for k, v in env.items() if not k.endswith("_CACHE_DIR")} for env in envs.values()]
    assert all(r == rest[0] for r in rest) and rest[0]["GOMP_SPINCOUNT"] == "10000"
    assert list(SIDES) == ["minigpt", "nanogpt", "minigpt-compile"]           # the optional side last


def test_gpu_time_to_quality_nanogpt_side_runs_nanogpts_model():
    """nanoGPT's model (fused causal attention, no biases) on the seed model's shape: it computes
    what the seed model computes once the seed's biases are zero (and not otherwise), calls SDPA
    as nanoGPT does, and has nanoGPT's parameter count for train_shakespeare_char (10.65M)."""
    import torch.nn.functional as F
    config = GPTConfig(vocab_size=65, block_size=16, n_embd=32, n_head=4, n_layer=2, dropout=0.0)
    torch.manual_seed(0)
    seed = SeedGPT(config).eval()
    for module in seed.modules():                          # random LayerNorm weights too
        if isinstance(module, torch.nn.LayerNorm):
            torch.nn.init.normal_(module.weight, 1.0, 0.1)
            torch.nn.init.normal_(module.bias, 0.0, 0.1)
    nano = SeedGPT(config, fused_attention=True, bias=False).eval()
    assert not any(name.endswith("bias") for name, _ in nano.named_parameters())
    assert not any(name.endswith("attn.mask") for name, _ in nano.named_buffers())
    missing, unexpected = nano.load_state_dict(seed.state_dict(), strict=False)
    assert missing == [] and all(k.endswith(("bias", "attn.mask")) for k in unexpected)
    idx = torch.randint(0, 65, (3, 16))
    assert not torch.allclose(nano(idx)[0], seed(idx)[0], atol=1e-3)      # the seed's biases count
    with torch.no_grad():
        for name, param in seed.named_parameters():
            if name.endswith("bias"):
                param.zero_()
    torch.testing.assert_close(nano(idx)[0], seed(idx)[0], atol=1e-5, rtol=1e-5)

    calls = []
    real_sdpa = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_sdpa(*args, **kwargs)
    dropped = SeedGPT(GPTConfig(vocab_size=65, block_size=16, n_embd=32, n_head=4, n_layer=1, dropout=0.2),
                      fused_attention=True, bias=False)
    try:
        F.scaled_dot_product_attention = spy
        dropped.train()(idx)
        dropped.eval()(idx)
    finally:
        F.scaled_dot_product_attention = real_sdpa
    assert calls == [dict(attn_mask=None, dropout_p=0.2, is_causal=True),
                     dict(attn_mask=None, dropout_p=0, is_causal=True)]

    shakespeare = SeedGPT(GPTConfig(vocab_size=65, block_size=256, n_embd=384, n_head=6, n_layer=6),
                          fused_attention=True, bias=False)
    # nanoGPT's get_num_params leaves out the position embeddings: "number of parameters: 10.65M"
    assert sum(p.numel() for p in shakespeare.parameters()) - 256 * 384 == 10_646_784


# fake sides for the parent's tests: python -c programs printing what a side prints
FAKE_EVALS = ("import sys\n"
              "for s, v in ((0, 4.1), (2, 1.55), (4, 1.45)):\n"
              "    print(f'step {s:>6}  train {v:.4f}  val {v:.4f}  (0s)', flush=True)\n")
FAKE_HANGS = ("import os, signal, subprocess, sys, time\n"
              "print('step      0  train 4.0000  val 4.0000  (0s)', flush=True)\n"
              "print('step      2  train 1.5500  val 1.5500  (0s)', flush=True)\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"           # so it must be killed
              "helper = subprocess.Popen(['sleep', '60'])\n"              # holds the output pipe too
              "open(sys.argv[1], 'w').write(f'{os.getpid()} {helper.pid}')\n"
              "time.sleep(60)\n")
FAKE_STOPS_ON_SIGTERM = ("import signal, sys, time\n"
                         "def stop(*_):\n"
                         "    print('steady step 5.00 ms', flush=True); sys.exit(0)\n"
                         "signal.signal(signal.SIGTERM, stop)\n"
                         "print('step      0  train 4.0000  val 4.0000  (0s)', flush=True)\n"
                         "print('step      2  train 1.5500  val 1.5500  (0s)', flush=True)\n"
                         "time.sleep(60)\n")


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_gpu_time_to_quality_keeps_a_side_cut_short_by_sigterm(tmp_path):
    """`timeout` SIGTERMs the benchmark during a side: the side (and what it started) is
    stopped, and the JSON keeps its evaluations, marked cut_short; the later sides do not run."""
    out, pids = tmp_path / "ttq.json", tmp_path / "pids"
    parent = ("import sys, bench.gpu_time_to_quality as t\n"
              f"t.side_command = lambda side, *a: [sys.executable, '-c', {FAKE_HANGS!r}, {str(pids)!r}]\n"
              "sys.exit(t.main(sys.argv[1:]))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", parent, "--smoke", "--device", "cpu", "--sides", "minigpt",
                             "nanogpt", "--grace", "2", "--json", str(out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(600):                         # the parent imports torch first
            if pids.exists() and pids.read_text() and out.exists() and \
                    len(json.loads(out.read_text())["sides"]["minigpt"]["evals"]) == 2:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the fake side never started")
        proc.send_signal(signal.SIGTERM)
        text = proc.communicate(timeout=30)[0]
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, text
    results = json.loads(out.read_text())
    assert results["cut_short"] == "SIGTERM" and list(results["sides"]) == ["minigpt"]
    side = results["sides"]["minigpt"]
    assert side["cut_short"] is True and side["cut_short_reason"] == "SIGTERM to the benchmark"
    assert [e["step"] for e in side["evals"]] == [0, 2] and side["best_val"] == {"val": 1.55, "step": 2}
    assert side["reached"]["1.60"]["step"] == 2 and side["reached"]["1.50"] is None
    assert side["returncode"] == -signal.SIGKILL and "failed" not in side
    assert all(_gone(int(pid)) for pid in pids.read_text().split())       # the side and its helper
    assert "CUT SHORT (SIGTERM to the benchmark)" in text


def test_gpu_time_to_quality_gives_each_side_its_share_of_the_budget(tmp_path, capsys, monkeypatch):
    import bench.gpu_time_to_quality as ttq
    monkeypatch.setattr(ttq, "side_command", lambda side, *a: [sys.executable, "-c", (
        FAKE_STOPS_ON_SIGTERM if side == "minigpt" else FAKE_EVALS)])
    out = tmp_path / "ttq.json"
    # 3 s of the 15 are kept for the end: 6 s each, the first side gets SIGTERM 1 s before its end
    assert ttq.main(["--smoke", "--device", "cpu", "--sides", "minigpt", "nanogpt", "--budget", "15",
                     "--side-timeout", "100", "--grace", "1", "--json", str(out)]) == 1
    first, second = json.loads(out.read_text())["sides"].values()
    assert 5 < first["limit_s"] <= 6 and first["cut_short"]
    assert first["cut_short_reason"] == f"side limit of {first['limit_s']:.0f} s"
    assert first["returncode"] == 0 and 4 < first["wall_s"] < 6.5 and "failed" not in first
    assert first["steady_step_ms"] == 5.0 and first["steady_tokens_per_s"] == 32 / 0.005
    assert [e["step"] for e in first["evals"]] == [0, 2]
    assert second["cut_short"] is False and second["returncode"] == 0 and second["limit_s"] >= 5
    assert second["target_reached"] == {"step": 4, "since_launch_s": second["evals"][2]["since_launch_s"]}
    assert "minigpt          val <= 1.60: step 2" in capsys.readouterr().out


def test_gpu_time_to_quality_reports_a_failed_side_and_runs_the_others(tmp_path, capsys, monkeypatch):
    import bench.gpu_time_to_quality as ttq

    def command(side, device, smoke, iters, out_dir):
        if side == "minigpt":               # a side that dies before its first evaluation
            return [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
        if side == "minigpt-compile":       # prints evaluations and bad bytes, then dies
            return [sys.executable, "-c", FAKE_EVALS + "sys.stdout.flush(); sys.stdout.buffer.write(b'\\xff\\xfe\\n');"
                    f"import os; os.makedirs({str(out_dir / side)!r}); sys.exit(3)"]
        return [sys.executable, "-c", FAKE_EVALS + f"import os; os.makedirs({str(out_dir / side)!r})"]

    def unreadable(folder):
        raise RuntimeError(f"no checkpoint in {folder.name}")
    monkeypatch.setattr(ttq, "side_command", command)
    monkeypatch.setattr(ttq, "minigpt_steady_step_ms", unreadable)
    out = tmp_path / "ttq.json"
    assert ttq.main(["--smoke", "--device", "cpu", "--sides", "minigpt", "minigpt-compile", "nanogpt",
                     "--json", str(out)]) == 1
    sides = json.loads(out.read_text())["sides"]
    assert sides["minigpt"]["returncode"] == 3 and "best_val" not in sides["minigpt"]
    assert sides["minigpt"]["failed"] == "exit status 3"
    broken = sides["minigpt-compile"]     # its evaluations are kept, with both reasons
    assert broken["returncode"] == 3 and [e["step"] for e in broken["evals"]] == [0, 2, 4]
    assert broken["best_val"] == {"val": 1.45, "step": 4} and broken["target_reached"]["step"] == 4
    assert broken["failed"] == ("exit status 3; reading its checkpoint for the steady step time: "
                                "RuntimeError: no checkpoint in minigpt-compile")
    assert sides["nanogpt"]["returncode"] == 0 and "failed" not in sides["nanogpt"]   # not a minigpt run
    text = capsys.readouterr().out
    assert "minigpt          FAILED (exit status 3" in text and "\ufffd" in text
    assert "minigpt-compile  val <= 1.60: step 2" in text and "FAILED (exit status 3; reading its" in text


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


def test_answers_runs_a_measurement_in_its_own_process_and_reports_a_failed_one(monkeypatch, capsys):
    """bench/answers.py: the quick measurement prints the line the book quotes (running.md's
    imitated T4 Post-LN run, the loss within 0.1 of the log's 3.2839: fp16 on other CPUs may
    differ a little); a child that fails is reported and makes the exit status 1."""
    from bench import answers

    assert set(answers.MEASUREMENTS) == set(answers.CHILDREN)
    assert answers.main(["t4-post-ln"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    found = re.search(r"val estimate (\d\.\d{4}) after 150 steps; 150 scaler updates", line)
    assert found and abs(float(found.group(1)) - 3.2839) < 0.1, line

    monkeypatch.setattr(answers, "MEASUREMENTS", {"t4-post-ln": ("broken", [("no threads", {}, [])])})
    assert answers.main(["t4-post-ln"]) == 1             # --threads missing: the child raises
    assert "FAILED" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stopped:
        answers.main(["no-such-measurement"])
    assert stopped.value.code == 2 and "unknown measurement(s) no-such-measurement; choose from" in capsys.readouterr().err


def test_nbval_times_adds_up_each_chapter_s_cells(tmp_path):
    from bench.nbval_times import chapter_seconds
    xml = tmp_path / "nbval.xml"
    xml.write_text('<testsuites><testsuite name="pytest">'
                   '<testcase classname="08_training.ipynb" name="Cell 0" time="1.5"/>'
                   '<testcase classname="08_training.ipynb" name="Cell 1" time="70.25"/>'
                   '<testcase classname="" file="notebooks/01_characters_to_tensors.ipynb" name="Cell 0" time="2"/>'
                   '<testcase classname="tests.test_x" name="test_unrelated" time="9"/>'
                   '</testsuite></testsuites>', encoding="utf-8")
    assert chapter_seconds(xml) == {"01_characters_to_tensors": 2.0, "08_training": 71.75}
