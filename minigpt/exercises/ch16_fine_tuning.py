"""Chapter 16 exercises: a LoRA linear layer by hand, merging it, and the mistakes they invite.

LoRA adds (alpha / r) * B A to a frozen weight W (out, in), with A (r, in) and B (out, r).
The slips are all about that one product: the scale left out or written as alpha instead of
alpha / r, the product transposed, the frozen path forgotten. Every case uses a non-zero B
(a fresh adapter's B is zero, which would hide all of them) and alpha != r (scale 1 would
hide a missing scale). Square layers (in == out) let a transposed update show as wrong values
instead of a shape error.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..lora import LoRALinear
from .core import Case, CheckResult, Exercise, Mistake


# ---------------------------------------------------------------------- the LoRA forward
def _lora_layer(W: torch.Tensor, b, A: torch.Tensor, B: torch.Tensor, alpha: float, r: int) -> LoRALinear:
    """The package's LoRALinear holding these tensors (built without drawing from torch's global
    random generator, so that a check leaves the notebook's random numbers as they were)."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        base = nn.Linear(W.size(1), W.size(0), bias=b is not None)
        base.weight.copy_(W)
        if b is not None:
            base.bias.copy_(b)
        layer = LoRALinear(base, r, alpha)
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
    return layer


@torch.no_grad()
def _reference_forward(x, W, b, A, B, alpha, r):
    return _lora_layer(W, b, A, B, alpha, r)(x)


@torch.no_grad()
def _reference_merge(W, A, B, alpha, r):
    return _lora_layer(W, None, A, B, alpha, r).merged_weight()


def _layer(in_features: int, out_features: int, rank: int, seed: int, bias: bool = True):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out_features, in_features, generator=g) / in_features ** 0.5
    b = torch.randn(out_features, generator=g) if bias else None
    A = torch.randn(rank, in_features, generator=g) / in_features ** 0.5
    B = torch.randn(out_features, rank, generator=g)         # trained B: not the zero it starts at
    return W, b, A, B


def _forward_cases() -> list[Case]:
    g = torch.Generator().manual_seed(16)
    return [
        Case("a square layer (in = out = 6), rank 2, alpha 8 (scale 4), x (B, T, C) = (2, 3, 6)",
             (torch.randn(2, 3, 6, generator=g), *_layer(6, 6, 2, seed=1), 8.0, 2)),
        Case("in 5, out 7, rank 3, alpha 1 (scale 1/3), x (T, C) = (4, 5)",
             (torch.randn(4, 5, generator=g), *_layer(5, 7, 3, seed=2), 1.0, 3)),
        Case("rank 1, alpha 4 (scale 4), in 8, out 4",
             (torch.randn(1, 2, 8, generator=g), *_layer(8, 4, 1, seed=3), 4.0, 1)),
        Case("a square layer (in = out = 4), rank 4, alpha 2 (scale 1/2)",
             (torch.randn(3, 4, generator=g), *_layer(4, 4, 4, seed=4), 2.0, 4)),
    ]


LORA_FORWARD = Exercise(
    name="LoRA linear forward",
    reference=_reference_forward,
    stored="LORA_FORWARD",
    cases=_forward_cases,
    success="The frozen layer's output plus (alpha / r) times the rank-r update, x A^T B^T.",
    mistakes=[
        Mistake("lora_forward.no_scale",
                "the update was added without its scale: multiply x A^T B^T by alpha / r."),
        Mistake("lora_forward.alpha_not_over_r",
                "the update was scaled by alpha, not alpha / r: the scale is alpha / r, so that "
                "changing the rank does not change how large the update starts."),
        Mistake("lora_forward.r_over_alpha",
                "the scale is upside down (r / alpha): it is alpha / r."),
        Mistake("lora_forward.update_transposed",
                "the update was applied transposed (x @ (B A)): like W, the product B A is "
                "(out, in), so x meets it as x @ (B A).T, i.e. (x @ A.T) @ B.T.",
                raises=(RuntimeError,)),
        Mistake("lora_forward.no_frozen_path",
                "the frozen weight is missing: LoRA adds the update to x W^T + b, it does not "
                "replace W."),
        Mistake("lora_forward.no_bias",
                "the frozen bias b was left out: the base layer computes x W^T + b."),
    ],
)


def check_lora_forward(my_lora_forward) -> CheckResult:
    """Check `my_lora_forward(x, W, b, A, B, alpha, r)`: x (..., in) -> (..., out)."""
    return LORA_FORWARD.check(my_lora_forward)


# ---------------------------------------------------------------------------- merging
def _merge_cases() -> list[Case]:
    cases = []
    for name, (i, o, rank, alpha, seed) in {
        "a square weight (6 x 6), rank 2, alpha 8 (scale 4)": (6, 6, 2, 8.0, 5),
        "W (out 7, in 5), rank 3, alpha 1 (scale 1/3)": (5, 7, 3, 1.0, 6),
        "rank 1, alpha 16 (scale 16), W (3, 4)": (4, 3, 1, 16.0, 7),
        "a square weight (4 x 4), rank 4, alpha 2 (scale 1/2)": (4, 4, 4, 2.0, 8),
    }.items():
        W, _, A, B = _layer(i, o, rank, seed=seed)
        cases.append(Case(name, (W, A, B, alpha, rank)))
    return cases


LORA_MERGE = Exercise(
    name="merge a LoRA update into W",
    reference=_reference_merge,
    stored="LORA_MERGE",
    cases=_merge_cases,
    success="W + (alpha / r) B A: one (out, in) matrix, so the merged layer costs what the base layer did.",
    mistakes=[
        Mistake("lora_merge.no_scale",
                "B A was added without its scale: the adapted layer computes W + (alpha / r) B A."),
        Mistake("lora_merge.alpha_not_over_r",
                "the update was scaled by alpha, not alpha / r."),
        Mistake("lora_merge.transposed",
                "the update is transposed ((B A).T or A.T @ B.T): W is (out, in) like nn.Linear's "
                "weight, and so is B A, with B (out, r) first.",
                raises=(RuntimeError,)),
        Mistake("lora_merge.no_w",
                "only the update was returned: the merged weight is the frozen W plus (alpha / r) B A."),
        Mistake("lora_merge.subtracted",
                "the update was subtracted: the adapted layer adds (alpha / r) B A to W."),
    ],
)


def check_lora_merge(my_merge) -> CheckResult:
    """Check `my_merge(W, A, B, alpha, r)`: W (out, in), A (r, in), B (out, r) -> (out, in)."""
    return LORA_MERGE.check(my_merge)
