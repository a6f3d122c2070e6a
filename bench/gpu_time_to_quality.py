"""Time to quality on one GPU: minigpt's `gpu` preset (eager and --compile) against nanoGPT's
`train_shakespeare_char` recipe, each in a fresh process, one after the other, on the same GPU.

    python -m bench.gpu_time_to_quality [--json FILE] [--sides minigpt minigpt-compile nanogpt]
    python -m bench.gpu_time_to_quality --smoke      # a few steps of a tiny model, any device

For each side it reports the seconds from launching the process (imports, data, compilation
included) to the first evaluation with val <= --target (1.47), the best val and its step, the
loop's tokens/s (evaluations included, as `minigpt train` reports it), and the steady step time:
the mean time of a training step after the first evaluation interval (compilation and warm-up
are over by then), evaluations and checkpoint writes left out. That is the number to compare
step speed by, since the two recipes evaluate differently.

nanoGPT's code is not vendored: its recipe is re-implemented here on the seed model
(`bench.seed_model.SeedGPT`, which has biases where nanoGPT's shakespeare config has none):
6 layers, 6 heads, 384 wide, context 256, dropout 0.2, batch 64, AdamW (fused on CUDA) lr 1e-3
with 100 warm-up steps and cosine decay to 1e-4 over 5,000 steps, betas (0.9, 0.99), weight
decay 0.1 on matrices, clipping 1.0, bf16 autocast (fp16 + gradient scaler before Ampere),
torch.compile, TF32 matmuls allowed, the loss read every 10 steps (its log interval), and an
estimate of 200 batches per split every 250 steps. `--nanogpt-iters`
stops it early without changing its schedule (its best val comes long before step 5,000).
The evaluations differ (minigpt: 20 batches per split, nanoGPT: 200), so both sides' val
numbers are estimates; minigpt also prints the loss over the whole validation split.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
SIDES = ("minigpt", "minigpt-compile", "nanogpt")
EVAL_LINE = re.compile(r"^step\s+(\d+)\s+train\s+([\d.]+)\s+val\s+([\d.]+)")
TOKENS_LINE = re.compile(r"^trained (\d+) steps; ([\d,.]+) tokens/s")
VAL_LOSS_LINE = re.compile(r"^val_loss ([\d.]+)")
STEADY_STEP_LINE = re.compile(r"^steady step ([\d.]+) ms")
# --smoke: a tiny model for a few steps, so the script runs anywhere in seconds (a unit test runs it)
SMOKE_MODEL = dict(n_layer=1, n_head=2, n_embd=32, block_size=16)
SMOKE_TRAIN = dict(max_iters=4, batch_size=2, eval_interval=2)


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
    """nanoGPT's train_shakespeare_char on the seed model; prints minigpt's eval-line format."""
    import torch
    from minigpt import GPTConfig, MiniGPT, TextData, TrainConfig, get_batch, make_optimizer
    from minigpt.device import autocast, autocast_dtype, pick_device, synchronize
    from .seed_model import SeedGPT

    device = pick_device(device_name)
    torch.backends.cuda.matmul.allow_tf32 = True          # nanoGPT's train.py does both
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(1337)
    data = TextData.shakespeare()
    shape = SMOKE_MODEL if smoke else dict(n_layer=6, n_head=6, n_embd=384, block_size=256)
    config = GPTConfig(vocab_size=data.tokenizer.vocab_size, dropout=0.2, **shape)
    batch_size = SMOKE_TRAIN["batch_size"] if smoke else 64
    eval_interval = SMOKE_TRAIN["eval_interval"] if smoke else 250
    eval_iters = 2 if smoke else 200
    model = SeedGPT(config)
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
    steady_from = None              # (time, paused) at the end of the first evaluation after step 0
    t0 = time.perf_counter()
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
        if step == max_iters:
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
        if step % 10 == 0:
            loss.item()                                    # nanoGPT reads the loss every 10 steps
    elapsed = time.perf_counter() - t0
    print(f"trained {max_iters} steps; {max_iters * batch_size * config.block_size / elapsed:,.0f} tokens/s")
    if steady_from is not None and max_iters > steady_from[0]:
        first, since, paused_then = steady_from
        steps_seconds = (time.perf_counter() - since) - (paused - paused_then)
        print(f"steady step {steps_seconds / (max_iters - first) * 1e3:.2f} ms")


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


def run_side(cmd: list[str], target: float, log) -> dict:
    """Run one side in a fresh process; time every evaluation line from the launch."""
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    launch = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    result: dict = {"command": " ".join(cmd[1:]), "evals": []}
    for line in proc.stdout:
        since_launch = time.perf_counter() - launch
        log.write(line)
        log.flush()
        if m := EVAL_LINE.match(line):
            result["evals"].append({"step": int(m[1]), "train": float(m[2]), "val": float(m[3]),
                                    "since_launch_s": round(since_launch, 2)})
        elif m := TOKENS_LINE.match(line):
            result["tokens_per_s"] = float(m[2].replace(",", ""))
        elif m := VAL_LOSS_LINE.match(line):
            result["whole_val_split_loss"] = float(m[1])
        elif m := STEADY_STEP_LINE.match(line):
            result["steady_step_ms"] = float(m[1])
    result["returncode"] = proc.wait()
    result["wall_s"] = round(time.perf_counter() - launch, 2)
    if result["returncode"] != 0 or not result["evals"]:
        return result                      # reported as failed; the other sides still run
    reached = [e for e in result["evals"] if e["val"] <= target]
    result["target_reached"] = ({"step": reached[0]["step"], "since_launch_s": reached[0]["since_launch_s"]}
                                if reached else None)
    best = min(result["evals"], key=lambda e: e["val"])
    result["best_val"] = {"val": best["val"], "step": best["step"]}
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


def report(results: dict, target: float) -> str:
    lines = [f"device: {results['device']}, torch {results['torch']}; val target {target}"]
    for side, r in results["sides"].items():
        if "best_val" not in r:
            why = f"exit status {r['returncode']}" if r["returncode"] else "no evaluation line"
            lines.append(f"  {side:16s} FAILED ({why}; its output is above)")
            continue
        reached = (f"step {r['target_reached']['step']}, {r['target_reached']['since_launch_s']:.1f} s after launch"
                   if r["target_reached"] else "not reached")
        extra = (f", steady step {r['steady_step_ms']:.2f} ms" if "steady_step_ms" in r else "")
        whole = (f", whole-val-split loss {r['whole_val_split_loss']:.4f}" if "whole_val_split_loss" in r else "")
        lines.append(f"  {side:16s} val <= {target}: {reached}; best val {r['best_val']['val']:.4f} "
                     f"(step {r['best_val']['step']}); {r.get('tokens_per_s', 0):,.0f} tokens/s{extra}{whole}; "
                     f"wall {r['wall_s']:.1f} s")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_time_to_quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--target", type=float, default=1.47, help="val loss to reach (default 1.47)")
    parser.add_argument("--nanogpt-iters", type=int, default=5000,
                        help="stop nanoGPT's recipe after this many steps (its schedule stays 5,000 long)")
    parser.add_argument("--smoke", action="store_true", help="a tiny model for a few steps (checks the script)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-nanogpt", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_nanogpt:
        nanogpt_run(args.device, args.nanogpt_iters, args.smoke, args.compile)
        return 0
    import torch
    from minigpt.device import describe, pick_device
    device = pick_device(args.device)
    results = {"device": describe(device), "torch": torch.__version__, "target": args.target,
               "smoke": args.smoke, "sides": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sides:
            print(f"--- {side} ---", flush=True)
            cmd = side_command(side, device.type, args.smoke, args.nanogpt_iters, Path(tmp))
            results["sides"][side] = run_side(cmd, args.target, sys.stdout)
            if side != "nanogpt" and "best_val" in results["sides"][side]:
                steady = minigpt_steady_step_ms(Path(tmp) / side)
                if steady is not None:
                    results["sides"][side]["steady_step_ms"] = steady
            if args.json:                   # after every side: a run cut short keeps what it finished
                args.json.write_text(json.dumps(results, indent=1))
    print(report(results, args.target))
    # one side failing (say --compile on a new GPU) must not lose the others' numbers: GPU time is scarce
    return 1 if any("best_val" not in r for r in results["sides"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
