"""Benchmarks (not tests): `python -m minigpt bench [peak] [train] [attention] [generate] [flash] [quick]`.

Every comparison runs both sides in this one process, interleaved, and prints the ratio,
because on a shared 2-core machine absolute numbers swing by 2x from one minute to the
next while same-run ratios hold. The reference side is `SeedGPT` below: our own
re-implementation of the seed chapter's model (explicit mask buffer, dropout on the
attention matrix, a generate loop that recomputes the whole context every token).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import GPTConfig
from .device import (autocast, best_ms, describe, pick_device, synchronize, time_calls,
                     tune_cpu_allocator)
from .model import MiniGPT
from .train import TrainConfig, make_optimizer

ALL_BENCHMARKS = ("peak", "train", "attention", "generate", "flash", "quick")
DEFAULT_BENCHMARKS = ("peak", "train", "attention", "generate", "flash")


# ------------------------------------------------------------ seed reference model
class SeedAttention(nn.Module):
    """The seed's attention: a (1, 1, T, T) mask buffer, softmax, dropout, weighted sum."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim = c.n_head, c.n_embd // c.n_head
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd)
        self.attn_dropout, self.resid_dropout = nn.Dropout(c.dropout), nn.Dropout(c.dropout)
        self.register_buffer("mask", torch.tril(torch.ones(c.block_size, c.block_size))[None, None])

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
        att = self.attn_dropout(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class SeedMLP(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c_fc, self.gelu = nn.Linear(c.n_embd, 4 * c.n_embd), nn.GELU()
        self.c_proj, self.dropout = nn.Linear(4 * c.n_embd, c.n_embd), nn.Dropout(c.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class SeedBlock(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(c.n_embd), SeedAttention(c)
        self.ln_2, self.mlp = nn.LayerNorm(c.n_embd), SeedMLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class SeedGPT(nn.Module):
    """Same parameter names as MiniGPT, so `load_state_dict(minigpt.state_dict())` works."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.config = c
        self.wte, self.wpe = nn.Embedding(c.vocab_size, c.n_embd), nn.Embedding(c.block_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(SeedBlock(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight

    def forward(self, idx, targets=None):
        T = idx.size(1)
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        for _ in range(max_new_tokens):
            idx_cond = idx[:, -self.config.block_size:]
            logits = self(idx_cond)[0][:, -1, :]
            if temperature == 0:       # the seed divides by temperature; we allow greedy here
                next_id = logits.argmax(-1, keepdim=True)
            else:
                probs = F.softmax(logits / temperature, dim=-1)
                next_id = torch.multinomial(probs, 1)
            idx = torch.cat((idx, next_id), dim=1)
        return idx


def seed_copy_of(model: MiniGPT) -> SeedGPT:
    seed = SeedGPT(model.config).to(model.device)
    missing, unexpected = seed.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(k.endswith("attn.mask") for k in missing), (missing, unexpected)
    return seed


# ----------------------------------------------------------------------- helpers
def _matmul_dtype(device: torch.device) -> torch.dtype:
    """What the benchmarks multiply in: bf16 on CUDA (autocast's type), fp32 on a CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """Measured dense matmul throughput in FLOP/s (fp32 on CPU, bf16 on CUDA)."""
    dtype = _matmul_dtype(device)
    n = 8192 if device.type == "cuda" else n
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    c = torch.empty_like(a)
    for _ in range(2):
        torch.mm(a, b, out=c)
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b, out=c)            # into a reused buffer: time the arithmetic, not page faults
        synchronize(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def train_flops_per_token(config: GPTConfig, n_params: int) -> float:
    """6N for the matmuls (forward + backward) plus the attention score/value products."""
    L, H, Q, T = config.n_layer, config.n_head, config.head_dim, config.block_size
    return 6 * n_params + 6 * L * H * Q * T   # causal: half of nanoGPT's 12*L*H*Q*T is masked


def step_matmuls(config: GPTConfig, batch_size: int, device: torch.device):
    """A function that runs only the matrix products of one training step of `config`.

    Same shapes, same count, same order of layers: per linear layer the forward product and
    the two backward ones (input and weight gradients), per attention layer the 2 forward
    and 4 backward batched products. Timing it next to a real step shows how far a step of
    this model could get if everything that is not a matmul were free (a ceiling on MFU).
    """
    dtype = _matmul_dtype(device)
    N, C, H, T, D = batch_size * config.block_size, config.n_embd, config.n_head, config.block_size, config.head_dim
    kv = config.n_kv_head * D
    linears = [(C, C + 2 * kv), (C, C), (C, 4 * C), (4 * C, C)]           # (in, out) per block
    new = lambda *shape: torch.randn(*shape, device=device, dtype=dtype)  # noqa: E731
    acts = {w: new(N, w) for w in {C, C + 2 * kv, 4 * C, config.vocab_size}}
    weights = {(i, o): new(o, i) for i, o in linears + [(C, config.vocab_size)]}
    bias = new(config.block_size, config.block_size)
    q, scores = new(batch_size * H, T, D), new(batch_size * H, T, T)

    def run():
        for _ in range(config.n_layer):
            for i, o in linears:
                torch.mm(acts[i], weights[(i, o)].t())                     # forward
                torch.mm(acts[o], weights[(i, o)])                         # grad of the input
                torch.mm(acts[o].t(), acts[i])                             # grad of the weight
            torch.baddbmm(bias, q, q.transpose(1, 2))                      # scores
            torch.bmm(scores, q)                                           # weights @ v
            for a, b in ((scores.transpose(1, 2), q), (q, q.transpose(1, 2)), (scores, q),
                         (scores.transpose(1, 2), q)):                     # the 4 gradients
                torch.bmm(a, b)
        i, o = C, config.vocab_size
        torch.mm(acts[i], weights[(i, o)].t()); torch.mm(acts[o], weights[(i, o)]); torch.mm(acts[o].t(), acts[i])
    return run


# -------------------------------------------------------------------- benchmarks
def _train_child(which: str, steps: int, batch_size: int = 64, device: str = "auto") -> None:
    """One side of the training benchmark, in a fresh process (prints JSON step times).

    "seed" runs the seed model as it would run on its own (default allocator); "minigpt" runs
    our model the way `minigpt.train` runs it on a CPU (allocator tuned, fast dropout mask).
    """
    device = pick_device(device)
    if which == "minigpt" and device.type == "cpu":
        tune_cpu_allocator()
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=65)
    ours = MiniGPT(config).to(device)
    model = seed_copy_of(ours) if which == "seed" else ours
    model.train()
    x = torch.randint(0, 65, (batch_size, config.block_size), device=device)
    y = torch.randint(0, 65, (batch_size, config.block_size), device=device)
    opt = make_optimizer(model, TrainConfig(), device)

    def step():
        with autocast(device):
            _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    # warm-up: the first steps also grow the heap (activations, gradients, AdamW state) and
    # page-fault every new page; from the third step on a step reuses the memory of the last
    time_calls(step, 3, device)
    times, matmuls_only = [], []
    only_matmuls = step_matmuls(config, batch_size, device) if which == "minigpt" else None
    for _ in range(steps):     # a real step, then its matmuls alone: both see the same load
        times += time_calls(step, 1, device)
        if only_matmuls:
            matmuls_only += time_calls(only_matmuls, 1, device)
    # the peak is measured again here, seconds after the steps, because the speed of a
    # shared machine drifts from minute to minute: MFU compares like with like
    print(json.dumps({"step_s": times, "matmuls_only_s": matmuls_only, "peak": matmul_peak(device)}))


def bench_train(device: torch.device, peak: Optional[float], steps: int = 3, rounds: int = 3,
                batch_size: int = 64) -> dict:
    """Seed configuration (dropout 0.1): the seed model vs minigpt, each in its own process,
    alternating seed / minigpt / seed / minigpt so both see the same machine load."""
    config = GPTConfig(vocab_size=65)
    times: dict[str, list[float]] = {"seed": [], "minigpt": []}
    peaks: list[float] = [peak] if peak else []
    matmuls_only: list[float] = []
    for _ in range(rounds):
        for which in times:
            code = (f"from minigpt.bench import _train_child; "
                    f"_train_child({which!r}, {steps}, {batch_size}, {device.type!r})")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env=dict(os.environ, CUDA_VISIBLE_DEVICES="" if device.type == "cpu" else
                                          os.environ.get("CUDA_VISIBLE_DEVICES", "0")))
            child = json.loads(out.stdout.strip().splitlines()[-1])
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
    ours.generate(prompt, 8, temperature=0)           # warm-up
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


_MEMORY_CHILD = r"""
import resource, sys, torch
from minigpt.attention import manual_attention, flash_attention
impl, T = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
q, k, v = (torch.randn(1, 8, T, 32) for _ in range(3))


def peak_bytes():
    # VmHWM is this process's own high-water mark; ru_maxrss also counts the parent's memory
    # at fork time (kept across exec), which hides anything smaller than the parent.
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


try:   # Linux: reset the high-water mark to the current RSS, so start-up peaks do not count
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
base = peak_bytes()
with torch.no_grad():
    out = (manual_attention if impl == "manual" else flash_attention)(q, k, v) if impl != "none" else q
print(peak_bytes() - base)
"""


def bench_attention(device: torch.device, rounds: int = 12) -> dict:
    """Training-time attention with dropout 0.1 in the seed shapes (64 x 8 heads x 128 x 32),
    forward + backward: `manual_attention` vs `dropout_attention`, alternating, in this process."""
    from .attention import dropout_attention, manual_attention
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
    """Extra peak memory of one forward pass (batch 1, 8 heads, head size 32)."""
    result = {"T": T}
    if device.type == "cuda":
        from .attention import flash_attention, manual_attention
        q, k, v = (torch.randn(1, 8, T, 32, device=device) for _ in range(3))
        for name, fn in (("manual", manual_attention), ("flash", flash_attention)):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            with torch.no_grad():
                fn(q, k, v)
            torch.cuda.synchronize()
            result[f"{name}_bytes"] = torch.cuda.max_memory_allocated() - before
        result["method"] = "torch.cuda.max_memory_allocated"
    else:
        # A fresh process per implementation; peak resident memory minus its value before.
        # Allocations of 64 KiB and more go straight to mmap and back to the OS when freed,
        # so the high-water mark counts what was live at once, not what malloc kept around.
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        for name in ("manual", "flash"):
            out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, name, str(T)],
                                 capture_output=True, text=True, check=True, env=env)
            result[f"{name}_bytes"] = int(out.stdout.strip().splitlines()[-1])
        result["method"] = "peak RSS growth in a fresh process (VmHWM)"
    result["ratio_flash_over_manual"] = result["flash_bytes"] / max(result["manual_bytes"], 1)
    return result


def nanogpt_recipe_run() -> None:
    """nanoGPT's README CPU recipe, re-implemented on the seed model (prints one JSON line).

    4 layers, 4 heads, 128 wide, block 64, batch 12, 2000 iterations, AdamW lr 1e-3 with
    100 warm-up steps and cosine decay to 1e-4, betas (0.9, 0.99), weight decay 0.1,
    clipping 1.0, dropout 0, and its evaluation of 20 batches per split every 250 steps.
    The final number is the same whole-validation-split loss `train` reports.
    """
    from .data import TextData, get_batch
    from .train import estimate_loss, evaluate
    torch.manual_seed(1337)
    data = TextData.shakespeare()
    config = GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=64, n_layer=4, n_head=4,
                       n_embd=128, dropout=0.0)
    model = SeedGPT(config)
    model.apply(MiniGPT._init_weights)
    model.device = torch.device("cpu")          # estimate_loss/evaluate read model.device
    cfg = TrainConfig(max_iters=2000, batch_size=12, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100)
    opt = make_optimizer(model, cfg, model.device)
    gen = torch.Generator().manual_seed(1337)
    for step in range(cfg.max_iters + 1):
        if step % 250 == 0:
            estimate_loss(model, data, 12, 20, seed=0)
        if step == cfg.max_iters:
            break
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(step)
        x, y = get_batch(data.train, 64, 12, gen)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    print(json.dumps({"val_loss": evaluate(model, data.val)}))


def bench_quick(device: torch.device) -> dict:
    """Time-to-quality, whole commands with start-up: nanoGPT's CPU recipe vs `--preset cpu-quick`."""
    out_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"minigpt-bench-quick-{os.getpid()}"
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
        proc = subprocess.run([sys.executable, "-c", "from minigpt.bench import nanogpt_recipe_run as r; r()"],
                              capture_output=True, text=True, check=True)
        result["nanogpt_recipe"] = {"wall_s": time.perf_counter() - t,
                                    "val_loss": json.loads(proc.stdout.splitlines()[-1])["val_loss"]}
    return result


def run_benchmarks(what=(), device="auto", threads: Optional[int] = None,
                   json_path: Optional[Path] = None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    device = pick_device(device)
    what = list(what) or list(DEFAULT_BENCHMARKS)
    unknown = [w for w in what if w not in ALL_BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {', '.join(ALL_BENCHMARKS)}.")
    results: dict = {"device": describe(device), "torch": torch.__version__}
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
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=1))
    return results
