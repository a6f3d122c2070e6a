"""Checks of the CUDA path (run on a GPU machine; CI has none): attention implementations
agree, KV-cache generation equals recomputation past block_size, a bf16-autocast training
step is finite, and a checkpoint written on the GPU reloads on the CPU."""

import sys
import tempfile

import torch

from minigpt import GPTConfig, MiniGPT, TextData, TrainConfig, load_checkpoint, load_model, train
from minigpt.attention import flash_attention, manual_attention

assert torch.cuda.is_available(), "run this on a CUDA machine"
dev = torch.device("cuda")
torch.manual_seed(0)
q, k, v = (torch.randn(2, 8, 300, 32, device=dev) for _ in range(3))
ref = manual_attention(q, k, v)
sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
torch.testing.assert_close(flash_attention(q, k, v), ref, rtol=1e-4, atol=1e-4)
torch.testing.assert_close(sdpa, ref, rtol=1e-3, atol=1e-3)   # TF32/fused kernels
print("attention: manual == sdpa == flash on cuda")

for pos in ("learned", "rope", "sinusoidal"):
    cfg = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_embd=64, n_head=4, n_kv_head=2,
                    pos_encoding=pos, dropout=0.0)
    model = MiniGPT(cfg).to(dev).eval()
    prompt = torch.randint(0, 65, (2, 5), device=dev)
    a = model.generate(prompt, 150, temperature=0, use_cache=True)
    b = model.generate(prompt, 150, temperature=0, use_cache=False)
    assert torch.equal(a, b), pos
print("generate: KV cache == recompute on cuda, 155 tokens with block_size 64 (3 encodings, GQA)")

data = TextData.shakespeare()
cfg = GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=64, n_layer=2, n_embd=64, n_head=4)
model = MiniGPT(cfg)
with tempfile.TemporaryDirectory() as d:
    res = train(model, data, TrainConfig(max_iters=30, batch_size=16, eval_interval=30, eval_iters=2,
                                         device="cuda"), out_dir=d, progress=False)
    assert all(torch.isfinite(torch.tensor(res.history["loss"])))
    cpu_model, tok = load_model(d, "cpu")
    x = torch.randint(0, 65, (1, 32))
    torch.testing.assert_close(cpu_model(x)[0], res.model.float().cpu().eval()(x)[0], rtol=1e-4, atol=1e-4)
print(f"train: 30 bf16-autocast steps on cuda, loss {res.history['loss'][0]:.3f} -> {res.history['loss'][-1]:.3f}; "
      "checkpoint reloads on cpu")

# issue 19: the precision the GPU gets, fp16 + gradient scaler on CUDA, one compiled graph
import torch._dynamo as dynamo                                   # noqa: E402

import minigpt.device as device_module                           # noqa: E402
from minigpt.device import autocast_dtype, describe_precision   # noqa: E402

train_module = sys.modules["minigpt.train"]
major, minor = torch.cuda.get_device_capability(dev)
expected = torch.bfloat16 if (major, minor) >= (8, 0) else torch.float16
assert autocast_dtype(dev) == expected, (major, minor, autocast_dtype(dev))
print(f"precision: compute capability {major}.{minor} -> {describe_precision(dev)}")

# the fp16 path (a T4's) on this GPU: fp16 autocast, the gradient scaler, a checkpoint with its scale
real_dtype = device_module.autocast_dtype
fp16_only = lambda device, enabled=True: torch.float16 if real_dtype(device, enabled) else None  # noqa: E731
device_module.autocast_dtype = train_module.autocast_dtype = fp16_only
try:
    model = MiniGPT(GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=64, n_layer=2, n_embd=64,
                              n_head=4, dropout=0.1))
    with tempfile.TemporaryDirectory() as d:
        res = train(model, data, TrainConfig(max_iters=60, batch_size=16, eval_interval=30, eval_iters=2,
                                             checkpoint_interval=30, device="cuda"), out_dir=d, progress=False)
        saved = load_checkpoint(d, "cpu", with_trainer=True).trainer_tensors
finally:
    device_module.autocast_dtype = train_module.autocast_dtype = real_dtype
losses = res.history["loss"]
assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses
assert "amp.scale" in saved, sorted(saved)
print(f"train: 60 fp16-autocast steps with the gradient scaler on cuda, loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
      f"saved scale {float(saved['amp.scale']):g}")

# the training forward with dropout compiles to one graph on CUDA too
model = MiniGPT(GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_embd=64, n_head=4, dropout=0.1)).to(dev).train()
x = torch.randint(0, 65, (4, 64), device=dev)
explanation = dynamo.explain(model)(x, x)
assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons
print("compile: the training forward with dropout 0.1 is 1 graph, 0 breaks on cuda")
