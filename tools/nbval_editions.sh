#!/usr/bin/env bash
# nbval over both editions of the book at once: notebooks/ and zh/notebooks/, one pytest process
# each, side by side (what `make notebooks` runs). Usage: tools/nbval_editions.sh PYTHON
#
# Why side by side: the two editions run the same code (only the language cell differs), and on
# a 2-core machine most of a chapter's time is Python on one core. One after the other they took
# 887 s, side by side 584 s (the same 2-core machine, bench/results/cpu_2core_nbval_editions.log).
# Why MINIGPT_THREADS=1: each kernel otherwise picks its thread count from how busy the machine
# is at that moment (minigpt.cpu), so the other edition would decide it; one thread each fits
# two processes on two cores, and a run's numbers do not depend on what else is running.
#
# The English edition prints as it goes (CI sees progress); the Chinese one is kept in a log and
# printed when it ends. The exit status is non-zero if either edition failed.
set -u
python=${1:?usage: tools/nbval_editions.sh PYTHON (the interpreter with nbval installed)}
case $python in       # made absolute, as the children cd: a path, or a name found on PATH
  */*) python=$(cd "$(dirname "$python")" && pwd)/$(basename "$python") ;;
  *)   python=$(command -v "$python") || { echo "nbval_editions.sh: no $1 on PATH" >&2; exit 2; } ;;
esac
cd "$(dirname "$0")/.."
root=$(pwd)

nbval() {   # nbval() DIR: every chapter in DIR under nbval
  (cd "$1" && MINIGPT_THREADS=1 "$python" -m pytest -q --nbval \
     --nbval-sanitize-with "$root/tests/nbval_sanitize.cfg" -p no:cacheprovider .)
}

zh_log=$(mktemp)
trap 'rm -f "$zh_log"' EXIT
nbval zh/notebooks > "$zh_log" 2>&1 &
zh_pid=$!
echo "=== nbval, English edition (notebooks/); the Chinese edition runs beside it"
nbval notebooks
en_status=$?
wait "$zh_pid"
zh_status=$?
echo "=== nbval, Chinese edition (zh/notebooks/)"
cat "$zh_log"
if [ "$en_status" -ne 0 ] || [ "$zh_status" -ne 0 ]; then
  echo "nbval failed: English edition exit status $en_status, Chinese edition $zh_status" >&2
  exit 1
fi
