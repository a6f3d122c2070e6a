"""Chapter 9 exercises: temperature + top-k, top-p (nucleus) and a greedy decoding loop, and
the mistakes they invite. The reference for the filters is `minigpt.next_token_probs`, the
function `MiniGPT.generate` samples from."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..sampling import next_token_probs
from .ch11_kv_cache import exercise_model
from .core import Case, CheckResult, Exercise, Mistake, call_function


def _logits(shape, scale, seed):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g)


# ------------------------------------------------------------- temperature + top-k
def _sampling_cases() -> list[Case]:
    tied = torch.tensor([[2.0, 1.0, 1.0, 1.0, 0.0, -1.0],        # three tokens tie at the 2nd place
                         [0.5, 0.5, 0.5, 0.5, 0.5, 3.0]])        # five tie behind the best
    return [
        Case("a batch of 3 rows of 10 logits, temperature 0.7, top_k=4", (_logits((3, 10), 2.0, 1), 0.7, 4)),
        Case("a batch of 2 rows of 12 logits, temperature 1.8, top_k=None (no filter)",
             (_logits((2, 12), 2.0, 2), 1.8, None)),
        Case("one row of 8 logits (shape (8,)), temperature 1.0, top_k=1 (greedy as a distribution)",
             (_logits((8,), 2.0, 3), 1.0, 1)),
        Case("tied logits, top_k=2, temperature 0.5 (compared as sorted probabilities: any of the "
             "tied tokens may be the one kept)", (tied, 0.5, 2)),
    ]


def _run_sampling(solution, case: Case):
    probs = call_function(solution, case)
    if "tied" in case.name and isinstance(probs, torch.Tensor) and probs.is_floating_point() \
            and probs.device.type != "meta":
        return probs.sort(dim=-1, descending=True).values   # which tied token is kept is free
    return probs


def _keep_top_k(scaled, k):
    keep = torch.zeros_like(scaled, dtype=torch.bool)
    keep.scatter_(-1, scaled.topk(k, dim=-1).indices, True)
    return scaled.masked_fill(~keep, float("-inf"))


def _temperature_after_softmax(logits, temperature, top_k):
    scaled = logits if top_k is None else _keep_top_k(logits, top_k)
    return F.softmax(scaled, dim=-1) / temperature


def _temperature_ignored(logits, temperature, top_k):
    scaled = logits if top_k is None else _keep_top_k(logits, top_k)
    return F.softmax(scaled, dim=-1)


def _temperature_multiplied(logits, temperature, top_k):
    scaled = logits * temperature
    return F.softmax(scaled if top_k is None else _keep_top_k(scaled, top_k), dim=-1)


def _softmax_over_batch(logits, temperature, top_k):
    scaled = logits / temperature
    return F.softmax(scaled if top_k is None else _keep_top_k(scaled, top_k), dim=0)


def _threshold(logits, temperature, top_k, strict=False, index_shift=0):
    scaled = logits / temperature
    if top_k is None:
        return F.softmax(scaled, dim=-1)
    ranked = scaled.sort(dim=-1, descending=True).values
    kth = ranked[..., min(top_k - 1 + index_shift, scaled.size(-1) - 1)].unsqueeze(-1)
    keep = scaled > kth if strict else scaled >= kth
    return F.softmax(scaled.masked_fill(~keep, float("-inf")), dim=-1)


def _top_k_not_renormalised(logits, temperature, top_k):
    probs = F.softmax(logits / temperature, dim=-1)
    if top_k is None:
        return probs
    keep = torch.zeros_like(probs, dtype=torch.bool)
    keep.scatter_(-1, probs.topk(top_k, dim=-1).indices, True)
    return probs * keep


SAMPLING_FILTER = Exercise(
    name="temperature + top-k",
    reference=lambda logits, temperature, top_k: next_token_probs(logits, temperature, top_k),
    cases=_sampling_cases,
    run=_run_sampling,
    success="Temperature divides the logits before the softmax, and top-k keeps exactly k tokens.",
    mistakes=[
        Mistake("sampling.temperature_after_softmax",
                "the probabilities no longer sum to 1: the temperature divides the *logits*, "
                "before the softmax (softmax(logits / temperature)), not the probabilities.",
                _temperature_after_softmax),
        Mistake("sampling.temperature_ignored",
                "the temperature had no effect: divide the logits by it before the softmax "
                "(dividing the probabilities and renormalising undoes it).",
                _temperature_ignored),
        Mistake("sampling.temperature_multiplied",
                "the logits were multiplied by the temperature: divide by it, so T < 1 sharpens "
                "and T > 1 flattens.",
                _temperature_multiplied),
        Mistake("sampling.softmax_over_batch",
                "the softmax ran over the batch (dim=0): each row is one distribution over the "
                "vocabulary, so use softmax(dim=-1).",
                _softmax_over_batch),
        Mistake("sampling.top_k_threshold_keeps_ties",
                "more than k tokens survived when logits tie: keeping every logit >= the k-th "
                "value keeps all the tied ones; scatter the indices of topk(k) into a mask instead.",
                _threshold),
        Mistake("sampling.top_k_keeps_k_minus_1",
                "only k - 1 tokens survived: the k-th largest logit itself must be kept "
                "(> the k-th value drops it; use the indices of topk(k)).",
                lambda logits, t, k: _threshold(logits, t, k, strict=True)),
        Mistake("sampling.top_k_keeps_k_plus_1",
                "k + 1 tokens survived: sorted values are 0-based, so the k-th largest is "
                "sorted[k - 1], not sorted[k]; or take the indices of topk(k).",
                lambda logits, t, k: _threshold(logits, t, k, index_shift=1)),
        Mistake("sampling.top_k_not_renormalised",
                "the kept probabilities do not sum to 1: set the dropped *logits* to -inf before "
                "the softmax (or divide the kept probabilities by their sum).",
                _top_k_not_renormalised),
    ],
)


def check_sampling_filter(my_probs) -> CheckResult:
    """Check `my_probs(logits, temperature, top_k) -> probs` (logits (..., V), temperature > 0,
    top_k an int or None) against `minigpt.next_token_probs`."""
    return SAMPLING_FILTER.check(my_probs)


# --------------------------------------------------------------------- top-p (nucleus)
def _top_p_cases() -> list[Case]:
    confident = torch.tensor([9.0, 2.0, 1.5, 1.0, 0.5, 0.0, -1.0, -2.0])    # best token holds 0.997
    return [
        Case("a confident row (the best token alone holds 0.997), top_p=0.9", (confident, 0.9)),
        Case("a batch of 3 rows of 20 logits, top_p=0.6", (_logits((3, 20), 1.5, 4), 0.6)),
        Case("one row of 30 logits, top_p=0.95", (_logits((30,), 2.0, 5), 0.95)),
        Case("a small p (top_p=0.05): only the best token", (_logits((2, 10), 1.0, 6), 0.05)),
        Case("probabilities 1/2, 1/4, 1/8, 1/16, 1/16 with top_p=0.75: the best two hold exactly p",
             (torch.tensor([0.0, -1.0, -2.0, -3.0, -3.0]) * math.log(2), 0.75)),
    ]


def _sorted(logits):
    probs = F.softmax(logits.float(), dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    return probs, sorted_probs, order


def _top_p_from_drop(probs, drop_sorted, order, renormalise=True):
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    kept = probs.masked_fill(drop, 0.0)
    return kept / kept.sum(dim=-1, keepdim=True) if renormalise else kept


def _top_p_crossing_dropped(logits, top_p):
    probs, sorted_probs, order = _sorted(logits)
    drop = sorted_probs.cumsum(-1) > top_p                  # also drops the token that crosses p
    drop[..., 0] = False
    return _top_p_from_drop(probs, drop, order)


def _top_p_masks_everything(logits, top_p):
    probs, sorted_probs, order = _sorted(logits)
    return _top_p_from_drop(probs, sorted_probs.cumsum(-1) > top_p, order)   # 0 / 0 = NaN


def _top_p_ascending(logits, top_p):
    probs = F.softmax(logits.float(), dim=-1)
    sorted_probs, order = probs.sort(dim=-1)                 # least likely first
    drop = sorted_probs.cumsum(-1) - sorted_probs >= top_p
    return _top_p_from_drop(probs, drop, order)


def _top_p_keeps_at_exactly_p(logits, top_p):
    probs, sorted_probs, order = _sorted(logits)
    return _top_p_from_drop(probs, sorted_probs.cumsum(-1) - sorted_probs > top_p, order)


def _top_p_mask_not_scattered(logits, top_p):
    probs, sorted_probs, order = _sorted(logits)
    drop = sorted_probs.cumsum(-1) - sorted_probs >= top_p      # in sorted order...
    kept = probs.masked_fill(drop, 0.0)                         # ...applied to vocabulary order
    return kept / kept.sum(dim=-1, keepdim=True)


def _top_p_on_logits(logits, top_p):
    sorted_logits, order = logits.float().sort(dim=-1, descending=True)
    drop = sorted_logits.cumsum(-1) - sorted_logits >= top_p      # sums logits, not probabilities
    drop[..., 0] = False
    return _top_p_from_drop(F.softmax(logits.float(), dim=-1), drop, order)


TOP_P = Exercise(
    name="top-p (nucleus)",
    reference=lambda logits, top_p: next_token_probs(logits, top_p=top_p),
    stored="TOP_P",
    cases=_top_p_cases,
    success="Your top-p keeps the smallest set of best tokens whose mass reaches p, never fewer than one.",
    mistakes=[
        Mistake("top_p.drops_crossing_token",
                "one token too few survived: the token whose cumulative sum *crosses* p must be "
                "kept. Drop a token only when the mass *before* it (cumsum - its own probability) "
                "is already >= p.",
                _top_p_crossing_dropped),
        Mistake("top_p.masks_everything",
                "top-p masked every token (NaN: 0/0), because the best token alone already holds "
                "more than p and `cumsum > p` drops it too. Compare p with the mass *before* each "
                "token, so the best one (nothing before it) is always kept.",
                _top_p_masks_everything),
        Mistake("top_p.not_renormalised",
                "the right tokens survived but their probabilities do not sum to 1: divide the "
                "kept probabilities by their sum."),
        Mistake("top_p.keeps_a_token_at_exactly_p",
                "one token too many survived where the better tokens already hold exactly p: the "
                "set has reached p then, so drop a token when the mass before it is >= p (not > p; "
                "keep it only while that mass is < p).",
                _top_p_keeps_at_exactly_p),
        Mistake("top_p.mask_not_scattered_back",
                "the drop mask was computed in sorted order but applied to the probabilities in "
                "vocabulary order, so the wrong tokens were dropped: scatter it back first, "
                "drop = drop_sorted.scatter(-1, order, drop_sorted) (or sort, filter, and scatter "
                "the kept probabilities back).",
                _top_p_mask_not_scattered),
        Mistake("top_p.sorted_ascending",
                "the least likely tokens survived: sort the probabilities in descending order "
                "(sort(descending=True)), so the nucleus is built from the best token down.",
                _top_p_ascending),
        Mistake("top_p.sums_logits",
                "the cumulative sum ran over logits: p is a probability mass, so take the "
                "softmax first and sum probabilities.",
                _top_p_on_logits),
    ],
)


def check_top_p(my_top_p) -> CheckResult:
    """Check `my_top_p(logits, top_p) -> probs` (logits (..., V), 0 < top_p < 1, temperature 1)
    against `minigpt.next_token_probs(logits, top_p=top_p)`."""
    return TOP_P.check(my_top_p)


# ------------------------------------------------------------------ greedy decoding loop
@torch.no_grad()
def _crops_the_start(model, idx, max_new_tokens):
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, :model.config.block_size])      # the oldest tokens, not the newest
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


@torch.no_grad()
def _first_position(model, idx, max_new_tokens):
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -model.config.block_size:])
        idx = torch.cat([idx, logits[:, 0].argmax(-1, keepdim=True)], dim=1)
    return idx


@torch.no_grad()
def _returns_new_only(model, idx, max_new_tokens):
    return model.generate(idx, max_new_tokens, temperature=0, use_cache=False)[:, idx.size(1):]


@torch.no_grad()
def _crops_one_short(model, idx, max_new_tokens):
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -(model.config.block_size - 1):])   # block_size - 1 tokens of context
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


@torch.no_grad()
def _one_short(model, idx, max_new_tokens):
    return model.generate(idx, max(0, max_new_tokens - 1), temperature=0, use_cache=False)


@torch.no_grad()
def _samples(model, idx, max_new_tokens):
    g = torch.Generator().manual_seed(0)
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -model.config.block_size:])
        probs = F.softmax(logits[:, -1], dim=-1)
        idx = torch.cat([idx, torch.multinomial(probs, 1, generator=g)], dim=1)
    return idx


def _greedy_cases() -> list[Case]:
    g = torch.Generator().manual_seed(9)
    return [
        Case("a 5-token prompt, 6 new tokens", (torch.randint(0, 11, (1, 5), generator=g), 6)),
        Case("a batch of 2 prompts of 4 tokens, 5 new tokens", (torch.randint(0, 11, (2, 4), generator=g), 5)),
        Case("a 14-token prompt, 8 new tokens: the text outgrows block_size (16)",
             (torch.randint(0, 11, (1, 14), generator=g), 8)),
        Case("a 1-token prompt (T = 1), 3 new tokens", (torch.randint(0, 11, (1, 1), generator=g), 3)),
    ]


def _run_greedy(solution, case: Case):
    idx, n = case.args
    return solution(exercise_model(), idx.clone(), n)


GREEDY_LOOP = Exercise(
    name="greedy decoding loop",
    reference=lambda model, idx, n: model.generate(idx, n, temperature=0, use_cache=False),
    cases=_greedy_cases,
    run=_run_greedy,
    success="Your loop crops the window, reads the last position's logits and appends the argmax.",
    mistakes=[
        Mistake("greedy.crops_the_start",
                "once the text outgrew block_size the model saw the *first* block_size tokens: "
                "the next token depends on the most recent ones, so crop with idx[:, -block_size:].",
                _crops_the_start),
        Mistake("greedy.crops_to_block_size_minus_1",
                "the window is one token short: idx[:, -(block_size - 1):] keeps block_size - 1 "
                "tokens; the model can read block_size of them, idx[:, -block_size:].",
                _crops_one_short),
        Mistake("greedy.first_position_logits",
                "the next token came from the first position's logits: the prediction for the "
                "token after the text is the *last* row, logits[:, -1].",
                _first_position),
        Mistake("greedy.returns_new_only",
                "you returned only the new tokens: return the prompt followed by them, "
                "(B, T + max_new_tokens), as generate does.",
                _returns_new_only),
        Mistake("greedy.one_token_short",
                "one token too few: the loop must run max_new_tokens times.",
                _one_short),
        Mistake("greedy.samples",
                "the tokens were sampled: greedy decoding appends the argmax of the last "
                "position's logits (no softmax or multinomial needed).",
                _samples),
    ],
)


def check_greedy_generate(my_generate) -> CheckResult:
    """Check `my_generate(model, idx, max_new_tokens) -> (B, T + max_new_tokens)` (greedy, no
    cache) against `MiniGPT.generate(temperature=0)` on a small seeded model (block_size 16)."""
    return GREEDY_LOOP.check(my_generate)
