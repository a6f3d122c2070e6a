"""Recipe search for the cpu-quick preset: final val loss (whole val split) for a grid of
shapes, batch sizes, learning rates and step counts. Loss per step does not depend on the
machine, so the grid can run anywhere (it ran on a GPU in fp32, several runs at once);
the CPU wall time of each candidate is measured separately (bench `quick`)."""

import itertools
import json
import sys
from concurrent.futures import ProcessPoolExecutor

import torch


def run(spec):
    from minigpt import GPTConfig, MiniGPT, TextData, TrainConfig, evaluate, set_seed, train
    torch.backends.cuda.matmul.allow_tf32 = False
    data = TextData.shakespeare()
    model_kw, train_kw = spec
    set_seed(1337)
    model = MiniGPT(GPTConfig(vocab_size=65, dropout=0.0, **model_kw))
    cfg = TrainConfig(autocast=False, eval_interval=10**6, eval_iters=2, checkpoint_interval=10**6, **train_kw)
    res = train(model, data, cfg, progress=False)
    val = evaluate(res.model, data.val)
    return {"model": model_kw, "train": train_kw, "val_loss": val, "params": model.num_parameters(),
            "tokens": train_kw["max_iters"] * train_kw["batch_size"] * model_kw["block_size"]}


def grid():
    shapes = [dict(n_layer=4, n_embd=128, n_head=4, block_size=64, pos_encoding="rope", bias=False),
              dict(n_layer=4, n_embd=128, n_head=4, block_size=64, pos_encoding="learned", bias=False),
              dict(n_layer=3, n_embd=128, n_head=4, block_size=64, pos_encoding="rope", bias=False),
              dict(n_layer=4, n_embd=96, n_head=4, block_size=64, pos_encoding="rope", bias=False),
              dict(n_layer=4, n_embd=128, n_head=4, block_size=48, pos_encoding="rope", bias=False)]
    for shape, (batch, iters), lr in itertools.product(
            shapes, [(32, 1000), (32, 1500), (32, 2000), (64, 750), (64, 1000)], [3e-3, 6e-3]):
        yield (shape, dict(batch_size=batch, max_iters=iters, learning_rate=lr, min_lr=lr / 20,
                           warmup_iters=50, device="cuda" if torch.cuda.is_available() else "cpu"))


if __name__ == "__main__":
    out = open(sys.argv[1], "w") if len(sys.argv) > 1 else sys.stdout
    specs = list(grid())
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(int(sys.argv[2]) if len(sys.argv) > 2 else 8, mp_context=ctx) as pool:
        for r in pool.map(run, specs):
            print(json.dumps(r), file=out, flush=True)
            print(f"{r['val_loss']:.4f} {r['model']} {r['train']['batch_size']} {r['train']['max_iters']} {r['train']['learning_rate']}", flush=True)
