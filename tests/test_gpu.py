"""CUDA-only checks (skipped on machines without a CUDA GPU; run on an H200: bench/results/gpu_h200_unit_tests.log)."""

import pytest
import torch
from torch.testing import assert_close

from conftest import random_ids, tiny_model
from minigpt import TrainConfig, load_checkpoint, pick_device, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_pick_device_cuda():
    assert pick_device("cuda").type == "cuda" and pick_device("auto").type == "cuda"


@pytest.mark.parametrize("impl", ["manual", "sdpa", "flash"])
def test_cuda_matches_cpu_and_cache_matches_no_cache(impl):
    cpu = tiny_model(scale=0.3, attn_impl=impl, n_kv_head=2, pos_encoding="rope")
    gpu = tiny_model(scale=0.3, attn_impl=impl, n_kv_head=2, pos_encoding="rope").cuda()
    idx = random_ids(2, 16)
    assert_close(gpu(idx.cuda())[0].cpu(), cpu(idx)[0], atol=1e-4, rtol=1e-4)
    prompt = random_ids(2, 3).cuda()
    a = gpu.generate(prompt, 40, temperature=0)
    b = gpu.generate(prompt, 40, temperature=0, use_cache=False)
    assert torch.equal(a, b)
    g = lambda: torch.Generator(device="cuda").manual_seed(3)      # noqa: E731
    assert torch.equal(gpu.generate(prompt, 40, top_k=5, generator=g()),
                       gpu.generate(prompt, 40, top_k=5, generator=g(), use_cache=False))


def test_cuda_training_with_autocast_and_checkpoint(tmp_path, small_data):
    data = small_data
    model = tiny_model(vocab_size=data.tokenizer.vocab_size, dropout=0.1)
    cfg = TrainConfig(max_iters=20, batch_size=8, learning_rate=3e-3, warmup_iters=2, eval_interval=10,
                      eval_iters=2, checkpoint_interval=10, device="cuda")
    result = train(model, data, cfg, tmp_path / "run", progress=False)
    assert result.model.device.type == "cuda"
    losses = result.history["loss"]
    assert sum(losses[-5:]) < sum(losses[:5])
    ckpt = load_checkpoint(tmp_path / "run", "cpu")           # GPU checkpoint, loaded on a CPU
    for name, t in ckpt.model.state_dict().items():
        assert torch.equal(t, result.model.state_dict()[name].cpu()), name


def test_cpu_generator_gives_the_same_text_on_cuda_as_on_the_cpu():
    # the book seeds generate with a CPU generator; on a GPU the draw must happen on the CPU
    # (torch.multinomial refuses a generator from another device) and pick the same tokens
    cpu = tiny_model(scale=0.3)
    gpu = tiny_model(scale=0.3).cuda()
    prompt = random_ids(2, 3)
    g = lambda: torch.Generator().manual_seed(5)                   # noqa: E731
    on_cpu = cpu.generate(prompt, 40, temperature=0.8, generator=g())
    on_gpu = gpu.generate(prompt.cuda(), 40, temperature=0.8, generator=g())
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), on_cpu)


def test_cuda_precision_follows_this_gpus_capability():
    from minigpt.device import autocast_dtype, describe_precision
    native_bf16 = torch.cuda.get_device_capability() >= (8, 0)
    assert autocast_dtype(torch.device("cuda")) == (torch.bfloat16 if native_bf16 else torch.float16)
    assert describe_precision(torch.device("cuda")) == ("bf16 autocast" if native_bf16
                                                       else "fp16 autocast + gradient scaler")


def test_cuda_compiled_training_with_dropout_is_one_graph_and_learns(small_data):
    # inductor for real (not the eager backend of test_compile.py): one graph, finite falling loss
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    model = tiny_model(vocab_size=small_data.tokenizer.vocab_size, dropout=0.1, attn_impl="sdpa")
    cfg = TrainConfig(max_iters=30, batch_size=8, learning_rate=3e-3, warmup_iters=2, eval_interval=15,
                      eval_iters=2, device="cuda", compile=True)
    result = train(model, small_data, cfg, progress=False)
    assert counters["stats"]["unique_graphs"] == 1
    losses = result.history["loss"]
    assert all(torch.isfinite(torch.tensor(losses))) and sum(losses[-5:]) < sum(losses[:5])


@pytest.mark.parametrize("capability", [None, (7, 5)])      # this GPU's bf16; a T4's fp16 + scaler
def test_a_cuda_training_step_synchronizes_once(small_data, monkeypatch, capability):
    # on the GPU itself: CUDA's sync debug mode warns at every synchronizing call. The loss and
    # the gradient norm are read together, once a step; the fused AdamW step (with the gradient
    # scaler, when the capability is faked to a T4's) must not add one
    import warnings
    if capability is not None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)

    def syncs(steps):
        model = tiny_model(vocab_size=small_data.tokenizer.vocab_size, dropout=0.1)
        cfg = TrainConfig(max_iters=steps, batch_size=8, learning_rate=3e-3, warmup_iters=2, eval_interval=100,
                          eval_iters=2, device="cuda")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                train(model, small_data, cfg, progress=False)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)
    syncs(2)                        # one-time set-up (kernels, handles) out of the way
    assert syncs(12) - syncs(4) == 8


def test_cuda_batches_come_through_pinned_memory(small_data, monkeypatch):
    from minigpt import get_batch
    pinned = []
    real_pin = torch.Tensor.pin_memory
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a: pinned.append(self.shape) or real_pin(self, *a))
    x, y = get_batch(small_data.train, 16, 4, torch.Generator().manual_seed(0), "cuda")
    cpu_x, cpu_y = get_batch(small_data.train, 16, 4, torch.Generator().manual_seed(0))
    assert pinned == [torch.Size([4, 17])]                  # one copy of the (B, T+1) windows
    assert x.is_contiguous() and y.is_contiguous() and x.device.type == "cuda"
    assert torch.equal(x.cpu(), cpu_x) and torch.equal(y.cpu(), cpu_y)
