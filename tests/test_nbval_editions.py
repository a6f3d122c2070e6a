"""`make notebooks` runs nbval over the two editions side by side (tools/nbval_editions.sh): a
failure in either edition must fail the run and be printed, and each side runs on one thread.
A stand-in interpreter records what it was asked to run, so these tests take a second."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "nbval_editions.sh"
EN, ZH = ROOT / "notebooks", ROOT / "zh" / "notebooks"

# a "python" that writes down where it ran, with which thread setting and arguments, and fails
# in the folder FAIL_IN
FAKE_PYTHON = """#!/usr/bin/env bash
echo "ran in $(pwd) threads=${MINIGPT_THREADS:-unset} args=$*" >> "$RECORD"
echo "output of the run in $(pwd)"
[ "$(pwd)" != "$FAIL_IN" ]
"""


def run_script(tmp_path: Path, fail_in: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    record = tmp_path / "record.txt"
    env = {"PATH": "/usr/bin:/bin", "RECORD": str(record), "FAIL_IN": str(fail_in)}
    done = subprocess.run(["bash", str(SCRIPT), str(fake)], env=env, capture_output=True, text=True, timeout=60)
    return done, record.read_text().splitlines()


def test_both_editions_run_on_one_thread_each_and_pass(tmp_path):
    done, runs = run_script(tmp_path, fail_in=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(line.split(" threads=")[0] for line in runs) == [f"ran in {EN}", f"ran in {ZH}"]
    assert all("threads=1 " in line and "--nbval" in line and str(ROOT / "tests" / "nbval_sanitize.cfg") in line
               for line in runs)
    # the English edition's output, then the Chinese edition's (kept in a log until it ended)
    assert done.stdout.index(f"output of the run in {EN}\n") < done.stdout.index(f"output of the run in {ZH}\n")


@pytest.mark.parametrize("failing", [EN, ZH], ids=["english", "chinese"])
def test_a_failure_in_either_edition_fails_the_run(tmp_path, failing):
    done, runs = run_script(tmp_path, fail_in=failing)
    assert len(runs) == 2                       # the other edition still ran to its end
    assert done.returncode == 1
    assert "nbval failed" in done.stderr
    assert f"output of the run in {ZH}\n" in done.stdout     # the Chinese log is printed either way
