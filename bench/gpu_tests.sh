#!/usr/bin/env bash
# The unit tests on a CUDA machine (device time is scarce: one call). pytest travels in
# .gpu_pylib (bench/gpu_pylib.sh fills it; run with carry [".gpu_pylib"]), used only where the
# GPU machine has none (bench/gpu_fallback.sh).
set -uo pipefail      # a failing test fails the script, not hidden by tail | tee
source bench/gpu_fallback.sh
export PYTHONPATH=$PWD:$GPU_FALLBACK PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu_tests.log"
python3 -c "import sys, torch, safetensors, tqdm; print('python', sys.version.split()[0], 'torch', torch.__version__)" 2>&1 | tee -a "$OUT/gpu_tests.log"
# -rfEs names failures, errors and skips at the end; the whole output goes to the log (a kill
# still leaves what ran), its last 25 lines to the console; no plugin of the machine is loaded
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 timeout -k 10 420 python3 -m pytest -q -rfEs tests --ignore=tests/test_book_html.py \
  2>&1 | tee -a "$OUT/gpu_tests.log" | tail -25 || status=1
timeout -k 10 120 python3 bench/cuda_checks.py 2>&1 | tail -8 | tee "$OUT/cuda_checks.log" || status=1
rm -rf "$GPU_FALLBACK"
exit "${status:-0}"
