"""Time to quality on one GPU: minigpt's `gpu` preset (eager and --compile) against nanoGPT's
`train_shakespeare_char` recipe, each in a fresh process, one after the other, on the same GPU.

    python -m bench.gpu_time_to_quality [--json FILE] [--sides minigpt nanogpt minigpt-compile]
                                        [--budget SECONDS] [--side-timeout SECONDS]
    python -m bench.gpu_time_to_quality --smoke      # a few steps of a tiny model, any device

For each side it reports the seconds from launching the process (imports, data, compilation
included) to the first evaluation with val <= 1.60, <= 1.50 and <= --target (1.47); the best val
and its step; the steady step time: the mean time of a training step after the first evaluation
interval (compilation and warm-up are over by then), evaluations and checkpoint writes left out;
and the tokens/s of that steady step (batch x context / steady step time). Those two are the
numbers to compare step speed by: the two recipes evaluate differently (minigpt: 20 batches per
split every 250 steps, nanoGPT: 200), so the loop's own tokens/s, evaluations included (as
`minigpt train` prints it), is reported too but is not comparable between the sides.

nanoGPT's code is not vendored: its recipe is re-implemented here on the seed model's shape and
parameter names, switched to what nanoGPT's model runs: `SeedGPT(config, fused_attention=True,
bias=False)` (bench/seed_model.py), i.e. attention by one `F.scaled_dot_product_attention(q, k, v,
dropout_p=0.2 while training, is_causal=True)` call (nanoGPT's flash path) and no biases in the
linear layers or LayerNorms (nanoGPT's `bias = False`, which train_shakespeare_char keeps). The
recipe: 6 layers, 6 heads, 384 wide, context 256, dropout 0.2, batch 64, AdamW (fused on CUDA)
lr 1e-3 with 100 warm-up steps and cosine decay to 1e-4 over 5,000 steps, betas (0.9, 0.99),
weight decay 0.1 on matrices, clipping 1.0, bf16 autocast (fp16 + gradient scaler before Ampere),
torch.compile, TF32 matmuls allowed, the loss read every 10 steps (its log interval), and an
estimate of 200 batches per split every 250 steps. `--nanogpt-iters` stops it early without
changing its schedule (its best val comes long before step 5,000). minigpt also prints the loss
over the whole validation split; both sides' per-evaluation val numbers are estimates.

What is and is not the same for the sides. Each runs in a fresh process, in the order given
(default: minigpt, nanogpt, minigpt-compile: the optional compiled side last), with the same
environment: the same GOMP_SPINCOUNT (minigpt's 10000 unless a wait policy is already set; the
nanoGPT child would otherwise load torch before minigpt could set it), the same thread choice
(both call `pick_device`), and its own fresh, empty TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR,
so no side reuses another's compiled kernels or Triton's one-time helper builds: every side
starts cold, as on a fresh machine. Two differences remain, each its recipe's own: nanoGPT
allows TF32 matmuls (its train.py does) and minigpt leaves torch's default; it changes nothing
measured, since TF32 exists only from Ampere on, where both sides run under bf16 autocast and
every matmul of their training steps and loss estimates runs in bf16. And minigpt writes a
checkpoint every 500 steps (with fsync and a checksum: it counts towards its time from launch,
not towards its steady step), where this re-implementation of nanoGPT writes none (nanoGPT's
own train.py saves ckpt.pt at each val improvement, so this favours the nanoGPT side).

What survives a cut: the results of the side that is running are recorded as its lines arrive,
and with --json the file is rewritten at every evaluation line and after every side. Each side
gets its own deadline: --side-timeout, and with --budget an equal share of what is left of the
budget when it starts (the rest goes to the sides after it); past it the side gets SIGTERM
(minigpt then saves a checkpoint at the next step boundary; nanoGPT's loop stops at its next
step and prints its steady step so far), SIGKILL --grace seconds later, and is marked
"cut_short". SIGTERM or Ctrl-C to this process does the same to the running side, writes the
JSON and exits (143 or 130). A side whose process fails, or whose checkpoint cannot be read, keeps
the evaluations it printed and is marked "failed" with the reason; the next side still runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
SIDES = ("minigpt", "nanogpt", "minigpt-compile")
EVAL_LINE = re.compile(r"^step\s+(\d+)\s+train\s+([\d.]+)\s+val\s+([\d.]+)")
TOKENS_LINE = re.compile(r"^trained (\d+) steps; ([\d,.]+) tokens/s")
VAL_LOSS_LINE = re.compile(r"^val_loss ([\d.]+)")
STEADY_STEP_LINE = re.compile(r"^steady step ([\d.]+) ms")
# reported beside --target, so one val number on a knife edge does not decide the comparison
EXTRA_TARGETS = (1.60, 1.50)
# --smoke: a tiny model for a few steps, so the script runs anywhere in seconds (a unit test runs it)
SMOKE_MODEL = dict(n_layer=1, n_head=2, n_embd=32, block_size=16)
SMOKE_TRAIN = dict(max_iters=4, batch_size=2, eval_interval=2)
NANOGPT_SHAPE = dict(n_layer=6, n_head=6, n_embd=384, block_size=256)
NANOGPT_BATCH = 64
RESERVE_S = 3.0          # of --budget, kept for writing the JSON and the report at the end
MIN_SIDE_S = 3.0         # a side with less than this left of the budget is not started


# ------------------------------------------------------------------ the nanoGPT side (child)
def nanogpt_lr(step: int, learning_rate: float = 1e-3, min_lr: float = 1e-4, warmup_iters: int = 100,
               lr_decay_iters: int = 5000) -> float:
    """nanoGPT's get_lr: linear warm-up from lr/(warmup+1), cosine decay to min_lr."""
    if step < warmup_iters:
        return learning_rate * (step + 1) / (warmup_iters + 1)
    if step > lr_decay_iters:
        return min_lr
    ratio = (step - warmup_iters) / (lr_decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


def nanogpt_run(device_name: str, max_iters: int, smoke: bool, compile_model: bool) -> None:
    """nanoGPT's train_shakespeare_char on its model (the seed model's shape with fused attention
    and no biases); prints minigpt's eval-line format. SIGTERM stops it at the next step boundary,
    with the usual summary lines for the steps done (a second SIGTERM stops it at once)."""
    from minigpt import GPTConfig, MiniGPT, TextData, TrainConfig, get_batch, make_optimizer  # before torch
    import torch
    from minigpt.device import autocast, autocast_dtype, pick_device, synchronize
    from .seed_model import SeedGPT

    stop = []

    def on_sigterm(signum, frame):
        if stop:
            raise SystemExit(128 + signum)
        stop.append(signum)
        print("\nSIGTERM: stopping after this step", flush=True)

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, on_sigterm)

    device = pick_device(device_name)
    torch.backends.cuda.matmul.allow_tf32 = True          # nanoGPT's train.py does both
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(1337)
    data = TextData.shakespeare()
    shape = SMOKE_MODEL if smoke else NANOGPT_SHAPE
    config = GPTConfig(vocab_size=data.tokenizer.vocab_size, dropout=0.2, **shape)
    batch_size = SMOKE_TRAIN["batch_size"] if smoke else NANOGPT_BATCH
    eval_interval = SMOKE_TRAIN["eval_interval"] if smoke else 250
    eval_iters = 2 if smoke else 200
    model = SeedGPT(config, fused_attention=True, bias=False)   # nanoGPT's flash path, bias = False
    model.apply(MiniGPT._init_weights)                    # nanoGPT's init: N(0, 0.02), zero biases
    for name, param in model.named_parameters():          # and its scaled residual projections
        if name.endswith("c_proj.weight"):
            torch.nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
    model.to(device)
    optimizer = make_optimizer(model, TrainConfig(learning_rate=1e-3, beta2=0.99, weight_decay=0.1), device)
    fp16 = autocast_dtype(device) == torch.float16
    scaler = torch.amp.GradScaler(device.type if fp16 else "cpu", enabled=fp16)
    step_model = torch.compile(model) if compile_model else model
    gen = torch.Generator().manual_seed(1337)

    @torch.no_grad()
    def estimate() -> dict[str, float]:
        model.eval()
        out = {}
        for split, tokens in (("train", data.train), ("val", data.val)):
            losses = torch.zeros(eval_iters)
            for i in range(eval_iters):
                x, y = get_batch(tokens, config.block_size, batch_size, gen, device)
                with autocast(device):
                    losses[i] = step_model(x, y)[1].item()
            out[split] = losses.mean().item()
        model.train()
        return out

    paused = 0.0                    # seconds in evaluations, left out of the step time
    steady_from = None              # (step, time, paused) at the end of the first evaluation after step 0
    t0 = time.perf_counter()
    done = 0                        # training steps done
    for step in range(max_iters + 1):
        if step % eval_interval == 0 or step == max_iters:
            synchronize(device)     # the steps before it are done: time only the evaluation
            began = time.perf_counter()
            losses = estimate()
            print(f"step {step:>6}  train {losses['train']:.4f}  val {losses['val']:.4f}  "
                  f"({time.perf_counter() - t0:.0f}s)", flush=True)
            paused += time.perf_counter() - began
            if step > 0 and steady_from is None:
                steady_from = (step, time.perf_counter(), paused)
        if step == max_iters or stop:
            break
        for group in optimizer.param_groups:
            group["lr"] = nanogpt_lr(step)
        x, y = get_batch(data.train, config.block_size, batch_size, gen, device)
        with autocast(device):
            _, loss = step_model(x, y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if step % 10 == 0:
            loss.item()                                    # nanoGPT reads the loss every 10 steps
    synchronize(device)
    elapsed = time.perf_counter() - t0
    print(f"trained {done} steps; {done * batch_size * config.block_size / elapsed:,.0f} tokens/s", flush=True)
    if steady_from is not None and done > steady_from[0]:
        first, since, paused_then = steady_from
        steps_seconds = (time.perf_counter() - since) - (paused - paused_then)
        print(f"steady step {steps_seconds / (done - first) * 1e3:.2f} ms", flush=True)


# ---------------------------------------------------------------------------- the parent
def side_command(side: str, device: str, smoke: bool, nanogpt_iters: int, out_dir: Path) -> list[str]:
    if side == "nanogpt":
        cmd = [sys.executable, "-m", "bench.gpu_time_to_quality", "--child-nanogpt", "--device", device,
               "--nanogpt-iters", str(SMOKE_TRAIN["max_iters"] if smoke else nanogpt_iters)]
        return cmd + (["--smoke"] if smoke else ["--compile"])
    cmd = [sys.executable, "-m", "minigpt", "train", "--preset", "gpu", "--out", str(out_dir / side),
           "--no-progress", "--sample-tokens", "0", "--device", device]
    if side == "minigpt-compile":
        cmd.append("--compile")
    if smoke:
        for key, value in {**SMOKE_MODEL, **SMOKE_TRAIN}.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def side_tokens_per_step(side: str, smoke: bool) -> int:
    """batch x context of one training step of `side` (the same for both recipes on a GPU)."""
    if smoke:
        return SMOKE_TRAIN["batch_size"] * SMOKE_MODEL["block_size"]
    if side == "nanogpt":
        return NANOGPT_BATCH * NANOGPT_SHAPE["block_size"]
    from minigpt.presets import PRESETS
    preset = PRESETS["gpu"]
    return preset.train["batch_size"] * preset.model["block_size"]


def side_env(caches: Path) -> dict[str, str]:
    """The environment every side runs in: the same for all, except each side's own fresh,
    empty compile caches (`caches` is a new folder per side)."""
    from minigpt.cpu import SPIN_COUNT, SPIN_ENV, USER_WAIT_ENVS
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
               TORCHINDUCTOR_CACHE_DIR=str(caches / "inductor"), TRITON_CACHE_DIR=str(caches / "triton"))
    if not any(env.get(name, "").strip() for name in USER_WAIT_ENVS):
        env[SPIN_ENV] = SPIN_COUNT          # what `import minigpt` sets when it comes before torch
    return env


class Stop:
    """SIGTERM or SIGINT to the parent: remember it. `run_side`'s loop (it wakes every 0.2 s)
    then sends the running side SIGTERM, SIGKILL a few seconds later, and the parent writes the
    JSON and exits. A second signal kills the side's process group at once. (The handler does
    not send the first SIGTERM itself: the loop would send a second one, and a second SIGTERM
    makes `minigpt train` stop in the middle of its checkpoint write.)"""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.proc: Optional[subprocess.Popen] = None

    def handle(self, signum, frame) -> None:
        again = self.signum is not None
        self.signum = signum
        if again and self.proc is not None:
            signal_group(self.proc, signal.SIGKILL)

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.handle)


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send `sig` to the side's whole process group (it runs in its own session, so compile
    workers and compiler processes it started go too)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def summarize(result: dict, targets: Sequence[float]) -> None:
    """best_val and the first evaluation at or below each target, from the evaluations so far."""
    evals = result["evals"]
    if not evals:
        return
    reached = {}
    for target in targets:
        first = next((e for e in evals if e["val"] <= target), None)
        reached[target_key(target)] = (None if first is None else
                                    {"step": first["step"], "since_launch_s": first["since_launch_s"]})
    result["reached"] = reached
    result["target_reached"] = reached[target_key(targets[-1])]
    best = min(evals, key=lambda e: e["val"])
    result["best_val"] = {"val": best["val"], "step": best["step"]}


def run_side(cmd: list[str], targets: Sequence[float], log, result: dict, *, env: Optional[dict] = None,
             limit_s: Optional[float] = None, grace_s: float = 10.0, stop: Optional[Stop] = None,
             on_eval=None) -> dict:
    """Run one side in a fresh process (its own session); time every evaluation line from the
    launch. `result` is filled in as the lines arrive, so whoever holds it keeps what the side
    printed whatever happens next. Past `limit_s` seconds minus `grace_s`, or once `stop` has
    seen a signal, the side gets SIGTERM, and SIGKILL `grace_s` later; it is then marked
    "cut_short" with the reason. `on_eval` is called after every evaluation line."""
    result.setdefault("evals", [])
    result.update(command=" ".join(cmd[1:]), cut_short=False)
    if limit_s is not None:
        result["limit_s"] = round(limit_s, 1)
    launch = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", start_new_session=True)
    if stop is not None:
        stop.proc = proc
    lines: queue.Queue = queue.Queue()

    def pump() -> None:              # a thread reads, so the loop below can keep the deadlines
        try:
            for line in proc.stdout:
                lines.put(line)
        finally:
            lines.put(None)
    threading.Thread(target=pump, daemon=True).start()

    def cut(reason: str) -> None:
        nonlocal terminated_at
        result["cut_short"], result["cut_short_reason"] = True, reason
        terminated_at = time.perf_counter()
        signal_group(proc, signal.SIGTERM)

    terminated_at: Optional[float] = None
    killed_at: Optional[float] = None
    exited_at: Optional[float] = None
    try:
        while True:
            now = time.perf_counter()
            if terminated_at is None and proc.poll() is None:
                if stop is not None and stop.signum is not None:
                    cut(f"{signal.Signals(stop.signum).name} to the benchmark")
                elif limit_s is not None and now - launch >= limit_s - grace_s:
                    cut(f"side limit of {limit_s:.0f} s")
            if killed_at is None and terminated_at is not None and (
                    now - terminated_at >= grace_s
                    or (stop is not None and stop.signum is not None and now - terminated_at >= min(grace_s, 5.0))):
                signal_group(proc, signal.SIGKILL)
                killed_at = now
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 2.0:
                # the side is over but something it started still holds its output: stop that
                if killed_at is None:
                    signal_group(proc, signal.SIGKILL)
                    killed_at = now
                elif now - killed_at > 2.0:
                    break
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            since_launch = time.perf_counter() - launch
            log.write(line)
            log.flush()
            if m := EVAL_LINE.match(line):
                result["evals"].append({"step": int(m[1]), "train": float(m[2]), "val": float(m[3]),
                                        "since_launch_s": round(since_launch, 2)})
                summarize(result, targets)
                if on_eval is not None:
                    on_eval()
            elif m := TOKENS_LINE.match(line):
                result["tokens_per_s"] = float(m[2].replace(",", ""))
            elif m := VAL_LOSS_LINE.match(line):
                result["whole_val_split_loss"] = float(m[1])
            elif m := STEADY_STEP_LINE.match(line):
                result["steady_step_ms"] = float(m[1])
    finally:
        if proc.poll() is None:          # only when this loop itself was interrupted
            signal_group(proc, signal.SIGKILL)
        try:
            result["returncode"] = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            result["returncode"] = None
        if stop is not None:
            stop.proc = None
        signal_group(proc, signal.SIGKILL)   # whatever of its process group is left (compile workers)
        result["wall_s"] = round(time.perf_counter() - launch, 2)
        summarize(result, targets)
    if not result["cut_short"]:
        if result["returncode"] != 0:
            result["failed"] = f"exit status {result['returncode']}"
        elif not result["evals"]:
            result["failed"] = "no evaluation line"
    return result


def minigpt_steady_step_ms(run_folder: Path) -> Optional[float]:
    """The steady step time of a `minigpt train` run, from its last checkpoint's history: each
    evaluation record holds the seconds spent in training steps so far (evaluations and
    checkpoint writes left out); the time from the first evaluation after step 0 to the last,
    per step, is the nanoGPT side's "steady step"."""
    from minigpt import load_checkpoint
    evals = load_checkpoint(run_folder, with_trainer=True).train_state["history"]["eval"]
    later = [e for e in evals if e["step"] > 0 and "step_seconds" in e]
    if len(later) < 2:
        return None
    first, last = later[0], later[-1]
    return round((last["step_seconds"] - first["step_seconds"]) / (last["step"] - first["step"]) * 1e3, 3)


def add_steady_tokens(result: dict, tokens_per_step: int) -> None:
    result["tokens_per_step"] = tokens_per_step
    if result.get("steady_step_ms"):
        result["steady_tokens_per_s"] = round(tokens_per_step / (result["steady_step_ms"] / 1e3))


def report(results: dict, target: float) -> str:
    lines = [f"device: {results['device']}, torch {results['torch']}; val targets "
             f"{', '.join(target_key(t) for t in targets_for(target))}"
             + ("; CUT SHORT by " + results["cut_short"] if results.get("cut_short") else "")]
    for side, r in results["sides"].items():
        marks = []
        if r.get("cut_short"):
            marks.append(f"CUT SHORT ({r.get('cut_short_reason', '?')})")
        if r.get("failed"):
            marks.append(f"FAILED ({r['failed']}; its output is above)")
        mark = (" " + "; ".join(marks)) if marks else ""
        if "best_val" not in r:
            lines.append(f"  {side:16s}{mark or ' FAILED'}; no evaluation"
                         + (f"; wall {r['wall_s']:.1f} s" if "wall_s" in r else ""))
            continue
        reached = "; ".join(f"val <= {key}: " + (f"step {hit['step']}, {hit['since_launch_s']:.1f} s after launch"
                                                 if hit else "not reached") for key, hit in r["reached"].items())
        steady = (f"; steady step {r['steady_step_ms']:.2f} ms = {r['steady_tokens_per_s']:,.0f} tokens/s"
                  if r.get("steady_tokens_per_s") else "")
        loop = f"; loop {r['tokens_per_s']:,.0f} tokens/s with evaluations" if "tokens_per_s" in r else ""
        whole = f"; whole-val-split loss {r['whole_val_split_loss']:.4f}" if "whole_val_split_loss" in r else ""
        wall = f"; wall {r['wall_s']:.1f} s" if "wall_s" in r else ""
        lines.append(f"  {side:16s} {reached}; best val {r['best_val']['val']:.4f} (step {r['best_val']['step']})"
                     f"{steady}{loop}{whole}{wall}{mark}")
    return "\n".join(lines)


def target_key(target: float) -> str:
    """1.6 -> "1.60", 1.475 -> "1.475": the JSON's key and the report's label of a target."""
    return f"{target:.2f}" if round(target, 2) == target else f"{target:g}"


def targets_for(target: float) -> list[float]:
    """The val targets reported, highest first, --target last."""
    return sorted({*EXTRA_TARGETS, target} - {target}, reverse=True) + [target]


def write_json(path: Optional[Path], results: dict) -> None:
    """Replace `path` in one step, so a reader, or a kill, never finds half a file."""
    if path is not None:
        from minigpt.run_folder import write_text_atomically
        write_text_atomically(path.parent, path.name, json.dumps(results, indent=1))


def main(argv: Optional[Sequence[str]] = None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_time_to_quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--target", type=float, default=1.47, help="val loss to reach (default 1.47)")
    parser.add_argument("--nanogpt-iters", type=int, default=5000,
                        help="stop nanoGPT's recipe after this many steps (its schedule stays 5,000 long)")
    parser.add_argument("--budget", type=float,
                        help="seconds for the whole run; each side gets an equal share of what is left when it starts")
    parser.add_argument("--side-timeout", type=float, help="at most this many seconds for one side")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds from a side's SIGTERM to its SIGKILL (default 10; included in its share)")
    parser.add_argument("--smoke", action="store_true", help="a tiny model for a few steps (checks the script)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file (rewritten as they come)")
    parser.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-nanogpt", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_nanogpt:
        nanogpt_run(args.device, args.nanogpt_iters, args.smoke, args.compile)
        return 0
    stop = Stop()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    if in_main_thread:
        stop.install()
    try:
        return _run(args, started, stop)
    finally:
        if in_main_thread:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _run(args: argparse.Namespace, started: float, stop: Stop) -> int:
    import torch
    from minigpt.device import describe, pick_device
    device = pick_device(args.device)
    targets = targets_for(args.target)
    results = {"device": describe(device), "torch": torch.__version__, "target": args.target,
               "targets": targets, "smoke": args.smoke, "budget_s": args.budget,
               "side_timeout_s": args.side_timeout, "sides": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for n, side in enumerate(args.sides):
            if stop.signum is not None:
                break
            limit = args.side_timeout
            if args.budget is not None:
                left = args.budget - RESERVE_S - (time.perf_counter() - started)
                share = left / (len(args.sides) - n)
                limit = share if limit is None else min(limit, share)
                if share < MIN_SIDE_S:
                    results["sides"][side] = {"evals": [], "cut_short": True,
                                              "cut_short_reason": f"not started: {max(left, 0):.0f} s left of --budget"}
                    write_json(args.json, results)
                    continue
            print(f"--- {side} ---" + (f" (at most {limit:.0f} s)" if limit is not None else ""), flush=True)
            result: dict = {"evals": []}
            results["sides"][side] = result                   # filled in as its lines arrive
            cmd = side_command(side, device.type, args.smoke, args.nanogpt_iters, Path(tmp))
            run_side(cmd, targets, sys.stdout, result, env=side_env(Path(tmp) / "caches" / side),
                     limit_s=limit, grace_s=args.grace, stop=stop,
                     on_eval=lambda: write_json(args.json, results))
            if side != "nanogpt" and result["evals"] and (Path(tmp) / side).is_dir():
                try:
                    steady = minigpt_steady_step_ms(Path(tmp) / side)
                except Exception as err:      # keep the evaluations; the next side still runs
                    why = f"reading its checkpoint for the steady step time: {type(err).__name__}: {err}"
                    if result["cut_short"]:
                        result["steady_step_error"] = why
                    else:
                        result["failed"] = "; ".join(filter(None, [result.get("failed"), why]))
                else:
                    if steady is not None:
                        result["steady_step_ms"] = steady
            add_steady_tokens(result, side_tokens_per_step(side, args.smoke))
            write_json(args.json, results)    # after every side: a run cut short keeps what it finished
    if stop.signum is not None:
        results["cut_short"] = signal.Signals(stop.signum).name
        write_json(args.json, results)
    print(report(results, args.target), flush=True)
    if stop.signum is not None:
        return 128 + stop.signum
    # one side failing (say --compile on a new GPU) must not lose the others' numbers: GPU time is scarce
    return 1 if any(r.get("failed") or r.get("cut_short") or "best_val" not in r
                    for r in results["sides"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
