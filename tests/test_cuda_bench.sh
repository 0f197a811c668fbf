#!/usr/bin/env bash
# The GPU benchmarks of bench/cuda without a GPU: builds their emulator variants (make emu-bench: the
# same sources against tests/emu, the `emu` backend) and runs each; every op's validation against the
# C reference must pass and each must end with "timing needs a GPU" and exit 0. Where the nvcc
# builds exist (make cuda-bench) and no GPU is present, each must say "timing needs a GPU" and exit 0
# too. Small sizes: the whole suite takes well under a minute.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
log=build/test-work/cuda_bench; mkdir -p "$log"

if ! make --no-print-directory emu-bench > "$log/make.log" 2>&1; then
  bad "make emu-bench:"; tail -20 "$log/make.log" | sed 's/^/       /'
fi
names=$(ls bench/cuda/bench_*.cu | sed 's|bench/cuda/||; s|\.cu$||')
for name in $names; do
  b=build/bench/emu/$name
  if [ ! -x "$b" ]; then bad "$name: $b not built (the emulator needs nvcc's CUDA headers)"; continue; fi
  start=$(date +%s)
  if "$b" > "$log/$name.log" 2>&1 && grep -q "timing needs a GPU" "$log/$name.log"; then
    ok "$name on emu: $(grep -E '[0-9]+ passed, [0-9]+ failed' "$log/$name.log" | tail -1 | sed 's/^[^:]*: //') ($(( $(date +%s) - start ))s)"
  else
    bad "$name on emu (log $log/$name.log):"; grep -E "FAIL|error|fatal" "$log/$name.log" | head -8 | sed 's/^/       /'
  fi
done

# the nvcc builds, when present, on a machine without a GPU
if ! (command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L 2> /dev/null | grep -q '^GPU '); then
  for name in $names; do
    b=build/bench/cuda/$name
    [ -x "$b" ] || continue
    if "$b" > "$log/$name.cuda.log" 2>&1 && grep -q "timing needs a GPU" "$log/$name.cuda.log"; then
      ok "$name (nvcc build) without a GPU: exits 0, says timing needs a GPU"
    else
      bad "$name (nvcc build) without a GPU:"; head -5 "$log/$name.cuda.log" | sed 's/^/       /'
    fi
  done
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
