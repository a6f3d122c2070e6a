"""pick_device, autocast, set_seed, describe (the CPU's thread rule: test_threads.py)."""

import contextlib
import random

import pytest
import torch

from minigpt import UsageError, autocast, pick_device, set_seed
from minigpt.device import describe


def test_cpu_is_always_available():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (True, False, "cuda"),
                                                (False, True, "mps"), (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_the_cpu(monkeypatch, cuda, mps, expected):
    # faked, so that every branch runs on any machine (a CPU-only one included)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert pick_device("auto") == torch.device(expected)
    assert pick_device(None) == torch.device(expected)
    assert pick_device("AUTO") == torch.device(expected)


def test_cuda_on_a_cpu_machine_is_an_error_not_a_fallback(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)    # also on a machine with a GPU
    with pytest.raises(ValueError, match=r"'cuda' was requested but PyTorch sees no CUDA GPU.*'auto' or 'cpu'"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        pick_device("cuda:0")


def test_unknown_device_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown device 'tpu'; use one of auto, cpu, cuda, mps"):
        pick_device("tpu")


def test_autocast_is_a_no_op_on_cpu():
    assert isinstance(autocast(torch.device("cpu")), contextlib.nullcontext)
    with autocast(torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_set_seed_makes_torch_and_random_reproducible():
    """The same seed repeats PyTorch's and Python's draws; another seed gives other draws (a
    set_seed that ignored its argument would repeat them too)."""
    set_seed(7)
    a, r = torch.rand(5), random.random()
    set_seed(7)
    assert torch.equal(a, torch.rand(5)) and random.random() == r
    set_seed(8)
    assert not torch.equal(a, torch.rand(5)) and random.random() != r


def test_describe_cpu():
    assert describe(torch.device("cpu")).startswith("cpu (")


def test_timing_conditions_name_the_device_and_the_load(monkeypatch):
    from minigpt.device import timing_conditions
    said = timing_conditions(torch.device("cpu"))
    assert said.startswith(describe(torch.device("cpu")) + "; load average ")
    monkeypatch.delattr("os.getloadavg")                  # Windows
    assert timing_conditions("cpu").endswith("; load average unknown")


def test_a_named_gpu_keeps_its_index(monkeypatch):
    # 'cuda:1' is the second GPU; pick_device must not turn it into the current one
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    assert pick_device("CUDA:1") == torch.device("cuda", 1)
    assert pick_device("cuda") == torch.device("cuda")


def test_mps_on_a_machine_without_it_is_an_error_not_a_fallback(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device 'mps' was requested but is not available; use device='auto' or 'cpu'"):
        pick_device("mps")


def test_a_device_of_the_wrong_type_is_named_with_its_caller():
    """torch.device(1.5) is a TypeError (a name it does not know is a RuntimeError): both get the
    one line that names the caller."""
    from minigpt.errors import MiniGPTError
    for call, who in ((lambda: describe(1.5), "describe"), (lambda: autocast([0]), "autocast")):
        with pytest.raises(MiniGPTError, match=rf"{who}'s device .* is not one torch knows"):
            call()


def test_describe_names_the_gpu_and_other_devices_by_type(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)              # both devices, faked
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert describe(torch.device("cuda")) == "cuda (NVIDIA H100 80GB HBM3)"
    assert describe("mps") == "mps"


def test_synchronize_waits_for_the_device_it_is_given(monkeypatch):
    from minigpt.device import synchronize
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(("cuda", device)))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: waited.append(("mps", None)))
    synchronize(torch.device("cpu"))
    assert waited == []
    synchronize(torch.device("cuda", 1))
    synchronize(torch.device("mps"))
    assert waited == [("cuda", torch.device("cuda", 1)), ("mps", None)]


class _FakeGPU:
    """A clock and a device queue: a call only queues its work (returns at once, as a GPU call
    does); synchronize waits until the queued work is done, which is when the clock moves."""

    def __init__(self, durations_s):
        self.now, self.queued, self.durations, self.calls = 0.0, 0.0, list(durations_s), 0

    def perf_counter(self):
        return self.now

    def call(self):
        self.calls += 1
        self.queued += self.durations.pop(0)

    def synchronize(self, device):
        self.now, self.queued = self.now + self.queued, 0.0


def _fake_gpu(monkeypatch, durations_s):
    import types
    import minigpt.device as device_module
    gpu = _FakeGPU(durations_s)
    monkeypatch.setattr(device_module, "time", types.SimpleNamespace(perf_counter=gpu.perf_counter))
    monkeypatch.setattr(device_module, "synchronize", gpu.synchronize)
    return gpu


def test_time_calls_waits_for_the_device_before_reading_the_clock(monkeypatch):
    from minigpt.device import time_calls
    gpu = _fake_gpu(monkeypatch, [0.5, 0.25, 0.125])
    assert time_calls(gpu.call, 3, torch.device("cuda")) == [0.5, 0.25, 0.125]


def test_median_ms_is_the_median_after_an_untimed_warm_up(monkeypatch):
    from minigpt.device import median_ms
    # a slow first call (the warm-up: compilation, allocation) and one slow timed call
    gpu = _fake_gpu(monkeypatch, [1.0, 0.003, 0.040, 0.002])
    assert median_ms(gpu.call, torch.device("cuda"), reps=3) == pytest.approx(3.0)
    assert gpu.calls == 4


def test_maybe_compile_leaves_the_model_alone_unless_asked(monkeypatch):
    import warnings
    import minigpt.device as device_module
    compiled = []
    monkeypatch.setattr(device_module, "missing_compiler", lambda: None)      # as where g++ is installed
    monkeypatch.setattr(torch, "compile", lambda model, **options: compiled.append(model) or "compiled")
    model = torch.nn.Linear(2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert device_module.maybe_compile(model, None) is model and device_module.maybe_compile(model, False) is model
    assert compiled == []
    assert device_module.maybe_compile(model, True) == "compiled" and compiled == [model]


def test_a_gpu_number_the_machine_lacks_is_named_at_once(monkeypatch):
    """'cuda:5' on a one-GPU machine failed at the first tensor moved there, inside torch."""
    from minigpt.device import as_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UsageError, match=r"GPU number 5, but this machine has 2 CUDA GPUs, numbered from 0 "
                                         r"\(cuda:0 to cuda:1\)"):
        pick_device("cuda:5")
    with pytest.raises(UsageError, match=r"^generate: device 'cuda:2' asks for GPU number 2"):
        as_device("cuda:2", "generate")
    with pytest.raises(UsageError, match=r"device 'cuda:x' is not one torch knows"):
        pick_device("cuda:x")
    assert pick_device("cuda:1") == torch.device("cuda", 1)
