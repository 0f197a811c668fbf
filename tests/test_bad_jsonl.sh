#!/usr/bin/env bash
# JSON Lines input is one JSON value per line and nothing else (issue 28, cases 6-9): a second object
# on a line was dropped without a word and text after an object accepted; "\u0000" cut a string short
# (answerKey "A\u0000B" scored as A); bytes that are not UTF-8 went into the output JSON; and an error
# quoting a question with a newline printed a second, forged "qstar: error:" line. Each case must now
# fail with exit status 1 and one "qstar: error:" line naming the file and line, in generate, eval
# and selftrain (all read through io/jsonl.c); "\\u0000" (a backslash, then u0000) is still text.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
work=build/test-work/bad_jsonl; rm -rf "$work"; mkdir -p "$work"
Q=bin/qstar

. tests/lib/expect_error.sh
expect_ok() {
  local name=$1; shift
  if timeout -s KILL 60 "$@" > "$work/out.txt" 2> "$work/err.txt" < /dev/null; then pass=$((pass+1)); echo "ok   $name"
  else fail=$((fail+1)); echo "FAIL $name:"; sed 's/^/       /' "$work/err.txt" | head -5; fi
}

tok=data/corpus/tokenizer.json
python3 tests/lib/make_shard.py "$work/d.bin" --random 1000 --tokens 20000 --seed 5
$Q train --config configs/tiny.json --tokenizer "$tok" --data "$work/d.bin" --out "$work/base" --steps 2 --batch 2 \
  --seq 32 > "$work/base.log" 2>&1 || { echo "FAIL base model training: $(tail -1 "$work/base.log")"; echo "0 passed, 1 failed"; exit 1; }
ck=$work/base/step_000002
[ -f "$ck/tokenizer.json" ] || cp "$tok" "$ck/"
$Q selftrain --make-arith "$work/a.jsonl" --make-n 6 --digits 1-1 --seed 4 2> /dev/null
G=(generate --ckpt "$ck" --out "$work/g.jsonl" --max-tokens 2)
S=(selftrain --method star --model "$ck" --task arith --test "$work/a.jsonl" --batch 2 --seq 72 --max-tokens 8
   --shots 0 --start-steps 2 --lr 1e-3 --warmup 0 --iterations 1 --out "$work/s")
w() { printf '%b' "$2" > "$work/$1"; echo "$work/$1"; }

# 6: one value per line
f=$(w two.jsonl '{"prompt": "a"}\n{"prompt": "b"}{"prompt": "c"}\n')
expect_error "generate: two objects on one line" "two.jsonl: line 2"$'\n'"text after the JSON value" $Q "${G[@]}" --in "$f"
f=$(w garbage.jsonl '{"prompt": "a"} trailing garbage ]]]\n')
expect_error "generate: text after the object" "garbage.jsonl: line 1"$'\n'"text after the JSON value" $Q "${G[@]}" --in "$f"
f=$(w g2.jsonl '{"question": "How many?", "answer": "#### 7"}{"question": "How many?", "answer": "#### 8"}\n')
expect_error "eval gsm8k: two objects on one line" "g2.jsonl:1:"$'\n'"text after" $Q eval --task gsm8k --ckpt "$ck" --data "$f"
f=$(w a2.jsonl '{"question": "1 + 2", "answer": "3"}\n{"question": "1 + 2", "answer": "3"}{"question": "2 + 2", "answer": "4"}\n')
expect_error "selftrain arith: two objects on one line" "a2.jsonl:2:"$'\n'"text after" $Q "${S[@]}" --train "$f"
f=$(w ok.jsonl '{"prompt": "a"}  \t\r\n\n   \n{"prompt": "b"}\n')
expect_ok "generate: white space after an object and blank lines are fine" $Q "${G[@]}" --in "$f"

# 7: \u0000 inside a string
f=$(w nul.jsonl '{"prompt": "ab\\u0000cd"}\n')
expect_error "generate: \\u0000 in the prompt" "nul.jsonl: line 1"$'\n'"u0000" $Q "${G[@]}" --in "$f"
f=$(w csqa.jsonl '{"answerKey": "A\\u0000B", "question": "q", "choices": {"label": ["A", "B"], "text": ["a", "b"]}}\n')
expect_error "eval csqa: answerKey A\\u0000B" "csqa.jsonl:1:"$'\n'"u0000" $Q eval --task csqa --ckpt "$ck" --data "$f"
f=$(w gnul.jsonl '{"question": "How\\u0000 many?", "answer": "#### 7"}\n')
expect_error "eval gsm8k: \\u0000 in the question" "gnul.jsonl:1:"$'\n'"u0000" $Q eval --task gsm8k --ckpt "$ck" --data "$f"
f=$(w bs.jsonl '{"prompt": "a\\\\u0000b"}\n')
expect_ok "generate: an escaped backslash before u0000 is text" $Q "${G[@]}" --in "$f"

# 8: bytes that are not UTF-8
f=$(w id8.jsonl '{"prompt": "ab", "id": "\xff\xfe"}\n')
expect_error "generate: non-UTF-8 id" "id8.jsonl: line 1"$'\n'"UTF-8" $Q "${G[@]}" --in "$f"
f=$(w q8.jsonl '{"question": "1 + \xc0\xaf2", "answer": "3"}\n')
expect_error "selftrain arith: overlong UTF-8 in a question" "q8.jsonl:1:"$'\n'"UTF-8" $Q "${S[@]}" --train "$f"
f=$(w sur.jsonl '{"prompt": "a\\ud800b"}\n')
expect_error "generate: a lone surrogate escape" "sur.jsonl: line 1" $Q "${G[@]}" --in "$f"

# 9: an error quoting input stays on one line
f=$(w nl.jsonl '{"question": "1\\nqstar: error: forged second line", "answer": "3"}\n')
expect_error "selftrain: newline in a quoted question" "nl.jsonl:1:"$'\n'"1\\nqstar: error: forged" $Q "${S[@]}" --train "$f"

echo "$pass passed, $fail failed"
[ $fail = 0 ]
