#!/usr/bin/env bash
# `qstar generate` end to end on tiny models the test trains itself (a base model and a Quiet-STaR
# continuation, both on the bundled corpus tokenizer):
#  - one output line per (prompt, sample) in input order, with id, sample, completion, tokens and
#    finish_reason; ids kept from the input or numbered;
#  - the same seed gives the same file at --batch 1, 3 and 16 (a request's tokens do not depend on
#    its batch-mates), another seed other samples, samples of one prompt differ from each other;
#  - sample 0 of every prompt equals what `qstar sample` prints for it, with and without thoughts;
#  - --stop cuts the completion before the stop string and ends the request there;
#  - on the emu backend (the CUDA kernels on the CPU emulator): the same greedy tokens as on cpu;
#  - bad input files: one line naming the file and line, exit status 1.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
work=build/test-work/generate_cmd; rm -rf "$work"; mkdir -p "$work"
Q=bin/qstar
tok=data/corpus/tokenizer.json
# threads that wait by spinning only burn the shared cores (qstar runs many short parallel regions)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
PY=python3

$PY tests/lib/make_shard.py "$work/d.bin" --random 1000 --tokens 20000 --seed 5
$Q train --config configs/tiny.json --tokenizer "$tok" --data "$work/d.bin" --out "$work/base" --steps 3 --batch 2 \
   --seq 32 > "$work/base.log" 2>&1 || bad "base model training failed: $(tail -1 "$work/base.log")"
base="$work/base/step_000003"
[ -f "$base/tokenizer.json" ] || cp "$tok" "$base/tokenizer.json"
$Q train --model "$base" --mode quietstar --tokenizer "$tok" --data "$work/d.bin" --out "$work/qs" --steps 2 --batch 1 \
   --seq 16 --n-ahead 6 --n-ahead-talk 2 --lr 1e-3 --warmup 0 > "$work/qs.log" 2>&1 \
   || bad "quietstar training failed: $(tail -1 "$work/qs.log")"
qs="$work/qs/step_000002"
# The models sample byte-fallback tokens freely, whose text qstar sample (printing as the text grows)
# and a whole decode render differently; without the ByteFallback decoder every token decodes to its
# own text, so the printed text and the completion can be compared exactly.
for d in "$base" "$qs"; do
  $PY - "$d/tokenizer.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
t["model"]["byte_fallback"] = False
t["decoder"]["decoders"] = [d for d in t["decoder"]["decoders"] if d["type"] != "ByteFallback"]
json.dump(t, open(sys.argv[1], "w"), ensure_ascii=False)
PY
done

cat > "$work/p.jsonl" <<'EOF'
{"prompt": "Compute 347 + 589.", "id": "add"}
{"prompt": "x"}

{"prompt": "The sum of the first ten positive integers is 55, because pairing 1 with 10, 2 with 9 and so on gives five pairs of 11.", "id": 17}
{"prompt": "Solve for y: 3y - 7 = 11. Subtract"}
EOF
n_prompts=4
common=(--ckpt "$base" --in "$work/p.jsonl" --samples 3 --temperature 1 --top-p 0.9 --max-tokens 12 --seed 7)
$Q generate "${common[@]}" --batch 3 --out "$work/b3.jsonl" 2> "$work/b3.err" || bad "generate failed: $(tail -1 "$work/b3.err")"
$Q generate "${common[@]}" --batch 1 --out "$work/b1.jsonl" 2> /dev/null || bad "generate --batch 1 failed"
$Q generate "${common[@]}" --batch 16 --out "$work/b16.jsonl" 2> /dev/null || bad "generate --batch 16 failed"
$Q generate "${common[@]}" --batch 3 --out "$work/b3again.jsonl" 2> /dev/null || bad "generate (again) failed"
$Q generate "${common[@]}" --batch 3 --seed 8 --out "$work/seed8.jsonl" 2> /dev/null || bad "generate --seed 8 failed"
grep -q "generate: 4 prompts x 3 samples, [0-9]* tokens in .* tokens/s" "$work/b3.err" && ok "summary line with tokens/s" \
  || bad "summary line: $(cat "$work/b3.err")"

if $PY - "$work/b3.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 12, len(rows)
assert [r["id"] for r in rows] == ["add"] * 3 + [1] * 3 + [17] * 3 + [3] * 3, [r["id"] for r in rows]
assert [r["sample"] for r in rows] == [0, 1, 2] * 4
for r in rows:
    assert set(r) == {"id", "sample", "completion", "tokens", "finish_reason"}, r
    assert r["finish_reason"] in ("stop", "length") and 1 <= len(r["tokens"]) <= 12, r
    assert (r["finish_reason"] == "length") == (len(r["tokens"]) == 12), r
    assert isinstance(r["completion"], str) and all(isinstance(t, int) for t in r["tokens"])
for p in range(4):
    toks = [tuple(rows[3 * p + k]["tokens"]) for k in range(3)]
    assert len(set(toks)) == 3, f"prompt {p}: samples repeat {toks}"
PY
then ok "12 lines (4 prompts x 3 samples) in order, ids kept or numbered, every field, samples differ"
else bad "output format"; fi
cmp -s "$work/b3.jsonl" "$work/b3again.jsonl" && ok "same seed: same output" || bad "same seed, different output"
cmp -s "$work/b3.jsonl" "$work/b1.jsonl" && cmp -s "$work/b3.jsonl" "$work/b16.jsonl" \
  && ok "batch 1, 3 and 16 give the same output" || bad "output depends on the batch size"
cmp -s "$work/b3.jsonl" "$work/seed8.jsonl" && bad "another seed gives the same output" || ok "another seed, other samples"

# sample 0 of each prompt == qstar sample (which prints the decoded prompt, then the completion)
check_sample() {  # $1 ckpt, $2 generate output, $3.. extra options for both
  local ck=$1 outf=$2; shift 2
  local i=0 good=1 line prompt
  while IFS= read -r line; do
    [ -z "$line" ] && continue
    prompt=$($PY -c 'import json,sys; print(json.loads(sys.argv[1])["prompt"], end="")' "$line")
    $Q sample --ckpt "$ck" --prompt "$prompt" --max-tokens 12 --seed 7 "$@" > "$work/s$i.txt" 2>&1 || good=0
    $PY - "$work/s$i.txt" "$outf" "$i" "$prompt" <<'PY' || good=0
import json, sys
printed = open(sys.argv[1]).read()
rows = [json.loads(l) for l in open(sys.argv[2])]
r = [r for r in rows if r["sample"] == 0][int(sys.argv[3])]
prompt = sys.argv[4]
# qstar sample prints the decoded prompt (the prompt itself: ASCII, SentencePiece-style decoder), the
# completion as it grows (a space between them when the completion starts with one) and a newline.
if printed not in (prompt + r["completion"] + "\n", prompt + " " + r["completion"] + "\n") or not r["completion"]:
    sys.exit(f"prompt {sys.argv[3]}: qstar sample printed {printed!r}, generate {r['completion']!r}")
PY
    i=$((i+1))
  done < "$work/p.jsonl"
  [ $good = 1 ] && [ $i = $n_prompts ]
}
check_sample "$base" "$work/b3.jsonl" --temperature 1 --top-p 0.9 && ok "sample 0 == qstar sample (temperature 1, top-p 0.9)" \
  || bad "generate's sample 0 differs from qstar sample"

# Quiet-STaR: thinking before every token, batched
qcommon=(--ckpt "$qs" --in "$work/p.jsonl" --samples 2 --temperature 1 --max-tokens 12 --seed 7 --thoughts)
$Q generate "${qcommon[@]}" --batch 8 --out "$work/t8.jsonl" 2> "$work/t8.err" || bad "generate --thoughts failed: $(tail -1 "$work/t8.err")"
$Q generate "${qcommon[@]}" --batch 1 --out "$work/t1.jsonl" 2> /dev/null || bad "generate --thoughts --batch 1 failed"
cmp -s "$work/t8.jsonl" "$work/t1.jsonl" && ok "thoughts: batch 1 and 8 give the same output" || bad "thoughts: output depends on the batch"
$Q generate --ckpt "$qs" --in "$work/p.jsonl" --temperature 1 --max-tokens 12 --seed 7 --out "$work/nothink.jsonl" 2> /dev/null
cmp -s "$work/t8.jsonl" "$work/nothink.jsonl" && bad "thinking changes nothing" || ok "thinking changes the completions"
check_sample "$qs" "$work/t8.jsonl" --temperature 1 --thoughts --hide-thoughts && ok "thoughts: sample 0 == qstar sample --thoughts" \
  || bad "thoughts: generate's sample 0 differs from qstar sample --thoughts"
$Q generate --ckpt "$base" --in "$work/p.jsonl" --out "$work/x.jsonl" --thoughts 2> "$work/x.err" && bad "--thoughts on a base model accepted" \
  || { grep -q "needs a Quiet-STaR checkpoint" "$work/x.err" && ok "--thoughts on a base model: clear error"; } || bad "--thoughts error: $(cat "$work/x.err")"

# --stop: take a piece of a completion as the stop string
stop=$($PY -c '
import json, sys
r = json.loads(open(sys.argv[1]).readline())
c = r["completion"]
print(c[len(c) // 2 : len(c) // 2 + 2], end="")' "$work/b3.jsonl")
$Q generate "${common[@]}" --batch 4 --stop "$stop" --out "$work/stop.jsonl" 2> /dev/null || bad "generate --stop failed"
if $PY - "$work/b3.jsonl" "$work/stop.jsonl" "$stop" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
stop = sys.argv[3]
assert len(stop) == 2 and len(a) == len(b)
n_cut = 0
for x, y in zip(a, b):
    if stop in x["completion"]:
        n_cut += 1
        assert y["finish_reason"] == "stop" and y["completion"] == x["completion"][:x["completion"].index(stop)], (x, y)
        assert y["tokens"] == x["tokens"][:len(y["tokens"])] and len(y["tokens"]) <= len(x["tokens"]), (x, y)
    else:
        assert y == x, (x, y)
assert n_cut >= 1
print(f"stop {stop!r}: {n_cut} of {len(a)} completions cut")
PY
then ok "--stop cuts completions before the stop string, others unchanged"; else bad "--stop"; fi

# the CUDA kernels on the emulator (bin/qstar-emu, built by make tests): the same greedy tokens as
# the CPU, thinking, at batch 4; and the batched-generation unit test on the emu backend
if [ -x bin/qstar-emu ]; then
  ecommon=(--ckpt "$qs" --in "$work/p.jsonl" --samples 2 --temperature 0 --max-tokens 5 --seed 7 --thoughts --batch 4)
  bin/qstar-emu generate "${ecommon[@]}" --device emu --out "$work/emu.jsonl" 2> "$work/emu.err" \
    || bad "generate on emu failed: $(tail -1 "$work/emu.err")"
  $Q generate "${ecommon[@]}" --out "$work/cpu.jsonl" 2> /dev/null || bad "generate on cpu failed"
  cmp -s "$work/emu.jsonl" "$work/cpu.jsonl" && ok "emu backend: the same greedy tokens as cpu, with thoughts" \
    || bad "emu backend: tokens differ from cpu"
  QSTAR_TEST_DEVICE=emu build/tests/test_generate_batch > "$work/batch_emu.log" 2>&1 \
    && ok "emu backend: test_generate_batch ($(tail -1 "$work/batch_emu.log"))" \
    || bad "emu backend: test_generate_batch: $(grep -m1 FAIL "$work/batch_emu.log")"
else
  echo "skipped: emu backend checks (bin/qstar-emu not built; make tests builds it)"
fi

# bad input: one line naming the file (and line), exit status 1
expect_error() {  # $1 description, $2 file content, $3 expected message part
  printf '%s' "$2" > "$work/bad.jsonl"
  $Q generate --ckpt "$base" --in "$work/bad.jsonl" --out "$work/bad.out" > "$work/bad.stdout" 2> "$work/bad.err"
  local rc=$?
  if [ $rc = 1 ] && [ "$(wc -l < "$work/bad.err")" = 1 ] && grep -q "^qstar: error: $work/bad.jsonl: $3" "$work/bad.err" \
     && [ ! -e "$work/bad.out" ]; then ok "bad input: $1"
  else bad "bad input: $1 (rc $rc): $(cat "$work/bad.err")"; fi
}
expect_error "not JSON" '{"prompt": "a"}
{"prompt": "b"
' "line 2: not a JSON object"
expect_error "no prompt" '{"text": "a"}
' "line 1: no \"prompt\" field"
expect_error "prompt not a string" '{"prompt": "a"}

{"prompt": 3}
' "line 3: \"prompt\" is not a string"
expect_error "bad id" '{"prompt": "a", "id": [1]}
' "line 1: \"id\" must be a string or a number"
expect_error "empty file" '' "no prompts"
$Q generate --ckpt "$base" --in "$work/missing.jsonl" --out "$work/bad.out" 2> "$work/bad.err"
[ $? = 1 ] && grep -q "^qstar: error: $work/missing.jsonl: " "$work/bad.err" && ok "bad input: missing file" \
  || bad "bad input: missing file: $(cat "$work/bad.err")"
$Q generate --ckpt "$base" --in "$work/p.jsonl" --out "$work/bad.out" --top-p 0 2> "$work/bad.err"
[ $? = 1 ] && grep -q "^qstar: error: generate: need" "$work/bad.err" && ok "bad option value: --top-p 0" || bad "--top-p 0: $(cat "$work/bad.err")"

echo "$pass passed, $fail failed"
[ $fail = 0 ]
