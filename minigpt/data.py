"""Characters to tensors: the tokenizer, the seed's `CharDataset`, and a fast batch sampler.

The vocabulary is simply the sorted set of characters in the training text, so any
UTF-8 text works (Shakespeare, Chinese poetry, source code).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Optional, Sequence, Union

import torch

from .device import as_device
from .errors import MiniGPTError, is_whole_number

if TYPE_CHECKING:                       # bpe imports data; the name is for annotations only
    from .bpe import BPETokenizer

# Texts are converted to code points in chunks of this many characters, so the temporary
# buffers stay small (16 MB) next to the (N,) int64 id tensor, whatever the text's size.
_CHUNK = 1 << 22
_MAX_CODE_POINT = 0x10FFFF


class DataError(MiniGPTError, ValueError):
    """A text, a vocabulary or a split that cannot be used for training."""


class DataTypeError(DataError, TypeError):
    """Text or ids of the wrong kind (e.g. encode(None)); still a TypeError for `except TypeError`."""


def check_text(text, what: str) -> None:
    """A DataTypeError (`what`, then what was given) unless `text` is a str, with the fix for
    the two usual slips: bytes read from a file, a list of characters."""
    if isinstance(text, str):
        return
    hint = ("; decode the bytes first: text.decode('utf-8')" if isinstance(text, bytes) else
            "; join a list of characters first: ''.join(chars)" if isinstance(text, (list, tuple)) else
            "; read the file first: minigpt.read_text_file(path)" if isinstance(text, os.PathLike) else "")
    raise DataTypeError(f"{what}, got {type(text).__name__}{hint}.")


class UnknownCharacterError(MiniGPTError, ValueError):
    """A character that the tokenizer's vocabulary does not contain."""


def _code_point_chunks(text: str) -> Iterator[tuple[int, torch.Tensor]]:
    """(start, code points of text[start:start + _CHUNK]) without a Python loop per character.

    An ASCII chunk is its bytes (uint8); any other chunk is its UTF-32 encoding (int32), so a
    character is one element either way. `surrogatepass` lets a lone surrogate (possible in a
    Python string, never in a file read as UTF-8) through as its own code point.
    """
    for start in range(0, len(text), _CHUNK):
        chunk = text[start:start + _CHUNK]
        if chunk.isascii():
            yield start, torch.frombuffer(bytearray(chunk, "ascii"), dtype=torch.uint8)
        else:
            yield start, torch.frombuffer(bytearray(chunk, "utf-32-le", "surrogatepass"), dtype=torch.int32)



def ids_as_list(ids: Union[Sequence[int], torch.Tensor]) -> Sequence[int]:
    """What a tokenizer's decode accepts: a sequence of ids, or a 1-D tensor of them."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise DataError(f"decode expects a 1-D sequence of ids, got shape {tuple(ids.shape)}; "
                            "decode one row at a time, e.g. decode(out[0]).")
        if ids.dtype.is_floating_point or ids.is_complex():
            raise DataError(f"decode expects integer token ids, got a {ids.dtype} tensor; ids come from "
                            "encode() or from the model's output (sample or argmax the logits first).")
        return ids.tolist()
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        hint = "it is text already, not ids" if isinstance(ids, (str, bytes)) else "one id becomes [id]"
        raise DataTypeError(f"decode expects a sequence of token ids (a list or a 1-D tensor), got "
                            f"{type(ids).__name__} {ids!r:.40}; {hint}.")
    ids = list(ids)
    for i in ids:       # generate()'s output .tolist() is a list of rows; text is not ids
        if isinstance(i, (list, tuple)) or (isinstance(i, torch.Tensor) and i.dim() > 0):
            raise DataError("decode expects a 1-D sequence of ids, got a sequence of sequences; "
                            "decode one row at a time, e.g. decode(out[0]).")
        if isinstance(i, (str, bytes, float)):
            raise DataError(f"decode expects integer token ids, got {i!r}; ids come from encode() "
                            "or from the model's output.")
    return ids


class CharTokenizer:
    """Maps each character of a fixed vocabulary to an integer id and back."""

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        if not chars:
            raise DataError("a CharTokenizer needs at least one character; the text was empty.")
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise DataError("CharTokenizer expects single characters.")
        if len(set(chars)) != len(chars):
            raise DataError("CharTokenizer characters must be unique.")
        self.chars = chars
        self.stoi = {ch: i for i, ch in enumerate(chars)}
        self.itos = {i: ch for i, ch in enumerate(chars)}
        self._table: Optional[torch.Tensor] = None      # code point -> id, built on first encode

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The sorted set of the text's characters (counted on code points, fast on 50 MB)."""
        check_text(text, "a vocabulary is built from a str")
        if not text:
            raise DataError("cannot build a vocabulary from an empty text; pass the training text.")
        counts = torch.zeros(_MAX_CODE_POINT + 1, dtype=torch.long)
        for _, points in _code_point_chunks(text):
            chunk_counts = torch.bincount(points)
            counts[:len(chunk_counts)] += chunk_counts
        # sorting code points is sorting one-character strings: the order of sorted(set(text))
        return cls([chr(c) for c in counts.nonzero().flatten().tolist()])

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str, errors: str = "strict") -> list[int]:
        """Text -> ids. errors='strict' raises on an unknown character; 'skip' drops it."""
        return self.encode_tensor(text, errors).tolist()

    def encode_tensor(self, text: str, errors: str = "strict") -> torch.Tensor:
        """Text -> (N,) int64 ids, like `encode` but as a tensor and fast on large texts.

        A lookup table from code point to id is applied to the text's code points chunk by
        chunk: 50 MB of text take well under a second and the only large allocation is the
        id tensor itself (8 bytes a character).
        """
        if errors not in ("strict", "skip"):
            raise DataError(f"errors must be 'strict' (stop at an unknown character) or 'skip' (drop it), "
                            f"got {errors!r}.")
        check_text(text, "encode expects a str")
        if self._table is None:
            points = [ord(c) for c in self.chars]
            # every byte value has an entry, and the last entry (-1, "unknown") also stands
            # for every code point above the vocabulary's largest one
            table = torch.full((max(256, max(points) + 1) + 1,), -1, dtype=torch.long)
            table[torch.tensor(points)] = torch.arange(self.vocab_size)
            self._table = table
        ids = torch.empty(len(text), dtype=torch.long)
        for start, points in _code_point_chunks(text):
            out = ids[start:start + len(points)]
            index = points.int() if points.dtype == torch.uint8 else points.clamp(max=len(self._table) - 1)
            torch.index_select(self._table, 0, index, out=out)
            if errors == "strict" and len(out) and int(out.min()) < 0:
                position = start + int((out < 0).nonzero()[0])
                ch = text[position]
                raise UnknownCharacterError(
                    f"character {ch!r} (U+{ord(ch):04X}) at position {position} is not in this "
                    f"model's {self.vocab_size}-character vocabulary. Remove or replace it, or call "
                    f"encode(text, errors='skip') to drop unknown characters.")
        return ids[ids >= 0] if errors == "skip" else ids

    def decode(self, ids: Union[Sequence[int], torch.Tensor]) -> str:
        ids = ids_as_list(ids)
        try:
            return "".join(self.itos[int(i)] for i in ids)
        except KeyError as err:
            raise DataError(f"token id {err.args[0]} is outside the vocabulary "
                             f"(0..{self.vocab_size - 1}).") from None

    def to_dict(self) -> dict:
        return {"type": "char", "chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, values: dict) -> "CharTokenizer":
        if not isinstance(values, dict) or values.get("type") != "char" or not isinstance(values.get("chars"), str):
            raise DataError("not a character-tokenizer description (expected type 'char').")
        return cls(list(values["chars"]))

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class CharDataset(torch.utils.data.Dataset):
    """The seed's dataset: every window of `block_size` characters and its next-char targets."""

    def __init__(self, text: str, block_size: int, tokenizer: Optional[CharTokenizer] = None):
        if not is_whole_number(block_size, 1):
            raise DataError(f"block_size must be a positive integer, got {block_size!r}.")
        self.tokenizer = tokenizer or CharTokenizer.from_text(text)
        self.stoi, self.itos = self.tokenizer.stoi, self.tokenizer.itos
        self.vocab_size = self.tokenizer.vocab_size
        self.block_size = block_size
        self.data = self.tokenizer.encode_tensor(text)
        if len(self.data) <= block_size:
            raise DataError(f"the text has {len(self.data)} characters; it needs more than "
                             f"block_size={block_size} to make one training example.")

    def __len__(self) -> int:
        return len(self.data) - self.block_size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        # a sequence's rules: negative indices count from the end, and IndexError past it is
        # what ends `for x, y in dataset` (slicing alone would hand out shorter, then empty
        # windows for ever)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} is out of range for a CharDataset of {len(self)} windows.")
        chunk = self.data[i:i + self.block_size + 1]
        return chunk[:-1], chunk[1:]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)


def load_shakespeare() -> str:
    """The tinyshakespeare corpus (1,115,394 characters), shipped inside the package."""
    return resources.files("minigpt").joinpath("data/tinyshakespeare.txt").read_text(encoding="utf-8")


# The largest training text read: the ids alone take 8 bytes a character (int64), so 512 MB of
# text need over 4 GB for its tensor. enwik8, a large character-level corpus, is 100 MB.
MAX_TEXT_BYTES = 512 * 2**20
_READ_CHUNK = 1 << 24


def read_text_file(path: Union[str, Path], max_bytes: Optional[int] = None) -> str:
    """Read a UTF-8 training text of at most `max_bytes` bytes (default MAX_TEXT_BYTES), with errors that say what is
    wrong. A pipe or a device (`--text <(zcat corpus.gz)`) is read in chunks up to the limit,
    so an endless one (/dev/zero) is refused instead of filling the memory."""
    path = Path(path)
    max_bytes = MAX_TEXT_BYTES if max_bytes is None else max_bytes
    try:
        if path.is_dir():
            raise DataError(f"{str(path)!r} is a folder; --text needs a UTF-8 text file, "
                            "e.g. --text my_poems.txt.")
        if not path.exists():
            raise DataError(f"text file {str(path)!r} does not exist.")
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise DataError(f"{str(path)!r} has {size / 2**20:,.0f} MB; minigpt reads training texts of "
                                f"up to {max_bytes / 2**20:,.0f} MB (the ids take 8 bytes a character). "
                                "Train on a part of it, e.g. `head -c 100M big.txt > part.txt`.")
            raw = bytearray()
            while len(raw) <= max_bytes:
                chunk = f.read(_READ_CHUNK)
                if not chunk:
                    break
                raw += chunk
            if len(raw) > max_bytes:
                raise DataError(f"{str(path)!r} gave more than {max_bytes / 2**20:,.0f} MB and was still "
                                f"not at its end (a device or an endless stream?); minigpt reads training "
                                f"texts of up to {max_bytes / 2**20:,.0f} MB. Pass a text file.")
    except OSError as err:          # permission denied (on the file or a folder above it), I/O error
        raise DataError(f"cannot read {str(path)!r}: {err.strerror or err}.") from None
    try:
        # "utf-8-sig" drops a byte-order mark (Windows editors write one): it is no character of
        # the text, and as one it would enter the vocabulary and refuse every fine-tune
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{str(path)!r} is not valid UTF-8 (byte {err.start}); "
                        "convert it first, e.g. `iconv -t UTF-8`.") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")    # universal newlines, as text mode reads
    if len(text) < 100:
        raise DataError(f"{str(path)!r} has only {len(text)} characters; a language model needs "
                         "far more text (tinyshakespeare has 1.1 million).")
    return text


@dataclass
class TextData:
    """A tokenizer plus the encoded train and validation splits (the last 10% is validation)."""

    tokenizer: "CharTokenizer | BPETokenizer"    # minigpt.bpe.BPETokenizer for subword tokens
    train: torch.Tensor   # (N_train,) int64 token ids
    val: torch.Tensor     # (N_val,) int64 token ids

    @classmethod
    def from_text(cls, text: str, val_fraction: float = 0.1, tokenizer=None) -> "TextData":
        """Split `text` (the last val_fraction of its characters is validation) and encode it
        with `tokenizer`: a CharTokenizer or BPETokenizer, or None for the text's characters.

        The split is made on characters before encoding, so char and BPE data of the same text
        hold the same validation text (what makes bits per character comparable).
        """
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) \
                or not 0.0 < val_fraction < 1.0:
            raise DataError(f"val_fraction must be a number between 0 and 1, got {val_fraction!r}.")
        if tokenizer is None:
            tokenizer = CharTokenizer.from_text(text)
            if tokenizer.vocab_size < 2:    # every target would be that character: loss 0, nothing learnt
                raise DataError(f"the text has only one distinct character ({tokenizer.chars[0]!r}); a "
                                "language model needs at least two to predict anything. Check the file.")
        if not hasattr(tokenizer, "encode_tensor") or not hasattr(tokenizer, "vocab_size"):
            raise DataError(f"tokenizer must be a CharTokenizer or BPETokenizer, got {type(tokenizer).__name__}.")
        check_text(text, "TextData.from_text takes the text itself, a str")      # (with a tokenizer given)
        n_train = int(len(text) * (1.0 - val_fraction))
        if isinstance(tokenizer, CharTokenizer):
            # one id per character: encoded whole, so that an unknown character's position in
            # the error counts from the start of the text, not from the start of its split
            ids = tokenizer.encode_tensor(text)
            return cls(tokenizer, ids[:n_train], ids[n_train:])
        return cls(tokenizer, tokenizer.encode_tensor(text[:n_train]), tokenizer.encode_tensor(text[n_train:]))

    @classmethod
    def shakespeare(cls) -> "TextData":
        return cls.from_text(load_shakespeare())


def get_batch(data: torch.Tensor, block_size: int, batch_size: int,
              generator: Optional[torch.Generator] = None,
              device: Union[str, torch.device, None] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample `batch_size` random windows: x (B, T) and the next-token targets y (B, T).

    One `randint` and one gather replace the seed's Python loop over a DataLoader.
    """
    for name, value in (("block_size", block_size), ("batch_size", batch_size)):
        if not is_whole_number(value, 1):
            raise DataError(f"{name} must be a positive whole number, got {value!r}.")
    if not isinstance(data, torch.Tensor) or data.dim() != 1 or data.is_floating_point() or data.is_complex():
        what = (f"a {data.dim()}-D {data.dtype} tensor" if isinstance(data, torch.Tensor)
                else f"a {type(data).__name__}")
        raise DataError(f"get_batch needs one split's token ids as a 1-D integer tensor (data.train, "
                        f"data.val, or tokenizer.encode_tensor(text)), got {what}.")
    if len(data) < block_size + 1:       # one window needs block_size + 1 tokens
        raise DataError(f"the split has {len(data)} tokens, too few for windows of "
                         f"block_size={block_size}; use a smaller block_size or more text.")
    if device is not None:
        device = as_device(device, "get_batch")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise DataError(f"generator must be a torch.Generator or None, got {generator!r}; for a seed write "
                        f"torch.Generator().manual_seed({generator!r}).")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = starts[:, None] + torch.arange(block_size + 1)       # (B, T+1)
    windows = data[offsets]                                        # (B, T+1)
    if device is None or device.type == "cpu":
        return windows[:, :-1], windows[:, 1:]
    cuda = device.type == "cuda"
    if cuda:
        # a copy from page-locked memory is queued behind the GPU's work instead of waiting
        # for it, so the CPU prepares the next step while the GPU runs this one
        windows = windows.pin_memory()
    # asynchronous only from pinned memory on CUDA: on MPS a non-blocking copy of a CPU tensor
    # freed right after (as `windows` is here) can read freed memory (pytorch#139550)
    windows = windows.to(device, non_blocking=cuda)                # one copy, then x and y
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()
