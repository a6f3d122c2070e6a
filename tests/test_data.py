"""Tokenizer, CharDataset, TextData, get_batch and read_text_file."""

import pytest
import torch

from conftest import chinese_text
from minigpt import (CharDataset, CharTokenizer, TextData, UnknownCharacterError, get_batch,
                     load_shakespeare, read_text_file)
from minigpt.data import DataError, DataTypeError
from minigpt.errors import MiniGPTError


# ------------------------------------------------------------------ tokenizer
def test_round_trip_ascii():
    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    tok = CharTokenizer.from_text(text)
    assert tok.chars == sorted(set(text))
    ids = tok.encode(text)
    assert len(ids) == len(text) and all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids)) == text


def test_round_trip_chinese():
    text = chinese_text(500)
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == len(set(text))
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode("明月光")) == "明月光"


def test_unknown_character_names_the_character():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(UnknownCharacterError) as info:
        tok.encode("ab月c")
    message = str(info.value)
    assert "'月'" in message and "U+6708" in message and "position 2" in message
    assert "errors='skip'" in message
    assert isinstance(info.value, ValueError)


def test_an_unknown_character_in_the_validation_part_is_placed_in_the_whole_text():
    """TextData encoded its two parts apart, so a bad character at 95 of 100 was "at position 5"."""
    from minigpt import TextData
    text = "ab" * 47 + "a" + "ü" + "abab"                      # ü at 95, inside the last 10%
    with pytest.raises(UnknownCharacterError, match="at position 95 "):
        TextData.from_text(text, tokenizer=CharTokenizer.from_text("ab"))
    data = TextData.from_text("ab" * 50, tokenizer=CharTokenizer.from_text("ab"))
    assert (len(data.train), len(data.val)) == (90, 10)


def test_errors_skip_drops_unknown_characters():
    tok = CharTokenizer.from_text("abc")
    assert tok.decode(tok.encode("a?b!c", errors="skip")) == "abc"
    with pytest.raises(DataError, match=r"errors must be 'strict' \(stop at an unknown character\) or 'skip'"):
        tok.encode("abc", errors="ignore")


def test_decode_errors():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"token id 7 is outside the vocabulary \(0\.\.2\)"):
        tok.decode([0, 7])
    with pytest.raises(ValueError, match=r"decode one row at a time"):
        tok.decode(torch.zeros(2, 3, dtype=torch.long))
    # these were Python's own "'int' object is not iterable" and a bare TypeError
    with pytest.raises(DataTypeError, match=r"decode expects a sequence of token ids .* got int 5; one id becomes \[id\]"):
        tok.decode(5)
    with pytest.raises(DataTypeError, match=r"got str 'ab'; it is text already, not ids"):
        tok.decode("ab")
    with pytest.raises(DataTypeError, match=r"encode expects a str, got bytes; decode the bytes first"):
        tok.encode(b"ab")
    with pytest.raises(TypeError, match=r"encode expects a str, got NoneType\.$"):    # still a TypeError
        tok.encode(None)


def test_tokenizer_construction_errors():
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")
    with pytest.raises(ValueError, match="unique"):
        CharTokenizer(["a", "a"])
    with pytest.raises(ValueError, match="single characters"):
        CharTokenizer(["ab"])


def test_tokenizer_dict_round_trip():
    tok = CharTokenizer.from_text("héllo 世界\n")
    again = CharTokenizer.from_dict(tok.to_dict())
    assert again.chars == tok.chars and again.stoi == tok.stoi
    with pytest.raises(ValueError, match="type 'char'"):
        CharTokenizer.from_dict({"type": "bpe"})


# -------------------------------------------------------------------- dataset
def test_char_dataset_windows_are_shifted_by_one():
    text = "hello world, hello tests"
    ds = CharDataset(text, block_size=5)
    assert len(ds) == len(text) - 5
    data = torch.tensor(ds.encode(text))
    for i in (0, 3, len(ds) - 1):
        x, y = ds[i]
        assert x.shape == y.shape == (5,)
        assert torch.equal(x, data[i:i + 5]) and torch.equal(y, data[i + 1:i + 6])
        assert ds.decode(x) == text[i:i + 5]
    x_last, y_last = ds[len(ds) - 1]
    assert ds.decode(y_last) == text[-5:]       # the last target is the text's last character
    assert [ds.decode(x) for x in (ds[-1][0], ds[-len(ds)][0])] == [text[-6:-1], text[:5]]
    windows = list(ds)                          # iteration stops after the last full window
    assert len(windows) == len(ds) and all(x.shape == (5,) for x, _ in windows)
    for i in (len(ds), -len(ds) - 1):
        with pytest.raises(IndexError, match="out of range for a CharDataset of 19 windows"):
            ds[i]


def test_char_dataset_needs_enough_text():
    with pytest.raises(ValueError, match=r"needs more than block_size=5"):
        CharDataset("abcde", block_size=5)
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        CharDataset("abcdef", block_size=0)


def test_text_data_split(shakespeare):
    text = shakespeare[:1000]
    data = TextData.from_text(text)
    assert len(data.train) == 900 and len(data.val) == 100
    assert data.tokenizer.decode(torch.cat([data.train, data.val])) == text
    assert data.train.dtype == torch.long
    with pytest.raises(ValueError, match="val_fraction"):
        TextData.from_text(text, val_fraction=1.0)


def test_load_shakespeare():
    text = load_shakespeare()
    assert len(text) == 1_115_394 and len(set(text)) == 65
    assert text.startswith("First Citizen:")


# ----------------------------------------------------------------- get_batch
def test_get_batch_shapes_and_targets():
    data = torch.arange(100)
    g = torch.Generator().manual_seed(0)
    x, y = get_batch(data, block_size=8, batch_size=5, generator=g)
    assert x.shape == y.shape == (5, 8) and x.dtype == torch.long
    # consecutive windows of the data, targets shifted by one
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(5, 7, dtype=torch.long))
    assert torch.equal(y, x + 1)
    assert int(x.min()) >= 0 and int(y.max()) <= 99


def test_get_batch_is_deterministic_with_a_seeded_generator():
    data = torch.randint(50, (500,))
    a = get_batch(data, 16, 4, torch.Generator().manual_seed(3))
    b = get_batch(data, 16, 4, torch.Generator().manual_seed(3))
    c = get_batch(data, 16, 4, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_get_batch_too_short_split():
    with pytest.raises(ValueError, match=r"the split has 16 tokens, too few for windows of block_size=16"):
        get_batch(torch.arange(16), 16, 2)


def test_get_batch_with_exactly_one_window():
    """block_size + 1 tokens make exactly one (x, y) pair."""
    x, y = get_batch(torch.arange(17), 16, 3)
    assert torch.equal(x, torch.arange(16).expand(3, 16)) and torch.equal(y, x + 1)


@pytest.mark.parametrize("kind, pinned, non_blocking", [("cuda", True, True), ("mps", False, False)])
def test_get_batch_copies_asynchronously_only_from_pinned_memory(monkeypatch, kind, pinned, non_blocking):
    """A non-blocking copy from pageable memory on MPS can read the source after it is freed
    (pytorch#139550): only CUDA, from pinned memory, copies asynchronously. The copy is
    recorded, not made, so this runs without either device."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)              # both devices, faked
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: calls.append("pin") or self)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, device, non_blocking=False:
                        calls.append((torch.device(device).type, non_blocking)) or self)
    x, y = get_batch(torch.arange(100), 8, 2, torch.Generator().manual_seed(0), device=kind)
    assert calls == ["pin"] * pinned + [(kind, non_blocking)]
    assert torch.equal(y, x + 1)


# -------------------------------------------------------------- read_text_file
def test_read_text_file(tmp_path):
    path = tmp_path / "poem.txt"
    text = chinese_text(300)
    path.write_text(text, encoding="utf-8")
    assert read_text_file(path) == text
    assert read_text_file(str(path)) == text


def test_read_text_file_missing(tmp_path):
    with pytest.raises(DataError, match=r"nope\.txt' does not exist"):
        read_text_file(tmp_path / "nope.txt")


def test_read_text_file_names_a_folder_as_a_folder(tmp_path):
    with pytest.raises(DataError, match=r"is a folder; --text needs a UTF-8 text file"):
        read_text_file(tmp_path)


def test_read_text_file_unreadable(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text("x" * 200)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("minigpt.data.open", refuse, raising=False)
    with pytest.raises(DataError, match=r"cannot read '.*secret.txt': Permission denied"):
        read_text_file(path)


def test_read_text_file_in_a_folder_that_is_not_searchable(tmp_path, monkeypatch):
    """A folder above the file without the x bit: even stat() fails (PermissionError), which
    Path.is_dir() does not swallow. (Patched: the tests may run as root, who may search anything.)"""
    path = tmp_path / "locked" / "poem.txt"
    real_stat = type(path).stat

    def stat(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)
    monkeypatch.setattr(type(path), "stat", stat)
    with pytest.raises(DataError, match=r"cannot read '.*poem.txt': Permission denied"):
        read_text_file(path)


def test_an_endless_stream_is_read_up_to_the_limit_and_refused():
    with pytest.raises(DataError, match=r"'/dev/zero' gave more than 1 MB and was still not at its end"):
        read_text_file("/dev/zero", max_bytes=2**20)


def test_a_text_over_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:
        f.truncate(2 * 2**20)                       # sparse: nothing to read, only a size
    monkeypatch.setattr("minigpt.data.MAX_TEXT_BYTES", 2**20)
    with pytest.raises(DataError, match=r"has 2 MB; minigpt reads training texts of up to 1 MB.*head -c"):
        read_text_file(path)


def test_read_text_file_reads_newlines_as_text_mode_does(tmp_path):
    path = tmp_path / "dos.txt"
    path.write_bytes(b"first line\r\nsecond\rthird\n" * 10)
    assert read_text_file(path) == "first line\nsecond\nthird\n" * 10


def test_read_text_file_not_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(("caf\u00e9 " * 50).encode("latin-1"))
    with pytest.raises(ValueError, match=r"is not valid UTF-8 \(byte 3\).*iconv"):
        read_text_file(path)


def test_read_text_file_too_short(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("too short", encoding="utf-8")
    with pytest.raises(ValueError, match="has only 9 characters"):
        read_text_file(path)


# ------------------------------------------------------------ fast tokenising
def reference_ids(tokenizer, text):
    """The obvious implementation, one dictionary lookup per character."""
    return [tokenizer.stoi[ch] for ch in text]


@pytest.mark.parametrize("text", [
    "hello world\n" * 50,
    chinese_text(3000),
    "mixed ASCII and 中文 and emoji 🙂 and é" * 20,
    "\x00\x7f\x80\uffff\U0010ffff" * 5,                  # the edges of the code point ranges
])
def test_tensor_encoding_matches_the_dictionary_lookup(text, monkeypatch):
    import minigpt.data
    monkeypatch.setattr(minigpt.data, "_CHUNK", 37)        # many chunks, ASCII and not mixed
    tok = CharTokenizer.from_text(text)
    assert tok.chars == sorted(set(text))
    ids = tok.encode_tensor(text)
    assert ids.dtype == torch.long and ids.tolist() == reference_ids(tok, text)
    assert tok.encode(text) == reference_ids(tok, text)
    data = TextData.from_text(text)
    assert torch.cat([data.train, data.val]).tolist() == reference_ids(data.tokenizer, text)


def test_unknown_character_found_in_a_later_chunk(monkeypatch):
    import minigpt.data
    monkeypatch.setattr(minigpt.data, "_CHUNK", 10)
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(UnknownCharacterError, match=r"'月' \(U\+6708\) at position 25"):
        tok.encode("abc" * 8 + "a月b")
    with pytest.raises(UnknownCharacterError, match=r"'z' \(U\+007A\) at position 12"):
        tok.encode("abcabcabcabcz")                 # an ASCII chunk with an unknown character
    assert tok.decode(tok.encode("abc" * 8 + "a月bz", errors="skip")) == "abc" * 8 + "ab"
    assert tok.encode("") == [] and tok.encode_tensor("").shape == (0,)


def test_lone_surrogates_are_characters_too():
    text = "ab\ud800c" * 40                          # possible in a Python string, never in UTF-8
    tok = CharTokenizer.from_text(text)
    assert "\ud800" in tok.stoi and tok.encode(text) == reference_ids(tok, text)


def test_data_errors_are_minigpt_errors():
    for err in (DataError, UnknownCharacterError):
        assert issubclass(err, MiniGPTError) and issubclass(err, ValueError)
    with pytest.raises(DataError, match="not a character-tokenizer description"):
        CharTokenizer.from_dict(["a", "b"])


def test_a_text_of_one_repeated_character_is_refused():
    # it trained silently to loss 0.0000 (every target is the one character)
    with pytest.raises(ValueError, match=r"only one distinct character \('a'\); a language model needs at least two"):
        TextData.from_text("a" * 5000)


def test_a_byte_order_mark_is_not_part_of_the_text(tmp_path):
    # Notepad's UTF-8 files start with EF BB BF; as a character it entered the vocabulary
    path = tmp_path / "bom.txt"
    text = "ROMEO:\nBut soft, what light through yonder window breaks?\n" * 3
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert read_text_file(path) == text


def test_a_character_above_the_vocabulary_s_largest_is_unknown_not_the_largest():
    # the code-point table ends with an "unknown" slot; without it '文' (above '中') encoded as '中'
    tok = CharTokenizer(list("aé中"))
    with pytest.raises(UnknownCharacterError):
        tok.encode("文")


def test_a_path_given_for_the_text_is_named_with_the_fix(tmp_path):
    """With a tokenizer, from_text took len() of a Path: a TypeError from inside it."""
    from minigpt import MiniGPTError, TextData
    with pytest.raises(MiniGPTError, match=r"takes the text itself, a str, got \w*Path; read the file first: "
                                           r"minigpt\.read_text_file\(path\)"):
        TextData.from_text(tmp_path / "p.txt", tokenizer=CharTokenizer.from_text("abc"))
