"""The MFU model: measured matmul peak, FLOPs per trained token, and a step's matmuls alone."""

from __future__ import annotations

import time

import torch

from minigpt import GPTConfig
from minigpt.device import synchronize


def matmul_dtype(device: torch.device) -> torch.dtype:
    """What the benchmarks multiply in: bf16 on CUDA (autocast's type), fp32 on a CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """Measured dense matmul throughput in FLOP/s (fp32 on CPU, bf16 on CUDA)."""
    dtype = matmul_dtype(device)
    n = 8192 if device.type == "cuda" else n
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    c = torch.empty_like(a)
    for _ in range(2):
        torch.mm(a, b, out=c)
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b, out=c)            # into a reused buffer: time the arithmetic, not page faults
        synchronize(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def train_flops_per_token(config: GPTConfig, n_params: int) -> float:
    """6N for the matmuls (forward + backward) plus the attention score/value products."""
    L, H, Q, T = config.n_layer, config.n_head, config.head_dim, config.block_size
    return 6 * n_params + 6 * L * H * Q * T   # causal: half of nanoGPT's 12*L*H*Q*T is masked


def step_matmuls(config: GPTConfig, batch_size: int, device: torch.device):
    """A function that runs only the matrix products of one training step of `config`.

    Same shapes, same count, same order of layers: per linear layer the forward product and
    the two backward ones (input and weight gradients), per attention layer the 2 forward
    and 4 backward batched products. Timing it next to a real step shows how far a step of
    this model could get if everything that is not a matmul were free (a ceiling on MFU).
    """
    dtype = matmul_dtype(device)
    N, C, H, T, D = batch_size * config.block_size, config.n_embd, config.n_head, config.block_size, config.head_dim
    kv = config.n_kv_head * D
    linears = [(C, C + 2 * kv), (C, C), (C, 4 * C), (4 * C, C)]           # (in, out) per block
    new = lambda *shape: torch.randn(*shape, device=device, dtype=dtype)  # noqa: E731
    acts = {w: new(N, w) for w in {C, C + 2 * kv, 4 * C, config.vocab_size}}
    weights = {(i, o): new(o, i) for i, o in linears + [(C, config.vocab_size)]}
    bias = new(config.block_size, config.block_size)
    q, scores = new(batch_size * H, T, D), new(batch_size * H, T, T)

    def run():
        for _ in range(config.n_layer):
            for i, o in linears:
                torch.mm(acts[i], weights[(i, o)].t())                     # forward
                torch.mm(acts[o], weights[(i, o)])                         # grad of the input
                torch.mm(acts[o].t(), acts[i])                             # grad of the weight
            torch.baddbmm(bias, q, q.transpose(1, 2))                      # scores
            torch.bmm(scores, q)                                           # weights @ v
            for a, b in ((scores.transpose(1, 2), q), (q, q.transpose(1, 2)), (scores, q),
                         (scores.transpose(1, 2), q)):                     # the 4 gradients
                torch.bmm(a, b)
        i, o = C, config.vocab_size
        torch.mm(acts[i], weights[(i, o)].t()); torch.mm(acts[o], weights[(i, o)]); torch.mm(acts[o].t(), acts[i])
    return run
