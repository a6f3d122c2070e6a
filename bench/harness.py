"""Benchmarks (not tests): `python -m bench [peak] [train] [attention] [generate] [flash] [quick]`.

Every comparison runs both sides in one run, interleaved, and prints the ratio, because on a
shared 2-core machine absolute numbers swing by 2x from one minute to the next while
same-run ratios hold. The reference side is `bench.seed_model.SeedGPT`: our own
re-implementation of the seed chapter's model. Sides that need a fresh process run
`python -m bench.child ...` (see bench/child.py) from the repository root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from minigpt import GPTConfig, MiniGPT
from minigpt.cpu import threads_asked_for
from minigpt.device import describe, pick_device, synchronize, tune_cpu_allocator
from minigpt.memory import attention_memory
from minigpt.run_folder import write_text_atomically

from .mfu import matmul_peak, train_flops_per_token
from .provenance import load_average, log_header
from .seed_model import seed_copy_of

ALL_BENCHMARKS = ("peak", "train", "attention", "generate", "flash", "quick")
DEFAULT_BENCHMARKS = ("peak", "train", "attention", "generate", "flash")
REPO_ROOT = Path(__file__).resolve().parent.parent      # where `python -m bench.child` finds `bench`


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def run_child(*args: str, env: Optional[dict] = None) -> dict:
    """Run `python -m bench.child ARGS` in a fresh process and return the JSON line it prints last."""
    proc = subprocess.run([sys.executable, "-m", "bench.child", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"python -m bench.child {' '.join(args)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_train(device: torch.device, peak: Optional[float], steps: int = 3, rounds: int = 3,
                batch_size: int = 64) -> dict:
    """Seed configuration (dropout 0.1): the seed model vs minigpt, each in its own process,
    alternating seed / minigpt / seed / minigpt so both see the same machine load."""
    config = GPTConfig(vocab_size=65)
    times: dict[str, list[float]] = {"seed": [], "minigpt": []}
    peaks: list[float] = [peak] if peak else []
    matmuls_only: list[float] = []
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="" if device.type == "cpu" else
               os.environ.get("CUDA_VISIBLE_DEVICES", "0"))
    for _ in range(rounds):
        for which in times:
            child = run_child("train", which, "--steps", str(steps), "--batch-size", str(batch_size),
                              "--device", device.type, env=env)
            times[which] += child["step_s"]
            peaks.append(child["peak"])
            if which == "minigpt":
                matmuls_only += child["matmuls_only_s"]
    peak = _median(peaks)                              # median of the peaks measured in the run
    tokens = batch_size * config.block_size
    n_params = MiniGPT(config).num_parameters(exclude_positions=True)
    flops = train_flops_per_token(config, n_params)
    out = {"config": "seed (6x256, 8 heads, block 128, dropout 0.1, batch %d)" % batch_size,
           "peak_flops": peak, "all_peaks": peaks}
    for name, ts in times.items():
        t = _median(ts)                                # median step
        out[name] = {"step_s": t, "tokens_per_s": tokens / t, "all_steps_s": ts,
                     "mfu": (tokens / t * flops / peak) if peak else None}
    out["speedup"] = out["minigpt"]["tokens_per_s"] / out["seed"]["tokens_per_s"]
    t = _median(matmuls_only)
    out["matmuls_only"] = {"step_s": t, "all_steps_s": matmuls_only,
                           "mfu": (tokens / t * flops / peak) if peak else None,
                           "share_of_minigpt_step": t / out["minigpt"]["step_s"]}
    return out


def bench_generate(device: torch.device, new_tokens: int = 500, block_size: int = 512,
                   rounds: int = 3) -> dict:
    """Greedy generation from a 1-token prompt: seed loop vs minigpt without / with KV cache.

    The three run in turn, `rounds` times, and each reports its median: decoding with a cache
    is bound by reading the weights from memory, which other jobs on the machine slow down
    by up to a half from one minute to the next.
    """
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=65, block_size=block_size)
    ours = MiniGPT(config).to(device).eval()
    seed = seed_copy_of(ours).eval()
    prompt = torch.zeros(1, 1, dtype=torch.long, device=device)
    results, outputs = {}, {}
    runs = {
        "seed": lambda: seed.generate(prompt, new_tokens, temperature=0),
        "minigpt_no_cache": lambda: ours.generate(prompt, new_tokens, temperature=0, use_cache=False),
        "minigpt_kv_cache": lambda: ours.generate(prompt, new_tokens, temperature=0, use_cache=True),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    seed.generate(prompt, 8, temperature=0)           # warm-up: both sides, or the first timed
    ours.generate(prompt, 8, temperature=0)           # call of the seed pays its one-time costs
    for _ in range(rounds):
        for name, fn in runs.items():
            synchronize(device)
            t = time.perf_counter()
            outputs[name] = fn()
            synchronize(device)
            seconds[name].append(time.perf_counter() - t)
    for name, ts in seconds.items():
        elapsed = _median(ts)
        results[name] = {"seconds": elapsed, "tokens_per_s": new_tokens / elapsed,
                         "all_tokens_per_s": [new_tokens / t for t in ts]}
    identical = all(torch.equal(outputs["seed"], o) for o in outputs.values())
    results["identical_tokens"] = identical
    results["speedup_kv_cache_vs_seed"] = results["minigpt_kv_cache"]["tokens_per_s"] / results["seed"]["tokens_per_s"]
    # per-token latency against context length, with and without the cache
    latency = {}
    for use_cache in (False, True):
        per_len = {}
        with torch.no_grad():
            for length in (32, 128, 256, 511):
                ctx = torch.randint(0, 65, (1, length), device=device)
                if use_cache:
                    caches = ours.new_kv_caches(1)
                    ours._next_logits(ctx[:, :-1], caches)
                    reps = 20
                    t = time.perf_counter()
                    for _ in range(reps):
                        for c in caches:
                            c.length = length - 1
                        ours._next_logits(ctx[:, -1:], caches)
                    synchronize(device)
                else:
                    reps = 5
                    t = time.perf_counter()
                    for _ in range(reps):
                        ours._next_logits(ctx)
                    synchronize(device)
                per_len[length] = (time.perf_counter() - t) / reps * 1e3
        latency["kv_cache" if use_cache else "no_cache"] = per_len
    results["ms_per_token_by_context"] = latency
    results["config"] = f"seed 6x256, block {block_size}, {new_tokens} tokens, batch 1, greedy"
    return results


def bench_attention(device: torch.device, rounds: int = 12) -> dict:
    """Training-time attention with dropout 0.1 in the seed shapes (64 x 8 heads x 128 x 32),
    forward + backward: `manual_attention` vs `dropout_attention`, alternating, in this process."""
    from minigpt.attention import dropout_attention, manual_attention
    if device.type == "cpu":
        tune_cpu_allocator()
    B, H, T, D = 64, 8, 128, 32
    torch.manual_seed(0)
    qkv = torch.randn(B, T, 3 * H * D, device=device)                       # like c_attn's output
    q, k, v = (t.view(B, T, H, D).transpose(1, 2).detach().requires_grad_() for t in qkv.split(H * D, 2))
    grad = torch.randn(B, H, T, D, device=device)
    sides = {"manual_attention": lambda: manual_attention(q, k, v, 0.1, training=True),
             "dropout_attention": lambda: dropout_attention(q, k, v, 0.1)}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(rounds + 1):
        for name, fn in sides.items():
            t = time.perf_counter()
            fn().backward(grad)
            synchronize(device)
            if r:                                                            # round 0 warms up
                times[name].append(time.perf_counter() - t)
    out = {"config": f"B={B}, H={H}, T={T}, D={D}, dropout 0.1, forward + backward"}
    for name, ts in times.items():
        out[name] = {"median_s": _median(ts), "all_s": ts}
    out["speedup"] = out["manual_attention"]["median_s"] / out["dropout_attention"]["median_s"]
    return out


def bench_flash(device: torch.device, T: int = 4096) -> dict:
    """Extra peak memory of one forward pass (batch 1, 8 heads, head size 32): see minigpt.memory."""
    return attention_memory(device, T)


def bench_quick(device: torch.device) -> dict:
    """Time-to-quality, whole commands with start-up: nanoGPT's CPU recipe vs `--preset cpu-quick`."""
    with tempfile.TemporaryDirectory(prefix="minigpt-bench-quick-") as tmp:     # removed afterwards
        out_dir = Path(tmp) / "run"
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "minigpt", "train", "--preset", "cpu-quick",
                               "--out", str(out_dir), "--no-progress", "--device", device.type],
                              capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        summary = json.loads((out_dir / "summary.json").read_text())
    result = {"minigpt": {"wall_s": wall, "val_loss": summary["val_loss"], "steps": summary["steps"]},
              "log": [l for l in proc.stdout.splitlines() if l.startswith("step")]}
    if device.type == "cpu":
        t = time.perf_counter()
        val_loss = run_child("nanogpt")["val_loss"]
        result["nanogpt_recipe"] = {"wall_s": time.perf_counter() - t, "val_loss": val_loss}
    return result


def run_benchmarks(what=(), device="auto", threads: Optional[int] = None,
                   json_path: Optional[Path] = None) -> dict:
    """Run the named benchmarks (default: all but `quick`), print a report, return the numbers.
    `threads`: the count for this process and for every child (each side of a comparison)."""
    if threads:
        with threads_asked_for(threads):
            return run_benchmarks(what, device, None, json_path)
    device = pick_device(device)
    what = list(what) or list(DEFAULT_BENCHMARKS)
    unknown = [w for w in what if w not in ALL_BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {', '.join(ALL_BENCHMARKS)}.")
    results: dict = {"device": describe(device), "torch": torch.__version__,
                     "where": log_header("python -m bench " + " ".join(what)).lstrip("# "),
                     "load_average_at_start": load_average()}
    print(f"device: {results['device']}, torch {results['torch']}")
    peak = None
    if "peak" in what or "train" in what:
        peak = matmul_peak(device)
        results["matmul_peak_gflops"] = peak / 1e9
        print(f"matmul peak: {peak / 1e9:,.0f} GFLOP/s ({'bf16' if device.type == 'cuda' else 'fp32'})")
    if "train" in what:
        r = results["train"] = bench_train(device, peak)
        print(f"train [{r['config']}]")
        print(f"  matmul peak over the run: median {r['peak_flops'] / 1e9:,.0f} GFLOP/s of "
              + ", ".join(f"{p / 1e9:.0f}" for p in r["all_peaks"]))
        for name in ("seed", "minigpt"):
            m = r[name]
            print(f"  {name:8s} {m['step_s']:.3f} s/step (median of {len(m['all_steps_s'])})  "
                  f"{m['tokens_per_s']:>10,.0f} tokens/s  MFU {m['mfu']:.0%}")
        print(f"  speed-up minigpt / seed: {r['speedup']:.2f}x")
        m = r["matmuls_only"]
        print(f"  the same step's matmuls alone: {m['step_s']:.3f} s (median), MFU {m['mfu']:.0%} "
              f"(the ceiling if nothing else cost time); {m['share_of_minigpt_step']:.0%} of minigpt's step")
    if "attention" in what:
        r = results["attention"] = bench_attention(device)
        print(f"attention for training [{r['config']}], median of {len(r['manual_attention']['all_s'])}:")
        print(f"  manual_attention {r['manual_attention']['median_s'] * 1e3:.1f} ms, dropout_attention "
              f"{r['dropout_attention']['median_s'] * 1e3:.1f} ms: {r['speedup']:.2f}x")
    if "generate" in what:
        r = results["generate"] = bench_generate(device)
        print(f"generate [{r['config']}]")
        for name in ("seed", "minigpt_no_cache", "minigpt_kv_cache"):
            print(f"  {name:17s} {r[name]['tokens_per_s']:>8,.0f} tokens/s (median of "
                  + ", ".join(f"{x:,.0f}" for x in r[name]["all_tokens_per_s"]) + ")")
        print(f"  identical tokens: {r['identical_tokens']}; KV cache vs seed: {r['speedup_kv_cache_vs_seed']:.1f}x")
        for kind, per_len in r["ms_per_token_by_context"].items():
            print(f"  ms/token ({kind}): " + ", ".join(f"ctx {k}: {v:.2f}" for k, v in per_len.items()))
    if "flash" in what:
        r = results["flash"] = bench_flash(device)
        print(f"flash attention memory at T={r['T']} (batch 1, 8 heads, head size 32; {r['method']}):")
        print(f"  manual {r['manual_bytes'] / 2**20:,.1f} MiB, flash {r['flash_bytes'] / 2**20:,.1f} MiB, "
              f"ratio {r['ratio_flash_over_manual']:.3f}")
    if "quick" in what:
        r = results["quick"] = bench_quick(device)
        print("time-to-quality on tinyshakespeare (whole command, start-up included; val loss over the whole val split):")
        for name in ("nanogpt_recipe", "minigpt"):
            if name in r:
                print(f"  {name:15s} val_loss {r[name]['val_loss']:.4f} in {r[name]['wall_s']:.1f} s")
        print("  minigpt curve: " + " | ".join(r["log"]))
    if json_path:                          # whole or not at all, as the checkpoints are
        write_text_atomically(Path(json_path).parent, Path(json_path).name, json.dumps(results, indent=1))
    return results
