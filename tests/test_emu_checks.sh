#!/usr/bin/env bash
# The kernel author's checks of kernels/cuda, each tests/emu_*_check.cu, run on the CPU emulator against
# the C oracles (kernels/cpu): emu_ops_check (the memory-bound and Quiet-STaR ops, their bf16 variants
# against the fp32 oracle), emu_attention_check (the scalar attention kernels), emu_flash_check (the
# tensor-core flash attention forward/backward and thought attention: head dims 64/80/96/128, GQA
# ratios, odd T, fp32 and bf16 input; tolerances from bf16's unit roundoff 2^-8, stated in the .cu).
# Each is built with g++ against emu/ and build/libqstar.a and run with the default schedule, two
# workers, and the reverse and a random warp schedule (the orders that expose missing barriers).
# Then the SASS check of the flash kernels (below). Without nvcc (whose CUDA headers the emulator
# build needs) the test says it is skipped.
set -u
cd "$(dirname "$0")/.."

if ! command -v nvcc >/dev/null 2>&1; then
  echo "test_emu_checks: skipped (nvcc / CUDA headers not found)"
  echo "0 passed, 0 failed"
  exit 0
fi
cuda_home=$(dirname "$(dirname "$(command -v nvcc)")")
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
blas_dir=${BLAS_DIR:-/usr/lib/$multiarch/openblas-openmp}
blas_inc=${BLAS_INC:-/usr/include/$multiarch/openblas-openmp}
log=build/emu-checks.log

if ! make --no-print-directory -s build/libqstar.a build/emu/cuemu.o build/emu/cublas_emu.o >$log 2>&1; then
  echo "FAIL building build/libqstar.a and the emulator objects:"; tail -15 $log
  echo "0 passed, 1 failed"; exit 1
fi

pass=0; fail=0
for src in tests/emu_*_check.cu; do
  name=$(basename "$src" .cu); bin=build/emu/$name
  if [ ! -x "$bin" ] || [ -n "$(find "$src" kernels/cuda emu build/libqstar.a -newer "$bin" -print -quit)" ]; then
    # -Wno-unused-function: a check includes whole op-family headers and calls some of their launchers
    if ! g++ -std=c++20 -O2 -g -Wall -Wextra -Werror -Wno-unknown-pragmas -Wno-unused-function -pthread -I. -I"$cuda_home/include" \
         -isystem "$blas_inc" -x c++ -include emu/cuemu.h "$src" -x none \
         build/emu/cuemu.o build/emu/cublas_emu.o build/libqstar.a -o "$bin" \
         -L"$blas_dir" -Wl,-rpath,"$blas_dir" -lopenblas -lcjson -fopenmp -lm >>$log 2>&1; then
      echo "FAIL compiling $src for the emulator:"; tail -15 $log
      fail=$((fail + 1)); continue
    fi
  fi
  for setting in "" "CUEMU_WORKERS=2" "CUEMU_SCHEDULE=reverse" "CUEMU_SCHEDULE=random:1"; do
    echo "== $name, ${setting:-default schedule}"
    env $setting "$bin" > build/emu-check-run.log 2>&1
    rc=$?
    grep -v '^  ok' build/emu-check-run.log
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' build/emu-check-run.log | tail -1)
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/'); f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    [ -z "$line" ] && p=0 && f=1
    [ "$rc" != 0 ] && [ "$f" = 0 ] && f=1
    pass=$((pass + p)); fail=$((fail + f))
  done
done
# The SASS of the nvcc build (make cuda) must hold the tensor-core instructions: HMMA (mma.sync) and
# LDSM (ldmatrix) in every flash kernel (forward, backward dK/dV and dQ), LDGSTS (cp.async) in the
# bf16-input ones, for sm_80 and sm_90.
# Needs cuobjdump + nvdisasm (PyPI: nvidia-cuda-cuobjdump, nvidia-cuda-nvdisasm) and a current
# build/cuda/backend_cuda.o; otherwise says why it is skipped.
obj=build/cuda/backend_cuda.o
if ! command -v cuobjdump >/dev/null 2>&1 || ! command -v nvdisasm >/dev/null 2>&1; then
  echo "SASS check skipped: cuobjdump/nvdisasm not installed"
elif [ ! -f "$obj" ] || [ kernels/cuda/flash_attention.cuh -nt "$obj" ] || [ kernels/cuda/tensorcore.cuh -nt "$obj" ]; then
  echo "SASS check skipped: $obj missing or older than the flash/tensor-core headers (run make cuda)"
else
  counts=$(cuobjdump -sass "$obj" 2>/dev/null | awk '
    /arch = /{arch=$3} /Function : /{f=$3}
    f ~ /flash_(attention_forward|bwd_dkv|bwd_dq)_kernel/ { for (i = 1; i <= NF; i++) if ($i ~ /^(HMMA|LDSM|LDGSTS)/) { split($i, b, "."); c[arch " " f " " b[1]]++ } }
    /Function : .*flash_(attention_forward|bwd_dkv|bwd_dq)_kernel/ { k[arch " " $3] = 1 }
    END { for (x in k) { split(x, a, " "); bf = a[2] ~ /bfloat16/;
            printf "%s %s %d %d %d\n", a[1], a[2], c[x " HMMA"], c[x " LDSM"], bf ? c[x " LDGSTS"] : -1 } }')
  nk=$(echo "$counts" | grep -c . ); bad=$(echo "$counts" | awk '$3 == 0 || $4 == 0 || $5 == 0' | grep -c .)
  for arch in sm_80 sm_90; do
    n=$(echo "$counts" | awk -v a=$arch '$1 == a' | grep -c .)
    if [ "$n" = 24 ]; then pass=$((pass + 1)); echo "ok    $arch: 24 flash kernels in the SASS"
    else fail=$((fail + 1)); echo "FAIL  $arch: $n flash kernels in the SASS, want 24 (3 kernels x 4 head dims x 2 input types)"; fi
  done
  if [ "$nk" -gt 0 ] && [ "$bad" = 0 ]; then pass=$((pass + 1)); echo "ok    HMMA and LDSM in every flash kernel, LDGSTS in the bf16-input ones"
  else fail=$((fail + 1)); echo "FAIL  tensor-core instructions missing (arch, kernel, HMMA, LDSM, LDGSTS):"; echo "$counts" | awk '$3 == 0 || $4 == 0 || $5 == 0'; fi
  echo "$counts" | sort | awk '{printf "      %s %-60s HMMA %d  LDSM %d  LDGSTS %s\n", $1, $2, $3, $4, $5 < 0 ? "-" : $5}'
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
