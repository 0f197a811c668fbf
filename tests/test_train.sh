#!/usr/bin/env bash
# End-to-end training tests of `qstar train` on the CPU backend:
#  - overfit: a small repetitive corpus is learned to near-zero loss;
#  - resume: N steps straight and N/2 + resume + N/2 give bitwise-identical weights, optimizer
#    state and per-step losses;
#  - the step log and metrics.jsonl carry the same fields;
#  - grad accumulation: batch 4 equals batch 2 x 2 micro-batches up to float rounding;
#  - bitwise resume in the precisions whose state is more than model.safetensors' fp32 weights
#    (bin/qstar-emu): bf16 with --stochastic-rounding 1 (the bf16 working copy is not the master rounded
#    to nearest: the checkpoint keeps it, "working_bf16", and a resume without it must differ), the
#    reference's --bf16-weights mode (no master) on emu-bf16 and on cpu, and --save-dtype bf16 on cpu
#    (model.safetensors rounded; the optimizer file keeps the fp32 weights, "master");
#  - --bf16-weights under ZeRO-1 (mpirun, 2 ranks, emu-bf16) bitwise the all-reduce run, and the master
#    mode with stochastic rounding too, across a resume.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
work=build/test-work/train; rm -rf "$work"; mkdir -p "$work"
Q=bin/qstar

# --- overfit -------------------------------------------------------------------------------------
python3 tests/lib/make_shard.py "$work/rep.bin" --pattern "5,17,99,3,250,7,7,42,8,1000,11,64,64,9" --tokens 30000
$Q train --config configs/tiny.json --data "$work/rep.bin" --out "$work/overfit" --steps 80 --batch 4 --seq 64 \
   --lr 3e-3 --warmup 5 --log-every 20 > "$work/overfit.log" 2>&1 || bad "overfit run failed: $(tail -1 "$work/overfit.log")"
first=$(head -1 "$work/overfit/metrics.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
last=$(tail -1 "$work/overfit/metrics.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
# 14 distinct pattern positions: only the first token of a window is unpredictable, so the floor is
# about ln(14)/64 = 0.04 per token on average; demand well under the random-init loss ln(1024) = 6.9.
if python3 -c "import sys; sys.exit(0 if $last < 0.08 and $first > 6.0 else 1)"; then ok "overfit: loss $first -> $last"
else bad "overfit: loss $first -> $last (want < 0.08)"; fi

# --- log line and metrics fields ------------------------------------------------------------------
if grep -qE '^step +80/80 \| loss [0-9.]+ \| lr [0-9.e+-]+ \| norm +[0-9.]+ \| +[0-9.]+ ms \| +[0-9]+ tok/s' "$work/overfit.log"; then
  ok "step log line has step, loss, lr, norm, ms, tok/s"; else bad "step log line format"; fi
if python3 - "$work/overfit/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in rows] == list(range(1, 81)), "steps"
for r in rows: assert set(r) == {"step", "loss", "lr", "grad_norm", "ms", "tokens_per_s"}, r
PY
then ok "metrics.jsonl: one record per step with every field"; else bad "metrics.jsonl content"; fi
grep -q '^| steps  *| 80 ' "$work/overfit.log" && ok "settings table printed" || bad "settings table missing"

# --- bitwise resume -------------------------------------------------------------------------------
python3 tests/lib/make_shard.py "$work/r1.bin" --random 1024 --tokens 6000 --seed 3
python3 tests/lib/make_shard.py "$work/r2.bin" --random 1024 --tokens 5000 --seed 4
common=(--config configs/tiny.json --data "$work/r*.bin" --steps 12 --batch 2 --seq 32 --grad-accum 2 --lr 1e-3 --warmup 3 --save-every 6)
$Q train "${common[@]}" --out "$work/straight" > "$work/straight.log" 2>&1 || bad "straight run failed"
$Q train "${common[@]}" --out "$work/split" --stop-after 6 > "$work/split1.log" 2>&1 || bad "first half failed"
[ -d "$work/split/step_000006" ] && [ ! -d "$work/split/step_000012" ] && ok "stop-after 6 saved step 6 only" || bad "stop-after"
$Q train --resume "$work/split" > "$work/split2.log" 2>&1 || bad "resume failed: $(tail -1 "$work/split2.log")"
grep -q "resuming from .*step_000006 at step 6" "$work/split2.log" && ok "resume announces its checkpoint" || bad "resume message"
for f in model.safetensors optimizer.safetensors; do
  if cmp -s "$work/straight/step_000012/$f" "$work/split/step_000012/$f"; then ok "resume: $f bitwise identical"
  else bad "resume: $f differs"; fi
done
if diff <(python3 -c 'import json,sys; [print(json.loads(l)["loss"]) for l in open(sys.argv[1])]' "$work/straight/metrics.jsonl") \
        <(python3 -c 'import json,sys; [print(json.loads(l)["loss"]) for l in open(sys.argv[1])]' "$work/split/metrics.jsonl") >/dev/null; then
  ok "resume: all 12 losses identical"; else bad "resume: losses differ"; fi
ls -a "$work/split" | grep -q '\.tmp' && bad "temporary checkpoint directory left behind" || ok "no temporary files left"

# --- bitwise resume: bf16 state ------------------------------------------------------------------
# resume_check NAME BIN OPTIONS...: 4 steps straight against 2 + resume + 2 (tiny model, seconds)
resume_check() {
  local name=$1 bin=$2; shift 2
  local dir="$work/rs_${name// /_}"
  local c=(--config configs/tiny.json --data "$work/r1.bin" --steps 4 --batch 2 --seq 32 --lr 1e-3 --warmup 1 --save-every 2 "$@")
  if ! "$bin" train "${c[@]}" --out "$dir/straight" > "$dir.straight.log" 2>&1 \
     || ! "$bin" train "${c[@]}" --out "$dir/split" --stop-after 2 > "$dir.split1.log" 2>&1 \
     || ! "$bin" train --resume "$dir/split" > "$dir.split2.log" 2>&1; then
    bad "$name: a run failed: $(tail -1 "$dir".*.log | grep -v '^==' | grep . | tail -1)"; return 1
  fi
  local f same=1
  for f in model.safetensors optimizer.safetensors; do
    cmp -s "$dir/straight/step_000004/$f" "$dir/split/step_000004/$f" || { same=0; bad "$name: resume: $f differs"; }
  done
  [ $same = 1 ] && ok "$name: 2 + resume + 2 steps bitwise the 4 straight (model and optimizer files)"
  return 0
}
# tensor names and dtypes of a safetensors file, "name:DTYPE" per line (no numpy needed)
st_names() { python3 -c '
import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]
for k, v in json.loads(f.read(n)).items():
    if k != "__metadata__": print("%s:%s" % (k, v["dtype"]))' "$1"; }
E=bin/qstar-emu
if [ -x "$E" ]; then
  if resume_check "emu-bf16 stochastic rounding" $E --device emu --precision bf16 --stochastic-rounding 1; then
    d="$work/rs_emu-bf16_stochastic_rounding"
    st_names "$d/split/step_000002/optimizer.safetensors" | grep -qx "working_bf16:BF16" \
      && ok "stochastic rounding: optimizer.safetensors holds the bf16 working copy" || bad "stochastic rounding: no working_bf16 tensor"
    # the same resume from a checkpoint without the working copy (the master rounded to nearest instead)
    # must differ, or the check above could not fail
    cp -r "$d/split" "$d/nowork" && rm -rf "$d/nowork/step_000004"
    python3 - "$d/nowork/step_000002/optimizer.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; f = open(p, "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); data = f.read()
h.pop("working_bf16"); out = {"__metadata__": h.pop("__metadata__")}; blob = b""
for k, v in h.items():
    b, e = v["data_offsets"]; v["data_offsets"] = [len(blob), len(blob) + e - b]; blob += data[b:e]; out[k] = v
hdr = json.dumps(out).encode(); hdr += b" " * (-(8 + len(hdr)) % 8)
open(p, "wb").write(struct.pack("<Q", len(hdr)) + hdr + blob)
PY
    $E train --resume "$d/nowork" > "$d.nowork.log" 2>&1 || bad "resume without working_bf16 failed: $(tail -1 "$d.nowork.log")"
    cmp -s "$d/straight/step_000004/model.safetensors" "$d/nowork/step_000004/model.safetensors" \
      && bad "resume without the working copy is bitwise too: the check above cannot fail" \
      || ok "resume without the working copy differs (the restore is what makes it bitwise)"
  fi
  resume_check "emu-bf16 --bf16-weights" $E --device emu --precision bf16 --bf16-weights --stochastic-rounding 1 \
    && { st_names "$work/rs_emu-bf16_--bf16-weights/split/step_000004/optimizer.safetensors" | grep -q '^working_bf16:' \
         && bad "--bf16-weights saved a working copy (it has no master: the weights are the copy)" \
         || ok "--bf16-weights: no working copy saved (the bf16 weights are the state)"; }
  # ZeRO-1 in the mode: each rank updates its shard of the bf16 weights in place and all-gathers them,
  # which must give what the all-reduce run gives, bit for bit
  if command -v mpirun > /dev/null; then
    d="$work/zero_bf16w"; mkdir -p "$d"
    zc=(--config configs/tiny.json --data "$work/r1.bin" --steps 2 --batch 2 --seq 32 --lr 1e-3 --warmup 1
        --device emu --precision bf16 --bf16-weights --stochastic-rounding 1)
    if OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 mpirun -np 2 --oversubscribe \
         $E train "${zc[@]}" --zero 1 --out "$d/z" > "$d/z.log" 2>&1 \
       && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 mpirun -np 2 --oversubscribe \
         $E train "${zc[@]}" --out "$d/a" > "$d/a.log" 2>&1; then
      grep -q "ZeRO-1 (AdamW moments sharded, bf16 weights all-gathered)" "$d/z.log" \
        && cmp -s "$d/z/step_000002/model.safetensors" "$d/a/step_000002/model.safetensors" \
        && cmp -s "$d/z/step_000002/optimizer.safetensors" "$d/a/step_000002/optimizer.safetensors" \
        && ok "emu-bf16 --bf16-weights: ZeRO-1 over 2 ranks bitwise the all-reduce run" \
        || bad "emu-bf16 --bf16-weights: ZeRO-1 differs from all-reduce (or its banner: $(grep -m1 'data parallel' "$d/z.log"))"
    else
      bad "emu-bf16 --bf16-weights over 2 ranks failed: $(tail -1 "$d/z.log" "$d/a.log" | grep . | tail -1)"
    fi
    # the fp32-master mode with stochastic rounding under ZeRO-1: the same draws as all-reduce (each
    # element keyed by its index in its tensor, whichever shard holds it), and a resume restores the
    # working copy every rank holds
    mc=(--config configs/tiny.json --data "$work/r1.bin" --steps 4 --batch 2 --seq 32 --lr 1e-3 --warmup 1 --save-every 2
        --device emu --precision bf16 --stochastic-rounding 1)
    mpi=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 mpirun -np 2 --oversubscribe $E train)
    if "${mpi[@]}" "${mc[@]}" --zero 1 --out "$d/mz" > "$d/mz.log" 2>&1 && "${mpi[@]}" "${mc[@]}" --out "$d/ma" > "$d/ma.log" 2>&1 \
       && "${mpi[@]}" "${mc[@]}" --zero 1 --stop-after 2 --out "$d/ms" > "$d/ms.log" 2>&1 && "${mpi[@]}" --resume "$d/ms" > "$d/ms2.log" 2>&1; then
      same=1
      for f in model.safetensors optimizer.safetensors; do
        cmp -s "$d/mz/step_000004/$f" "$d/ma/step_000004/$f" && cmp -s "$d/mz/step_000004/$f" "$d/ms/step_000004/$f" || same=0
      done
      [ $same = 1 ] && ok "emu-bf16 stochastic rounding, ZeRO-1 over 2 ranks: bitwise all-reduce, and 2 + resume + 2 bitwise 4" \
        || bad "emu-bf16 stochastic rounding under ZeRO-1: differs from all-reduce or across the resume"
    else
      bad "emu-bf16 stochastic rounding over 2 ranks failed: $(tail -1 "$d"/m*.log | grep . | tail -1)"
    fi
  else
    bad "SKIP: mpirun missing (make deps): --bf16-weights under ZeRO-1 did not run"
  fi
else
  bad "SKIP: bin/qstar-emu is not built (make tests): the bf16 resume checks did not run"
fi
offgrid() { python3 tests/lib/bf16_grid.py "$@"; }  # F32 values off the bf16 grid in these files
if resume_check "cpu --bf16-weights" $Q --bf16-weights; then
  d="$work/rs_cpu_--bf16-weights/straight/step_000004"; n=$(offgrid "$d/model.safetensors" "$d/optimizer.safetensors")
  echo "    $n values off the bf16 grid"
  [ "$n" = 0 ] && ok "cpu --bf16-weights: every weight and moment is a bf16 value" || bad "cpu --bf16-weights: fp32 values off the bf16 grid"
fi
# Quiet-STaR from a base model grows the model (thought tokens): the mode must carry over to the grown
# model, and only when asked (a run without --bf16-weights keeps fp32 weights off the bf16 grid)
qs=(--config configs/tiny.json --data "$work/r1.bin" --steps 1 --batch 1 --seq 16 --lr 1e-3 --warmup 0 --mode quietstar
    --n-ahead 4 --n-ahead-talk 1 --n-passes 2 --tokenizer data/corpus/tokenizer.json)
$Q train "${qs[@]}" --out "$work/qs_fp32" > "$work/qs_fp32.log" 2>&1 || bad "quietstar fp32 run failed: $(tail -1 "$work/qs_fp32.log")"
$Q train "${qs[@]}" --bf16-weights --out "$work/qs_bf16w" > "$work/qs_bf16w.log" 2>&1 || bad "quietstar --bf16-weights run failed"
a=$(offgrid "$work/qs_fp32/step_000001/model.safetensors")
b=$(offgrid "$work/qs_bf16w/step_000001/model.safetensors" "$work/qs_bf16w/step_000001/optimizer.safetensors")
echo "    quietstar with added thought tokens: $a weights off the bf16 grid without --bf16-weights, $b values with it"
if [ "${a:-0}" -gt 0 ] && [ "$b" = 0 ]; then ok "quietstar growing the model: --bf16-weights carries over to the grown model, and only when given"
else bad "quietstar growing the model: the bf16 mode did not carry over, or appeared unasked"; fi
resume_check "cpu --save-dtype bf16" $Q --save-dtype bf16 \
  && { st_names "$work/rs_cpu_--save-dtype_bf16/split/step_000004/optimizer.safetensors" | grep -qx "master:F32" \
       && ok "--save-dtype bf16: optimizer.safetensors holds the fp32 weights" || bad "--save-dtype bf16: no master tensor"; }

err=$($Q train --config configs/tiny.json --data "$work/r1.bin" --out "$work/baddtype" --steps 1 --save-dtype fp16 2>&1 >/dev/null)
[ $? != 0 ] && [ "$(echo "$err" | grep -c .)" = 1 ] && echo "$err" | grep -q -- "--save-dtype must be fp32 or bf16" \
  && ok "--save-dtype fp16 refused in one line" || bad "--save-dtype fp16: '$err'"

# --- gradient accumulation ------------------------------------------------------------------------
$Q train --config configs/tiny.json --data "$work/r1.bin" --steps 3 --batch 4 --seq 32 --lr 1e-3 --warmup 0 --out "$work/acc1" > /dev/null 2>&1
$Q train --config configs/tiny.json --data "$work/r1.bin" --steps 3 --batch 2 --grad-accum 2 --seq 32 --lr 1e-3 --warmup 0 --out "$work/acc2" > /dev/null 2>&1
# Same tokens, same loss: step 1's loss and gradient norm must agree to float rounding. (Weights
# after Adam are not compared: Adam turns rounding-level gradient noise into lr-sized steps.)
if python3 - "$work/acc1/metrics.jsonl" "$work/acc2/metrics.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
rel = lambda x, y: abs(x - y) / abs(y)
print("grad-accum: step-1 loss rel %.2g, grad-norm rel %.2g, step-3 loss rel %.2g" % (
    rel(a[0]["loss"], b[0]["loss"]), rel(a[0]["grad_norm"], b[0]["grad_norm"]), rel(a[2]["loss"], b[2]["loss"])))
sys.exit(0 if rel(a[0]["loss"], b[0]["loss"]) < 1e-6 and rel(a[0]["grad_norm"], b[0]["grad_norm"]) < 1e-5
         and rel(a[2]["loss"], b[2]["loss"]) < 1e-4 else 1)
PY
then ok "batch 4 == batch 2 x grad-accum 2"; else bad "grad accumulation differs"; fi

echo "$pass passed, $fail failed"
[ $fail = 0 ]
