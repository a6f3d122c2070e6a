"""Byte-level byte-pair encoding (BPE): the subword tokenizer of GPT-2, built small.

The base alphabet is the 256 byte values, so every Unicode text has an encoding (its UTF-8
bytes) and no character is ever unknown. Training repeatedly merges the most frequent
adjacent pair of tokens into a new token; the ordered list of merges *is* the tokenizer.
Encoding splits the text into pre-tokens (GPT-2's regex: words, numbers, punctuation runs,
whitespace), turns each into its bytes, and applies the merges in the order they were learned
(lowest rank first). Decoding concatenates the tokens' bytes and decodes them as UTF-8.

    tok = BPETokenizer.train(load_shakespeare(), vocab_size=512)
    ids = tok.encode("To be, or not to be")
    assert tok.decode(ids) == "To be, or not to be"

Training counts pairs once over the *unique* pre-tokens (with their frequencies) and then
updates the counts only for the words a merge touches, instead of re-counting the whole text
after every merge.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from .data import CharTokenizer, DataError, check_text, ids_as_list
from .errors import is_whole_number, plain_number

# GPT-2's pre-tokenisation pattern (openai/gpt-2, encoder.py), unchanged: it needs the `regex`
# module, which knows \p{L} (letters) and \p{N} (numbers)
GPT2_REGEX_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# the stdlib `re` approximation: [^\W\d_] is "a letter", \d "a number" (\d misses numbers that
# are not decimal digits, such as "²", which count as letters here)
GPT2_STDLIB_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
try:
    import regex as _re
    GPT2_PATTERN, PATTERN_ENGINE = GPT2_REGEX_PATTERN, "regex"
except ImportError:
    import re as _re
    GPT2_PATTERN, PATTERN_ENGINE = GPT2_STDLIB_PATTERN, "re"

_SPLITTER = _re.compile(GPT2_PATTERN)
MIN_VOCAB_SIZE = 256


def pretokenize(text: str) -> list[str]:
    """Split text into GPT-2's pre-tokens; no merge ever crosses a boundary between two."""
    return _SPLITTER.findall(text)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from each byte to a printable character, used in its vocab.json/merges.txt.

    Printable Latin-1 bytes map to themselves; the other 68 (control characters, space, ...) map
    to the characters from U+0100 on, in byte order, so every token is a visible string.
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars)))


def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair` in `ids`, left to right, by `new_id`."""
    out, i, first, second = [], 0, pair[0], pair[1]
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == first and ids[i + 1] == second:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _whole_ids(values: Sequence, what: str) -> list[int]:
    """`values` as a list of ints, or a DataError: an id written 104.9 (int() made it 104) or
    "256" (a comparison failed deep inside) is a broken table, not an id."""
    ids = [plain_number(v) for v in values]
    for v in ids:
        if not is_whole_number(v):
            raise DataError(f"{what}: token ids are whole numbers, got {v!r}.")
    return ids


def _lone_surrogate(text: str, err: UnicodeEncodeError) -> DataError:
    """The error for a lone surrogate (possible in a Python str, never in a file read as UTF-8)."""
    char = err.object[err.start]
    return DataError(f"the text holds a lone surrogate U+{ord(char):04X} at position {text.index(char)}, which "
                     "UTF-8 (and so a byte-level BPE) cannot encode; remove it, or read the text from a file "
                     "as UTF-8.")


class BPETokenizer:
    """A byte-level BPE tokenizer: 256 byte tokens plus an ordered table of merges.

    `vocab[i]` is the bytes of token i; `merges` lists (left id, right id, new id) in rank
    order. Trained tokenizers give the bytes ids 0..255 and merge r the id 256 + r; GPT-2's
    files (`from_gpt2_files`) number them otherwise, which is why both tables are kept.
    """

    def __init__(self, merges: Sequence[Sequence[int]], byte_ids: Optional[Sequence[int]] = None,
                 specials: Optional[dict[str, int]] = None):
        byte_ids = list(range(256)) if byte_ids is None else _whole_ids(byte_ids, "byte_ids")
        if len(byte_ids) != 256 or len(set(byte_ids)) != 256:
            raise DataError("a BPE tokenizer needs 256 distinct ids for the 256 byte values.")
        specials = dict(specials or {})
        size = 256 + len(merges) + len(specials)
        vocab: list[Optional[bytes]] = [None] * size
        for b, i in enumerate(byte_ids):
            if not 0 <= i < size:
                raise DataError(f"byte id {i} is outside 0..{size - 1}.")
            vocab[i] = bytes([b])
        self.ranks: dict[tuple[int, int], tuple[int, int]] = {}    # pair -> (rank, new id)
        for rank, merge in enumerate(merges):
            if len(merge) != 3:
                raise DataError(f"merge {rank} must be [left id, right id, new id], got {list(merge)!r}.")
            left, right, new = _whole_ids(merge, f"merge {rank}")
            if not (0 <= new < size) or vocab[new] is not None:
                raise DataError(f"merge {rank} creates id {new}, which is out of range or already used.")
            if not (0 <= left < size and 0 <= right < size) or vocab[left] is None or vocab[right] is None:
                raise DataError(f"merge {rank} joins ids {left} and {right}, which no earlier rule defines.")
            if (left, right) in self.ranks:
                raise DataError(f"merge {rank} repeats the pair ({left}, {right}).")
            vocab[new] = vocab[left] + vocab[right]
            self.ranks[(left, right)] = (rank, new)
        for name, i in specials.items():
            _whole_ids([i], f"special token {name!r}")
            if not 0 <= i < size or vocab[i] is not None:
                raise DataError(f"special token {name!r} has id {i}, which is out of range or already used.")
            vocab[i] = name.encode("utf-8")
        self.vocab: list[bytes] = vocab          # every id is filled: size = 256 + merges + specials
        self.merges = [(l, r, n) for (l, r), (_, n) in sorted(self.ranks.items(), key=lambda kv: kv[1][0])]
        self.byte_ids = byte_ids
        self.specials = specials
        self._cache: dict[str, list[int]] = {}

    # ---- training ---------------------------------------------------------------------------
    @classmethod
    def train(cls, text: str, vocab_size: int) -> "BPETokenizer":
        """Learn vocab_size - 256 merges from `text` (the most frequent pair first).

        Ties between equally frequent pairs go to the smaller (left, right) ids, so training is
        deterministic. Stops early (with a smaller vocabulary) if no pair occurs twice.
        """
        if not is_whole_number(vocab_size):
            raise DataError(f"vocab_size must be an integer, got {vocab_size!r}.")
        if vocab_size < MIN_VOCAB_SIZE:
            raise DataError(f"vocab_size={vocab_size} is too small: a byte-level BPE has the 256 byte "
                            "values as its first tokens; pass vocab_size >= 256 (e.g. 512).")
        if isinstance(text, (bytes, bytearray)):
            raise DataError("train expects the text as a str, got bytes; decode it first, e.g. "
                            "data.decode('utf-8') (the tokenizer makes the bytes itself).")
        if not isinstance(text, str):
            raise DataError(f"train expects the text as a str, got {type(text).__name__}.")
        if not text:
            raise DataError("cannot train a BPE tokenizer on an empty text; pass the training text.")
        word_counts = Counter(pretokenize(text))
        try:
            words = [list(w.encode("utf-8")) for w in word_counts]    # unique pre-tokens as ids
        except UnicodeEncodeError as err:
            raise _lone_surrogate(text, err) from None
        freqs = list(word_counts.values())
        pair_counts: dict[tuple[int, int], int] = defaultdict(int)
        where: dict[tuple[int, int], set[int]] = defaultdict(set)     # pair -> words holding it
        for w, (ids, f) in enumerate(zip(words, freqs)):
            for pair in zip(ids, ids[1:]):
                pair_counts[pair] += f
                where[pair].add(w)
        merges = []
        for new_id in range(256, vocab_size):
            if not pair_counts:
                break
            best = max(pair_counts, key=lambda p: (pair_counts[p], -p[0], -p[1]))
            if pair_counts[best] < 2:
                break
            merges.append((best[0], best[1], new_id))
            for w in where.pop(best):
                ids, f = words[w], freqs[w]
                for pair in zip(ids, ids[1:]):               # take the word's old pairs out ...
                    pair_counts[pair] -= f
                    if pair_counts[pair] == 0:
                        del pair_counts[pair]
                ids = words[w] = merge_pair(ids, best, new_id)
                for pair in zip(ids, ids[1:]):               # ... and its new pairs in
                    pair_counts[pair] += f
                    where[pair].add(w)                       # stale entries are harmless: re-checked
            pair_counts.pop(best, None)
        return cls(merges)

    # ---- GPT-2's files ------------------------------------------------------------------------
    @classmethod
    def from_gpt2_files(cls, vocab_json: Union[str, Path], merges_txt: Union[str, Path]) -> "BPETokenizer":
        """GPT-2's tokenizer from its `encoder.json`/`vocab.json` and `vocab.bpe`/`merges.txt`.

        vocab.json maps each token, written with `bytes_to_unicode`, to its id; merges.txt lists
        one pair per line ("Ġ t") in rank order after a "#version" line. A vocab entry that no
        merge makes and that is not a single byte (GPT-2's <|endoftext|>) is a special token.
        """
        order = "pass vocab.json (or encoder.json) first, then merges.txt (or vocab.bpe)"
        try:
            vocab_text = Path(vocab_json).read_text(encoding="utf-8")
            lines = Path(merges_txt).read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read GPT-2 tokenizer files: {err}; {order}.") from None
        try:
            vocab = json.loads(vocab_text)
        except ValueError as err:
            raise DataError(f"{str(vocab_json)!r} is not JSON ({err}); {order}.") from None
        if not isinstance(vocab, dict):
            raise DataError(f"{str(vocab_json)!r} is not a JSON object of token -> id.")
        byte_to_char = bytes_to_unicode()
        try:
            byte_ids = [vocab[byte_to_char[b]] for b in range(256)]
        except KeyError as err:
            raise DataError(f"{str(vocab_json)!r} has no entry for the byte token {err.args[0]!r}; "
                            "a byte-level vocabulary needs all 256.") from None
        merges, made = [], set(byte_ids)
        for n, line in enumerate(lines, 1):
            if not line.strip() or line.startswith("#version"):
                continue
            parts = line.split(" ")
            if len(parts) != 2 or any(p not in vocab for p in parts) or parts[0] + parts[1] not in vocab:
                raise DataError(f"{str(merges_txt)!r} line {n} ({line!r}) is not a pair of tokens of "
                                "the vocabulary whose join is in the vocabulary.")
            new = vocab[parts[0] + parts[1]]
            merges.append((vocab[parts[0]], vocab[parts[1]], new))
            made.add(new)
        specials = {token: i for token, i in vocab.items() if i not in made}
        return cls(merges, byte_ids, specials)

    # ---- encoding and decoding -----------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _encode_word(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is None:
            ids = [self.byte_ids[b] for b in word.encode("utf-8")]
            while len(ids) > 1:
                # the pair of lowest rank present is merged first (everywhere in the word)
                rank, pair = min((self.ranks.get(p, (len(self.ranks), 0))[0], p) for p in zip(ids, ids[1:]))
                if rank == len(self.ranks):
                    break
                ids = merge_pair(ids, pair, self.ranks[pair][1])
            if len(self._cache) < 100_000:
                self._cache[word] = ids
        return list(ids)

    def encode(self, text: str) -> list[int]:
        """Text -> token ids (special tokens' text is encoded as ordinary text)."""
        check_text(text, "encode expects a str")
        out: list[int] = []
        try:
            for word in pretokenize(text):
                out.extend(self._encode_word(word))
        except UnicodeEncodeError as err:
            raise _lone_surrogate(text, err) from None
        return out

    def encode_tensor(self, text: str) -> torch.Tensor:
        """Text -> (N,) int64 ids, as `TextData` and `CharDataset` use them."""
        return torch.tensor(self.encode(text), dtype=torch.long)

    def decode_bytes(self, ids: Union[Sequence[int], torch.Tensor]) -> bytes:
        parts = []
        for i in ids_as_list(ids):
            if not 0 <= int(i) < len(self.vocab):
                raise DataError(f"token id {int(i)} is outside this BPE vocabulary (0..{len(self.vocab) - 1}); "
                                "decode ids made by this tokenizer or a model trained with it.")
            parts.append(self.vocab[int(i)])
        return b"".join(parts)

    def decode(self, ids: Union[Sequence[int], torch.Tensor]) -> str:
        """Ids -> text. Bytes that are not valid UTF-8 (a sequence cut in the middle of a
        character) become U+FFFD, as in GPT-2."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ---- saving -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"type": "bpe", "pattern": GPT2_PATTERN if PATTERN_ENGINE == "regex" else "gpt2-approx",
                "byte_ids": self.byte_ids, "merges": [list(m) for m in self.merges],
                "specials": self.specials}

    @classmethod
    def from_dict(cls, values: dict) -> "BPETokenizer":
        if not isinstance(values, dict) or values.get("type") != "bpe" \
                or not isinstance(values.get("merges"), list):
            raise DataError("not a BPE-tokenizer description (expected type 'bpe' with a list of merges).")
        _warn_if_other_pattern(values.get("pattern"))
        try:
            return cls(values["merges"], values.get("byte_ids"), values.get("specials"))
        except (TypeError, ValueError) as err:
            if isinstance(err, DataError):
                raise
            raise DataError(f"invalid BPE-tokenizer description: {err}") from None

    def save(self, path: Union[str, Path]) -> None:
        """Write the tokenizer to `path` as JSON, whole or not at all: a failed write (a full
        disk, a Ctrl-C) leaves the file that was there before."""
        from .run_folder import os_reason, write_text_atomically
        path = Path(path)
        try:
            write_text_atomically(path.parent, path.name, json.dumps(self.to_dict()))
        except OSError as err:
            raise DataError(f"could not write the tokenizer to {str(path)!r}: {os_reason(err)}. "
                            "Save it into a folder that exists and is writable.") from None

    @classmethod
    def load(cls, path: Union[str, Path]) -> "BPETokenizer":
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read the tokenizer file {str(path)!r}: {err}") from None
        return cls.from_dict(values)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)})"


class PatternWarning(UserWarning):
    """A tokenizer saved with one pre-tokenisation engine is loaded with the other."""


def _warn_if_other_pattern(saved) -> None:
    """Say when the text will be split differently from when the tokenizer was saved: merges
    learned on `regex`'s pre-tokens, applied to stdlib `re`'s (or the reverse), can give other
    ids for text with non-ASCII numbers or letters. Descriptions without a pattern are older
    files: nothing to compare."""
    if saved is None:
        return
    if saved not in (GPT2_REGEX_PATTERN, "gpt2-approx"):
        warnings.warn(f"this BPE tokenizer was saved with the pre-tokenisation pattern {saved!r}, "
                      "which minigpt does not know; it splits text with GPT-2's pattern, so ids may "
                      "differ from training. Fix: retrain the tokenizer with minigpt.",
                      PatternWarning, stacklevel=3)
        return
    saved_engine = "re" if saved == "gpt2-approx" else "regex"
    if saved_engine != PATTERN_ENGINE:
        how = ("with the `regex` module, which is not installed here: this Python splits text "
               "with the stdlib `re` approximation" if saved_engine == "regex" else
               "without the `regex` module (the stdlib `re` approximation), and this Python has "
               "`regex`: it splits text with GPT-2's exact pattern")
        fix = ("pip install regex" if saved_engine == "regex" else
               "retrain the tokenizer here, or load it with a Python that lacks `regex`, as it was saved")
        warnings.warn(f"this BPE tokenizer was saved {how}. Text with non-ASCII letters or numbers "
                      f"(such as '²') may get other ids than in training; fix: {fix}.",
                      PatternWarning, stacklevel=3)


def tokenizer_from_dict(values: dict) -> Union[CharTokenizer, BPETokenizer]:
    """The tokenizer a checkpoint describes: type 'char' or 'bpe'."""
    kind = values.get("type") if isinstance(values, dict) else None
    if kind == "bpe":
        return BPETokenizer.from_dict(values)
    return CharTokenizer.from_dict(values)
