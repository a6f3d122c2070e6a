"""The benchmarks' child processes: `python -m bench.child train ...` and `python -m bench.child nanogpt`.

Each side of a comparison that must not share a process with the other (allocator state,
heap growth, threads) runs here, started by `bench.harness`, and prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
from typing import Optional, Sequence

import torch

from minigpt import GPTConfig, MiniGPT
from minigpt.device import autocast, pick_device, time_calls, tune_cpu_allocator
from minigpt.train import TrainConfig, make_optimizer

from .mfu import matmul_peak, step_matmuls
from .seed_model import SeedGPT, seed_copy_of


def train_steps(which: str, steps: int, batch_size: int = 64, device: str = "auto") -> dict:
    """One side of the training benchmark: step times of the seed configuration (dropout 0.1).

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
    return {"step_s": times, "matmuls_only_s": matmuls_only, "peak": matmul_peak(device)}


def nanogpt_recipe() -> dict:
    """nanoGPT's README CPU recipe, re-implemented on the seed model; returns the final val loss.

    4 layers, 4 heads, 128 wide, block 64, batch 12, 2000 iterations, AdamW lr 1e-3 with
    100 warm-up steps and cosine decay to 1e-4, betas (0.9, 0.99), weight decay 0.1,
    clipping 1.0, dropout 0, and its evaluation of 20 batches per split every 250 steps.
    The final number is the same whole-validation-split loss `train` reports.
    """
    from minigpt.data import TextData, get_batch
    from minigpt.train import estimate_loss, evaluate
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
    return {"val_loss": evaluate(model, data.val)}


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.child")
    sub = parser.add_subparsers(dest="job", required=True)
    t = sub.add_parser("train", help="time training steps of one side")
    t.add_argument("which", choices=("seed", "minigpt"))
    t.add_argument("--steps", type=int, default=3)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--device", default="auto")
    sub.add_parser("nanogpt", help="nanoGPT's CPU recipe on the seed model")
    args = parser.parse_args(argv)
    if args.job == "train":
        result = train_steps(args.which, args.steps, args.batch_size, args.device)
    else:
        result = nanogpt_recipe()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
