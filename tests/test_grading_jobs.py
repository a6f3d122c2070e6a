"""`grade --jobs N`: several notebooks graded at once. The refusals that keep a student's points
(cores, memory), the memory a cgroup leaves, and the scheduling, with nbgrader faked here;
tests/test_grading.py grades chapter 3's students with two jobs through nbgrader itself."""

from __future__ import annotations

import glob
import importlib.util
import json
import signal
import threading
import time
from pathlib import Path

import pytest

from minigpt.errors import MiniGPTError

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("classroom_for_jobs", ROOT / "tools" / "classroom.py")
classroom = importlib.util.module_from_spec(spec)
spec.loader.exec_module(classroom)
GIB = 2**30


def fake_files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_jobs_beyond_the_cores_or_the_memory_are_refused_with_the_number_that_fits():
    classroom.check_jobs(1, 1, None)
    classroom.check_jobs(1, 4, 100.0)                       # one at a time: as before, whatever is free
    classroom.check_jobs(4, 4, 4 * classroom.JOB_MEMORY_MIB)
    with pytest.raises(MiniGPTError, match=r"--jobs 0: give 1 or more"):
        classroom.check_jobs(0, 4, None)
    with pytest.raises(MiniGPTError, match=r"--jobs 5 on 4 whole CPUs: .* use --jobs 4 or fewer"):
        classroom.check_jobs(5, 4, None)
    with pytest.raises(MiniGPTError, match=r"--jobs 2 on 1 whole CPU: .* use --jobs 1 \(one notebook at a time\)"):
        classroom.check_jobs(2, 1, None)
    with pytest.raises(MiniGPTError, match=r"--jobs 16 needs about 18\.8 GiB .* 7\.8 GiB is free: .* "
                                           r"use --jobs 6 or fewer"):
        classroom.check_jobs(16, 16, 8000.0)
    with pytest.raises(MiniGPTError, match=r"use --jobs 1 \(one notebook at a time\)"):
        classroom.check_jobs(2, 2, 500.0)


def test_a_fractional_cpu_quota_counts_its_whole_cores_only(monkeypatch):
    monkeypatch.setattr(classroom.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(classroom, "cgroup_cpu_limit", lambda: 1.5)      # Kubernetes' cpu: 1500m
    assert classroom.whole_cpus() == 1
    monkeypatch.setattr(classroom, "cgroup_cpu_limit", lambda: 0.5)
    assert classroom.whole_cpus() == 1
    monkeypatch.setattr(classroom, "cgroup_cpu_limit", lambda: 3.0)
    assert classroom.whole_cpus() == 3
    monkeypatch.setattr(classroom, "cgroup_cpu_limit", lambda: None)
    assert classroom.whole_cpus() == 4


def test_free_memory_is_the_least_of_the_host_and_the_cgroup_limits(tmp_path):
    fake_files(tmp_path, {"proc/meminfo": "MemTotal: 32000000 kB\nMemAvailable: 20971520 kB\n",
                          "proc/self/cgroup": "0::/\n"})
    assert classroom.available_memory_mib(tmp_path) == pytest.approx(20480)          # no limit: the host's
    # cgroup v2 (a container with --memory 8g): 8 GiB, 3 GiB used, 1 GiB of it inactive page cache
    fake_files(tmp_path, {"proc/self/cgroup": "0::/kubepods/pod1\n",
                          "sys/fs/cgroup/kubepods/pod1/memory.max": f"{8 * GIB}\n",
                          "sys/fs/cgroup/kubepods/pod1/memory.current": f"{3 * GIB}\n",
                          "sys/fs/cgroup/kubepods/pod1/memory.stat": f"anon 123\ninactive_file {GIB}\n"})
    assert classroom.available_memory_mib(tmp_path) == pytest.approx(6 * 1024)
    # a parent's tighter limit counts too
    fake_files(tmp_path, {"sys/fs/cgroup/kubepods/memory.max": f"{4 * GIB}\n",
                          "sys/fs/cgroup/kubepods/memory.current": f"{3 * GIB}\n"})
    assert classroom.available_memory_mib(tmp_path) == pytest.approx(1024)
    # cgroup v1 (this project's CI machine): "no limit" is a page-rounded 2**63
    v1 = fake_files(tmp_path / "v1", {"proc/meminfo": "MemAvailable: 20971520 kB\n",
                                      "proc/self/cgroup": "4:memory:/job\n0::/\n",
                                      "sys/fs/cgroup/memory/job/memory.limit_in_bytes": "9223372036854771712\n",
                                      "sys/fs/cgroup/memory/job/memory.usage_in_bytes": f"{GIB}\n"})
    assert classroom.available_memory_mib(v1) == pytest.approx(20480)
    fake_files(v1, {"sys/fs/cgroup/memory/job/memory.limit_in_bytes": f"{2 * GIB}\n",
                    "sys/fs/cgroup/memory/job/memory.stat": f"cache 5\ntotal_inactive_file {GIB // 2}\n"})
    assert classroom.available_memory_mib(v1) == pytest.approx(1536)
    assert classroom.available_memory_mib(tmp_path / "nowhere") is None               # macOS: unknown


def test_notebooks_run_jobs_at_a_time_in_the_order_given_each_printed_whole(monkeypatch, capsys):
    lock, running, most, started = threading.Lock(), [0], [0], []

    def fake_one(assignment, student_id, limit, threads):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            started.append((assignment, student_id, limit, threads))
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return (0 if student_id != "bob" else 1), f"{student_id} line 1\n{student_id} line 2\n", 2.0

    monkeypatch.setattr(classroom, "_autograde_one", fake_one)
    monkeypatch.setattr(classroom, "whole_cpus", lambda: 4)
    monkeypatch.delenv(classroom.THREADS_ENV, raising=False)
    work = [("08_training", s, 587) for s in ("ann", "bob", "cy")] + [("03_causal_mask", s, 120) for s in ("ann", "bob")]
    seconds, busy = classroom.autograde_at_once(work, jobs=2)
    assert most[0] == 2                                                   # never more than asked
    assert [s[:3] for s in started] == work                               # started in the order given
    assert {s[3] for s in started} == {"2"}                               # 4 CPUs, 2 jobs: 2 threads each
    assert seconds == {"08_training": [2.0] * 3, "03_causal_mask": [2.0] * 2} and busy == set()
    out = capsys.readouterr().out
    for student_id in ("ann", "cy"):
        assert f"{student_id} line 1\n{student_id} line 2" in out          # a process's messages in one piece
    assert "--- bob/08_training: 2 s, nbgrader exit status 1 ---\nbob line 1\nbob line 2" in out
    # fewer notebooks than jobs: the cores are shared among those that run
    started.clear()
    classroom.autograde_at_once(work[:1], jobs=3)
    assert started[0][3] == "4"


def test_each_kernel_gets_its_share_of_the_cores_unless_you_chose(monkeypatch, capsys):
    monkeypatch.setattr(classroom, "whole_cpus", lambda: 8)
    assert classroom.kernel_threads(3, {}) == ("2", None)
    assert classroom.kernel_threads(3, {classroom.THREADS_ENV: " "}) == ("2", None)     # blank: unset
    assert classroom.kernel_threads(16, {}) == ("1", None)
    assert classroom.kernel_threads(4, {classroom.THREADS_ENV: "2"}) == ("2", None)
    threads, warning = classroom.kernel_threads(4, {classroom.THREADS_ENV: "4"})
    assert threads == "4" and warning.startswith("warning: MINIGPT_THREADS=4 for each of 4 kernels is 16 threads "
                                                 "on 8 CPUs") and "unset for 2 each" in warning


def test_ctrl_c_starts_no_more_notebooks_and_stops_the_running_ones(monkeypatch, capsys):
    import _thread
    started, stopped = [], threading.Event()

    class Running:                      # what _autograde_one registers for a live nbgrader process
        def send_signal(self, signum):
            assert signum == signal.SIGINT
            stopped.set()

    def fake_one(assignment, student_id, limit, threads):
        started.append(student_id)
        if student_id == "s0":
            time.sleep(0.1)                 # s1 is running by now
            _thread.interrupt_main()        # Ctrl-C, as the main thread sees it
            return 0, "", 0.1
        classroom._children[-1] = Running()
        try:
            assert stopped.wait(5), "the running notebook was not told to stop"
        finally:
            classroom._children.pop(-1, None)
        return 130, "interrupted", 0.2

    monkeypatch.setattr(classroom, "_autograde_one", fake_one)
    with pytest.raises(KeyboardInterrupt):
        classroom.autograde_at_once([("03", f"s{i}", 120) for i in range(6)], jobs=2)
    assert started == ["s0", "s1"] and stopped.is_set()
    assert "stopping 1 running notebook" in capsys.readouterr().out


def test_a_notebook_refused_by_a_busy_gradebook_is_graded_again_next_once(monkeypatch, capsys):
    calls = []

    def busy_then_fine(assignment, student_id, limit, threads):
        calls.append(student_id)
        if student_id == "ann" or calls.count(student_id) == 1 and student_id == "bob":
            return 1, "sqlite3.OperationalError: database is locked\n", 1.0
        return 0, "graded\n", 2.0

    monkeypatch.setattr(classroom, "_autograde_one", busy_then_fine)
    work = [("03", s, 120) for s in ("ann", "bob", "cy", "dee")]
    seconds, busy = classroom.autograde_at_once(work, jobs=1)
    assert calls == ["ann", "ann", "bob", "bob", "cy", "dee"]       # once more, at once, no more
    assert sorted(seconds["03"]) == [1.0, 2.0, 2.0, 2.0] and busy == {("ann", "03")}
    out = capsys.readouterr().out
    assert out.count("the gradebook was busy (database is locked); grading it again") == 2
    assert "--- ann/03: 1 s, nbgrader exit status 1 ---" in out


def test_the_longest_chapters_are_graded_first(tmp_path):
    def chapter(name, seconds):
        cells = [{"cell_type": "code", "source": "", "metadata": {"execution": {
            "iopub.execute_input": "2026-12-07T10:00:00Z",
            "shell.execute_reply": f"2026-12-07T10:{s // 60:02d}:{s % 60:02d}Z"}}} for s in seconds]
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.ipynb").write_text(json.dumps({"cells": cells}))
    chapter("03_causal_mask", [5, 6])
    chapter("06_layernorm", [90, 10])
    chapter("08_training", [150])
    layout = {"03_causal_mask": ["ann", "bob"], "06_layernorm": ["ann"], "08_training": ["bob", "ann"]}
    limits = {"03_causal_mask": 120, "06_layernorm": 228, "08_training": 587}
    assert classroom.grading_order(layout, tmp_path, limits) == [
        ("08_training", "bob", 587), ("08_training", "ann", 587), ("06_layernorm", "ann", 228),
        ("03_causal_mask", "ann", 120), ("03_causal_mask", "bob", 120)]


@pytest.mark.parametrize("student_id", ["ann", "ann[2]*", " ann", "ann ", "'ann'", '"ann"', "a?b", "x]"])
def test_the_student_pattern_matches_that_student_s_folder_alone(student_id, tmp_path):
    others = ["ann", "ann2", "ann[2]x", "'ann'", "a-b", "x"]
    for name in {student_id, *others}:
        (tmp_path / name).mkdir()
    pattern = classroom.student_glob(student_id)
    assert pattern == pattern.strip()                                   # nbgrader strips spaces
    assert not (len(pattern) > 1 and pattern[0] == pattern[-1] and pattern[0] in "'\"")   # traitlets unquotes
    assert glob.glob(str(tmp_path / pattern)) == [str(tmp_path / student_id)]


def test_one_process_grades_one_student_and_waits_for_the_gradebook(monkeypatch, tmp_path):
    seen = {}

    class FakeProcess:
        pid, returncode = 4242, 0

        def __init__(self, command, cwd, env, **kwargs):
            seen.update(command=command, cwd=cwd, env=env, registered=None)

        def communicate(self):
            seen["registered"] = classroom._children.get(self.pid) is self   # Ctrl-C can reach it
            return "graded\n", None

    classroom.set_folders(tmp_path / "nb", tmp_path / "course")
    monkeypatch.setattr(classroom.subprocess, "Popen", FakeProcess)
    monkeypatch.setenv("MINIGPT_GRADING", "1")
    status, messages, _ = classroom._autograde_one("03_causal_mask", "ann[2]*", 120, "3")
    assert (status, messages) == (0, "graded\n") and seen["registered"] and 4242 not in classroom._children
    command = seen["command"]
    assert command[command.index("nbgrader") + 1:command.index("nbgrader") + 3] == ["autograde", "03_causal_mask"]
    assert "--student=ann[[]2][*]" in command                   # nbgrader reads it as a glob: the id alone
    assert "--ResilientExecute.timeout=120" in command and "--force" in command
    database = next(c for c in command if c.startswith("--CourseDirectory.db_url="))
    assert database.endswith(f"{tmp_path / 'course' / 'gradebook.db'}?timeout={classroom.SQLITE_WAIT_S}")
    assert seen["env"][classroom.THREADS_ENV] == "3" and seen["cwd"] == tmp_path.resolve() / "course"
    assert "MINIGPT_GRADING" not in seen["env"]


def test_make_grade_refuses_too_many_jobs_in_one_line_before_grading_anything(tmp_path, capsys):
    pytest.importorskip("nbgrader", reason="the classroom extra: pip install -e '.[classroom]'")
    (tmp_path / "submitted" / "ann" / "03_causal_mask").mkdir(parents=True)
    too_many = classroom.whole_cpus() + 1
    for command in (["grade", str(tmp_path / "submitted")], ["play"], ["autograde"]):
        argv = ["--course", str(tmp_path / "course"), *command, "--jobs", str(too_many)]
        assert classroom.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --jobs {too_many} on {classroom.whole_cpus()} whole CPU")
        assert err.count("\n") == 1 and "Traceback" not in err
        assert not (tmp_path / "course").exists()                     # refused before the course was made
