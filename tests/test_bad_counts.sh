#!/usr/bin/env bash
# Counts, ids and files that a run cannot use get one "qstar: error:" line naming the option or the
# file and exit status 1 (issue 28, the probe of 65325cc): --samples x prompts and the other request
# products near 2^31 (heap overflows, SIGSEGV, SIGABRT before), --max-tokens near 2^31 (signed
# overflow before the context check), token ids of a resumed run's kept_NNN.jsonl outside the
# vocabulary or beyond int (a read past the embedding table; 1e99 a float-to-int overflow), a --grow
# whose step count does not fit (3e9 steps recorded, none run, exit 0), negative values of options
# whose 0 means "default" or "off" (silently the default), and a directory or a FIFO where a file
# goes ("out of memory reading 9223372036854775807 bytes"; open() blocked for ever).
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
work=build/test-work/bad_counts; rm -rf "$work"; mkdir -p "$work"
Q=bin/qstar

# every case under 4 GB of address space (a sanitizer build reserves more: no limit there)
EXPECT_VM_LIMIT=4000000
if ldd "$Q" 2>/dev/null | grep -qE 'lib(a|t)san' || nm "$Q" 2>/dev/null | grep -qE '__(a|t)san_init'; then EXPECT_VM_LIMIT=; fi
. tests/lib/expect_error.sh

# a tiny checkpoint (3 steps) and 6 one-digit additions, as tests/test_generate_cmd.sh makes them
tok=data/corpus/tokenizer.json
python3 tests/lib/make_shard.py "$work/d.bin" --random 1000 --tokens 20000 --seed 5
$Q train --config configs/tiny.json --tokenizer "$tok" --data "$work/d.bin" --out "$work/base" --steps 3 --batch 2 \
  --seq 32 > "$work/base.log" 2>&1 || { echo "FAIL base model training: $(tail -1 "$work/base.log")"; echo "0 passed, 1 failed"; exit 1; }
ck=$work/base/step_000003
[ -f "$ck/tokenizer.json" ] || cp "$tok" "$ck/"
$Q selftrain --make-arith "$work/a.jsonl" --make-n 6 --digits 1-1 --seed 4 2> /dev/null
for i in 1 2 3 4 5; do echo "{\"prompt\": \"p$i\"}"; done > "$work/p5.jsonl"
G=(generate --ckpt "$ck" --in "$work/p5.jsonl" --out "$work/g.jsonl")
S=(selftrain --model "$ck" --task arith --train "$work/a.jsonl" --test "$work/a.jsonl" --batch 2 --seq 72 --max-tokens 8
   --shots 1 --start-steps 2 --lr 1e-3 --warmup 0)

# 1, 2, 12: products of counts beyond int, --max-tokens beyond the context
expect_error "generate 5 prompts x --samples 858993460" "--samples" $Q "${G[@]}" --max-tokens 1 --samples 858993460
expect_error "generate --max-tokens 2147483647" "--max-tokens 2147483647"$'\n'"context" $Q "${G[@]}" --max-tokens 2147483647
expect_error "sample --max-tokens 2147483647" "--max-tokens 2147483647"$'\n'"context" $Q sample --ckpt "$ck" --prompt hi --max-tokens 2147483647
printf '{"question": "How many?", "answer": "#### 7"}\n' > "$work/q1.jsonl"
expect_error "eval cot-maj --max-tokens 2147483647" "--max-tokens 2147483647"$'\n'"context" $Q eval --task gsm8k --metric cot-maj --ckpt "$ck" --data "$work/q1.jsonl" --max-tokens 2147483647
expect_error "selftrain rft --samples 858993460" "--samples" $Q "${S[@]}" --method rft --samples 858993460 --out "$work/s"
expect_error "selftrain vstar --samples 858993460" "--samples" $Q "${S[@]}" --method vstar --iterations 1 --samples 858993460 --out "$work/s"
expect_error "selftrain stepdpo --samples 858993460" "--samples" $Q "${S[@]}" --method stepdpo --samples 858993460 --out "$work/s"
expect_error "selftrain rft --iterations x --samples" "--iterations" $Q "${S[@]}" --method rft --iterations 1000 --grow 1 --samples 1000000 --out "$work/s"
expect_error "selftrain stepdpo --rollouts 858993460" "--rollouts" $Q "${S[@]}" --method stepdpo --samples 1 --rollouts 858993460 --out "$work/s"
expect_error "selftrain vstar --test-samples 715827883" "--test-samples" $Q "${S[@]}" --method vstar --iterations 1 --samples 1 --test-samples 715827883 --out "$work/s"
expect_error "selftrain --max-tokens 2147483647" "--max-tokens" $Q "${S[@]}" --method star --max-tokens 2147483647 --out "$work/s"
expect_error "selftrain --gen-batch 2147483647" "--gen-batch" $Q "${S[@]}" --method star --gen-batch 2147483647 --out "$work/s"

# 5: a step count that does not fit an int
expect_error "selftrain --grow 1.5e9" "--grow"$'\n'"iteration 2" $Q "${S[@]}" --method star --gold --iterations 2 --grow 1.5e9 --out "$work/s5"

# 4: token ids of kept_001.jsonl read back by --resume: outside the vocabulary, and beyond any int
(QSTAR_FAULT=0:1:after_generate $Q "${S[@]}" --method star --gold --iterations 1 --out "$work/s4" > /dev/null 2>&1; true) 2> /dev/null
cp "$work/s4/kept_001.jsonl" "$work/kept.orig"
for bad_id in 2000000000 1024 -1 1e99 1.5 '"7"'; do
  python3 - "$work/kept.orig" "$work/s4/kept_001.jsonl" "$bad_id" <<'PY'
import sys
rows = open(sys.argv[1]).read().splitlines()
rows[-1] = rows[-1].replace('"completion":[', '"completion":[' + sys.argv[3] + ',', 1)  # the last row: line N named
open(sys.argv[2], "w").write("\n".join(rows) + "\n")
PY
  line=$(wc -l < "$work/kept.orig")
  expect_error "resume with kept id $bad_id" "kept_001.jsonl:$line:"$'\n'"token id" $Q selftrain --resume "$work/s4"
done

# negative values of options whose 0 means "default" or "off"
expect_error "generate --n-ahead -1" "--n-ahead" $Q "${G[@]}" --n-ahead -1
expect_error "generate --thought-embed-scale -1" "--thought-embed-scale" $Q "${G[@]}" --thought-embed-scale -1
expect_error "sample --n-ahead -3" "--n-ahead" $Q sample --ckpt "$ck" --prompt hi --n-ahead -3
for o in n-train n-test warmup dpo-warmup; do
  expect_error "selftrain --$o -1" "--$o" $Q "${S[@]}" --method star --$o -1 --out "$work/s"
done
expect_error "selftrain --grad-clip -0.5" "--grad-clip" $Q "${S[@]}" --method star --grad-clip -0.5 --out "$work/s"
expect_error "train --grad-clip -1" "--grad-clip" $Q train --config configs/tiny.json --data "$work/d.bin" --steps 1 --batch 2 --seq 16 --out "$work/t" --grad-clip -1
expect_error "eval --n-ahead -2" "--n-ahead" $Q eval --task gsm8k --ckpt "$ck" --data "$work/p5.jsonl" --n-ahead -2

# a directory or a FIFO where a file goes: refused at once (the FIFO has no writer: open() would block)
mkdir -p "$work/adir"; rm -f "$work/fifo"; mkfifo "$work/fifo"
expect_error "generate --in DIRECTORY" "$work/adir"$'\n'"not a regular file" $Q generate --ckpt "$ck" --in "$work/adir" --out "$work/g.jsonl"
expect_error "generate --in FIFO" "$work/fifo"$'\n'"not a regular file" $Q generate --ckpt "$ck" --in "$work/fifo" --out "$work/g.jsonl"
expect_error "eval --data FIFO" "$work/fifo"$'\n'"not a regular file" $Q eval --task gsm8k --ckpt "$ck" --data "$work/fifo"
expect_error "selftrain --train DIRECTORY" "$work/adir"$'\n'"not a regular file" $Q "${S[@]}" --method star --train "$work/adir" --out "$work/s"

expect_error "train --data FIFO (a shard)" "$work/fifo"$'\n'"not a regular file" $Q train --config configs/tiny.json --data "$work/fifo" --steps 1 --batch 2 --seq 16 --out "$work/t"
rm -rf "$work/fifock"; mkdir -p "$work/fifock"; cp "$ck"/*.json "$work/fifock/"; mkfifo "$work/fifock/model.safetensors"
expect_error "generate --ckpt whose model.safetensors is a FIFO (no hang)" "model.safetensors" $Q generate --ckpt "$work/fifock" --in "$work/p5.jsonl" --out "$work/g.jsonl"

echo "$pass passed, $fail failed"
[ $fail = 0 ]
