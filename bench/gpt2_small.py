"""GPT-2 small's shape in MiniGPT, without a download: a randomly initialised Hugging Face
GPT2LMHeadModel (transformers' default GPT2Config()), converted with `minigpt.gpt2.from_hf_model`.

    python -m bench.gpt2_small [--seed 0] [--tokens 64]

Prints both models' parameter counts, how long the conversion took, and the largest difference
between their logits on one random batch of token ids. The numbers `book/gpt2.md` quotes come
from this script's log, bench/results/cpu_2core_gpt2_small.log.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Optional, Sequence

import torch


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpt2_small", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=64, help="positions in the compared batch")
    args = parser.parse_args(argv)
    import transformers

    from minigpt.gpt2 import from_hf_model

    torch.manual_seed(args.seed)
    hf_model = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    start = time.perf_counter()
    model = from_hf_model(hf_model).eval()
    seconds = time.perf_counter() - start
    ids = torch.randint(0, hf_model.config.vocab_size, (2, args.tokens),
                        generator=torch.Generator().manual_seed(args.seed))     # (B, T)
    with torch.no_grad():
        ours = model(ids)[0]                                                    # (B, T, V)
        theirs = hf_model(ids).logits
    hf_count = sum(p.numel() for p in hf_model.parameters())                   # the tied matrix once
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    print(f"parameters: MiniGPT {model.num_parameters():,}, Hugging Face {hf_count:,}")
    print(f"conversion (from_hf_model): {seconds:.1f} s")
    print(f"largest |logit difference| on a (2, {args.tokens}) batch: {(ours - theirs).abs().max().item():.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
