"""The exercises' worked solutions, and the catalogued mistakes whose code would contain them.

Repository-only: the installed `minigpt` package (pyproject: packages minigpt*) holds no code
that computes an exercise's answer, apart from its own public API that the book teaches and
then uses (`manual_attention`, `causal_mask`, `next_token_probs`, `MiniGPT.generate`,
`apply_rope`, `MLP`, `merge_pair`, `LoRALinear`, ...). Where it has no such function (splitting
heads, a sliding cache, BPE's encode, ...) the solution is here, and so is every mistake whose
code is the solution with one switch flipped, a subclass of it, or a wrapper around it. The
package ships their outputs on the visible cases instead (`minigpt/exercises/expected/*.pt`,
written by `python tools/classroom.py expected` from this file; tests/test_exercises.py fails
when they disagree with what this file computes now):

* `REFERENCES`: exercise (its constant's name, as in `SPECS` of grading/hidden.py) -> its
  solution, for the exercises whose `reference` is None in the package;
* `MISTAKES`: mistake key -> its code, for every catalogued mistake whose `solution` is None;
* `WORKED`: worked solutions of exercises whose reference is the package's own function (the
  tests check that they pass: a reader's solution can be written that way).

grading/hidden.py loads this file by its path, as it loads the package: it puts its private
copy of `minigpt` in this module's namespace before running it, so nothing a student's cell
does to `minigpt` reaches the references, and its call watcher forbids calling anything here.
Loaded without that (tools/classroom.py, the tests), it uses the checkout's `minigpt`. No
dataclasses: a module loaded without a `sys.modules` entry cannot define them.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    minigpt     # noqa: B018  (put here by grading/hidden.py: its private copy of the package)
except NameError:
    import importlib

    import minigpt
    for _name in minigpt.exercises.chapter_modules():
        importlib.import_module(f"minigpt.exercises.{_name}")

_ex = minigpt.exercises
manual_attention = minigpt.attention.manual_attention
merge_pair = minigpt.bpe.merge_pair


# ------------------------------------------------------------------------------ chapter 2
def _future(T: int) -> torch.Tensor:
    return ~torch.ones(T, T, dtype=torch.bool).tril()                # True above the diagonal


def _weights(q, k, scale=None, fill=float("-inf"), dim=-1, keys_first=False, future=None):
    """One head's causal attention weights (B, T, T), with a switch for each mistake."""
    D, T = q.size(-1), q.size(-2)
    scores = (k @ q.transpose(-2, -1)) if keys_first else (q @ k.transpose(-2, -1))   # (B, T, T)
    scores = scores / (math.sqrt(D) if scale is None else scale)
    future = _future(T) if future is None else future
    return torch.softmax(scores.masked_fill(future, fill), dim=dim)


def _no_future(q):
    return torch.zeros(q.size(-2), q.size(-2), dtype=torch.bool)


MISTAKES = {
    "attention_weights.no_scale": lambda q, k: _weights(q, k, scale=1.0),
    "attention_weights.scale_by_d": lambda q, k: _weights(q, k, scale=q.size(-1)),
    "attention_weights.future_filled_with_zero": lambda q, k: _weights(q, k, fill=0.0),
    "attention_weights.mask_after_softmax":
        lambda q, k: _weights(q, k, future=_no_future(q)).masked_fill(_future(q.size(-2)), 0.0),
    "attention_weights.softmax_over_queries": lambda q, k: _weights(q, k, dim=-2),
    "attention_weights.no_mask": lambda q, k: _weights(q, k, future=_no_future(q)),
    "attention_weights.mask_upside_down":
        lambda q, k: _weights(q, k, future=~torch.ones(q.size(-2), q.size(-2), dtype=torch.bool).triu()),
    "attention_weights.mask_hides_self":
        lambda q, k: _weights(q, k, future=~torch.ones(q.size(-2), q.size(-2), dtype=torch.bool).tril(-1)),
    "attention_weights.keys_times_queries": lambda q, k: _weights(q, k, keys_first=True),
}
REFERENCES: dict = {}
WORKED: dict = {}


# ------------------------------------------------------------------------------ chapter 4
_ch04 = _ex.ch04_heads


def split_heads(t, n_head):
    B, T, C = t.shape
    return t.view(B, T, n_head, C // n_head).transpose(1, 2)            # (B, H, T, D)


def merge_heads(y):
    B, H, T, D = y.shape
    return y.transpose(1, 2).contiguous().view(B, T, H * D)             # (B, T, C)


def _mha_variant(split=split_heads, merge=merge_heads, scale="D", softmax_dim=-1, mask="before", diagonal=0,
                 project=True, order="qkv"):
    """A multi-head attention module with one step done wrong (the catalogue's mistakes)."""
    class Variant(nn.Module):
        def __init__(self, n_embd, n_head):
            super().__init__()
            self.n_head = n_head
            self.c_attn = nn.Linear(n_embd, 3 * n_embd)
            self.c_proj = nn.Linear(n_embd, n_embd)

        def forward(self, x):
            B, T, C = x.shape
            chunks = dict(zip(order, (split(t, self.n_head) for t in self.c_attn(x).split(C, dim=2))))
            q, k, v = chunks["q"], chunks["k"], chunks["v"]
            width = {"D": C // self.n_head, "C": C, "none": 1}[scale]
            scores = q @ k.transpose(-2, -1) / math.sqrt(width)
            hidden = ~torch.ones(T, T, dtype=torch.bool).tril(diagonal)
            if mask == "before":
                scores = scores.masked_fill(hidden, float("-inf"))
            weights = torch.softmax(scores, dim=softmax_dim)
            if mask == "after":
                weights = weights.masked_fill(hidden, 0.0)
            y = merge(weights @ v)
            return self.c_proj(y) if project else y
    return Variant


REFERENCES.update({"SPLIT_HEADS": split_heads, "MERGE_HEADS": merge_heads})
MISTAKES.update({
    "multi_head_attention.split_without_transpose": _mha_variant(split=_ch04._split_reshape_no_transpose),
    "multi_head_attention.merge_without_transpose": _mha_variant(merge=_ch04._merge_no_transpose),
    "multi_head_attention.softmax_over_queries": _mha_variant(softmax_dim=-2),
    "multi_head_attention.scale_by_sqrt_c": _mha_variant(scale="C"),
    "multi_head_attention.no_scale": _mha_variant(scale="none"),
    "multi_head_attention.no_mask": _mha_variant(mask="none"),
    "multi_head_attention.mask_after_softmax": _mha_variant(mask="after"),
    "multi_head_attention.mask_off_by_one": _mha_variant(diagonal=1),
    "multi_head_attention.softmax_over_heads": _mha_variant(softmax_dim=1),
    "multi_head_attention.q_and_k_swapped": _mha_variant(order="kqv"),
    "multi_head_attention.k_and_v_swapped": _mha_variant(order="qvk"),
    "multi_head_attention.no_projection": _mha_variant(project=False),
})


# ------------------------------------------------------------------------------ chapter 5
def _table(n_positions, dim, start=0, exponent_step=2, interleave=True, sin_first=True):
    """A sinusoidal table with switches for each mistake (the reference has the defaults)."""
    pos = torch.arange(start, start + n_positions, dtype=torch.float32)[:, None]      # (P, 1)
    i = torch.arange(0, dim // 2, dtype=torch.float32)
    omega = 10000.0 ** (-(exponent_step * i) / dim)                                   # (dim/2,)
    first, second = torch.sin(pos * omega), torch.cos(pos * omega)
    if not sin_first:
        first, second = second, first
    if not interleave:
        return torch.cat((first, second), dim=-1)
    table = torch.empty(n_positions, dim)
    table[:, 0::2], table[:, 1::2] = first, second
    return table


def _rope_tables(T, D, start=0, base=10000.0, exponent_step=2):
    i = torch.arange(0, D // 2, dtype=torch.float32)
    theta = base ** (-(exponent_step * i) / D)                                        # (D/2,)
    angles = torch.arange(start, start + T, dtype=torch.float32)[:, None] * theta     # (T, D/2)
    return angles.cos(), angles.sin()


def _rotate_interleaved(x, cos, sin, backwards=False):
    if backwards:
        sin = -sin
    x_even, x_odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), -1).flatten(-2)


def _rotate_halves_out(x, cos, sin):
    """Right pairs, right angles, but the results concatenated (all first members, then all
    second members) instead of interleaved back into the pairs' places."""
    x_even, x_odd = x[..., 0::2], x[..., 1::2]
    return torch.cat((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)


def _rotate_sign_slip(x, cos, sin):
    """The minus of the first member written as a plus: not a rotation at all."""
    x_even, x_odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((x_even * cos + x_odd * sin, x_even * sin + x_odd * cos), -1).flatten(-2)


def _rotate_half(x, cos, sin):
    """The other correct convention (Hugging Face Llama / GPT-NeoX): pair x[i] with x[i + D/2]."""
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def _rope(x, *, start=0, base=10000.0, exponent_step=2, rotate=_rotate_interleaved, backwards=False):
    """RoPE on x (B, H, T, D) at positions start..start+T-1, with switches for each mistake."""
    T, D = x.shape[-2:]
    cos, sin = _rope_tables(T, D, start, base, exponent_step)
    return rotate(x, cos, sin, backwards=True) if backwards else rotate(x, cos, sin)


_rope_attention = _ex.ch05_positions._rope_attention
MISTAKES.update({
    "sinusoidal.sin_cos_swapped": lambda n, d: _table(n, d, sin_first=False),
    "sinusoidal.exponent_i_over_dim": lambda n, d: _table(n, d, exponent_step=1),
    "sinusoidal.halves_not_interleaved": lambda n, d: _table(n, d, interleave=False),
    "sinusoidal.positions_start_at_1": lambda n, d: _table(n, d, start=1),
    "rope.positions_start_at_1": lambda x: _rope(x, start=1),
    "rope.rotate_half_convention": lambda x: _rope(x, rotate=_rotate_half),
    "rope.exponent_i_over_d": lambda x: _rope(x, exponent_step=1),
    "rope.positive_exponent": lambda x: _rope(x, base=1 / 10000.0),
    "rope.wrong_base": lambda x: _rope(x, base=1000.0),
    "rope.rotates_backwards": lambda x: _rope(x, backwards=True),
    "rope.halves_not_interleaved": lambda x: _rope(x, rotate=_rotate_halves_out),
    "rope.sign_slip": lambda x: _rope(x, rotate=_rotate_sign_slip),
    "rope_attention.rotate_half_convention":
        lambda q, k, v: _rope_attention(q, k, v, rope=lambda x: _rope(x, rotate=_rotate_half)),
    "rope_attention.sign_slip":
        lambda q, k, v: _rope_attention(q, k, v, rope=lambda x: _rope(x, rotate=_rotate_sign_slip)),
    "rope_attention.rotates_backwards":
        lambda q, k, v: _rope_attention(q, k, v, rope=lambda x: _rope(x, backwards=True)),
})


# ------------------------------------------------------------------------------ chapter 6
class _BuggyMLP(nn.Module):
    def __init__(self, C, hidden=4, activation=F.gelu, project=True, activation_last=False, bias=True):
        super().__init__()
        self.c_fc = nn.Linear(C, hidden * C, bias=bias)
        self.c_proj = nn.Linear(hidden * C, C, bias=bias) if project else None
        self.activation, self.activation_last = activation, activation_last

    def forward(self, x):
        h = self.c_fc(x)
        if self.c_proj is None:
            return self.activation(h)
        if self.activation_last:
            return self.activation(self.c_proj(h))
        return self.c_proj(self.activation(h))


def _layer_norm(x, gamma, beta, eps=1e-5, unbiased=False, dim=-1, affine=True, eps_outside=False):
    mu = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, keepdim=True, unbiased=unbiased)
    std = var.sqrt() + eps if eps_outside else torch.sqrt(var + eps)
    y = (x - mu) / std
    return gamma * y + beta if affine else y


def _pre_ln(b, x, attn_residual=True, mlp_residual=True, same_ln=False, ln_after=False, order_mlp_first=False,
            residual_normalised=False):
    ln_2 = b.ln_1 if same_ln else b.ln_2
    if residual_normalised:                         # h = ln(x); x = h + f(h): the stream is normalised
        h = b.ln_1(x)
        x = h + b.attn(h)
        h = ln_2(x)
        return h + b.mlp(h)
    if ln_after:                                    # normalises the branch output instead of its input
        x = x + b.ln_1(b.attn(x))
        return x + ln_2(b.mlp(x))
    if order_mlp_first:
        x = x + b.mlp(ln_2(x))
        return x + b.attn(b.ln_1(x))
    x = (x if attn_residual else 0) + b.attn(b.ln_1(x))
    return (x if mlp_residual else 0) + b.mlp(ln_2(x))


MISTAKES.update({
    "mlp.relu": lambda C: _BuggyMLP(C, activation=F.relu),
    "mlp.gelu_tanh": lambda C: _BuggyMLP(C, activation=lambda h: F.gelu(h, approximate="tanh")),
    "mlp.hidden_2c": lambda C: _BuggyMLP(C, hidden=2),
    "mlp.hidden_c": lambda C: _BuggyMLP(C, hidden=1),
    "mlp.no_projection": lambda C: _BuggyMLP(C, project=False),
    "mlp.activation_after_projection": lambda C: _BuggyMLP(C, activation_last=True),
    "mlp.no_bias": lambda C: _BuggyMLP(C, bias=False),
    "mlp.no_activation": lambda C: _BuggyMLP(C, activation=lambda h: h),
    "layer_norm.unbiased_variance": lambda x, g, b: _layer_norm(x, g, b, unbiased=True),
    "layer_norm.no_eps": lambda x, g, b: _layer_norm(x, g, b, eps=0.0),
    "layer_norm.eps_outside_sqrt": lambda x, g, b: _layer_norm(x, g, b, eps_outside=True),
    "layer_norm.wrong_dim_time": lambda x, g, b: _layer_norm(x, g, b, dim=-2),
    "layer_norm.wrong_dim_batch": lambda x, g, b: _layer_norm(x, g, b, dim=0),
    "layer_norm.gamma_beta_swapped": lambda x, g, b: _layer_norm(x, b, g),
    "layer_norm.no_beta": lambda x, g, b: _layer_norm(x, g, torch.zeros_like(b)),
    "layer_norm.no_affine": lambda x, g, b: _layer_norm(x, g, b, affine=False),
    "block.no_attn_residual": lambda b, x: _pre_ln(b, x, attn_residual=False),
    "block.no_mlp_residual": lambda b, x: _pre_ln(b, x, mlp_residual=False),
    "block.no_residuals": lambda b, x: _pre_ln(b, x, attn_residual=False, mlp_residual=False),
    "block.residual_adds_normalised_x": lambda b, x: _pre_ln(b, x, residual_normalised=True),
    "block.ln_1_twice": lambda b, x: _pre_ln(b, x, same_ln=True),
    "block.ln_on_branch_output": lambda b, x: _pre_ln(b, x, ln_after=True),
    "block.mlp_first": lambda b, x: _pre_ln(b, x, order_mlp_first=True),
})


# ------------------------------------------------------------------------------ chapter 7
def _dropout(x, p, training, scale=True, in_eval=False, keep_p=False, times=False, shared=False):
    if not (training or in_eval) or p == 0:
        return x
    if shared:                                          # one mask row, broadcast over every row
        return x * (torch.rand(x.shape[-1]) >= p) / (1 - p)
    keep = torch.rand_like(x) >= (1 - p if keep_p else p)
    if not scale:
        factor = 1.0
    elif times:
        factor = 1 - p
    else:
        factor = 1 / (p if keep_p else 1 - p)
    return x * keep * factor


def _gpt_forward(model, idx, positions=True, final_ln=True, post_ln=False, last_only=False, pos_from_1=False,
             residual=True, ln_f_every_block=False, softmax=False):
    T = idx.size(1)
    x = model.wte(idx)
    if positions:
        start = 1 if pos_from_1 else 0
        x = x + model.wpe.weight[start:start + T]
    for b in model.blocks:
        if post_ln:
            x = b.ln_1(x + b.attn(x))
            x = b.ln_2(x + b.mlp(x))
        elif residual:
            x = x + b.attn(b.ln_1(x))
            x = x + b.mlp(b.ln_2(x))
        else:
            x = b.attn(b.ln_1(x))
            x = b.mlp(b.ln_2(x))
        if ln_f_every_block:
            x = model.ln_f(x)
    if final_ln and not ln_f_every_block:
        x = model.ln_f(x)
    logits = x @ model.wte.weight.T
    if softmax:
        return torch.softmax(logits, dim=-1)
    return logits[:, -1] if last_only else logits


MISTAKES.update({
    "dropout.no_scale": lambda x, p, training: _dropout(x, p, training, scale=False),
    "dropout.scale_times_1_minus_p": lambda x, p, training: _dropout(x, p, training, times=True),
    "dropout.drops_in_eval": lambda x, p, training: _dropout(x, p, training, in_eval=True),
    "dropout.mask_shared_by_rows": lambda x, p, training: _dropout(x, p, training, shared=True),
    "dropout.p_is_keep_probability": lambda x, p, training: _dropout(x, p, training, keep_p=True),
    "gpt.no_ln_f": lambda m, i: _gpt_forward(m, i, final_ln=False),
    "gpt.no_positions": lambda m, i: _gpt_forward(m, i, positions=False),
    "gpt.positions_from_1": lambda m, i: _gpt_forward(m, i, pos_from_1=True),
    "gpt.post_ln_blocks": lambda m, i: _gpt_forward(m, i, post_ln=True),
    "gpt.no_residual": lambda m, i: _gpt_forward(m, i, residual=False),
    "gpt.softmax_on_logits": lambda m, i: _gpt_forward(m, i, softmax=True),
    "gpt.ln_f_after_every_block": lambda m, i: _gpt_forward(m, i, ln_f_every_block=True),
    "gpt.last_position_only": lambda m, i: _gpt_forward(m, i, last_only=True),
})


# ------------------------------------------------------------------------------ chapter 8
def _cosine(step, learning_rate, min_lr, warmup_iters, max_iters, floor=None, turn=math.pi,
            start=None, clamp=True, end=None, floor_added=False):
    start = warmup_iters if start is None else start
    end = max_iters if end is None else end
    progress = (step - start) / max(1, end - start)
    if clamp:
        progress = min(progress, 1.0)
    floor = min_lr if floor is None else floor
    if floor_added:                                # the floor added on top of the whole peak
        return floor + 0.5 * (1.0 + math.cos(turn * progress)) * learning_rate
    return floor + 0.5 * (1.0 + math.cos(turn * progress)) * (learning_rate - floor)


def _warmed(cosine_switches):
    """A schedule with the right warm-up and a cosine with the given switches."""
    def lr_at(step, learning_rate, min_lr, warmup_iters, max_iters):
        if step < warmup_iters:
            return learning_rate * (step + 1) / warmup_iters
        return _cosine(step, learning_rate, min_lr, warmup_iters, max_iters, **cosine_switches)
    return lr_at


def _lr_no_warmup(step, learning_rate, min_lr, warmup_iters, max_iters):
    return _cosine(step, learning_rate, min_lr, warmup_iters, max_iters, start=0)


def _lr_to_zero(step, learning_rate, min_lr, warmup_iters, max_iters):
    if step < warmup_iters:
        return learning_rate * (step + 1) / warmup_iters
    return _cosine(step, learning_rate, min_lr, warmup_iters, max_iters, floor=0.0)


def _lr_warmup_from_zero(step, learning_rate, min_lr, warmup_iters, max_iters):
    if step < warmup_iters:
        return learning_rate * step / warmup_iters                # step 0 gets lr 0: a wasted step
    return _cosine(step, learning_rate, min_lr, warmup_iters, max_iters)


def _warmed_up(**cosine):
    """A schedule with the right warm-up (lr · (step + 1) / warmup_iters) and a cosine gone wrong."""
    def schedule(step, learning_rate, min_lr, warmup_iters, max_iters):
        if step < warmup_iters:
            return learning_rate * (step + 1) / warmup_iters
        return _cosine(step, learning_rate, min_lr, warmup_iters, max_iters, **cosine)
    return schedule


_lr_degrees = _warmed_up(turn=180.0)
_lr_full_period = _warmed_up(turn=2 * math.pi)
_lr_progress_from_zero = _warmed_up(start=0)
_lr_not_clamped = _warmed_up(clamp=False)


def _forgets_no_decay_group(model, weight_decay):
    return _groups(model, weight_decay, lambda n, p: p.dim() >= 2)[:1]


def _decay_values_swapped(model, weight_decay):
    groups = _groups(model, weight_decay, lambda n, p: p.dim() >= 2)
    groups[0]["weight_decay"], groups[1]["weight_decay"] = 0.0, weight_decay
    return groups


_groups = _ex.ch08_training._groups
MISTAKES.update({
    "lr_schedule.no_warmup": _lr_no_warmup,
    "lr_schedule.decays_to_zero": _lr_to_zero,
    "lr_schedule.warmup_off_by_one": _lr_warmup_from_zero,
    "lr_schedule.cosine_in_degrees": _lr_degrees,
    "lr_schedule.full_cosine_period": _lr_full_period,
    "lr_schedule.progress_counts_warmup": _lr_progress_from_zero,
    "lr_schedule.floor_added_to_the_peak": _warmed(dict(floor_added=True)),
    "lr_schedule.ends_one_step_early":
        lambda step, learning_rate, min_lr, warmup_iters, max_iters: _warmed(dict(
            end=max_iters - 1))(step, learning_rate, min_lr, warmup_iters, max_iters),
    "lr_schedule.not_clamped_after_the_end": _lr_not_clamped,
    "decay_groups.no_decay_group_missing": _forgets_no_decay_group,
    "decay_groups.values_swapped": _decay_values_swapped,
})


# ------------------------------------------------------------------------------ chapter 9
_sorted = _ex.ch09_decoding._sorted
_top_p_from_drop = _ex.ch09_decoding._top_p_from_drop


@torch.no_grad()
def greedy_generate(model, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding without a cache (a worked solution; the check compares with
    `MiniGPT.generate(temperature=0)`): crop to the last block_size tokens, run the model,
    take the last position's argmax, append it."""
    block_size = model.config.block_size
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -block_size:])                  # (B, T, V)
        next_id = logits[:, -1].argmax(dim=-1, keepdim=True)     # (B, 1)
        idx = torch.cat([idx, next_id], dim=1)
    return idx


def _top_p_not_renormalised(logits, top_p):
    probs, sorted_probs, order = _sorted(logits)
    return _top_p_from_drop(probs, sorted_probs.cumsum(-1) - sorted_probs >= top_p, order,
                            renormalise=False)


WORKED["GREEDY_LOOP"] = greedy_generate
MISTAKES["top_p.not_renormalised"] = _top_p_not_renormalised


# ----------------------------------------------------------------------------- chapter 10
@torch.no_grad()
def _maps_by_hand(block, x, ln=True, scale=True, split_heads="transpose", key_chunk=1,
                  mask="before", softmax_dim=-1, hidden_from=1):
    """The reference written out, with one switch per mistake."""
    B, T, C = x.shape
    H = block.attn.n_head
    D = C // H
    h = block.ln_1(x) if ln else x
    chunks = block.attn.c_attn(h).split(C, dim=-1)                   # q, k, v: each (B, T, C)
    q, k = chunks[0], chunks[key_chunk]
    if split_heads == "transpose":
        q, k = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k))  # (B, H, T, D)
    else:                                                            # view(B, H, T, D): mixes heads and positions
        q, k = (t.reshape(B, H, T, D) for t in (q, k))
    scores = q @ k.transpose(-2, -1)
    if scale:
        scores = scores / math.sqrt(D)
    future = torch.ones(T, T, dtype=torch.bool).triu(hidden_from)
    if mask == "before":
        return F.softmax(scores.masked_fill(future, float("-inf")), dim=softmax_dim)
    if mask == "after":
        return F.softmax(scores, dim=-1).masked_fill(future, 0.0)
    return F.softmax(scores, dim=-1)


def _wrapped(**switches):
    return lambda block, x: _maps_by_hand(block, x, **switches)


def offset_scores(maps: torch.Tensor, offset: int, first_row: int) -> torch.Tensor:
    """maps (L, H, T, T) -> (L, H): each head's average weight on key i - offset, over the
    query rows i = first_row .. T - 1 (a worked solution; offset 1 = the previous character).
    Needs offset <= first_row < T."""
    rows = torch.arange(first_row, maps.size(-1))
    return maps[:, :, rows, rows - offset].mean(dim=-1)


def _score_rows(maps, offset, first_row, key_shift=0, all_rows=False, reduce="mean", swapped=False,
                from_offset=False):
    # no clamping: a negative key index wraps around, exactly as in the student's code
    rows = torch.arange(0 if all_rows else offset if from_offset else first_row, maps.size(-1))
    keys = rows - offset + key_shift
    picked = maps[:, :, keys, rows] if swapped else maps[:, :, rows, keys]
    return picked.mean(-1) if reduce == "mean" else picked.sum(-1)


REFERENCES["OFFSET_SCORE"] = offset_scores
MISTAKES.update({
    "maps.no_ln_1": _wrapped(ln=False),
    "maps.no_scale": _wrapped(scale=False),
    "maps.heads_split_without_transpose": _wrapped(split_heads="reshape"),
    "maps.keys_from_values": _wrapped(key_chunk=2),
    "maps.mask_after_softmax": _wrapped(mask="after"),
    "maps.softmax_over_queries": _wrapped(softmax_dim=-2),
    "maps.mask_hides_self": _wrapped(hidden_from=0),
    "maps.no_mask": _wrapped(mask="none"),
    "offset_score.rows_and_columns_swapped":
        lambda maps, offset, first_row: _score_rows(maps, offset, first_row, swapped=True),
    "offset_score.one_key_too_near": lambda maps, offset, first_row: _score_rows(maps, offset, first_row, key_shift=1),
    "offset_score.one_key_too_far": lambda maps, offset, first_row: _score_rows(maps, offset, first_row, key_shift=-1),
    "offset_score.all_rows": lambda maps, offset, first_row: _score_rows(maps, offset, first_row, all_rows=True),
    "offset_score.ignores_first_row":
        lambda maps, offset, first_row: _score_rows(maps, offset, first_row, from_offset=True),
    "offset_score.sum_not_mean": lambda maps, offset, first_row: _score_rows(maps, offset, first_row, reduce="sum"),
})


# ----------------------------------------------------------------------------- chapter 11
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

    def _latest(self, k: torch.Tensor, v: torch.Tensor):
        """The held positions followed by the new ones, the most recent `max_len` of them."""
        keys = torch.cat([self.k[:, :, :self.length], k], dim=2)[:, :, -self.max_len:]
        values = torch.cat([self.v[:, :, :self.length], v], dim=2)[:, :, -self.max_len:]
        return keys, values

    def append(self, k: torch.Tensor, v: torch.Tensor):
        keys, values = self._latest(k, v)
        self.length = keys.size(2)
        self.k[:, :, :self.length] = keys
        self.v[:, :, :self.length] = values
        return keys, values


class _LengthNotAdvanced(SlidingKVCache):
    def append(self, k, v):
        keys, values = self._latest(k, v)
        self.k[:, :, :keys.size(2)] = keys
        self.v[:, :, :values.size(2)] = values
        return keys, values                                   # self.length stays 0


class _LengthCountsCalls(SlidingKVCache):
    def append(self, k, v):
        keys, values = self._latest(k, v)
        self.k[:, :, :keys.size(2)] = keys
        self.v[:, :, :values.size(2)] = values
        self.length = min(self.length + 1, self.max_len)      # one per call, not per position
        return keys, values


class _ValuesNotStored(SlidingKVCache):
    def append(self, k, v):
        keys, _ = self._latest(k, v)
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


def _embed(model, idx: torch.Tensor, start: int) -> torch.Tensor:
    return model.wte(idx) + model.wpe.weight[start:start + idx.size(1)]


def _step(model, idx_new, caches, start):
    x = _embed(model, idx_new, start)
    for block, cache in zip(model.blocks, caches):
        x = block(x, cache=cache)
    return model.lm_head(model.ln_f(x[:, -1]))


@torch.no_grad()
def cached_generate(model, idx: torch.Tensor, max_new_tokens: int,
                    position_of_newest=lambda T: T - 1) -> torch.Tensor:
    """Greedy decoding with the package's KVCache (a worked solution; the check compares with
    `MiniGPT.generate(temperature=0)`): prefill the prompt, then
    one new token per step; once the text is longer than block_size, recompute the window.
    `position_of_newest(T)` is where the newest token of a length-T text is embedded: T - 1
    (any other is one of the two position mistakes below)."""
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
            logits = _step(model, idx[:, -1:], caches, position_of_newest(T))
        idx = torch.cat([idx, logits.argmax(-1, keepdim=True)], dim=1)
    return idx


_positions_from_zero = partial(cached_generate, position_of_newest=lambda T: 0)   # every new token at position 0
_position_one_too_far = partial(cached_generate, position_of_newest=lambda T: T)  # one past the newest token


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


def _slide_cache(cache) -> None:
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


REFERENCES["SLIDING_CACHE"] = SlidingKVCache
WORKED["CACHED_GENERATE"] = cached_generate
MISTAKES.update({
    "kv_cache.length_not_advanced": _LengthNotAdvanced,
    "kv_cache.length_counts_calls": _LengthCountsCalls,
    "kv_cache.values_not_stored": _ValuesNotStored,
    "kv_cache.overwrites": _Overwrites,
    "kv_cache.returns_new_only": _ReturnsNewOnly,
    "kv_cache.not_truncated": _NotTruncated,
    "kv_cache.ring_buffer_order": _RingBuffer,
    "kv_cache.keys_and_values_swapped": _KeysValuesSwapped,
    "kv_cache.keeps_oldest": _KeepsOldest,
    "kv_generate.positions_not_advanced": _positions_from_zero,
    "kv_generate.window_never_recomputed": _never_recomputes,
    "kv_generate.position_one_too_far": _position_one_too_far,
    "kv_generate.recomputes": _recomputes,
    "kv_generate.slides_cache": _slides_cache,
    "kv_generate.no_prefill": _no_prefill,
})


# ----------------------------------------------------------------------------- chapter 12
_tiles_heads = _ex.ch12_gqa._tiles_heads


def repeat_kv(k: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, Hkv, S, D) -> (B, n_head, S, D): each K/V head serves n_head // Hkv consecutive query heads."""
    return k.repeat_interleave(n_head // k.size(1), dim=1)


def grouped_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal GQA: q (B, H, T, D), k/v (B, Hkv, T, D) -> (B, H, T, D)."""
    H = q.size(1)
    return manual_attention(q, repeat_kv(k, H), repeat_kv(v, H))


def _gqa_values_tiled(q, k, v):
    H = q.size(1)
    return manual_attention(q, repeat_kv(k, H), _tiles_heads(v, H))


def _gqa_keys_tiled(q, k, v):
    H = q.size(1)
    return manual_attention(q, _tiles_heads(k, H), repeat_kv(v, H))


def _gqa_queries_pooled(q, k, v):
    """Averages each group's queries into one and gives every head of the group its output."""
    B, H, T, D = q.shape
    Hkv = k.size(1)
    pooled = q.view(B, Hkv, H // Hkv, T, D).mean(2)
    return repeat_kv(manual_attention(pooled, k, v), H)


def _gqa_by_hand(q, k, v, scale="D", mask="tril"):
    """GQA with the attention written out, one switch per mistake."""
    H, T, D = q.size(1), q.size(-2), q.size(-1)
    group = H // k.size(1)
    k, v = repeat_kv(k, H), repeat_kv(v, H)
    width = {"D": D, "none": 1, "D*group": D * group}[scale]
    scores = q @ k.transpose(-2, -1) / math.sqrt(width)
    ones = torch.ones(T, T, dtype=torch.bool)
    visible = ones.tril() if mask == "tril" else ones.triu()
    return torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1) @ v


REFERENCES.update({"REPEAT_KV": repeat_kv, "GQA_ATTENTION": grouped_query_attention})
MISTAKES.update({
    "gqa_attention.values_grouped_differently": _gqa_values_tiled,
    "gqa_attention.keys_grouped_differently": _gqa_keys_tiled,
    "gqa_attention.no_scale": lambda q, k, v: _gqa_by_hand(q, k, v, scale="none"),
    "gqa_attention.scale_by_sqrt_d_times_group": lambda q, k, v: _gqa_by_hand(q, k, v, scale="D*group"),
    "gqa_attention.mask_upside_down": lambda q, k, v: _gqa_by_hand(q, k, v, mask="triu"),
    "gqa_attention.queries_pooled": _gqa_queries_pooled,
})


# ----------------------------------------------------------------------------- chapter 13
def online_softmax_attend(scores: torch.Tensor, values: torch.Tensor, chunk: int) -> torch.Tensor:
    """softmax(scores) @ values for one row, (S,) and (S, D) -> (D,), one chunk of keys at a time.

    A worked solution (the tests check that it passes); the check compares with torch.softmax.
    """
    m = scores.new_tensor(float("-inf"))
    l = scores.new_tensor(0.0)
    acc = values.new_zeros(values.size(1))
    for s, v in zip(scores.split(chunk), values.split(chunk)):
        m_new = torch.maximum(m, s.max())
        p = torch.exp(s - m_new)
        rescale = torch.exp(m - m_new)
        l = l * rescale + p.sum()
        acc = acc * rescale + p @ v
        m = m_new
    return acc / l


def _online(scores, values, chunk, rescale_l=True, rescale_acc=True, divide=True, running_max=True):
    m = scores.new_tensor(float("-inf"))
    l = scores.new_tensor(0.0)
    acc = values.new_zeros(values.size(1))
    for s, v in zip(scores.split(chunk), values.split(chunk)):
        m_new = torch.maximum(m, s.max()) if running_max else s.max()
        p = torch.exp(s - m_new)
        rescale = torch.exp(m - m_new) if running_max else torch.ones(())
        l = (l * rescale if rescale_l else l) + p.sum()
        acc = (acc * rescale if rescale_acc else acc) + p @ v
        m = m_new
    return acc / l if divide else acc


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int) -> torch.Tensor:
    """Causal attention by (block x block) tiles with an online softmax.

    A worked solution (the tests check it passes and equals manual_attention).
    """
    return _tiled(q, k, v, block)


def _tiled(q, k, v, block, rescale=True, divide=True, mask="absolute", last_key="diagonal",
           rescale_l=True, rescale_acc=True, scale=True):
    B, H, T, D = q.shape
    out = torch.empty_like(q)
    for i in range(0, T, block):
        qi = q[:, :, i:i + block] / (math.sqrt(D) if scale else 1.0)
        rows = torch.arange(i, min(i + block, T))[:, None]
        m = torch.full((B, H, rows.size(0), 1), float("-inf"))
        l = torch.zeros(B, H, rows.size(0), 1)
        acc = torch.zeros(B, H, rows.size(0), D)
        stop = {"diagonal": min(i + block, T), "before_diagonal": i, "all": T}[last_key]
        for j in range(0, stop, block):
            s = qi @ k[:, :, j:j + block].transpose(-2, -1)
            cols = torch.arange(j, min(j + block, T))[None, :]
            if mask == "absolute":
                s = s.masked_fill(cols > rows, float("-inf"))
            elif mask == "tile_local":
                s = s.masked_fill((cols - j) > (rows - i), float("-inf"))
            m_new = torch.maximum(m, s.amax(-1, keepdim=True))
            p = torch.exp(s - m_new)
            shrink = torch.exp(m - m_new) if rescale else torch.ones(())
            l = (l * shrink if rescale_l else l) + p.sum(-1, keepdim=True)
            acc = (acc * shrink if rescale_acc else acc) + p @ v[:, :, j:j + block]
            m = m_new
        out[:, :, i:i + block] = acc / l if divide else acc
    return out


def _tiled_query_strips(q, k, v, block):
    """One query tile at a time, but against all of its keys at once with an ordinary softmax:
    the right output, built from a (block, i + block) strip of scores instead of tiles."""
    B, H, T, D = q.shape
    out = torch.empty_like(q)
    for i in range(0, T, block):
        end = min(i + block, T)
        scores = q[:, :, i:end] @ k[:, :, :end].transpose(-2, -1) / math.sqrt(D)
        future = torch.arange(end)[None, :] > torch.arange(i, end)[:, None]
        out[:, :, i:end] = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v[:, :, :end]
    return out


REFERENCES["ONLINE_SOFTMAX"] = online_softmax_attend
WORKED["TILED_ATTENTION"] = tiled_attention
MISTAKES.update({
    "tiled_attention.fused_kernel": lambda q, k, v, block: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    "tiled_attention.query_strips": _tiled_query_strips,
    "online_softmax.max_not_rescaled": lambda s, v, c: _online(s, v, c, running_max=False),
    "online_softmax.normaliser_not_rescaled": lambda s, v, c: _online(s, v, c, rescale_l=False),
    "online_softmax.acc_not_rescaled": lambda s, v, c: _online(s, v, c, rescale_acc=False),
    "online_softmax.no_final_division": lambda s, v, c: _online(s, v, c, divide=False),
    "tiled_attention.max_not_rescaled": lambda q, k, v, block: _tiled(q, k, v, block, rescale=False),
    "tiled_attention.no_scale": lambda q, k, v, block: _tiled(q, k, v, block, scale=False),
    "tiled_attention.acc_not_rescaled": lambda q, k, v, block: _tiled(q, k, v, block, rescale_acc=False),
    "tiled_attention.future_tiles_not_skipped": lambda q, k, v, block: _tiled(q, k, v, block, last_key="all"),
    "tiled_attention.normaliser_not_rescaled": lambda q, k, v, block: _tiled(q, k, v, block, rescale_l=False),
    "tiled_attention.no_final_division": lambda q, k, v, block: _tiled(q, k, v, block, divide=False),
    "tiled_attention.no_diagonal_mask": lambda q, k, v, block: _tiled(q, k, v, block, mask="none"),
    "tiled_attention.no_mask_no_skip": lambda q, k, v, block: _tiled(q, k, v, block, mask="none", last_key="all"),
    "tiled_attention.tile_local_mask": lambda q, k, v, block: _tiled(q, k, v, block, mask="tile_local"),
    "tiled_attention.skips_diagonal_tile":
        lambda q, k, v, block: _tiled(q, k, v, block, last_key="before_diagonal"),
})


# ----------------------------------------------------------------------------- chapter 15
_byte_ids = _ex.ch15_subword_tokens._byte_ids


def encode(text_bytes: bytes, merges: list) -> list:
    """Apply the merges (left, right, new) to the bytes, the lowest rank first, until none applies."""
    ids = _byte_ids(text_bytes)
    rank = {(left, right): (r, new) for r, (left, right, new) in enumerate(merges)}
    while len(ids) > 1:
        present = [p for p in zip(ids, ids[1:]) if p in rank]
        if not present:
            break
        pair = min(present, key=lambda p: rank[p][0])
        ids = merge_pair(ids, pair, rank[pair][1])
    return ids


def _encode_one_merge(text_bytes, merges):
    """Stops after the first merge it makes."""
    ids = _byte_ids(text_bytes)
    rank = {(left, right): (r, new) for r, (left, right, new) in enumerate(merges)}
    present = [p for p in zip(ids, ids[1:]) if p in rank]
    if present:
        pair = min(present, key=lambda p: rank[p][0])
        ids = merge_pair(ids, pair, rank[pair][1])
    return ids


REFERENCES["ENCODE"] = encode
MISTAKES["bpe_encode.stops_after_one_merge"] = _encode_one_merge


# ----------------------------------------------------------------------------- chapter 16
def lora_forward(x: torch.Tensor, W: torch.Tensor, b, A: torch.Tensor, B: torch.Tensor,
                 alpha: float, r: int) -> torch.Tensor:
    """x (..., in) -> (..., out): x W^T + b + (alpha / r) x A^T B^T, through the rank-r path."""
    out = x @ W.T + (b if b is not None else 0.0)
    return out + (alpha / r) * ((x @ A.T) @ B.T)


def _lora_forward(x, W, b, A, B, alpha, r, scale="alpha/r", transposed=False, frozen=True, bias=True):
    s = {"alpha/r": alpha / r, "none": 1.0, "alpha": alpha, "r/alpha": r / alpha}[scale]
    update = x @ (B @ A) if transposed else (x @ A.T) @ B.T
    out = (x @ W.T if frozen else 0.0) + (b if bias and b is not None else 0.0)
    return out + s * update


def lora_merge(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float, r: int) -> torch.Tensor:
    """The (out, in) weight one plain linear layer needs: W + (alpha / r) B A."""
    return W + (alpha / r) * (B @ A)


def _lora_merge(W, A, B, alpha, r, scale="alpha/r", transposed=False, keep_w=True, sign=1.0):
    s = {"alpha/r": alpha / r, "none": 1.0, "alpha": alpha}[scale]
    update = (B @ A).T if transposed else B @ A
    if transposed and update.shape != W.shape:
        raise RuntimeError(f"The size of tensor a ({W.shape[-1]}) must match the size of tensor b "
                           f"({update.shape[-1]}) at non-singleton dimension 1")
    return (W if keep_w else 0.0) + sign * s * update


WORKED.update({"LORA_FORWARD": lora_forward, "LORA_MERGE": lora_merge})
MISTAKES.update({
    "lora_forward.no_scale": lambda x, W, b, A, B, alpha, r: _lora_forward(x, W, b, A, B, alpha, r, scale="none"),
    "lora_forward.alpha_not_over_r":
        lambda x, W, b, A, B, alpha, r: _lora_forward(x, W, b, A, B, alpha, r, scale="alpha"),
    "lora_forward.r_over_alpha":
        lambda x, W, b, A, B, alpha, r: _lora_forward(x, W, b, A, B, alpha, r, scale="r/alpha"),
    "lora_forward.update_transposed":
        lambda x, W, b, A, B, alpha, r: _lora_forward(x, W, b, A, B, alpha, r, transposed=True),
    "lora_forward.no_frozen_path":
        lambda x, W, b, A, B, alpha, r: _lora_forward(x, W, b, A, B, alpha, r, frozen=False),
    "lora_forward.no_bias": lambda x, W, b, A, B, alpha, r: _lora_forward(x, W, b, A, B, alpha, r, bias=False),
    "lora_merge.no_scale": lambda W, A, B, alpha, r: _lora_merge(W, A, B, alpha, r, scale="none"),
    "lora_merge.alpha_not_over_r": lambda W, A, B, alpha, r: _lora_merge(W, A, B, alpha, r, scale="alpha"),
    "lora_merge.transposed": lambda W, A, B, alpha, r: _lora_merge(W, A, B, alpha, r, transposed=True),
    "lora_merge.no_w": lambda W, A, B, alpha, r: _lora_merge(W, A, B, alpha, r, keep_w=False),
    "lora_merge.subtracted": lambda W, A, B, alpha, r: _lora_merge(W, A, B, alpha, r, sign=-1.0),
})


# --------------------------------------------------------------------- what the package stores
def live(exercise):
    """`exercise` with the code the package leaves out put back (its reference, every mistake's
    solution): what grading runs on inputs drawn at grading time, and what the tests check."""
    import dataclasses
    reference = exercise.reference if exercise.reference is not None else REFERENCES[exercise.stored]
    mistakes = [m if m.solution is not None else dataclasses.replace(m, solution=MISTAKES[m.key])
                for m in exercise.mistakes]
    return dataclasses.replace(exercise, reference=reference, mistakes=mistakes, stored="")


def _plain(value):
    """Tensors as compact detached copies (a view would store its whole base), recursively."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone().contiguous()
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _record(exercise, solution, case) -> dict:
    try:
        return {"output": _plain(exercise.run(solution, case))}
    except Exception as err:      # a mistake that shows as a crash (a shape error, an overflow)
        return {"raises": [type(err).__name__, str(err)]}


def stored_outputs(exercise) -> dict:
    """What the package stores for `exercise` (minigpt/exercises/core.py: `stored_outputs`): the
    reference's outputs on the visible cases when the package has no reference, and each
    code-less mistake's output (or the error it raises) on them."""
    cases = exercise.cases()
    reference = None
    if exercise.reference is None:
        reference = [_plain(exercise.run(REFERENCES[exercise.stored], case)) for case in cases]
    mistakes = {m.key: [_record(exercise, MISTAKES[m.key], case) for case in cases]
                for m in exercise.mistakes if m.solution is None}
    return {"cases": [case.name for case in cases], "reference": reference, "mistakes": mistakes}


def disagreements(exercise, stored: dict, fresh: dict) -> list:
    """Where the stored outputs differ from what this file computes now (floats compared with
    the exercise's tolerance, everything else exactly); empty when they agree."""
    same = minigpt.exercises.core.same
    found = []
    if stored.get("cases") != fresh["cases"]:
        return [f"{exercise.name}: stored for other cases ({stored.get('cases')})"]
    names = fresh["cases"]
    if (stored.get("reference") is None) != (fresh["reference"] is None):
        found.append(f"{exercise.name}: the reference is {'not ' if fresh['reference'] is None else ''}stored now")
    elif fresh["reference"] is not None:
        found += [f"{exercise.name}, reference on {name}" for name, a, b in
                  zip(names, stored["reference"], fresh["reference"]) if not same(a, b, exercise.atol, exercise.rtol)]
    if set(stored.get("mistakes", {})) != set(fresh["mistakes"]):
        found.append(f"{exercise.name}: stored mistakes {sorted(stored.get('mistakes', {}))}, "
                     f"code-less mistakes {sorted(fresh['mistakes'])}")
        return found
    for key, records in fresh["mistakes"].items():
        for name, a, b in zip(names, stored["mistakes"][key], records):
            agree = (a.keys() == b.keys() and ("raises" in a and list(a["raises"]) == list(b["raises"])
                                               or "output" in a and same(a["output"], b["output"],
                                                                         exercise.atol, exercise.rtol)))
            if not agree:
                found.append(f"{exercise.name}, mistake {key} on {name}")
    return found
