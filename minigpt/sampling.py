"""From logits to the next-token distribution: temperature, top-k and top-p (nucleus).

`next_token_probs` is the reference implementation of these filters: `MiniGPT.generate` and
the book's ipywidgets sliders call it, and the offline HTML explorer in `minigpt.viz` has a
Python/JavaScript twin that is tested against it, so what the sliders show is what
generation does.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F


def check_sampling_settings(temperature, top_k=None, top_p=None) -> None:
    """Raise ValueError, naming the allowed range, for a temperature/top-k/top-p that can't work."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}.")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}.")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))
                              or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}.")


def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: Optional[int] = None,
                     top_p: Optional[float] = None) -> torch.Tensor:
    """logits (..., V) -> probabilities (..., V) after temperature, top-k, then top-p.

    * temperature 0 puts all mass on the argmax (greedy); T < 1 sharpens, T > 1 flattens.
    * top_k keeps exactly k tokens, even when several logits tie at the k-th value.
    * top_p keeps the smallest set of most likely tokens whose probability reaches p.
      The most likely token is always kept, so the result never masks everything.
    """
    check_sampling_settings(temperature, top_k, top_p)
    if temperature == 0:
        greedy = logits.argmax(dim=-1, keepdim=True)
        return torch.zeros_like(logits, dtype=torch.float32).scatter_(-1, greedy, 1.0)
    scaled = logits.float() / temperature
    # A tiny temperature (say 1e-38) overflows finite logits to +-inf, and softmax of +inf is
    # NaN. Shifting by the row's maximum first keeps the best logit at 0, which is the correct
    # limit (all mass on the best tokens); rows that did not overflow keep the plain division.
    shifted = (logits.float() - logits.float().amax(dim=-1, keepdim=True)) / temperature
    overflowed = (torch.isinf(scaled) & torch.isfinite(logits)).any(dim=-1, keepdim=True)
    logits = torch.where(overflowed, shifted, scaled)
    if top_k is not None and top_k < logits.size(-1):
        # scatter the top-k indices rather than thresholding at the k-th value:
        # a threshold would keep every token tied with the k-th one
        keep = torch.zeros_like(logits, dtype=torch.bool)
        keep.scatter_(-1, logits.topk(top_k, dim=-1).indices, True)
        logits = logits.masked_fill(~keep, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
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
