"""Command line: `python -m minigpt train | sample | bench | export | export-web`.

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
import os
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


def thread_count(text: str) -> int:
    """An argparse type for --threads: a positive integer, at most `cpu.max_threads()`."""
    from .cpu import max_threads
    value = _positive_int(text)
    cpus = os.cpu_count() or 1
    if value > max_threads():
        raise argparse.ArgumentTypeError(f"{value} threads on a machine with {cpus} CPU(s): use at most "
                                         f"{max_threads()} (usually {cpus} or fewer)")
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


def _folder(text: str) -> Path:
    """An argparse type for an output folder: an empty path would silently mean the current one."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder path, got an empty one (use '.' for the "
                                         "current folder)")
    return Path(text)


def _existing_path(text: str) -> str:
    """An argparse type for a file or folder to read: an empty path would be reported as '.'."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty one")
    return text


def _input_path(text: str) -> Path:
    return Path(_existing_path(text))


def build_parser() -> argparse.ArgumentParser:
    from .config import ATTN_IMPLS, POS_ENCODINGS
    from .device import DEVICE_CHOICES
    from .presets import PRESETS

    parser = argparse.ArgumentParser(prog="python -m minigpt",
                                     description="Train, sample and benchmark minigpt models.")
    sub = parser.add_subparsers(dest="command", metavar="{train,sample,bench,export,export-web}")
    sub.required = True

    p = sub.add_parser("train", help="train a character-level GPT",
                       description="Train on tinyshakespeare (default) or any UTF-8 text file. "
                                   "Presets: " + "; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()))
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help=f"recipe (default: {DEFAULT_PRESET}; with --resume, the run's own settings)")
    p.add_argument("--text", type=_input_path, help="UTF-8 text file to train on (default: tinyshakespeare)")
    p.add_argument("--tokenizer", choices=("char", "bpe"), default="char",
                   help="tokens: the text's characters (default) or byte-level BPE trained on the training split")
    p.add_argument("--vocab-size", type=_bounded_int(256, 65536, "256 byte tokens plus the merges"),
                   help="with --tokenizer bpe: tokens in all (default 512)")
    p.add_argument("--out", type=_folder, help="checkpoint folder (default: runs/<preset>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out: its model shape and settings come from the checkpoint "
                        "(flags given change the settings; --attn-impl may change, the shape may not)")
    p.add_argument("--max-iters", type=_positive_int)
    p.add_argument("--batch-size", type=_positive_int, help="sequences per step (under torchrun: over all processes)")
    p.add_argument("--micro-batch-size", type=_positive_int, help="sequences per forward pass and process (gradient accumulation)")
    p.add_argument("--lr", type=float, dest="learning_rate", help="peak learning rate")
    p.add_argument("--eval-interval", type=_positive_int)
    p.add_argument("--seed", type=_bounded_int(0, MAX_SEED, "torch seeds are 64-bit"))
    p.add_argument("--device", choices=DEVICE_CHOICES)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training step (on a CPU it has not paid off: see the README); "
                        "with --resume, give it again to compile the resumed run")
    p.add_argument("--n-layer", type=_positive_int)
    p.add_argument("--n-head", type=_positive_int)
    p.add_argument("--n-kv-head", type=_positive_int,
                   help="key/value heads (grouped-query attention; 1 = multi-query); default: --n-head")
    p.add_argument("--n-embd", type=_positive_int)
    p.add_argument("--block-size", type=_positive_int)
    p.add_argument("--dropout", type=float)
    p.add_argument("--pos-encoding", choices=POS_ENCODINGS)
    p.add_argument("--attn-impl", choices=ATTN_IMPLS)
    p.add_argument("--threads", type=thread_count,
                   help="CPU threads for torch, kept even on a busy machine (MINIGPT_THREADS for the run)")
    p.add_argument("--init-from", choices=["pretrained"],
                   help="fine-tune the shipped Shakespeare model instead of training a new one "
                        "(its shape and vocabulary; the text must use only its characters)")
    p.add_argument("--lora-rank", type=_positive_int,
                   help="with --init-from: train LoRA adapters of this rank on the attention layers "
                        "(the model stays frozen); --out then holds the adapters alone")
    p.add_argument("--lora-alpha", type=_non_negative, help="LoRA scale numerator (default: 2 * rank)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--sample-tokens", type=_bounded_int(0, MAX_NEW_TOKENS, "split longer texts over several "
                                                       "`sample` commands"),
                   default=300, help="length of the sample printed at the end (0: none)")

    s = sub.add_parser("sample", help="generate text from a checkpoint",
                       description="Generate text from a checkpoint folder, or from the model shipped "
                                   "in the package (--checkpoint pretrained, the default).")
    s.add_argument("--checkpoint", type=_existing_path, default="pretrained", help="checkpoint folder or 'pretrained'")
    s.add_argument("--prompt", default=None, help="text to continue (default: a newline, or the model's "
                                                  "first character if its text had no newline)")
    s.add_argument("--max-new-tokens", type=_bounded_int(1, MAX_NEW_TOKENS, "at ~1 ms a token a million "
                                                         "take a quarter of an hour; run several commands for more"),
                   default=500, help=f"tokens to generate, characters for a character model (at most "
                                       f"{MAX_NEW_TOKENS:,}); one sample is printed as it comes, several together at the end")
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
    b.add_argument("--threads", type=thread_count,
                   help="CPU threads for torch, for both sides of every comparison (MINIGPT_THREADS)")
    b.add_argument("--json", type=Path, help="also write the results to this JSON file")

    e = sub.add_parser("export", help="write a weights-only copy of a checkpoint",
                       description="Strip optimizer state and optionally store float16 weights.")
    e.add_argument("checkpoint", type=_input_path, help="checkpoint or run folder, or 'pretrained' (the shipped model)")
    e.add_argument("out", type=_folder)
    e.add_argument("--fp16", action="store_true", help="store weights as float16 (half the size)")
    e.add_argument("--force", action="store_true",
                   help="replace an earlier export in OUT (a folder holding anything else, such as a "
                        "training run or adapters, is never written into)")

    # parsed by minigpt.web.export's own parser (`python -m minigpt export-web --help`): listed here
    sub.add_parser("export-web", add_help=False,
                   help="write a model as a .js asset for the book's in-page model (--out FILE.js "
                        "[--checkpoint DIR] [--quantize int8|float16|float32])")
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


def parameter_count(config) -> int:
    """MiniGPT(config).num_parameters(), from the config's arithmetic alone: no module is built
    (building 100,000 layers, even on the meta device, takes minutes)."""
    C, V, T = config.n_embd, config.vocab_size, config.block_size
    b = 1 if config.bias else 0
    qkv_width = C + 2 * config.n_kv_head * config.head_dim
    per_layer = (2 * (C + b * C)                         # ln_1, ln_2
                 + C * qkv_width + b * qkv_width         # attn.c_attn
                 + C * C + b * C                         # attn.c_proj
                 + C * 4 * C + b * 4 * C                 # mlp.c_fc
                 + 4 * C * C + b * C)                    # mlp.c_proj
    positions = T * C if config.pos_encoding == "learned" else 0
    return V * C + positions + config.n_layer * per_layer + C + b * C    # wte (= lm_head), wpe, blocks, ln_f


def training_memory(config, cfg, world_size: int = 1, bytes_per_activation: int = 4) -> tuple[int, int]:
    """(bytes for the model's training state, a lower bound on the bytes of one micro-batch's
    activations) for training `config` with `cfg`, from the arithmetic alone.

    The state is fp32 weights, gradients and AdamW's two moments (16 bytes a parameter) plus
    the position tables. The activations kept for the backward pass are at least, per token,
    15 values a layer (ln_1's input, q/k/v, the attention output, c_proj's input, ln_2's input,
    the MLP's 4C hidden and GELU output) and the logits with their gradient: a lower bound, so
    that only what certainly cannot fit is refused.
    """
    C, V, T = config.n_embd, config.vocab_size, config.block_size
    state = 16 * parameter_count(config) + 4 * 2 * T * C
    rows = cfg.micro_batch_size or max(1, cfg.batch_size // world_size)
    activations = bytes_per_activation * rows * T * (15 * C * config.n_layer + 2 * V)
    return state, activations


def compile_note(device) -> str | None:
    """What `--compile` is worth on this device, when we measured that it is not worth it."""
    if device.type != "cpu":
        return None
    return ("note: --compile on a CPU: on our 2-core test machine compiling the cpu-quick model took 21 s "
            "and made each step 2% faster, which pays back after about 16,000 steps (the preset runs "
            "1,100), and with dropout 0.1 compiled steps were slower than eager ones; leave it out "
            "unless you have measured a gain on this machine.")


def _check_model_fits(config, cfg, device) -> None:
    """Refuse, before anything is allocated, a model or a batch whose training cannot fit in
    the device's memory (an absurd --n-embd, --n-layer or --batch-size would otherwise run for
    minutes and die inside torch's allocator)."""
    import os
    from dataclasses import replace

    import torch

    from . import distributed
    from .errors import UsageError
    if device.type == "cuda":
        have = torch.cuda.get_device_properties(device).total_memory
    else:
        try:
            have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):   # not a POSIX system: no limit known
            return
    bytes_per_activation = 2 if device.type == "cuda" and cfg.autocast else 4      # half precision or fp32
    state, activations = training_memory(config, cfg, distributed.world().world_size, bytes_per_activation)
    n_params = parameter_count(config)
    where = f"the {device.type} has {_size(have)} of memory"
    if state > have:
        raise UsageError(f"this model has {n_params / 1e6:,.1f}M parameters and training it needs about "
                         f"{_size(state)}, but {where}; choose a smaller --n-embd, --n-layer or --block-size.")
    _, one_sequence = training_memory(config, replace(cfg, micro_batch_size=1), 1, bytes_per_activation)
    if state + one_sequence > have:            # a smaller batch cannot help: the model must shrink
        raise UsageError(f"this model ({n_params / 1e6:,.1f}M parameters, {_size(state)} to train) does not fit "
                         f"with even one sequence of {config.block_size:,} tokens (its activations need at least "
                         f"{_size(one_sequence)}), but {where}; choose a smaller --n-embd, --n-layer or "
                         "--block-size.")
    if state + activations > have:
        raise UsageError(f"one batch of {cfg.micro_batch_size or cfg.batch_size:,} sequences of {config.block_size:,} "
                         f"tokens needs at least {_size(activations)} for its activations (and the model "
                         f"{_size(state)}), but {where}; choose a smaller --batch-size, or --micro-batch-size "
                         "for gradient accumulation.")


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:,.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:,.1f} MB"


# GPTConfig fields the train command sets from flags; TrainConfig fields likewise
MODEL_FLAGS = ("n_layer", "n_head", "n_kv_head", "n_embd", "block_size", "dropout", "pos_encoding", "attn_impl")
TRAIN_FLAGS = ("max_iters", "batch_size", "micro_batch_size", "learning_rate", "eval_interval", "seed", "device")
DEFAULT_PRESET = "cpu-quick"


def _flag(name: str) -> str:
    return "--lr" if name == "learning_rate" else "--" + name.replace("_", "-")


# The package's messages name its Python API (TrainConfig.learning_rate, device='cpu',
# encode(..., errors='skip')); at the command line the same advice is a flag.
_API_TO_FLAGS = [*((f"TrainConfig.{name}", _flag(name)) for name in TRAIN_FLAGS),
                 *((f"GPTConfig.{name}", _flag(name)) for name in MODEL_FLAGS),
                 ("use device='auto' or 'cpu'", "use --device auto or --device cpu"),
                 ("pass resume=True (CLI: --resume)", "pass --resume"),
                 ("pass --force (overwrite=True)", "pass --force"),
                 ("use a smaller block_size", "use a smaller --block-size"),
                 ("Pick n_head from", "Pick --n-head from"), ("or change n_embd", "or change --n-embd"),
                 ("Pick n_kv_head from", "Pick --n-kv-head from"),
                 (", or call encode(text, errors='skip') to drop unknown characters.", ".")]


def in_flag_terms(message: str) -> str:
    """A user-facing error as the command line says it: flags instead of Python names."""
    for api, flag in _API_TO_FLAGS:
        message = message.replace(api, flag)
    return message


def _run_to_resume(out: Path):
    """The summary of the checkpoint `--resume` continues, or a one-line error saying there is
    nothing to resume in `out` (a mistyped --out must not silently start a new run)."""
    from .checkpoint import read_summary
    from .errors import UsageError
    from .run_folder import META_FILE, has_checkpoint, is_run_folder
    if (out / META_FILE).is_file():
        raise UsageError(f"{str(out)!r} is a single checkpoint (an export or a step-* folder), not a run "
                         "folder; --resume continues a run: pass the folder above the step-* folders.")
    if not has_checkpoint(out):
        if out.is_dir() and is_run_folder(out):
            why = "a run started there but stopped before its first checkpoint"
        elif out.is_dir():
            why = "it holds no checkpoint"
        elif out.exists():
            why = "it is a file"
        else:
            why = "the folder does not exist"
        raise UsageError(f"nothing to resume in {str(out)!r}: {why}. Check --out, or leave out --resume "
                         "to start a new run there.")
    from .checkpoint import CheckpointError
    from .train import with_resume_hint
    try:
        return read_summary(out)
    except CheckpointError as err:       # a damaged newest checkpoint: name the one before it
        raise with_resume_hint(err, out) from None


def _train_configs(args, vocab_size: int, out: Path, saved):
    """(GPTConfig, TrainConfig) for this command. A new run: the preset, changed by the flags
    given. A resumed run (`saved`, its checkpoint's summary): the run's own model shape and
    training settings, changed by the flags given; a shape flag that differs from the
    checkpoint's is refused, naming the field (only the attention implementation may change:
    every one computes the same function)."""
    from .checkpoint import INTERCHANGEABLE_FIELDS
    from .config import GPTConfig
    from .errors import UsageError
    from .presets import PRESETS
    from .train import TrainConfig

    preset_name = args.preset or DEFAULT_PRESET
    preset = PRESETS[preset_name]
    # (value, where it came from) for every setting the user chose
    model_given = {k: (getattr(args, k), _flag(k)) for k in MODEL_FLAGS if getattr(args, k) is not None}
    train_given = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None}
    if args.compile:
        train_given["compile"] = True
    if saved is None:
        model_kw = {**preset.model, **{k: v for k, (v, _) in model_given.items()}}
        return (GPTConfig(vocab_size=vocab_size, **model_kw),
                TrainConfig(**{**preset.train, **train_given}))
    if args.preset is not None:            # an explicit --preset on resume counts as its flags
        model_given = {**{k: (v, f"--preset {preset_name}") for k, v in preset.model.items()}, **model_given}
        train_given = {**preset.train, **train_given}
    shape = saved.config.to_dict()
    differ = [f"{name} ({source} {value!r}; the checkpoint has {shape[name]!r})"
              for name, (value, source) in model_given.items()
              if name not in INTERCHANGEABLE_FIELDS and value != shape[name]]
    if differ:
        raise UsageError(f"cannot resume {str(out)!r} with another model: {'; '.join(differ)}. "
                         "Leave out the model flags when resuming (the model, its shape and dropout, comes "
                         "from the checkpoint), or start a new run in another --out.")
    shape.update(vocab_size=vocab_size,    # another text's vocabulary is refused by train(), naming it
                 **{k: v for k, (v, _) in model_given.items() if k in INTERCHANGEABLE_FIELDS})
    known = {f for f in TrainConfig.__dataclass_fields__}
    saved_train = {k: v for k, v in (saved.train_state.get("train_config") or {}).items() if k in known}
    # --compile is how this process runs, not part of the run: a resume compiles only when asked
    saved_train.pop("compile", None)
    if args.seed is not None and args.seed != saved_train.get("seed", args.seed):
        raise UsageError(f"--seed {args.seed}: a resumed run continues its own random streams (batches, "
                         f"dropout) from the checkpoint, seeded {saved_train['seed']} when it started; "
                         "leave out --seed with --resume, or start a new run in another --out.")
    return GPTConfig(**shape), TrainConfig(**{**preset.train, **saved_train, **train_given})


def _previous_preset(out: Path):
    """The preset named in the summary.json an earlier `train` wrote to `out` (None if unknown)."""
    try:
        return json.loads((out / "summary.json").read_text(encoding="utf-8")).get("preset")
    except (OSError, ValueError, AttributeError):
        return None


def _check_batch_split(cfg) -> None:
    """Under torchrun, a batch that does not split over the processes is refused before any
    work, naming the flag; every rank finds the same error, so rank 0 alone prints it."""
    from . import distributed
    from .errors import UsageError
    w = distributed.world()
    try:
        distributed.check_batch_split(cfg.batch_size, w.world_size, cfg.micro_batch_size)
    except UsageError as err:
        if not w.is_main:
            raise SystemExit(2) from None
        raise UsageError(f"--batch-size / --micro-batch-size: {err}") from None


def _check_fine_tune_flags(args) -> None:
    """--lora-rank/--lora-alpha need --init-from; a fine-tune takes the base model's shape."""
    from .errors import UsageError
    if args.lora_rank is None and args.lora_alpha is not None:
        raise UsageError("--lora-alpha scales LoRA adapters: add --lora-rank R (and --init-from pretrained).")
    if args.init_from is None:
        if args.lora_rank is not None:
            raise UsageError("--lora-rank adapts a trained model: add --init-from pretrained.")
        return
    shape = [_flag(k) for k in MODEL_FLAGS if getattr(args, k) is not None]
    if shape:
        raise UsageError(f"{', '.join(shape)}: a fine-tune keeps the pretrained model (its shape and "
                         "dropout); leave out the model flags with --init-from.")
    if args.resume:
        raise UsageError("--resume continues a run of its own; --init-from starts a new fine-tune. "
                         "Leave out one of them.")
    if args.lora_alpha is not None and args.lora_alpha <= 0:
        raise UsageError(f"--lora-alpha must be > 0, got {args.lora_alpha:g}; 2 * rank is usual.")
    out = args.out
    if args.lora_rank is not None and out is not None and out.exists() and (
            not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{str(out)!r} exists and is not an empty folder; LoRA adapters are written "
                         "into a new or empty --out. Choose another folder.")


def _fine_tune_start(text: str):
    """(the pretrained model, the text split 90/10 and encoded with its tokenizer)."""
    from .data import TextData
    from .pretrained import load_pretrained
    from .errors import UsageError
    model, tokenizer = load_pretrained("cpu")
    data = TextData.from_text(text, tokenizer=tokenizer)   # an unknown character: one-line error
    block_size = model.config.block_size       # fixed by the pretrained model: no --block-size here
    if len(data.val) <= block_size:
        need = (block_size + 1) * 10 + 10
        raise UsageError(f"the text has {len(text):,} characters; fine-tuning the pretrained model (windows of "
                         f"{block_size} characters, 10% held out) needs at least about {need:,}. Use a longer text.")
    return model, data


def _check_tokenizer_flags(args) -> None:
    """--vocab-size needs --tokenizer bpe; a fine-tune and a resumed run keep their tokenizer."""
    from .errors import UsageError
    if args.resume and (args.tokenizer == "bpe" or args.vocab_size is not None):
        raise UsageError("--tokenizer/--vocab-size: a resumed run keeps the tokenizer its checkpoint was "
                         "trained with; leave them out with --resume.")
    if args.vocab_size is not None and args.tokenizer != "bpe":
        raise UsageError("--vocab-size sets the size of a BPE vocabulary; add --tokenizer bpe "
                         "(a character vocabulary is the text's own characters).")
    if args.init_from is not None and args.tokenizer != "char":
        raise UsageError("--tokenizer bpe: a fine-tune keeps the pretrained model's character "
                         "vocabulary; leave out --tokenizer with --init-from.")


def _resume_data(out: Path, saved, text: str):
    """TextData for `--resume`: the text encoded with the tokenizer of the checkpoint being
    continued (`saved`, its summary: a BPE run's merge table, a fine-tune's pretrained
    characters), split as the run was; a character that tokenizer does not know is a one-line error."""
    from .data import TextData, UnknownCharacterError
    from .errors import UsageError
    try:
        return TextData.from_text(text, tokenizer=saved.tokenizer)
    except UnknownCharacterError as err:
        raise UsageError(f"cannot resume {str(out)!r} on this text: {str(err).split('. ')[0]}. Resume with "
                         "the text the run was trained on (--text), or start a new run in another --out.") from None


def _refuse_default_text_for_other_data(out: Path, saved, data) -> None:
    """`--resume` without --text reads tinyshakespeare. A run trained on the user's own text
    would go on with Shakespeare, and its keep-last rule would then delete the checkpoints of
    the real text: refuse. (With an explicit --text, other data is the user's choice, and
    `check_resumable` only warns.)"""
    from .errors import UsageError
    from .resume import DATA_KEY, data_fingerprint
    trained_on = saved.train_state.get(DATA_KEY)    # checkpoints from before it was stored hold none
    if isinstance(trained_on, str) and trained_on != data_fingerprint(data):
        raise UsageError(f"cannot resume {str(out)!r} without --text: its checkpoint was trained on other text "
                         "than tinyshakespeare (the default without --text). Pass the run's own text: "
                         "--resume --text FILE.")


def _train_data(args, text: str):
    """TextData for a new run: characters, or a BPE tokenizer trained on the training split
    only (the validation text stays unseen by the tokenizer too)."""
    from .bpe import BPETokenizer
    from .data import TextData
    if args.tokenizer == "char":
        return TextData.from_text(text)
    n_train = int(len(text) * 0.9)          # TextData's split: the last 10% is validation
    wanted = args.vocab_size or 512
    tokenizer = BPETokenizer.train(text[:n_train], wanted)
    if tokenizer.vocab_size < wanted:
        print(f"note: after {tokenizer.vocab_size - 256} merges no pair occurs twice in the training text: "
              f"the vocabulary is {tokenizer.vocab_size} tokens, not --vocab-size {wanted}")
    return TextData.from_text(text, tokenizer=tokenizer)


def _cmd_train(args) -> int:
    if args.threads:       # N threads even where N is torch's own default (see threads_asked_for)
        from .cpu import threads_asked_for
        with threads_asked_for(args.threads):
            return _train(args)
    return _train(args)


def _train(args) -> int:
    import torch

    from .checkpoint import CheckpointError
    from .data import load_shakespeare, read_text_file
    from .device import describe, describe_precision, set_seed
    from .model import MiniGPT
    from .run_folder import write_text_atomically
    from .train import check_run_folder, evaluate, train
    from . import distributed

    distributed.quiet_other_ranks()         # under torchrun, rank 0 prints for the run
    preset_name = args.preset or DEFAULT_PRESET
    out = args.out if args.out is not None else Path("runs") / preset_name
    _check_fine_tune_flags(args)
    if args.lora_rank is None and not args.resume:     # a bad --out fails now, not after the
        check_run_folder(out)                           # data is built (resume: _run_to_resume)
    if not args.resume and (out / "summary.json").exists():
        from .errors import UsageError
        raise UsageError(f"{str(out / 'summary.json')!r} exists but {str(out)!r} holds no run to resume; "
                         "this run would overwrite it. Choose another --out, or move the file away.")
    saved = _run_to_resume(out) if args.resume else None
    text = read_text_file(args.text) if args.text else load_shakespeare()
    _check_tokenizer_flags(args)
    if args.init_from is None:
        data = _resume_data(out, saved, text) if saved is not None else _train_data(args, text)
        if saved is not None and not args.text:
            _refuse_default_text_for_other_data(out, saved, data)
        config, cfg = _train_configs(args, data.tokenizer.vocab_size, out, saved)
    else:
        base, data = _fine_tune_start(text)
        config, cfg = _train_configs(args, data.tokenizer.vocab_size, out, saved)
        config = base.config
    if saved is not None and isinstance(saved.step, int) and saved.step >= cfg.max_iters:
        from .errors import UsageError
        raise UsageError(f"{str(out)!r} is already at step {saved.step} of max_iters {cfg.max_iters}: there is "
                         f"nothing to resume. Pass a larger --max-iters to train it further.")
    _check_batch_split(cfg)
    device = _pick_device(cfg.device)
    _check_model_fits(config, cfg, device)
    set_seed(cfg.seed)
    model = MiniGPT(config) if args.init_from is None else base
    unit = "characters" if hasattr(data.tokenizer, "chars") else "tokens"     # BPE ids are subwords
    what = f"resuming {str(out)!r} at step {saved.step}" if saved is not None else f"preset {preset_name}"
    if args.init_from is not None:
        what = f"fine-tuning the pretrained model ({'full' if args.lora_rank is None else 'LoRA'}), preset {preset_name}"
    if args.lora_rank is not None:
        from .lora import add_lora, lora_parameter_count, save_adapters
        alpha = args.lora_alpha if args.lora_alpha is not None else 2.0 * args.lora_rank
        add_lora(model, args.lora_rank, alpha)
        print(f"LoRA rank {args.lora_rank}, alpha {alpha:g} on attn.c_attn and attn.c_proj: "
              f"{lora_parameter_count(model):,} trainable parameters")
        # the adapters are written only at the end: an --out that cannot take them fails now,
        # not after the training it would throw away (float32 tensors, plus lora.json)
        from .run_folder import check_output_folder
        check_output_folder(out, need_bytes=4 * lora_parameter_count(model) + 2**16)
    print(f"{what}: {model.num_parameters() / 1e6:.2f}M parameters, "
          f"{len(data.train):,} train / {len(data.val):,} val {unit}, device {describe(device)}, "
          f"{describe_precision(device, cfg.autocast)}")
    print(f"checkpoints -> {out}" if args.lora_rank is None else f"adapters -> {out} (written at the end)")
    if cfg.compile and compile_note(device):
        print(compile_note(device))

    def report(record):
        print(f"step {record['step']:>6}  train {record['train']:.4f}  val {record['val']:.4f}  "
              f"({record['elapsed']:.0f}s)", flush=True)

    # LoRA: the run keeps no step folders (a checkpoint holds whole models); the adapters alone
    # are written to --out at the end
    try:
        result = train(model, data, cfg, out_dir=out if args.lora_rank is None else None, resume=args.resume,
                       progress=not args.no_progress, callback=report)
    except KeyboardInterrupt:
        if args.lora_rank is None:
            raise
        # Ctrl-C stops at a step boundary: the adapters trained so far are a usable fine-tune
        save_adapters(model, out)
        print(f"the adapters trained until the interruption -> {out} (a LoRA run does not resume; "
              "load them with minigpt.lora.load_adapters)", flush=True)
        raise
    if args.lora_rank is not None:
        save_adapters(result.model, out)
        print(f"adapters -> {out} (load them with minigpt.lora.load_adapters(load_pretrained()[0], DIR))")
    distributed.shutdown()                  # data-parallel part over: rank 0 evaluates and writes
    if not distributed.is_main():
        return 0
    val_loss = evaluate(result.model, data.val, autocast=cfg.autocast)
    start_step = saved.step if saved is not None and isinstance(saved.step, int) else 0
    steps = (f"{result.steps - start_step} steps ({result.steps} in all)" if saved is not None
             else f"{result.steps} steps")
    trained = result.steps - start_step
    # with --compile the first step waits for the compiler: a short run's mean is mostly that
    compiled = ", compilation included" if cfg.compile else ""
    per_step = (f"; {result.step_seconds / trained * 1e3:.1f} ms a step without evaluations and "
                f"checkpoints{compiled}" if trained > 0 else "")
    print(f"trained {steps}; {result.tokens_per_second:,.0f} tokens/s{per_step}")
    if args.sample_tokens > 0:
        prompt = _default_prompt(data.tokenizer)
        idx = torch.tensor([data.tokenizer.encode(prompt)], device=result.model.device)
        generator = torch.Generator().manual_seed(cfg.seed)     # CPU: same draws on any device
        try:
            out_ids = result.model.generate(idx, args.sample_tokens, temperature=0.8, top_k=40,
                                            generator=generator)
        except KeyboardInterrupt:           # the training itself is done and written
            saved_to = result.checkpoint if args.lora_rank is None else out
            print(f"interrupted while sampling: training finished (val_loss {val_loss:.4f}) and is saved "
                  f"in {str(saved_to)!r}.", file=sys.stderr, flush=True)
            raise
        print("--- sample (temperature 0.8, top-k 40) ---")
        print(data.tokenizer.decode(out_ids[0]))
        print("---")
    wall = time.perf_counter() - _T0
    print(f"val_loss {val_loss:.4f}  (whole validation split, {len(data.val):,} {unit})")
    print(f"wall_time {wall:.1f}s  (whole command, start-up included)")
    preset_used = args.preset or (_previous_preset(out) if saved is not None else preset_name)
    summary = {"preset": preset_used, "val_loss": val_loss, "wall_time_s": wall, "steps": result.steps,
               "tokens_per_second": result.tokens_per_second, "device": describe(device),
               "torch": torch.__version__}
    try:
        write_text_atomically(out, "summary.json", json.dumps(summary, indent=1))
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


def _stream_decoder(tokenizer):
    """ids -> text for a stream of chunks. A BPE token can hold part of a character's UTF-8
    bytes; an incremental decoder keeps them until the character is complete, so a chunk
    boundary never prints U+FFFD where the whole text has a character."""
    if not hasattr(tokenizer, "decode_bytes"):
        return tokenizer.decode
    import codecs
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return lambda ids: decoder.decode(tokenizer.decode_bytes(ids))


def _default_prompt(tokenizer) -> str:
    """A newline (where a speech begins in the book's text), or, for a character model whose
    text had none, its vocabulary's first character; a BPE tokenizer encodes any text."""
    stoi = getattr(tokenizer, "stoi", None)
    return "\n" if stoi is None or "\n" in stoi else tokenizer.chars[0]


def _cmd_sample(args) -> int:
    import torch

    from .checkpoint import load_model
    from .errors import UsageError
    from .pretrained import checkpoint_or_pretrained

    device = _pick_device(args.device)
    model, tokenizer = load_model(checkpoint_or_pretrained(args.checkpoint), device)
    if args.prompt is None:
        args.prompt = _default_prompt(tokenizer)
    ids = tokenizer.encode(args.prompt)
    if not ids:
        raise UsageError("the prompt is empty; pass at least one character, e.g. --prompt 'ROMEO:'.")
    idx = torch.tensor([ids] * args.num_samples, device=device)
    decoders = [_stream_decoder(tokenizer) for _ in range(args.num_samples)]
    generator = torch.Generator().manual_seed(args.seed)    # CPU: a seed means the same on any device
    sampling = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                    use_cache=not args.no_cache, generator=generator)
    if args.num_samples == 1:              # stream: each chunk is printed as soon as it exists
        print(args.prompt, end="", flush=True)
        try:
            _generate_streaming(model, idx, args.max_new_tokens,
                                lambda new: print(decoders[0](new[0]), end="", flush=True), **sampling)
        finally:
            print(flush=True)              # end the line, also when interrupted
        return 0
    texts = [args.prompt] * args.num_samples

    def collect(new):
        for i in range(args.num_samples):
            texts[i] += decoders[i](new[i])

    try:
        _generate_streaming(model, idx, args.max_new_tokens, collect, **sampling)
    finally:                               # on Ctrl-C, print what each sample has so far
        for i, text in enumerate(texts):
            print(f"--- sample {i + 1} ---")
            print(text)
    return 0


def _cmd_bench(args) -> int:
    """`python -m bench` in the checkout this minigpt comes from. The benchmarks live in the
    repository's bench/ folder, next to minigpt/, not in the installed package: the child runs
    from the checkout's root, where `-m bench` finds them (no sys.path changes here)."""
    import subprocess

    from .errors import UsageError
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / "bench" / "__main__.py").is_file():
        raise UsageError("the benchmarks are not part of the installed package; run `python -m minigpt "
                         "bench` (or `python -m bench`) from a checkout of the minigpt repository, "
                         "installed with `pip install -e .`.")
    command = [sys.executable, "-m", "bench", *args.what, "--device", args.device]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.json:
        command += ["--json", str(args.json.resolve())]      # the child runs in the checkout
    return subprocess.call(command, cwd=checkout)


def _cmd_export(args) -> int:
    import torch

    from .checkpoint import export_model, load_checkpoint
    from .pretrained import checkpoint_or_pretrained
    source = checkpoint_or_pretrained(args.checkpoint)
    ckpt = load_checkpoint(source)
    info = {k: v for k, v in ckpt.train_state.items() if k not in ("history", "optimizer_param_groups")}
    summary = source / "summary.json"                    # written by `train` next to its steps
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
    except KeyboardInterrupt:              # Ctrl-C once the command line is read (`import minigpt`,
        print("\ninterrupted", file=sys.stderr)   # which loads torch, comes before this handler)
        return 130
    except BrokenPipeError:                # `sample ... | head`: the reader has all it wanted
        # Python would print another BrokenPipeError when it flushes stdout at exit: point
        # stdout at /dev/null first (the recipe in the `signal` module's documentation)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141                         # 128 + SIGPIPE, as a shell reports a program killed by it


def _main(argv: Optional[Sequence[str]]) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export-web"]:         # the book's in-page model: minigpt.web has its own parser
        from .web.export import main as export_web_main
        command = lambda: export_web_main(argv[1:])     # noqa: E731
    else:
        args = build_parser().parse_args(argv)
        handlers = {"train": _cmd_train, "sample": _cmd_sample, "bench": _cmd_bench, "export": _cmd_export}
        command = lambda: handlers[args.command](args)  # noqa: E731
    import torch

    from .errors import MiniGPTError
    with warnings.catch_warnings():
        warnings.showwarning = _print_warning
        try:
            return command()
        except MiniGPTError as err:            # only the package's own user-facing errors:
            message = in_flag_terms(str(err))  # anything else is a bug and keeps its traceback
            if argv[:1] == ["export"]:         # export names its output folder as an argument, not --out
                message = message.replace("another output folder (--out)", "another output folder (the out argument)")
            print(f"error: {message}", file=sys.stderr)
            return 2
        except torch.cuda.OutOfMemoryError as err:  # the estimate before training is a lower bound
            first = str(err).strip().splitlines()[0] if str(err).strip() else "out of memory"
            fix = ("choose a smaller --batch-size, or --micro-batch-size for gradient accumulation"
                   if argv[:1] == ["train"] else "use fewer --num-samples, or --device cpu")
            print(f"error: out of GPU memory ({first[:160]}); {fix}.", file=sys.stderr)
            return 2
