"""Chapter 7 exercises: dropout and the whole forward pass, and the mistakes they invite."""

from __future__ import annotations

import torch

from ..config import GPTConfig
from ..dropout import dropout
from ..model import MiniGPT
from .core import Case, CheckResult, Exercise, Mistake, require_tensor_like


# ------------------------------------------------------------------------------ dropout
def _summary(solution, case: Case):
    """What a dropout is judged on. Masks are random, and every correct implementation draws
    its own (torch's Bernoulli, the package's integer lanes, torch.rand < p, ...), so outputs
    are compared by what any correct one must show: the fraction of entries set to zero
    (to 2 decimals, over 400,000 entries: about 10 standard deviations from a rounding edge),
    the single factor every kept entry is multiplied by, and the mask's shape: one draw per
    entry, a new one on every call (a dropout that seeds its own generator draws the same mask
    at every training step, and resets the random state the batches come from)."""
    x, p, training = case.args
    torch.manual_seed(0)
    out = require_tensor_like(solution(x.clone(), p, training), x)
    again = require_tensor_like(solution(x.clone(), p, training), x)     # the next call, not reseeded
    dropped = out == 0                                   # (rows, columns)
    some = 0 < dropped.float().mean().item() < 1
    shared = bool((dropped == dropped[:1]).all())        # every row dropped the same columns
    whole_rows = bool((dropped == dropped[:, :1]).all())  # each row dropped or kept as a whole
    ratio = out[~dropped] / x[~dropped]
    if ratio.numel() == 0:
        scale = "nothing kept"
    elif (ratio.max() - ratio.min()).item() > 1e-4:
        scale = "differs between entries"
    else:
        scale = round(ratio.mean().item(), 3)
    return {"fraction set to 0": round(dropped.float().mean().item(), 2), "kept entries scaled by": scale,
            "every row has the same mask": shared and some,
            "each row is dropped or kept whole": whole_rows and some,
            "the next call draws the same mask": some and torch.equal(dropped, again == 0)}


def _dropout_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    # no zeros in the input (a 0 means dropped); 400 rows, so a mask shared by every row shows
    x = 0.5 + torch.rand(400, 1_000, generator=g)
    return [
        Case("training, p = 0.1", (x, 0.1, True)),
        Case("training, p = 0.5", (x, 0.5, True)),
        Case("eval mode (training=False), p = 0.3", (x, 0.3, False)),
        Case("training, p = 0 (nothing to drop)", (x, 0.0, True)),
    ]


DROPOUT = Exercise(
    name="dropout",
    reference=dropout,
    stored="DROPOUT",
    cases=_dropout_cases,
    run=_summary,
    success="Training drops a fraction p and scales the rest by 1/(1 - p); eval changes nothing.",
    mistakes=[
        Mistake("dropout.no_scale",
                "the kept entries are not rescaled: multiply them by 1 / (1 - p), so the expected "
                "value of every entry stays x and eval mode (no dropout) sees the same scale."),
        Mistake("dropout.scale_times_1_minus_p",
                "the kept entries are multiplied by (1 - p); they must be divided by it, "
                "x * mask / (1 - p), to keep the expected value at x."),
        Mistake("dropout.drops_in_eval",
                "entries are dropped in eval mode too: with training=False dropout must return "
                "x unchanged."),
        Mistake("dropout.mask_shared_by_rows",
                "every row dropped the same columns: the mask was drawn for one row "
                "(torch.rand(x.shape[-1])) and broadcast. Draw one random number per entry, "
                "torch.rand_like(x), so every position drops its own features."),
        Mistake("dropout.mask_per_row",
                "each row was dropped or kept as a whole: the mask was drawn once per row "
                "(torch.rand(x.shape[0], 1)) and broadcast. Draw one random number per entry, "
                "torch.rand_like(x).",
                lambda x, p, training: x * (torch.rand(x.shape[0], 1) >= p) / (1 - p)
                if training and p > 0 else x),
        Mistake("dropout.same_mask_every_call",
                "two calls drew the same mask: the function seeds a generator itself "
                "(torch.manual_seed, or a torch.Generator seeded inside it), so training would drop "
                "the same features at every step, and torch.manual_seed also resets the random "
                "state the batches are drawn from. Draw from the global generator without seeding it.",
                lambda x, p, training: x * (torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) >= p)
                / (1 - p) if training and p > 0 else x),
        Mistake("dropout.bernoulli_keeps_p",
                "torch.bernoulli(p) gives 1 with probability p, so the mask *keeps* a fraction p and "
                "drops 1 - p: draw the keep mask with the keep probability, torch.bernoulli(1 - p), "
                "or torch.rand_like(x) >= p.",
                lambda x, p, training: x * torch.bernoulli(torch.full_like(x, p)) / (1 - p)
                if training and p > 0 else x),
        Mistake("dropout.p_is_keep_probability",
                "p is used as the probability of *keeping* an entry; it is the probability of "
                "dropping one: keep = torch.rand_like(x) >= p."),
    ],
)


def check_dropout(my_dropout) -> CheckResult:
    """Check `my_dropout(x, p, training) -> tensor` against `minigpt.dropout.dropout`,
    statistically (fraction dropped, scale of the kept entries), since masks are random."""
    return DROPOUT.check(my_dropout)


# --------------------------------------------------------------------------- forward pass
def _model(pos_seed: int, n_layer: int) -> MiniGPT:
    torch.manual_seed(pos_seed)
    model = MiniGPT(GPTConfig(vocab_size=11, block_size=16, n_embd=16, n_head=2, n_layer=n_layer,
                              dropout=0.0)).eval()
    with torch.no_grad():                     # larger weights than at init, so every part shows
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
            elif "ln" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.3)
    return model


def _ids(B, T, seed):
    return torch.randint(11, (B, T), generator=torch.Generator().manual_seed(seed))


def _forward_cases() -> list[Case]:
    return [
        Case("2 layers, idx of shape (2, 7)", (_model(1, 2), _ids(2, 7, 1))),
        Case("T = 1 (a single token)", (_model(2, 2), _ids(1, 1, 2))),
        Case("1 layer, the full context (T = block_size = 16)", (_model(3, 1), _ids(1, 16, 3))),
    ]


def _run_forward(solution, case: Case):
    model, idx = case.args
    with torch.no_grad():
        return solution(model, idx.clone())


FORWARD = Exercise(
    name="GPT forward pass",
    reference=lambda model, idx: model(idx)[0],
    stored="FORWARD",
    cases=_forward_cases,
    run=_run_forward,
    success="Embeddings, Pre-LN blocks, ln_f and the tied head: the whole GPT.",
    mistakes=[
        Mistake("gpt.no_ln_f",
                "the final LayerNorm is missing: logits = ln_f(x) @ wte.weight.T. In a Pre-LN "
                "model the residual stream is never normalised inside the blocks."),
        Mistake("gpt.no_positions",
                "the position embeddings are missing: x = wte(idx) + wpe(torch.arange(T))."),
        Mistake("gpt.positions_from_1",
                "the positions start at 1: the first token gets wpe row 0 (torch.arange(T))."),
        Mistake("gpt.post_ln_blocks",
                "the blocks are written Post-LN (ln(x + f(x))); MiniGPT's default is Pre-LN: "
                "x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))."),
        Mistake("gpt.no_residual",
                "the blocks have no residual connections (x = attn(ln_1(x)) instead of x = x + "
                "attn(ln_1(x))): each sub-layer adds to the residual stream, it does not replace it."),
        Mistake("gpt.softmax_on_logits",
                "you returned probabilities (a softmax of the logits): the forward pass returns the "
                "raw logits, (B, T, V); F.cross_entropy and the sampler apply the softmax themselves."),
        Mistake("gpt.ln_f_after_every_block",
                "ln_f was applied after every block: it runs once, after the last block, just "
                "before the head (x = ln_f(x); logits = x @ wte.weight.T)."),
        Mistake("gpt.last_position_only",
                "you returned the logits of the last position only, (B, V); the forward pass "
                "gives logits for every position, (B, T, V) (generate uses only the last)."),
    ],
)


def check_gpt_forward(my_forward) -> CheckResult:
    """Check `my_forward(model, idx) -> logits (B, T, V)` written with a `MiniGPT`'s own
    modules (learned positions, Pre-LN) against `model(idx)`."""
    return FORWARD.check(my_forward)
