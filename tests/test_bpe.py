"""minigpt.bpe: byte-level BPE training, encoding, saving, GPT-2's files, and its use by
TextData, checkpoints and the CLI; checked against Hugging Face `tokenizers` where installed."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from minigpt import BPETokenizer, GPTConfig, MiniGPT, MiniGPTError, TextData, load_model, save_checkpoint
from minigpt.bpe import bytes_to_unicode, merge_pair, pretokenize
from minigpt.data import load_shakespeare

TEXTS = ["", "hello world", "héllo wörld, naïve café", "emoji 🙂👍🏽 and 🇫🇷 flags",
         "中文：床前明月光，疑是地上霜。", "  spaces\n\n\ttabs   and\r\nnewlines  ", "it's we'll they're 123 4567",
         "\x00\x01 control bytes \ud7ff"]


@pytest.fixture(scope="module")
def shakespeare():
    return load_shakespeare()


@pytest.fixture(scope="module")
def tok512(shakespeare):
    return BPETokenizer.train(shakespeare[:900_000], 512)


def naive_train(text: str, vocab_size: int) -> list[tuple[int, int, int]]:
    """The textbook algorithm: re-count every pair of every pre-token after each merge."""
    words = [list(w.encode("utf-8")) for w in pretokenize(text)]
    merges = []
    for new_id in range(256, vocab_size):
        counts = Counter(p for w in words for p in zip(w, w[1:]))
        if not counts:
            break
        best = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))
        if counts[best] < 2:
            break
        merges.append((best[0], best[1], new_id))
        words = [merge_pair(w, best, new_id) for w in words]
    return merges


@pytest.mark.parametrize("text", TEXTS)
def test_any_text_round_trips(tok512, text):
    ids = tok512.encode(text)
    assert all(0 <= i < tok512.vocab_size for i in ids)
    assert tok512.decode(ids) == text
    assert tok512.decode(torch.tensor(ids, dtype=torch.long)) == text


def test_bytes_are_the_base_alphabet_and_merges_compress(tok512, shakespeare):
    assert tok512.vocab_size == 512 and len(tok512.merges) == 256
    assert [tok512.vocab[i] for i in range(256)] == [bytes([b]) for b in range(256)]
    held_out = shakespeare[900_000:]
    ids = tok512.encode(held_out)
    assert len(ids) < 0.6 * len(held_out)          # merges shorten the text (measured 0.53 tokens/char)
    assert tok512.decode(ids) == held_out


def test_incremental_training_equals_naive_recounting(shakespeare):
    text = shakespeare[:20_000] + " café naïve 🙂🙂🙂 🙂🙂"
    assert BPETokenizer.train(text, 330).merges == naive_train(text, 330)


def test_merges_take_the_most_frequent_pair_lowest_ids_on_a_tie():
    tok = BPETokenizer.train("aaabdaaabac", 259)
    a, b = ord("a"), ord("b")
    assert tok.merges[0] == (a, a, 256)              # "aa" occurs 4 times (overlapping counts once per pair position)
    assert tok.vocab[256] == b"aa"
    assert tok.decode(tok.encode("aaabdaaabac")) == "aaabdaaabac"
    assert len(tok.encode("aaabdaaabac")) < 11
    # then "Z=aa" gives "ZabdZabac": (256, a) and (a, b) both occur twice, and the pair with the
    # lower ids wins the tie (not the one seen first): that makes training deterministic
    assert tok.merges == [(a, a, 256), (a, b, 257), (256, 257, 258)]


def test_merges_never_cross_a_pre_token_boundary():
    # " the" is frequent, but "e t" spans two words: no token may hold a space after a letter
    tok = BPETokenizer.train("the the the the the cat the the\n" * 50, 300)
    assert all(not (len(v) > 1 and v[:-1].strip() and v.endswith(b" ")) for v in tok.vocab[256:])
    assert pretokenize("Hello, world! It's 2026.") == ["Hello", ",", " world", "!", " It", "'s", " 2026", "."]


def test_the_stdlib_pattern_splits_like_gpt2s_on_ordinary_text(shakespeare):
    import re
    regex = pytest.importorskip("regex")
    from minigpt.bpe import GPT2_REGEX_PATTERN, GPT2_STDLIB_PATTERN
    for text in TEXTS + [shakespeare[:100_000], "snake_case__x !_! a_1"]:
        assert re.findall(GPT2_STDLIB_PATTERN, text) == regex.findall(GPT2_REGEX_PATTERN, text), text


def test_encode_applies_merges_in_rank_order():
    a, b, c = ord("a"), ord("b"), ord("c")
    bc_first = BPETokenizer([(b, c, 256), (a, b, 257)])
    ab_first = BPETokenizer([(a, b, 256), (b, c, 257)])
    assert bc_first.encode("abc") == [a, 256]
    assert ab_first.encode("abc") == [256, c]
    # a later merge can build on an earlier one
    tok = BPETokenizer([(a, b, 256), (256, c, 257)])
    assert tok.encode("abcab") == [257, 256] and tok.vocab[257] == b"abc"


def test_merge_pair_is_left_to_right_and_non_overlapping():
    assert merge_pair([1, 1, 1], (1, 1), 9) == [9, 1]
    assert merge_pair([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert merge_pair([], (1, 2), 9) == []


def test_bad_input_is_a_one_line_error(tok512):
    with pytest.raises(MiniGPTError, match="vocab_size=100 is too small.*256"):
        BPETokenizer.train("some text", 100)
    with pytest.raises(MiniGPTError, match="token id 512 is outside"):
        tok512.decode([1, 512])
    with pytest.raises(MiniGPTError, match="token id -1 is outside"):
        tok512.decode([-1])
    with pytest.raises(MiniGPTError, match="empty text"):
        BPETokenizer.train("", 300)
    with pytest.raises(MiniGPTError, match="no earlier rule"):
        BPETokenizer([(300, 1, 256)])
    with pytest.raises(MiniGPTError, match=r"got bytes; decode it first"):      # was "empty text"
        BPETokenizer.train(b"hello hello", 300)
    # generate()'s output .tolist() is a list of rows: say so, as for a (1, T) tensor
    with pytest.raises(MiniGPTError, match=r"sequence of sequences; decode one row at a time"):
        tok512.decode([[104, 105]])
    with pytest.raises(MiniGPTError, match=r"got str 'hi'; it is text already, not ids"):
        tok512.decode("hi")


def test_json_round_trip(tok512, tmp_path):
    values = json.loads(json.dumps(tok512.to_dict()))
    again = BPETokenizer.from_dict(values)
    assert again.merges == tok512.merges and again.vocab == tok512.vocab
    tok512.save(tmp_path / "tok.json")
    loaded = BPETokenizer.load(tmp_path / "tok.json")
    for text in TEXTS:
        assert loaded.encode(text) == tok512.encode(text)
    with pytest.raises(MiniGPTError, match="not a BPE"):
        BPETokenizer.from_dict({"type": "char", "chars": "ab"})


def test_save_writes_whole_or_names_the_folder(tok512, tmp_path, monkeypatch):
    """save() into a folder that does not exist says so in one line (it was a raw
    FileNotFoundError); a write that fails midway (a full disk) leaves the earlier file whole."""
    with pytest.raises(MiniGPTError, match=r"could not write the tokenizer to '.*nowhere/tok.json': "
                                           r"No such file or directory\. Save it into a folder that exists"):
        tok512.save(tmp_path / "nowhere" / "tok.json")
    tok512.save(tmp_path / "tok.json")
    before = (tmp_path / "tok.json").read_bytes()
    real_write_text = Path.write_text

    def half_then_fail(self, text, *args, **kwargs):
        real_write_text(self, text[:100], *args, **kwargs)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(MiniGPTError, match="No space left on device"):
        BPETokenizer(tok512.merges[:10]).save(tmp_path / "tok.json")
    monkeypatch.undo()
    assert (tmp_path / "tok.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]


def test_a_table_with_ids_that_are_not_whole_numbers_is_refused(tmp_path):
    """A merge written [104.9, 101.2, 256] was truncated by int() into the merge 104 + 101, and a
    GPT-2 vocab.json whose id is the string "256" (or null) ended in "'<=' not supported"."""
    with pytest.raises(MiniGPTError, match=r"^merge 0: token ids are whole numbers, got 104\.9\.$"):
        BPETokenizer.from_dict({"type": "bpe", "merges": [[104.9, 101.2, 256]]})
    with pytest.raises(MiniGPTError, match=r"^special token '<\|endoftext\|>': token ids are whole numbers, got None"):
        BPETokenizer([], specials={"<|endoftext|>": None})
    vocab = {c: i for i, c in enumerate(bytes_to_unicode()[b] for b in range(256))}
    vocab[bytes_to_unicode()[104] + bytes_to_unicode()[101]] = "256"
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + bytes_to_unicode()[104] + " " + bytes_to_unicode()[101] + "\n",
                                         encoding="utf-8")
    with pytest.raises(MiniGPTError, match=r"^merge 0: token ids are whole numbers, got '256'\.$"):
        BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    vocab[bytes_to_unicode()[104] + bytes_to_unicode()[101]] = 256
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    assert BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt").encode("he") == [256]


def test_training_on_a_lone_surrogate_says_so_as_encoding_does():
    """train("a\ud800b ...") ended in a raw UnicodeEncodeError; encode already said it in words."""
    message = r"^the text holds a lone surrogate U\+D800 at position 1, which UTF-8 .* cannot encode"
    with pytest.raises(MiniGPTError, match=message):
        BPETokenizer.train("a\ud800b a\ud800b", 300)
    with pytest.raises(MiniGPTError, match=message):
        BPETokenizer([]).encode("a\ud800b")


@pytest.mark.parametrize("engine_here, saved_as, fragment", [
    ("re", "regex", "pip install regex"),          # saved with `regex`, loaded without it
    ("regex", "re", "lacks `regex`"),               # the reverse
    ("regex", r"\w+", "does not know"),             # a pattern minigpt never writes
])
def test_loading_with_another_pre_tokenisation_engine_warns(tok512, monkeypatch, engine_here, saved_as, fragment):
    import warnings
    import minigpt.bpe as bpe
    values = tok512.to_dict()
    values["pattern"] = {"regex": bpe.GPT2_REGEX_PATTERN, "re": "gpt2-approx"}.get(saved_as, saved_as)
    monkeypatch.setattr(bpe, "PATTERN_ENGINE", engine_here)
    with pytest.warns(bpe.PatternWarning, match=fragment):
        BPETokenizer.from_dict(values)
    same = dict(values, pattern=bpe.GPT2_REGEX_PATTERN if engine_here == "regex" else "gpt2-approx")
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # the same engine, or no pattern: silent
        BPETokenizer.from_dict(same)
        BPETokenizer.from_dict({k: v for k, v in values.items() if k != "pattern"})


def test_text_data_splits_on_characters_before_encoding(tok512, shakespeare):
    text = shakespeare[:50_000]
    data = TextData.from_text(text, tokenizer=tok512)
    n_train = int(len(text) * 0.9)
    assert tok512.decode(data.train) == text[:n_train]
    assert tok512.decode(data.val) == text[n_train:]
    assert data.train.dtype == torch.long
    with pytest.raises(MiniGPTError, match="tokenizer must be"):
        TextData.from_text(text, tokenizer="bpe")


def test_checkpoint_round_trip_stores_the_tokenizer_as_json(tok512, tmp_path):
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=tok512.vocab_size, block_size=8, n_embd=16, n_head=2, n_layer=1))
    folder = save_checkpoint(tmp_path / "run", model, tok512, step=1)
    meta = json.loads(next(folder.rglob("minigpt.json")).read_text())
    assert meta["tokenizer"]["type"] == "bpe" and len(meta["tokenizer"]["merges"]) == 256
    loaded, tokenizer = load_model(tmp_path / "run")
    assert isinstance(tokenizer, BPETokenizer) and tokenizer.merges == tok512.merges
    x = torch.tensor([tok512.encode("To be, or not")[:8]])
    model.eval(), loaded.eval()
    torch.testing.assert_close(loaded(x)[0], model(x)[0])


def test_gpt2_byte_table_is_a_bijection_onto_printable_characters():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert all(ch.isprintable() and not ch.isspace() for ch in table.values())
    assert table[ord("A")] == "A" and table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"


def write_gpt2_files(tok: BPETokenizer, folder):
    """`tok` written in GPT-2's format: ids 0..255 are the bytes in bytes_to_unicode order,
    merge r makes id 256 + r, and <|endoftext|> comes last."""
    table = bytes_to_unicode()
    name = lambda i: "".join(table[b] for b in tok.vocab[i])      # noqa: E731
    order = list(table)                  # GPT-2 numbers the bytes in the table's order
    vocab = {table[b]: i for i, b in enumerate(order)}
    for rank, (left, right, new) in enumerate(tok.merges):
        vocab[name(new)] = 256 + rank
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{name(l)} {name(r)}" for l, r, _ in tok.merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return vocab


def test_gpt2_files_load_as_the_same_tokenizer(shakespeare, tmp_path):
    tok = BPETokenizer.train(shakespeare[:100_000], 300)
    vocab = write_gpt2_files(tok, tmp_path)
    gpt2 = BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert gpt2.vocab_size == 301 and gpt2.specials == {"<|endoftext|>": 300}
    assert gpt2.vocab[0] == b"!" and gpt2.decode([300]) == "<|endoftext|>"
    for text in TEXTS + [shakespeare[100_000:103_000]]:
        ids = gpt2.encode(text)
        assert [gpt2.vocab[i] for i in ids] == [tok.vocab[i] for i in tok.encode(text)]
        assert gpt2.decode(ids) == text
    assert len(vocab) == 301
    with pytest.raises(MiniGPTError, match=r"merges.txt' is not JSON .*pass vocab.json .* first, then merges.txt") as info:
        BPETokenizer.from_gpt2_files(tmp_path / "merges.txt", tmp_path / "vocab.json")   # swapped
    assert "\n" not in str(info.value)
    (tmp_path / "merges.txt").write_text("#version: 0.2\nnot-a-pair\n", encoding="utf-8")
    with pytest.raises(MiniGPTError, match="line 2"):
        BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")


def test_gpt2_files_encode_like_hugging_face(shakespeare, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    tok = BPETokenizer.train(shakespeare[:100_000], 300)
    write_gpt2_files(tok, tmp_path)
    ours = BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    hf = tokenizers.Tokenizer(tokenizers.models.BPE.from_file(str(tmp_path / "vocab.json"),
                                                              str(tmp_path / "merges.txt")))
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    for text in TEXTS[1:] + [shakespeare[100_000:110_000]]:
        assert ours.encode(text) == hf.encode(text).ids, text


def test_compression_matches_hugging_face_tokenizers(tok512, shakespeare):
    """Same text, same vocabulary size, same GPT-2 pre-tokenisation: tokens per character on
    the held-out text agree within 2% (measured: equal to 4 decimals, 0.5304 both)."""
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer(tokenizers.models.BPE())
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=512, show_progress=False, special_tokens=[],
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator([shakespeare[:900_000]], trainer)
    held_out = shakespeare[900_000:]
    ours = len(tok512.encode(held_out)) / len(held_out)
    theirs = len(hf.encode(held_out).ids) / len(held_out)
    assert abs(ours / theirs - 1) < 0.02, (ours, theirs)


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}


def run(*args):
    return subprocess.run([sys.executable, "-m", "minigpt", *map(str, args)], capture_output=True,
                          text=True, encoding="utf-8", env=ENV, timeout=300)


def test_cli_trains_on_bpe_tokens_and_samples_with_them(tmp_path):
    out = tmp_path / "bpe"
    proc = run("train", "--preset", "tiny", "--tokenizer", "bpe", "--vocab-size", "300", "--out", out,
               "--no-progress", "--max-iters", "3", "--threads", "1", "--sample-tokens", "10")
    assert proc.returncode == 0, proc.stderr
    model, tokenizer = load_model(out)
    assert isinstance(tokenizer, BPETokenizer) and model.config.vocab_size == tokenizer.vocab_size == 300
    proc = run("sample", "--checkpoint", out, "--prompt", "ROMEO: café 🙂", "--max-new-tokens", "12",
               "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ROMEO: café 🙂")
    # the run resumes with its own merge table (it was refused before)
    proc = run("train", "--resume", "--out", out, "--max-iters", "4", "--no-progress", "--sample-tokens", "0")
    assert proc.returncode == 0, proc.stderr
    assert "trained 1 steps (4 in all)" in proc.stdout and "val tokens" in proc.stdout
    assert load_model(out)[1].to_dict() == tokenizer.to_dict()


@pytest.mark.parametrize("args, fragment", [
    (["--tokenizer", "bpe", "--vocab-size", "100"], "--vocab-size"),
    (["--vocab-size", "300"], "add --tokenizer bpe"),
])
def test_cli_bad_tokenizer_flags_are_one_line_errors(tmp_path, args, fragment):
    proc = run("train", "--preset", "tiny", "--out", tmp_path / "x", "--max-iters", "1", *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and fragment in proc.stderr


def test_training_merges_only_pairs_that_occur_at_least_twice():
    # a pair seen once saves nothing: "abcdef" has no repeated pair, so no merges
    assert BPETokenizer.train("abcdef", 300).vocab_size == 256


def test_decode_marks_bytes_that_are_not_utf8_instead_of_dropping_them():
    # 0xE4 starts a three-byte character that never comes: shown as U+FFFD, not lost
    assert BPETokenizer([]).decode([0xE4, 0x41]) == "\ufffdA"
