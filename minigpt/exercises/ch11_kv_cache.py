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
from ..model import MiniGPT
from .core import Case, CheckResult, Exercise, Mistake


# ------------------------------------------------------------- a sliding-window cache
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
        Case("a prefill longer than the window: 6 positions into a cache of 4, then 1",
             (1, 2, 4, 4, _steps(1, 2, 4, [6, 1], seed=4))),
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
    reference=None,                 # the package's KVCache does not slide: stored outputs
    stored="SLIDING_CACHE",
    cases=_cache_cases,
    run=_run_cache,
    success="Your cache grows by every appended position and, once full, keeps the latest max_len.",
    mistakes=[
        Mistake("kv_cache.length_not_advanced",
                "the cache length did not grow after the step: after storing T new positions, "
                "set self.length to the number of positions now held."),
        Mistake("kv_cache.length_counts_calls",
                "the length grew by 1 for a prefill of several positions: advance it by k.size(2), "
                "the number of positions appended, not by one per call."),
        Mistake("kv_cache.values_not_stored",
                "the keys are right but the values are zeros: the new values were never written "
                "into self.v (store v exactly as you store k)."),
        Mistake("kv_cache.overwrites",
                "each append overwrote the cache from position 0, so only the newest positions "
                "are held: write the new positions after the `length` ones already there."),
        Mistake("kv_cache.returns_new_only",
                "append returned only the new keys and values; attention needs everything held, "
                "so return the first `length` positions of the buffers."),
        Mistake("kv_cache.not_truncated",
                "past max_len the cache kept growing: once it holds more than max_len positions, "
                "keep only the most recent max_len (slice [-max_len:])."),
        Mistake("kv_cache.ring_buffer_order",
                "the cache is a ring buffer (the oldest slot overwritten) and returns its slots in "
                "storage order, so once it wraps around the keys come back out of order: return "
                "the held positions oldest first (shift the buffer, or roll it by the write slot "
                "before returning), so position order survives for the causal mask."),
        Mistake("kv_cache.keys_and_values_swapped",
                "append returned (values, keys): return the keys first, then the values, "
                "as the skeleton says (keys, values)."),
        Mistake("kv_cache.keeps_oldest",
                "past max_len the cache dropped the new positions and kept the oldest ones: a "
                "sliding window keeps the *most recent* max_len ([-max_len:], not [:max_len])."),
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


def _generator_cases() -> list[Case]:
    g = torch.Generator().manual_seed(5)
    return [
        Case("a 5-token prompt, 6 new tokens (prefill, then one token per step)",
             (torch.randint(0, 11, (1, 5), generator=g), 6)),
        Case("a batch of 2 prompts of 4 tokens, 5 new tokens", (torch.randint(0, 11, (2, 4), generator=g), 5)),
        Case("a 12-token prompt, 9 new tokens: the text outgrows the cache (block_size 16)",
             (torch.randint(0, 11, (1, 12), generator=g), 9)),
        Case("a 1-token prompt (T = 1), 3 new tokens", (torch.randint(0, 11, (1, 1), generator=g), 3)),
        Case("a 20-token prompt, longer than block_size 16 from the start, 4 new tokens",
             (torch.randint(0, 11, (1, 20), generator=g), 4)),
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
    stored="CACHED_GENERATE",
    cases=_generator_cases,
    run=_run_generator,
    success=("Same tokens as recomputation, with one position per step while the text fits, "
             "and an exact recomputed window once it does not."),
    mistakes=[
        Mistake("kv_generate.positions_not_advanced",
                "every new token got the position embedding of position 0: a token appended after "
                "`length` cached positions sits at position `length` (wpe, or the RoPE tables, "
                "must start there)."),
        Mistake("kv_generate.window_never_recomputed",
                "once the text outgrew block_size the generator kept feeding the cache: there is no "
                "position embedding past block_size - 1 and no slot left in the cache. From then on "
                "recompute the last block_size tokens in fresh caches at every step.",
                raises=(IndexError, RuntimeError, MiniGPTError)),
        Mistake("kv_generate.position_one_too_far",
                "each new token got the position after its own: the newest token of a text of "
                "length T sits at position T - 1 (positions count from 0), so its embedding is "
                "wpe.weight[T - 1:T]."),
        Mistake("kv_generate.recomputes",
                "the tokens are right, but every step ran the whole text through the model again: "
                "after the prefill, feed only the newest token and let the cache supply the rest "
                "(output 1 counts the positions that went through the model)."),
        Mistake("kv_generate.slides_cache",
                "once the text outgrew block_size you slid the cache (dropped the oldest entry); "
                "with learned positions every cached key is then stale, so recompute the last "
                "block_size tokens from scratch at each step instead."),
        Mistake("kv_generate.no_prefill",
                "the prompt never went into the cache: run the whole prompt through the model "
                "once (the prefill) before feeding one token per step."),
    ],
)


def check_cached_generate(my_generate) -> CheckResult:
    """Check `my_generate(model, idx, max_new_tokens)` (greedy, with `model.new_kv_caches`)."""
    return CACHED_GENERATE.check(my_generate)
