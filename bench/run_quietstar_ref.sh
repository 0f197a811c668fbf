#!/usr/bin/env bash
# The CPU Quiet-STaR step against its two yardsticks, in one run on the same machine (issue 13's shape
# by default): the PyTorch dense-mask reference (tests/ref/quietstar_reference.py --time) and the 15 lm
# steps whose work the step contains (build/bench/bench_quietstar_step). Both sides use the same threads
# and the same clock: CLOCK=cpu (process CPU time, for a shared machine; use THREADS=1 with it) or wall.
#   bash bench/run_quietstar_ref.sh            THREADS=2 CLOCK=wall STEPS=2
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}; clock=${CLOCK:-wall}; steps=${STEPS:-2}
shape=(--hidden 256 --layers 4 --heads 8 --kv-heads 2 --ffn 688 --vocab 2048 --seq 256 --batch 1 --passes 2 --n-ahead 12)
py=.venv/bin/python; [ -x "$py" ] || py=python3
make --no-print-directory build/bench/bench_quietstar_step >/dev/null
ref=$(OMP_NUM_THREADS=$threads "$py" tests/ref/quietstar_reference.py - --time "$steps" --clock "$clock" "${shape[@]}" --n-talk 4)
echo "$ref"
secs=$(echo "$ref" | sed -nE 's/^reference step ([0-9.]+) s.*/\1/p')
[ -n "$secs" ] || { echo "run_quietstar_ref: no time from the reference" >&2; exit 1; }
OMP_NUM_THREADS=$threads build/bench/bench_quietstar_step "${shape[@]}" --talk 4 --steps "$steps" --clock "$clock" --ref-seconds "$secs"
