"""`python -m minigpt ...` smoke runs in subprocesses (each costs a Python + torch start-up)."""

import os
import pickle
import re
import subprocess
import sys

import pytest
import torch

from conftest import chinese_text
from minigpt import load_model
from minigpt.cli import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "minigpt", *map(str, args)], capture_output=True,
                          text=True, encoding="utf-8", env=ENV, timeout=timeout)


def assert_clean_error(proc, *fragments):
    """A user error: exit status 2, a message naming the problem, and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """`train --preset tiny` for 5 steps; the folder is reused by the sample/export tests."""
    out = tmp_path_factory.mktemp("cli") / "tiny"
    proc = run("train", "--preset", "tiny", "--out", out, "--no-progress", "--max-iters", "5",
               "--threads", "1", "--sample-tokens", "20")
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.mark.parametrize("command", ["train", "sample", "bench", "export"])
def test_help(command):
    proc = run(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: python -m minigpt {command}")


def test_train_tiny(tiny_run):
    out, proc = tiny_run
    match = re.search(r"^val_loss (\d+\.\d+)", proc.stdout, re.MULTILINE)
    assert match, proc.stdout
    assert 0 < float(match.group(1)) < 5
    assert "trained 5 steps" in proc.stdout
    assert (out / "latest").read_text().strip() == "step-000005"
    model, tokenizer = load_model(out)
    assert tokenizer.vocab_size == 65 and model.config.n_embd == 32


def test_train_on_a_chinese_text(tmp_path):
    text_file = tmp_path / "poems.txt"
    text_file.write_text(chinese_text(4000), encoding="utf-8")
    out = tmp_path / "zh"
    proc = run("train", "--preset", "tiny", "--text", text_file, "--out", out, "--no-progress",
               "--max-iters", "5", "--threads", "1", "--sample-tokens", "20")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^val_loss \d+\.\d+", proc.stdout, re.MULTILINE), proc.stdout
    _, tokenizer = load_model(out)
    assert "明" in tokenizer.stoi and tokenizer.vocab_size == len(set(text_file.read_text(encoding="utf-8")))


def test_sample_and_unknown_character(tiny_run):
    out, _ = tiny_run
    proc = run("sample", "--checkpoint", out, "--prompt", "ROMEO:", "--max-new-tokens", "30",
               "--temperature", "0", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ROMEO:") and len(proc.stdout.rstrip("\n")) >= 30
    bad = run("sample", "--checkpoint", out, "--prompt", "ROMEO 月", "--device", "cpu")
    assert_clean_error(bad, "error:", "'月'", "errors='skip'")
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,fragments", [
    (["train", "--preset", "nope"], ["invalid choice: 'nope'", "cpu-quick", "tiny", "seed"]),
    (["sample", "--temperature", "-1"], ["--temperature", "expected a number >= 0, got -1.0"]),
    (["sample", "--top-p", "2"], ["--top-p", "expected a number in (0, 1], got 2.0"]),
])
def test_bad_flags(args, fragments):
    assert_clean_error(run(*args), *fragments)


def test_sample_refuses_a_pickle(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "somefile.pt"
    evil.write_bytes(pickle.dumps(Evil()))
    proc = run("sample", "--checkpoint", evil, "--device", "cpu")
    assert_clean_error(proc, "error:", "pickle", "never unpickles")
    assert not marker.exists()


def test_export_fp16(tiny_run, tmp_path):
    out, _ = tiny_run
    dest = tmp_path / "exported"
    proc = run("export", out, dest, "--fp16")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {dest}" in proc.stdout
    model, tokenizer = load_model(dest)
    original, _ = load_model(out)
    assert tokenizer.vocab_size == 65
    for name, t in model.state_dict().items():
        torch.testing.assert_close(t, original.state_dict()[name], atol=2e-3, rtol=2e-3)


# in-process: user errors that stop before any work (no subprocess start-up needed)
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_sample_on_a_missing_gpu_is_a_one_line_error(capsys):
    assert main(["sample", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device 'cuda' was requested") and len(err.strip().splitlines()) == 1


def test_missing_inputs_are_one_line_errors(tmp_path, capsys):
    assert main(["train", "--text", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "error: text file" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["sample", "--checkpoint", str(tmp_path / "nowhere"), "--device", "cpu"]) == 2
    assert "error: no checkpoint at" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), str(tmp_path / "x")]) == 2
    assert "the path does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("args,fragment", [
    (["sample", "--top-k", "0"], "expected a positive integer, got 0"),
    (["sample", "--temperature", "hot"], "expected a number, got 'hot'"),
    (["train", "--pos-encoding", "alibi"], "choose from 'learned', 'sinusoidal', 'rope'"),
    (["train", "--attn-impl", "xformers"], "choose from 'manual', 'sdpa', 'flash'"),
    (["train", "--max-iters", "-5"], "expected a positive integer"),
    ([], "the following arguments are required"),
])
def test_more_bad_flags(args, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert fragment in capsys.readouterr().err
