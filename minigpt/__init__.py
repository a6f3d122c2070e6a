"""minigpt: a small, readable, tested GPT in PyTorch, built chapter by chapter in the book.

    from minigpt import GPTConfig, MiniGPT, TextData, TrainConfig, train, load_pretrained
"""

from .cpu import limit_openmp_spinning, remember_torch_threads

limit_openmp_spinning()     # before anything below imports torch: OpenMP reads it once (see cpu.py)

from .attention import CausalSelfAttention, causal_mask, flash_attention, manual_attention
from .kv_cache import KVCache, kv_cache_nbytes
from .positions import apply_rope, rope_cos_sin, sinusoidal_table
from .checkpoint import (Checkpoint, CheckpointError, export_model, load_checkpoint, load_model,
                         save_checkpoint)
from .config import ConfigError, GPTConfig
from .errors import MiniGPTError, UsageError
from .data import (CharDataset, CharTokenizer, TextData, UnknownCharacterError, get_batch,
                   load_shakespeare, read_text_file)
from .bpe import BPETokenizer
from .device import autocast, describe, pick_device, set_seed
from .model import MLP, Block, MiniGPT
from .presets import PRESETS, Preset
from .pretrained import load_pretrained, pretrained_info
from .sampling import next_token_probs
from .reproduce import expect
from .language import language, set_language, tr
from . import lora  # LoRA adapters: add_lora, merge_lora, save_adapters, load_adapters
from . import viz  # plots and the sampling explorer (matplotlib is imported on first use)
from .evaluation import estimate_loss, evaluate
from .train import TrainConfig, TrainingDivergedError, TrainResult, make_optimizer, train

remember_torch_threads()    # torch's count now: pick_device keeps a count you set after this line

__version__ = "0.1.0"


def __getattr__(name: str):
    """`minigpt.exercises` (the checks that answer back) is imported on first use."""
    if name == "exercises":
        import importlib
        return importlib.import_module(".exercises", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "GPTConfig", "ConfigError", "MiniGPTError", "UsageError", "CausalSelfAttention", "MLP", "Block", "MiniGPT", "KVCache", "kv_cache_nbytes",
    "manual_attention", "flash_attention", "causal_mask", "apply_rope", "rope_cos_sin",
    "sinusoidal_table", "CharTokenizer", "BPETokenizer", "CharDataset", "TextData", "UnknownCharacterError",
    "get_batch", "load_shakespeare", "read_text_file", "next_token_probs", "TrainConfig",
    "TrainResult", "TrainingDivergedError", "train", "evaluate", "estimate_loss", "make_optimizer",
    "save_checkpoint", "load_checkpoint", "load_model", "export_model", "Checkpoint",
    "CheckpointError", "load_pretrained", "pretrained_info", "pick_device", "autocast", "set_seed",
    "describe", "PRESETS", "Preset", "expect", "set_language", "language", "tr",
]
