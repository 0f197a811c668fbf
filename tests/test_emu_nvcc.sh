#!/usr/bin/env bash
# Proves that the emulator's test kernels (emu/test_*.cu) are real CUDA: each file must
# compile with nvcc for sm_80 and sm_90 with every warning an error (compile only — there is no
# GPU here). The same files run on the CPU emulator as build/tests/test_emu_*, so a kernel idiom
# that only the emulator accepts fails here.
# Objects go to build/emu-nvcc/ and are reused while neither the .cu file nor a header under
# emu/ (or tests/check.h) changed, so only the first run pays nvcc's ~3 s per file; two
# files compile at a time. Without nvcc the test says it is skipped.
set -u
cd "$(dirname "$0")/.."

if ! command -v nvcc >/dev/null 2>&1; then
  echo "test_emu_nvcc: skipped (nvcc not found)"
  echo "0 passed, 0 failed"
  exit 0
fi

out=build/emu-nvcc
mkdir -p "$out"
flags=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -Werror all-warnings -c)
headers=(emu/*.h tests/check.h kernels/cuda/portable.h kernels/cuda/tensorcore.cuh)

up_to_date() { # $1 = object, $2 = source
  [ -f "$1" ] || return 1
  local dep
  for dep in "$2" "${headers[@]}"; do [ "$dep" -nt "$1" ] && return 1; done
  return 0
}

compile() { # $1 = source, $2 = object; the exit status lands in $2.rc, the messages in $2.log
  if nvcc "${flags[@]}" "$1" -o "$2.tmp" >"$2.log" 2>&1; then mv "$2.tmp" "$2"; echo 0 >"$2.rc"
  else rm -f "$2.tmp" "$2"; echo 1 >"$2.rc"; fi
}

sources=(emu/test_*.cu)
for src in "${sources[@]}"; do
  obj="$out/$(basename "$src" .cu).o"
  if up_to_date "$obj" "$src"; then echo 0 >"$obj.rc"; : >"$obj.log"; continue; fi
  while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
  compile "$src" "$obj" &
done
wait

pass=0; fail=0
for src in "${sources[@]}"; do
  obj="$out/$(basename "$src" .cu).o"
  if [ "$(cat "$obj.rc" 2>/dev/null)" = 0 ]; then
    pass=$((pass + 1)); echo "ok    nvcc sm_80+sm_90 $src"
  else
    fail=$((fail + 1)); echo "FAIL  nvcc sm_80+sm_90 $src"; sed 's/^/      /' "$obj.log" | head -30
  fi
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
