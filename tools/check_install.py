"""The chapters' install path, offline: `python tools/check_install.py [--ref REF] [--torch SPEC]`.

What a Colab reader's first cell does, on this machine: a fresh virtualenv that already has a
torch (the runtime's own) and matplotlib; the first code cell of the chapters (rendered from
tools/first_cell.tmpl) run with MINIGPT_SOURCE="git+file://<this repo>@<REF>", so
pip clones the committed tree at REF exactly as it would clone the book's repository at its
tag; then the rest of chapter 1's code in the same interpreter. It checks that torch was not
reinstalled, that numpy came with the package, and prints how long each stage took.
`make test-install` runs it. REF defaults to HEAD (commit first: uncommitted changes are not
in the clone).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sync_first_cell import REPO, first_cell_source  # noqa: E402

# Runs inside the fresh venv: the first cell, then chapter 1's other code cells, in one namespace
# (as a kernel would), with IPython magics (%...) left out; prints torch's version and location.
DRIVER = r"""
import json, os, sys
first_cell, chapter = sys.argv[1], sys.argv[2]
namespace = {"__name__": "__main__"}
exec(compile(open(first_cell).read(), "first cell", "exec"), namespace)
cells = [c for c in json.load(open(chapter))["cells"] if c["cell_type"] == "code"][1:]
for n, cell in enumerate(cells, 2):
    code = "\n".join(l for l in "".join(cell["source"]).splitlines() if not l.lstrip().startswith("%"))
    exec(compile(code, f"chapter 1, code cell {n}", "exec"), namespace)
import minigpt, numpy, torch
print(json.dumps({"torch": torch.__version__, "torch_file": torch.__file__, "numpy": numpy.__version__,
                  "minigpt": minigpt.__version__, "minigpt_file": minigpt.__file__, "cells": len(cells) + 1}))
"""

# torch's version, where it is, and when its files were written: a reinstall changes the last
TORCH_INFO = ("import json, os, torch; print(json.dumps({'torch': torch.__version__, 'file': torch.__file__, "
              "'written_ns': os.stat(torch.__file__).st_mtime_ns}))")


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD", help="git commit or tag to install (default: HEAD)")
    parser.add_argument("--torch", default="torch==2.13.0", help="the runtime's torch (default: torch==2.13.0)")
    args = parser.parse_args(argv)
    commit = run(["git", "-C", str(REPO), "rev-parse", f"{args.ref}^{{commit}}"]).strip()   # a tag: its commit
    stages = {}
    with tempfile.TemporaryDirectory(prefix="minigpt-install-") as tmp:
        venv, python = Path(tmp) / "venv", Path(tmp) / "venv" / "bin" / "python"
        t = time.perf_counter()
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(python), "-m", "pip", "install", "-q", args.torch, "matplotlib"])
        stages["venv with the runtime's torch and matplotlib"] = time.perf_counter() - t
        before = json.loads(run([str(python), "-c", TORCH_INFO]))
        (Path(tmp) / "first_cell.py").write_text(first_cell_source())
        (Path(tmp) / "driver.py").write_text(DRIVER)
        source = f"git+file://{REPO}@{commit}"      # pip's own form; "minigpt @ git+file:///..." is
        #                                             rejected by older pips (no host in the URL)
        t = time.perf_counter()
        out = run([str(python), str(Path(tmp) / "driver.py"), str(Path(tmp) / "first_cell.py"),
                   str(REPO / "notebooks" / "01_characters_to_tensors.ipynb")],
                  cwd=tmp, env={**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
                                "MINIGPT_SOURCE": source, "MPLBACKEND": "Agg"})
        stages["first cell (pip install from git) + chapter 1"] = time.perf_counter() - t
        after = json.loads(run([str(python), "-c", TORCH_INFO]))
        result = json.loads(out.strip().splitlines()[-1])
    if after != before:
        raise SystemExit(f"torch changed during the install: {before} -> {after}")
    if not result["minigpt_file"].startswith(tmp):
        raise SystemExit(f"minigpt was imported from {result['minigpt_file']}, not from the fresh venv")
    print(f"installed {source} into a fresh venv")
    print(f"torch {before['torch']} untouched (same version, same files); numpy {result['numpy']} installed "
          f"with minigpt {result['minigpt']}; chapter 1's {result['cells']} code cells ran")
    for stage, seconds in stages.items():
        print(f"  {stage}: {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
