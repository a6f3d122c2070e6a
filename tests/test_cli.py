"""`python -m minigpt ...` smoke runs in subprocesses (each costs a Python + torch start-up)."""

import os
import pickle
import re
import subprocess
import sys

import pytest
import torch

from conftest import chinese_text, held_by_another_process
from minigpt import load_model
from minigpt.cli import main
from minigpt.pretrained import pretrained_path

PRETRAINED = pretrained_path()

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


@pytest.mark.parametrize("command", ["train", "sample", "bench", "export", "export-web"])
def test_help(command):
    proc = run(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: python -m minigpt {command}")


def test_the_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "{train,sample,bench,export,export-web}" in out and "export-web " in out


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
    assert_clean_error(bad, "error:", "'月'", "Remove or replace it.")
    assert len(bad.stderr.strip().splitlines()) == 1 and "errors='skip'" not in bad.stderr   # no Python API


def test_sample_without_a_prompt_starts_from_a_character_the_model_knows(tmp_path, capsys):
    """The default prompt is a newline; a model whose text had none starts from its first
    character instead of refusing a prompt the user never gave."""
    text_file = tmp_path / "no_newline.txt"
    text_file.write_text("abcd dcba " * 500, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--text", str(text_file), "--out", str(out), "--no-progress",
                 "--max-iters", "2", "--sample-tokens", "5"]) == 0
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(out), "--max-new-tokens", "5", "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    assert said.startswith(" ") and len(said.rstrip("\n")) == 6, repr(said)      # " " sorts first


def test_a_folder_named_pretrained_beside_the_shipped_model_is_pointed_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pretrained").mkdir()
    assert main(["sample", "--max-new-tokens", "3", "--device", "cpu", "--prompt", "A"]) == 0
    err = capsys.readouterr().err
    assert "'pretrained' is the model shipped with minigpt; for your folder ./pretrained, write " \
           "./pretrained (e.g. --checkpoint ./pretrained)" in err
    assert main(["export", "pretrained", str(tmp_path / "exp")]) == 0           # export too
    assert "for your folder ./pretrained" in capsys.readouterr().err


@pytest.mark.parametrize("args, said, api", [
    (["train", "--lr", "0"], "error: --lr must be in (0, 1), got 0.0", "TrainConfig"),
    (["train", "--dropout", "1"], "error: --dropout must be in [0, 1), got 1.0", "GPTConfig"),
])
def test_config_errors_name_the_flag_not_the_python_field(args, said, api, tmp_path, capsys):
    assert main([*args, "--preset", "tiny", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(said) and api not in err, err


def test_a_new_run_does_not_overwrite_a_summary_json_that_is_not_its_own(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "summary.json").write_text('{"my": "notes"}')
    assert main(["train", "--preset", "tiny", "--max-iters", "1", "--out", str(folder), "--no-progress"]) == 2
    assert "this run would overwrite it. Choose another --out" in capsys.readouterr().err
    assert (folder / "summary.json").read_text() == '{"my": "notes"}'


def test_a_bpe_vocabulary_smaller_than_asked_for_is_said(tmp_path, capsys):
    text_file = tmp_path / "short.txt"
    from minigpt import load_shakespeare
    text_file.write_text(load_shakespeare()[:3000], encoding="utf-8")
    assert main(["train", "--preset", "tiny", "--tokenizer", "bpe", "--vocab-size", "5000", "--text", str(text_file),
                 "--out", str(tmp_path / "run"), "--max-iters", "1", "--no-progress", "--sample-tokens", "0"]) == 0
    said = capsys.readouterr().out
    assert re.search(r"note: after \d+ merges no pair occurs twice in the training text: the vocabulary is "
                     r"\d+ tokens, not --vocab-size 5000", said), said


def test_errors_at_the_command_line_name_flags_not_python_arguments(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--preset", "tiny", "--n-head", "5", "--out", out, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Pick --n-head from" in err and "or change --n-embd" in err and "n_head from" not in err, err
    assert main(["train", "--preset", "tiny", "--max-iters", "1", "--out", out, "--no-progress",
                 "--sample-tokens", "0"]) == 0
    capsys.readouterr()
    assert main(["train", "--preset", "tiny", "--max-iters", "1", "--out", out, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pass --resume to continue it" in err and "resume=True" not in err, err


@pytest.mark.parametrize("args,fragments", [
    (["train", "--preset", "nope"], ["invalid choice: 'nope'", "cpu-quick", "tiny", "seed"]),
    (["sample", "--temperature", "-1"], ["--temperature", "expected a finite number >= 0, got -1.0"]),
    (["sample", "--top-p", "2"], ["--top-p", "expected a number in (0, 1], got 2.0"]),
    (["sample", "--checkpoint", ""], ["--checkpoint", "expected a path, got an empty one"]),
    (["train", "--text", ""], ["--text", "expected a path, got an empty one"]),
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
    # --fp16 rounds each weight to float16 and loading widens it back exactly: the loaded weights
    # are known bit for bit (a tolerance would also accept bf16 or int8 rounding)
    assert set(model.state_dict()) == set(original.state_dict())
    for name, t in model.state_dict().items():
        assert t.dtype == torch.float32
        assert torch.equal(t, original.state_dict()[name].half().float()), name


def test_export_into_the_current_folder_when_it_is_empty(tiny_run, tmp_path, capsys, monkeypatch):
    # `export RUN .` in an empty folder once failed with "Invalid argument" ('.' has no name)
    out, _ = tiny_run
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert main(["export", str(out), "."]) == 0
    assert "wrote ." in capsys.readouterr().out
    assert sorted(p.name for p in here.iterdir()) == ["minigpt.json", "model.safetensors"]
    assert load_model(here)[1].vocab_size == 65


# in-process: user errors that stop before any work (no subprocess start-up needed)
def test_sample_on_a_missing_gpu_is_a_one_line_error(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)    # also on a machine with a GPU
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
    (["train", "--threads", "50000"], "threads on a machine with"),      # once an OpenMP crash
    (["bench", "--threads", "10000"], "threads on a machine with"),
    (["sample", "--top-p", "0"], "expected a number in (0, 1], got 0.0"),        # top-p 0 keeps nothing
    ([], "the following arguments are required"),
])
def test_more_bad_flags(args, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert fragment in capsys.readouterr().err


# ----------------------------------------------------- nothing lost, nothing hidden
import importlib  # noqa: E402
import signal  # noqa: E402

cli_module = importlib.import_module("minigpt.cli")


def one_line_error(capsys, *fragments):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def test_sample_streams_the_same_text_as_one_generate_call(tiny_run, capsys):
    out, _ = tiny_run
    assert main(["sample", "--checkpoint", str(out), "--prompt", "RO", "--max-new-tokens", "150",
                 "--temperature", "0", "--device", "cpu"]) == 0
    model, tokenizer = load_model(out)
    expected = tokenizer.decode(model.generate(torch.tensor([tokenizer.encode("RO")]), 150, temperature=0)[0])
    assert capsys.readouterr().out == expected + "\n"


def test_ctrl_c_during_sampling_keeps_the_text_printed_so_far(tiny_run, capsys, monkeypatch):
    from minigpt import MiniGPT
    out, _ = tiny_run
    real_generate = MiniGPT.generate
    calls = {"n": 0}

    def generate(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:                 # chunks of 1, 2 and 4 tokens are out; Ctrl-C now
            raise KeyboardInterrupt
        return real_generate(self, *args, **kwargs)
    monkeypatch.setattr(MiniGPT, "generate", generate)
    assert main(["sample", "--checkpoint", str(out), "--prompt", "KING", "--max-new-tokens", "500",
                 "--device", "cpu"]) == 130
    captured = capsys.readouterr()
    assert captured.out.startswith("KING") and len(captured.out) == len("KING") + 7 + 1   # + the newline
    assert "interrupted" in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize("args,fragment", [
    (["sample", "--max-new-tokens", str(10**21)], "expected 1 to 1,000,000, got 1000000000000000000000"),
    (["sample", "--num-samples", "100000"], "expected 1 to 1,000"),
    (["sample", "--seed", str(2**70)], "expected 0 to 9,223,372,036,854,775,807"),
    (["train", "--seed", str(2**70)], "torch seeds are 64-bit"),
    (["train", "--seed", "-3"], "expected 0 to"),
    (["train", "--sample-tokens", str(10**9)], "expected 0 to 1,000,000"),
    (["train", "--n-kv-head", "0"], "expected a positive integer, got 0"),
])
def test_absurd_numbers_are_refused_with_the_limit(args, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2 and fragment in capsys.readouterr().err


def test_train_refuses_a_folder_as_text_and_a_file_as_out(tmp_path, capsys):
    assert main(["train", "--text", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    one_line_error(capsys, "is a folder; --text needs a UTF-8 text file")
    out_file = tmp_path / "notes.txt"
    out_file.write_text("keep me")
    assert main(["train", "--preset", "tiny", "--out", str(out_file), "--no-progress", "--threads", "1"]) == 2
    one_line_error(capsys, "is an existing file; choose a folder path for --out")
    assert out_file.read_text() == "keep me"


def test_a_bad_out_fails_before_the_data_is_built(tmp_path, capsys, monkeypatch):
    """--out that holds a checkpoint, or is a single checkpoint folder, is refused before the
    tokenizer is trained (a BPE vocabulary can take minutes) and before --text is read."""
    import minigpt.cli as cli
    from minigpt.run_folder import LATEST_FILE, META_FILE

    def built(*_args):
        raise AssertionError("the data was built before --out was checked")
    monkeypatch.setattr(cli, "_train_data", built)
    run = tmp_path / "run"
    run.mkdir()
    (run / LATEST_FILE).write_text("step-000100")
    export = tmp_path / "export"
    export.mkdir()
    (export / META_FILE).write_text("{}")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    for out, fragment in [(run, "already holds a checkpoint; pass --resume to continue it"),
                          (export, "is a single checkpoint folder"),
                          (a_file / "run", f"{str(a_file)!r} on its path is a file; choose another --out")]:
        args = ["train", "--tokenizer", "bpe", "--vocab-size", "2000", "--text", str(tmp_path / "missing.txt"),
                "--out", str(out), "--no-progress"]
        assert main(args) == 2
        one_line_error(capsys, fragment)
    assert (run / LATEST_FILE).read_text() == "step-000100" and sorted(p.name for p in run.iterdir()) == [LATEST_FILE]


def test_train_with_grouped_query_attention(tmp_path, capsys):
    out = tmp_path / "gqa"
    assert main(["train", "--preset", "tiny", "--n-kv-head", "2", "--max-iters", "2", "--out", str(out),
                 "--no-progress", "--threads", "1", "--sample-tokens", "0"]) == 0
    model, _ = load_model(out)
    assert model.config.n_head == 4 and model.config.n_kv_head == 2
    assert main(["train", "--preset", "tiny", "--n-kv-head", "3", "--out", str(tmp_path / "bad"),
                 "--no-progress"]) == 2
    one_line_error(capsys, "n_kv_head=3 must divide n_head=4")


def test_resume_with_other_settings_warns_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train", "--preset", "tiny", "--out", str(out), "--no-progress", "--threads", "1",
              "--sample-tokens", "0"]
    assert main([*common, "--max-iters", "2"]) == 0
    capsys.readouterr()
    assert main([*common, "--max-iters", "3", "--lr", "0.002", "--resume"]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "learning_rate 0.003 -> 0.002" in warning[0] and "max_iters 2 -> 3" in warning[0]


def test_export_never_overwrites_a_training_checkpoint(tiny_run, tmp_path, capsys):
    from minigpt import load_checkpoint
    out, _ = tiny_run
    step = out / "step-000005"
    before = {p.name: p.read_bytes() for p in step.iterdir()}
    assert main(["export", str(out), str(step), "--fp16"]) == 2
    one_line_error(capsys, "holds a training checkpoint or run; export never writes into one")
    assert main(["export", str(out), str(step), "--fp16", "--force"]) == 2
    capsys.readouterr()
    assert {p.name: p.read_bytes() for p in step.iterdir()} == before
    assert load_checkpoint(out, with_trainer=True).trainer_tensors        # still resumable
    target = tmp_path / "file.bin"
    target.write_bytes(b"mine")
    assert main(["export", str(out), str(target)]) == 2
    one_line_error(capsys, "is an existing file; export writes a folder")
    assert main(["export", str(out), str(target / "below_a_file")]) == 2
    err = one_line_error(capsys, "choose another output folder (the out argument)")
    assert "--out" not in err                                              # export has no --out
    assert main(["export", str(out), str(tmp_path / "exp")]) == 0
    assert main(["export", str(out), str(tmp_path / "exp"), "--fp16"]) == 2
    one_line_error(capsys, "already exists and is not empty", "--force")
    assert main(["export", str(out), str(tmp_path / "exp"), "--fp16", "--force"]) == 0


def test_a_second_train_on_the_same_out_is_refused(tmp_path, capsys):
    from minigpt.run_folder import run_lock
    out = tmp_path / "run"
    out.mkdir()
    with held_by_another_process(lambda: run_lock(out)) as pid:      # the first "training run"
        assert main(["train", "--preset", "tiny", "--out", str(out), "--no-progress", "--threads", "1"]) == 2
        one_line_error(capsys, f"is in use by another training run (PID {pid} on ")


def test_ctrl_c_during_start_up_is_not_a_traceback(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(cli_module, "build_parser", interrupted)
    assert main(["sample"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_a_bug_keeps_its_traceback(tiny_run, monkeypatch):
    """Only the package's own user-facing errors become one-liners; a TypeError from our code
    (here: a stand-in bug in the loader) must surface with its traceback."""
    checkpoint_module = importlib.import_module("minigpt.checkpoint")

    def buggy(*args, **kwargs):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")
    monkeypatch.setattr(checkpoint_module, "load_model", buggy)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["sample", "--checkpoint", str(tiny_run[0]), "--device", "cpu"])


def test_ctrl_c_in_a_real_train_command_saves_the_exact_step(tmp_path):
    """SIGINT to `python -m minigpt train`: exit 130, no traceback, and the checkpoint it saves
    is the one an uninterrupted run writes at that step (weights, AdamW moments, RNG states)."""
    import subprocess
    from minigpt import GPTConfig, MiniGPT, PRESETS, TextData, TrainConfig, load_checkpoint, set_seed, train
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "minigpt", "train", "--preset", "tiny", "--out", str(out),
                             "--max-iters", "5000", "--eval-interval", "10", "--no-progress", "--threads", "1",
                             "--sample-tokens", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV,
                            # a test run started in the background inherits SIGINT ignored, and so
                            # would the command (it then keeps ignoring it, as Python does)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:
        if line.startswith("step     10"):
            proc.send_signal(signal.SIGINT)
            break
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and "interrupted" in stderr
    saved = re.search(r"interrupted: saved step (\d+) to", stdout)
    assert saved, stdout
    step = int(saved.group(1))
    ckpt = load_checkpoint(out, with_trainer=True)
    assert ckpt.train_state["step"] == step >= 10          # the SIGINT may land before step 11 starts

    preset = PRESETS["tiny"]
    data = TextData.shakespeare()
    set_seed(1337)
    model = MiniGPT(GPTConfig(vocab_size=data.tokenizer.vocab_size, **preset.model))
    cfg = TrainConfig(**{**preset.train, "max_iters": 5000, "eval_interval": 10})
    train(model, data, cfg, tmp_path / "reference", stop_at=step, progress=False)
    reference = load_checkpoint(tmp_path / "reference", with_trainer=True)
    for name, t in reference.model.state_dict().items():
        assert torch.equal(t, ckpt.model.state_dict()[name]), name
    for name, t in reference.trainer_tensors.items():
        assert torch.equal(t, ckpt.trainer_tensors[name]), name


@pytest.mark.parametrize("args", [["--n-embd", "1000000", "--n-head", "8"], ["--block-size", "1000000000"]])
def test_a_model_too_big_for_memory_is_refused_before_allocating(args, tmp_path, capsys):
    assert main(["train", *args, "--out", str(tmp_path / "big"), "--no-progress"]) == 2
    one_line_error(capsys, "training it needs about", "choose a smaller --n-embd, --n-layer or --block-size")
    assert not (tmp_path / "big").exists()


def test_an_infinite_temperature_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--temperature", "inf"])
    assert "expected a finite number >= 0, got inf" in capsys.readouterr().err



# ------------------------------------------------------------ export-web: one-line errors
def test_export_web_input_errors_are_one_line(tmp_path, capsys):
    assert main(["export-web", "--out", str(tmp_path / "m.js"), "--checkpoint", str(tmp_path / "nope")]) == 2
    one_line_error(capsys, "no checkpoint at", "the path does not exist")
    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    assert main(["export-web", "--out", str(tmp_path / "m.js"), "--checkpoint", str(evil)]) == 2
    one_line_error(capsys, "is a pickle (torch.save) file", "never unpickles")
    assert main(["export-web", "--out", str(tmp_path / "m.txt")]) == 2
    one_line_error(capsys, "give a path ending in .js")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["export-web", "--out", str(blocker / "m.js")]) == 2
    one_line_error(capsys, f"cannot write '{blocker / 'm.js'}'", "choose another --out")
    from minigpt.web.export import asset_path
    shipped = asset_path()
    before = shipped.stat().st_mtime_ns
    assert main(["export-web", "--out", ""]) == 2          # was: rewrote the package's own asset
    one_line_error(capsys, "--out is empty", "--out model.js")
    assert main(["export-web", "--out", str(tmp_path / "m.js"), "--checkpoint", ""]) == 2
    one_line_error(capsys, "--checkpoint is empty", "leave --checkpoint out")
    assert shipped.stat().st_mtime_ns == before


def test_export_web_of_the_shipped_model_registers_the_name_asked_for(tmp_path, capsys):
    from minigpt.web.export import read_web_asset
    assert main(["export-web", "--out", str(tmp_path / "mymodel.js")]) == 0
    assert main(["export-web", "--out", str(tmp_path / "other.js"), "--name", "foo"]) == 0
    assert read_web_asset(tmp_path / "mymodel.js")["name"] == "mymodel"
    assert read_web_asset(tmp_path / "other.js")["name"] == "foo"


def test_export_web_of_a_bpe_model_says_the_page_reads_characters(tmp_path, capsys):
    from minigpt import GPTConfig, MiniGPT, MiniGPTError
    from minigpt.bpe import BPETokenizer
    from minigpt.web import export_web
    tok = BPETokenizer.train("the king, the queen. " * 30, 260)
    model = MiniGPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_embd=16, n_head=2, n_layer=1))
    with pytest.raises(MiniGPTError, match=r"the in-page model reads characters, .* BPETokenizer: export a "
                                           r"character-level model"):
        export_web(model, tok, tmp_path / "m.js")


def test_export_web_does_not_overwrite_a_file_without_force(tmp_path, capsys):
    mine = tmp_path / "mine.js"
    mine.write_text("my precious js")
    assert main(["export-web", "--out", str(mine)]) == 2
    one_line_error(capsys, f"'{mine}' exists; export-web does not overwrite a file", "add --force")
    assert mine.read_text() == "my precious js"
    assert main(["export-web", "--out", str(mine), "--force"]) == 0
    assert mine.read_text().startswith("/* minigpt web asset ")
    assert [p.name for p in tmp_path.iterdir()] == ["mine.js"]          # no temporary file left


@pytest.mark.parametrize("quantize,value,message", [
    ("int8", float("nan"), "contains NaN or inf values; nothing was written"),
    ("float32", float("inf"), "contains NaN or inf values; nothing was written"),
    ("float16", 1e5, "beyond float16's range (65504)"),
])
def test_export_web_refuses_non_finite_weights_when_writing(tmp_path, quantize, value, message):
    from conftest import tiny_model
    from minigpt import CharTokenizer, MiniGPTError
    from minigpt.web.export import export_web
    model = tiny_model()
    with torch.no_grad():
        model.blocks[0].attn.c_proj.weight[1, 2] = value
    tokenizer = CharTokenizer([chr(ord("a") + i) for i in range(model.config.vocab_size)])
    with pytest.raises(MiniGPTError, match=re.escape(message)):
        export_web(model, tokenizer, tmp_path / "m.js", quantize=quantize)
    assert not (tmp_path / "m.js").exists()


def test_export_of_a_model_with_nan_weights_is_refused_before_writing(tmp_path, capsys, monkeypatch):
    from minigpt import checkpoint
    real_load = checkpoint.load_checkpoint

    def load_broken(*args, **kwargs):
        ckpt = real_load(*args, **kwargs)
        with torch.no_grad():
            ckpt.model.ln_f.bias[0] = float("nan")
        return ckpt
    monkeypatch.setattr(checkpoint, "load_checkpoint", load_broken)
    assert main(["export", str(PRETRAINED), str(tmp_path / "exp")]) == 2
    one_line_error(capsys, "ln_f.bias contains NaN or inf values; nothing was written")
    assert not (tmp_path / "exp").exists()


# ------------------------------------------------------------------- resume
def test_resume_takes_the_shape_from_the_checkpoint_and_says_what_it_trained(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--out", str(out), "--no-progress", "--threads", "1", "--sample-tokens", "0"]
    assert main(["train", "--preset", "tiny", "--max-iters", "3", *common]) == 0
    assert "trained 3 steps;" in capsys.readouterr().out
    # no preset, no shape flag, another attention implementation: the run continues
    assert main(["train", "--resume", "--max-iters", "6", "--attn-impl", "manual", *common]) == 0
    captured = capsys.readouterr()
    assert "trained 3 steps (6 in all);" in captured.out and f"resuming '{out}' at step 3" in captured.out
    assert "GPTConfig(" not in captured.err
    model, _ = load_model(out)
    assert model.config.n_embd == 32 and model.config.attn_impl == "manual"
    # a shape flag that differs is refused, naming that field alone
    assert main(["train", "--resume", "--max-iters", "9", "--n-layer", "3", "--n-head", "4", *common]) == 2
    err = one_line_error(capsys, "cannot resume", "n_layer (--n-layer 3; the checkpoint has 2)",
                         "Leave out the model flags when resuming")
    assert "n_head" not in err and "GPTConfig(" not in err


def test_a_fine_tune_on_too_short_a_text_says_how_long_it_must_be(tmp_path, capsys):
    # it said "use a smaller block_size", which --init-from refuses
    short = tmp_path / "short.txt"
    short.write_text("Now is the winter of our discontent. " * 8, encoding="utf-8")
    assert main(["train", "--init-from", "pretrained", "--text", str(short), "--out", str(tmp_path / "o")]) == 2
    err = one_line_error(capsys, "the text has 296 characters", "needs at least about 2,580", "Use a longer text")
    assert "block_size" not in err


def test_resuming_a_finished_run_says_there_is_nothing_to_do(tmp_path, capsys):
    # it printed "the run continues", trained 0 steps and exited 0
    common = ["train", "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1", "--sample-tokens", "0"]
    assert main([*common, "--preset", "tiny", "--max-iters", "3"]) == 0
    capsys.readouterr()
    for more in ([], ["--max-iters", "2"]):          # the run's own max_iters, or a smaller one
        assert main([*common, "--resume", *more]) == 2
        one_line_error(capsys, "is already at step 3 of max_iters", "Pass a larger --max-iters")


def test_an_interrupted_fine_tune_on_a_small_text_resumes(tmp_path, capsys):
    # a fine-tune keeps the pretrained 65 characters; a text using only some of them once made
    # --resume refuse "this text's vocabulary differs" with no way out
    text = tmp_path / "play.txt"
    text.write_text("Now is the winter of our discontent made glorious summer.\n" * 60, encoding="utf-8")
    common = ["--out", str(tmp_path / "ft"), "--text", str(text), "--no-progress", "--threads", "1",
              "--sample-tokens", "0"]
    assert main(["train", "--init-from", "pretrained", "--preset", "tiny", "--max-iters", "2", *common]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--max-iters", "3", *common]) == 0
    assert "trained 1 steps (3 in all);" in capsys.readouterr().out
    # a character the run's vocabulary lacks is a one-line error naming it
    other = tmp_path / "other.txt"
    other.write_text("ünïcödé " * 200, encoding="utf-8")
    assert main(["train", "--resume", "--max-iters", "4", *common[:2], "--text", str(other), *common[4:]]) == 2
    one_line_error(capsys, "cannot resume", "character 'ü'", "Resume with the text the run was trained on")


def test_an_interrupted_bpe_run_resumes_with_its_own_merge_table(tmp_path, capsys):
    common = ["--out", str(tmp_path / "bpe"), "--no-progress", "--threads", "1", "--sample-tokens", "0"]
    assert main(["train", "--preset", "tiny", "--tokenizer", "bpe", "--vocab-size", "260", "--max-iters", "2",
                 *common]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--max-iters", "3", *common]) == 0
    assert "trained 1 steps (3 in all);" in capsys.readouterr().out
    assert main(["train", "--resume", "--max-iters", "4", "--vocab-size", "300", "--tokenizer", "bpe", *common]) == 2
    one_line_error(capsys, "a resumed run keeps the tokenizer its checkpoint was trained with")


def test_resume_on_other_text_warns_that_it_is_other_data(tmp_path, capsys):
    text = tmp_path / "a.txt"
    text.write_text("to be or not to be, that is the question.\n" * 60, encoding="utf-8")
    other = tmp_path / "b.txt"
    other.write_text("that is the question, or not to be. to be\n" * 60, encoding="utf-8")   # same characters
    common = ["--out", str(tmp_path / "run"), "--no-progress", "--threads", "1", "--sample-tokens", "0",
              "--preset", "tiny", "--block-size", "16"]
    assert main(["train", "--max-iters", "2", "--text", str(text), *common]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--max-iters", "3", "--text", str(other), *common]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len([w for w in warning if "on other data than its checkpoint was trained on" in w]) == 1
    # the newest checkpoint was trained on `other`: continuing on it again is silent about data
    assert main(["train", "--resume", "--max-iters", "4", "--text", str(other), *common]) == 0
    assert "other data" not in capsys.readouterr().err


def test_resume_without_text_refuses_a_run_trained_on_other_text(tmp_path, capsys, shakespeare):
    """A run whose vocabulary holds Shakespeare's characters (every fine-tune does) would go on
    with tinyshakespeare, the default without --text, and the keep-last rule would then delete
    the checkpoints of its own text. Refused; nothing in the run folder changes."""
    own = tmp_path / "own.txt"
    own.write_text(shakespeare.swapcase(), encoding="utf-8")          # the same characters, other text
    common = ["--out", str(tmp_path / "run"), "--no-progress", "--threads", "1", "--sample-tokens", "0",
              "--preset", "tiny", "--block-size", "16"]
    assert main(["train", "--max-iters", "2", "--text", str(own), *common]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert main(["train", "--resume", "--max-iters", "4", *common]) == 2
    one_line_error(capsys, "cannot resume", "without --text", "--resume --text FILE")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before
    assert main(["train", "--resume", "--max-iters", "3", "--text", str(own), *common]) == 0


def test_resume_in_a_folder_with_nothing_to_resume_says_so(tmp_path, capsys):
    common = ["--no-progress", "--threads", "1", "--sample-tokens", "0", "--resume"]
    assert main(["train", "--out", str(tmp_path / "typo"), *common]) == 2
    one_line_error(capsys, f"nothing to resume in '{tmp_path / 'typo'}': the folder does not exist",
                   "leave out --resume to start a new run there")
    assert not (tmp_path / "typo").exists()
    (tmp_path / "empty").mkdir()
    assert main(["train", "--out", str(tmp_path / "empty"), *common]) == 2
    one_line_error(capsys, "it holds no checkpoint")
    assert main(["train", "--out", str(PRETRAINED), *common]) == 2
    one_line_error(capsys, "is a single checkpoint (an export or a step-* folder), not a run folder")


def test_a_mismatched_config_through_the_api_names_the_field(tmp_path):
    from conftest import tiny_model
    from minigpt import CheckpointError, TextData, TrainConfig, train
    data = TextData.from_text("abcdefghijklmnopqrstuvw" * 40)
    cfg = TrainConfig(max_iters=3, batch_size=2, eval_interval=2, eval_iters=1, warmup_iters=0, device="cpu")
    train(tiny_model(), data, cfg, tmp_path / "run", stop_at=2, progress=False)
    resumed = train(tiny_model(attn_impl="manual"), data, cfg, tmp_path / "run", resume=True, progress=False)
    assert resumed.steps == 3
    with pytest.raises(CheckpointError, match=r"was trained with n_layer=2, not 1; build the model") as info:
        train(tiny_model(n_layer=1), data, cfg, tmp_path / "run", resume=True, progress=False)
    assert "GPTConfig(" not in str(info.value)


# ----------------------------------------------------------------- bad inputs
def test_train_input_files_and_folders_that_cannot_work(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked" / "text.txt"
    real_stat = type(locked).stat

    def stat(self, *args, **kwargs):            # a parent folder without the x bit (root may search all)
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)
    monkeypatch.setattr(type(locked), "stat", stat)
    assert main(["train", "--text", str(locked), "--out", str(tmp_path / "a")]) == 2
    one_line_error(capsys, f"cannot read '{locked}': Permission denied")
    monkeypatch.setattr("minigpt.data.MAX_TEXT_BYTES", 2**20)
    assert main(["train", "--text", "/dev/zero", "--out", str(tmp_path / "b")]) == 2
    one_line_error(capsys, "'/dev/zero' gave more than 1 MB and was still not at its end")
    for command in (["train", "--out", ""], ["export", str(tmp_path), ""]):
        with pytest.raises(SystemExit) as info:
            main(command)
        assert info.value.code == 2
        assert "expected a folder path, got an empty one" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_bench_runs_from_the_checkout_and_an_unknown_name_is_one_line(capfd):
    path_before = list(sys.path)
    assert main(["bench", "nope", "--device", "cpu"]) == 2
    err = capfd.readouterr().err
    assert err.startswith("error: unknown benchmark(s) nope; choose from") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert sys.path == path_before             # no sys.path surgery to reach bench/


@pytest.mark.parametrize("args,fragments", [
    (["--n-layer", "100000", "--n-embd", "4096"], ["training it needs about", "--n-layer"]),
    (["--batch-size", "100000000"], ["one batch of 100,000,000 sequences", "--micro-batch-size"]),
])
def test_sizes_that_cannot_fit_are_refused_before_anything_is_built(args, fragments, tmp_path, capsys, monkeypatch):
    from minigpt import model as model_module

    def never(*a, **k):
        raise AssertionError("the model was built")
    monkeypatch.setattr(model_module.MiniGPT, "__init__", never)
    assert main(["train", *args, "--out", str(tmp_path / "big"), "--no-progress", "--device", "cpu"]) == 2
    one_line_error(capsys, *fragments)
    assert not (tmp_path / "big").exists()


@pytest.mark.parametrize("overrides", [
    {}, dict(bias=False), dict(n_kv_head=2), dict(n_kv_head=1, pos_encoding="rope"),
    dict(pos_encoding="sinusoidal", n_layer=3), dict(vocab_size=101, n_embd=48, n_head=6, block_size=7),
])
def test_the_parameter_arithmetic_matches_the_model(overrides):
    from conftest import tiny_config
    from minigpt import MiniGPT
    config = tiny_config(**overrides)
    assert cli_module.parameter_count(config) == MiniGPT(config).num_parameters()


def test_an_uneven_batch_under_torchrun_names_the_flag(tmp_path, capsys, monkeypatch):
    from conftest import tiny_model
    from minigpt import TextData, TrainConfig, UsageError, train
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--preset", "tiny", "--batch-size", "7", "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = one_line_error(capsys, "--batch-size / --micro-batch-size: batch_size=7 does not split evenly "
                                 "over 2 processes")
    assert "TrainConfig.device" not in err and not (tmp_path / "o").exists()
    data = TextData.from_text("abcdefghijklmnopqrstuvw" * 40)
    with pytest.raises(UsageError, match="^batch_size=7 does not split evenly"):
        train(tiny_model(), data, TrainConfig(batch_size=7, device="cpu"), progress=False)


def test_a_damaged_web_asset_is_one_error_naming_the_file(tmp_path):
    import json as json_module

    from conftest import tiny_model
    from minigpt import CharTokenizer, MiniGPTError
    from minigpt.web.export import export_web, load_web_model, read_web_asset
    model = tiny_model()
    tokenizer = CharTokenizer([chr(ord("a") + i) for i in range(model.config.vocab_size)])
    path = export_web(model, tokenizer, tmp_path / "m.js", quantize="float32")
    asset = read_web_asset(path)
    asset["tensors"]["ln_f.weight"]["shape"] = [7]             # 32 values stored, 7 announced
    text = path.read_text(encoding="utf-8")
    head = text[:text.index("=\n{") + 2]
    path.write_text(head + json_module.dumps(asset) + ";\n", encoding="utf-8")
    with pytest.raises(MiniGPTError, match=r"m\.js' is a damaged minigpt web asset \(RuntimeError: shape"):
        load_web_model(path)
    asset["tensors"] = []                                       # an AttributeError from .items()
    path.write_text(head + json_module.dumps(asset) + ";\n", encoding="utf-8")
    with pytest.raises(MiniGPTError, match=r"damaged minigpt web asset \(TypeError: its tensors are a list"):
        load_web_model(path)
    path.write_bytes(b"\xff\xfe not text")
    with pytest.raises(MiniGPTError, match="is not a minigpt web asset"):
        load_web_model(path)


def test_running_out_of_gpu_memory_is_one_line(monkeypatch, capsys):
    """The size check before training is a lower bound: an allocation that still fails on the
    GPU is the user's batch, said in one line with the fix."""
    def out_of_memory(args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.1 GiB total)")
    monkeypatch.setattr(cli_module, "_cmd_sample", out_of_memory)
    monkeypatch.setattr(cli_module, "_cmd_train", out_of_memory)
    assert main(["sample"]) == 2
    one_line_error(capsys, "out of GPU memory (CUDA out of memory. Tried to allocate 20.00 GiB",
                   "use fewer --num-samples, or --device cpu")
    assert main(["train"]) == 2
    one_line_error(capsys, "out of GPU memory", "choose a smaller --batch-size, or --micro-batch-size")


def test_an_output_folder_behind_a_folder_one_may_not_enter_is_one_line(tmp_path, capsys, monkeypatch):
    """As another user, Path.exists() on a path under a root-only folder raises PermissionError
    (EACCES) in Python 3.11: train, export and export-web printed its traceback. (Faked here:
    the tests run as root, for whom every folder opens.)"""
    import pathlib
    locked = tmp_path / "locked"
    real_exists = pathlib.Path.exists

    def exists(self, *args, **kwargs):
        if self == locked or locked in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return real_exists(self, *args, **kwargs)
    monkeypatch.setattr(pathlib.Path, "exists", exists)
    assert main(["train", "--preset", "tiny", "--max-iters", "1", "--out", str(locked / "run")]) == 2
    one_line_error(capsys, f"cannot use the output folder '{locked / 'run'}': Permission denied", "choose another --out")
    assert main(["export-web", "--out", str(locked / "x.js")]) == 2
    one_line_error(capsys, "Permission denied", "choose another --out")


def test_sample_into_a_closed_pipe_ends_quietly():
    """`sample ... | head -c 100`: when the reader closes the pipe, print raises BrokenPipeError.
    The command ends with the status a shell gives SIGPIPE (141) and no traceback, also not the
    one Python prints when it flushes stdout at exit."""
    code = ("import sys, minigpt.cli as cli\n"
            "def command(argv):\n"
            "    print('x' * 100, flush=True)\n"          # the reader below has already gone
            "    raise BrokenPipeError(32, 'Broken pipe')\n"
            "cli._main = command\n"
            "sys.exit(cli.main([]))\n")
    read_end, write_end = os.pipe()
    os.close(read_end)
    done = subprocess.run([sys.executable, "-c", code], stdout=write_end, stderr=subprocess.PIPE, text=True,
                          env=ENV)
    os.close(write_end)
    assert done.returncode == 141 and done.stderr == "", done.stderr


def test_ctrl_c_while_sampling_after_training_says_the_run_is_saved(tmp_path, capsys, monkeypatch):
    from minigpt import MiniGPT

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(MiniGPT, "generate", interrupted)
    out = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--max-iters", "2", "--no-progress", "--threads", "1",
                 "--sample-tokens", "50", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"interrupted while sampling: training finished (val_loss " in err
    assert f"is saved in '{out / 'step-000002'}'" in err
    assert (out / "step-000002" / "model.safetensors").is_file()


def test_a_model_that_fits_but_not_with_one_sequence_asks_for_a_smaller_model(tmp_path, capsys, monkeypatch):
    """100,000 layers of the tiny preset: the training state (20.3 GB) fits in 25 GB, but even
    one sequence's activations do not. A smaller batch cannot help: the message names the
    model's sizes, not --batch-size. (The machine's memory is faked at 25 GB.)"""
    import os as os_module
    real_sysconf = os_module.sysconf
    monkeypatch.setattr(os_module, "sysconf", lambda name: 25 * 10**9 // 4096 if name == "SC_PHYS_PAGES"
                        else 4096 if name == "SC_PAGE_SIZE" else real_sysconf(name))
    assert main(["train", "--preset", "tiny", "--n-layer", "100000", "--out", str(tmp_path / "big"),
                 "--no-progress", "--device", "cpu"]) == 2
    err = one_line_error(capsys, "does not fit with even one sequence", "choose a smaller --n-embd, --n-layer")
    assert "--batch-size" not in err


def test_export_force_replaces_only_an_earlier_export(tiny_run, tmp_path, capsys):
    # --force once wrote model.safetensors over any folder's file of that name
    out, _ = tiny_run
    foreign = tmp_path / "hf"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"model_type": "gpt2"}', encoding="utf-8")
    (foreign / "model.safetensors").write_bytes(b"someone else's weights")
    before = {p.name: p.read_bytes() for p in foreign.iterdir()}
    assert main(["export", str(out), str(foreign), "--force"]) == 2
    one_line_error(capsys, "holds no earlier export", "replaces only an exported model")
    assert {p.name: p.read_bytes() for p in foreign.iterdir()} == before
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    (adapters / "lora.json").write_text("{}", encoding="utf-8")
    assert main(["export", str(out), str(adapters), "--force"]) == 2
    one_line_error(capsys, "holds LoRA adapters (lora.json)")
    assert [p.name for p in adapters.iterdir()] == ["lora.json"]
    # the shipped model by its name, then replaced by an export of the run: what --force is for
    assert main(["export", "pretrained", str(tmp_path / "exp")]) == 0
    assert main(["export", str(out), str(tmp_path / "exp"), "--force"]) == 0
    assert load_model(tmp_path / "exp")[0].config.n_embd == 32


def test_export_web_takes_the_shipped_model_by_its_name(tmp_path, capsys):
    from minigpt.web.export import read_web_asset
    assert main(["export-web", "--checkpoint", "pretrained", "--out", str(tmp_path / "p.js")]) == 0
    assert read_web_asset(tmp_path / "p.js")["info"]["val_loss_quantized"] is not None


def test_resume_refuses_another_seed_and_compiles_only_when_asked(tmp_path, capsys, monkeypatch):
    # --seed on resume changed only the evaluation batches yet was saved as the run's seed;
    # --compile, once given, was saved and compiled every resume, with no flag to undo it
    train_module = sys.modules["minigpt.train"]          # `minigpt.train` is also the function
    compiled = []
    monkeypatch.setattr(train_module, "maybe_compile", lambda model, enabled: compiled.append(enabled) or model)
    common = ["train", "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1", "--sample-tokens", "0"]
    assert main([*common, "--preset", "tiny", "--max-iters", "2", "--compile", "--seed", "7"]) == 0
    assert compiled == [True]
    capsys.readouterr()
    assert main([*common, "--resume", "--max-iters", "4", "--seed", "8"]) == 2
    one_line_error(capsys, "--seed 8: a resumed run continues its own random streams", "seeded 7",
                   "leave out --seed with --resume")
    assert main([*common, "--resume", "--max-iters", "4", "--seed", "7"]) == 0     # the run's own seed
    assert compiled == [True, False]
    assert "--compile on a CPU" not in capsys.readouterr().out
    assert main([*common, "--resume", "--max-iters", "6", "--compile"]) == 0
    assert compiled == [True, False, True]


def test_resume_from_a_run_whose_newest_description_is_damaged_names_the_step_before(tmp_path, capsys):
    import minigpt
    from minigpt.data import TextData
    text = tmp_path / "t.txt"
    text.write_text(minigpt.load_shakespeare()[:20_000], encoding="utf-8")
    run_dir = tmp_path / "run"
    data = TextData.from_text(text.read_text(encoding="utf-8"))
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=16, n_embd=16,
                                              n_head=2, n_layer=1))
    minigpt.train(model, data, minigpt.TrainConfig(max_iters=4, batch_size=2, eval_interval=2, eval_iters=1,
                                                   checkpoint_interval=2, device="cpu"),
                  out_dir=run_dir, progress=False)
    (run_dir / "step-000004" / "minigpt.json").write_text('{"format": "minigpt-checkpoint", "config": {}',
                                                         encoding="utf-8")
    assert main(["train", "--resume", "--out", str(run_dir), "--text", str(text), "--max-iters", "6",
                 "--no-progress"]) == 2
    one_line_error(capsys, "is corrupted or truncated", "previous checkpoint 'step-000002' is complete",
                   "echo step-000002 >")


def test_resume_with_a_vocabulary_size_says_to_leave_it_out_at_once(tiny_run, capsys):
    # it first said "add --tokenizer bpe", and then, with it, "leave them out with --resume"
    out, _ = tiny_run
    assert main(["train", "--resume", "--out", str(out), "--vocab-size", "600", "--max-iters", "9"]) == 2
    one_line_error(capsys, "a resumed run keeps the tokenizer", "leave them out with --resume")


def test_a_lora_fine_tune_checks_its_out_folder_before_training(tmp_path, capsys, monkeypatch):
    # an --out that could not take the adapters was found after training: the fine-tune was lost
    from minigpt.errors import CheckpointError
    trained = []
    monkeypatch.setattr(sys.modules["minigpt.train"], "train", lambda *a, **k: trained.append(1))

    def refuse(directory, need_bytes=0):
        raise CheckpointError(f"cannot write into the output folder {str(directory)!r}: Read-only file system")
    monkeypatch.setattr("minigpt.run_folder.check_output_folder", refuse)
    assert main(["train", "--init-from", "pretrained", "--lora-rank", "2", "--out", str(tmp_path / "a"),
                 "--max-iters", "1", "--no-progress"]) == 2
    one_line_error(capsys, "cannot write into the output folder")
    assert trained == []


def test_training_memory_counts_one_micro_batch_on_one_process():
    """Gradient accumulation and data parallelism shrink what one forward pass holds: the
    activations are those of --micro-batch-size sequences, or of batch_size / world_size."""
    from conftest import tiny_config
    from minigpt import TrainConfig
    config = tiny_config()
    state, whole = cli_module.training_memory(config, TrainConfig(batch_size=64))
    assert cli_module.training_memory(config, TrainConfig(batch_size=64, micro_batch_size=4)) == \
        cli_module.training_memory(config, TrainConfig(batch_size=4)) == (state, whole // 16)
    assert cli_module.training_memory(config, TrainConfig(batch_size=64), world_size=4) == (state, whole // 4)


def test_bench_hands_threads_and_an_absolute_json_path_to_the_child(tmp_path, monkeypatch):
    """The child runs in the checkout: --threads goes along, and a relative --json is made
    absolute first (it would otherwise land in the checkout, not where the user is)."""
    from pathlib import Path
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda command, cwd=None: calls.append((command, cwd)) or 0)
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "quick", "--device", "cpu", "--threads", "1", "--json", "out.json"]) == 0
    (command, cwd), = calls
    assert command[1:] == ["-m", "bench", "quick", "--device", "cpu", "--threads", "1",
                           "--json", str((tmp_path / "out.json").resolve())]
    assert Path(cwd) == Path(cli_module.__file__).resolve().parent.parent


def test_export_keeps_the_runs_summary_and_drops_its_history(tiny_run, tmp_path, capsys):
    import json
    out, _ = tiny_run
    assert main(["export", str(out), str(tmp_path / "exp")]) == 0
    meta = json.loads((tmp_path / "exp" / "minigpt.json").read_text(encoding="utf-8"))
    assert meta["train_state"]["summary"] == json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert meta["train_state"]["summary"]["preset"] == "tiny"
    assert "history" not in meta["train_state"] and "optimizer_param_groups" not in meta["train_state"]


def test_the_web_exports_own_module_entry_point_gives_one_line_errors(tmp_path):
    """`python -m minigpt.web.export` (once its docstring's usage) bypassed the CLI's handler: a
    user's mistake printed a traceback and exited 1. (Python warns first that the module was
    imported by its package: the docstring now shows `python -m minigpt export-web`.)"""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "minigpt.web.export", "--out", ""], capture_output=True,
                         text=True, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.splitlines()[-1].startswith("error: --out is empty"), out.stderr


def test_a_web_export_stopped_by_ctrl_c_leaves_no_temporary_file(tmp_path, monkeypatch):
    from conftest import tiny_model
    from minigpt import CharTokenizer
    from minigpt.web import export as web_export
    model = tiny_model()
    tokenizer = CharTokenizer([chr(ord("a") + i) for i in range(model.config.vocab_size)])
    monkeypatch.setattr(web_export.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        web_export.export_web(model, tokenizer, tmp_path / "m.js", quantize="float32")
    assert list(tmp_path.iterdir()) == []
