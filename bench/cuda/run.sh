#!/usr/bin/env bash
# Runs the CUDA backend's benchmarks (bench/cuda): the GPU builds (build/bench/cuda/*, `make
# cuda-bench`) when a GPU is present — each validates against the C reference, then times — else
# the emulator builds (build/bench/emu/*, `make emu-bench`), which validate the same kernel sources on
# the CPU at small sizes and say "timing needs a GPU". Arguments go to every benchmark (e.g.
# --repeats 50); BENCH_ONLY=attention,step runs a subset. Exits non-zero if any benchmark fails.
# Builds nothing itself (the lead's `make bench` decides what to build); says what to build when
# neither variant exists.
set -u
cd "$(dirname "$0")/../.."

gpu=0
if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L 2> /dev/null | grep -q '^GPU '; then gpu=1; fi
dir=
if [ "$gpu" = 1 ] && compgen -G "build/bench/cuda/bench_*" > /dev/null; then
  dir=build/bench/cuda; echo "bench/cuda: GPU present, running $dir"
elif compgen -G "build/bench/emu/bench_*" > /dev/null; then
  dir=build/bench/emu
  [ "$gpu" = 1 ] && echo "bench/cuda: GPU present but build/bench/cuda is empty (make cuda-bench); validating on the emulator"
  [ "$gpu" = 0 ] && echo "bench/cuda: no GPU, validating on the emulator ($dir)"
elif compgen -G "build/bench/cuda/bench_*" > /dev/null; then
  dir=build/bench/cuda; echo "bench/cuda: no GPU and no emulator builds; the GPU builds will say so"
else
  echo "bench/cuda: nothing built: make cuda-bench (GPU) or make emu-bench (emulator)"; exit 0
fi

failed=()
for b in "$dir"/bench_*; do
  [ -x "$b" ] && [ -f "$b" ] || continue
  name=$(basename "$b"); short=${name#bench_}
  if [ -n "${BENCH_ONLY:-}" ] && [[ ",$BENCH_ONLY," != *",$short,"* ]]; then continue; fi
  echo "== $b"
  "$b" "$@" || failed+=("$name")
done
if [ ${#failed[@]} -gt 0 ]; then echo "bench/cuda: FAILED: ${failed[*]}"; exit 1; fi
echo "bench/cuda: all benchmarks passed validation"
