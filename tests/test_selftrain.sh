#!/usr/bin/env bash
# `qstar selftrain --method star` end to end on a tiny model (the bundled corpus tokenizer) and 1-digit
# addition, in seconds:
#  - --make-arith writes task files the loader reads back; bad --digits is one line, exit 1;
#  - a 2-iteration run with --gold: iteration 1 keeps nothing from the random model (generation and
#    rationalization both run, every completion recorded), fine-tunes the original model on the gold
#    scratchpads, and M_1 then solves the problems; iteration 2 generates with M_1 and keeps them all
#    (the kept path); metrics.jsonl has one record per iteration with the documented fields;
#    iter_001/ and iter_002/ are complete checkpoints;
#  - resume (at an iteration boundary, after an iteration's generation, after its fine-tuning: QSTAR_FAULT
#    aborts there) gives the uninterrupted run's records (less timings) and bitwise the same final
#    weights; without --keep-all only the newest checkpoint stays;
#  - bad input: an unknown method, a malformed task file (FILE:LINE), a missing option: one line, exit 1.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
Q=bin/qstar
work=build/test-work/selftrain_test; rm -rf "$work"; mkdir -p "$work"
tok=data/corpus/tokenizer.json

$Q selftrain --make-arith "$work/t.jsonl" --make-n 6 --digits 1-1 --seed 4 2>/dev/null
if [ "$(wc -l < "$work/t.jsonl")" = 6 ] && grep -q '"question": "[0-9] + [0-9]", "answer": "[0-9 ]*"' "$work/t.jsonl"; then
  ok "--make-arith writes 6 one-digit problems"; else bad "--make-arith output"; cat "$work/t.jsonl"; fi
err=$($Q selftrain --make-arith "$work/x.jsonl" --make-n 3 --digits 5-2 2>&1); rc=$?
if [ $rc = 1 ] && [ "$(echo "$err" | wc -l)" = 1 ] && echo "$err" | grep -q -- '--digits'; then ok "bad --digits: one line"
else bad "bad --digits: rc $rc [$err]"; fi

python3 tests/lib/make_shard.py "$work/d.bin" --random 1000 --tokens 20000 --seed 5
$Q train --config configs/tiny.json --tokenizer "$tok" --data "$work/d.bin" --out "$work/base" --steps 2 --batch 2 \
   --seq 32 > "$work/base.log" 2>&1 || bad "base model training failed: $(tail -1 "$work/base.log")"
base="$work/base/step_000002"
[ -f "$base/tokenizer.json" ] || cp "$tok" "$base/tokenizer.json"
common=(--method star --model "$base" --task arith --train "$work/t.jsonl" --test "$work/t.jsonl" --start-steps 80
        --grow 1 --batch 6 --seq 72 --max-tokens 56 --shots 0 --gold --lr 2e-3 --warmup 10)

$Q selftrain "${common[@]}" --out "$work/a" --iterations 2 --keep-all > "$work/a.log" 2>&1 || bad "2-iteration run failed: $(tail -1 "$work/a.log")"
m="$work/a/metrics.jsonl"
if [ -f "$m" ] && python3 - "$m" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert [r["iteration"] for r in recs] == [1, 2], recs
need = ["train_problems", "correct", "rationalized", "kept", "train_accuracy", "finetune_examples", "steps", "loss",
        "test_problems", "test_accuracy", "test_accuracy_by_digits", "generate_tokens_per_s", "finetune_tokens_per_s"]
for r in recs:
    missing = [k for k in need if k not in r]
    assert not missing, missing
a, b = recs
assert a["correct"] == 0 and a["kept"] == 0 and a["finetune_examples"] == 6 and a["steps"] == 80, a
assert a["test_accuracy"] > 0.5, ("M_1 did not learn the gold scratchpads", a)
assert b["correct"] >= 4 and b["kept"] == b["correct"] + b["rationalized"], b
assert b["finetune_examples"] == 6 + b["kept"], b
assert set(b["test_accuracy_by_digits"]) == {"1"}, b
PY
then ok "iteration 1 learns the gold scratchpads, iteration 2 keeps its correct generations; metrics fields"
else bad "metrics of the 2-iteration run"; cat "$m" 2>/dev/null; fi
g1="$work/a/generations_001.jsonl"
if [ "$(grep -c '"stage":"generate"' "$g1")" = 6 ] && [ "$(grep -c '"stage":"rationalize"' "$g1")" = 6 ]; then
  ok "iteration 1 generated and rationalized all 6 problems"; else bad "generations_001.jsonl"; head -3 "$g1"; fi
if grep -q '"stage":"generate".*"correct":true' "$work/a/generations_002.jsonl" && \
   grep -q '</scratch>' "$work/a/generations_002.jsonl"; then ok "iteration 2's completions carry scratchpads and are correct"
else bad "generations_002.jsonl"; head -2 "$work/a/generations_002.jsonl"; fi
# test_NNN.jsonl: M_n's test completions, each judged again here (the line after a "</scratch>" line), and
# their fraction right is the iteration's test_accuracy
if python3 - "$work/a" <<'PY'
import json, sys
w = sys.argv[1]
def answer(c):
    lines = c.split("\n")
    for i, l in enumerate(lines):
        s = l.lstrip(" \t")
        if s.startswith("</scratch>"):
            if s[10:].strip(" \r\t") or i + 1 == len(lines): return None
            return lines[i + 1].lstrip(" ").rstrip(" \r\t") or None
    return None
recs = [json.loads(l) for l in open(w + "/metrics.jsonl")]
for r in recs:
    t = [json.loads(l) for l in open(w + "/test_%03d.jsonl" % r["iteration"])]
    assert len(t) == r["test_problems"], (len(t), r["test_problems"])
    for e in t:
        assert e["correct"] == (answer(e["completion"]) == e["gold"]), e
    assert sum(e["correct"] for e in t) / len(t) == r["test_accuracy"], (r["iteration"], r["test_accuracy"])
PY
then ok "test_NNN.jsonl: every test completion, its verdict and the iteration's accuracy"
else bad "test_NNN.jsonl"; head -2 "$work/a/test_001.jsonl" 2>/dev/null; fi
complete=1
for d in iter_001 iter_002; do for f in model.safetensors config.json tokenizer.json; do
  [ -f "$work/a/$d/$f" ] || complete=0; done; done
[ -f "$work/a/state.json" ] || complete=0
if [ $complete = 1 ] && [ -z "$(ls -A "$work/a" | grep '^\.tmp')" ]; then ok "iteration checkpoints complete, no temp directories"
else bad "iteration checkpoints"; ls -la "$work/a"; fi

# resume: at an iteration boundary (1 iteration, then --resume --iterations 2), in the middle of an
# iteration after its generation (QSTAR_FAULT aborts there) and after its fine-tuning
same_as_a() {  # run dir, label
  if python3 - "$work/a/metrics.jsonl" "$1/metrics.jsonl" <<'PY'
import json, sys
strip = lambda r: {k: v for k, v in r.items() if not k.endswith("_per_s") and k != "seconds"}
a = [strip(json.loads(l)) for l in open(sys.argv[1])]
b = [strip(json.loads(l)) for l in open(sys.argv[2])]
assert a == b, (a, b)
PY
  then ok "$2: the same records as the uninterrupted run"; else bad "$2: records differ"; fi
  if cmp -s "$work/a/iter_002/model.safetensors" "$1/iter_002/model.safetensors"; then ok "$2: bitwise the same final weights"
  else bad "$2: final weights differ"; fi
}
$Q selftrain "${common[@]}" --out "$work/b" --iterations 1 > "$work/b1.log" 2>&1 || bad "first half failed"
QSTAR_FAULT=0:2:after_generate $Q selftrain --resume "$work/b" --iterations 2 > "$work/b2.log" 2>&1
rc=$?
if [ $rc != 0 ] && grep -q "aborting at after_generate" "$work/b2.log" && [ -f "$work/b/kept_002.jsonl" ] && \
   grep -q '"done":[[:space:]]*"generate"' "$work/b/state.json"; then ok "stopped after iteration 2's generation (state says so)"
else bad "the fault after generation did not stop the run as planned (rc $rc)"; fi
$Q selftrain --resume "$work/b" > "$work/b3.log" 2>&1 || bad "resume after generation failed: $(tail -1 "$work/b3.log")"
grep -q "resumed after generate" "$work/b3.log" || bad "the resumed run did not skip the generation"
same_as_a "$work/b" "resumed at an iteration boundary and after a generation"
if [ ! -e "$work/b/iter_001" ] && [ -d "$work/b/iter_002" ]; then ok "without --keep-all only the newest iteration's checkpoint stays"
else bad "iteration checkpoints left: $(ls "$work/b")"; fi
QSTAR_FAULT=0:1:after_finetune $Q selftrain "${common[@]}" --out "$work/c" --iterations 2 > "$work/c1.log" 2>&1
if grep -q "aborting at after_finetune" "$work/c1.log" && grep -q '"done":[[:space:]]*"finetune"' "$work/c/state.json"; then
  ok "stopped after iteration 1's fine-tuning"; else bad "the fault after fine-tuning did not stop the run"; fi
$Q selftrain --resume "$work/c" > "$work/c2.log" 2>&1 || bad "resume after fine-tuning failed: $(tail -1 "$work/c2.log")"
grep -q "resumed after finetune" "$work/c2.log" || bad "the resumed run did not skip the fine-tuning"
same_as_a "$work/c" "resumed after a fine-tuning"

# bad input: one line, exit 1
printf '{"question": "1 + 2", "answer": "3"}\n{"question": "1 + 2", "answer": "4"}\n' > "$work/bad.jsonl"
check_err() {  # name, expected substring, command...
  local name=$1 want=$2; shift 2
  local e; e=$("$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc = 1 ] && [ "$(printf '%s\n' "$e" | wc -l)" = 1 ] && printf '%s' "$e" | grep -qF -- "$want"; then ok "$name: one line"
  else bad "$name: rc $rc [$e]"; fi
}
check_err "malformed task file" "bad.jsonl:2: answer \"4\" is not the sum \"3\"" \
  $Q selftrain --method star --model "$base" --task arith --train "$work/bad.jsonl" --test "$work/t.jsonl" --out "$work/c"
check_err "unknown method" "unknown --method \"sft\"" \
  $Q selftrain --method sft --model "$base" --task arith --train "$work/t.jsonl" --test "$work/t.jsonl" --out "$work/c"
check_err "unknown task" "unknown --task" \
  $Q selftrain --model "$base" --task cqa --train "$work/t.jsonl" --test "$work/t.jsonl" --out "$work/c"
check_err "missing options" "are required" $Q selftrain --task arith
check_err "resume of a non-run" "no state.json" $Q selftrain --resume "$work/nothing"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
