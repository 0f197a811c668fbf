#!/usr/bin/env bash
# Data-parallel training through the NCCL path, without a GPU: bin/qstar-emu --device emu runs the
# CUDA backend on the CPU emulator, and its NCCL calls go to tests/emu/nccl_emu.cpp (the same
# kernels/cuda/comm_nccl.cuh code as bin/qstar-cuda, over loopback sockets instead of libnccl).
#  - the log says the collectives went through NCCL; 2 ranks x batch B reach the parameters of
#    1 rank x batch 2B (relative L2 <= 1e-5, as tests/test_mpi.sh on MPI);
#  - ZeRO-1 (reduce-scatter + all-gather) equals all-reduce, weights and checkpointed moments; with
#    3 ranks the parameter count does not divide, so the per-shard ncclReduce/ncclBroadcast groups run
#    instead of ReduceScatter/AllGather; every buffer forced through the host-memory staging path
#    (on a GPU: the checkpoint's host arrays) in small chunks gives the same bits;
#  - quietstar on 2 ranks equals 1 rank with 2 accumulation steps;
#  - the launch without MPI (QSTAR_RANK/QSTAR_WORLD_SIZE/QSTAR_NCCL_ID_FILE, two background
#    processes) gives the bits of the mpirun launch and removes the id file; a rank waiting for an id
#    file nobody writes, a dying rank, and the cpu backend in that launch all end with a clear error.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
if ! command -v mpirun > /dev/null; then echo "FAIL SKIP: mpirun missing (run make deps)"; echo "0 passed, 1 failed"; exit 1; fi
if [ ! -x .venv/bin/python ]; then echo "FAIL SKIP: .venv missing (run make deps)"; echo "0 passed, 1 failed"; exit 1; fi
if [ ! -x bin/qstar-emu ]; then
  echo "FAIL SKIP: bin/qstar-emu is not built (it needs nvcc's CUDA headers; see make tests)"; echo "0 passed, 1 failed"; exit 1
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OMPI_MCA_rmaps_base_oversubscribe=1
unset QSTAR_RANK QSTAR_WORLD_SIZE QSTAR_NCCL_ID_FILE QSTAR_NCCL_EMU_HOST_BUFFERS QSTAR_NCCL_STAGE_BYTES
MPI="timeout 120 mpirun -np 2 --oversubscribe"
MPI3="timeout 120 mpirun -np 3 --oversubscribe"
work=build/test-work/mpi_nccl; rm -rf "$work"; mkdir -p "$work"
python3 tests/lib/make_shard.py "$work/d.bin" --random 1000 --tokens 30000 --seed 2
Q=bin/qstar-emu

# compare A B MODE: MODE "bitwise" or a relative L2 bound (tests/lib/compare_weights.py)
compare() { .venv/bin/python tests/lib/compare_weights.py "$1" "$2" "$3"; }

# envrun NAME RANKS ARGS...: the ranks started by hand, as a launcher without MPI would; waits for all
envrun() {
  local name=$1 n=$2; shift 2
  local pids=() r rc=0
  for ((r = n - 1; r >= 0; r--)); do
    QSTAR_RANK=$r QSTAR_WORLD_SIZE=$n QSTAR_NCCL_ID_FILE="$work/$name.id" timeout 120 "$@" > "$work/$name.$r.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  return $rc
}

L=(--device emu --config configs/tiny.json --data "$work/d.bin" --steps 2 --seq 16 --lr 1e-3 --warmup 0)
$MPI $Q train "${L[@]}" --batch 2 --out "$work/r2" > "$work/r2.log" 2>&1 || bad "2-rank run failed: $(tail -2 "$work/r2.log")"
$Q train "${L[@]}" --batch 4 --out "$work/r1" > "$work/r1.log" 2>&1 || bad "1-rank run failed: $(tail -2 "$work/r1.log")"
grep -q "data parallel: 2 ranks x batch 2 (NCCL)" "$work/r2.log" && ok "the collectives go through NCCL (log: $(grep 'data parallel' "$work/r2.log"))" \
  || bad "no NCCL data-parallel banner: $(grep 'data parallel' "$work/r2.log")"
[ "$(grep -c '^step' "$work/r2.log")" = 2 ] && ok "only rank 0 logs" || bad "log lines: $(grep -c '^step' "$work/r2.log")"
compare "$work/r2/step_000002/model.safetensors" "$work/r1/step_000002/model.safetensors" 1e-5 \
  && ok "lm: 2 ranks x B == 1 rank x 2B" || bad "lm: 2 ranks x B differs from 1 rank x 2B"

# ZeRO-1: 2 ranks (the parameter count divides: ncclReduceScatter/ncclAllGather in place)
$MPI $Q train "${L[@]}" --batch 2 --zero 1 --out "$work/z2" > "$work/z2.log" 2>&1 || bad "ZeRO-1 run failed: $(tail -2 "$work/z2.log")"
grep -q "(NCCL), AdamW moments sharded (ZeRO-1)" "$work/z2.log" && ok "ZeRO-1 on NCCL announced" || bad "no ZeRO banner"
compare "$work/z2/step_000002/model.safetensors" "$work/r2/step_000002/model.safetensors" 1e-6 \
  && ok "ZeRO-1 == all-reduce (weights)" || bad "ZeRO-1 weights differ"
compare "$work/z2/step_000002/optimizer.safetensors" "$work/r2/step_000002/optimizer.safetensors" 1e-6 \
  && ok "ZeRO-1 == all-reduce (gathered moments in the checkpoint)" || bad "ZeRO-1 moments differ"
# every buffer through the staging path, in 4 KiB chunks (shards split across chunk boundaries)
$MPI -x QSTAR_NCCL_EMU_HOST_BUFFERS=1 -x QSTAR_NCCL_STAGE_BYTES=4096 $Q train "${L[@]}" --batch 2 --zero 1 --out "$work/zs" \
  > "$work/zs.log" 2>&1 || bad "staged ZeRO-1 run failed: $(tail -2 "$work/zs.log")"
compare "$work/zs/step_000002/model.safetensors" "$work/z2/step_000002/model.safetensors" bitwise \
  && compare "$work/zs/step_000002/optimizer.safetensors" "$work/z2/step_000002/optimizer.safetensors" bitwise \
  && ok "host-memory staging in 4 KiB chunks == device buffers, bitwise" || bad "the staging path differs"
# 3 ranks: uneven shards
$MPI3 $Q train "${L[@]}" --batch 1 --zero 1 --out "$work/z3" > "$work/z3.log" 2>&1 || bad "3-rank ZeRO-1 run failed: $(tail -2 "$work/z3.log")"
$MPI3 $Q train "${L[@]}" --batch 1 --out "$work/a3" > "$work/a3.log" 2>&1 || bad "3-rank all-reduce run failed: $(tail -2 "$work/a3.log")"
np=$(sed -nE 's/^model: ([0-9]+) parameters.*/\1/p' "$work/z3.log")
[ -n "$np" ] && [ $((np % 3)) != 0 ] && ok "3 ranks: $np parameters, uneven shards (grouped ncclReduce/ncclBroadcast)" \
  || bad "3 ranks: parameter count '${np}' divides by 3, the uneven-shard path is not covered"
compare "$work/z3/step_000002/model.safetensors" "$work/a3/step_000002/model.safetensors" 1e-6 \
  && compare "$work/z3/step_000002/optimizer.safetensors" "$work/a3/step_000002/optimizer.safetensors" 1e-6 \
  && ok "3 ranks: ZeRO-1 == all-reduce (weights and moments)" || bad "3 ranks: ZeRO-1 differs from all-reduce"

# Quiet-STaR: the thoughts of rank r's rows are those of the same rows of the bigger batch
Qs=(--device emu --config configs/tiny.json --mode quietstar --tokenizer data/corpus/tokenizer.json --data "$work/d.bin"
    --steps 2 --seq 16 --n-ahead 4 --n-ahead-talk 2 --lr 1e-3 --warmup 0 --policy-weight 10)
$MPI $Q train "${Qs[@]}" --batch 1 --out "$work/q2" > "$work/q2.log" 2>&1 || bad "quietstar 2-rank run failed: $(tail -2 "$work/q2.log")"
$Q train "${Qs[@]}" --batch 1 --grad-accum 2 --out "$work/qga" > "$work/qga.log" 2>&1 || bad "quietstar accum run failed: $(tail -2 "$work/qga.log")"
grep -q "(NCCL)" "$work/q2.log" && compare "$work/q2/step_000002/model.safetensors" "$work/qga/step_000002/model.safetensors" 1e-5 \
  && ok "quietstar on NCCL: 2 ranks x B == 1 rank x B x accum 2" || bad "quietstar: ranks differ from accumulation"

# the launch without MPI
envrun e2 2 $Q train "${L[@]}" --batch 2 --out "$work/e2" || bad "env-var launch failed: $(tail -2 "$work/e2.0.log" "$work/e2.1.log")"
grep -q "data parallel: 2 ranks x batch 2 (NCCL)" "$work/e2.0.log" && ok "env-var launch: 2 ranks on NCCL" || bad "env-var launch: no NCCL banner"
compare "$work/e2/step_000002/model.safetensors" "$work/r2/step_000002/model.safetensors" bitwise \
  && ok "env-var launch == mpirun launch, bitwise" || bad "env-var launch differs from mpirun"
[ ! -e "$work/e2.id" ] && ! ls "$work" | grep -q '^e2\.id\.tmp' && ok "rank 0 removed the id file once every rank joined" || bad "id file left behind"
envrun ez 2 $Q train "${L[@]}" --batch 2 --zero 1 --out "$work/ez" || bad "env-var ZeRO-1 launch failed: $(tail -2 "$work/ez.0.log")"
compare "$work/ez/step_000002/optimizer.safetensors" "$work/z2/step_000002/optimizer.safetensors" bitwise \
  && ok "env-var launch, ZeRO-1 (scalars and barriers over NCCL) == mpirun, bitwise" || bad "env-var ZeRO-1 differs"

QSTAR_RANK=1 QSTAR_WORLD_SIZE=2 QSTAR_NCCL_ID_FILE="$work/none.id" QSTAR_NCCL_ID_TIMEOUT_S=1 timeout 60 \
  $Q train "${L[@]}" --batch 2 --out "$work/none" > "$work/none.log" 2>&1
rc=$?
[ $rc != 0 ] && [ $rc != 124 ] && grep -q "did not write the NCCL id file" "$work/none.log" \
  && ok "no rank 0: \"$(head -c 90 "$work/none.log")...\", exit $rc" || bad "missing rank 0: exit $rc, $(cat "$work/none.log")"
(QSTAR_FAULT=1:2:step envrun die 2 $Q train "${L[@]}" --batch 2 --out "$work/die") 2> /dev/null  # no "Aborted" job notice
rc=$?
[ $rc != 0 ] && [ $rc != 124 ] && grep -q "NCCL error" "$work/die.0.log" \
  && ok "rank 1 dying: rank 0 stops with \"$(grep -m1 'NCCL error' "$work/die.0.log" | head -c 100)...\"" \
  || bad "rank 1 dying: exit $rc, rank 0 said: $(tail -2 "$work/die.0.log")"
envrun cpu 2 $Q train "${L[@]}" --device cpu --batch 2 --out "$work/cpu"
rc=$?
[ $rc != 0 ] && [ $rc != 124 ] && grep -q "start the ranks with mpirun" "$work/cpu.0.log" \
  && ok "--device cpu in an env-var launch is refused" || bad "cpu env-var launch: exit $rc, $(cat "$work/cpu.0.log")"

echo "$pass passed, $fail failed"
[ $fail = 0 ]
