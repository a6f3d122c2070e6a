"""Chapter 15 exercises: byte-pair encoding by hand, and the mistakes it invites.

Two small functions carry the whole of BPE: `merge(ids, pair, new_id)` replaces a pair of
tokens by one new token, and `encode(text_bytes, merges)` applies a trained merge table to new
text. Both have a classic slip: merging overlapping pairs ("aaa" holds only one (a, a) to
merge, left to right) and applying the merges in the wrong order (the rank, the order they
were learned in, decides; not where a pair sits in the text nor how often it occurs there).
"""

from __future__ import annotations

from collections import Counter

from ..bpe import merge_pair
from .core import Case, CheckResult, Exercise, Mistake


# ------------------------------------------------------------------------ merge one pair
def _merge_overlapping(ids, pair, new_id):
    """Moves on by one after a match, so (a, a) in "aaa" is merged twice."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
        else:
            out.append(ids[i])
        i += 1
    return out


def _merge_drops_last(ids, pair, new_id):
    """Loops over positions 0..len-2 only: an unmerged last token is lost."""
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_appends_last(ids, pair, new_id):
    """Walks the pairs, then always appends ids[-1]: right unless the pair is the last two
    tokens, whose second one then comes back after the new token."""
    return _merge_drops_last(ids, pair, new_id) + list(ids[-1:])


def _merge_first_only(ids, pair, new_id):
    ids = list(ids)
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return ids[:i] + [new_id] + ids[i + 2:]
    return ids


def _merge_right_to_left(ids, pair, new_id):
    """Scans from the end: "aaa" becomes [a, X] instead of [X, a]."""
    flipped = merge_pair(list(reversed(ids)), (pair[1], pair[0]), new_id)
    return list(reversed(flipped))


def _merge_cases() -> list[Case]:
    a, b, c = 97, 98, 99
    return [
        Case('"aaab" with the pair (a, a): overlapping pairs', ([a, a, a, b], (a, a), 256)),
        Case('"abcabc" with the pair (a, b): the last token is not part of a merge', ([a, b, c, a, b, c], (a, b), 256)),
        Case('"abxaby" with the pair (a, b): two matches', ([a, b, 120, a, b, 121], (a, b), 300)),
        Case('"cab" with the pair (a, b): the pair is the last two tokens', ([c, a, b], (a, b), 256)),
        Case('"a b" with the pair (a, b): no match', ([a, 32, b], (a, b), 256)),
        Case("an empty list", ([], (a, b), 256)),
    ]


MERGE = Exercise(
    name="merge a pair (BPE)",
    reference=merge_pair,
    cases=_merge_cases,
    success="Every occurrence of the pair is replaced, left to right, without overlaps.",
    mistakes=[
        # first: on the case that exposes it, overlapping merges give the same output
        Mistake("bpe_merge.appends_last_token",
                "a merged pair at the end came back: after the loop, ids[-1] was appended even "
                "though the last pair had just been merged into new_id; copy the last token only "
                "when the loop stopped before it (i == len(ids) - 1).",
                _merge_appends_last),
        Mistake("bpe_merge.overlapping",
                "a token took part in two merges: after replacing ids[i], ids[i+1] by new_id, move "
                "on by two (i += 2), so that (a, a) in [a, a, a] gives [new, a], not [new, new, a].",
                _merge_overlapping),
        Mistake("bpe_merge.drops_last_token",
                "the last token went missing: a loop over i < len(ids) - 1 never copies ids[-1] "
                "when it is not part of a merge; loop while i < len(ids) and test i + 1 < len(ids) "
                "before looking at the pair.",
                _merge_drops_last),
        Mistake("bpe_merge.first_occurrence_only",
                "only the first occurrence was replaced: a merge replaces the pair everywhere in "
                "the sequence, in one left-to-right pass.",
                _merge_first_only),
        Mistake("bpe_merge.right_to_left",
                "the pairs were matched from the right: scan left to right, so [a, a, a] with "
                "(a, a) gives [new, a], as training did.",
                _merge_right_to_left),
    ],
)


def check_merge(my_merge) -> CheckResult:
    """Check `my_merge(ids, pair, new_id)`: list of ids -> list of ids."""
    return MERGE.check(my_merge)


# ------------------------------------------------------------------------ encode by rank
def _byte_ids(text_bytes) -> list[int]:
    return list(bytes(text_bytes))


def _encode_by_position(text_bytes, merges):
    """Merges the leftmost pair that has a merge, whatever its rank."""
    ids = _byte_ids(text_bytes)
    rank = {(left, right): new for left, right, new in merges}
    while True:
        pair = next((p for p in zip(ids, ids[1:]) if p in rank), None)
        if pair is None:
            return ids
        ids = merge_pair(ids, pair, rank[pair])


def _encode_by_frequency(text_bytes, merges):
    """Merges the pair that is most frequent in this text (ties: the first seen)."""
    ids = _byte_ids(text_bytes)
    rank = {(left, right): new for left, right, new in merges}
    while True:
        counts = Counter(p for p in zip(ids, ids[1:]) if p in rank)
        if not counts:
            return ids
        pair = counts.most_common(1)[0][0]
        ids = merge_pair(ids, pair, rank[pair])


def _encode_reversed(text_bytes, merges):
    """Applies the table from its last merge to its first."""
    ids = _byte_ids(text_bytes)
    for left, right, new in reversed(list(merges)):
        ids = merge_pair(ids, (left, right), new)
    return ids


def _encode_cases() -> list[Case]:
    a, b, c = 97, 98, 99
    return [
        Case('"aaaab" with merges [(a, a), (a, b)]', (b"aaaab", [(a, a, 256), (a, b, 257)])),
        Case('"abcbc" with merges [(a, b), (b, c)]', (b"abcbc", [(a, b, 256), (b, c, 257)])),
        Case('"abc" with merges [(b, c), (a, b), (a, bc)]', (b"abc", [(b, c, 256), (a, b, 257), (a, 256, 258)])),
        Case('"the theme" with merges [(t, h), (th, e), (e, " "), (m, e)]',
             (b"the theme", [(116, 104, 256), (256, 101, 257), (101, 32, 258), (109, 101, 259)])),
        Case("one byte and no merge applies", (b"a", [(a, b, 256)])),
    ]


ENCODE = Exercise(
    name="encode with a merge table (BPE)",
    reference=None,                 # BPETokenizer.encode splits words first: stored outputs
    stored="ENCODE",
    cases=_encode_cases,
    success="The merges are applied by rank, as they were learned, until none applies.",
    mistakes=[
        Mistake("bpe_encode.by_position",
                "the leftmost mergeable pair was merged first: the rank decides (the merge learned "
                "first wins); among the pairs present, merge the one whose merge has the lowest rank.",
                _encode_by_position),
        Mistake("bpe_encode.by_frequency_in_text",
                "the pair most frequent in this text was merged first: frequency mattered when the "
                "merges were learned, on the training text; encoding applies them by rank only.",
                _encode_by_frequency),
        Mistake("bpe_encode.reversed_ranks",
                "the table was applied from its last merge to its first: merge 0 was learned first "
                "and is applied first.",
                _encode_reversed),
        Mistake("bpe_encode.stops_after_one_merge",
                "only one merge was made: repeat (find the lowest-rank pair present, merge it) until "
                "no pair of the sequence is in the table."),
    ],
)


def check_encode(my_encode) -> CheckResult:
    """Check `my_encode(text_bytes, merges)`: bytes and [(left, right, new), ...] -> list of ids."""
    return ENCODE.check(my_encode)
