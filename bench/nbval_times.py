"""How long each chapter takes under nbval on this machine: `python -m bench.nbval_times`.

The page *Running the book* and the instructor guide tell a reader how long the chapters take
on a laptop CPU; this script measures it, on the project's machine for the book (its log is
`bench/results/cpu_2core_nbval_times.log`) and on a reader's own. It runs the chapters under
nbval in one pytest process, as `make notebooks` does, and adds up each chapter's cell times
from pytest's JUnit XML (nbval makes one test per code cell; a chapter's first cell includes
its kernel's start). The load average before and after goes into the header: a busy machine
is slower, and the numbers mean little without it.

    python -m bench.nbval_times                    # all English chapters
    python -m bench.nbval_times 08_training        # some of them
    python -m bench.nbval_times --book zh          # the Chinese edition's notebooks
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

from .provenance import ROOT, cpu_name, load_average, log_header

FOLDERS = {"en": ROOT / "notebooks", "zh": ROOT / "zh" / "notebooks"}
CHAPTER = re.compile(r"(\d\d_\w+)\.ipynb")


def chapter_seconds(junit_xml: Path) -> dict[str, float]:
    """Seconds per chapter (its notebook's name without .ipynb): the sum of its cells' times."""
    seconds: dict[str, float] = defaultdict(float)
    for case in ET.parse(junit_xml).iter("testcase"):
        where = f"{case.get('file', '')} {case.get('classname', '')} {case.get('name', '')}"
        found = CHAPTER.search(where)
        if found:
            seconds[found.group(1)] += float(case.get("time", 0.0))
    return dict(sorted(seconds.items()))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nbval_times", description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapter names such as 08_training (default: all)")
    parser.add_argument("--book", choices=sorted(FOLDERS), default="en")
    args = parser.parse_args(argv)
    folder = FOLDERS[args.book]
    available = sorted(p.stem for p in folder.glob("[0-9][0-9]_*.ipynb"))
    unknown = [c for c in args.chapters if c.removesuffix(".ipynb") not in available]
    if unknown:
        print(f"error: no chapter {', '.join(unknown)} in {folder}; choose from {', '.join(available)}.",
              file=sys.stderr)
        return 2
    chosen = [c.removesuffix(".ipynb") for c in args.chapters] or available
    print(log_header(f"python -m bench.nbval_times --book {args.book}", f" ({cpu_name()})"), flush=True)
    print(f"load average before: {load_average()}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        junit = Path(scratch) / "nbval.xml"
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
                              f"--nbval-sanitize-with={ROOT / 'tests' / 'nbval_sanitize.cfg'}",
                              f"--junitxml={junit}", *[f"{c}.ipynb" for c in chosen]],
                             cwd=folder, capture_output=True, text=True)
        wall = time.perf_counter() - started
        summary = (run.stdout.strip().splitlines() or ["(no output)"])[-1]
        print(f"load average after: {load_average()}")
        print(f"pytest: {summary} (exit {run.returncode}); {wall:.0f} s wall, pytest's start included")
        if not junit.is_file():
            print(run.stdout[-2000:] + run.stderr[-2000:], file=sys.stderr)
            return 1
        seconds = chapter_seconds(junit)
    for chapter, s in seconds.items():
        print(f"{chapter:38s} {s:6.1f} s")
    print(f"{'all ' + str(len(seconds)) + ' chapters':38s} {sum(seconds.values()):6.1f} s")
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
