"""Chapter 14: the self-test questions that have one checkable answer (a shape, a count, an option).

Each question is data: the right answer, why it is right, and the tempting wrong answers with
the hint each deserves. `check_self_test("11.2", answer)` answers through
`minigpt.exercises.check_answer`. The answer may be a value or a function returning it (the
notebook's cells are functions, so nbgrader's student edition, which replaces a solution with
`raise NotImplementedError()`, gets "not implemented yet" instead of a crash).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from .core import CheckResult, check_answer


@dataclass(frozen=True)
class Question:
    number: str                      # "chapter.question", as in the chapter's headings
    text: str
    answer: Any
    explanation: str
    wrong: dict = field(default_factory=dict)
    form: str = ""                   # what a right answer looks like, said with any other wrong one


LETTER = "one letter, the option you choose, as a string: {}"
WHOLE = "a whole number (an int) of {}"
SHAPE = "a shape: a tuple of ints, such as (3, 4, 5)"


QUESTIONS = {q.number: q for q in [
    Question("1.1", "How many distinct tokens (characters) does tinyshakespeare have?", 65,
             "65 distinct characters, as chapter 1 prints them: 52 letters, 8 punctuation marks "
             "(! ' , - . : ; ?), the symbols '$' and '&', the digit '3' (the only digit in the "
             "play), space and newline.",
             {26: "26 counts lower-case letters only; the text has upper case, punctuation, space "
                  "and newline too.",
              52: "52 counts the letters only; punctuation, space and newline are tokens too.",
              256: "256 is the number of byte values; a character-level tokenizer only has the "
                   "characters that occur in the text."},
             WHOLE.format("characters: how many different characters occur in the text")),
    Question("1.4", "Which loss does a model that knows nothing give? (a) 0, (b) ln 65, (c) 1/65, (d) 65",
             "b", "It spreads probability 1/65 on every token, and the cross-entropy is -ln(1/65) = ln 65 ≈ 4.17.",
             {"a": "0 is the loss of a model that is always certain and right.",
              "c": "1/65 is the probability the uniform model gives each token; the loss is its "
                   "negative log.",
              "d": "65 is the vocabulary size; the loss is the negative log of the probability 1/65."},
             LETTER.format("'a', 'b', 'c' or 'd' (not the loss's value)")),
    Question("2.3", "By what do the scores q·k get divided? (a) D, (b) √D, (c) T, (d) nothing",
             "b", "With unit-variance entries q·k has variance D; dividing by √D brings it back to 1.",
             {"a": "Dividing by D shrinks the variance to 1/D: the softmax becomes nearly uniform.",
              "c": "The scale depends on the head size D, not on the sequence length.",
              "d": "Without a scale, large heads give scores of size √D and a saturated softmax."},
             LETTER.format("'a', 'b', 'c' or 'd'")),
    Question("3.1", "Where is the causal mask applied? (a) to the scores, before the softmax, "
                    "(b) to the weights, after the softmax, (c) to the values",
             "a", "Setting future scores to -inf before the softmax makes their weights exactly 0 "
                  "and the remaining weights still sum to 1.",
             {"b": "Zeroing weights after the softmax leaves rows that no longer sum to 1.",
              "c": "Masking values hides information but the weights still leak the future's scores."},
             LETTER.format("'a', 'b' or 'c'")),
    Question("4.1", "Shape of q after splitting C = 64 channels into H = 8 heads, for B = 2, T = 5?",
             (2, 8, 5, 8), "(B, H, T, D) with D = C / H = 8: view as (B, T, H, D), then transpose(1, 2).",
             {(2, 5, 8, 8): "That is (B, T, H, D): the heads must come before T, so that each head "
                            "attends over the positions (transpose(1, 2)).",
              (2, 8, 5, 64): "Each head works on D = C / H = 8 channels, not all 64."},
             SHAPE),
    Question("7.1", "How many parameters does weight tying share in the pretrained model (V = 65, C = 256)?",
             16640, "wte and lm_head are one (65, 256) matrix: 65 x 256 = 16,640 parameters.",
             {33280: "That counts the matrix twice; tying means there is only one.",
              65536: "256 x 256 would be a C x C matrix; the embedding is V x C = 65 x 256."},
             WHOLE.format("parameters")),
    Question("9.1", "Which decoding does temperature 0 mean? (a) uniform sampling, (b) greedy, "
                    "(c) sampling from the model's distribution",
             "b", "Temperature 0 is the limit of dividing logits by a tiny number: all probability on "
                  "the argmax, i.e. greedy decoding.",
             {"a": "Uniform sampling is the other limit, a very large temperature.",
              "c": "That is temperature 1."},
             LETTER.format("'a', 'b' or 'c' (not the decoding's name)")),
    Question("10.1", "Shape of model.attention_maps(idx) for the pretrained model (6 layers, 8 heads) "
                     "and idx of shape (1, 20)?",
             (6, 1, 8, 20, 20), "(n_layer, B, n_head, T, T): one (T, T) map per layer and head.",
             {(1, 6, 8, 20, 20): "The layers come first: (n_layer, B, n_head, T, T).",
              (6, 8, 20, 20): "The batch dimension B = 1 stays in the result."},
             SHAPE),
    Question("10.2", "In the pretrained model, where do the heads that track the start of the current "
                     "word put their weight? (a) on the space or newline before the word, (b) on the "
                     "word's first letter, (c) on position 0",
             "b", "Chapter 10 measured it on a 256-character passage: the word's first letter gets up "
                  "to 0.44 of a head's attention (layer 2 head 6; 0.36-0.38 in layer 3), the space "
                  "before it at most 0.24 (layer 3 head 6), against 0.01 for uniform attention.",
             {"a": "Chapter 10 measured both: the space before the word gets at most 0.24 of a head's "
                   "attention, the letter after it up to 0.44. Look at the 'word start' and 'first "
                   "letter' tables.",
              "c": "No head parks much weight on position 0 in running text (at most 0.06): chapter 10 "
                   "found no attention sink."},
             LETTER.format("'a', 'b' or 'c'")),
    Question("11.3", "Bytes of the pretrained model's KV cache (6 layers, 8 K/V heads of size 32) "
                     "for 64 sequences of 256 tokens in bfloat16?",
             100663296, "2 (keys and values) x 6 x 8 x 32 x 256 tokens x 2 bytes x 64 sequences = "
                        "100,663,296 bytes = 96 MiB.",
             {50331648: "That is half: the cache holds keys *and* values (the factor 2).",
              201326592: "bfloat16 takes 2 bytes per number, not 4.",
              1572864: "That is one sequence; multiply by the batch of 64.",
              96: "96 is the size in MiB; the question asks for bytes (1 MiB = 2**20 bytes).",
              48: "48 is half the size, in MiB: the question asks for bytes, and the cache holds "
                  "keys *and* values (the factor 2)."},
             WHOLE.format("bytes, not MiB or GB (1 MiB = 2**20 bytes)")),
    Question("12.2", "With 8 query heads and 2 K/V heads, which K/V head does query head 6 read?",
             1, "repeat_interleave groups consecutive heads: query heads 0-3 read K/V head 0, 4-7 read 1.",
             {0: "That is the grouping of `repeat` (head 6 -> 6 % 2 = 0); the package groups "
                 "consecutive query heads (6 // 4 = 1).",
              6: "There are only 2 K/V heads (0 and 1), shared by groups of 4 query heads."},
             "the index of one K/V head, an int counting from 0"),
    Question("12.3", "Output width of c_attn with C = 256, 8 heads of D = 32 and n_kv_head = 2?",
             384, "C for the queries plus 2 x n_kv_head x D = 128 for keys and values: 256 + 128 = 384.",
             {768: "768 = 3C is plain multi-head attention (8 K/V heads).",
              320: "320 is MQA (one K/V head): 256 + 2 x 32.",
              352: "Keys *and* values each get n_kv_head x D = 64 channels: 256 + 64 + 64."},
             WHOLE.format("output channels")),
    Question("13.2", "Causal tiled attention, T = 200, tiles of 64 x 64: how many of the 16 tiles are computed?",
             10, "Query tile i needs key tiles 0..i: 1 + 2 + 3 + 4 = 10; the other 6 lie entirely in the future.",
             {16: "Key tiles that start after the query tile's last row are skipped.",
              8: "The diagonal tiles are computed too (they are masked inside): 1 + 2 + 3 + 4.",
              6: "6 is the number of tiles skipped."},
             WHOLE.format("tiles")),
    Question("15.1", "How many merges does BPETokenizer.train(text, 512) learn (when the text has that many pairs to merge)?",
             256, "The first 256 ids are the byte values, the base alphabet; every merge adds one token, so "
                  "a vocabulary of 512 holds 512 - 256 = 256 merges.",
             {512: "512 is the vocabulary size; the 256 byte values are in it without being learned.",
              65: "65 is the character model's vocabulary; byte-level BPE starts from the 256 byte values.",
              447: "447 = 512 - 65 starts from the characters; byte-level BPE starts from the 256 byte values."},
             WHOLE.format("merges")),
    Question("16.2", "How many parameters does a rank-8 LoRA adapter add to one attn.c_attn of the pretrained "
                     "model (256 inputs, 768 outputs)?",
             8192, "A is (r, n_in) = (8, 256) and B is (n_out, r) = (768, 8): r x (n_in + n_out) = "
                   "8 x 1,024 = 8,192 (W's 196,608 stay frozen).",
             {1572864: "8 x 256 x 768 is not how LoRA grows: B·A has W's shape but only r x (n_in + n_out) "
                       "parameters, A (8, 256) and B (768, 8).",
              196608: "196,608 = 256 x 768 is W itself, which LoRA freezes.",
              2048: "2,048 counts A (8 x 256) only; B (768 x 8) trains too.",
              6144: "6,144 counts B (768 x 8) only; A (8 x 256) trains too."},
             WHOLE.format("parameters")),
]}


def check_self_test(number: str, given: Any) -> CheckResult:
    """Check the answer to self-test question `number` ("11.3"); `given` is a value or a function."""
    if number not in QUESTIONS:
        raise UsageError(f"no checkable self-test question {number!r}; the questions are "
                         f"{', '.join(QUESTIONS)}.")
    q = QUESTIONS[number]
    if isinstance(q.answer, str):   # an option: "B", "(b)" and " b " all mean "b"
        given = (lambda answer: lambda: _option(answer()))(given) if callable(given) else _option(given)
    return check_answer(f"question {number}", given, q.answer, q.explanation, q.wrong, q.form)


def _option(answer: Any) -> Any:
    return answer.strip().strip("()").strip().lower() if isinstance(answer, str) else answer

