"""Measure the numbers the book quotes but no cell of it prints: `python -m bench.answers`.

Chapter 8's exercise answers (8.4 warm-up, 8.5 weight decay, 8.6 depth), its "What to
expect" rows for torch's other CPU kernels, the instructor guide's one-thread run, chapters 1
and 6's small models on one and on two threads, and the page *Running the book*'s imitated T4
run of chapter 6 each cost seconds to minutes of training under settings a chapter cannot
change once torch has loaded, or too many minutes for a chapter that nbval runs on every commit. This script runs them all (about
20 minutes on a 2-core CPU), each in its own process, so the kernel choice
(`ATEN_CPU_CAPABILITY`, read once when torch loads) and the thread count are set before
anything runs; the prose quotes its log, `bench/results/cpu_2core_answers.log`, and
`tests/test_prose_numbers.py` checks that every four-decimal number in the prose is printed
by a cell or found in such a log.

    python -m bench.answers                       # everything, log to stdout
    python -m bench.answers warmup depth          # some of it
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent

# name -> (what the book says about it, the child processes: (label, extra environment, args))
MEASUREMENTS = {
    "warmup": ("exercise 8.4: the book preset at peak lr 1e-2, without and with its warm-up",
               [("one thread", {}, ["--threads", "1"])]),
    "weight-decay": ("exercise 8.5: the book preset with weight_decay 0.0 and 0.1",
                     [("one thread", {}, ["--threads", "1"])]),
    "depth": ("exercise 8.6: the loss ladder's full-model rung with 2, 4 and 6 blocks",
              [("one thread", {}, ["--threads", "1"])]),
    "kernels": ("chapter 8's table: the book preset under torch's three x86 CPU kernels, two threads",
                [(f"ATEN_CPU_CAPABILITY={kernel}", {"ATEN_CPU_CAPABILITY": kernel}, ["--threads", "2"])
                 for kernel in ("default", "avx2", "avx512")]),
    "threads": ("instructor guide: `train --preset cpu-quick` on one and on two threads",
                [(f"--threads {n}", {}, ["--threads", str(n)]) for n in (1, 2)]),
    "small-threads": ("chapters 1 and 6 train their small models on one thread: the same runs on one and on two",
                      [(f"--threads {n}", {}, ["--threads", str(n)]) for n in (1, 2)]),
    "t4-post-ln": ("running.md: chapter 6's Post-LN run in imitated T4 fp16 (autocast and scaler on)",
                   [("one thread", {}, ["--threads", "1"])]),
    "chapter-kernels": ("chapters 6, 8, 15 and 16 ('the same four decimals under the three kernels'): "
                        "every checked number, run top to bottom under each kernel",
                        # MINIGPT_THREADS: the kernels' thread count, fixed (the floats depend on it)
                        [(kernel, {"ATEN_CPU_CAPABILITY": kernel, "MINIGPT_THREADS": "2"}, ["--threads", "2"])
                         for kernel in ("default", "avx2", "avx512")]),
}
KERNEL_CHAPTERS = ("06_layernorm_residuals_preln", "08_training", "15_subword_tokens", "16_fine_tuning_lora")
CHECKED = re.compile(r"^(.*?) ≈ (-?\d+\.\d+) \(book: ")     # a line printed by minigpt.expect


# ------------------------------------------------------------------ the measurements (children)
def book_losses_and_val(**changes):
    """Chapter 8's `book` run (same config, seed and batches) with `changes` to its TrainConfig:
    (per-step training losses, `evaluate` over the whole validation split, seconds)."""
    import torch
    import minigpt

    data = minigpt.TextData.shakespeare()
    book = minigpt.PRESETS["book"]
    config = minigpt.GPTConfig(vocab_size=data.tokenizer.vocab_size, **book.model)
    train_config = replace(minigpt.TrainConfig(**book.train, device="cpu"), **changes)
    torch.manual_seed(train_config.seed)
    start = time.perf_counter()
    result = minigpt.train(minigpt.MiniGPT(config), data, train_config, progress=False)
    seconds = time.perf_counter() - start
    return result.history["loss"], minigpt.evaluate(result.model, data.val), seconds


def measure_warmup() -> None:
    # the book's own run (lr 4e-3, with warm-up) is measure_weight_decay's weight_decay 0.1
    for label, changes in (("no warm-up, lr 1e-2", dict(warmup_iters=0, learning_rate=1e-2)),
                           ("with warm-up, lr 1e-2", dict(learning_rate=1e-2))):
        losses, val, seconds = book_losses_and_val(**changes)
        first = " -> ".join(f"{loss:.2f}" for loss in losses[:4])
        print(f"{label:22s}: steps 1-4 {first}; steps 5-20 between {min(losses[4:20]):.2f} and "
              f"{max(losses[4:20]):.2f}; step 50 {losses[49]:.2f}; evaluate val {val:.4f} after "
              f"{len(losses)} steps ({seconds:.0f} s)")


def measure_weight_decay() -> None:
    for decay in (0.0, 0.1):
        _, val, seconds = book_losses_and_val(weight_decay=decay)
        print(f"weight_decay {decay}: evaluate val {val:.4f} ({seconds:.0f} s)")


def measure_depth() -> None:
    import minigpt
    from minigpt import ladder

    data = minigpt.TextData.shakespeare()
    model_config, train_config = ladder.default_settings(data.tokenizer.vocab_size)
    for n_layer in (2, 4, 6):
        start = time.perf_counter()
        (rung,) = ladder.run_ladder(data, replace(model_config, n_layer=n_layer), train_config,
                                    rungs=("full model",))
        print(f"{n_layer} blocks: val {rung.val_loss:.4f}, {rung.params:,} parameters "
              f"({time.perf_counter() - start:.0f} s)")


def measure_kernels() -> None:
    import torch

    _, val, seconds = book_losses_and_val()
    print(f"CPU kernels {torch.backends.cpu.get_cpu_capability()}: evaluate val {val:.4f} ({seconds:.0f} s)")


def measure_threads() -> None:
    import torch

    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "minigpt", "train", "--preset", "cpu-quick",
                   "--threads", str(torch.get_num_threads()), "--out", str(Path(out) / "run")]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    final = re.findall(r"^val_loss (\d+\.\d+)", done.stdout, re.MULTILINE)   # the command's last lines
    if not final:
        raise RuntimeError(f"no 'val_loss' line in the output of {' '.join(command)}:\n{done.stdout[-2000:]}")
    print(f"cpu-quick on {torch.get_num_threads()} thread(s): val loss {float(final[-1]):.4f} "
          f"(whole command {seconds:.0f} s)")


def measure_small_threads() -> None:
    import torch
    import torch.nn.functional as F
    import minigpt

    threads = torch.get_num_threads()
    data = minigpt.TextData.shakespeare()
    V = data.tokenizer.vocab_size
    # chapter 1: the all-zero bigram table, 500 AdamW steps of 32 x 32 characters
    table = torch.nn.Embedding(V, V)
    torch.nn.init.zeros_(table.weight)
    generator = torch.Generator().manual_seed(42)
    optimizer = torch.optim.AdamW(table.parameters(), lr=0.1)
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(500):
        x, y = minigpt.get_batch(data.train, block_size=32, batch_size=32, generator=generator)
        loss = F.cross_entropy(table(x).view(-1, V), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    print(f"chapter 1's bigram table, 500 steps, {threads} thread(s): last loss {loss.item():.4f}, "
          f"{time.perf_counter() - start:.2f} s ({time.process_time() - start_cpu:.2f} s of CPU time)")
    # chapter 6: its Pre-LN run (10 blocks, 48 channels, 150 steps of 16 x 32), as in its cell
    config = minigpt.GPTConfig(vocab_size=V, block_size=32, n_embd=48, n_head=4, n_layer=10, dropout=0.0)
    train_config = minigpt.TrainConfig(max_iters=150, batch_size=16, learning_rate=1e-3, warmup_iters=0,
                                       grad_clip=1e6, eval_interval=150, eval_iters=5, seed=1, device="cpu",
                                       autocast=False)
    torch.manual_seed(0)
    start, start_cpu = time.perf_counter(), time.process_time()
    history = minigpt.train(minigpt.MiniGPT(config), data, train_config, progress=False).history
    print(f"chapter 6's Pre-LN run, 150 steps, {threads} thread(s): val estimate {history['eval'][-1]['val']:.4f}, "
          f"{time.perf_counter() - start:.2f} s ({time.process_time() - start_cpu:.2f} s of CPU time)")


def measure_t4_post_ln() -> None:
    import torch
    import minigpt
    from bench.t4_imitation import install

    counts = install()
    data = minigpt.TextData.shakespeare()
    config = minigpt.GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=32, n_embd=48,
                               n_head=4, n_layer=10, dropout=0.0, norm="post")
    # chapter 6's Post-LN run as it was before it asked for float32 (autocast left on)
    train_config = minigpt.TrainConfig(max_iters=150, batch_size=16, learning_rate=1e-3, warmup_iters=0,
                                       grad_clip=1e6, eval_interval=150, eval_iters=5, seed=1, device="cpu")
    torch.manual_seed(0)
    history = minigpt.train(minigpt.MiniGPT(config), data, train_config, progress=False).history
    # a step the scaler skips has a gradient that overflowed fp16: its recorded norm is inf or nan
    skipped = [step + 1 for step, norm in enumerate(history["grad_norm"]) if not math.isfinite(norm)]
    print(f"Post-LN, fp16 autocast + scaler: val estimate {history['eval'][-1]['val']:.4f} after 150 steps; "
          f"{counts['scaler_updates']} scaler updates, {counts['skipped_steps']} skipped, at step(s) {skipped}")


def measure_chapter_kernels() -> None:
    import nbformat
    from nbclient import NotebookClient

    for chapter in KERNEL_CHAPTERS:
        notebook = nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", as_version=4)
        start = time.perf_counter()
        # the kernel is a child of this process, so it inherits ATEN_CPU_CAPABILITY
        NotebookClient(notebook, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
        for cell in notebook.cells:
            for output in cell.get("outputs", []):
                for line in output.get("text", "").splitlines():
                    if CHECKED.match(line):
                        print(f"{chapter[:2]} | {line}")
        print(f"{chapter[:2]} | ran in {time.perf_counter() - start:.0f} s", flush=True)


def compare_kernels(lines: dict[str, list[str]]) -> None:
    """The largest difference, over the kernels, of each number the chapters check."""
    values: dict[str, list[float]] = {}
    for kernel_lines in lines.values():
        for line in kernel_lines:
            chapter, _, checked = line.partition(" | ")
            found = CHECKED.match(checked)
            if found:
                values.setdefault(f"{chapter} {found.group(1).strip()}", []).append(float(found.group(2)))
    complete = {label: v for label, v in values.items() if len(v) == len(lines)}
    if not complete:
        print("  no number was printed under every kernel")
        return
    differ = {label: v for label, v in complete.items() if max(v) != min(v)}
    print(f"  {len(complete)} checked numbers under {len(lines)} kernels ({', '.join(lines)}): "
          f"{len(complete) - len(differ)} identical to four decimals, {len(differ)} not:")
    for label, v in differ.items():
        print(f"    {label}: {', '.join(f'{x:.4f}' for x in v)} (spread {max(v) - min(v):.4f})")


CHILDREN = {"warmup": measure_warmup, "weight-decay": measure_weight_decay, "depth": measure_depth,
            "kernels": measure_kernels, "threads": measure_threads, "small-threads": measure_small_threads,
            "t4-post-ln": measure_t4_post_ln, "chapter-kernels": measure_chapter_kernels}


# ------------------------------------------------------------------------------- the parent
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.answers", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"what to measure (default: all): {', '.join(MEASUREMENTS)}")
    parser.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in MEASUREMENTS]
    if unknown:
        parser.error(f"unknown measurement(s) {', '.join(unknown)}; choose from {', '.join(MEASUREMENTS)}")
    if args.child:
        import torch
        torch.set_num_threads(args.threads)
        CHILDREN[args.child]()
        return 0

    from .provenance import log_header
    print(log_header("python -m bench.answers"), flush=True)
    failed = 0
    for name in args.names or MEASUREMENTS:
        what, children = MEASUREMENTS[name]
        print(f"\n## {name}: {what}", flush=True)
        printed = {}
        for label, extra_env, child_args in children:
            env = {**os.environ, **extra_env, "PYTHONPATH": str(ROOT)}
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "bench.answers", "--child", name, *child_args],
                                  capture_output=True, text=True, cwd=ROOT, env=env)
            lines = done.stdout.strip().splitlines() or ["(no output)"]
            printed[label] = lines
            for line in lines:
                print(f"  [{label}] {line}", flush=True)
            if done.returncode != 0:
                failed += 1
                print(f"  [{label}] FAILED after {time.perf_counter() - start:.0f} s:\n{done.stderr[-3000:]}",
                      flush=True)
        if name == "chapter-kernels":
            compare_kernels(printed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
