"""Characters to tensors: the tokenizer, the seed's `CharDataset`, and a fast batch sampler.

The vocabulary is simply the sorted set of characters in the training text, so any
UTF-8 text works (Shakespeare, Chinese poetry, source code).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import torch


class UnknownCharacterError(ValueError):
    """A character that the tokenizer's vocabulary does not contain."""


class CharTokenizer:
    """Maps each character of a fixed vocabulary to an integer id and back."""

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        if not chars:
            raise ValueError("a CharTokenizer needs at least one character; the text was empty.")
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("CharTokenizer expects single characters.")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer characters must be unique.")
        self.chars = chars
        self.stoi = {ch: i for i, ch in enumerate(chars)}
        self.itos = {i: ch for i, ch in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        if not isinstance(text, str) or not text:
            raise ValueError("cannot build a vocabulary from an empty text; pass the training text.")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str, errors: str = "strict") -> list[int]:
        """Text -> ids. errors='strict' raises on an unknown character; 'skip' drops it."""
        if errors not in ("strict", "skip"):
            raise ValueError(f"errors must be 'strict' or 'skip', got {errors!r}.")
        if errors == "skip":
            return [self.stoi[ch] for ch in text if ch in self.stoi]
        ids = []
        for position, ch in enumerate(text):
            token = self.stoi.get(ch)
            if token is None:
                raise UnknownCharacterError(
                    f"character {ch!r} (U+{ord(ch):04X}) at position {position} is not in this "
                    f"model's {self.vocab_size}-character vocabulary. Remove or replace it, or call "
                    f"encode(text, errors='skip') to drop unknown characters.")
            ids.append(token)
        return ids

    def decode(self, ids: Union[Sequence[int], torch.Tensor]) -> str:
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode expects a 1-D sequence of ids, got shape {tuple(ids.shape)}; "
                                 "decode one row at a time, e.g. decode(out[0]).")
            ids = ids.tolist()
        try:
            return "".join(self.itos[int(i)] for i in ids)
        except KeyError as err:
            raise ValueError(f"token id {err.args[0]} is outside the vocabulary "
                             f"(0..{self.vocab_size - 1}).") from None

    def to_dict(self) -> dict:
        return {"type": "char", "chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, values: dict) -> "CharTokenizer":
        if values.get("type") != "char" or not isinstance(values.get("chars"), str):
            raise ValueError("not a character-tokenizer description (expected type 'char').")
        return cls(list(values["chars"]))

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class CharDataset(torch.utils.data.Dataset):
    """The seed's dataset: every window of `block_size` characters and its next-char targets."""

    def __init__(self, text: str, block_size: int, tokenizer: Optional[CharTokenizer] = None):
        if not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}.")
        self.tokenizer = tokenizer or CharTokenizer.from_text(text)
        self.stoi, self.itos = self.tokenizer.stoi, self.tokenizer.itos
        self.vocab_size = self.tokenizer.vocab_size
        self.block_size = block_size
        self.data = torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
        if len(self.data) <= block_size:
            raise ValueError(f"the text has {len(self.data)} characters; it needs more than "
                             f"block_size={block_size} to make one training example.")

    def __len__(self) -> int:
        return len(self.data) - self.block_size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        chunk = self.data[i:i + self.block_size + 1]
        return chunk[:-1], chunk[1:]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)


def load_shakespeare() -> str:
    """The tinyshakespeare corpus (1,115,394 characters), shipped inside the package."""
    return resources.files("minigpt").joinpath("data/tinyshakespeare.txt").read_text(encoding="utf-8")


def read_text_file(path: Union[str, Path]) -> str:
    """Read a UTF-8 training text, with errors that say what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {str(path)!r} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{str(path)!r} is not valid UTF-8 (byte {err.start}); "
                         "convert it first, e.g. `iconv -t UTF-8`.") from None
    if len(text) < 100:
        raise ValueError(f"{str(path)!r} has only {len(text)} characters; a language model needs "
                         "far more text (tinyshakespeare has 1.1 million).")
    return text


@dataclass
class TextData:
    """A tokenizer plus the encoded train and validation splits (the last 10% is validation)."""

    tokenizer: CharTokenizer
    train: torch.Tensor   # (N_train,) int64 token ids
    val: torch.Tensor     # (N_val,) int64 token ids

    @classmethod
    def from_text(cls, text: str, val_fraction: float = 0.1) -> "TextData":
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}.")
        tokenizer = CharTokenizer.from_text(text)
        ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
        n_train = int(len(ids) * (1.0 - val_fraction))
        return cls(tokenizer, ids[:n_train], ids[n_train:])

    @classmethod
    def shakespeare(cls) -> "TextData":
        return cls.from_text(load_shakespeare())


def get_batch(data: torch.Tensor, block_size: int, batch_size: int,
              generator: Optional[torch.Generator] = None,
              device: Union[str, torch.device, None] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample `batch_size` random windows: x (B, T) and the next-token targets y (B, T).

    One `randint` and one gather replace the seed's Python loop over a DataLoader.
    """
    if len(data) < block_size + 1:       # one window needs block_size + 1 tokens
        raise ValueError(f"the split has {len(data)} tokens, too few for windows of "
                         f"block_size={block_size}; use a smaller block_size or more text.")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = starts[:, None] + torch.arange(block_size + 1)       # (B, T+1)
    windows = data[offsets]
    x, y = windows[:, :-1], windows[:, 1:]
    if device is not None and torch.device(device).type != "cpu":
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
    return x, y
