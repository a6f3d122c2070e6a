"""Checks of the CUDA path (run on a GPU machine; CI has none): attention implementations
agree, KV-cache generation equals recomputation past block_size, a bf16-autocast training
step is finite, and a checkpoint written on the GPU reloads on the CPU."""

import tempfile

import torch

from minigpt import GPTConfig, MiniGPT, TextData, TrainConfig, load_model, train
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
