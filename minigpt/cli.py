"""Command line: `python -m minigpt train | sample | bench | export`.

Every error a user can cause (a bad flag, a missing file, a character the model does not
know, a broken checkpoint, an output folder in use) is printed as one line that says what to
change, with exit status 2, instead of a traceback. Those errors are the package's own
`MiniGPTError`s; anything else is a bug in minigpt and keeps its traceback. Ctrl-C exits
with status 130 and keeps what was done: `train` saves at a step boundary, `sample` has
already printed the text generated so far.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

_T0 = time.perf_counter()   # the command's start, for the total wall time that `train` reports

# Limits that turn an absurd request into a message instead of a run that never ends:
# at ~1 ms a token on a laptop CPU a million tokens is already a quarter of an hour.
MAX_NEW_TOKENS = 1_000_000
MAX_SAMPLES = 1000
MAX_SEED = 2**63 - 1         # torch seeds are 64-bit; evaluation uses seed + 1


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _bounded_int(low: int, high: int, what: str):
    """An argparse type: an integer in [low, high], with the reason for the limit."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {low} to {high:,}, got {value} ({what})")
        return value
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .config import ATTN_IMPLS, POS_ENCODINGS
    from .device import DEVICE_CHOICES
    from .presets import PRESETS

    parser = argparse.ArgumentParser(prog="python -m minigpt",
                                     description="Train, sample and benchmark minigpt models.")
    sub = parser.add_subparsers(dest="command", metavar="{train,sample,bench,export}")
    sub.required = True

    p = sub.add_parser("train", help="train a character-level GPT",
                       description="Train on tinyshakespeare (default) or any UTF-8 text file. "
                                   "Presets: " + "; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()))
    p.add_argument("--preset", default="cpu-quick", choices=sorted(PRESETS), help="recipe (default: cpu-quick)")
    p.add_argument("--text", type=Path, help="UTF-8 text file to train on (default: tinyshakespeare)")
    p.add_argument("--out", type=Path, help="checkpoint folder (default: runs/<preset>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--max-iters", type=_positive_int)
    p.add_argument("--batch-size", type=_positive_int, help="sequences per step (under torchrun: over all processes)")
    p.add_argument("--micro-batch-size", type=_positive_int, help="sequences per forward pass and process (gradient accumulation)")
    p.add_argument("--lr", type=float, dest="learning_rate", help="peak learning rate")
    p.add_argument("--eval-interval", type=_positive_int)
    p.add_argument("--seed", type=_bounded_int(0, MAX_SEED, "torch seeds are 64-bit"))
    p.add_argument("--device", choices=DEVICE_CHOICES)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--n-layer", type=_positive_int)
    p.add_argument("--n-head", type=_positive_int)
    p.add_argument("--n-kv-head", type=_positive_int,
                   help="key/value heads (grouped-query attention; 1 = multi-query); default: --n-head")
    p.add_argument("--n-embd", type=_positive_int)
    p.add_argument("--block-size", type=_positive_int)
    p.add_argument("--dropout", type=float)
    p.add_argument("--pos-encoding", choices=POS_ENCODINGS)
    p.add_argument("--attn-impl", choices=ATTN_IMPLS)
    p.add_argument("--threads", type=_positive_int, help="CPU threads for torch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--sample-tokens", type=_bounded_int(0, MAX_NEW_TOKENS, "split longer texts over several "
                                                       "`sample` commands"),
                   default=300, help="length of the sample printed at the end (0: none)")

    s = sub.add_parser("sample", help="generate text from a checkpoint",
                       description="Generate text from a checkpoint folder, or from the model shipped "
                                   "in the package (--checkpoint pretrained, the default).")
    s.add_argument("--checkpoint", default="pretrained", help="checkpoint folder or 'pretrained'")
    s.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    s.add_argument("--max-new-tokens", type=_bounded_int(1, MAX_NEW_TOKENS, "at ~1 ms a token a million "
                                                         "take a quarter of an hour; run several commands for more"),
                   default=500, help=f"characters to generate (at most {MAX_NEW_TOKENS:,}); printed as they come")
    s.add_argument("--temperature", type=_non_negative, default=0.8, help="0 = greedy")
    s.add_argument("--top-k", type=_positive_int)
    s.add_argument("--top-p", type=_fraction)
    s.add_argument("--num-samples", type=_bounded_int(1, MAX_SAMPLES, "one batch holds them all"), default=1)
    s.add_argument("--seed", type=_bounded_int(0, MAX_SEED, "torch seeds are 64-bit"), default=1337)
    s.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    s.add_argument("--no-cache", action="store_true", help="recompute the whole context every step")

    b = sub.add_parser("bench", help="measure speed and memory",
                       description="Speed and memory benchmarks; each compares two implementations "
                                   "side by side in one process and prints the ratio.")
    b.add_argument("what", nargs="*", default=[], help="any of: peak train attention generate flash quick (default: all but quick)")
    b.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    b.add_argument("--threads", type=_positive_int)
    b.add_argument("--json", type=Path, help="also write the results to this JSON file")

    e = sub.add_parser("export", help="write a weights-only copy of a checkpoint",
                       description="Strip optimizer state and optionally store float16 weights.")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("out", type=Path)
    e.add_argument("--fp16", action="store_true", help="store weights as float16 (half the size)")
    e.add_argument("--force", action="store_true",
                   help="replace the exported model in an existing non-empty OUT (never a training run)")
    return parser


def _pick_device(name: str):
    """pick_device, with its ValueError for a named device that is missing turned into a
    user-facing error (the CLI's --device is the user's choice)."""
    from .device import pick_device
    from .errors import UsageError
    try:
        return pick_device(name)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _check_model_fits(config, device) -> None:
    """Refuse a model whose training state cannot fit in memory, before allocating it (an
    absurd --n-embd or --block-size would otherwise die inside torch's allocator)."""
    import os

    import torch

    from .errors import UsageError
    from .model import MiniGPT
    with torch.device("meta"):              # shapes only: nothing is allocated
        shapes = MiniGPT(config)
    n_params = sum(p.numel() for p in shapes.parameters())
    n_buffers = sum(b.numel() for b in shapes.buffers())
    need = 16 * n_params + 4 * n_buffers    # fp32 weights, gradients, AdamW's two moments; tables
    if device.type == "cuda":
        have = torch.cuda.get_device_properties(device).total_memory
    else:
        try:
            have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):   # not a POSIX system: no limit known
            return
    if need > have:
        raise UsageError(f"this model has {n_params / 1e6:,.1f}M parameters and training it needs about "
                         f"{need / 1e9:,.1f} GB, but the {device.type} has {have / 1e9:,.1f} GB of memory; "
                         "choose a smaller --n-embd, --n-layer or --block-size.")


def _cmd_train(args) -> int:
    import torch

    from .checkpoint import CheckpointError
    from .config import GPTConfig
    from .data import TextData, load_shakespeare, read_text_file
    from .device import describe, set_seed
    from .model import MiniGPT
    from .presets import PRESETS
    from .train import TrainConfig, evaluate, train
    from . import distributed

    distributed.quiet_other_ranks()         # under torchrun, rank 0 prints for the run
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    text = read_text_file(args.text) if args.text else load_shakespeare()
    data = TextData.from_text(text)
    model_kw = dict(preset.model)
    for key in ("n_layer", "n_head", "n_kv_head", "n_embd", "block_size", "dropout", "pos_encoding",
                "attn_impl"):
        if getattr(args, key) is not None:
            model_kw[key] = getattr(args, key)
    train_kw = dict(preset.train)
    for key in ("max_iters", "batch_size", "micro_batch_size", "learning_rate", "eval_interval", "seed", "device"):
        if getattr(args, key) is not None:
            train_kw[key] = getattr(args, key)
    if args.compile:
        train_kw["compile"] = True
    config = GPTConfig(vocab_size=data.tokenizer.vocab_size, **model_kw)
    cfg = TrainConfig(**train_kw)
    out = args.out or Path("runs") / args.preset
    device = _pick_device(cfg.device)
    _check_model_fits(config, device)
    set_seed(cfg.seed)
    model = MiniGPT(config)
    print(f"preset {args.preset}: {model.num_parameters() / 1e6:.2f}M parameters, "
          f"{len(data.train):,} train / {len(data.val):,} val characters, device {describe(device)}")
    print(f"checkpoints -> {out}")

    def report(record):
        print(f"step {record['step']:>6}  train {record['train']:.4f}  val {record['val']:.4f}  "
              f"({record['elapsed']:.0f}s)", flush=True)

    result = train(model, data, cfg, out_dir=out, resume=args.resume,
                   progress=not args.no_progress, callback=report)
    distributed.shutdown()                  # data-parallel part over: rank 0 evaluates and writes
    if not distributed.is_main():
        return 0
    val_loss = evaluate(result.model, data.val, use_autocast=cfg.autocast)
    print(f"trained {result.steps} steps; {result.tokens_per_second:,.0f} tokens/s")
    if args.sample_tokens > 0:
        prompt = "\n" if "\n" in data.tokenizer.stoi else data.tokenizer.chars[0]
        idx = torch.tensor([data.tokenizer.encode(prompt)], device=result.model.device)
        generator = torch.Generator().manual_seed(cfg.seed)     # CPU: same draws on any device
        out_ids = result.model.generate(idx, args.sample_tokens, temperature=0.8, top_k=40,
                                        generator=generator)
        print("--- sample (temperature 0.8, top-k 40) ---")
        print(data.tokenizer.decode(out_ids[0]))
        print("---")
    wall = time.perf_counter() - _T0
    print(f"val_loss {val_loss:.4f}  (whole validation split, {len(data.val):,} characters)")
    print(f"wall_time {wall:.1f}s  (whole command, start-up included)")
    summary = {"preset": args.preset, "val_loss": val_loss, "wall_time_s": wall, "steps": result.steps,
               "tokens_per_second": result.tokens_per_second, "device": describe(device),
               "torch": torch.__version__}
    try:
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    except OSError as err:
        raise CheckpointError(f"could not write {str(out / 'summary.json')!r} ({err.strerror or err}); "
                              f"the checkpoint {str(result.checkpoint)!r} is saved.") from None
    return 0


def _generate_streaming(model, idx, max_new_tokens: int, on_tokens, **sampling):
    """model.generate in growing chunks (1, 2, 4, ... 64 tokens), calling on_tokens(new_ids)
    after each, so text appears as it is made and Ctrl-C loses nothing already printed.

    Each chunk continues from the last block_size tokens (all the model can see) with the same
    random generator, so the text follows the same distribution as one generate call; only
    the cache is rebuilt per chunk, which costs one prompt-length forward pass per chunk.
    """
    import torch

    block_size = model.config.block_size
    chunk, done = 1, 0
    while done < max_new_tokens:
        n = min(chunk, max_new_tokens - done)
        context = idx[:, -block_size:]
        new = model.generate(context, n, **sampling)[:, context.size(1):]       # (B, n)
        idx = torch.cat((context, new), dim=1)
        on_tokens(new)
        done += n
        chunk = min(2 * chunk, 64)


def _cmd_sample(args) -> int:
    import torch

    from .checkpoint import load_model
    from .errors import UsageError
    from .pretrained import pretrained_path

    device = _pick_device(args.device)
    path = pretrained_path() if args.checkpoint == "pretrained" else args.checkpoint
    model, tokenizer = load_model(path, device)
    ids = tokenizer.encode(args.prompt)
    if not ids:
        raise UsageError("the prompt is empty; pass at least one character, e.g. --prompt 'ROMEO:'.")
    idx = torch.tensor([ids] * args.num_samples, device=device)
    generator = torch.Generator().manual_seed(args.seed)    # CPU: a seed means the same on any device
    sampling = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                    use_cache=not args.no_cache, generator=generator)
    if args.num_samples == 1:              # stream: each chunk is printed as soon as it exists
        print(args.prompt, end="", flush=True)
        try:
            _generate_streaming(model, idx, args.max_new_tokens,
                                lambda new: print(tokenizer.decode(new[0]), end="", flush=True), **sampling)
        finally:
            print(flush=True)              # end the line, also when interrupted
        return 0
    texts = [args.prompt] * args.num_samples

    def collect(new):
        for i in range(args.num_samples):
            texts[i] += tokenizer.decode(new[i])

    try:
        _generate_streaming(model, idx, args.max_new_tokens, collect, **sampling)
    finally:                               # on Ctrl-C, print what each sample has so far
        for i, text in enumerate(texts):
            print(f"--- sample {i + 1} ---")
            print(text)
    return 0


def _cmd_bench(args) -> int:
    # The benchmarks live in the repository's bench/ folder, not in the installed package;
    # a checkout (or an editable install of one) has it next to minigpt/.
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "bench" / "harness.py").is_file():
        sys.path.insert(0, str(checkout))
    try:
        from bench.harness import run_benchmarks
    except ModuleNotFoundError as err:
        if err.name not in ("bench", "bench.harness"):
            raise
        print("error: the benchmarks are not part of the installed package; run `python -m bench` "
              "from the root of a checkout of the minigpt repository.", file=sys.stderr)
        return 2
    run_benchmarks(args.what, device=args.device, threads=args.threads, json_path=args.json)
    return 0


def _cmd_export(args) -> int:
    import torch

    from .checkpoint import export_model, load_checkpoint
    ckpt = load_checkpoint(args.checkpoint)
    info = {k: v for k, v in ckpt.train_state.items() if k not in ("history", "optimizer_param_groups")}
    summary = Path(args.checkpoint) / "summary.json"     # written by `train` next to its steps
    if summary.is_file():
        try:
            info["summary"] = json.loads(summary.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:             # the export does not need it
            warnings.warn(f"{str(summary)!r} is unreadable ({err}); exporting without it.")
    export_model(ckpt.model, ckpt.tokenizer, args.out, torch.float16 if args.fp16 else None, info,
                 overwrite=args.force)
    size = (args.out / "model.safetensors").stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.1f} MB of weights)")
    return 0


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (e.g. resuming with other settings) as one line on stderr, without source lines."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:              # Ctrl-C anywhere, start-up included
        print("\ninterrupted", file=sys.stderr)
        return 130


def _main(argv: Optional[Sequence[str]]) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export-web"]:         # the book's in-page model: minigpt.web has its own parser
        from .web.export import main as export_web_main
        return export_web_main(argv[1:])
    args = build_parser().parse_args(argv)
    from .errors import MiniGPTError
    handlers = {"train": _cmd_train, "sample": _cmd_sample, "bench": _cmd_bench, "export": _cmd_export}
    with warnings.catch_warnings():
        warnings.showwarning = _print_warning
        try:
            return handlers[args.command](args)
        except MiniGPTError as err:            # only the package's own user-facing errors:
            print(f"error: {err}", file=sys.stderr)   # anything else is a bug and keeps its traceback
            return 2
