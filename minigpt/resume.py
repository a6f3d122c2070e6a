"""Resuming a run: may this checkpoint be continued, and will it continue as the uninterrupted
run would have?

`check_resumable` refuses what cannot work (another vocabulary, another model shape, a folder
with no training state) and warns, with a `ResumeWarning`, about what works but changes the
numbers: other data, other training settings, or another CPU thread count (a CPU sums in another order
with another number of threads, so the losses differ in their last bits and bit-exact resume
is lost).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError, config_differences

# TrainConfig fields that change the numbers a run produces: resuming with other values
# continues the run, but not as the uninterrupted run would have (a warning says so)
TRAJECTORY_FIELDS = ("max_iters", "batch_size", "learning_rate", "min_lr", "warmup_iters",
                     "weight_decay", "beta1", "beta2", "grad_clip", "autocast")
# the train-state key that records torch.get_num_threads() of the run that wrote a checkpoint
THREADS_KEY = "num_threads"
# the train-state key that records which token ids the run trained on (data_fingerprint)
DATA_KEY = "data_sha256"


class ResumeWarning(UserWarning):
    """Resuming with training settings that differ from the checkpoint's."""


def _show(chars: list[str]) -> str:
    return ", ".join(map(repr, chars[:10])) + (", ..." if len(chars) > 10 else "")


def check_resumable(ckpt, model: torch.nn.Module, data, cfg, out_dir: Path,
                    device: torch.device) -> None:
    """Refuse a checkpoint this run cannot continue; warn when the settings differ.

    `ckpt` is a `Checkpoint` loaded with its trainer tensors, `cfg` this run's TrainConfig,
    `device` the device this run trains on.
    """
    saved_tok, tok = ckpt.tokenizer, data.tokenizer
    if not (hasattr(saved_tok, "chars") and hasattr(tok, "chars")):
        # a subword (BPE) run: the vocabulary is the merge table, so compare the whole description
        if saved_tok.to_dict() != tok.to_dict():
            raise CheckpointError(
                f"cannot resume: this run's tokenizer differs from the one the checkpoint in "
                f"{str(out_dir)!r} was trained with ({type(saved_tok).__name__}, "
                f"{saved_tok.vocab_size} tokens, against {type(tok).__name__}, {tok.vocab_size}), so ids "
                "would mean other text. Encode the data with the checkpoint's tokenizer, or start a new "
                "run in another output folder.")
        saved_chars = chars = []
    else:
        saved_chars, chars = saved_tok.chars, tok.chars
    if saved_chars != chars:
        only_saved = sorted(set(saved_chars) - set(chars))
        only_text = sorted(set(chars) - set(saved_chars))
        differ = "; ".join(part for part in (
            f"only in the checkpoint: {_show(only_saved)}" if only_saved else "",
            f"only in this text: {_show(only_text)}" if only_text else "") if part)
        raise CheckpointError(
            f"cannot resume: this text's vocabulary differs from the one the checkpoint in "
            f"{str(out_dir)!r} was trained with ({differ or 'the same characters in another order'}), "
            "so ids would mean other characters. Resume with the text the run was trained on "
            "(--text), or start a new run in another output folder.")
    differences = config_differences(ckpt.model.config, model.config)    # any attn_impl may continue
    if differences:
        raise CheckpointError(f"cannot resume: the checkpoint in {str(out_dir)!r} was trained with "
                              f"{'; '.join(differences)}; build the model from the checkpoint's config "
                              "(the CLI takes it from the checkpoint when no shape flag is given).")
    state = ckpt.train_state
    if not ckpt.trainer_tensors or not isinstance(state.get("history"), dict) \
            or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{str(ckpt.path)!r} holds no training state (an exported "
                              "model?); resume needs a training checkpoint.")
    saved_cfg = state.get("train_config") or {}
    differences = [f"{name} {saved_cfg[name]!r} -> {getattr(cfg, name)!r}" for name in TRAJECTORY_FIELDS
                   if name in saved_cfg and saved_cfg[name] != getattr(cfg, name)]
    if differences:
        warnings.warn(f"resuming {str(out_dir)!r} with other training settings than its checkpoint "
                      f"({'; '.join(differences)}): the run continues, but will not match an "
                      "uninterrupted run.", ResumeWarning, stacklevel=4)
    saved_data = state.get(DATA_KEY)      # checkpoints from before it was stored hold none
    if isinstance(saved_data, str) and saved_data != data_fingerprint(data):
        warnings.warn(f"resuming {str(out_dir)!r} on other data than its checkpoint was trained on (the "
                      "token ids of the train/validation split differ): the run continues on this data, "
                      "but will not match an uninterrupted run. Pass the run's own text (--text) to "
                      "continue it exactly.", ResumeWarning, stacklevel=4)
    saved_threads, threads = state.get(THREADS_KEY), torch.get_num_threads()
    # checkpoints written before the thread count was stored hold none: nothing to compare
    if device.type == "cpu" and isinstance(saved_threads, int) and saved_threads != threads:
        warnings.warn(f"resuming {str(out_dir)!r} with {threads} CPU thread(s), but its checkpoint "
                      f"was trained with {saved_threads}: the losses will differ from an "
                      f"uninterrupted run in their last digits (torch.set_num_threads({saved_threads}), or "
                      f"MINIGPT_THREADS={saved_threads} for the CLI, resumes bit for bit).", ResumeWarning, stacklevel=4)


def data_fingerprint(data) -> str:
    """sha256 of the train and validation token ids (int64): which data a run trained on,
    so that resuming on other text is noticed (a few ms for tinyshakespeare)."""
    digest = hashlib.sha256()
    for split in (data.train, data.val):
        ids = split.detach().to("cpu", torch.int64).contiguous()
        digest.update(len(ids).to_bytes(8, "little"))
        digest.update(ids.numpy().tobytes())
    return digest.hexdigest()


def trainer_state(history: dict[str, list], cfg, step: int, fingerprint: str | None = None) -> dict[str, Any]:
    """The JSON part of a training checkpoint: what `check_resumable` reads back."""
    state = {"history": history, "train_config": cfg.to_dict(), "step": step,
             THREADS_KEY: torch.get_num_threads()}
    if fingerprint is not None:
        state[DATA_KEY] = fingerprint
    return state
