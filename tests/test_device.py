"""pick_device, autocast, set_seed, describe (the CPU's thread rule: test_threads.py)."""

import contextlib
import random

import pytest
import torch

from minigpt import autocast, pick_device, set_seed
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
