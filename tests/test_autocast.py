"""Mixed precision: bf16 on GPUs with native bf16, fp16 + a gradient scaler before Ampere,
float32 on CPUs; the scaler's code path in training, run on the CPU (its scale is a power of
two, so it changes no float32 number), and its state across a resume.

The GPU's compute capability is faked by monkeypatching torch.cuda: no GPU is needed.
"""

import importlib
import math

import pytest
import torch

from minigpt import GPTConfig, MiniGPT, TrainConfig, load_checkpoint, train
from minigpt.device import autocast, autocast_dtype, describe_precision

CUDA = torch.device("cuda")
train_module = importlib.import_module("minigpt.train")     # `minigpt.train` is also the function


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend a CUDA GPU of the given compute capability is present; returns the setter."""
    def with_capability(major: int, minor: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
        # what torch says on a T4: bf16 "supported" through emulation; the choice must ignore it
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
        monkeypatch.setattr(torch.version, "hip", None)
    return with_capability


@pytest.mark.parametrize("capability,dtype,words", [
    ((7, 0), torch.float16, "fp16 autocast + gradient scaler"),     # V100
    ((7, 5), torch.float16, "fp16 autocast + gradient scaler"),     # T4 (Colab's free GPU)
    ((8, 0), torch.bfloat16, "bf16 autocast"),                      # A100
    ((8, 9), torch.bfloat16, "bf16 autocast"),                      # L4, RTX 40xx
    ((9, 0), torch.bfloat16, "bf16 autocast"),                      # H100, H200
])
def test_gpu_precision_follows_the_compute_capability(fake_gpu, capability, dtype, words):
    fake_gpu(*capability)
    assert autocast_dtype(CUDA) == dtype and autocast_dtype(torch.device("cuda:0")) == dtype
    assert describe_precision(CUDA) == words
    context = autocast(CUDA)
    assert isinstance(context, torch.autocast) and context.fast_dtype == dtype
    scaler = train_module.make_grad_scaler(CUDA, TrainConfig(device="cuda"))
    assert scaler.is_enabled() == (dtype == torch.float16)


def test_autocast_off_and_cpu_run_in_float32(fake_gpu):
    fake_gpu(7, 5)
    assert autocast_dtype(CUDA, enabled=False) is None and describe_precision(CUDA, False) == "fp32"
    assert not train_module.make_grad_scaler(CUDA, TrainConfig(device="cuda", autocast=False)).is_enabled()
    for name in ("cpu", "mps"):
        assert autocast_dtype(torch.device(name)) is None
        assert describe_precision(torch.device(name)) == "fp32"
    assert not isinstance(autocast(torch.device("cpu")), torch.autocast)
    assert not train_module.make_grad_scaler(torch.device("cpu"), TrainConfig()).is_enabled()


def test_amd_gpus_use_bf16(fake_gpu, monkeypatch):
    fake_gpu(9, 4)
    monkeypatch.setattr(torch.version, "hip", "6.2")
    assert autocast_dtype(CUDA) == torch.bfloat16


def test_a_named_gpu_s_own_capability_decides(fake_gpu, monkeypatch):
    """A machine with an A100 (GPU 0) and a T4 (GPU 1): 'cuda:1' is the T4 whatever the current
    GPU is, and plain 'cuda' is the current one."""
    fake_gpu(8, 0)
    capabilities = {0: (8, 0), 1: (7, 5)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capabilities[device])
    assert autocast_dtype(torch.device("cuda:1")) == torch.float16
    assert autocast_dtype(torch.device("cuda:0")) == torch.bfloat16 == autocast_dtype(CUDA)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert autocast_dtype(CUDA) == torch.float16 and autocast_dtype(torch.device("cuda:0")) == torch.bfloat16


# --------------------------------------------------------- the scaler in training, on a CPU
def _model(data, seed=0):
    torch.manual_seed(seed)
    return MiniGPT(GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=16, n_embd=32, n_head=4,
                             n_layer=1, dropout=0.1))


def _cfg(**overrides):
    values = dict(max_iters=12, batch_size=4, learning_rate=3e-3, warmup_iters=3, eval_interval=6,
                  eval_iters=2, checkpoint_interval=6, device="cpu")
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture
def cpu_scaler(monkeypatch):
    """Make train() use an enabled CPU GradScaler (the fp16 path's code, in float32 numbers)."""
    made = []

    def use(**options):
        def make(device, cfg):
            made.append(torch.amp.GradScaler("cpu", **options))
            return made[-1]
        monkeypatch.setattr(train_module, "make_grad_scaler", make)
        return made
    return use


def test_scaled_training_equals_unscaled_training(small_data, cpu_scaler):
    # the scale is a power of two: multiplying and dividing the gradients by it is exact
    plain = train(_model(small_data), small_data, _cfg(), progress=False)
    made = cpu_scaler(init_scale=2.0 ** 12, growth_interval=4)
    scaled = train(_model(small_data), small_data, _cfg(), progress=False)
    assert made and made[0].is_enabled()
    assert made[0].get_scale() == 2.0 ** 15              # grew at steps 4, 8 and 12: no overflow
    assert scaled.history["loss"] == plain.history["loss"]
    assert scaled.history["grad_norm"] == plain.history["grad_norm"]
    for name, tensor in plain.model.state_dict().items():
        assert torch.equal(tensor, scaled.model.state_dict()[name]), name


def test_overflowing_scale_skips_the_step_and_backs_off(small_data, cpu_scaler):
    # a scale of 2^127 overflows float32 gradients: those updates are skipped, the scale is
    # halved each time, and training goes on instead of stopping as diverged
    made = cpu_scaler(init_scale=2.0 ** 127)
    before = {k: v.clone() for k, v in _model(small_data).state_dict().items()}
    result = train(_model(small_data), small_data, _cfg(max_iters=1), progress=False)
    assert not math.isfinite(result.history["grad_norm"][0]) and math.isfinite(result.history["loss"][0])
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name        # the overflowed update was skipped
    assert made[0].get_scale() == 2.0 ** 126
    made = cpu_scaler(init_scale=2.0 ** 127)
    result = train(_model(small_data), small_data, _cfg(), progress=False)
    overflowed = sum(not math.isfinite(g) for g in result.history["grad_norm"])
    assert 1 <= overflowed < 12 and made[0].get_scale() < 2.0 ** 127
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_resume_restores_the_scale(small_data, cpu_scaler, tmp_path):
    made = cpu_scaler(init_scale=2.0 ** 10, growth_interval=2)
    full = train(_model(small_data), small_data, _cfg(), tmp_path / "full", progress=False)
    train(_model(small_data), small_data, _cfg(), tmp_path / "split", stop_at=6, progress=False)
    saved = load_checkpoint(tmp_path / "split", with_trainer=True).trainer_tensors
    assert float(saved["amp.scale"]) == 2.0 ** 13 and int(saved["amp.growth_tracker"]) == 0
    resumed = train(_model(small_data, seed=999), small_data, _cfg(), tmp_path / "split", resume=True,
                    progress=False)
    assert resumed.history["loss"] == full.history["loss"]
    # a scaler that restarted at 2^10 would end at 2^13, not at the uninterrupted run's 2^16
    assert made[0].get_scale() == made[-1].get_scale() == 2.0 ** 16


def test_the_scale_is_read_only_for_a_checkpoint(small_data, cpu_scaler, tmp_path, monkeypatch):
    # reading the scale (state_dict) is two host syncs on a GPU: the loop does it only at the
    # boundaries it saves (steps 6 and 12 of 12), not at every step
    reads = []
    original = torch.amp.GradScaler.state_dict
    monkeypatch.setattr(torch.amp.GradScaler, "state_dict", lambda self: reads.append(1) or original(self))
    cpu_scaler(init_scale=2.0 ** 10)
    train(_model(small_data), small_data, _cfg(), progress=False)
    assert reads == []
    train(_model(small_data), small_data, _cfg(), tmp_path / "run", progress=False)
    assert len(reads) == 2
    assert float(load_checkpoint(tmp_path / "run", with_trainer=True).trainer_tensors["amp.scale"]) > 0


def test_float32_matmuls_stay_exact(small_data):
    # the book compares float32 paths to 1e-6 and less (manual == SDPA == flash, cache ==
    # recompute, a GPU checkpoint reloaded on the CPU); TF32 would round matmul inputs to 10
    # mantissa bits on a GPU. Training gets its speed from bf16/fp16 autocast instead, so
    # neither importing minigpt nor training may switch TF32 on (nanoGPT's recipe does).
    train(_model(small_data), small_data, _cfg(max_iters=2), progress=False)
    assert torch.get_float32_matmul_precision() == "highest"
    assert not torch.backends.cuda.matmul.allow_tf32


def test_training_header_says_the_precision(tmp_path):
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "minigpt", "train", "--preset", "tiny", "--max-iters", "2",
                           "--eval-interval", "2", "--out", str(tmp_path / "run"), "--no-progress",
                           "--sample-tokens", "0", "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0]
    assert header.startswith("preset tiny: ") and header.endswith(", fp32"), header
