#!/usr/bin/env bash
# make portable-check: qstar built for CPUs other than this one, and a fast subset run with each build.
# The CPU kernels pick their vector width from the compiler's target (kernels/cpu/simd.h: 16 lanes with
# AVX-512, 8 with AVX2, 4 with SSE or NEON), so a machine only ever tests its own width unless it
# builds for the others. Each target gets its own folder under build-portable/ (the main build and
# bin/ are untouched) with bin/qstar and three test binaries, then runs:
#   test_ops cpu (every op against its reference, the few-rows matmul's rows alone == rows in a batch),
#   test_tokenizer, test_generate_batch, and a 20-step tiny training run whose loss must fall (12
#   smaller steps under qemu).
# On x86-64: gcc at x86-64 (SSE2), x86-64-v2 (SSE4.2) and x86-64-v3 (AVX2/FMA), clang at x86-64-v3
# (which also builds every C test and benchmark, so clang's warnings are seen);
# every x86-64 machine runs these binaries, whatever its own CPU. ARM=1 adds aarch64: a cross build with
# Debian's gcc-aarch64-linux-gnu and arm64 libraries (dpkg multiarch), run under qemu-aarch64
# (tools/deps.sh portable-arm installs them; several minutes more). On an aarch64 machine the targets
# are armv8-a with gcc and clang. PORTABLE_TARGETS="x86-64-v2 clang-v3" picks a subset by name.
# MPI and the CUDA pieces are left out of these builds: nothing in them depends on the CPU target.
set -uo pipefail
cd "$(dirname "$0")/.."
export QSTAR_ROOT="$PWD" OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
jobs=$(nproc 2>/dev/null || echo 2)

# name compiler -march runner
case "$(uname -m)" in
  x86_64)
    targets=("x86-64 gcc -march=x86-64 -" "x86-64-v2 gcc -march=x86-64-v2 -" "x86-64-v3 gcc -march=x86-64-v3 -"
             "clang-v3 clang -march=x86-64-v3 -")
    [ "${ARM:-0}" = 1 ] && targets+=("aarch64 aarch64-linux-gnu-gcc -march=armv8-a qemu-aarch64") ;;
  aarch64)
    targets=("armv8-a gcc -march=armv8-a -" "clang-armv8-a clang -march=armv8-a -") ;;
  *) echo "portable-check: no target list for $(uname -m)"; targets=() ;;
esac

run() {  # run RUNNER BIN ARGS...: the binary, under the emulator when it is for another machine
  local runner=$1; shift
  if [ "$runner" = - ]; then "$@"; else "$runner" "$@"; fi
}

t_all=$(date +%s)
for t in "${targets[@]}"; do
  read -r name cc march runner <<< "$t"
  if [ -n "${PORTABLE_TARGETS:-}" ] && [[ " $PORTABLE_TARGETS " != *" $name "* ]]; then continue; fi
  b=build-portable/$name
  t0=$(date +%s)
  if ! command -v "$cc" > /dev/null; then bad "$name: $cc not found (tools/deps.sh portable installs it)"; continue; fi
  if [ "$runner" != - ] && ! command -v "$runner" > /dev/null; then bad "$name: $runner not found"; continue; fi
  mkdir -p "$b"
  want=("$b/bin/qstar" "$b/tests/test_ops" "$b/tests/test_tokenizer" "$b/tests/test_generate_batch")
  # with the other compiler, every C test, tool and benchmark too: the main build only ever sees gcc
  if [[ "$cc" == clang* ]]; then
    for f in tests/test_*.c tests/tool_*.c bench/bench_*.c; do want+=("$b/${f%.c}"); done
  fi
  if ! make -s -j"$jobs" BUILD="$b" BIN="$b/bin" CC="$cc" ARCH="$march" EMU_NVCC= NVCC= MPI_CFLAGS= MPI_LIBS= \
       "${want[@]}" > "$b/build.log" 2>&1; then
    bad "$name: build failed ($cc $march), log $b/build.log:"; grep -E 'error|Error' "$b/build.log" | head -5 | sed 's/^/       /'
    continue
  fi
  ok "$name: built with $cc $march ($(( $(date +%s) - t0 )) s)"
  for tb in "test_ops cpu" test_tokenizer test_generate_batch; do
    read -r bin arg <<< "$tb"
    log="$b/$bin.log"
    run "$runner" "$b/tests/$bin" $arg > "$log" 2>&1; rc=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
    if [ "$rc" = 0 ] && [[ "$line" == *" 0 failed"* ]]; then ok "$name: $bin: $line"
    else bad "$name: $bin: exit $rc, ${line:-no closing line} (log $log)"; grep FAIL "$log" | head -5 | sed 's/^/       /'; fi
  done
  # The tiny model on a repeated 14-token pattern: the loss starts at ln(1024) = 6.9 and falls below half
  # of that within 20 steps at this learning rate (a broken forward, backward or optimizer leaves it
  # flat). Under qemu, whose emulated vectors run a step ~100x slower, 12 smaller steps (6.9 -> 2.9).
  train=(--steps 20 --batch 4 --seq 64 --warmup 5); steps=20
  [ "$runner" != - ] && { train=(--steps 12 --batch 2 --seq 32 --warmup 3); steps=12; }
  python3 tests/lib/make_shard.py "$b/rep.bin" --pattern "5,17,99,3,250,7,7,42,8,1000,11,64,64,9" --tokens 20000 > /dev/null
  rm -rf "$b/run"
  if run "$runner" "$b/bin/qstar" train --config configs/tiny.json --data "$b/rep.bin" --out "$b/run" "${train[@]}" \
       --lr 3e-3 --log-every 10 > "$b/train.log" 2>&1; then
    if msg=$(python3 - "$b/run/metrics.jsonl" "$steps" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
first, last = rows[0]["loss"], rows[-1]["loss"]
print(f"loss {first:.3f} -> {last:.3f} in {len(rows)} steps")
sys.exit(0 if len(rows) == int(sys.argv[2]) and first > 6.0 and last < 0.5 * first else 1)
PY
    ); then ok "$name: tiny training: $msg"; else bad "$name: tiny training: $msg (want $steps steps, last < half the first)"; fi
  else
    bad "$name: tiny training failed: $(tail -1 "$b/train.log")"
  fi
  echo "     $name: $(( $(date +%s) - t0 )) s"
done
echo "portable-check: $(( $(date +%s) - t_all )) s"
echo "portable: $pass passed, $fail failed"
[ "$fail" = 0 ]
