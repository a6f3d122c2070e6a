"""Data-parallel scaling: training tokens/s with 1 and with N processes, same global batch.

    python bench/ddp_scaling.py                      # 1 vs 2 gloo processes on the CPU
    python bench/ddp_scaling.py --nprocs 1 2 4 8     # on a machine with more cores or GPUs
    python bench/ddp_scaling.py --device cuda        # NCCL, one GPU per process

Each configuration runs under `torchrun --standalone` as a fresh set of processes, and the
configurations alternate (1, 2, 1, 2, ...) so that other load on the machine hits both
alike; the median of the repeats is reported. On the CPU the cores are shared out: with N
processes each gets cores / N threads, so 1 process with 2 threads is compared with 2
processes with 1 thread each. Every process trains the same model on the same global batch
(training is the same whatever N is); tokens/s counts the global batch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the cpu-quick preset's model and batch: a small model a 2-core CPU trains in minutes
MODEL = dict(block_size=64, n_embd=128, n_head=4, n_layer=3, dropout=0.0, pos_encoding="rope",
             bias=False, attn_impl="sdpa")


def worker(args) -> None:
    """One rank: a few warm-up steps, then the timed steps; rank 0 prints a JSON line."""
    # minigpt before torch, as `python -m minigpt train` loads them: minigpt limits OpenMP's
    # spinning only when it is imported before torch (minigpt/cpu.py)
    import minigpt
    import torch
    from minigpt import distributed
    data = minigpt.TextData.from_text(minigpt.load_shakespeare())
    results = []
    for steps in (args.warmup, args.steps):       # the warm-up call pays for first-touch costs
        minigpt.set_seed(0)
        model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=data.tokenizer.vocab_size, **MODEL))
        cfg = minigpt.TrainConfig(max_iters=steps, batch_size=args.batch_size, learning_rate=3e-3,
                                  warmup_iters=0, eval_interval=steps, eval_iters=1, device=args.device,
                                  micro_batch_size=args.micro_batch_size)
        results.append(minigpt.train(model, data, cfg, progress=False))
    if distributed.is_main():
        timed = results[-1]
        print(json.dumps({"world_size": distributed.world().world_size, "threads": torch.get_num_threads(),
                          "tokens_per_second": timed.tokens_per_second, "elapsed_s": timed.elapsed,
                          "final_loss": timed.history["loss"][-1]}), flush=True)
    distributed.shutdown()


def launch(nproc: int, args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if args.device == "cpu":
        env["OMP_NUM_THREADS"] = str(args.threads or max(1, args.cores // nproc))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(Path(__file__).resolve()), "--worker", "--device", args.device, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--batch-size", str(args.batch_size)]
    if args.micro_batch_size:
        cmd += ["--micro-batch-size", str(args.micro_batch_size)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{nproc} processes failed:\n{proc.stderr[-3000:]}")
    line = [l for l in proc.stdout.splitlines() if l.startswith("{")][-1]
    return dict(json.loads(line), wall_s=time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    parser.add_argument("--threads", type=int, help="CPU threads per process (default: cores / processes); "
                        "on a busy machine 1 thread avoids OpenMP threads waiting for each other")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--micro-batch-size", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    runs: dict[int, list[dict]] = {n: [] for n in args.nprocs}
    for repeat in range(args.repeats):
        for n in args.nprocs:
            result = launch(n, args)
            runs[n].append(result)
            print(f"repeat {repeat + 1}: {n} process(es) x {result['threads']} thread(s): "
                  f"{result['tokens_per_second']:,.0f} tokens/s (loss {result['final_loss']:.4f})", flush=True)
    base = statistics.median(r["tokens_per_second"] for r in runs[args.nprocs[0]])
    summary = []
    for n in args.nprocs:
        median = statistics.median(r["tokens_per_second"] for r in runs[n])
        summary.append({"nprocs": n, "median_tokens_per_second": median, "speedup": median / base,
                        "runs": runs[n]})
        print(f"{n} process(es): median {median:,.0f} tokens/s, {median / base:.2f}x "
              f"{args.nprocs[0]} process(es)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"model {MODEL}, global batch {args.batch_size}, {args.steps} timed steps, device {args.device}, "
          f"{args.cores} cores, load average {load}")
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "model": MODEL, "batch_size": args.batch_size, "steps": args.steps,
                                         "device": args.device, "cores": args.cores, "load_average": load,
                                         "results": summary}, indent=1))


if __name__ == "__main__":
    main()
