"""The small model shipped inside the package, so decoding and visualisation work at once.

Trained by this package with `python -m minigpt train --preset pretrained` (see the README
for the exact command, device, time and loss) and exported in float16 to stay under 10 MB;
it is loaded back as float32.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Union

import torch

from .checkpoint import load_checkpoint, load_model
from .data import CharTokenizer
from .device import DEVICE_CHOICES, pick_device
from .errors import UsageError
from .model import MiniGPT

PRETRAINED_NAME = "shakespeare_char"


def pretrained_path() -> Path:
    return Path(str(resources.files("minigpt").joinpath(f"pretrained/{PRETRAINED_NAME}")))


def checkpoint_or_pretrained(given: Union[str, Path]) -> Path:
    """The folder a command's checkpoint argument names: the word `pretrained` is the shipped
    model (`sample`, `export` and `export-web` all take it), anything else a path. A folder of
    the user's called ./pretrained is reached as ./pretrained; a note on stderr says so."""
    if str(given) != "pretrained":
        return Path(given)
    if Path("pretrained").exists():
        print("note: 'pretrained' is the model shipped with minigpt; for your folder ./pretrained, "
              "write ./pretrained (e.g. --checkpoint ./pretrained)", file=sys.stderr)
    return pretrained_path()


def load_pretrained(device: Union[str, torch.device, None] = "auto") -> tuple[MiniGPT, CharTokenizer]:
    """(model, tokenizer) for the shipped tinyshakespeare model, in eval mode on `device`.

    Every loader of a whole model returns this pair (`load_model`, `load_web_model`);
    `load_checkpoint` returns a `Checkpoint` that holds it with the training state.
    """
    if isinstance(device, str) and device.split(":")[0].lower() not in DEVICE_CHOICES:
        # load_pretrained("gpt2"), a Hugging Face habit: the argument is where, not which
        raise UsageError(f"load_pretrained takes the device to load minigpt's one shipped model onto "
                         f"('auto', 'cpu', 'cuda' or 'mps'), got {device!r}; for GPT-2's weights use "
                         "minigpt.gpt2.from_hf_model(GPT2LMHeadModel.from_pretrained('gpt2')).")
    return load_model(pretrained_path(), pick_device(device))


def pretrained_info() -> dict:
    """How the shipped model was trained: its train_config, step and summary (time, val loss)."""
    return load_checkpoint(pretrained_path()).train_state
