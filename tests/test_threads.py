"""minigpt.cpu: the CPUs a process may use, the thread rule, OpenMP's spin limit.

The rule's inputs (affinity mask, cgroup files, /proc/stat, environment) are faked; no test
measures time.
"""

import os
import subprocess
import sys

import pytest
import torch

from minigpt import cpu, describe, pick_device
from minigpt.cpu import (THREADS_ENV, ThreadChoice, busy_cpus_between, cgroup_cpu_limit,
                         choose_cpu_threads, configure_cpu_threads, usable_cpus)
from minigpt.errors import MiniGPTError


def fake_files(root, files):
    """Write {relative path: text} under root, like a tiny /proc and /sys."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# ------------------------------------------------------------------ cgroup quota and affinity
def test_no_cgroup_files_means_no_limit(tmp_path):
    assert cgroup_cpu_limit(tmp_path) is None


def test_cgroup_v2_quota_in_own_cgroup(tmp_path):
    fake_files(tmp_path, {"proc/self/cgroup": "0::/user.slice/job\n",
                          "sys/fs/cgroup/cpu.max": "max 100000\n",
                          "sys/fs/cgroup/user.slice/job/cpu.max": "150000 100000\n"})
    assert cgroup_cpu_limit(tmp_path) == 1.5


def test_cgroup_the_tightest_quota_wins_wherever_it_is(tmp_path):
    # a parent's quota below its child's (no quota, then a larger one), and a v1 quota below the
    # v2 one: the smallest applies
    fake_files(tmp_path, {"proc/self/cgroup": "0::/a/b\n",
                          "sys/fs/cgroup/a/cpu.max": "100000 100000\n",
                          "sys/fs/cgroup/a/b/cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(tmp_path) == 1.0
    fake_files(tmp_path, {"sys/fs/cgroup/a/b/cpu.max": "300000 100000\n"})
    assert cgroup_cpu_limit(tmp_path) == 1.0
    fake_files(tmp_path, {"proc/self/cgroup": "3:cpu,cpuacct:/job\n0::/a/b\n",
                          "sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us": "50000\n",
                          "sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_limit(tmp_path) == 0.5


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
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert usable_cpus(tmp_path) == 64                                   # no quota: the mask
    fake_files(tmp_path, {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "250000 100000\n"})
    assert usable_cpus(tmp_path) == 3                                    # 2.5 CPUs -> 3 threads
    fake_files(tmp_path, {"sys/fs/cgroup/cpu.max": "10000 100000\n"})
    assert usable_cpus(tmp_path) == 1                                    # 0.1 CPU -> still 1
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    fake_files(tmp_path, {"sys/fs/cgroup/cpu.max": "800000 100000\n"})
    assert usable_cpus(tmp_path) == 2                                    # taskset to 2 of 64


def test_usable_cpus_without_affinity_call(tmp_path, monkeypatch):
    monkeypatch.delattr(cpu.os, "sched_getaffinity", raising=False)     # as on macOS
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 8)
    assert usable_cpus(tmp_path) == 8


# ------------------------------------------------------------------ the rule
def test_rule_lowers_to_usable_and_never_raises():
    assert choose_cpu_threads(current=16, usable=2, env={}) == ThreadChoice(2, "2 usable CPUs")
    assert choose_cpu_threads(current=2, usable=16, env={}).threads == 2
    assert choose_cpu_threads(current=1, usable=4, env={}).threads == 1
    assert choose_cpu_threads(current=64, usable=1, env={}) == ThreadChoice(1, "1 usable CPU")


def test_rule_leaves_the_cpus_other_work_keeps_busy():
    # another 2-thread job on 2 cores: one thread
    assert choose_cpu_threads(current=2, usable=2, env={}, busy=2.0, schedulable=2) == \
        ThreadChoice(1, "2 CPUs of 2 busy with other work when the device was picked")
    # one other single-threaded job on 4 cores: 3 threads
    assert choose_cpu_threads(current=4, usable=4, env={}, busy=1.0, schedulable=4) == \
        ThreadChoice(3, "1 CPU of 4 busy with other work when the device was picked")
    # a machine busier than its cores still gets one thread
    assert choose_cpu_threads(current=2, usable=2, env={}, busy=7.5, schedulable=2).threads == 1
    # half a CPU busy is rounded up to one, less than half is light work and ignored
    assert choose_cpu_threads(current=2, usable=2, env={}, busy=0.5, schedulable=2).threads == 1
    assert choose_cpu_threads(current=2, usable=2, env={}, busy=0.4, schedulable=2) == \
        ThreadChoice(2, "torch's default; 2 usable CPUs")


def test_rule_uses_every_usable_cpu_once_your_own_job_has_ended():
    """The 1-minute load average still counts a job that ended a second ago (the rule it
    replaced picked one thread there); the busy CPUs of the last 50 ms do not."""
    assert choose_cpu_threads(current=2, usable=2, env={}, busy=0.0, schedulable=2).threads == 2


def test_rule_in_a_container_compares_the_busy_cpus_with_its_mask():
    # quota of 4 CPUs, mask of 64 host CPUs of which 30 are busy: 34 free, the quota's 4 used
    assert choose_cpu_threads(current=64, usable=4, env={}, busy=30.0, schedulable=64) == \
        ThreadChoice(4, "4 usable CPUs")
    # the same container on a host with 62 of 64 busy: 2 threads
    assert choose_cpu_threads(current=64, usable=4, env={}, busy=62.0, schedulable=64).threads == 2
    # no measurement (no /proc/stat): the usable CPUs
    assert choose_cpu_threads(current=8, usable=4, env={}, busy=None).threads == 4


def test_what_you_chose_wins_over_the_busy_rule():
    assert choose_cpu_threads(current=2, usable=2, env={}, set_by_user=True, busy=2.0).threads == 2
    assert choose_cpu_threads(current=1, usable=2, env={THREADS_ENV: "2"}, busy=2.0).threads == 2
    assert choose_cpu_threads(current=2, usable=2, env={"OMP_NUM_THREADS": "2"}, busy=2.0).threads == 2


STAT_BEFORE = """cpu  300 0 100 1000 0 0 0 0 0 0
cpu0 100 0 50 500 0 0 0 0 0 0
cpu1 200 0 50 500 0 0 0 0 0 0
intr 12345
"""
# over the window: cpu0 busy 5 of 5 ticks, cpu1 busy 1 of 5 (4 idle), iowait counts as idle
STAT_AFTER = """cpu  306 0 100 1004 0 0 0 0 0 0
cpu0 104 0 51 500 0 0 0 0 0 0
cpu1 200 0 51 502 2 0 0 0 0 0
intr 12399
"""


def test_busy_cpus_between_two_reads_of_proc_stat():
    assert busy_cpus_between(STAT_BEFORE, STAT_AFTER) == pytest.approx(1.2)
    assert busy_cpus_between(STAT_BEFORE, STAT_AFTER, cpus={0}) == pytest.approx(1.0)   # mask
    assert busy_cpus_between(STAT_BEFORE, STAT_AFTER, cpus={1}) == pytest.approx(0.2)
    assert busy_cpus_between(STAT_BEFORE, STAT_BEFORE) == 0.0          # no tick: nothing busy


def test_busy_cpus_reads_proc_stat_twice(tmp_path, monkeypatch):
    stat = fake_files(tmp_path, {"proc/stat": STAT_BEFORE}) / "proc/stat"
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    import time
    monkeypatch.setattr(time, "sleep", lambda s: stat.write_text(STAT_AFTER))   # the window
    assert cpu.busy_cpus(root=tmp_path) == pytest.approx(1.2)
    assert cpu.busy_cpus(root=tmp_path / "nowhere") is None                      # no /proc/stat


def _busy_two_cpu_machine(monkeypatch):
    """Two CPUs, 1.9 of them busy with other work, nothing chosen, torch at its default of 2."""
    monkeypatch.setattr(cpu, "_THREAD_CHOICE", None)
    monkeypatch.setattr(cpu, "_THREADS_AT_IMPORT", 2)
    for name in (THREADS_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(cpu, "usable_cpus", lambda: 2)
    monkeypatch.setattr(cpu, "busy_cpus", lambda: 1.9)
    torch.set_num_threads(2)


def test_configure_measures_the_busy_cpus(monkeypatch):
    before = torch.get_num_threads()
    try:
        _busy_two_cpu_machine(monkeypatch)
        choice = configure_cpu_threads()
        assert choice.threads == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(cpu, "busy_cpus", lambda: 0.1)
        torch.set_num_threads(2)
        assert configure_cpu_threads(force=True).threads == 2 and torch.get_num_threads() == 2

        def not_needed():
            raise AssertionError("busy_cpus was measured though the user chose the count")
        monkeypatch.setattr(cpu, "busy_cpus", not_needed)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert configure_cpu_threads(force=True).reason == "OMP_NUM_THREADS=2 set by you"
    finally:
        torch.set_num_threads(before)


def test_rule_keeps_what_the_user_chose():
    kept = choose_cpu_threads(current=8, usable=2, env={}, set_by_user=True)
    assert kept == ThreadChoice(8, "set by you with torch.set_num_threads")
    omp = choose_cpu_threads(current=3, usable=2, env={"OMP_NUM_THREADS": "3"})
    assert omp == ThreadChoice(3, "OMP_NUM_THREADS=3 set by you")
    mkl = choose_cpu_threads(current=1, usable=2, env={"MKL_NUM_THREADS": " 1 "})
    assert mkl == ThreadChoice(1, "MKL_NUM_THREADS=1 set by you")


TORCHRUN_2_PER_MACHINE = {"TORCHELASTIC_RUN_ID": "none", "LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": "0",
                          "WORLD_SIZE": "2", "RANK": "0"}


def test_under_torchrun_its_omp_num_threads_is_named_as_its():
    env = {**TORCHRUN_2_PER_MACHINE, "OMP_NUM_THREADS": "1"}
    choice = choose_cpu_threads(current=1, usable=2, env=env)
    assert choice.threads == 1
    assert choice.reason == ("OMP_NUM_THREADS=1 from torchrun, its default for several processes "
                             "per machine unless you set it before")
    assert "set by you" not in choice.reason


@pytest.mark.parametrize("env", [
    {**TORCHRUN_2_PER_MACHINE, "OMP_NUM_THREADS": "2"},        # torchrun only ever sets 1
    {**TORCHRUN_2_PER_MACHINE, "LOCAL_WORLD_SIZE": "1", "OMP_NUM_THREADS": "1"},  # one per machine
    {"OMP_NUM_THREADS": "1"},                                   # no torchrun at all
])
def test_omp_num_threads_torchrun_did_not_set_is_yours(env):
    choice = choose_cpu_threads(current=int(env["OMP_NUM_THREADS"]), usable=2, env=env)
    assert choice.reason == f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']} set by you"


def test_minigpt_threads_overrides_everything():
    choice = choose_cpu_threads(current=1, usable=2, env={THREADS_ENV: "4", "OMP_NUM_THREADS": "1"},
                                set_by_user=True)
    assert choice == ThreadChoice(4, "MINIGPT_THREADS=4")


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_bad_minigpt_threads_is_a_one_line_minigpt_error(bad):
    with pytest.raises(MiniGPTError, match=rf"MINIGPT_THREADS='{bad}' is not a positive number of "
                                           r"threads; set it to e\.g\. 1 or 2, or unset it"):
        choose_cpu_threads(current=2, usable=2, env={THREADS_ENV: bad})


def test_more_minigpt_threads_than_openmp_can_start_is_refused_with_the_limit():
    """MINIGPT_THREADS=100000 crashed the process without a word (OpenMP); --threads had a cap."""
    with pytest.raises(MiniGPTError, match=rf"MINIGPT_THREADS=100000 threads on a machine with \d+ CPU\(s\): "
                                           rf"set it to at most {cpu.max_threads()}"):
        choose_cpu_threads(current=2, usable=2, env={THREADS_ENV: "100000"})
    assert choose_cpu_threads(current=2, usable=2, env={THREADS_ENV: str(cpu.max_threads())}).threads == cpu.max_threads()


def test_configure_applies_once_per_process(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(cpu, "_THREAD_CHOICE", None)
    monkeypatch.setenv(THREADS_ENV, "1")
    try:
        first = configure_cpu_threads()
        assert first == ThreadChoice(1, "MINIGPT_THREADS=1") and torch.get_num_threads() == 1
        monkeypatch.setenv(THREADS_ENV, "2")
        assert configure_cpu_threads() is first and torch.get_num_threads() == 1   # decided once
        assert pick_device("cpu").type == "cpu" and torch.get_num_threads() == 1
        assert "MINIGPT_THREADS=1" in describe(torch.device("cpu"))
        assert cpu.thread_choice() is first
        assert configure_cpu_threads(force=True).threads == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_count_set_after_import_is_kept(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(cpu, "_THREAD_CHOICE", None)
    monkeypatch.setattr(cpu, "_THREADS_AT_IMPORT", 2)
    for name in (THREADS_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    try:
        torch.set_num_threads(1)                    # the user's own call, after `import minigpt`
        assert configure_cpu_threads() == ThreadChoice(1, "set by you with torch.set_num_threads")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_threads_asked_for_are_kept_where_they_equal_torchs_default(monkeypatch):
    """`--threads 2` on a busy 2-core machine whose torch already uses 2 threads: the count did
    not change, so torch.set_num_threads alone looked like no choice and the busy rule lowered it
    to 1. threads_asked_for makes it MINIGPT_THREADS=2 while the command runs (children inherit
    it), and gives the variable back as it was."""
    before = torch.get_num_threads()
    _busy_two_cpu_machine(monkeypatch)
    try:
        assert configure_cpu_threads(force=True).threads == 1      # the rule, with nothing asked for
        _busy_two_cpu_machine(monkeypatch)
        with cpu.threads_asked_for(2):
            choice = configure_cpu_threads()
            assert choice.threads == 2 and torch.get_num_threads() == 2, choice
            assert os.environ[THREADS_ENV] == "2"
            child = subprocess.run([sys.executable, "-c", f"import os; print(os.environ['{THREADS_ENV}'])"],
                                   capture_output=True, text=True, check=True)
            assert child.stdout.strip() == "2"
        assert THREADS_ENV not in os.environ
        monkeypatch.setenv(THREADS_ENV, "1")
        with cpu.threads_asked_for(2):
            assert os.environ[THREADS_ENV] == "2"
        assert os.environ[THREADS_ENV] == "1"
    finally:
        torch.set_num_threads(before)


def test_train_and_bench_keep_their_threads_on_a_busy_machine(monkeypatch, tmp_path):
    """Both commands' --threads go through threads_asked_for: `train --threads 2` trains on 2
    threads on the busy machine above, and `bench --threads 2` reports 2 and runs its children
    with MINIGPT_THREADS=2."""
    from bench import harness
    from minigpt import cli
    before = torch.get_num_threads()
    try:
        seen = {}

        def fake_train(args):
            seen["train"] = (configure_cpu_threads().threads, os.environ.get(THREADS_ENV))
            return 0
        monkeypatch.setattr(cli, "_train", fake_train)
        _busy_two_cpu_machine(monkeypatch)
        assert cli.main(["train", "--threads", "2", "--out", str(tmp_path / "run")]) == 0
        assert seen["train"] == (2, "2") and THREADS_ENV not in os.environ

        def fake_flash(device):
            seen["flash"] = (torch.get_num_threads(), os.environ.get(THREADS_ENV))
            return {"T": 8, "method": "fake", "manual_bytes": 1, "flash_bytes": 1, "ratio_flash_over_manual": 1.0}
        monkeypatch.setattr(harness, "bench_flash", fake_flash)
        _busy_two_cpu_machine(monkeypatch)
        result = harness.run_benchmarks(["flash"], device="cpu", threads=2)
        assert seen["flash"] == (2, "2") and result["device"].startswith("cpu (2 threads"), result["device"]
        assert THREADS_ENV not in os.environ
    finally:
        torch.set_num_threads(before)


def test_old_import_paths_still_work():
    from minigpt.device import configure_cpu_threads as old_configure, tune_cpu_allocator
    assert old_configure is configure_cpu_threads and tune_cpu_allocator is cpu.tune_cpu_allocator


# ------------------------------------------------------------------ OpenMP's spinning
def test_spin_limit_is_set_only_when_nobody_chose_a_wait_policy(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch")          # as if torch were not loaded yet
    env = {}
    assert cpu.limit_openmp_spinning(env) and env == {"GOMP_SPINCOUNT": cpu.SPIN_COUNT}
    for chosen in ({"GOMP_SPINCOUNT": "300000"}, {"OMP_WAIT_POLICY": "ACTIVE"}):
        env = dict(chosen)
        assert not cpu.limit_openmp_spinning(env) and env == chosen   # the user's choice stays


def test_spin_limit_is_not_claimed_once_torch_is_loaded():
    env = {}                                           # torch is loaded in this process
    assert not cpu.limit_openmp_spinning(env) and env == {}


@pytest.mark.parametrize("first, expected", [("minigpt", "10000"), ("torch", "unset")])
def test_importing_minigpt_before_torch_limits_the_spin(first, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = f"import os, {first}, minigpt; print(os.environ.get('GOMP_SPINCOUNT', 'unset'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_importing_the_cpu_module_does_not_load_torch():
    """The spin limit must run before torch loads, so the module that holds it cannot import
    torch at its top: import it under a bare package (minigpt/__init__.py, which does load
    torch, does not run) and look."""
    code = ("import sys, types\n"
            "package = types.ModuleType('minigpt')\n"
            f"package.__path__ = [{os.path.dirname(cpu.__file__)!r}]\n"
            "sys.modules['minigpt'] = package\n"
            "import minigpt.cpu\n"
            "print(minigpt.cpu.limit_openmp_spinning({}), 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True False"


# ------------------------------------------------------------------ more of the rule's cases
def test_cgroup_v1_with_the_cpu_controller_mounted_alone(tmp_path):
    fake_files(tmp_path, {"proc/self/cgroup": "5:cpu:/slurm/job42\n4:cpuacct:/slurm/job42\n",
                          "sys/fs/cgroup/cpu/slurm/job42/cpu.cfs_quota_us": "150000\n",
                          "sys/fs/cgroup/cpu/slurm/job42/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_limit(tmp_path) == 1.5


def test_busy_cpus_counts_only_the_cpus_of_the_affinity_mask(tmp_path, monkeypatch):
    stat = fake_files(tmp_path, {"proc/stat": STAT_BEFORE}) / "proc/stat"
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {1}, raising=False)   # taskset -c 1
    import time
    monkeypatch.setattr(time, "sleep", lambda s: stat.write_text(STAT_AFTER))
    assert cpu.busy_cpus(root=tmp_path) == pytest.approx(0.2)        # cpu0's work is not in our way


def test_busy_rule_never_raises_the_count_either():
    # torch's 2 threads on a 4-CPU machine with one CPU busy: 3 are free, but torch's count stays
    assert choose_cpu_threads(current=2, usable=4, env={}, busy=1.0, schedulable=4) == \
        ThreadChoice(2, "torch's default; 4 usable CPUs")


def test_minigpt_threads_may_be_up_to_four_times_the_cpus(monkeypatch):
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 2)
    assert cpu.max_threads() == 8
    assert choose_cpu_threads(current=2, usable=2, env={THREADS_ENV: "8"}) == ThreadChoice(8, "MINIGPT_THREADS=8")
    with pytest.raises(MiniGPTError, match=r"MINIGPT_THREADS=9 threads on a machine with 2 CPU\(s\): set it to at most 8"):
        choose_cpu_threads(current=2, usable=2, env={THREADS_ENV: "9"})


def test_under_torchrun_without_a_per_machine_count_omp_1_is_still_torchrun_s():
    # an agent that does not say how many processes it started on this machine
    choice = choose_cpu_threads(current=1, usable=2, env={"TORCHELASTIC_RUN_ID": "abc", "OMP_NUM_THREADS": "1"})
    assert choice.reason.startswith("OMP_NUM_THREADS=1 from torchrun")


def test_configure_does_not_measure_the_busy_cpus_under_minigpt_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(cpu, "_THREAD_CHOICE", None)
    monkeypatch.setattr(cpu, "_THREADS_AT_IMPORT", None)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(THREADS_ENV, "1")
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)

    def not_needed():
        raise AssertionError("busy_cpus was measured (50 ms) though MINIGPT_THREADS decides")
    monkeypatch.setattr(cpu, "busy_cpus", not_needed)
    try:
        assert configure_cpu_threads() == ThreadChoice(1, "MINIGPT_THREADS=1")
    finally:
        torch.set_num_threads(before)


def test_pick_device_applies_the_thread_rule_and_describe_says_it(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(cpu, "_THREAD_CHOICE", None)
    monkeypatch.setenv(THREADS_ENV, "1")
    try:
        torch.set_num_threads(2)
        assert pick_device("cpu") == torch.device("cpu")
        assert cpu.thread_choice() == ThreadChoice(1, "MINIGPT_THREADS=1") and torch.get_num_threads() == 1
        assert describe(torch.device("cpu")) == "cpu (1 thread: MINIGPT_THREADS=1)"
        monkeypatch.setenv(THREADS_ENV, "2")
        configure_cpu_threads(force=True)
        assert describe(torch.device("cpu")) == "cpu (2 threads: MINIGPT_THREADS=2)"
    finally:
        torch.set_num_threads(before)


def test_a_blank_wait_variable_is_not_a_choice(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch")          # as if torch were not loaded yet
    env = {"OMP_WAIT_POLICY": " ", "GOMP_SPINCOUNT": ""}
    assert cpu.limit_openmp_spinning(env) and env["GOMP_SPINCOUNT"] == cpu.SPIN_COUNT
