"""pick_device, autocast, set_seed, the thread rule and OpenMP's spin limit."""

import contextlib
import os
import subprocess
import sys

import pytest
import torch

from minigpt import autocast, pick_device, set_seed
from minigpt.device import describe


def test_cpu_is_always_available():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_prefers_cuda():
    expected = "cuda" if torch.cuda.is_available() else None
    got = pick_device("auto")
    if expected:
        assert got.type == "cuda"
    else:
        assert got.type in ("cpu", "mps")
    assert pick_device(None) == got


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_on_a_cpu_machine_is_an_error_not_a_fallback():
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


def test_set_seed_makes_torch_reproducible():
    set_seed(7)
    a = torch.rand(5)
    set_seed(7)
    assert torch.equal(a, torch.rand(5))


def test_describe_cpu():
    assert describe(torch.device("cpu")).startswith("cpu (")


# ---------------------------------------------------------------- CPU threads
from minigpt import device as device_module
from minigpt.device import (THREADS_ENV, ThreadChoice, cgroup_cpu_limit, choose_cpu_threads,
                            configure_cpu_threads, usable_cpus)


def fake_files(root, files):
    """Write {relative path: text} under root, like a tiny /proc and /sys."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_no_cgroup_files_means_no_limit(tmp_path):
    assert cgroup_cpu_limit(tmp_path) is None


def test_cgroup_v2_quota_in_own_cgroup(tmp_path):
    fake_files(tmp_path, {"proc/self/cgroup": "0::/user.slice/job\n",
                          "sys/fs/cgroup/cpu.max": "max 100000\n",
                          "sys/fs/cgroup/user.slice/job/cpu.max": "150000 100000\n"})
    assert cgroup_cpu_limit(tmp_path) == 1.5


def test_cgroup_v2_tightest_ancestor_wins(tmp_path):
    fake_files(tmp_path, {"proc/self/cgroup": "0::/a/b\n",
                          "sys/fs/cgroup/a/cpu.max": "100000 100000\n",
                          "sys/fs/cgroup/a/b/cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(tmp_path) == 1.0


def test_cgroup_v2_container_sees_its_cgroup_at_the_mount_point(tmp_path):
    # /proc/self/cgroup names a path that does not exist inside the container's mount
    fake_files(tmp_path, {"proc/self/cgroup": "0::/kubepods/pod1/abc\n",
                          "sys/fs/cgroup/cpu.max": "200000 100000\n"})
    assert cgroup_cpu_limit(tmp_path) == 2.0


def test_cgroup_v1_quota_and_unlimited(tmp_path):
    fake_files(tmp_path, {"proc/self/cgroup": "4:cpu,cpuacct:/docker/xyz\n0::/\n",
                          "sys/fs/cgroup/cpu,cpuacct/docker/xyz/cpu.cfs_quota_us": "50000\n",
                          "sys/fs/cgroup/cpu,cpuacct/docker/xyz/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_limit(tmp_path) == 0.5
    fake_files(tmp_path, {"sys/fs/cgroup/cpu,cpuacct/docker/xyz/cpu.cfs_quota_us": "-1\n"})
    assert cgroup_cpu_limit(tmp_path) is None


def test_usable_cpus_is_affinity_capped_by_quota_rounded_up(tmp_path, monkeypatch):
    monkeypatch.setattr(device_module.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert usable_cpus(tmp_path) == 64                                   # no quota: the mask
    fake_files(tmp_path, {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "250000 100000\n"})
    assert usable_cpus(tmp_path) == 3                                    # 2.5 CPUs -> 3 threads
    fake_files(tmp_path, {"sys/fs/cgroup/cpu.max": "10000 100000\n"})
    assert usable_cpus(tmp_path) == 1                                    # 0.1 CPU -> still 1
    monkeypatch.setattr(device_module.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    fake_files(tmp_path, {"sys/fs/cgroup/cpu.max": "800000 100000\n"})
    assert usable_cpus(tmp_path) == 2                                    # taskset to 2 of 64


def test_usable_cpus_without_affinity_call(tmp_path, monkeypatch):
    monkeypatch.delattr(device_module.os, "sched_getaffinity", raising=False)   # as on macOS
    monkeypatch.setattr(device_module.os, "cpu_count", lambda: 8)
    assert usable_cpus(tmp_path) == 8


def test_thread_rule_lowers_to_usable_and_never_raises():
    assert choose_cpu_threads(current=16, usable=2, env={}).threads == 2
    assert choose_cpu_threads(current=2, usable=16, env={}).threads == 2
    assert choose_cpu_threads(current=1, usable=4, env={}).threads == 1


def test_thread_rule_keeps_what_the_user_chose():
    kept = choose_cpu_threads(current=8, usable=2, env={}, set_by_user=True)
    assert kept == ThreadChoice(8, "set by you with torch.set_num_threads")
    omp = choose_cpu_threads(current=3, usable=2, env={"OMP_NUM_THREADS": "3"})
    assert omp.threads == 3 and "OMP_NUM_THREADS=3" in omp.reason


def test_busy_machine_gets_one_thread():
    busy = choose_cpu_threads(current=2, usable=2, env={}, load=15.2, schedulable=2)
    assert busy == ThreadChoice(1, "busy machine: load average 15.2 on 2 CPUs")
    assert choose_cpu_threads(current=2, usable=2, env={}, load=1.5, schedulable=2).threads == 2
    # a container on a 64-CPU host: the host's load is compared with the host's CPUs
    assert choose_cpu_threads(current=64, usable=4, env={}, load=30.0, schedulable=64).threads == 4
    # what the user chose wins over the load rule
    assert choose_cpu_threads(current=2, usable=2, env={}, set_by_user=True, load=9.0).threads == 2
    assert choose_cpu_threads(current=1, usable=2, env={THREADS_ENV: "2"}, load=9.0).threads == 2


def test_minigpt_threads_overrides_everything():
    choice = choose_cpu_threads(current=1, usable=2, env={THREADS_ENV: "4", "OMP_NUM_THREADS": "1"},
                                set_by_user=True)
    assert choice == ThreadChoice(4, "MINIGPT_THREADS=4")


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_bad_minigpt_threads_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=rf"MINIGPT_THREADS='{bad}' is not a positive number of "
                                         r"threads; set it to e\.g\. 1 or 2, or unset it"):
        choose_cpu_threads(current=2, usable=2, env={THREADS_ENV: bad})


def test_configure_applies_once_per_process(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(device_module, "_THREAD_CHOICE", None)
    monkeypatch.setenv(THREADS_ENV, "1")
    try:
        first = configure_cpu_threads()
        assert first == ThreadChoice(1, "MINIGPT_THREADS=1") and torch.get_num_threads() == 1
        monkeypatch.setenv(THREADS_ENV, "2")
        assert configure_cpu_threads() is first and torch.get_num_threads() == 1   # decided once
        assert pick_device("cpu").type == "cpu" and torch.get_num_threads() == 1
        assert "MINIGPT_THREADS=1" in describe(torch.device("cpu"))
        assert configure_cpu_threads(force=True).threads == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ OpenMP's spinning
from minigpt.openmp import SPIN_COUNT, limit_openmp_spinning  # noqa: E402


def test_spin_limit_is_set_only_when_nobody_chose_a_wait_policy(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch")          # as if torch were not loaded yet
    env = {}
    assert limit_openmp_spinning(env) and env == {"GOMP_SPINCOUNT": SPIN_COUNT}
    for chosen in ({"GOMP_SPINCOUNT": "300000"}, {"OMP_WAIT_POLICY": "ACTIVE"}):
        env = dict(chosen)
        assert not limit_openmp_spinning(env) and env == chosen       # the user's choice stays


def test_spin_limit_is_not_claimed_once_torch_is_loaded():
    env = {}                                           # torch is loaded in this process
    assert not limit_openmp_spinning(env) and env == {}


@pytest.mark.parametrize("first, expected", [("minigpt", "10000"), ("torch", "unset")])
def test_importing_minigpt_before_torch_limits_the_spin(first, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = f"import os, {first}, minigpt; print(os.environ.get('GOMP_SPINCOUNT', 'unset'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
