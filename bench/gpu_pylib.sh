#!/usr/bin/env bash
# Fill .gpu_pylib with what the GPU scripts need besides torch, copied from this machine's venv:
# pytest and its pure-Python dependencies, plus safetensors (an abi3 wheel: any CPython >= 3.8 on
# x86-64) and tqdm, in case the GPU machine lacks them. It is a fallback only: gpu_issue19.sh puts
# on PYTHONPATH just the packages the machine's python3 cannot import (the image lent here has
# pytest, safetensors and tqdm of its own, and those are used). Then, in one device call:
#   run(command="bash bench/gpu_issue19.sh", carry=[".gpu_pylib"], timeout_s=570)
# and copy the logs from $OUT to bench/results/gpu_<gpu>_*.
set -euo pipefail
cd "$(dirname "$0")/.."
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -rf .gpu_pylib && mkdir .gpu_pylib
for name in pytest _pytest pluggy iniconfig packaging pygments py.py safetensors tqdm; do
  cp -r "$site/$name" .gpu_pylib/
done
du -sh .gpu_pylib
