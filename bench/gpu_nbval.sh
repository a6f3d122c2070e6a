#!/usr/bin/env bash
# Every chapter under nbval on a CUDA machine (issue 13). The stored outputs were made on a CPU:
# this shows which cells hold on a GPU and which do not. Run from anywhere in the repository on
# the GPU machine, after `pip install -r requirements.txt` there (pip keeps its torch: lower
# bounds only). The log goes to bench/results/gpu_nbval.log, or to $LOG; extra arguments go to
# pytest (e.g. --junitxml=FILE, whose per-cell times give each chapter's run time on that GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${LOG:-bench/results/gpu_nbval.log}
LOG=$(realpath -m "$LOG"); mkdir -p "$(dirname "$LOG")"
PY=${PYTHON:-python3}                # the interpreter whose torch sees the GPU
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1   # the kernels import this checkout
{
  date -u +"%Y-%m-%dT%H:%M:%SZ  $(git rev-parse --short HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  echo "CPUs: $(nproc)"
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, \
'cuda available:', torch.cuda.is_available())"
} 2>&1 | tee "$LOG"
"$PY" -c "import torch; raise SystemExit(0 if torch.cuda.is_available() else 1)" \
  || { echo "no CUDA device: this script checks the chapters on a GPU" | tee -a "$LOG"; exit 2; }
cd notebooks
# -rf lists every failing cell at the end; a cell that hangs is stopped after 10 minutes
timeout "${TIMEOUT:-3000}" "$PY" -m pytest -q -rf --nbval --nbval-cell-timeout=600 \
  --nbval-sanitize-with ../tests/nbval_sanitize.cfg -p no:cacheprovider "$@" . 2>&1 | tee -a "$LOG"
exit "${PIPESTATUS[0]}"
