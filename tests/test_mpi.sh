#!/usr/bin/env bash
# Data-parallel training with mpirun -np 2 on the CPU backend:
#  - 2 ranks x batch B reach the parameters of 1 rank x batch 2B (relative L2 distance of the whole
#    parameter vector <= 1e-5: the sums differ only in float rounding order; single elements differ
#    more, up to ~1e-4 of their tensor's largest weight, where Adam normalizes gradients that are at
#    rounding level) and those of 1 rank x batch B x grad-accum 2 (the same partial sums added in
#    another order), in lm and quietstar mode;
#  - ZeRO-1 (sharded AdamW moments) equals plain all-reduce: bitwise without clipping, and the
#    checkpointed moments match;
#  - resuming on a different number of ranks continues the run;
#  - a rank that dies ends the job with a non-zero status, and a crash while saving leaves no
#    half-written checkpoint behind the newest complete one;
#  - the gradients are announced as reduced in fp32 (the cpu backend is fp32; bf16 data parallelism is
#    tests/test_mpi_nccl.sh's), and --grad-reduce bf16 on fp32 gradients is refused with one line.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
if ! command -v mpirun > /dev/null; then echo "FAIL SKIP: mpirun missing (run make deps)"; echo "0 passed, 1 failed"; exit 1; fi
if [ ! -x .venv/bin/python ]; then echo "FAIL SKIP: .venv missing (run make deps)"; echo "0 passed, 1 failed"; exit 1; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPI="mpirun -np 2 --oversubscribe"
work=build/test-work/mpi; rm -rf "$work"; mkdir -p "$work"
python3 tests/lib/make_shard.py "$work/d.bin" --random 1000 --tokens 30000 --seed 2
Q=bin/qstar

# compare A B MODE: MODE "bitwise" or a relative L2 bound (tests/lib/compare_weights.py)
compare() { .venv/bin/python tests/lib/compare_weights.py "$1" "$2" "$3"; }

L=(--config configs/tiny.json --data "$work/d.bin" --steps 4 --seq 32 --lr 1e-3 --warmup 0)
$MPI $Q train "${L[@]}" --batch 2 --out "$work/r2" > "$work/r2.log" 2>&1 || bad "2-rank run failed: $(tail -2 "$work/r2.log")"
$Q train "${L[@]}" --batch 4 --out "$work/r1" > "$work/r1.log" 2>&1 || bad "1-rank run failed"
$Q train "${L[@]}" --batch 2 --grad-accum 2 --out "$work/ga" > "$work/ga.log" 2>&1 || bad "grad-accum run failed"
grep -q "data parallel: 2 ranks x batch 2" "$work/r2.log" && ok "2 ranks announced" || bad "no data-parallel banner"
[ "$(grep -c '^step' "$work/r2.log")" = 4 ] && ok "only rank 0 logs" || bad "log lines: $(grep -c '^step' "$work/r2.log")"
grep -q "data parallel: 2 ranks x batch 2 (MPI), gradients reduced in fp32$" "$work/r2.log" \
  && ok "MPI: gradients reduced in fp32" || bad "MPI banner: $(grep 'data parallel' "$work/r2.log")"
$MPI $Q train "${L[@]}" --batch 2 --grad-reduce bf16 --out "$work/gr" > "$work/gr.log" 2>&1
rc=$?
[ $rc != 0 ] && grep -q "grad-reduce bf16 needs bf16 gradients" "$work/gr.log" \
  && ok "--grad-reduce bf16 on the fp32 cpu backend refused (exit $rc)" \
  || bad "--grad-reduce bf16 on cpu: exit $rc, $(tail -2 "$work/gr.log")"
compare "$work/r2/step_000004/model.safetensors" "$work/r1/step_000004/model.safetensors" 1e-5 \
  && ok "lm: 2 ranks x B == 1 rank x 2B" || bad "lm: 2 ranks x B differs from 1 rank x 2B"
compare "$work/r2/step_000004/model.safetensors" "$work/ga/step_000004/model.safetensors" 1e-6 \
  && ok "lm: 2 ranks x B == 1 rank x B x accum 2" || bad "lm: differs from grad accumulation"

$MPI $Q train "${L[@]}" --batch 2 --zero 1 --out "$work/z2" > "$work/z2.log" 2>&1 || bad "ZeRO-1 run failed"
grep -q "ZeRO-1" "$work/z2.log" && ok "ZeRO-1 announced" || bad "no ZeRO banner"
compare "$work/z2/step_000004/model.safetensors" "$work/r2/step_000004/model.safetensors" 1e-6 \
  && ok "ZeRO-1 == all-reduce (weights)" || bad "ZeRO-1 weights differ"
compare "$work/z2/step_000004/optimizer.safetensors" "$work/r2/step_000004/optimizer.safetensors" 1e-6 \
  && ok "ZeRO-1 == all-reduce (gathered moments in the checkpoint)" || bad "ZeRO-1 moments differ"
$MPI $Q train "${L[@]}" --batch 2 --zero 1 --grad-clip 0 --out "$work/z2nc" > /dev/null 2>&1
$MPI $Q train "${L[@]}" --batch 2 --zero 0 --grad-clip 0 --out "$work/r2nc" > /dev/null 2>&1
compare "$work/z2nc/step_000004/model.safetensors" "$work/r2nc/step_000004/model.safetensors" bitwise \
  && ok "ZeRO-1 == all-reduce without clipping, bitwise" || bad "ZeRO-1 not bitwise without clipping"

# Quiet-STaR: the thoughts of rank r's rows are those of the same rows of the bigger batch
Qs=(--config configs/tiny.json --mode quietstar --tokenizer data/corpus/tokenizer.json --data "$work/d.bin" --steps 2
    --seq 16 --n-ahead 5 --n-ahead-talk 2 --lr 1e-3 --warmup 0 --policy-weight 10)
$MPI $Q train "${Qs[@]}" --batch 1 --out "$work/q2" > "$work/q2.log" 2>&1 || bad "quietstar 2-rank run failed: $(tail -2 "$work/q2.log")"
$Q train "${Qs[@]}" --batch 1 --grad-accum 2 --out "$work/qga" > /dev/null 2>&1 || bad "quietstar accum run failed"
compare "$work/q2/step_000002/model.safetensors" "$work/qga/step_000002/model.safetensors" 1e-5 \
  && ok "quietstar: 2 ranks x B == 1 rank x B x accum 2 (same thoughts)" || bad "quietstar: ranks differ from accumulation"

# resume on another number of ranks: 2 ranks x 2 for 2 steps, then 1 rank x 4
$MPI $Q train "${L[@]}" --batch 2 --zero 1 --save-every 2 --stop-after 2 --out "$work/mix" > /dev/null 2>&1 || bad "first half failed"
$Q train --resume "$work/mix" --batch 4 > "$work/mix2.log" 2>&1 || bad "resume on 1 rank failed: $(tail -1 "$work/mix2.log")"
compare "$work/mix/step_000004/model.safetensors" "$work/r1/step_000004/model.safetensors" 1e-5 \
  && ok "2 ranks (ZeRO-1) then resumed on 1 rank == 1 rank throughout" || bad "resume across rank counts diverged"

# a rank that dies
QSTAR_FAULT=1:3:step $MPI $Q train "${L[@]}" --batch 2 --save-every 2 --out "$work/die" > "$work/die.log" 2>&1
rc=$?
[ $rc != 0 ] && ok "rank 1 dying at step 3 ends the job (status $rc)" || bad "job survived a dead rank"
grep -q "QSTAR_FAULT: rank 1 aborting" "$work/die.log" && ok "the dead rank is named in the output" || bad "no message from the dead rank"
[ -f "$work/die/step_000002/state.json" ] && [ ! -e "$work/die/step_000004" ] && ok "checkpoint of step 2 intact" || bad "checkpoints after the crash"
# a crash in the middle of writing a checkpoint
QSTAR_FAULT=0:4:save $MPI $Q train "${L[@]}" --batch 2 --save-every 2 --out "$work/mid" > "$work/mid.log" 2>&1
[ $? != 0 ] && [ -f "$work/mid/step_000002/state.json" ] && [ ! -e "$work/mid/step_000004" ] \
  && ok "crash while saving step 4: step 2 is the newest checkpoint, no partial step_000004" || bad "crash while saving"
$Q train --resume "$work/mid" --batch 4 > "$work/mid2.log" 2>&1 && grep -q "resuming from .*step_000002" "$work/mid2.log" \
  && [ -f "$work/mid/step_000004/state.json" ] && ! ls -a "$work/mid" | grep -q '^\.tmp' \
  && ok "resume after it picks step 2 and cleans the partial directory" || bad "resume after a crash while saving"

echo "$pass passed, $fail failed"
[ $fail = 0 ]
