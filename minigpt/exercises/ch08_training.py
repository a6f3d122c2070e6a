"""Chapter 8 exercises: the learning-rate schedule, gradient clipping and AdamW's weight-decay
groups, and the mistakes they invite."""

from __future__ import annotations

import torch

from ..config import GPTConfig
from ..language import tr
from ..model import MiniGPT
from ..train import TrainConfig, make_optimizer
from .core import Case, CheckResult, Exercise, Mistake, WrongForm, require_number


# ------------------------------------------------------------- warm-up + cosine schedule
def _reference_lr_at(step, learning_rate, min_lr, warmup_iters, max_iters):
    return TrainConfig(learning_rate=learning_rate, min_lr=min_lr, warmup_iters=warmup_iters,
                       max_iters=max_iters).lr_at(step)


def _schedule(solution, case: Case) -> torch.Tensor:
    """The solution's learning rate at every step of the case (index = step), as a tensor."""
    settings = case.kwargs
    steps = range(settings["max_iters"] + case.args[0])          # a few steps past the end too
    return torch.tensor([require_number(solution(step, **settings), tr("the learning rate at step {step}", step=step))
                         for step in steps], dtype=torch.float64)


def _lr_cases() -> list[Case]:
    # Peaks near 1 keep the numbers in the answers readable; the shape is what is checked.
    return [
        Case("peak 0.8, floor 0.08, 10 warm-up steps, 50 steps (index = step)",
             (3,), dict(learning_rate=0.8, min_lr=0.08, warmup_iters=10, max_iters=50)),
        Case("no warm-up (warmup_iters=0), peak 0.5, floor 0.05, 20 steps",
             (3,), dict(learning_rate=0.5, min_lr=0.05, warmup_iters=0, max_iters=20)),
        Case("one warm-up step, peak 0.9, floor 0 (min_lr=0.0), 12 steps",
             (2,), dict(learning_rate=0.9, min_lr=0.0, warmup_iters=1, max_iters=12)),
    ]


LR_SCHEDULE = Exercise(
    name="warm-up + cosine learning rate",
    reference=_reference_lr_at,
    stored="LR_SCHEDULE",
    cases=_lr_cases,
    run=_schedule,
    # float32 arithmetic (a 0-d tensor answer) is within ~1e-7 of a rate of about 1 (cos near -1
    # included, where the rate itself is small); a mistake moves it by 1e-3 or more
    atol=1e-6,
    rtol=1e-6,
    success="Your schedule warms up linearly, then follows half a cosine down to min_lr and stays there.",
    mistakes=[
        Mistake("lr_schedule.no_warmup",
                "the schedule starts at the peak: during the first warmup_iters steps the learning "
                "rate must rise linearly, learning_rate * (step + 1) / warmup_iters."),
        Mistake("lr_schedule.decays_to_zero",
                "the cosine ends at 0 instead of min_lr: use min_lr + 0.5 * (1 + cos(pi * progress)) "
                "* (learning_rate - min_lr)."),
        Mistake("lr_schedule.warmup_off_by_one",
                "the warm-up is off by one: step 0 gets learning rate 0 (a step that changes nothing) "
                "and the peak comes one step late; use (step + 1) / warmup_iters."),
        Mistake("lr_schedule.cosine_in_degrees",
                "the cosine turns 180 radians, not half a turn: math.cos takes radians, so half a "
                "period is cos(math.pi * progress)."),
        Mistake("lr_schedule.full_cosine_period",
                "the learning rate comes back up at the end: cos(2 * pi * progress) is a whole "
                "period; the decay is half a period, cos(pi * progress)."),
        Mistake("lr_schedule.progress_counts_warmup",
                "the decay's progress counts from step 0, so it has already started during warm-up "
                "and does not start from the peak: progress = (step - warmup_iters) / "
                "(max_iters - warmup_iters)."),
        Mistake("lr_schedule.floor_added_to_the_peak",
                "min_lr was added on top of the whole cosine (min_lr + 0.5 * (1 + cos) * "
                "learning_rate), so the schedule starts above the peak: the cosine spans the gap, "
                "min_lr + 0.5 * (1 + cos(pi * progress)) * (learning_rate - min_lr)."),
        Mistake("lr_schedule.ends_one_step_early",
                "the cosine reaches min_lr at step max_iters - 1, one step early: progress = "
                "(step - warmup_iters) / (max_iters - warmup_iters) reaches 1 at step max_iters."),
        Mistake("lr_schedule.not_clamped_after_the_end",
                "after max_iters the learning rate rises again: clamp progress to at most 1, so the "
                "rate stays at min_lr if training runs longer."),
    ],
)


def check_lr_schedule(my_lr_at) -> CheckResult:
    """Check `my_lr_at(step, learning_rate, min_lr, warmup_iters, max_iters) -> float` against
    `TrainConfig.lr_at`, at every step of three schedules (and a few steps past their end)."""
    return LR_SCHEDULE.check(my_lr_at)


# ------------------------------------------------------------------ gradient clipping
def _reference_clip(grads, max_norm):
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params], norm


def _clipped(solution, case: Case):
    """(clipped gradient 0, 1, ..., norm before clipping as a float); a float or a tensor norm
    both work."""
    grads, max_norm = case.args
    clipped, norm = solution([g.clone() for g in grads], max_norm)
    return (*clipped, require_number(norm, "the norm you returned"))


def _grads(shapes, scale, seed):
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(*shape, generator=g) for shape in shapes]


def _clip_cases() -> list[Case]:
    shapes = [(4, 3), (3,), (2, 2, 2)]
    return [
        Case("three tensors whose global norm is about 8, max_norm=1.0", (_grads(shapes, 1.5, 1), 1.0)),
        Case("small gradients (global norm about 0.3, below max_norm=1.0): nothing to clip",
             (_grads(shapes, 0.08, 2), 1.0)),
        Case("one tensor with large entries, max_norm=0.5", (_grads([(5,)], 3.0, 3), 0.5)),
    ]


def _global_norm(grads):
    return torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).float()


def _clip_each_tensor(grads, max_norm):
    out = [g * min(1.0, max_norm / (g.norm().item() + 1e-6)) for g in grads]
    return out, _global_norm(grads)


def _clip_by_value(grads, max_norm):
    return [g.clamp(-max_norm, max_norm) for g in grads], _global_norm(grads)


def _always_rescale(grads, max_norm):
    norm = _global_norm(grads)
    return [g * (max_norm / (norm + 1e-6)) for g in grads], norm


def _sum_of_norms(grads, max_norm):
    norm = sum(g.norm() for g in grads)
    return [g * min(1.0, max_norm / (norm.item() + 1e-6)) for g in grads], norm


def _no_sqrt(grads, max_norm):
    norm = sum((g ** 2).sum() for g in grads)
    return [g * min(1.0, max_norm / (norm.item() + 1e-6)) for g in grads], norm


def _returns_norm_after(grads, max_norm):
    clipped, _ = _reference_clip(grads, max_norm)
    return clipped, _global_norm(clipped)


GRAD_CLIP = Exercise(
    name="gradient clipping by global norm",
    reference=_reference_clip,
    cases=_clip_cases,
    run=_clipped,
    atol=1e-6,
    rtol=1e-4,
    success="Your clipping scales all gradients together, by one factor, only when their global norm is too large.",
    mistakes=[
        Mistake("grad_clip.each_tensor_separately",
                "each tensor was clipped by its own norm; clip by the *global* norm, "
                "sqrt of the sum of every tensor's squared entries, with one scale for all tensors "
                "(so the direction of the whole update is kept).",
                _clip_each_tensor),
        Mistake("grad_clip.by_value",
                "the entries were clamped to [-max_norm, max_norm] (clipping by value), which changes "
                "the gradient's direction; scale every gradient by max_norm / norm instead.",
                _clip_by_value),
        Mistake("grad_clip.scales_small_gradients_up",
                "small gradients were scaled *up* to max_norm; clipping only ever shrinks: the scale "
                "is min(1, max_norm / norm).",
                _always_rescale),
        Mistake("grad_clip.sum_of_norms",
                "the global norm was computed as the sum of the tensors' norms; it is the square root "
                "of the sum of their *squared* norms, sqrt(sum(g.pow(2).sum() for g in grads)).",
                _sum_of_norms),
        Mistake("grad_clip.squared_norm",
                "the norm is missing its square root: sum(g.pow(2).sum()) is the squared norm.",
                _no_sqrt),
        Mistake("grad_clip.returns_norm_after_clipping",
                "the returned norm is the one after clipping; return the norm *before* clipping "
                "(what clip_grad_norm_ returns and `train` logs as grad_norm).",
                _returns_norm_after),
    ],
)


def check_grad_clip(my_clip) -> CheckResult:
    """Check `my_clip(grads, max_norm) -> (clipped grads, norm before clipping)` against
    `torch.nn.utils.clip_grad_norm_`. `grads` is a list of tensors; return new tensors."""
    return GRAD_CLIP.check(my_clip)


# ------------------------------------------------------------- AdamW weight-decay groups
def _decay_cases() -> list[Case]:
    """(config, weight_decay): two values, so an answer that writes 0.1 instead of using its
    argument fails here already."""
    base = dict(vocab_size=11, block_size=8, n_embd=8, n_head=2, n_layer=2, dropout=0.0)
    return [
        Case("a 2-layer MiniGPT with biases (GPT-2's layout)", (GPTConfig(**base), 0.1)),
        Case("a 1-layer MiniGPT without biases (bias=False), RoPE positions, weight_decay=0.05",
             (GPTConfig(**dict(base, n_layer=1, bias=False, pos_encoding="rope")), 0.05)),
    ]


def _reference_groups(model, weight_decay):
    cfg = TrainConfig(weight_decay=weight_decay)
    return make_optimizer(model, cfg, torch.device("cpu")).param_groups


def _decay_split(solution, case: Case):
    """One line per model parameter, "name: decayed" (by the weight_decay asked for), "name: not
    decayed" (0), or what else it is ("missing", "in two groups", decayed by another value),
    from the groups the solution returns."""
    torch.manual_seed(0)
    config, weight_decay = case.args
    model = MiniGPT(config)
    seen: dict[int, list[tuple[int, str]]] = {id(p): [] for p in model.parameters()}
    for index, group in enumerate(solution(model, weight_decay)):
        if "weight_decay" not in group:     # AdamW would give the group its own default, 0.01
            raise WrongForm(tr("a group has no weight_decay, so AdamW would decay it by its default, "
                               "0.01: give every group its weight_decay (the argument, or 0.0)"))
        decay = require_number(group["weight_decay"], "a group's weight_decay")
        state = ("not decayed" if decay == 0 else "decayed" if decay == weight_decay
                 else f"decayed by {decay!r}, not by the weight_decay asked for ({weight_decay!r})")
        for p in group["params"]:
            seen.setdefault(id(p), []).append((index, state))

    def status(places: list[tuple[int, str]]) -> str:
        if not places:
            return "missing from every group"
        if len({index for index, _ in places}) > 1:
            return "in two groups"
        if len(places) > 1:      # a tied weight (wte = lm_head) listed under both names
            return f"listed {len(places)} times in one group"
        return places[0][1]

    lines = [f"{name}: {status(seen[id(p)])}" for name, p in model.named_parameters()]
    if len(seen) > len(lines):
        lines.append("a group holds tensors that are not the model's parameters")
    return tuple(lines)


def _groups(model, weight_decay, decay_if):
    params = list(model.named_parameters())
    return [{"params": [p for n, p in params if decay_if(n, p)], "weight_decay": weight_decay},
            {"params": [p for n, p in params if not decay_if(n, p)], "weight_decay": 0.0}]


def _decay_everything(model, weight_decay):
    return _groups(model, weight_decay, lambda n, p: True)


def _decay_biases(model, weight_decay):
    return _groups(model, weight_decay, lambda n, p: p.dim() >= 2 or n.endswith("bias"))


def _decay_layernorm(model, weight_decay):
    return _groups(model, weight_decay, lambda n, p: not n.endswith("bias"))


def _decay_linear_only(model, weight_decay):
    return _groups(model, weight_decay, lambda n, p: p.dim() >= 2 and not n.startswith(("wte", "wpe")))


def _tied_weight_twice(model, weight_decay):
    """Both names of the tied weight (wte.weight and lm_head.weight) in the decay group."""
    params = list(model.named_parameters(remove_duplicate=False))
    return [{"params": [p for n, p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for n, p in params if p.dim() < 2], "weight_decay": 0.0}]


def _decay_nothing(model, weight_decay):
    return _groups(model, weight_decay, lambda n, p: False)


DECAY_GROUPS = Exercise(
    name="AdamW weight-decay groups",
    reference=_reference_groups,
    stored="DECAY_GROUPS",
    cases=_decay_cases,
    run=_decay_split,
    success="Your groups decay the matrices (embeddings and Linear weights) and nothing else.",
    mistakes=[
        Mistake("decay_groups.everything",
                "every parameter is decayed; biases and LayerNorm gains/shifts (the 1-D tensors) "
                "belong in a group with weight_decay=0.",
                _decay_everything),
        Mistake("decay_groups.biases_decayed",
                "biases are decayed: pulling a bias towards 0 regularises nothing (it multiplies no "
                "input); put every tensor with p.dim() < 2 in the no-decay group.",
                _decay_biases),
        Mistake("decay_groups.layernorm_decayed",
                "LayerNorm gains are decayed: shrinking them towards 0 fights the normalisation; the "
                "rule is by shape, p.dim() >= 2 decays, everything else does not.",
                _decay_layernorm),
        Mistake("decay_groups.embeddings_not_decayed",
                "the embeddings (wte, and wpe if present) are not decayed; they are matrices like the "
                "Linear weights, and minigpt decays every tensor with p.dim() >= 2 (as nanoGPT does).",
                _decay_linear_only),
        Mistake("decay_groups.no_decay_group_missing",
                "only the decayed group was returned, so the biases and LayerNorm parameters would "
                "never be trained at all: return a second group with them and weight_decay=0."),
        Mistake("decay_groups.values_swapped",
                "the weight_decay values are swapped: the matrices' group (p.dim() >= 2) gets "
                "weight_decay and the group of biases and LayerNorm parameters gets 0.0."),
        Mistake("decay_groups.tied_weight_listed_twice",
                "the tied weight is listed twice: wte.weight and lm_head.weight are one tensor, so "
                "model.named_parameters(remove_duplicate=False) (or collecting modules' weights) "
                "gives it twice, and AdamW warns about duplicate parameters. Use "
                "model.named_parameters(), which lists each tensor once.",
                _tied_weight_twice),
        Mistake("decay_groups.nothing",
                "nothing is decayed: check that the matrices' group has weight_decay set (> 0).",
                _decay_nothing),
    ],
)


def check_decay_groups(my_param_groups) -> CheckResult:
    """Check `my_param_groups(model, weight_decay) -> [{"params": [...], "weight_decay": ...}, ...]`
    against `minigpt.make_optimizer`'s groups."""
    return DECAY_GROUPS.check(my_param_groups)
