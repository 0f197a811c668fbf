#!/usr/bin/env bash
# The CUDA build: `make cuda` compiles every kernel for sm_80 and sm_90 (plus PTX) with nvcc -Werror
# and fails on any register spill; the ptxas reports stay in build/cuda/*.ptxas.txt (the runtime and the
# op tables of both precisions, fp32 and bf16). On a machine
# without a GPU, bin/qstar-cuda must say "no CUDA device" and exit non-zero, not crash.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
if ! command -v nvcc > /dev/null; then echo "FAIL SKIP: nvcc not found (the CUDA toolkit is needed to check the kernels)"; echo "0 passed, 1 failed"; exit 1; fi
if make --no-print-directory cuda > build/test-cuda-build.log 2>&1; then ok "make cuda: nvcc -Werror for sm_80 and sm_90"
else bad "make cuda failed:"; tail -15 build/test-cuda-build.log; fi
r=build/test-cuda-ptxas.txt
cat build/cuda/*.ptxas.txt > "$r" 2>/dev/null
for t in backend_cuda backend_cuda_bf16; do
  f=build/cuda/$t.ptxas.txt
  if [ -f "$f" ] && grep -q "sm_80" "$f" && grep -q "sm_90" "$f"; then ok "$t: ptxas report covers sm_80 and sm_90 ($(grep -c 'Used' "$f") kernel builds)"
  else bad "$t: ptxas report missing or incomplete"; fi
done
if [ -f "$r" ] && ! grep -qE "[1-9][0-9]* bytes spill (stores|loads)" "$r"; then ok "no register spills"; else bad "register spills in $r"; fi
worst=$(grep -oE "Used [0-9]+ registers" "$r" 2>/dev/null | awk '{print $2}' | sort -n | tail -1)
echo "     most registers used by one kernel: ${worst:-?}"
if [ -x bin/qstar-cuda ]; then
  if nvidia-smi > /dev/null 2>&1; then
    ok "a GPU is present: the no-device path is not exercised here"
  else
    python3 tests/lib/make_shard.py build/test-cuda-d.bin --random 1000 --tokens 4000
    timeout 60 bin/qstar-cuda train --config configs/tiny.json --data build/test-cuda-d.bin --out build/test-cuda-run \
      --steps 1 --batch 1 --seq 16 --device cuda > /dev/null 2> build/test-cuda-err.txt
    rc=$?
    if [ $rc = 1 ] && grep -q "^qstar: error: no CUDA device" build/test-cuda-err.txt; then ok "without a GPU: \"$(cat build/test-cuda-err.txt)\", exit 1"
    else bad "without a GPU: exit $rc, stderr: $(cat build/test-cuda-err.txt)"; fi
  fi
  bin/qstar-cuda --help | grep -q "backends in this build: cpu, cuda" && ok "bin/qstar-cuda has the cpu and cuda backends" || bad "backend list"
fi
echo "$pass passed, $fail failed"
[ $fail = 0 ]
