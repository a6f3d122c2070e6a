"""`python -m bench [peak] [train] [attention] [generate] [flash] [quick] [--device D] [--threads N] [--json F]`."""

import argparse
import sys
from pathlib import Path

from minigpt.device import DEVICE_CHOICES

from .harness import ALL_BENCHMARKS, DEFAULT_BENCHMARKS, run_benchmarks


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description="Speed and memory benchmarks; each compares two "
                                                 "implementations side by side in one run and prints the ratio.")
    parser.add_argument("what", nargs="*", default=[], metavar="BENCHMARK",
                        help=f"any of: {' '.join(ALL_BENCHMARKS)} (default: {' '.join(DEFAULT_BENCHMARKS)})")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--threads", type=_positive_int, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    unknown = [w for w in args.what if w not in ALL_BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark(s) {' '.join(unknown)}; choose from {', '.join(ALL_BENCHMARKS)}.",
              file=sys.stderr)
        return 2
    run_benchmarks(args.what, device=args.device, threads=args.threads, json_path=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
