#!/usr/bin/env bash
# The NCCL side of the CUDA build (bin/qstar-cuda, made by `make cuda`, which tests/test_cuda_build.sh
# runs): libnccl is linked and the NCCL collectives are defined, while the CPU-only bin/qstar keeps
# them as weak references and links without libnccl. On a machine without a GPU, two ranks of
# bin/qstar-cuda --device cuda, started with QSTAR_RANK/QSTAR_WORLD_SIZE or by mpirun, must each say
# "no CUDA device" and exit non-zero before either waits for the other (timeout 60). With two or more
# GPUs, 2 ranks x batch B must reach the parameters of 1 rank x batch 2B.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
if ! command -v nvcc > /dev/null; then echo "FAIL SKIP: nvcc not found (the CUDA toolkit is needed for bin/qstar-cuda)"; echo "0 passed, 1 failed"; exit 1; fi
if [ ! -x bin/qstar-cuda ]; then echo "FAIL bin/qstar-cuda is not built (make cuda)"; echo "0 passed, 1 failed"; exit 1; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OMPI_MCA_rmaps_base_oversubscribe=1
unset QSTAR_RANK QSTAR_WORLD_SIZE QSTAR_NCCL_ID_FILE
work=build/test-work/nccl_build; rm -rf "$work"; mkdir -p "$work"
Q=bin/qstar-cuda

ldd "$Q" | grep -q "libnccl" && ok "bin/qstar-cuda links $(ldd "$Q" | grep -o 'libnccl[^ ]*' | head -1)" || bad "bin/qstar-cuda does not link libnccl"
defined=$(nm "$Q" | grep -cE " T qstar_nccl_(init|allreduce_sum|reduce_scatter_sum|allgather|broadcast|finalize)$")
[ "$defined" = 6 ] && ok "bin/qstar-cuda defines the NCCL collectives" || bad "bin/qstar-cuda defines $defined of 6 qstar_nccl_* functions"
nm "$Q" | grep -q " U ncclCommInitRank" && ok "ncclCommInitRank comes from libnccl" || bad "ncclCommInitRank is not imported"
if [ -x bin/qstar ]; then
  nm bin/qstar | grep -q " w qstar_nccl_init$" && ! ldd bin/qstar | grep -q libnccl \
    && ok "bin/qstar (cpu only) keeps qstar_nccl_init weak and links without libnccl" || bad "bin/qstar's NCCL references"
fi

python3 tests/lib/make_shard.py "$work/d.bin" --random 1000 --tokens 4000 > /dev/null
L=(--config configs/tiny.json --data "$work/d.bin" --steps 1 --seq 16 --device cuda)
gpus=$(nvidia-smi -L 2> /dev/null | grep -c "^GPU")
if [ "$gpus" = 0 ]; then
  start=$(date +%s)
  QSTAR_RANK=1 QSTAR_WORLD_SIZE=2 QSTAR_NCCL_ID_FILE="$work/id" timeout 60 $Q train "${L[@]}" --batch 1 --out "$work/e" > "$work/e1.log" 2>&1 &
  p1=$!
  QSTAR_RANK=0 QSTAR_WORLD_SIZE=2 QSTAR_NCCL_ID_FILE="$work/id" timeout 60 $Q train "${L[@]}" --batch 1 --out "$work/e" > "$work/e0.log" 2>&1
  rc0=$?
  wait $p1; rc1=$?
  secs=$(( $(date +%s) - start ))
  if [ $rc0 != 0 ] && [ $rc0 != 124 ] && [ $rc1 != 0 ] && [ $rc1 != 124 ] && grep -q "no CUDA device" "$work/e0.log" && grep -q "no CUDA device" "$work/e1.log"; then
    ok "2 env-var ranks without a GPU: \"$(head -1 "$work/e0.log")\", exit $rc0/$rc1 in ${secs}s"
  else bad "2 env-var ranks without a GPU: exit $rc0/$rc1 (124: hung), rank 0: $(head -2 "$work/e0.log"), rank 1: $(head -2 "$work/e1.log")"; fi
  if command -v mpirun > /dev/null; then
    timeout 60 mpirun -np 2 --oversubscribe $Q train "${L[@]}" --batch 1 --out "$work/m" > "$work/m.log" 2>&1
    rc=$?
    [ $rc != 0 ] && [ $rc != 124 ] && grep -q "no CUDA device" "$work/m.log" \
      && ok "mpirun -np 2 without a GPU: \"no CUDA device\", exit $rc" || bad "mpirun -np 2 without a GPU: exit $rc, $(grep error "$work/m.log" | head -2)"
  fi
elif [ "$gpus" = 1 ]; then
  ok "one GPU: NCCL needs a GPU per rank, the 2-rank run is not exercised here"
else
  L=(--config configs/tiny.json --data "$work/d.bin" --steps 4 --seq 32 --lr 1e-3 --warmup 0 --device cuda)
  timeout 300 mpirun -np 2 $Q train "${L[@]}" --batch 2 --out "$work/r2" > "$work/r2.log" 2>&1 || bad "2-rank cuda run failed: $(tail -2 "$work/r2.log")"
  timeout 300 $Q train "${L[@]}" --batch 4 --out "$work/r1" > "$work/r1.log" 2>&1 || bad "1-rank cuda run failed: $(tail -2 "$work/r1.log")"
  grep -q "(NCCL)" "$work/r2.log" && ok "$gpus GPUs: the 2-rank run used NCCL" || bad "no NCCL banner"
  if [ -x .venv/bin/python ]; then
    .venv/bin/python - "$work/r2/step_000004/model.safetensors" "$work/r1/step_000004/model.safetensors" <<'PY' \
      && ok "cuda: 2 ranks x B == 1 rank x 2B" || bad "cuda: 2 ranks x B differs from 1 rank x 2B"
import sys, numpy as np
from safetensors.numpy import load_file
A, B = load_file(sys.argv[1]), load_file(sys.argv[2])
d = np.sqrt(sum(((A[k] - B[k]).astype(np.float64) ** 2).sum() for k in A))
n = np.sqrt(sum((B[k].astype(np.float64) ** 2).sum() for k in A))
print("    relative L2 distance %.3g" % (d / n)); sys.exit(0 if d / n <= 1e-5 else 1)
PY
  fi
fi
echo "$pass passed, $fail failed"
[ $fail = 0 ]
