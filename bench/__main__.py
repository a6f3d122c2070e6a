"""`python -m bench [peak] [train] [attention] [generate] [flash] [quick] [--device D] [--threads N] [--json F]`."""

import argparse
import os
import sys
from pathlib import Path

from minigpt.cli import in_flag_terms, thread_count
from minigpt.device import DEVICE_CHOICES, pick_device

from .harness import ALL_BENCHMARKS, DEFAULT_BENCHMARKS, run_benchmarks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description="Speed and memory benchmarks; each compares two "
                                                 "implementations side by side in one run and prints the ratio.")
    parser.add_argument("what", nargs="*", default=[], metavar="BENCHMARK",
                        help=f"any of: {' '.join(ALL_BENCHMARKS)} (default: {' '.join(DEFAULT_BENCHMARKS)})")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--threads", type=thread_count, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    unknown = [w for w in args.what if w not in ALL_BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark(s) {' '.join(unknown)}; choose from {', '.join(ALL_BENCHMARKS)}.",
              file=sys.stderr)
        return 2
    # what would fail only after minutes of benchmarking is checked first
    problem = _json_path_problem(args.json) if args.json is not None else None
    if problem is None:
        try:
            pick_device(args.device)
        except ValueError as err:
            problem = in_flag_terms(str(err))     # --device auto, not device='auto
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    run_benchmarks(args.what, device=args.device, threads=args.threads, json_path=args.json)
    return 0


def _json_path_problem(path: Path):
    """Why the results could not be written to `path` (--json), or None."""
    if path.is_dir():                 # also "" and ".", which name the current folder
        return f"--json {str(path)!r} is a folder; name a file, e.g. --json results.json."
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        return f"--json {str(path)!r}: {str(folder)!r} on its path is a file, not a folder; choose another file."
    if not folder.is_dir():
        return f"--json {str(path)!r}: the folder {str(folder)!r} does not exist; create it or choose another file."
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"--json {str(path)!r} cannot be written (permissions); choose another file."
    return None


if __name__ == "__main__":
    raise SystemExit(main())
