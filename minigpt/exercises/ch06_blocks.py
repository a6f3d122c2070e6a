"""Chapter 6 exercises: the MLP, LayerNorm and the Pre-LN block, and the mistakes they invite."""

from __future__ import annotations

import hashlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import GPTConfig
from ..language import tr
from ..model import MLP, Block
from .core import Case, CheckResult, Exercise, Mistake


# ------------------------------------------------------------------------------ the MLP
class _ReferenceMLP(nn.Module):
    """`minigpt.MLP` built from a width alone, as the exercise asks: MyMLP(C)."""

    def __init__(self, C: int):
        super().__init__()
        self.mlp = MLP(GPTConfig(vocab_size=2, block_size=2, n_embd=C, n_head=1, n_layer=1, dropout=0.0))

    def forward(self, x):
        return self.mlp(x)


def _fill_by_shape(module: nn.Module) -> None:
    """Give every parameter values that depend only on its shape, so two MLPs with the same
    layer shapes compute the same function whatever their attribute names or order."""
    with torch.no_grad():
        for p in module.parameters():
            seed = int(hashlib.sha256(str(tuple(p.shape)).encode()).hexdigest()[:8], 16)
            g = torch.Generator().manual_seed(seed)
            p.copy_(0.5 * torch.randn(p.shape, generator=g))


def _run_mlp(solution, case: Case):
    C, x = case.args
    torch.manual_seed(0)
    module = solution(C)
    if not isinstance(module, nn.Module):
        raise TypeError(tr("MyMLP({C}) should build an nn.Module, got {kind}", C=C, kind=type(module).__name__))
    _fill_by_shape(module)
    module.eval()
    with torch.no_grad():
        return module(x.clone())


def _mlp_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    return [
        Case("C = 8, x of shape (2, 5, 8)", (8, torch.randn(2, 5, 8, generator=g))),
        Case("T = 1, C = 16", (16, torch.randn(1, 1, 16, generator=g))),
        Case("C = 4 with large inputs (where GELU and ReLU differ most in absolute terms)",
             (4, 3 * torch.randn(3, 7, 4, generator=g))),
    ]


MLP_EXERCISE = Exercise(
    name="MLP",
    reference=_ReferenceMLP,
    stored="MLP_EXERCISE",
    cases=_mlp_cases,
    run=_run_mlp,
    success="C -> 4C -> GELU -> C, the same function as minigpt.MLP.",
    # stored: each mistake's code is the MLP with one switch flipped (grading/solutions.py)
    mistakes=[
        Mistake("mlp.relu",
                "the activation is ReLU; the package (like GPT-2) uses GELU, x * Phi(x), which lets "
                "small negative values through: use nn.GELU()."),
        Mistake("mlp.gelu_tanh",
                "you used GELU's tanh approximation (GPT-2's original code); minigpt.MLP uses the "
                "exact form, nn.GELU() (erf). The two differ by up to about 5e-4."),
        Mistake("mlp.hidden_2c",
                "the hidden layer is 2C wide; GPT's MLP widens to 4C (c_fc: C -> 4C, c_proj: 4C -> C)."),
        Mistake("mlp.hidden_c",
                "the hidden layer is only C wide; GPT's MLP widens to 4C (c_fc: C -> 4C, c_proj: 4C -> C)."),
        Mistake("mlp.no_projection",
                "the output is the 4C-wide hidden layer: project it back to C with c_proj "
                "(nn.Linear(4 * C, C)) so it can be added to the residual stream."),
        Mistake("mlp.activation_after_projection",
                "GELU comes after the projection; it belongs between the two layers: "
                "c_proj(gelu(c_fc(x)))."),
        Mistake("mlp.no_bias",
                "the layers have no bias (bias=False): minigpt.MLP, like GPT-2, keeps a bias in "
                "c_fc and c_proj (nn.Linear's default, bias=True)."),
        Mistake("mlp.no_activation",
                "there is no activation between the layers, so the MLP is one linear map in "
                "disguise: put nn.GELU() between c_fc and c_proj."),
    ],
)


def check_mlp(MyMLP) -> CheckResult:
    """Check a class `MyMLP(C)` (an nn.Module, (B, T, C) -> (B, T, C)) against `minigpt.MLP`.

    Parameters are refilled with values that depend only on their shapes, so any names and
    any order of definition work; only the architecture is compared.
    """
    return MLP_EXERCISE.check(MyMLP)


# --------------------------------------------------------------------------- LayerNorm
def _ln_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    C = 8
    gamma, beta = torch.randn(C, generator=g), torch.randn(C, generator=g)
    off_scale = 3.0 * torch.randn(2, 5, C, generator=g) + 1.5
    # rows whose channels differ by ~1e-3: the variance (~1e-6) is below eps, so eps matters.
    # Centred near 0: around 0.7, float32's rounding of the mean alone moves the answer by ~3e-5,
    # and a correct LayerNorm summed in another order (torch.var_mean, float64) failed
    nearly_flat = 1e-3 * torch.randn(1, 4, C, generator=g)
    wide = torch.randn(1, 3, 64, generator=g)
    return [
        Case("(B, T, C) = (2, 5, 8), off-scale values", (off_scale, gamma, beta)),
        Case("nearly constant rows (variance ~1e-6, below eps = 1e-5)", (nearly_flat, gamma, beta)),
        Case("C = 64, gain 1 and bias 0", (wide, torch.ones(64), torch.zeros(64))),
    ]


LAYER_NORM = Exercise(
    name="LayerNorm",
    reference=lambda x, gamma, beta: F.layer_norm(x, x.shape[-1:], gamma, beta, eps=1e-5),
    stored="LAYER_NORM",
    cases=_ln_cases,
    success="Each position's C channels are normalised, then scaled by gamma and shifted by beta.",
    mistakes=[
        Mistake("layer_norm.unbiased_variance",
                "the variance is the unbiased one (divided by C - 1); LayerNorm divides by C: "
                "x.var(dim=-1, keepdim=True, unbiased=False)."),
        Mistake("layer_norm.no_eps",
                "there is no eps under the square root: divide by sqrt(var + 1e-5), or nearly "
                "constant rows blow up (and constant ones give NaN)."),
        Mistake("layer_norm.eps_outside_sqrt",
                "eps is added outside the square root: LayerNorm divides by sqrt(var + eps), "
                "not sqrt(var) + eps."),
        Mistake("layer_norm.wrong_dim_time",
                "the statistics are taken over positions (dim=-2 / dim=1); LayerNorm normalises "
                "each position over its C channels, dim=-1, so positions never mix."),
        Mistake("layer_norm.wrong_dim_batch",
                "the statistics are taken over the batch (dim=0), as batch norm does; LayerNorm "
                "normalises each position over its C channels, dim=-1."),
        Mistake("layer_norm.rms_norm",
                "this is RMSNorm: x is divided by its root mean square without subtracting the mean "
                "first. LayerNorm centres each position, (x - mean) / sqrt(var + eps), then scales "
                "and shifts.",
                lambda x, g, b: g * x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-5) + b),
        Mistake("layer_norm.gamma_beta_swapped",
                "gamma and beta are swapped: gamma (the gain) multiplies the normalised x and beta "
                "(the shift) is added, gamma * x_hat + beta."),
        Mistake("layer_norm.no_beta",
                "beta is not added: the output is gamma * x_hat + beta."),
        Mistake("layer_norm.no_affine",
                "gamma and beta are not applied: return gamma * x_hat + beta."),
    ],
)


def check_layer_norm(my_layer_norm) -> CheckResult:
    """Check `my_layer_norm(x, gamma, beta) -> (B, T, C)` (eps = 1e-5) against `F.layer_norm`."""
    return LAYER_NORM.check(my_layer_norm)


# --------------------------------------------------------------------------- Pre-LN block
def _block(C: int, n_head: int, seed: int) -> Block:
    torch.manual_seed(seed)
    block = Block(GPTConfig(vocab_size=2, block_size=16, n_embd=C, n_head=n_head, n_layer=1,
                            dropout=0.0)).eval()
    with torch.no_grad():                      # distinct LayerNorms, so ln_1 and ln_2 can't be confused
        for ln in (block.ln_1, block.ln_2):
            ln.weight.normal_(1.0, 0.3)
            ln.bias.normal_(0.0, 0.3)
        for p in block.parameters():          # larger weights than the 0.02 init: every branch matters
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    return block


def _run_block(solution, case: Case):
    block, x = case.args
    with torch.no_grad():
        return solution(block, x.clone())


def _block_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    return [
        Case("C = 8, 2 heads, x of shape (2, 5, 8)", (_block(8, 2, seed=1), torch.randn(2, 5, 8, generator=g))),
        Case("T = 1, one head, C = 16", (_block(16, 1, seed=2), torch.randn(1, 1, 16, generator=g))),
    ]


def _post_ln(b, x):
    x = b.ln_1(x + b.attn(x))
    return b.ln_2(x + b.mlp(x))


PRE_LN_BLOCK = Exercise(
    name="Pre-LN block",
    reference=lambda block, x: block(x),
    stored="PRE_LN_BLOCK",
    cases=_block_cases,
    run=_run_block,
    success="x + attn(ln_1(x)), then x + mlp(ln_2(x)): the residual path stays a plain sum.",
    mistakes=[
        Mistake("block.post_ln_order",
                "this is a Post-LN block (ln_1(x + attn(x))): in Pre-LN the LayerNorm feeds the "
                "sub-layer and the residual add comes last: x = x + attn(ln_1(x)).",
                _post_ln),
        Mistake("block.no_attn_residual",
                "the attention branch has no residual connection: x = x + attn(ln_1(x)), "
                "not x = attn(ln_1(x))."),
        Mistake("block.no_mlp_residual",
                "the MLP branch has no residual connection: x = x + mlp(ln_2(x)), "
                "not x = mlp(ln_2(x))."),
        Mistake("block.no_residuals",
                "neither branch has a residual connection: each sub-layer's output is added to "
                "its input, x = x + f(ln(x))."),
        Mistake("block.residual_adds_normalised_x",
                "the residual adds the normalised x (h = ln_1(x); x = h + attn(h)): the residual "
                "stream must carry x itself, x = x + attn(ln_1(x)), so only the branch sees the "
                "normalised copy."),
        Mistake("block.ln_1_twice",
                "ln_1 is used before both sub-layers; the MLP gets its own LayerNorm, ln_2."),
        Mistake("block.ln_on_branch_output",
                "the LayerNorm is applied to the branch's output (x + ln(attn(x))); it belongs on "
                "the branch's input: x + attn(ln_1(x))."),
        Mistake("block.mlp_first",
                "the MLP runs before attention; a block attends first (gather from other "
                "positions), then computes on the result."),
    ],
)


def check_pre_ln_block(my_block) -> CheckResult:
    """Check `my_block(block, x) -> (B, T, C)`, a Pre-LN forward pass written with a
    `minigpt.Block`'s own modules (block.ln_1, block.attn, block.ln_2, block.mlp)."""
    return PRE_LN_BLOCK.check(my_block)
