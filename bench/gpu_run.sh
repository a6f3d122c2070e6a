#!/usr/bin/env bash
# All GPU work in one go (device time is scarce): CUDA checks, the shipped pretrained model,
# the GPU preset, and the benchmarks. Writes logs and the exported model to $OUT.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/cuda_checks.log"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/cuda_checks.log"
python3 bench/cuda_checks.py 2>&1 | tee -a "$OUT/cuda_checks.log"
python3 -m minigpt train --preset pretrained --out /tmp/pretrained --no-progress 2>&1 | tee "$OUT/pretrained.log"
python3 -m minigpt export /tmp/pretrained "$OUT/shakespeare_char" --fp16
python3 -m bench peak train generate flash --json "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.log"
python3 -m minigpt train --preset gpu --out /tmp/gpu --no-progress 2>&1 | tee "$OUT/gpu_preset.log"
