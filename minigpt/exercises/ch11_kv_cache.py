"""Chapter 11 exercises: a sliding-window KV cache and a cached greedy generator.

Both are checked by *behaviour over several steps*: the cache is driven through a prefill, single
tokens and a stretch longer than it can hold, and the generator through a prompt that crosses
`block_size`. A cache that forgets to advance, a generator that recomputes everything, or one
that slides its cache past the context window each leave their own trace in what comes back.
"""

from __future__ import annotations

import torch

from ..config import GPTConfig
from ..errors import MiniGPTError
from ..kv_cache import KVCache
from ..model import MiniGPT
from .core import Case, CheckResult, Exercise, Mistake


# ------------------------------------------------------------- a sliding-window cache
class SlidingKVCache:
    """Keys and values of the last `max_len` positions of one layer (the reference).

    The skeleton the notebook gives: zero-filled buffers (B, Hkv, max_len, D) and `length`,
    the number of positions held. `append(k, v)` stores the new positions after the held
    ones, keeps only the most recent `max_len`, and returns what is held.
    """

    def __init__(self, batch_size: int, n_kv_head: int, max_len: int, head_dim: int):
        self.k = torch.zeros(batch_size, n_kv_head, max_len, head_dim)
        self.v = torch.zeros_like(self.k)
        self.length = 0
        self.max_len = max_len

    def append(self, k: torch.Tensor, v: torch.Tensor):
        keys = torch.cat([self.k[:, :, :self.length], k], dim=2)[:, :, -self.max_len:]
        values = torch.cat([self.v[:, :, :self.length], v], dim=2)[:, :, -self.max_len:]
        self.length = keys.size(2)
        self.k[:, :, :self.length] = keys
        self.v[:, :, :self.length] = values
        return keys, values


class _LengthNotAdvanced(SlidingKVCache):
    def append(self, k, v):
        keys = torch.cat([self.k[:, :, :self.length], k], dim=2)[:, :, -self.max_len:]
        values = torch.cat([self.v[:, :, :self.length], v], dim=2)[:, :, -self.max_len:]
        self.k[:, :, :keys.size(2)] = keys
        self.v[:, :, :values.size(2)] = values
        return keys, values                                   # self.length stays 0


class _LengthCountsCalls(SlidingKVCache):
    def append(self, k, v):
        keys = torch.cat([self.k[:, :, :self.length], k], dim=2)[:, :, -self.max_len:]
        values = torch.cat([self.v[:, :, :self.length], v], dim=2)[:, :, -self.max_len:]
        self.k[:, :, :keys.size(2)] = keys
        self.v[:, :, :values.size(2)] = values
        self.length = min(self.length + 1, self.max_len)      # one per call, not per position
        return keys, values


class _ValuesNotStored(SlidingKVCache):
    def append(self, k, v):
        keys = torch.cat([self.k[:, :, :self.length], k], dim=2)[:, :, -self.max_len:]
        self.length = keys.size(2)
        self.k[:, :, :self.length] = keys                     # the values line is missing
        return keys, self.v[:, :, :self.length]


class _Overwrites(SlidingKVCache):
    def append(self, k, v):
        T = min(k.size(2), self.max_len)
        self.k[:, :, :T], self.v[:, :, :T] = k[:, :, -T:], v[:, :, -T:]
        self.length = T                                       # starts again from position 0
        return self.k[:, :, :T], self.v[:, :, :T]


class _ReturnsNewOnly(SlidingKVCache):
    def append(self, k, v):
        super().append(k, v)
        return k, v


class _NotTruncated(SlidingKVCache):
    def append(self, k, v):
        keys = torch.cat([self.k[:, :, :self.length], k], dim=2)
        values = torch.cat([self.v[:, :, :self.length], v], dim=2)
        self.length = keys.size(2)
        if self.length > self.k.size(2):                      # grow the buffers instead of sliding
            self.k, self.v = keys.clone(), values.clone()
        self.k[:, :, :self.length], self.v[:, :, :self.length] = keys, values
        return keys, values


class _KeepsOldest(SlidingKVCache):
    def append(self, k, v):
        keys = torch.cat([self.k[:, :, :self.length], k], dim=2)[:, :, :self.max_len]
        values = torch.cat([self.v[:, :, :self.length], v], dim=2)[:, :, :self.max_len]
        self.length = keys.size(2)
        self.k[:, :, :self.length], self.v[:, :, :self.length] = keys, values
        return keys, values


class _RingBuffer(SlidingKVCache):
    def append(self, k, v):
        slot = getattr(self, "slot", 0)                        # where the next position goes
        for t in range(k.size(2)):
            self.k[:, :, slot], self.v[:, :, slot] = k[:, :, t], v[:, :, t]
            slot = (slot + 1) % self.max_len
            self.length = min(self.length + 1, self.max_len)
        self.slot = slot
        return self.k[:, :, :self.length], self.v[:, :, :self.length]   # in storage order


class _KeysValuesSwapped(SlidingKVCache):
    def append(self, k, v):
        keys, values = super().append(k, v)
        return values, keys


def _steps(B: int, H: int, D: int, sizes: list[int], seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(B, H, T, D, generator=g), torch.randn(B, H, T, D, generator=g)) for T in sizes]


def _cache_cases() -> list[Case]:
    return [
        Case("a 3-position prefill then single positions, 6 positions in a cache of 8",
             (2, 2, 8, 4, _steps(2, 2, 4, [3, 1, 1, 1], seed=1))),
        Case("a sequence longer than the cache: 3 + 1 + 1 + 1 + 1 + 1 + 2 positions, max_len 5",
             (1, 2, 5, 4, _steps(1, 2, 4, [3, 1, 1, 1, 1, 1, 2], seed=2))),
        Case("one position at a time into a cache of 1 (T = 1 only)",
             (1, 1, 1, 3, _steps(1, 1, 3, [1, 1, 1], seed=3))),
    ]


def _run_cache(solution, case: Case):
    """Drive the cache through the case's appends: (the lengths, the keys, the values returned
    at each append) — outputs 0, 1 and 2 in the answer."""
    B, H, max_len, D, steps = case.args
    cache = solution(B, H, max_len, D)
    lengths, keys, values = [], [], []
    for k, v in steps:
        got_k, got_v = cache.append(k.clone(), v.clone())
        lengths.append(int(cache.length))
        keys.append(got_k.clone())
        values.append(got_v.clone())
    # the lengths as one line of text, so a wrong one reads "expected '3, 4, 5', got '0, 0, 0'"
    return ("cache length after each append: " + ", ".join(map(str, lengths)),
            tuple(keys), tuple(values))


SLIDING_CACHE = Exercise(
    name="sliding-window KV cache",
    reference=SlidingKVCache,
    cases=_cache_cases,
    run=_run_cache,
    success="Your cache grows by every appended position and, once full, keeps the latest max_len.",
    mistakes=[
        Mistake("kv_cache.length_not_advanced",
                "the cache length did not grow after the step: after storing T new positions, "
                "set self.length to the number of positions now held.",
                _LengthNotAdvanced),
        Mistake("kv_cache.length_counts_calls",
                "the length grew by 1 for a prefill of several positions: advance it by k.size(2), "
                "the number of positions appended, not by one per call.",
                _LengthCountsCalls),
        Mistake("kv_cache.values_not_stored",
                "the keys are right but the values are zeros: the new values were never written "
                "into self.v (store v exactly as you store k).",
                _ValuesNotStored),
        Mistake("kv_cache.overwrites",
                "each append overwrote the cache from position 0, so only the newest positions "
                "are held: write the new positions after the `length` ones already there.",
                _Overwrites),
        Mistake("kv_cache.returns_new_only",
                "append returned only the new keys and values; attention needs everything held, "
                "so return the first `length` positions of the buffers.",
                _ReturnsNewOnly),
        Mistake("kv_cache.not_truncated",
                "past max_len the cache kept growing: once it holds more than max_len positions, "
                "keep only the most recent max_len (slice [-max_len:]).",
                _NotTruncated),
        Mistake("kv_cache.ring_buffer_order",
                "the cache is a ring buffer (the oldest slot overwritten) and returns its slots in "
                "storage order, so once it wraps around the keys come back out of order: return "
                "the held positions oldest first (shift the buffer, or roll it by the write slot "
                "before returning), so position order survives for the causal mask.",
                _RingBuffer),
        Mistake("kv_cache.keys_and_values_swapped",
                "append returned (values, keys): return the keys first, then the values, "
                "as the skeleton says (keys, values).",
                _KeysValuesSwapped),
        Mistake("kv_cache.keeps_oldest",
                "past max_len the cache dropped the new positions and kept the oldest ones: a "
                "sliding window keeps the *most recent* max_len ([-max_len:], not [:max_len]).",
                _KeepsOldest),
    ],
)


def check_sliding_cache(MyCache) -> CheckResult:
    """Check a class `MyCache(batch_size, n_kv_head, max_len, head_dim)` with `append(k, v)`
    returning the held keys and values (B, Hkv, length, D) and a `length` attribute."""
    return SLIDING_CACHE.check(MyCache)


# ------------------------------------------------------------ a cached greedy generator
def exercise_model() -> MiniGPT:
    """The small seeded model the generator exercise runs on (learned positions, block 16)."""
    torch.manual_seed(11)
    model = MiniGPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0))
    with torch.no_grad():                      # larger weights: varied, well-separated greedy picks
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(20.0)
    return model.eval()


def _embed(model: MiniGPT, idx: torch.Tensor, start: int) -> torch.Tensor:
    return model.wte(idx) + model.wpe.weight[start:start + idx.size(1)]


def _step(model, idx_new, caches, start):
    x = _embed(model, idx_new, start)
    for block, cache in zip(model.blocks, caches):
        x = block(x, cache=cache)
    return model.lm_head(model.ln_f(x[:, -1]))


@torch.no_grad()
def cached_generate(model: MiniGPT, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding with the package's KVCache (a worked solution; the check compares with
    `MiniGPT.generate(temperature=0)`): prefill the prompt, then
    one new token per step; once the text is longer than block_size, recompute the window."""
    block_size = model.config.block_size
    caches = None
    for _ in range(max_new_tokens):
        T = idx.size(1)
        if T > block_size:                                # the window slid: the cache is stale
            logits = _step(model, idx[:, -block_size:], model.new_kv_caches(idx.size(0)), 0)
        elif caches is None:                              # prefill
            caches = model.new_kv_caches(idx.size(0))
            logits = _step(model, idx, caches, 0)
        else:                                             # the newest token, at position T - 1
            logits = _step(model, idx[:, -1:], caches, T - 1)
        idx = torch.cat([idx, logits.argmax(-1, keepdim=True)], dim=1)
    return idx


def _new_token_at(position_of_newest):
    """The cached generator above with the newest token of a length-T text embedded at
    `position_of_newest(T)` instead of T - 1: the two position mistakes."""
    @torch.no_grad()
    def generate(model, idx, max_new_tokens):
        block_size, caches = model.config.block_size, None
        for _ in range(max_new_tokens):
            T = idx.size(1)
            if T > block_size:
                logits = _step(model, idx[:, -block_size:], model.new_kv_caches(idx.size(0)), 0)
            elif caches is None:
                caches = model.new_kv_caches(idx.size(0))
                logits = _step(model, idx, caches, 0)
            else:
                logits = _step(model, idx[:, -1:], caches, position_of_newest(T))
            idx = torch.cat([idx, logits.argmax(-1, keepdim=True)], dim=1)
        return idx
    return generate


_positions_from_zero = _new_token_at(lambda T: 0)        # every new token at position 0
_position_one_too_far = _new_token_at(lambda T: T)       # one past the newest token


@torch.no_grad()
def _never_recomputes(model, idx, max_new_tokens):
    caches = None
    for _ in range(max_new_tokens):
        T = idx.size(1)
        if caches is None:
            caches = model.new_kv_caches(idx.size(0))
            logits = _step(model, idx, caches, 0)
        else:                                             # past block_size: no row of wpe, no slot left
            logits = _step(model, idx[:, -1:], caches, T - 1)
        idx = torch.cat([idx, logits.argmax(-1, keepdim=True)], dim=1)
    return idx


@torch.no_grad()
def _recomputes(model, idx, max_new_tokens):
    block_size = model.config.block_size
    for _ in range(max_new_tokens):                       # the whole window, every step
        logits = _step(model, idx[:, -block_size:], model.new_kv_caches(idx.size(0)), 0)
        idx = torch.cat([idx, logits.argmax(-1, keepdim=True)], dim=1)
    return idx


def _slide_cache(cache: KVCache) -> None:
    """The chapter's shortcut: drop the oldest position and move the rest one slot left."""
    n = cache.length
    cache.k[:, :, :n - 1] = cache.k[:, :, 1:n].clone()
    cache.v[:, :, :n - 1] = cache.v[:, :, 1:n].clone()
    cache.length = n - 1


@torch.no_grad()
def _slides_cache(model, idx, max_new_tokens):
    block_size, caches = model.config.block_size, None
    for _ in range(max_new_tokens):
        T = idx.size(1)
        if caches is None:
            caches = model.new_kv_caches(idx.size(0))
            logits = _step(model, idx[:, -block_size:], caches, 0)
        else:
            if caches[0].length == block_size:            # full: slide instead of recomputing
                for cache in caches:
                    _slide_cache(cache)
            logits = _step(model, idx[:, -1:], caches, min(T, block_size) - 1)
        idx = torch.cat([idx, logits.argmax(-1, keepdim=True)], dim=1)
    return idx


@torch.no_grad()
def _no_prefill(model, idx, max_new_tokens):
    block_size, caches = model.config.block_size, None
    for _ in range(max_new_tokens):
        T = idx.size(1)
        if T > block_size:
            logits = _step(model, idx[:, -block_size:], model.new_kv_caches(idx.size(0)), 0)
        else:
            if caches is None:                            # the prompt was never run through
                caches = model.new_kv_caches(idx.size(0))
            logits = _step(model, idx[:, -1:], caches, caches[0].length)
        idx = torch.cat([idx, logits.argmax(-1, keepdim=True)], dim=1)
    return idx


def _generator_cases() -> list[Case]:
    g = torch.Generator().manual_seed(5)
    return [
        Case("a 5-token prompt, 6 new tokens (prefill, then one token per step)",
             (torch.randint(0, 11, (1, 5), generator=g), 6)),
        Case("a batch of 2 prompts of 4 tokens, 5 new tokens", (torch.randint(0, 11, (2, 4), generator=g), 5)),
        Case("a 12-token prompt, 9 new tokens: the text outgrows the cache (block_size 16)",
             (torch.randint(0, 11, (1, 12), generator=g), 9)),
        Case("a 1-token prompt (T = 1), 3 new tokens", (torch.randint(0, 11, (1, 1), generator=g), 3)),
    ]


def _run_generator(solution, case: Case):
    """Output 0: the tokens; output 1: how many positions went through the model (counted at `wte`)."""
    idx, n = case.args
    model = exercise_model()
    processed = [0]
    hook = model.wte.register_forward_hook(lambda module, inputs, out: processed.__setitem__(
        0, processed[0] + inputs[0].size(-1)))
    try:
        tokens = solution(model, idx.clone(), n)
    finally:
        hook.remove()
    return tokens, f"positions run through the model: {processed[0]}"


CACHED_GENERATE = Exercise(
    name="greedy generation with a KV cache",
    reference=lambda model, idx, n: model.generate(idx, n, temperature=0, use_cache=True),
    cases=_generator_cases,
    run=_run_generator,
    success=("Same tokens as recomputation, with one position per step while the text fits, "
             "and an exact recomputed window once it does not."),
    mistakes=[
        Mistake("kv_generate.positions_not_advanced",
                "every new token got the position embedding of position 0: a token appended after "
                "`length` cached positions sits at position `length` (wpe, or the RoPE tables, "
                "must start there).",
                _positions_from_zero),
        Mistake("kv_generate.window_never_recomputed",
                "once the text outgrew block_size the generator kept feeding the cache: there is no "
                "position embedding past block_size - 1 and no slot left in the cache. From then on "
                "recompute the last block_size tokens in fresh caches at every step.",
                _never_recomputes, raises=(IndexError, RuntimeError, MiniGPTError)),
        Mistake("kv_generate.position_one_too_far",
                "each new token got the position after its own: the newest token of a text of "
                "length T sits at position T - 1 (positions count from 0), so its embedding is "
                "wpe.weight[T - 1:T].",
                _position_one_too_far),
        Mistake("kv_generate.recomputes",
                "the tokens are right, but every step ran the whole text through the model again: "
                "after the prefill, feed only the newest token and let the cache supply the rest "
                "(output 1 counts the positions that went through the model).",
                _recomputes),
        Mistake("kv_generate.slides_cache",
                "once the text outgrew block_size you slid the cache (dropped the oldest entry); "
                "with learned positions every cached key is then stale, so recompute the last "
                "block_size tokens from scratch at each step instead.",
                _slides_cache),
        Mistake("kv_generate.no_prefill",
                "the prompt never went into the cache: run the whole prompt through the model "
                "once (the prefill) before feeding one token per step.",
                _no_prefill),
    ],
)


def check_cached_generate(my_generate) -> CheckResult:
    """Check `my_generate(model, idx, max_new_tokens)` (greedy, with `model.new_kv_caches`)."""
    return CACHED_GENERATE.check(my_generate)
