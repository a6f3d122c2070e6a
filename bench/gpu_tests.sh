#!/usr/bin/env bash
# The unit tests on a CUDA machine (device time is scarce: one call). pytest and its pure-Python
# dependencies travel in .gpu_pylib (copy pytest, _pytest, pluggy, iniconfig, packaging and
# pygments from a venv's site-packages; run with carry [".gpu_pylib"]) when the GPU machine has none.
set -uo pipefail      # a failing test fails the script, not hidden by tail | tee
export PYTHONPATH=$PWD:$PWD/.gpu_pylib PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu_tests.log"
python3 -c "import sys, torch, safetensors, tqdm; print('python', sys.version.split()[0], 'torch', torch.__version__)" 2>&1 | tee -a "$OUT/gpu_tests.log"
timeout -k 10 420 python3 -m pytest -q -rs tests --ignore=tests/test_book_html.py 2>&1 | tail -25 | tee -a "$OUT/gpu_tests.log" || status=1
timeout -k 10 120 python3 bench/cuda_checks.py 2>&1 | tail -8 | tee "$OUT/cuda_checks.log" || status=1
exit "${status:-0}"
