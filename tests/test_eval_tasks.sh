#!/usr/bin/env bash
# `qstar eval --task gsm8k|csqa` on small files the test writes itself (never ../shared/data):
#  - soft accuracy against an independent implementation (tests/ref/soft_accuracy_reference.py:
#    transformers + tokenizers on a tiny random Mistral model with the corpus tokenizer): the same
#    valid answer ids, every question's score within 1e-4 relative, the accuracy within 1e-4;
#  - CommonsenseQA's official and flattened layouts give the same result; --limit; --json fields;
#  - a Quiet-STaR checkpoint reports both: with a zero mixing head (lr 0) the thought accuracy equals
#    the accuracy and both equal the base model's; after training they differ;
#  - cot-maj: with --votes 1 --temperature 0 each question's reasoning and answer are what
#    `qstar generate` makes greedily from the same prompts; votes, extraction and majority
#    re-derived in Python from --details; thoughts;
#  - bad input: one line "qstar: error: FILE:LINE: problem", exit status 1.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
work=build/test-work/eval_tasks; rm -rf "$work"; mkdir -p "$work"
Q=bin/qstar
PY=.venv/bin/python
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} PYTHONWARNINGS=ignore TRANSFORMERS_VERBOSITY=error
tok=data/corpus/tokenizer.json

# ---- the task files, in the official formats ------------------------------------------------------
cat > "$work/gsm.jsonl" <<'EOF'
{"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?", "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"}
{"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?", "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"}

{"question": "A farm has 1,250 hens.\nHow many legs do they have?", "answer": "Each hen has 2 legs.\n#### 2,500"}
{"question": "Tom had 7 apples and ate 7. How many are left?", "answer": "7-7=0 #### wrong\n#### 0", "extra": [1, 2]}
{"question": "What is 9 times 8?", "answer": "#### 72"}
EOF
cat > "$work/csqa_official.jsonl" <<'EOF'
{"answerKey": "A", "id": "075e483d21c29a511267ef62bedc0461", "question": {"question_concept": "punishing", "choices": [{"label": "A", "text": "ignore"}, {"label": "B", "text": "enforce"}, {"label": "C", "text": "authoritarian"}, {"label": "D", "text": "yell at"}, {"label": "E", "text": "avoid"}], "stem": "The sanctions against the school were a punishing blow, and they seemed to what the efforts the school had made to change?"}}
{"answerKey": "B", "id": "61fe6e879ff18686d7552425a36344c8", "question": {"question_concept": "people", "choices": [{"label": "A", "text": "race track"}, {"label": "B", "text": "populated areas"}, {"label": "C", "text": "the desert"}, {"label": "D", "text": "apartment"}, {"label": "E", "text": "roadblock"}], "stem": "Sammy wanted to go to where the people were.  Where might he go?"}}
{"answerKey": "E", "id": "4c1cb0e95b99f72d55c068ba0255c15d", "question": {"question_concept": "choker", "choices": [{"label": "A", "text": "jewelry store"}, {"label": "B", "text": "neck"}, {"label": "C", "text": "jewlery box"}, {"label": "D", "text": "jewelry box"}, {"label": "E", "text": "boutique"}], "stem": "To locate a choker not located in a jewelry box or boutique where would you go?"}}
EOF
$PY - "$work/csqa_official.jsonl" "$work/csqa_flat.jsonl" <<'PY'
import json, sys
with open(sys.argv[2], "w") as f:
    for line in open(sys.argv[1]):
        o = json.loads(line)
        q = o["question"]
        f.write(json.dumps({"id": o["id"], "question": q["stem"], "question_concept": q["question_concept"],
                            "choices": {"label": [c["label"] for c in q["choices"]],
                                        "text": [c["text"] for c in q["choices"]]},
                            "answerKey": o["answerKey"]}) + "\n")
PY

# ---- soft accuracy against the reference -----------------------------------------------------------
if [ ! -x "$PY" ]; then
  bad "SKIP reference: .venv missing (run make deps)"
else
  if $PY tests/ref/soft_accuracy_reference.py make-model "$work/m" --tokenizer "$tok" > "$work/make.log" 2>&1; then
    for t in gsm8k:gsm csqa:csqa_official; do
      task=${t%%:*}; f="$work/${t#*:}.jsonl"
      $PY tests/ref/soft_accuracy_reference.py score "$work/m" --task "$task" --data "$f" --json "$work/ref_$task.json" \
        > "$work/ref_$task.log" 2>&1 || { bad "$task: reference failed: $(tail -1 "$work/ref_$task.log")"; continue; }
      $Q eval --task "$task" --data "$f" --ckpt "$work/m" --json "$work/q_$task.json" --details "$work/qd_$task.jsonl" \
        > "$work/q_$task.log" 2> "$work/q_$task.err" || { bad "$task: qstar eval failed: $(tail -1 "$work/q_$task.err")"; continue; }
      if msg=$($PY - "$work/ref_$task.json" "$work/q_$task.json" "$work/qd_$task.jsonl" 2>&1 <<'PY'
import json, sys
ref = json.load(open(sys.argv[1])); q = json.load(open(sys.argv[2]))
d = [json.loads(l) for l in open(sys.argv[3])]
assert q["settings"]["valid_tokens"] == ref["valid_tokens"], (q["settings"]["valid_tokens"], ref["valid_tokens"])
assert q["n"] == ref["n"] == len(d), (q["n"], ref["n"], len(d))
worst = 0.0
for a, b in zip(ref["scores"], d):
    r = abs(a - b["score"]) / max(abs(a), 1e-30)
    worst = max(worst, r)
    assert r <= 1e-4, f"question {b['index']}: qstar {b['score']} vs reference {a}"
diff = abs(q["accuracy"] - ref["accuracy"])
assert diff <= 1e-4, (q["accuracy"], ref["accuracy"])
assert min(ref["scores"]) > 0 and all(b["scored_tokens"] > 0 for b in d)
print(f"accuracy {q['accuracy']:.6g} vs {ref['accuracy']:.6g} (|diff| {diff:.2g}), worst per-question relative {worst:.2g}")
PY
      ); then ok "$task soft: qstar equals transformers: $msg"; else bad "$task soft: $msg"; fi
    done
    # the grouping of questions into batches (by length) changes no score
    $Q eval --task gsm8k --data "$work/gsm.jsonl" --ckpt "$work/m" --batch 1 --details "$work/qd_b1.jsonl" > /dev/null 2>&1
    $Q eval --task gsm8k --data "$work/gsm.jsonl" --ckpt "$work/m" --batch 3 --details "$work/qd_b3.jsonl" > /dev/null 2>&1
    $PY - "$work/qd_gsm8k.jsonl" "$work/qd_b1.jsonl" "$work/qd_b3.jsonl" <<'PY' && ok "soft scores the same at --batch 1, 3, 4 (length-sorted batches, padding)" || bad "soft scores depend on --batch"
import json, sys
a, b, c = ([json.loads(l) for l in open(p)] for p in sys.argv[1:4])
assert len(a) == len(b) == len(c) == 5
for x, y, z in zip(a, b, c):
    assert x["index"] == y["index"] == z["index"] and x["line"] == y["line"] == z["line"]
    # 1e-5: a GEMM over a different number of rows may take another kernel (kernels/cpu/matmul.c: up to
    # 32 rows a fixed-order block kernel, more rows OpenBLAS) whose sums round differently, a few ulps per
    # product (measured 2.9e-6 after the model's layers); a batching bug (padding or a row leaking into
    # another) moves a score by orders of magnitude more
    for w in (y, z): assert abs(x["score"] - w["score"]) <= 1e-5 * x["score"], (x, w)
PY
    # the reference's Mistral lists, from the same rule on a Mistral-style tokenizer: digits bare, letters "▁A" (else bare)
    $PY - "$work/m/tokenizer.json" "$work/q_gsm8k.json" "$work/q_csqa.json" <<'PY' && ok "valid ids: bare digits, '▁A'..'▁E' where they exist, '<0x0A>' (the reference's Mistral lists by the same rule)" || bad "valid ids are not the tokens the reference's rule picks"
import json, sys
v = json.load(open(sys.argv[1]))["model"]["vocab"]
g = json.load(open(sys.argv[2]))["settings"]["valid_tokens"]; c = json.load(open(sys.argv[3]))["settings"]["valid_tokens"]
assert g == [v[d] for d in "1234567890"] + [v["<0x0A>"]], g
assert c == [v.get("▁" + l, v.get(l)) for l in "ABCDE"] + [v["<0x0A>"]], c  # "▁X" where the vocabulary has it
PY
    # the two CommonsenseQA layouts
    $Q eval --task csqa --data "$work/csqa_flat.jsonl" --ckpt "$work/m" --json "$work/q_flat.json" > /dev/null 2>&1 \
      && $PY -c "import json,sys; a=json.load(open(sys.argv[1]));b=json.load(open(sys.argv[2])); sys.exit(a['accuracy']!=b['accuracy'] or a['n']!=3)" \
           "$work/q_flat.json" "$work/q_csqa.json" && ok "csqa: flattened layout = official layout" || bad "csqa: layouts differ"
    # --limit, the JSON's fields, the progress line. One question per batch here as in qd_b1.jsonl, so
    # each question is the same computation in both runs and their scores agree to the last bit: with
    # other batches around them the GEMMs run over other row counts, and OpenBLAS's sgemm (whose kernel
    # it picks from the CPU at run time) rounds a row differently with the row count (measured: 79 of 80
    # counts differ from M=80 on its Haswell/Zen kernel, 12 of 80 on SkylakeX), the 1e-5 above.
    $Q eval --task gsm8k --data "$work/gsm.jsonl" --ckpt "$work/m" --batch 1 --limit 2 --json "$work/lim.json" > "$work/lim.log" 2> "$work/lim.err"
    if $PY - "$work/lim.json" "$work/qd_b1.jsonl" <<'PY'
import json, sys
o = json.load(open(sys.argv[1])); d = [json.loads(l) for l in open(sys.argv[2])]
assert o["n"] == 2 and o["task"] == "gsm8k" and o["metric"] == "soft" and o["thought_accuracy"] is None, o
assert abs(o["accuracy"] - (d[0]["score"] + d[1]["score"]) / 2) < 1e-12, o
for k in ("ckpt", "data", "seed", "seq", "limit", "valid_tokens"): assert k in o["settings"], k
PY
    then ok "--limit 2 scores the first two; JSON has task, metric, n, accuracy, thought_accuracy, settings"
    else bad "--limit / JSON fields: $(cat "$work/lim.json")"; fi
    grep -q "eval gsm8k soft: 2/2 questions, [0-9.]* questions/s, accuracy" "$work/lim.err" && ok "progress line (questions/s, running accuracy)" \
      || bad "progress line: $(cat "$work/lim.err")"

    # ---- Quiet-STaR checkpoints: with and without thoughts --------------------------------------------
    python3 tests/lib/make_shard.py "$work/d.bin" --random 1000 --tokens 8000 --seed 5
    qsargs=(--model "$work/m" --mode quietstar --tokenizer "$tok" --data "$work/d.bin" --batch 1 --seq 16 --n-ahead 6 --n-ahead-talk 2 --warmup 0)
    $Q train "${qsargs[@]}" --out "$work/qs0" --steps 1 --lr 0 > "$work/qs0.log" 2>&1 || bad "quietstar (lr 0) training failed"
    $Q train "${qsargs[@]}" --out "$work/qs1" --steps 2 --lr 1e-2 > "$work/qs1.log" 2>&1 || bad "quietstar training failed"
    $Q eval --task gsm8k --data "$work/gsm.jsonl" --ckpt "$work/qs0/step_000001" --json "$work/qs0.json" > "$work/qs0e.log" 2>&1
    $Q eval --task csqa --data "$work/csqa_flat.jsonl" --ckpt "$work/qs1/step_000002" --json "$work/qs1.json" > "$work/qs1e.log" 2>&1
    $Q eval --task csqa --data "$work/csqa_flat.jsonl" --ckpt "$work/qs1/step_000002" --no-thoughts --json "$work/qs1n.json" > /dev/null 2>&1
    if $PY - "$work/qs0.json" "$work/q_gsm8k.json" "$work/qs1.json" "$work/qs1n.json" <<'PY'
import json, sys
z, base, t, n = (json.load(open(p)) for p in sys.argv[1:5])
assert z["thought_accuracy"] == z["accuracy"], z          # mixing head zero: the mixed prediction is the base one
assert abs(z["accuracy"] - base["accuracy"]) <= 1e-6 * base["accuracy"], (z, base)  # two more vocabulary rows change nothing
assert 0 <= t["thought_accuracy"] <= 1 and t["thought_accuracy"] != t["accuracy"], t
assert n["thought_accuracy"] is None and n["accuracy"] == t["accuracy"], (n, t)
PY
    then ok "Quiet-STaR: zero mixing head gives thought accuracy = accuracy = base model's; trained: both reported, differ; --no-thoughts"
    else bad "Quiet-STaR accuracies: $(cat "$work/qs0.json" "$work/qs1.json")"; fi
    grep -q "accuracy with thoughts" "$work/qs1e.log" && ok "table shows with/without thoughts" || bad "table: $(cat "$work/qs1e.log")"

    # ---- cot-maj ------------------------------------------------------------------------------------
    cot=(--task gsm8k --metric cot-maj --data "$work/gsm.jsonl" --ckpt "$work/m" --max-tokens 10 --answer-tokens 5)
    if $Q eval "${cot[@]}" --votes 1 --temperature 0 --details "$work/cot1.jsonl" --json "$work/cot1.json" > "$work/cot1.log" 2>&1; then
      # the same prompts through qstar generate (greedy)
      $PY - "$work/gsm.jsonl" "$work/p1.jsonl" <<'PY'
import json, sys
with open(sys.argv[2], "w") as f:
    for l in open(sys.argv[1]):
        if l.strip(): f.write(json.dumps({"prompt": "Q: " + json.loads(l)["question"] + "\nA: Let's think step by step."}) + "\n")
PY
      $Q generate --ckpt "$work/m" --in "$work/p1.jsonl" --out "$work/g1.jsonl" --temperature 0 --max-tokens 10 2> /dev/null
      $PY - "$work/p1.jsonl" "$work/g1.jsonl" "$work/cot1.jsonl" "$work/p2.jsonl" <<'PY'
import json, sys
p = [json.loads(l)["prompt"] for l in open(sys.argv[1])]
g = [json.loads(l)["completion"] for l in open(sys.argv[2])]
d = [json.loads(l) for l in open(sys.argv[3])]
with open(sys.argv[4], "w") as f:
    for i, (pp, gg, dd) in enumerate(zip(p, g, d)):
        cut = [gg.find(s) for s in ("Q:", "\n\n\n") if s in gg]
        want = gg[:min(cut)] if cut else gg
        assert dd["votes"][0]["reasoning"] == want, (i, dd["votes"][0]["reasoning"], want)
        f.write(json.dumps({"prompt": (pp + want).rstrip() + "\nTherefore, the answer (arabic numerals) is"}) + "\n")
PY
      [ $? = 0 ] && ok "cot-maj greedy reasoning = qstar generate's" || bad "cot-maj reasoning differs from qstar generate"
      $Q generate --ckpt "$work/m" --in "$work/p2.jsonl" --out "$work/g2.jsonl" --temperature 0 --max-tokens 5 2> /dev/null
      $PY - "$work/g2.jsonl" "$work/cot1.jsonl" <<'PY' && ok "cot-maj greedy final answer = qstar generate's" || bad "cot-maj final answer differs"
import json, sys
g = [json.loads(l)["completion"] for l in open(sys.argv[1])]
d = [json.loads(l) for l in open(sys.argv[2])]
assert [x["votes"][0]["answer"] for x in d] == g, ([x["votes"][0]["answer"] for x in d], g)
PY
    else
      bad "cot-maj (greedy) failed: $(tail -1 "$work/cot1.log")"
    fi
    $Q eval "${cot[@]}" --votes 3 --temperature 0.9 --seed 3 --details "$work/cot3.jsonl" --json "$work/cot3.json" > "$work/cot3.log" 2>&1 \
      || bad "cot-maj --votes 3 failed: $(tail -1 "$work/cot3.log")"
    $Q eval "${cot[@]}" --votes 3 --temperature 0.9 --seed 3 --batch 2 --details "$work/cot3b.jsonl" > /dev/null 2>&1
    cmp -s "$work/cot3.jsonl" "$work/cot3b.jsonl" && ok "cot-maj deterministic for a seed at any --batch" || bad "cot-maj depends on --batch"
    $PY - "$work/cot3.jsonl" "$work/cot3.json" "$work/gsm.jsonl" <<'PY' && ok "cot-maj: extraction, vote and gold re-derived in Python" || bad "cot-maj: votes/extraction/majority disagree with Python"
import json, re, sys
from collections import Counter
def first_int(s):
    m = re.search(r"\d+", s.replace(",", ""))
    return str(int(m.group())) if m else None
d = [json.loads(l) for l in open(sys.argv[1])]
o = json.load(open(sys.argv[2]))
gold = [first_int(json.loads(l)["answer"].split("#### ")[-1]) for l in open(sys.argv[3]) if l.strip()]
assert [x["gold"] for x in d] == gold == ["72", "10", "2500", "0", "72"], [x["gold"] for x in d]
right = 0
for x in d:
    ex = [first_int(v["answer"]) for v in x["votes"]]
    assert ex == [v["extracted"] for v in x["votes"]], (ex, x)
    maj = Counter(ex).most_common(1)[0][0]
    assert maj == x["majority"] and x["correct"] == (maj == x["gold"]), x
    right += x["correct"]
    assert len(set(v["reasoning"] + v["answer"] for v in x["votes"])) > 1, "votes at temperature 0.9 all equal"
assert o["n"] == 5 and abs(o["accuracy"] - right / 5) < 1e-12 and o["metric"] == "cot-maj", o
assert o["settings"]["votes"] == 3 and o["settings"]["temperature"] == 0.9, o
PY
    $Q eval --task gsm8k --metric cot-maj --data "$work/gsm.jsonl" --ckpt "$work/qs1/step_000002" --limit 2 --votes 2 --max-tokens 4 \
       --answer-tokens 3 --thoughts --details "$work/cott.jsonl" > "$work/cott.log" 2>&1 \
      && [ "$(wc -l < "$work/cott.jsonl")" = 2 ] && ok "cot-maj --thoughts on a Quiet-STaR checkpoint" || bad "cot-maj --thoughts: $(tail -1 "$work/cott.log")"
  else
    bad "reference model: $(tail -1 "$work/make.log")"
  fi
fi

# ---- the same reference on a real model and a byte-level tokenizer (when make smollm2 has run) ----------
sm=${SMOLLM2_DIR:-runs/models/smollm2-135m-instruct}
if [ -x "$PY" ] && [ -f "$sm/config.json" ] && [ -f "$sm/tokenizer.json" ]; then
  head -n 3 "$work/gsm.jsonl" > "$work/gsm3.jsonl"
  for t in gsm8k:gsm3 csqa:csqa_flat; do
    task=${t%%:*}; f="$work/${t#*:}.jsonl"
    $PY tests/ref/soft_accuracy_reference.py score "$sm" --task "$task" --data "$f" --json "$work/sm_ref_$task.json" > /dev/null 2>&1
    $Q eval --task "$task" --data "$f" --ckpt "$sm" --json "$work/sm_q_$task.json" > /dev/null 2>&1
    if msg=$($PY - "$work/sm_ref_$task.json" "$work/sm_q_$task.json" 2>&1 <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); q = json.load(open(sys.argv[2]))
assert q["settings"]["valid_tokens"] == r["valid_tokens"], (q["settings"]["valid_tokens"], r["valid_tokens"])
d = abs(q["accuracy"] - r["accuracy"]); assert d <= 1e-4, (q["accuracy"], r["accuracy"])
print(f"accuracy {q['accuracy']:.6g} vs {r['accuracy']:.6g} (|diff| {d:.2g})")
PY
    ); then ok "SmolLM2 $task soft: qstar equals transformers: $msg"; else bad "SmolLM2 $task soft: $msg"; fi
  done
else
  echo "skipped: SmolLM2 soft-accuracy check ($sm missing: make smollm2)"
fi

# ---- bad input -------------------------------------------------------------------------------------
ck="$work/m"; [ -f "$ck/config.json" ] || ck=nonexistent
expect_error() {  # name, expected message (grep -E), task, file content
  local name=$1 want=$2 task=$3 f="$work/bad_$1.jsonl"
  printf '%s' "$4" > "$f"
  local out; out=$($Q eval --task "$task" --data "$f" --ckpt "$ck" 2>&1 >/dev/null); local rc=$?
  if [ $rc = 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && printf '%s' "$out" | grep -qE "^qstar: error: $want"; then
    ok "bad input ($name): $out"
  else
    bad "bad input ($name): rc $rc: $out"
  fi
}
g_ok='{"question": "q", "answer": "#### 1"}'
expect_error notjson "$work/bad_notjson.jsonl:2: not a JSON object" gsm8k "$g_ok
{\"question\": "
expect_error noquestion "$work/bad_noquestion.jsonl:1: no \"question\" field" gsm8k '{"answer": "#### 3"}'
expect_error qnotstring "$work/bad_qnotstring.jsonl:1: \"question\" is not a string" gsm8k '{"question": 3, "answer": "#### 3"}'
expect_error noanswer "$work/bad_noanswer.jsonl:3: no \"answer\" field" gsm8k "$g_ok

{\"question\": \"q\"}"
expect_error nohash "$work/bad_nohash.jsonl:1: the answer has no \"#### N\"" gsm8k '{"question": "q", "answer": "it is 3"}'
expect_error nonumber "$work/bad_nonumber.jsonl:1: no number after" gsm8k '{"question": "q", "answer": "#### three"}'
expect_error empty "$work/bad_empty.jsonl: no questions" gsm8k '

'
c_ok='{"question": {"stem": "s", "choices": [{"label": "A", "text": "a"}, {"label": "B", "text": "b"}]}, "answerKey": "B"}'
expect_error nokey "$work/bad_nokey.jsonl:2: no \"answerKey\"" csqa "$c_ok
{\"question\": {\"stem\": \"s\", \"choices\": [{\"label\": \"A\", \"text\": \"a\"}]}}"
expect_error emptykey "$work/bad_emptykey.jsonl:1: \"answerKey\" is empty" csqa '{"question": {"stem": "s", "choices": [{"label": "A", "text": "a"}]}, "answerKey": ""}'
expect_error keynotlabel "$work/bad_keynotlabel.jsonl:1: \"answerKey\" \"C\" is not one of" csqa "${c_ok/\"B\"\}/\"C\"\}}"
expect_error nostem "$work/bad_nostem.jsonl:1: no \"stem\" field" csqa '{"question": {"choices": []}, "answerKey": "A"}'
expect_error choicesnotlist "$work/bad_choicesnotlist.jsonl:1: \"question.choices\" is not a list" csqa '{"question": {"stem": "s", "choices": {}}, "answerKey": "A"}'
expect_error flatmismatch "$work/bad_flatmismatch.jsonl:1: 2 choice labels but 1 choice texts" csqa '{"question": "s", "choices": {"label": ["A", "B"], "text": ["a"]}, "answerKey": "A"}'
expect_error flatnochoices "$work/bad_flatnochoices.jsonl:1: no \"choices\" field" csqa '{"question": "s", "answerKey": "A"}'
expect_error labelF "$work/bad_labelF.jsonl:1: choice label \"F\" is not one of A-E" csqa '{"question": "s", "choices": {"label": ["A", "F"], "text": ["a", "f"]}, "answerKey": "A"}'
expect_error qnumber "$work/bad_qnumber.jsonl:1: \"question\" is neither" csqa '{"question": 5, "answerKey": "A"}'
expect_error badtask "eval: unknown --task \"mmlu\"" mmlu "$g_ok"
out=$($Q eval --task csqa --metric cot-maj --data "$work/csqa_flat.jsonl" --ckpt "$ck" 2>&1 >/dev/null); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "^qstar: error: eval: --metric cot-maj is for gsm8k" && ok "cot-maj on csqa refused" || bad "cot-maj on csqa: $rc $out"
out=$($Q eval --task gsm8k --data "$work/missing.jsonl" --ckpt "$ck" 2>&1 >/dev/null); rc=$?
[ $rc = 1 ] && [ "$(echo "$out" | wc -l)" = 1 ] && echo "$out" | grep -q "missing.jsonl" && ok "missing file: $out" || bad "missing file: $rc $out"
out=$($Q eval --task gsm8k --metric exact --data "$work/gsm.jsonl" --ckpt "$ck" 2>&1 >/dev/null); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "unknown --metric" && ok "unknown metric refused" || bad "unknown metric: $rc $out"
out=$($Q eval --task gsm8k --data "$work/gsm.jsonl" --ckpt "$ck" --seq 3 --details "$work/toolong.jsonl" 2>&1 >/dev/null); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "gsm.jsonl:1: the question is too long" && [ -z "$(ls "$work" | grep toolong)" ] \
  && ok "answer cut off by --seq: $out (no --details file left)" || bad "too long: $rc $out $(ls "$work" | grep toolong)"
# the held-out NLL eval is unchanged without --task
out=$($Q eval --ckpt "$ck" 2>&1 >/dev/null); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "eval: --ckpt and --data are required" && ok "qstar eval without --task: the NLL eval" || bad "plain eval: $rc $out"

echo "$pass passed, $fail failed"
[ $fail = 0 ]
