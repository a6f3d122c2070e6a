# Sourced by the GPU scripts (bench/gpu_issue19.sh, bench/gpu_tests.sh): sets GPU_FALLBACK to a
# temporary folder holding links to those packages of .gpu_pylib (copied from this repository's
# .venv by bench/gpu_pylib.sh) that the machine's python3 cannot import, so that the machine's
# own packages always win. Putting .gpu_pylib itself on PYTHONPATH, even at its end, would not
# do that: every PYTHONPATH entry comes before site-packages in sys.path, so its pytest (without
# dist-info) would shadow the machine's pytest and meet the machine's pytest plugins.
# The caller puts "$GPU_FALLBACK" on PYTHONPATH and removes it at the end.
GPU_FALLBACK=$(mktemp -d)
if [[ -d .gpu_pylib ]]; then
  timeout 60 python3 - "$PWD/.gpu_pylib" "$GPU_FALLBACK" <<'PYTHON'
import importlib.util, os, sys
source, target = sys.argv[1:3]
for entry in sorted(os.listdir(source)):
    name = entry[:-3] if entry.endswith(".py") else entry
    if not name.isidentifier() or name == "__pycache__":
        continue
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        os.symlink(os.path.join(source, entry), os.path.join(target, entry))
        print("from .gpu_pylib (missing here):", name)
PYTHON
fi
