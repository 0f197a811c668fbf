#!/usr/bin/env bash
# Data-parallel training through the NCCL path, without a GPU: bin/qstar-emu --device emu runs the
# CUDA backend on the CPU emulator, and its NCCL calls go to emu/nccl_emu.cpp (the same
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
# --precision bf16 (bf16 gradients and weight copy, fp32 master weights and moments):
#  - the gradients travel as ncclBfloat16 by default, exactly once per step (the shim's per-type
#    counts, QSTAR_NCCL_EMU_LOG), as fp32 with --grad-reduce fp32;
#  - 2 ranks x batch B vs 1 rank x batch 2B: step 1's loss (same weights, same rows) agrees to 1e-6;
#    the weights after 2 steps differ only by where bf16 rounds (each rank's gradient is rounded to
#    bf16 before the sum, then the sum once more), so they must stay within 2^-10 relative L2 (half of
#    bf16's unit roundoff 2^-9) and closer than half of what bf16 itself costs (the distance of the
#    1-rank bf16 run from the fp32 one); quietstar: closer than that bf16-vs-fp32 distance;
#  - --grad-reduce fp32 on 2 ranks gives the bits of bf16 (one rounding of an exact sum either way);
#    on 3 ranks it differs (one rounding instead of one per hop) but stays within 2^-10;
#  - ZeRO-1 (reduce-scatter of bf16 gradients, each rank's shard of master/m/v, all-gather of the bf16
#    weights) equals the all-reduce run bitwise without clipping (the same sums, the same elementwise
#    AdamW; clipping's norm is summed in another order): weights and moments (and losses), on 2 ranks, on 3
#    (uneven shards: grouped bf16 ncclReduce/ncclBroadcast), with --grad-reduce fp32 on 3, through the
#    host staging path in 4 KiB chunks and in the launch without MPI;
#  - its model.safetensors is the fp32 master gathered from both ranks (> 99 % of every matrix's values
#    are not bf16 numbers), and a run stopped at step 2 and resumed reproduces the 4-step run bitwise
#    (weights, moments, losses), with and without ZeRO-1.
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
grep -q "(NCCL), gradients reduced in fp32, ZeRO-1 (AdamW moments sharded)" "$work/z2.log" && ok "ZeRO-1 on NCCL announced" || bad "no ZeRO banner"
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

# ---- --precision bf16 -----------------------------------------------------------------------------
np=$(sed -nE 's/^model: ([0-9]+) parameters.*/\1/p' "$work/r1.log")
B=(--device emu --precision bf16 --config configs/tiny.json --data "$work/d.bin" --steps 2 --seq 16 --lr 1e-3 --warmup 0)
$MPI -x QSTAR_NCCL_EMU_LOG=1 $Q train "${B[@]}" --batch 2 --out "$work/b2" > "$work/b2.log" 2>&1 || bad "bf16 2-rank run failed: $(tail -2 "$work/b2.log")"
$Q train "${B[@]}" --batch 4 --out "$work/b1" > "$work/b1.log" 2>&1 || bad "bf16 1-rank run failed: $(tail -2 "$work/b1.log")"
grep -q "data parallel: 2 ranks x batch 2 (NCCL), gradients reduced in bf16$" "$work/b2.log" \
  && grep -qE "^\| grad-reduce +\| bf16 " "$work/b2.log" && ok "bf16: gradients reduced in bf16 (banner and settings table)" \
  || bad "bf16: banner/table: $(grep -E 'data parallel|grad-reduce' "$work/b2.log")"
# every gradient element crosses in bf16 once per step, nothing in fp32
ar=$(sed -nE 's/^nccl_emu \(rank 0\): ncclAllReduce bfloat16: [0-9]+ calls, ([0-9]+) elements$/\1/p' "$work/b2.log")
[ -n "$np" ] && [ "$ar" = $((2 * np)) ] && ! grep -q "rank 0): ncclAllReduce float32" "$work/b2.log" \
  && ok "bf16: ncclAllReduce bfloat16 of $ar elements = 2 steps x $np parameters, no fp32 all-reduce" \
  || bad "bf16: all-reduced elements '$ar' (expected 2 x '$np' in bfloat16): $(grep nccl_emu "$work/b2.log")"
.venv/bin/python - "$work/b2/metrics.jsonl" "$work/b1/metrics.jsonl" <<'PY' && ok "bf16: step 1 loss of 2 ranks x B == 1 rank x 2B (to 1e-6)" || bad "bf16: step 1 losses differ"
import json, sys
a, b = ([json.loads(l)["loss"] for l in open(p)] for p in sys.argv[1:3])
print("    step 1 loss %.9g vs %.9g, step 2 %.9g vs %.9g" % (a[0], b[0], a[1], b[1]))
sys.exit(0 if abs(a[0] - b[0]) <= 1e-6 * abs(b[0]) else 1)
PY
# rel DIR_A DIR_B: relative L2 distance of the step-2 weights (compare_weights.py prints it)
rel() { .venv/bin/python tests/lib/compare_weights.py "$1/step_000002/model.safetensors" "$2/step_000002/model.safetensors" 1e30 | sed -nE 's/.*distance ([^ ]+) .*/\1/p'; }
d21=$(rel "$work/b2" "$work/b1"); dbf=$(rel "$work/b1" "$work/r1")
.venv/bin/python -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if a <= 2**-10 and a <= b / 2 else 1)" "$d21" "$dbf" \
  && ok "bf16: 2 ranks x B vs 1 rank x 2B: relative L2 $d21 <= 2^-10 and <= half of bf16's own distance from fp32 ($dbf)" \
  || bad "bf16: 2 ranks x B vs 1 rank x 2B: relative L2 '$d21' (bounds 2^-10 and half of '$dbf')"
$MPI -x QSTAR_NCCL_EMU_LOG=1 $Q train "${B[@]}" --batch 2 --grad-reduce fp32 --out "$work/b2f" > "$work/b2f.log" 2>&1 || bad "bf16 --grad-reduce fp32 run failed: $(tail -2 "$work/b2f.log")"
ar=$(sed -nE 's/^nccl_emu \(rank 0\): ncclAllReduce float32: [0-9]+ calls, ([0-9]+) elements$/\1/p' "$work/b2f.log")
grep -q "gradients reduced in fp32 (through an fp32 copy of the bf16 gradients)" "$work/b2f.log" && [ "$ar" = $((2 * np)) ] \
  && ! grep -q "rank 0): ncclAllReduce bfloat16" "$work/b2f.log" \
  && ok "bf16 --grad-reduce fp32: announced, ncclAllReduce float32 of $ar elements" || bad "bf16 --grad-reduce fp32: $(grep -E 'data parallel|nccl_emu' "$work/b2f.log")"
compare "$work/b2f/step_000002/model.safetensors" "$work/b2/step_000002/model.safetensors" bitwise \
  && ok "bf16: --grad-reduce fp32 == bf16 on 2 ranks, bitwise" || bad "bf16: fp32 and bf16 reductions of 2 ranks differ"

# ZeRO-1 in bf16
Bn=("${B[@]}" --grad-clip 0)
$MPI -x QSTAR_NCCL_EMU_LOG=1 $Q train "${Bn[@]}" --batch 2 --zero 1 --out "$work/bz2" > "$work/bz2.log" 2>&1 || bad "bf16 ZeRO-1 run failed: $(tail -2 "$work/bz2.log")"
$MPI $Q train "${Bn[@]}" --batch 2 --out "$work/ba2" > "$work/ba2.log" 2>&1 || bad "bf16 all-reduce run failed: $(tail -2 "$work/ba2.log")"
grep -q "ZeRO-1 (fp32 master weights and AdamW moments sharded, bf16 weights all-gathered)" "$work/bz2.log" \
  && ok "bf16 ZeRO-1 announced" || bad "bf16 ZeRO-1 banner: $(grep 'data parallel' "$work/bz2.log")"
rs=$(sed -nE 's/^nccl_emu \(rank 0\): ncclReduceScatter bfloat16: [0-9]+ calls, ([0-9]+) elements$/\1/p' "$work/bz2.log")
ag=$(sed -nE 's/^nccl_emu \(rank 0\): ncclAllGather bfloat16: [0-9]+ calls, ([0-9]+) elements$/\1/p' "$work/bz2.log")
[ "$rs" = "$np" ] && [ "$ag" = "$np" ] && ok "bf16 ZeRO-1: ncclReduceScatter and ncclAllGather in bfloat16, 2 steps x $((np / 2)) per rank" \
  || bad "bf16 ZeRO-1: reduce-scatter '$rs', all-gather '$ag' bf16 elements (expected $np each): $(grep nccl_emu "$work/bz2.log")"
compare "$work/bz2/step_000002/model.safetensors" "$work/ba2/step_000002/model.safetensors" bitwise \
  && compare "$work/bz2/step_000002/optimizer.safetensors" "$work/ba2/step_000002/optimizer.safetensors" bitwise \
  && diff <(sed -E 's/,"lr".*//' "$work/bz2/metrics.jsonl") <(sed -E 's/,"lr".*//' "$work/ba2/metrics.jsonl") > /dev/null \
  && ok "bf16: ZeRO-1 == all-reduce without clipping, bitwise (weights, moments and every step's loss)" || bad "bf16: ZeRO-1 differs from all-reduce"
.venv/bin/python - "$work/bz2/step_000002/model.safetensors" <<'PY' && ok "bf16 ZeRO-1: model.safetensors holds the fp32 master weights of both shards" || bad "bf16 ZeRO-1: checkpoint weights are not the gathered master"
import sys, numpy as np
from safetensors.numpy import load_file
W = load_file(sys.argv[1])
worst = min((float(((v.view(np.uint32) & 0xFFFF) != 0).mean()), k) for k, v in W.items() if v.ndim == 2)
print("    smallest fraction of non-bf16 values in a matrix: %.4f (%s)" % worst)
sys.exit(0 if worst[0] > 0.99 else 1)
PY
$MPI -x QSTAR_NCCL_EMU_HOST_BUFFERS=1 -x QSTAR_NCCL_STAGE_BYTES=4096 $Q train "${Bn[@]}" --batch 2 --zero 1 --out "$work/bzs" \
  > "$work/bzs.log" 2>&1 || bad "bf16 staged ZeRO-1 run failed: $(tail -2 "$work/bzs.log")"
compare "$work/bzs/step_000002/model.safetensors" "$work/bz2/step_000002/model.safetensors" bitwise \
  && compare "$work/bzs/step_000002/optimizer.safetensors" "$work/bz2/step_000002/optimizer.safetensors" bitwise \
  && ok "bf16: host-memory staging in 4 KiB chunks == device buffers, bitwise" || bad "bf16: the staging path differs"
envrun bez 2 $Q train "${Bn[@]}" --batch 2 --zero 1 --out "$work/bez" || bad "bf16 env-var ZeRO-1 launch failed: $(tail -2 "$work/bez.0.log")"
compare "$work/bez/step_000002/model.safetensors" "$work/bz2/step_000002/model.safetensors" bitwise \
  && ok "bf16: env-var launch, ZeRO-1 == mpirun, bitwise" || bad "bf16: env-var ZeRO-1 differs"
# 3 ranks: uneven shards
$MPI3 $Q train "${Bn[@]}" --batch 1 --zero 1 --out "$work/bz3" > "$work/bz3.log" 2>&1 || bad "bf16 3-rank ZeRO-1 failed: $(tail -2 "$work/bz3.log")"
$MPI3 $Q train "${Bn[@]}" --batch 1 --out "$work/ba3" > "$work/ba3.log" 2>&1 || bad "bf16 3-rank all-reduce failed: $(tail -2 "$work/ba3.log")"
$MPI3 $Q train "${Bn[@]}" --batch 1 --zero 1 --grad-reduce fp32 --out "$work/bz3f" > "$work/bz3f.log" 2>&1 || bad "bf16 3-rank ZeRO-1 fp32-reduce failed: $(tail -2 "$work/bz3f.log")"
$MPI3 $Q train "${Bn[@]}" --batch 1 --grad-reduce fp32 --out "$work/ba3f" > "$work/ba3f.log" 2>&1 || bad "bf16 3-rank fp32-reduce failed: $(tail -2 "$work/ba3f.log")"
compare "$work/bz3/step_000002/model.safetensors" "$work/ba3/step_000002/model.safetensors" bitwise \
  && compare "$work/bz3/step_000002/optimizer.safetensors" "$work/ba3/step_000002/optimizer.safetensors" bitwise \
  && ok "bf16, 3 ranks (uneven shards): ZeRO-1 == all-reduce, bitwise" || bad "bf16, 3 ranks: ZeRO-1 differs from all-reduce"
compare "$work/bz3f/step_000002/model.safetensors" "$work/ba3f/step_000002/model.safetensors" bitwise \
  && compare "$work/bz3f/step_000002/optimizer.safetensors" "$work/ba3f/step_000002/optimizer.safetensors" bitwise \
  && ok "bf16, 3 ranks, --grad-reduce fp32: ZeRO-1 == all-reduce, bitwise" || bad "bf16, 3 ranks, fp32 reduce: ZeRO-1 differs"
d3=$(rel "$work/ba3f" "$work/ba3")
! compare "$work/ba3f/step_000002/model.safetensors" "$work/ba3/step_000002/model.safetensors" bitwise > /dev/null \
  && .venv/bin/python -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 2**-10 else 1)" "$d3" \
  && ok "bf16, 3 ranks: fp32 reduction (one rounding) differs from bf16 (one per hop) by relative L2 $d3 <= 2^-10" \
  || bad "bf16, 3 ranks: fp32 vs bf16 reduction: relative L2 '$d3' (expected nonzero, <= 2^-10)"

# resume: stopped after step 2 of 4, then resumed, == the 4-step run, bitwise (weights, moments, losses)
B4=(--device emu --precision bf16 --config configs/tiny.json --data "$work/d.bin" --steps 4 --seq 16 --lr 1e-3 --warmup 0 --batch 2)
for z in 0 1; do
  $MPI $Q train "${B4[@]}" --zero $z --out "$work/bfull$z" > "$work/bfull$z.log" 2>&1 || bad "bf16 4-step run (zero $z) failed: $(tail -2 "$work/bfull$z.log")"
  $MPI $Q train "${B4[@]}" --zero $z --save-every 2 --stop-after 2 --out "$work/bres$z" > /dev/null 2>&1 || bad "bf16 first half (zero $z) failed"
  $MPI $Q train --resume "$work/bres$z" --device emu > "$work/bres$z.log" 2>&1 || bad "bf16 resume (zero $z) failed: $(tail -2 "$work/bres$z.log")"
  grep -q "resuming from .*step_000002" "$work/bres$z.log" && grep -q "gradients reduced in bf16" "$work/bres$z.log" \
    && compare "$work/bres$z/step_000004/model.safetensors" "$work/bfull$z/step_000004/model.safetensors" bitwise \
    && compare "$work/bres$z/step_000004/optimizer.safetensors" "$work/bfull$z/step_000004/optimizer.safetensors" bitwise \
    && diff <(sed -E 's/,"ms".*//' "$work/bres$z/metrics.jsonl") <(sed -E 's/,"ms".*//' "$work/bfull$z/metrics.jsonl") > /dev/null \
    && ok "bf16, 2 ranks, zero $z: resumed at step 2 == uninterrupted, bitwise (weights, moments, losses and norms)" \
    || bad "bf16, 2 ranks, zero $z: the resumed run differs from the uninterrupted one"
done

# Quiet-STaR in bf16 with ZeRO-1: 2 ranks x B vs 1 rank x B x accum 2 (the fp32 qga run above as the scale)
QB=("${Qs[@]}" --precision bf16)
$MPI $Q train "${QB[@]}" --batch 1 --zero 1 --out "$work/bq2" > "$work/bq2.log" 2>&1 || bad "bf16 quietstar 2-rank run failed: $(tail -2 "$work/bq2.log")"
$Q train "${QB[@]}" --batch 1 --grad-accum 2 --out "$work/bqga" > "$work/bqga.log" 2>&1 || bad "bf16 quietstar accum run failed: $(tail -2 "$work/bqga.log")"
dq=$(rel "$work/bq2" "$work/bqga"); dqf=$(rel "$work/bqga" "$work/qga")
.venv/bin/python -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if a <= b else 1)" "$dq" "$dqf" \
  && ok "bf16 quietstar, ZeRO-1: 2 ranks x B vs 1 rank x B x accum 2: relative L2 $dq <= bf16's distance from fp32 ($dqf)" \
  || bad "bf16 quietstar: 2 ranks vs accumulation: relative L2 '$dq' (bound: '$dqf')"

echo "$pass passed, $fail failed"
[ $fail = 0 ]
