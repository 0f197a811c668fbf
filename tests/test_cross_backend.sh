#!/usr/bin/env bash
# The CUDA kernels against the C reference, without a GPU: the kernels/cuda sources compiled for the
# project's CPU emulator (emu/) form the `emu` backend. Every op test runs on it (tolerance per
# op, maximum errors printed in the logs), the model-level gradient and generation tests run on it,
# the Quiet-STaR parity case runs on it, and a full lm step and a full quietstar step of `qstar train`
# agree between --device cpu and --device emu. The op tests and the emulator's block/warp tests run a
# second time under CUEMU_SCHEDULE=reverse with CUEMU_WORKERS=2.
# QSTAR_CROSS_DEVICE=cuda (make gpu-check, on a GPU) runs the same suite against the cuda backend:
# the C tests linked with it (build/tests-cuda/), bin/qstar-cuda, no emulator schedules, and the
# training comparisons at TF32-aware tolerances (below).
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
dev=${QSTAR_CROSS_DEVICE:-emu}
case $dev in
  emu) tb=build/tests; work=build/test-work/cross ;;
  cuda) tb=build/tests-cuda; work=build/test-work/cross-cuda ;;
  *) echo "FAIL QSTAR_CROSS_DEVICE=$dev: emu or cuda"; echo "0 passed, 1 failed"; exit 1 ;;
esac
qbin=bin/qstar-$dev
if [ ! -x $qbin ]; then
  echo "FAIL SKIP: the $dev backend is not built ($qbin; emu needs nvcc's CUDA headers, see make tests; cuda: make cuda)"
  echo "0 passed, 1 failed"; exit 1
fi
rm -rf "$work"; mkdir -p "$work"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

run() {  # run NAME CMD...: the command must pass; its closing line is shown
  local name=$1; shift
  if "$@" > "$work/$name.log" 2>&1; then ok "$name on $dev ($(grep -E '[0-9]+ passed, [0-9]+ failed' "$work/$name.log" | tail -1))"
  else bad "$name on $dev:"; grep -E "FAIL|error" "$work/$name.log" | head -8 | sed 's/^/       /'; fi
}
run test_ops $tb/test_ops $dev
# The emulator rounding TF32 products' operands as a GPU does (CUEMU_TF32=1): test_ops then checks the
# matmuls against the TF32-aware bounds the first GPU run will use
[ $dev = emu ] && run "test_ops[CUEMU_TF32=1]" env CUEMU_TF32=1 build/tests/test_ops emu
run test_thought_attention $tb/test_thought_attention $dev
run test_quietstar_ops $tb/test_quietstar_ops $dev

# The same op tests (every kernel that uses shared memory or warp-synchronous code runs in them) and
# the emulator's own block/warp/atomics/math/tensorcore tests once more with the threads of each
# block run last to first and the blocks spread over two workers (emu/README.md; the flash
# attention kernels have their own schedule runs in test_emu_checks.sh): a missing __syncthreads or
# __syncwarp that the default order hides (a thread reading what a lower-numbered thread writes) or a
# race between blocks fails here. QSTAR_EMU_SCHEDULES="random:1 random:2 ..." adds runs under
# random schedules (a longer, optional run).
for sched in $([ $dev = emu ] && echo reverse ${QSTAR_EMU_SCHEDULES:-}); do
  for t in test_ops test_thought_attention test_quietstar_ops; do
    run "$t[$sched,2 workers]" env CUEMU_SCHEDULE=$sched CUEMU_WORKERS=2 build/tests/$t emu
  done
  # the bf16 table's ops and whole steps (test_bf16 runs once in the suite itself; its 50-step curve is
  # not repeated here)
  run "test_bf16[$sched,2 workers]" env CUEMU_SCHEDULE=$sched CUEMU_WORKERS=2 QSTAR_BF16_SKIP_CURVE=1 build/tests/test_bf16 emu-bf16
  for t in block warp atomics math tensorcore; do
    [ -f emu/test_$t.cu ] || continue
    if [ -x build/tests/test_emu_$t ]; then
      run "test_emu_$t[$sched,2 workers]" env CUEMU_SCHEDULE=$sched CUEMU_WORKERS=2 build/tests/test_emu_$t
    else bad "build/tests/test_emu_$t is not built"; fi
  done
done
# The gradient checks (finite differences), generation against the training step and the parity case
# compare at fp32 precision: on a GPU their products run in exact fp32 (QSTAR_TF32=0). With TF32 the
# first gpu-check run saw finite differences off by 2-96 % (the TF32 rounding of a loss is larger than
# a finite-difference step's change of it) and cached thinking off by 0.026.
run test_model_grad env QSTAR_TEST_DEVICE=$dev QSTAR_TF32=0 $tb/test_model_grad
run test_quietstar_grad env QSTAR_TEST_DEVICE=$dev QSTAR_TF32=0 $tb/test_quietstar_grad
run test_generate env QSTAR_TEST_DEVICE=$dev QSTAR_TF32=0 $tb/test_generate
if [ -x .venv/bin/python ]; then
  .venv/bin/python tests/ref/quietstar_reference.py "$work/qsref" > /dev/null 2>&1 \
    && run quietstar_parity env QSTAR_TEST_DEVICE=$dev QSTAR_TF32=0 $tb/tool_quietstar_parity "$work/qsref" \
    || bad "quietstar reference script failed"
else
  bad "SKIP quietstar parity on $dev: .venv missing (run make deps)"
fi

# whole training steps, cpu vs the device. emu: fp32 throughout, so float rounding order only (2e-4 on
# losses and norms, 1e-5 on the weights' relative L2 distance). cuda: the GEMMs run in TF32 (operands
# rounded to 10-bit mantissas, unit roundoff 2^-11 ~ 4.9e-4): ten times that on losses and norms and
# twice it on the weights after 2-3 AdamW steps; chosen from the roundoff, to be calibrated by the
# first GPU run (gpu-check reports the worst differences).
if [ $dev = cuda ]; then run_tol=5e-3; weight_tol=1e-3; else run_tol=2e-4; weight_tol=1e-5; fi
python3 tests/lib/make_shard.py "$work/d.bin" --random 1000 --tokens 8000 --seed 9
# Fields compared: losses and gradient norms. Rewards are differences of nearly equal NLLs (the
# mixing weight starts at 0), so their float rounding is not comparable at a relative tolerance;
# they enter the weights, which are compared as a whole.
compare_runs() {  # NAME DIR_CPU DIR_EMU STEP
  python3 - "$2/metrics.jsonl" "$3/metrics.jsonl" $run_tol <<'PY' || return 1
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
tol = float(sys.argv[3])
keys = [k for k in ("loss", "grad_norm", "base_nll", "talk_nll_mean") if k in a[0]]
worst = max(abs(x[k] - y[k]) / max(abs(y[k]), 1e-3) for x, y in zip(a, b) for k in keys)
print("    %d steps, fields %s: worst relative difference %.2g" % (len(a), ",".join(keys), worst))
sys.exit(0 if len(a) == len(b) and worst < tol else 1)
PY
  [ -x .venv/bin/python ] || { echo "    .venv missing (run make deps): weights not compared"; return 1; }
  .venv/bin/python tests/lib/compare_weights.py "$2/step_00000$4/model.safetensors" "$3/step_00000$4/model.safetensors" $weight_tol
}
LM=(--config configs/tiny.json --data "$work/d.bin" --steps 3 --batch 2 --seq 32 --lr 1e-3 --warmup 0)
bin/qstar train "${LM[@]}" --device cpu --out "$work/lm_cpu" > "$work/lm_cpu.log" 2>&1 \
  && $qbin train "${LM[@]}" --device $dev --precision fp32 --out "$work/lm_$dev" > "$work/lm_$dev.log" 2>&1 \
  && compare_runs lm "$work/lm_cpu" "$work/lm_$dev" 3 && ok "lm training steps: cpu == $dev" || bad "lm training steps differ (logs in $work)"
QS=(--config configs/tiny.json --mode quietstar --tokenizer data/corpus/tokenizer.json --data "$work/d.bin" --steps 2
    --batch 1 --seq 24 --n-ahead 6 --n-ahead-talk 2 --lr 1e-3 --warmup 0 --policy-weight 1)
bin/qstar train "${QS[@]}" --device cpu --out "$work/qs_cpu" > "$work/qs_cpu.log" 2>&1 \
  && $qbin train "${QS[@]}" --device $dev --precision fp32 --out "$work/qs_$dev" > "$work/qs_$dev.log" 2>&1 \
  && compare_runs quietstar "$work/qs_cpu" "$work/qs_$dev" 2 && ok "quietstar training steps: cpu == $dev" \
  || bad "quietstar training steps differ (logs in $work)"
$qbin sample --ckpt "$work/qs_$dev/step_000002" --prompt "Add 12 and 30." --thoughts --max-tokens 4 \
  --device $dev --temperature 0 > "$work/sample.log" 2>&1 && ok "qstar sample --thoughts runs on $dev" || bad "sample on $dev"

echo "$pass passed, $fail failed"
[ $fail = 0 ]
