"""Faults: kills and Ctrl-C at any moment, broken or hostile run folders, full disks, a second
writer. Each test reproduces the fault and asserts that nothing is lost and nothing is
silently wrong.

Training runs here are forked from the test process (torch is already imported, so a child
costs milliseconds, not a Python start-up) on a model a few thousand parameters big.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import traceback
from pathlib import Path

import pytest
import torch

import importlib

from minigpt import (CheckpointError, GPTConfig, MiniGPT, TextData, TrainConfig, TrainingDivergedError,
                     load_checkpoint, load_model, save_checkpoint, train)
from minigpt.run_folder import run_lock
from minigpt.errors import MiniGPTError, UsageError
from minigpt.train import ResumeWarning, make_optimizer

# (`import minigpt.train as m` would give the function minigpt.train, which shadows the module)
train_module = importlib.import_module("minigpt.train")
checkpoint_module = importlib.import_module("minigpt.checkpoint")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forks training processes (POSIX)")

# 16 steps, a checkpoint every 4, dropout on (so the global RNG state must resume too)
CFG = dict(max_iters=16, batch_size=4, learning_rate=3e-3, warmup_iters=3, eval_interval=8,
           eval_iters=1, checkpoint_interval=4, device="cpu")


@pytest.fixture(scope="module")
def data(shakespeare):
    data = TextData.from_text(shakespeare[:5000])
    # the first training call of a process imports parts of torch lazily (seconds); pay it once
    # here, so that the forked children do not each pay it again
    train(new_model(data), data, TrainConfig(**{**CFG, "max_iters": 1}), progress=False)
    return data


def new_model(data, seed=0):
    torch.manual_seed(seed)
    return MiniGPT(GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=8, n_embd=16,
                             n_head=2, n_layer=1, dropout=0.1))


def run_in_child(body) -> int:
    """Run body() in a forked process; return its exit code (or -signal if a signal killed it)."""
    pid = os.fork()
    if pid == 0:                                  # the child: never return into pytest
        code = 1
        try:
            body()
            code = 0
        except KeyboardInterrupt:
            code = 130
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def signal_self_on_call(module, name, sig, on_call, after=False):
    """Replace module.name by a wrapper that sends `sig` to this process on its on_call-th call
    (before the real call, or just after it)."""
    real = getattr(module, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == on_call and not after:
            os.kill(os.getpid(), sig)
        result = real(*args, **kwargs)
        if calls["n"] == on_call and after:
            os.kill(os.getpid(), sig)
        return result
    setattr(module, name, wrapper)


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Ctrl-C with its usual meaning in this process and the children it forks, whatever the
    test run inherited: a job started in the background (as CI may be) inherits SIGINT ignored,
    and train() then leaves it ignored, like Python does."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def train_in_child(data, out, kill=None, cfg=CFG) -> int:
    """`train(..., resume=True)` in a child, with an optional kill injected (see the plan)."""
    def body():
        if kill is not None:
            kind, sig, *where = kill
            if kind == "step":                    # inside a step, after its backward pass
                signal_self_on_call(train_module, "_clip_and_measure", sig, where[0])
            elif kind == "save":                  # inside a checkpoint write
                name, on_call, after = where
                target = os if name == "replace" else checkpoint_module
                signal_self_on_call(target, name, sig, on_call, after)
            elif kind == "time":
                threading.Timer(where[0], os.kill, (os.getpid(), sig)).start()
        train(new_model(data), data, TrainConfig(**cfg), out, resume=True, progress=False)
    return run_in_child(body)


def final_state(out):
    ckpt = load_checkpoint(out, with_trainer=True)
    evals = [{k: v for k, v in e.items() if k not in ("elapsed", "step_seconds")}
             for e in ckpt.train_state["history"]["eval"]]
    return ckpt, evals


def assert_same_run(a, b, steps=CFG["max_iters"]):
    (ca, ea), (cb, eb) = a, b
    assert ca.train_state["step"] == cb.train_state["step"] == steps
    assert ca.train_state["history"]["loss"] == cb.train_state["history"]["loss"]
    assert ea == eb
    for name, t in ca.model.state_dict().items():
        assert torch.equal(t, cb.model.state_dict()[name]), name
    assert ca.trainer_tensors.keys() == cb.trainer_tensors.keys()
    for name, t in ca.trainer_tensors.items():     # AdamW moments and every RNG state
        assert torch.equal(t, cb.trainer_tensors[name]), name


def kill_plan(seed=0):
    """SIGKILL and SIGINT at random steps, inside every stage of a checkpoint write, and at
    random moments. Drawn from a seeded generator: the same plan every run."""
    rng = random.Random(seed)
    stages = [("save_file", False), ("save_file", True), ("_write_json", False), ("_write_json", True),
              ("fsync_path", False), ("replace", False), ("replace", True)]
    first = [("save", signal.SIGKILL, "save_file", 1, True)]    # inside the very first checkpoint write
    placed, timed = [], []
    for sig in (signal.SIGKILL, signal.SIGINT):
        for _ in range(3):
            placed.append(("step", sig, rng.randint(1, 6)))
        for name, after in rng.sample(stages, 2):
            placed.append(("save", sig, name, 1, after))
        timed.append(("time", sig, rng.uniform(0.0, 0.3)))
    rng.shuffle(placed)
    # Kills at a moment in time come last: on a fast idle machine the whole remaining run can
    # finish before the timer fires, and every kill planned after it would find nothing to do.
    return first + placed + timed


def test_kills_and_ctrl_c_at_random_points_then_resume_are_bit_exact(data, tmp_path):
    # 40 steps: long enough that the planned kills land before the run is complete (each
    # Ctrl-C saves its progress; a step kill near the end could otherwise find the run done)
    cfg = dict(CFG, max_iters=40)
    reference = tmp_path / "reference"
    assert train_in_child(data, reference, cfg=cfg) == 0
    out = tmp_path / "killed"
    outcomes = []
    for kill in kill_plan():
        before = load_checkpoint(out).train_state["step"] if (out / "latest").exists() else 0
        code = train_in_child(data, out, kill, cfg=cfg)
        after = load_checkpoint(out).train_state["step"] if (out / "latest").exists() else 0
        outcomes.append((kill[0], kill[1], code))
        if kill[1] == signal.SIGKILL:
            assert code in (-signal.SIGKILL, 0), (kill, code)
        else:
            assert code in (130, 0), (kill, code)
        if kill[0] == "step" and kill[1] == signal.SIGINT and code == 130:
            # Ctrl-C during the k-th step of this process: that step finishes, training stops
            # at the boundary after it and saves that step
            assert after == min(before + kill[2], cfg["max_iters"]), (kill, before, after)
    landed = [code in (-signal.SIGKILL, 130) for kind, _, code in outcomes if kind != "time"]
    assert all(landed), str(outcomes)          # every kill at a planned step or write landed
    assert train_in_child(data, out, cfg=cfg) == 0     # finish whatever is left
    assert_same_run(final_state(out), final_state(reference), cfg["max_iters"])
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    assert leftovers == []                     # the temp folders of killed writes were removed


def test_ctrl_c_in_process_saves_at_the_step_boundary(data, tmp_path, monkeypatch, capsys):
    """The in-process path a notebook takes: SIGINT during step 6 (the 7th, counting from 0) ->
    that step completes, step 7 is saved, KeyboardInterrupt; resuming gives the uninterrupted
    run's numbers exactly."""
    reference = train(new_model(data), data, TrainConfig(**CFG), tmp_path / "ref", progress=False)
    monkeypatch.setattr(train_module, "_clip_and_measure", train_module._clip_and_measure)
    signal_self_on_call(train_module, "_clip_and_measure", signal.SIGINT, 7)
    with pytest.raises(KeyboardInterrupt):
        train(new_model(data), data, TrainConfig(**CFG), tmp_path / "run", progress=False)
    assert "interrupted: saved step 7 to" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "run").train_state["step"] == 7
    monkeypatch.undo()
    resumed = train(new_model(data, seed=5), data, TrainConfig(**CFG), tmp_path / "run", resume=True,
                    progress=False)
    assert resumed.history["loss"] == reference.history["loss"]
    for name, t in reference.model.state_dict().items():
        assert torch.equal(t, resumed.model.state_dict()[name]), name
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler    # handler restored


def test_sigterm_saves_at_the_step_boundary_like_ctrl_c(data, tmp_path, monkeypatch, capsys):
    """`kill`, a scheduler pre-empting the job or a notebook server stopping the kernel send
    SIGTERM: it once ended the process at once, losing every step since the last checkpoint."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        monkeypatch.setattr(train_module, "_clip_and_measure", train_module._clip_and_measure)
        signal_self_on_call(train_module, "_clip_and_measure", signal.SIGTERM, 7)
        with pytest.raises(KeyboardInterrupt):
            train(new_model(data), data, TrainConfig(**CFG), tmp_path / "run", progress=False)
        out = capsys.readouterr().out
        assert "SIGTERM: stopping after this step" in out and "interrupted: saved step 7 to" in out
        assert load_checkpoint(tmp_path / "run").train_state["step"] == 7
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL            # handler restored
        # a SIGTERM handler of the caller's own is left in place
        mine = lambda signum, frame: None                                    # noqa: E731
        signal.signal(signal.SIGTERM, mine)
        seen, real = [], train_module._clip_and_measure

        def during_a_step(*args, **kwargs):
            seen.append(signal.getsignal(signal.SIGTERM))
            return real(*args, **kwargs)
        monkeypatch.setattr(train_module, "_clip_and_measure", during_a_step)
        train(new_model(data), data, TrainConfig(**dict(CFG, max_iters=2)), tmp_path / "other", progress=False)
        assert seen and all(h is mine for h in seen)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_closed_terminal_saves_at_the_step_boundary(data, tmp_path, monkeypatch):
    """SIGHUP (the terminal of a run was closed) ended the run at once, like SIGTERM once did;
    it now saves at the step boundary, with the output sent nowhere (the terminal is gone)."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    stdout, stderr = sys.stdout, sys.stderr
    try:
        monkeypatch.setattr(train_module, "_clip_and_measure", train_module._clip_and_measure)
        signal_self_on_call(train_module, "_clip_and_measure", signal.SIGHUP, 7)
        with pytest.raises(KeyboardInterrupt):
            train(new_model(data), data, TrainConfig(**CFG), tmp_path / "run", progress=False)
        assert sys.stdout.name == os.devnull and sys.stderr is sys.stdout
        assert load_checkpoint(tmp_path / "run").train_state["step"] == 7
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL              # handler restored
    finally:
        if sys.stdout is not stdout:
            sys.stdout.close()
        sys.stdout, sys.stderr = stdout, stderr
        signal.signal(signal.SIGHUP, previous)


# ------------------------------------------------------------------ a second writer
def hold_lock_in_child(out, ready_r, ready_w, release_r):
    pid = os.fork()
    if pid == 0:
        try:
            with run_lock(out):
                os.write(ready_w, b"1")
                os.read(release_r, 1)             # hold until the parent says so (or is killed)
        finally:
            os._exit(0)
    os.read(ready_r, 1)
    return pid


def test_a_second_writer_is_refused_and_a_killed_one_does_not_block(data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    ready_r, ready_w = os.pipe()
    release_r, release_w = os.pipe()
    holder = hold_lock_in_child(out, ready_r, ready_w, release_r)
    with pytest.raises(CheckpointError, match=rf"is in use by another training run \(PID {holder} on "
                                              r".*\); wait for it to finish, or choose another"):
        train(new_model(data), data, TrainConfig(**CFG), out, progress=False)
    assert not (out / "latest").exists() and not list(out.glob("step-*"))
    os.kill(holder, signal.SIGKILL)               # a crash: the kernel drops its flock
    os.waitpid(holder, 0)
    result = train(new_model(data), data, TrainConfig(**{**CFG, "max_iters": 4}), out, progress=False)
    assert result.steps == 4
    for fd in (ready_r, ready_w, release_r, release_w):
        os.close(fd)


# --------------------------------------------------------------------- --out checks
def test_an_output_path_that_is_a_file_fails_before_the_first_step(data, tmp_path):
    path = tmp_path / "results.txt"
    path.write_text("mine")
    with pytest.raises(CheckpointError, match=r"results.txt' is an existing file; choose a folder path"):
        train(new_model(data), data, TrainConfig(**CFG), path, progress=False)
    assert path.read_text() == "mine"


def test_no_room_for_the_checkpoints_fails_before_the_first_step(data, tmp_path, monkeypatch):
    steps = []
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage",
                        lambda p: type("Usage", (), {"free": 1000})())
    with pytest.raises(CheckpointError, match=r"has 0.0 MB free but this run's checkpoints need about "
                                              r"\d+\.\d MB; free some space or choose another --out"):
        train(new_model(data), data, TrainConfig(**CFG), tmp_path / "run", progress=False,
              callback=steps.append)
    assert steps == []                            # not even the step-0 evaluation ran


def test_an_unwritable_output_folder_fails_before_the_first_step(data, tmp_path, monkeypatch):
    real_open = open

    def deny(path, *args, **kwargs):
        if ".write-test-" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(CheckpointError, match=r"cannot write into the output folder .*: Permission denied; "
                                              r"make the folder writable or choose another"):
        train(new_model(data), data, TrainConfig(**CFG), tmp_path / "run", progress=False)


# ------------------------------------------------------------- failing writes
@pytest.mark.parametrize("error, reason", [
    (checkpoint_module.SafetensorError('Error while serializing: IoError(Os { code: 28, kind: '
                                       'StorageFull, message: "No space left on device" })'),
     r"No space left on device; the earlier checkpoint 'step-000004' is intact\. To fix: free some "
     r"disk space"),
    (PermissionError(13, "Permission denied"), r"Permission denied; the earlier checkpoint 'step-000004' "
                                               r"is intact\. To fix: make the folder writable"),
], ids=["disk_full", "permission"])
def test_a_failing_checkpoint_write_keeps_the_last_one_and_leaves_no_temp_folder(data, tmp_path, monkeypatch,
                                                                                error, reason):
    out = tmp_path / "run"
    real = checkpoint_module.save_file
    calls = {"n": 0}

    def fail_second_checkpoint(tensors, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:                       # model + trainer of step 4, then step 8's model
            raise error
        return real(tensors, path, *args, **kwargs)
    monkeypatch.setattr(checkpoint_module, "save_file", fail_second_checkpoint)
    with pytest.raises(CheckpointError, match=r"could not write checkpoint 'step-000008' in .*: " + reason):
        train(new_model(data), data, TrainConfig(**CFG), out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "latest", "step-000004"]
    monkeypatch.undo()
    assert train(new_model(data), data, TrainConfig(**CFG), out, resume=True, progress=False).steps == 16


# ------------------------------------------------------------ resuming leftovers
def test_resume_after_a_kill_in_the_first_checkpoint_write(data, tmp_path):
    """Only a half-written hidden temp folder exists: resume starts afresh and removes it."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".step-000004.tmp-4242").mkdir()
    (out / ".step-000004.tmp-4242" / "model.safetensors").write_bytes(b"\0" * 10)
    (out / ".latest.tmp-4242").write_text("step-000004\n")
    (out / ".summary.json.tmp-4242").write_text("{")              # the CLI's summary, cut short
    result = train(new_model(data), data, TrainConfig(**{**CFG, "max_iters": 4}), out, resume=True,
                   progress=False)
    assert result.steps == 4
    assert sorted(p.name for p in out.iterdir()) == [".lock", "latest", "step-000004"]


def test_resume_after_a_kill_between_the_first_rename_and_latest(data, tmp_path):
    """A complete step folder but no `latest` yet: resume continues from that step folder."""
    out = tmp_path / "run"
    train(new_model(data), data, TrainConfig(**CFG), out, stop_at=4, progress=False)
    (out / "latest").unlink()
    with pytest.raises(UsageError, match="already holds a checkpoint"):
        train(new_model(data), data, TrainConfig(**CFG), out, progress=False)
    result = train(new_model(data), data, TrainConfig(**CFG), out, resume=True, stop_at=8, progress=False)
    assert result.history["step"][0] == 1 and result.steps == 8
    assert load_checkpoint(out).train_state["step"] == 8


# ------------------------------------------------------------------- divergence
def test_a_bad_update_is_never_saved_as_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    """The update of step 8 blows the weights up (finite, |w| ~ 1e30) and the next loss is inf.
    The step-8 checkpoint would hold those weights: it must not be written, and the message
    must name step 4, from which resuming trains normally."""
    model = new_model(data)
    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def poisoned_step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 8:
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1e30)
        return result
    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned_step)
    with pytest.raises(TrainingDivergedError, match=r"the (loss|gradient norm) became (nan|inf) at step 8 "
                                                    r".*last good checkpoint is '.*step-000004'"):
        train(model, data, TrainConfig(**CFG), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "latest").read_text().strip() == "step-000004"
    assert not (tmp_path / "run" / "step-000008").exists()
    monkeypatch.undo()
    assert train(new_model(data), data, TrainConfig(**CFG), tmp_path / "run", resume=True,
                 progress=False).steps == 16


def test_non_finite_gradients_stop_before_the_update(data, tmp_path, monkeypatch):
    model = new_model(data)
    real_backward = torch.Tensor.backward
    calls = {"n": 0}

    def backward(self, *args, **kwargs):
        real_backward(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 6:
            model.wte.weight.grad[0, 0] = float("inf")
    monkeypatch.setattr(torch.Tensor, "backward", backward)
    cfg = TrainConfig(**{**CFG, "grad_clip": 0.0})
    with pytest.raises(TrainingDivergedError, match=r"the gradient norm became inf at step 5 .*step-000004"):
        train(model, data, cfg, tmp_path / "run", progress=False)
    assert torch.isfinite(model.wte.weight).all()          # the bad gradient was never applied


# ----------------------------------------------------------------------- resume
def test_resume_with_another_vocabulary_is_refused_naming_the_characters(data, tmp_path, shakespeare):
    out = tmp_path / "run"
    train(new_model(data), data, TrainConfig(**CFG), out, stop_at=4, progress=False)
    # the same number of characters, one swapped: ids would silently mean other characters
    swapped = shakespeare[:5000].replace("z", "#")
    other = TextData.from_text(swapped)
    assert other.tokenizer.vocab_size == data.tokenizer.vocab_size
    with pytest.raises(CheckpointError, match=r"vocabulary differs .*only in the checkpoint: 'z'; only in "
                                              r"this text: '#'\), so ids would mean other characters"):
        train(new_model(other), other, TrainConfig(**CFG), out, resume=True, progress=False)


def test_a_corrupted_newest_checkpoint_names_the_previous_one_and_how_to_resume_from_it(data, tmp_path):
    import shlex
    import subprocess
    out = tmp_path / "run"
    train(new_model(data), data, TrainConfig(**CFG), out, stop_at=8, progress=False)     # step-4, step-8
    weights = out / "step-000008" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])                                    # a disk error
    with pytest.raises(CheckpointError) as info:
        train(new_model(data), data, TrainConfig(**CFG), out, resume=True, progress=False)
    message = str(info.value)
    assert "corrupted or truncated" in message and "\n" not in message
    assert "previous checkpoint 'step-000004' is complete" in message
    command = message.split("run `")[1].split("`")[0]
    assert command == f"echo step-000004 > {shlex.quote(str(out / 'latest'))}"
    assert message.count("previous checkpoint") == 1                  # the resume hint alone
    # loading the run (sample, export, load_model) names the folder to load instead
    with pytest.raises(CheckpointError) as info:
        load_model(out)
    assert str(info.value).endswith(f"The run's previous checkpoint {str(out / 'step-000004')!r} is complete: "
                                    "load that folder instead.")
    assert load_model(out / "step-000004")[0] is not None
    with pytest.raises(CheckpointError) as info:                      # a step folder has nothing to fall back on
        load_model(out / "step-000008")
    assert "previous checkpoint" not in str(info.value)
    subprocess.run(command, shell=True, check=True)                   # what the message says to do
    result = train(new_model(data), data, TrainConfig(**CFG), out, resume=True, progress=False)
    assert result.steps == 16


def test_resume_with_other_settings_warns(data, tmp_path):
    out = tmp_path / "run"
    train(new_model(data), data, TrainConfig(**CFG), out, stop_at=4, progress=False)
    cfg = TrainConfig(**{**CFG, "learning_rate": 1e-3, "batch_size": 8})
    with pytest.warns(ResumeWarning, match=r"batch_size 4 -> 8; learning_rate 0.003 -> 0.001\): the run "
                                           r"continues, but will not match an uninterrupted run"):
        train(new_model(data), data, cfg, out, resume=True, stop_at=5, progress=False)


def test_resume_trains_with_the_new_optimizer_settings_it_warns_about(data, tmp_path, monkeypatch):
    # the warning says the new values are used: the optimizer must really use them, not the
    # checkpoint's saved betas and weight decay
    out = tmp_path / "run"
    train(new_model(data), data, TrainConfig(**CFG), out, stop_at=4, progress=False)
    made = []
    monkeypatch.setattr(train_module, "make_optimizer",
                        lambda *args: made.append(make_optimizer(*args)) or made[-1])
    cfg = TrainConfig(**{**CFG, "weight_decay": 0.0, "beta1": 0.5, "beta2": 0.9})
    with pytest.warns(ResumeWarning, match=r"weight_decay 0.1 -> 0.0; beta1 0.9 -> 0.5; beta2 0.99 -> 0.9"):
        train(new_model(data), data, cfg, out, resume=True, stop_at=5, progress=False)
    decay, no_decay = made[0].param_groups
    assert decay["betas"] == no_decay["betas"] == (0.5, 0.9)
    assert decay["weight_decay"] == no_decay["weight_decay"] == 0.0
    assert made[0].state[decay["params"][0]]["step"] == 5       # the saved moments went on (4 + 1 steps)


def test_resume_from_an_export_is_refused(data, tmp_path):
    from minigpt import export_model
    model = new_model(data)
    export_model(model, data.tokenizer, tmp_path / "exported")
    for resume in (True, False):
        with pytest.raises(UsageError, match="is a single checkpoint folder .* not a run folder"):
            train(new_model(data), data, TrainConfig(**CFG), tmp_path / "exported", resume=resume,
                  progress=False)
        with pytest.raises(UsageError, match="is a single checkpoint folder"):
            train(new_model(data), data, TrainConfig(**CFG), tmp_path / "exported", resume=resume,
                  progress=False)
    assert sorted(p.name for p in (tmp_path / "exported").iterdir()) == ["minigpt.json", "model.safetensors"]


# ------------------------------------------------------------- hostile run folders
@pytest.fixture
def run_folder(data, tmp_path):
    save_checkpoint(tmp_path / "run", new_model(data), data.tokenizer, step=3)
    outside = tmp_path / "elsewhere" / "step-000009"
    save_checkpoint(tmp_path / "elsewhere", new_model(data, seed=1), data.tokenizer, step=9)
    return tmp_path / "run", outside


@pytest.mark.parametrize("content", [
    "ABSOLUTE", "../elsewhere/step-000009", "..", "step-000003/../../elsewhere/step-000009",
    "/etc", "", "step-000003\nstep-000009",
])
def test_latest_never_leads_outside_the_run_folder(run_folder, content):
    run, outside = run_folder
    (run / "latest").write_text(str(outside) if content == "ABSOLUTE" else content)
    with pytest.raises(CheckpointError, match=r"latest' must hold the name of a step folder of this run"):
        load_checkpoint(run)


def test_latest_naming_a_link_out_of_the_run_is_refused(run_folder):
    run, outside = run_folder
    (run / "step-000010").symlink_to(outside, target_is_directory=True)
    (run / "latest").write_text("step-000010\n")
    with pytest.raises(CheckpointError, match=r"points to 'step-000010', which is missing or incomplete"):
        load_checkpoint(run)


def test_a_pickle_as_latest_is_refused(run_folder):
    import pickle
    run, _ = run_folder
    (run / "latest").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match=r"latest' must hold the name of a step folder .*binary data"):
        load_checkpoint(run)


@pytest.mark.parametrize("key, value", [
    ("files", ["model.safetensors"]), ("files", {"model.safetensors": 5}), ("files", {"x.bin": "ab"}),
    ("config", "n_layer=2"), ("tokenizer", None), ("train_state", [1]), ("step", "3"), ("step", True),
    ("optimizer_param_groups", {"lr": 1}), ("version", "1"),
])
def test_entries_of_the_wrong_type_in_minigpt_json_are_named(run_folder, key, value):
    run, _ = run_folder
    path = run / "step-000003" / "minigpt.json"
    meta = json.loads(path.read_text())
    meta[key] = value
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=rf"is invalid: '?{key}|invalid format version"):
        load_checkpoint(run)


# ----------------------------------------------------------------------- export
def test_export_never_writes_into_a_training_checkpoint(data, tmp_path):
    from minigpt import export_model
    out = tmp_path / "run"
    train(new_model(data), data, TrainConfig(**CFG), out, stop_at=4, progress=False)
    step = out / "step-000004"
    before = {p.name: p.read_bytes() for p in step.iterdir()}
    for target in (step, out):
        for overwrite in (False, True):
            with pytest.raises(CheckpointError, match=r"holds a training checkpoint or run; export never "
                                                      r"writes into one"):
                export_model(new_model(data), data.tokenizer, target, torch.float16, overwrite=overwrite)
    assert {p.name: p.read_bytes() for p in step.iterdir()} == before
    assert train(new_model(data), data, TrainConfig(**CFG), out, resume=True, stop_at=5,
                 progress=False).steps == 5


def test_export_into_existing_folders_and_files(data, tmp_path):
    from minigpt import export_model, load_model
    model = new_model(data)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match=r"file' is an existing file; export writes a folder"):
        export_model(model, data.tokenizer, tmp_path / "file")
    (tmp_path / "empty").mkdir()
    export_model(model, data.tokenizer, tmp_path / "empty")              # an empty folder is fine
    with pytest.raises(CheckpointError, match=r"already exists and is not empty.*--force"):
        export_model(new_model(data, seed=1), data.tokenizer, tmp_path / "empty")
    assert torch.equal(load_model(tmp_path / "empty")[0].wte.weight, model.wte.weight)
    other = new_model(data, seed=1)
    export_model(other, data.tokenizer, tmp_path / "empty", overwrite=True)
    assert torch.equal(load_model(tmp_path / "empty")[0].wte.weight, other.wte.weight)
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["minigpt.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]     # no staging left over


# ---------------------------------------------------------- permission errors
def as_unprivileged(fn):
    """Run fn() where file permissions apply (root ignores them): in a forked child that drops to
    the `nobody` user when the tests run as root. Returns 'ok' or the error's class and text."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            fn()
            answer = "ok"
        except BaseException as err:                        # noqa: BLE001 - report everything
            answer = f"{type(err).__name__}: {err}"
        os.write(w, answer.encode("utf-8", "replace")[:4000])
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 4096):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.fixture
def shared_run(data):
    """A run folder (with trainer state) in a fresh world-readable temp folder."""
    import shutil
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="minigpt-perm-"))
    base.chmod(0o755)
    train(new_model(data), data, TrainConfig(**{**CFG, "max_iters": 4}), base / "run", progress=False)
    for path in [base / "run", *(base / "run").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield base
    for path in [base, *base.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(base)


PERMISSION_CASES = {
    "run folder": ("run", "load"), "latest": ("run/latest", "load"),
    "step folder": ("run/step-000004", "load"), "minigpt.json": ("run/step-000004/minigpt.json", "load"),
    "model.safetensors": ("run/step-000004/model.safetensors", "load"),
    "trainer.safetensors": ("run/step-000004/trainer.safetensors", "resume"),
    "output folder (resume)": ("run", "resume"), "output folder (new run)": ("new", "train"),
    "export target": ("exports", "export"),
}


@pytest.mark.parametrize("case", PERMISSION_CASES)
def test_permission_errors_are_one_clear_error(data, shared_run, case):
    target, action = PERMISSION_CASES[case]
    path = shared_run / target
    path.mkdir(exist_ok=True) if action in ("train", "export") else None
    if action == "resume" and case.startswith("output"):
        path.chmod(0o555)                                   # readable, not writable
    else:
        path.chmod(0o000 if not path.is_dir() or action != "export" else 0o555)

    def attempt():
        from minigpt import export_model
        if action == "load":
            load_checkpoint(shared_run / "run", with_trainer=True)
        elif action == "resume":
            train(new_model(data), data, TrainConfig(**CFG), shared_run / "run", resume=True, progress=False)
        elif action == "train":
            train(new_model(data), data, TrainConfig(**CFG), path / "sub", progress=False)
        else:
            export_model(new_model(data), data.tokenizer, path / "model")
    answer = as_unprivileged(attempt)
    assert answer.startswith("CheckpointError: "), answer
    assert "Permission denied" in answer and "\n" not in answer, answer


def test_user_errors_share_one_base_class():
    from minigpt import ConfigError, UnknownCharacterError
    from minigpt.data import DataError
    for err in (CheckpointError, TrainingDivergedError, ConfigError, UnknownCharacterError, DataError,
                UsageError):
        assert issubclass(err, MiniGPTError), err
    assert not issubclass(TypeError, MiniGPTError)


def test_an_ignored_ctrl_c_stays_ignored(data, tmp_path):
    """A run started with SIGINT ignored (nohup, a background job) is not made interruptible."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    seen = []
    original = train_module._clip_and_measure

    def during_a_step(*args, **kwargs):
        seen.append(signal.getsignal(signal.SIGINT))
        return original(*args, **kwargs)
    train_module._clip_and_measure = during_a_step
    try:
        train(new_model(data), data, TrainConfig(**dict(CFG, max_iters=2)), tmp_path / "run", progress=False)
    finally:
        train_module._clip_and_measure = original
    assert seen and all(h is signal.SIG_IGN for h in seen)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
