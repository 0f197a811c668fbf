#!/usr/bin/env bash
# The tensor-core flash attention forward (kernels/cuda/flash_attention.cuh: mma.sync, ldmatrix,
# cp.async double buffering) run on the CPU emulator against the C oracle cpu_attention_forward:
# builds tests/emu_flash_check.cu with g++ against tests/emu and build/libqstar.a, then runs it
# (head dims 64/80/96/128, GQA ratios 1 and 4, odd T, fp32 and bf16 input; tolerances derived from
# bf16's unit roundoff 2^-8, stated in the .cu). Also with CUEMU_WORKERS=2 and the reverse and a
# random warp schedule.
# Without nvcc (whose CUDA headers the emulator build needs) the test says it is skipped.
set -u
cd "$(dirname "$0")/.."

if ! command -v nvcc >/dev/null 2>&1; then
  echo "test_flash_attention: skipped (nvcc / CUDA headers not found)"
  echo "0 passed, 0 failed"
  exit 0
fi
cuda_home=$(dirname "$(dirname "$(command -v nvcc)")")
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
blas_dir=${BLAS_DIR:-/usr/lib/$multiarch/openblas-openmp}
blas_inc=${BLAS_INC:-/usr/include/$multiarch/openblas-openmp}
bin=build/emu/flash_check

if ! make --no-print-directory -s build/libqstar.a build/emu/cuemu.o build/emu/cublas_emu.o >build/emu-flash-build.log 2>&1; then
  echo "FAIL building build/libqstar.a and the emulator objects:"; tail -15 build/emu-flash-build.log
  echo "0 passed, 1 failed"; exit 1
fi
if ! g++ -std=c++20 -O2 -g -Wall -Wextra -Werror -Wno-unknown-pragmas -pthread -I. -I"$cuda_home/include" \
     -isystem "$blas_inc" -x c++ -include tests/emu/cuemu.h tests/emu_flash_check.cu -x none \
     build/emu/cuemu.o build/emu/cublas_emu.o build/libqstar.a -o "$bin" \
     -L"$blas_dir" -Wl,-rpath,"$blas_dir" -lopenblas -fopenmp -lm >>build/emu-flash-build.log 2>&1; then
  echo "FAIL compiling tests/emu_flash_check.cu for the emulator:"; tail -15 build/emu-flash-build.log
  echo "0 passed, 1 failed"; exit 1
fi

pass=0; fail=0
# the default run, two workers, and the warp orders that expose missing barriers (tests/emu)
for setting in "" "CUEMU_WORKERS=2" "CUEMU_SCHEDULE=reverse" "CUEMU_SCHEDULE=random:1"; do
  echo "${setting:-default schedule}"
  env $setting "$bin" > build/emu-flash-run.log 2>&1
  rc=$?
  cat build/emu-flash-run.log
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' build/emu-flash-run.log | tail -1)
  p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/'); f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  [ -z "$line" ] && p=0 && f=1
  [ "$rc" != 0 ] && [ "$f" = 0 ] && f=1
  pass=$((pass + p)); fail=$((fail + f))
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
