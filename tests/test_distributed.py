"""Data-parallel training on the CPU with gloo: two processes must train exactly what one
process trains with the same global batch, checkpoints must move between 1 and 2 processes,
and a rank that dies must end the run, not hang it.

Float tolerance: the losses and the weights of the 2-process run agree with the 1-process
run to atol 1e-5 (rtol 0). They cannot be bit-equal: each rank computes the gradient of its
half of the batch, and DDP averages the halves, so float32 sums run in another order (and
matmuls over 4 rows round differently from matmuls over 8). That is a few ulps per step;
AdamW carries it into the weights, which after 10 steps differ by about 1e-6 (measured:
1.3e-6 for the weights, 1e-6 for the losses). A real mistake (ranks training on the same
rows, a wrong share, a missing average) moves the losses in the second or third decimal.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

import minigpt
from minigpt import cli
from minigpt import distributed
from minigpt.errors import UsageError

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this torch build has no gloo backend for torch.distributed")

TOL = dict(rtol=0.0, atol=1e-5)           # why 1e-5: see the module docstring
ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD_S = 180      # only so that a broken test cannot hang CI; never reached when working

# A training script for the library API (the CLI has no stop_at): the same tiny model and
# data as the in-process runs below. argv: a JSON list of jobs, each {out, stop_at, resume};
# with "kill_rank_at": [rank, forward_calls], that rank SIGKILLs itself on that forward call.
WORKER = r'''
import json, os, signal, sys
import torch
import minigpt
from minigpt import GPTConfig, MiniGPT, TextData, TrainConfig, train, set_seed
spec = json.loads(sys.argv[1])
data = TextData.from_text(minigpt.load_shakespeare()[:20_000])
for job in spec["jobs"]:
    set_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=data.tokenizer.vocab_size, **spec["model"]))
    if "kill_rank_at" in spec and int(os.environ["RANK"]) == spec["kill_rank_at"][0]:
        calls = []
        def die(module, args):
            calls.append(1)
            if len(calls) == spec["kill_rank_at"][1]:
                os.kill(os.getpid(), signal.SIGKILL)
        model.register_forward_pre_hook(die)
    train(model, data, TrainConfig(**spec["train"]), out_dir=job["out"], resume=job["resume"],
          stop_at=job["stop_at"], progress=False)
from minigpt import distributed
distributed.shutdown()
'''
MODEL = dict(block_size=16, n_embd=32, n_head=4, n_layer=2, dropout=0.0)
TRAIN = dict(max_iters=10, batch_size=8, learning_rate=3e-3, warmup_iters=2, eval_interval=5,
             eval_iters=2, checkpoint_interval=5, device="cpu")


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # start_new_session + killpg: a hung torchrun takes its worker processes with it
    proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd[:6])}... still running after {HANG_GUARD_S} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _torchrun(nproc: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    step = (run / "latest").read_text().strip()
    return load_file(run / step / "model.safetensors")


def _history(run: Path) -> dict:
    step = (run / "latest").read_text().strip()
    return json.loads((run / step / "minigpt.json").read_text())["train_state"]["history"]


def _assert_same_training(run: Path, reference: Path) -> None:
    history, expected = _history(run), _history(reference)
    assert history["step"] == expected["step"]
    torch.testing.assert_close(torch.tensor(history["loss"]), torch.tensor(expected["loss"]), **TOL)
    torch.testing.assert_close(torch.tensor([e["val"] for e in history["eval"]]),
                               torch.tensor([e["val"] for e in expected["eval"]]), **TOL)
    weights, expected_weights = _weights(run), _weights(reference)
    assert weights.keys() == expected_weights.keys()
    for name in weights:
        torch.testing.assert_close(weights[name], expected_weights[name], **TOL, msg=name)


def _train_here(out: Path, stop_at=None, resume=False) -> None:
    """The 1-process run, in this process: the same model, data and settings as WORKER."""
    data = minigpt.TextData.from_text(minigpt.load_shakespeare()[:20_000])
    minigpt.set_seed(0)
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=data.tokenizer.vocab_size, **MODEL))
    minigpt.train(model, data, minigpt.TrainConfig(**TRAIN), out_dir=out, resume=resume,
                  stop_at=stop_at, progress=False)


# ------------------------------------------------------------------- no processes
def test_single_process_world():
    assert distributed.world() == distributed.World(0, 1, 0)
    assert distributed.is_main() and not distributed.any_rank(False) and distributed.any_rank(True)


@pytest.mark.parametrize("batch, world, micro, message", [
    (10, 4, None, r"batch_size=10 does not split evenly over 4 processes; use a multiple of 4 \(e.g. 8 or 12\)"),
    (8, 2, 3, r"micro_batch_size=3 must divide the 4 rows each process gets .* one of \[1, 2, 4\]"),
    (8, 1, 0, r"micro_batch_size=0 must divide"),
    (8, 1, 2.0, r"micro_batch_size must be a positive integer or None"),
])
def test_uneven_batch_is_a_clear_error(batch, world, micro, message):
    with pytest.raises(UsageError, match=message):
        distributed.check_batch_split(batch, world, micro)


def test_gradient_accumulation_in_one_process(tmp_path):
    """micro_batch_size splits the batch into passes whose gradients add up to the batch's."""
    cfg = dict(TRAIN, max_iters=4)
    data = minigpt.TextData.from_text(minigpt.load_shakespeare()[:20_000])
    results = []
    for micro in (None, 2):
        minigpt.set_seed(0)
        model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=data.tokenizer.vocab_size, **MODEL))
        minigpt.train(model, data, minigpt.TrainConfig(**cfg, micro_batch_size=micro), progress=False)
        results.append(model.state_dict())
    for name in results[0]:
        torch.testing.assert_close(results[1][name], results[0][name], **TOL)


def test_micro_batches_give_the_whole_batchs_gradient_and_loss():
    """forward_backward with micro_batch_size=2 over 8 rows: four forward passes of two rows
    each, and the gradients and loss of one pass over all eight (the loss of each micro-batch
    divided by their number). Training alone would not show a wrong scale: clipping and AdamW
    hide it."""
    torch.manual_seed(0)
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=65, **MODEL))
    x, y = torch.randint(0, 65, (8, 16)), torch.randint(0, 65, (8, 16))
    whole = distributed.forward_backward(model, x, y)
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    rows = []
    model.register_forward_pre_hook(lambda module, args: rows.append(args[0].size(0)))
    micro = distributed.forward_backward(model, x, y, micro_batch_size=2)
    assert rows == [2, 2, 2, 2]
    torch.testing.assert_close(micro, whole, rtol=0, atol=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=0, atol=1e-6, msg=name)


# ------------------------------------------------------------------ two processes
def test_two_processes_train_like_one(tmp_path):
    """`torchrun --nproc_per_node=2 -m minigpt train` = `python -m minigpt train`, same flags.
    The 2-process run also splits each rank's 4 rows into micro-batches of 2."""
    text = tmp_path / "text.txt"
    text.write_text(minigpt.load_shakespeare()[:20_000], encoding="utf-8")
    flags = ["--preset", "tiny", "--text", str(text), "--max-iters", "10", "--eval-interval", "5",
             "--no-progress", "--sample-tokens", "0", "--device", "cpu"]
    ddp = _run(_torchrun(2, "-m", "minigpt", "train", *flags, "--out", str(tmp_path / "ddp"),
                         "--micro-batch-size", "2"), tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert cli.main(["train", *flags, "--out", str(tmp_path / "one")]) == 0
    _assert_same_training(tmp_path / "ddp", tmp_path / "one")
    # only rank 0 reports and writes: each evaluation printed once, one set of files
    assert ddp.stdout.count("step      5  train") == 1
    assert "data parallel: 2 processes (gloo), 4 of the 8 rows each per step" in ddp.stderr
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir())


def test_checkpoints_move_between_one_and_two_processes(tmp_path):
    """Stop at step 5 with one world size, resume to 10 with the other, both ways: the
    result is the uninterrupted 1-process run."""
    _train_here(tmp_path / "reference")
    _train_here(tmp_path / "one_then_two", stop_at=5)
    spec = {"model": MODEL, "train": TRAIN, "jobs": [
        {"out": str(tmp_path / "one_then_two"), "stop_at": None, "resume": True},
        {"out": str(tmp_path / "two_then_one"), "stop_at": 5, "resume": False}]}
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    ddp = _run(_torchrun(2, str(worker), json.dumps(spec)), tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert (tmp_path / "two_then_one" / "latest").read_text().strip() == "step-000005"
    _train_here(tmp_path / "two_then_one", resume=True)
    _assert_same_training(tmp_path / "one_then_two", tmp_path / "reference")
    _assert_same_training(tmp_path / "two_then_one", tmp_path / "reference")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_killed_rank_stops_the_run(tmp_path):
    """Rank 1 is SIGKILLed in its 8th forward pass (the 4th training step, after 4 in the first evaluation). Without torchrun's agent to clean up (the
    processes are started by hand, as on a cluster whose scheduler starts one per node),
    rank 0 must notice by itself, stop with a one-line message and a failing exit status.
    The process-group timeout is 300 s, so finishing inside HANG_GUARD_S means the lost
    connection was detected, not waited out."""
    spec = {"model": MODEL, "train": dict(TRAIN, max_iters=1000), "kill_rank_at": [1, 8],
            "jobs": [{"out": str(tmp_path / "run"), "stop_at": None, "resume": False}]}
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = dict(_env(), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2")
    procs = [subprocess.Popen([sys.executable, str(worker), json.dumps(spec)], cwd=tmp_path,
                              env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
             for r in (0, 1)]
    try:
        _, err0 = procs[0].communicate(timeout=HANG_GUARD_S)
        procs[1].communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
        pytest.fail(f"rank 0 did not stop within {HANG_GUARD_S} s after rank 1 was killed")
    assert procs[1].returncode == -signal.SIGKILL
    assert procs[0].returncode != 0
    assert "RankFailedError: rank 0 of 2 lost contact with the other processes" in err0, err0[-2000:]


# ------------------------------------------------------------------ one process, pretending to be a rank
def _as_rank(monkeypatch, rank: int, world_size: int = 2) -> None:
    """torchrun's variables for `rank` of `world_size` (no process group is joined)."""
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world_size))
    monkeypatch.setenv("LOCAL_RANK", str(rank % 2))


def test_world_reads_torchruns_variables(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")                # the second process of the second machine
    w = distributed.world()
    assert w == distributed.World(3, 4, 1) and not w.is_main and w.distributed
    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(UsageError, match=r"RANK='zero' is not an integer; torchrun sets it"):
        distributed.world()


def test_setup_checks_the_batch_split_in_one_process_too():
    with pytest.raises(UsageError, match=r"micro_batch_size=3 must divide the 10 rows"):
        distributed.setup(torch.device("cpu"), 10, micro_batch_size=3)
    assert distributed.setup(torch.device("cpu"), 10, micro_batch_size=5) == torch.device("cpu")


def test_setup_refuses_a_rank_without_its_own_gpu(monkeypatch):
    _as_rank(monkeypatch, 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)

    def no_group(*args, **kwargs):
        raise RuntimeError("setup should have refused before joining a process group")
    monkeypatch.setattr(dist, "init_process_group", no_group)
    with pytest.raises(UsageError, match=r"rank 1 wants GPU 1 but this machine has 1; use --nproc_per_node"):
        distributed.setup(torch.device("cuda"), 8)


def test_only_rank_0_takes_the_folder_lock_and_prints(monkeypatch):
    import contextlib
    import io
    lock = contextlib.nullcontext("lock")
    assert distributed.main_only(lock) is lock
    screen = io.StringIO()
    monkeypatch.setattr(sys, "stdout", screen)
    distributed.quiet_other_ranks()
    assert sys.stdout is screen                         # one process: rank 0 prints
    _as_rank(monkeypatch, 1)
    assert distributed.main_only(lock) is not lock
    distributed.quiet_other_ranks()
    try:
        assert sys.stdout is not screen and sys.stdout.name == os.devnull
    finally:
        sys.stdout.close()


def test_any_rank_is_true_when_another_rank_says_true(monkeypatch):
    # the other rank's flag is True: what its all-reduce with op would give (gloo, faked)
    def all_reduce(tensor, op=dist.ReduceOp.SUM):
        other = torch.ones_like(tensor)
        combine = {dist.ReduceOp.MAX: torch.maximum, dist.ReduceOp.MIN: torch.minimum,
                   dist.ReduceOp.SUM: torch.add}
        tensor.copy_(combine[op](tensor, other))
    _as_rank(monkeypatch, 0)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "gloo")
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    assert distributed.any_rank(False) is True and distributed.any_rank(True) is True


def test_rank_1_trains_on_the_second_share_and_logs_the_mean_of_both(monkeypatch):
    """Rank 1 of 2 takes rows 4..7 of the global batch of 8; its logged loss is the mean of the
    two ranks' losses (the other rank's, faked, is 1.0)."""
    torch.manual_seed(0)
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=65, **MODEL))
    x, y = torch.randint(0, 65, (8, 16)), torch.randint(0, 65, (8, 16))
    _, own_loss = model(x[4:], y[4:])
    own_loss.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    _as_rank(monkeypatch, 1)
    monkeypatch.setattr(dist, "all_reduce", lambda tensor, op=dist.ReduceOp.SUM: tensor.add_(1.0))
    loss = distributed.forward_backward(model, x, y)
    torch.testing.assert_close(loss, (own_loss.detach() + 1.0) / 2, rtol=0, atol=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=0, atol=1e-6, msg=name)


def test_only_the_last_micro_batch_all_reduces():
    import contextlib
    torch.manual_seed(0)
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=65, **MODEL))
    state = {"no_sync": False}

    @contextlib.contextmanager
    def no_sync():                                      # what DDP's no_sync does: skip the all-reduce
        state["no_sync"] = True
        try:
            yield
        finally:
            state["no_sync"] = False
    model.no_sync = no_sync
    synced = []
    model.register_forward_pre_hook(lambda module, args: synced.append(not state["no_sync"]))
    x, y = torch.randint(0, 65, (8, 16)), torch.randint(0, 65, (8, 16))
    distributed.forward_backward(model, x, y, micro_batch_size=2)
    assert synced == [False, False, False, True]


def test_a_lost_peer_is_one_line_and_other_errors_keep_theirs():
    lost = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer "
                        "[127.0.0.1]:41234\nException raised from ... (most recent call first)")
    with pytest.raises(distributed.RankFailedError,
                       match=r"^rank 1 of 2 lost contact with the other processes .* within 300 s; .* "
                             r"with --resume .*\[\[\.\./third_party/gloo/gloo/transport/tcp/pair.cc:534\] "
                             r"Connection closed by peer \[127.0.0.1\]:41234\]$"):
        with distributed.lost_peer_as_error(distributed.World(1, 2, 1)):
            raise lost
    for world, error in ((distributed.World(1, 2, 1), RuntimeError("mat1 and mat2 shapes cannot be multiplied")),
                         (distributed.World(), lost)):        # one process has no peer to lose
        with pytest.raises(RuntimeError) as caught:
            with distributed.lost_peer_as_error(world):
                raise error
        assert caught.value is error


@pytest.mark.parametrize("text", [
    "Connection closed by peer [10.0.0.2]:29500",
    "Connection reset by peer",
    "Timed out waiting 300000ms for recv operation to complete",
    "NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1970, unhandled system error",
    "[enforce fail at ../third_party/gloo/gloo/transport/tcp/pair.cc:446] op.preamble.length <= op.nbytes",
])
def test_the_process_groups_errors_are_recognised(text):
    assert distributed.is_communication_error(RuntimeError(text))
    assert not distributed.is_communication_error(RuntimeError("CUDA out of memory"))


def test_only_ranks_other_than_0_leave_the_shared_random_stream(monkeypatch):
    """prepare(): rank 0 keeps the stream one process would have (checkpoints store it); the
    others switch to streams of their own. DDP is faked (no process group)."""
    import torch.nn.parallel

    class FakeDDP(torch.nn.Module):
        def __init__(self, module, device_ids=None, broadcast_buffers=True):
            super().__init__()
            self.module = module
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", FakeDDP)
    model = torch.nn.Linear(2, 2)
    draws = {}
    for rank in (0, 1, 2):
        _as_rank(monkeypatch, rank, world_size=3)
        torch.manual_seed(0)
        assert isinstance(distributed.prepare(model, torch.device("cpu")), FakeDDP)
        draws[rank] = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(draws[0], torch.rand(3))
    assert not torch.equal(draws[1], draws[0]) and not torch.equal(draws[2], draws[1])
