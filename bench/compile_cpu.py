"""Does `--compile` pay on this CPU? The `cpu-quick` preset's training step, eager against
torch.compile, in one process, alternating rounds so both sides see the same machine load.

    python -m bench.compile_cpu [--rounds 3] [--steps 10] [--preset cpu-quick] [--dropout P]

Reports the compilation time (the first compiled step), the median step of each side, and how
many steps a run needs before compiling has paid for itself (never, if compiled steps are slower).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Optional, Sequence

import torch


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compile_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu-quick")
    parser.add_argument("--dropout", type=float, help="override the preset's dropout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per side and round")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--backend", default="inductor",
                        help="torch.compile backend ('eager' only checks this script: no code is generated)")
    args = parser.parse_args(argv)

    from minigpt import GPTConfig, MiniGPT, TextData, TrainConfig, get_batch, make_optimizer
    from minigpt.device import describe, pick_device, tune_cpu_allocator
    from minigpt.presets import PRESETS
    from minigpt.run_folder import write_text_atomically

    device = pick_device("cpu")
    tune_cpu_allocator()
    preset = PRESETS[args.preset]
    data = TextData.shakespeare()
    model_kw = dict(preset.model, **({"dropout": args.dropout} if args.dropout is not None else {}))
    config = GPTConfig(vocab_size=data.tokenizer.vocab_size, **model_kw)
    cfg = TrainConfig(**{**preset.train, "device": "cpu"})
    torch.manual_seed(0)
    model = MiniGPT(config).train()
    optimizer = make_optimizer(model, cfg, device)
    compiled = torch.compile(model, backend=args.backend)
    gen = torch.Generator().manual_seed(0)

    def step(forward) -> float:
        start = time.perf_counter()
        x, y = get_batch(data.train, config.block_size, cfg.batch_size, gen)
        _, loss = forward(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        return time.perf_counter() - start

    for _ in range(3):                                   # eager warm-up (allocator, caches)
        step(model)
    compile_s = step(compiled)                           # the first compiled step compiles
    for _ in range(2):                                   # the backward graph's first run, too
        step(compiled)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(args.rounds):
        for name, forward in (("eager", model), ("compiled", compiled)):
            times[name] += [step(forward) for _ in range(args.steps)]
    eager, comp = (statistics.median(times[k]) for k in ("eager", "compiled"))
    saving = eager - comp
    result = {"device": describe(device), "torch": torch.__version__, "preset": args.preset, "backend": args.backend,
              "dropout": config.dropout, "batch_size": cfg.batch_size, "first_compiled_step_s": compile_s,
              "eager_step_ms": eager * 1e3, "compiled_step_ms": comp * 1e3, "speedup": eager / comp,
              "break_even_steps": (compile_s / saving) if saving > 0 else None,
              "all_ms": {k: [round(t * 1e3, 2) for t in v] for k, v in times.items()},
              "load_average": list(__import__("os").getloadavg())}
    print(f"device {result['device']}, torch {result['torch']}, preset {args.preset} (dropout {config.dropout}, "
          f"batch {cfg.batch_size}), load average {result['load_average'][0]:.1f}")
    print(f"first compiled step (compiling): {compile_s:.1f} s")
    print(f"median step over {args.rounds} alternating rounds of {args.steps}: eager {eager * 1e3:.1f} ms, "
          f"compiled {comp * 1e3:.1f} ms ({eager / comp:.2f}x)")
    if saving > 0:
        print(f"compiling pays for itself after {compile_s / saving:,.0f} steps "
              f"(the preset runs {cfg.max_iters:,})")
    else:
        print("compiled steps are not faster: compiling never pays on this machine")
    if args.json:
        json_path = Path(args.json).resolve()     # whole or not at all, as bench --json
        write_text_atomically(json_path.parent, json_path.name, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
