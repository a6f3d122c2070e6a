"""From logits to the next-token distribution: temperature, top-k and top-p (nucleus).

`next_token_probs` is the reference implementation of these filters; the book's ipywidgets
sliders call it, and `MiniGPT.generate` runs the same maths through
`probs_from_checked_logits` (its settings and logits already checked, greedy decoding as an
argmax). The pages' JavaScript twin
(`minigpt/web/static/minigpt-web/sampling.js`, `filterProbs`) is tested against it, so what
the sliders show is what generation does, ties at top-k's k-th value included (the lowest
ids stay).
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch
import torch.nn.functional as F

from .errors import MiniGPTError, UsageError


class SamplingSettingsError(MiniGPTError, ValueError):
    """A temperature, top-k or top-p that cannot work."""


class NonFiniteLogitsError(MiniGPTError, ValueError):
    """Logits holding NaN or +-inf: no distribution can be made from them."""


def check_sampling_settings(temperature, top_k=None, top_p=None) -> tuple[float, Optional[int], Optional[float]]:
    """Raise SamplingSettingsError, naming the allowed range, for a temperature/top-k/top-p that
    can't work; return them as Python numbers (a sweep over np.arange hands in NumPy scalars)."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
            or not math.isfinite(temperature) or temperature < 0:
        raise SamplingSettingsError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}.")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise SamplingSettingsError(f"top_k must be a positive integer or None, got {top_k!r}.")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                              or not 0.0 < top_p <= 1.0):
        raise SamplingSettingsError(f"top_p must be in (0, 1] or None, got {top_p!r}.")
    return (float(temperature), None if top_k is None else int(top_k),
            None if top_p is None else float(top_p))


def is_greedy(temperature: float) -> bool:
    """True for temperature 0, and for a temperature so small that it is 0 in float32.

    The logits are divided in float32, where anything below about 1.4e-45 rounds to 0 (and
    logits / 0 is inf or NaN); the limit of a temperature going to 0 is greedy decoding.
    """
    return float(torch.tensor(temperature, dtype=torch.float32)) == 0.0


def check_finite_logits(logits: torch.Tensor, step: Optional[int] = None) -> None:
    """Raise NonFiniteLogitsError when logits hold NaN or +-inf.

    NaN logits make NaN probabilities, and argmax of a NaN row is an arbitrary id: both would
    go on silently. One reduction and one read-back per call (a host sync on a GPU).
    """
    if not bool(torch.isfinite(logits).all()):
        bad = "NaN" if bool(torch.isnan(logits).any()) else "inf"
        where = "" if step is None else f" at generation step {step}"
        raise NonFiniteLogitsError(
            f"the model produced {bad} logits{where}: its weights or its input are broken (a "
            "diverged training run, an fp16 overflow, a corrupted file); check "
            "torch.isfinite(p).all() for each parameter, or reload a good checkpoint.")


def _keep_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """(..., V) bool: exactly top_k tokens per row, the largest, ties broken by the LOWEST id.

    torch.topk's order among equal values is unspecified (it differs between CPU kernels
    and devices); counting the tied tokens in id order makes the choice deterministic
    everywhere, the same one the page's JavaScript twin makes.
    """
    kth = logits.topk(top_k, dim=-1).values[..., -1:]                 # the k-th largest value
    above = logits > kth
    tied = logits == kth
    room = top_k - above.sum(dim=-1, keepdim=True)                    # places left for ties
    return above | (tied & (tied.cumsum(dim=-1) <= room))


def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: Optional[int] = None,
                     top_p: Optional[float] = None) -> torch.Tensor:
    """logits (..., V) -> probabilities (..., V) after temperature, top-k, then top-p.

    * temperature 0 puts all mass on the argmax (greedy, the lowest id among ties); so does
      a temperature that is 0 in float32 (below about 1.4e-45). T < 1 sharpens, T > 1 flattens.
    * top_k keeps exactly k tokens; among logits tied at the k-th value the lowest ids stay.
    * top_p keeps the smallest set of most likely tokens whose probability reaches p.
      The most likely token is always kept, so the result never masks everything; among
      tied tokens the lowest ids come first, as with top_k.
    Logits holding NaN or +inf raise NonFiniteLogitsError (-inf is a masked token, allowed).
    """
    temperature, top_k, top_p = check_sampling_settings(temperature, top_k, top_p)
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        what = logits.dtype if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise UsageError(f"logits must be a floating-point tensor (..., V), got {what}; "
                            "pass the model's output, e.g. model(idx)[0][:, -1].")
    # one read-back: NaN or +inf anywhere, or a row with every token masked (-inf)
    broken = (torch.isnan(logits) | torch.isposinf(logits)).any() | torch.isneginf(logits).all(dim=-1).any()
    if bool(broken):
        if bool((torch.isnan(logits) | torch.isposinf(logits)).any()):
            bad = "NaN" if bool(torch.isnan(logits).any()) else "+inf"
            raise NonFiniteLogitsError(f"the logits hold {bad}, so no probabilities can be made from "
                                       "them: the model's weights or its input are broken.")
        raise NonFiniteLogitsError("every logit of a row is -inf (every token masked): no token "
                                   "can be drawn; leave at least one token unmasked.")
    return probs_from_checked_logits(logits, temperature, top_k, top_p)


def probs_from_checked_logits(logits: torch.Tensor, temperature: float, top_k: Optional[int],
                    top_p: Optional[float]) -> torch.Tensor:
    """next_token_probs for settings and logits already checked (generate checks each step's
    logits with check_finite_logits, one reduction instead of next_token_probs' three)."""
    if is_greedy(temperature):
        greedy = logits.argmax(dim=-1, keepdim=True)
        return torch.zeros_like(logits, dtype=torch.float32).scatter_(-1, greedy, 1.0)
    raw = logits
    scaled = logits.float() / temperature
    # A tiny temperature (say 1e-38) overflows finite logits to +-inf, and softmax of +inf is
    # NaN. Shifting by the row's maximum first keeps the best logit at 0, which is the correct
    # limit (all mass on the best tokens); rows that did not overflow keep the plain division.
    shifted = (logits.float() - logits.float().amax(dim=-1, keepdim=True)) / temperature
    overflowed = (torch.isinf(scaled) & torch.isfinite(logits)).any(dim=-1, keepdim=True)
    logits = torch.where(overflowed, shifted, scaled)
    if top_k is not None and top_k < logits.size(-1):
        # chosen on the logits as given: dividing by a temperature keeps their order but may
        # round neighbours into new ties
        logits = logits.masked_fill(~_keep_top_k(raw.float(), top_k), float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        # best first by the logits as given, ties by the LOWEST id (a stable sort), as top-k
        # and the page's JavaScript twin do: sorting the probabilities with an unstable sort
        # would leave which of several tied tokens is dropped to the kernel
        order = raw.float().sort(dim=-1, descending=True, stable=True).indices
        sorted_probs = probs.gather(-1, order)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs   # probability of better tokens
        drop_sorted = mass_before >= top_p                         # already reached p without it
        drop_sorted[..., 0] = False                                # never drop the best token
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def draw_next_token(probs: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One token id per row of probs (B, V) -> (B, 1), drawn on the generator's device.

    torch.multinomial refuses a generator from another device; moving the (B, V) row to the
    generator (a few hundred bytes per step) keeps a seed's meaning the same on every device.
    """
    if generator is None or generator.device == probs.device:
        return torch.multinomial(probs, 1, generator=generator)
    return torch.multinomial(probs.to(generator.device), 1, generator=generator).to(probs.device)
