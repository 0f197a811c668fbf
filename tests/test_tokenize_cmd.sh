#!/usr/bin/env bash
# Tests `qstar tokenize` end to end: shards hold exactly the ids the Hugging Face `tokenizers` library
# gives for each document followed by EOS (JSONL and .txt inputs, SentencePiece and byte-level
# tokenizers, uint16 and uint32 shards), output is byte-identical for 1, 2 and 3 threads, no progress
# line when stdout is not a terminal, and each kind of bad input fails with "FILE:LINE: problem",
# exit status 1 and no shard of the failed run left behind (earlier shards untouched).
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
PY=.venv/bin/python
Q=bin/qstar
# Every check compares with the `tokenizers` library: without .venv there is nothing to compare
# against, a missing optional dependency, reported as a skip (make test installs it).
if [ ! -x "$PY" ]; then echo "test_tokenize_cmd: skipped (.venv missing; run make deps)"; echo "0 passed, 0 failed"; exit 0; fi
if [ ! -x "$Q" ]; then bad "$Q not built (run make)"; echo "$pass passed, $fail failed"; exit 1; fi
tmp=$(mktemp -d /tmp/qstar_tokcmd.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# Inputs: the tokenizer test corpus as JSONL (twice, with an extra field and blank lines), two .txt
# documents, and a tokenizer whose vocab needs uint32 shards.
"$PY" - "$tmp" <<'EOF'
import json, sys
d = sys.argv[1]
texts = [json.loads(l) for l in open("data/tokenizers/test_texts.jsonl")]
with open(f"{d}/a.jsonl", "w") as f:
    for i, t in enumerate(texts):
        f.write(json.dumps({"id": i, "text": t}) + "\n")
        if i % 17 == 0:
            f.write("\n")
with open(f"{d}/b.jsonl", "w") as f:
    for i, t in enumerate(reversed(texts)):
        f.write(json.dumps({"body": t, "text": "x"}, ensure_ascii=False) + "\r\n")
open(f"{d}/c.txt", "w").write("Plain text document.\n\nSecond paragraph, same document. 你好\n")
open(f"{d}/d.txt", "w").write("")
j = json.load(open("data/tokenizers/llama3.json"))
j["added_tokens"].append({"id": 70000, "content": "<|far_away|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True})
json.dump(j, open(f"{d}/wide.json", "w"))
EOF

check_shards() {  # name tokenizer outdir eos-name field inputs...
  local name=$1 tj=$2 out=$3 eos=$4 field=$5; shift 5
  res=$("$PY" - "$tj" "$out" "$eos" "$field" "$@" <<'EOF'
import glob, json, struct, sys
import numpy as np
from tokenizers import Tokenizer
tj, out, eos_name, field, inputs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
tok = Tokenizer.from_file(tj)
eos = tok.token_to_id(eos_name)
want = []
for p in inputs:
    if p.endswith(".txt"):
        docs = [open(p, encoding="utf-8", newline="").read()]
    else:
        docs = [json.loads(l)[field] for l in open(p, encoding="utf-8", newline="\n") if l.strip()]
    for t in docs:
        want += tok.encode(t, add_special_tokens=False).ids + [eos]
got, widths = [], set()
for s in sorted(glob.glob(out + "/shard_*.bin")):
    b = open(s, "rb").read()
    magic, ver, tb, _, n = struct.unpack("<IIIIQ", b[:24])
    assert magic == 0x4B545351 and ver == 1 and len(b) == 64 + n * tb, s
    widths.add(tb)
    got += np.frombuffer(b[64:], dtype=np.uint16 if tb == 2 else np.uint32).tolist()
print(int(got == want), len(want), ",".join(map(str, sorted(widths))))
EOF
)
  read -r same n widths <<<"$res"
  if [ "$same" = 1 ]; then ok; echo "$name: $n tokens match tokenizers (+EOS), token width $widths"
  else bad "$name: shards differ from tokenizers ($res)"; fi
  echo "$widths"
}

# 1. SentencePiece family, small shards, three thread counts -> identical bytes.
for th in 1 2 3; do
  "$Q" tokenize --tokenizer data/tokenizers/mistral.json --in "$tmp/a.jsonl" "$tmp/c.txt" "$tmp/d.txt" \
    --out "$tmp/m$th" --shard-tokens 300 --threads $th >"$tmp/log$th" 2>&1 || bad "mistral threads=$th: $(tail -1 "$tmp/log$th")"
done
w=$(check_shards mistral data/tokenizers/mistral.json "$tmp/m1" "</s>" text "$tmp/a.jsonl" "$tmp/c.txt" "$tmp/d.txt" | tail -1)
[ "$w" = 2 ] && ok || bad "mistral shards should be uint16, got $w"
n1=$(ls "$tmp/m1" | wc -l)
[ "$n1" -gt 3 ] && ok || bad "expected several shards, got $n1"
if cmp -s <(cat "$tmp"/m1/shard_*.bin) <(cat "$tmp"/m2/shard_*.bin) && cmp -s <(cat "$tmp"/m1/shard_*.bin) <(cat "$tmp"/m3/shard_*.bin) \
   && [ "$(ls "$tmp/m1")" = "$(ls "$tmp/m3")" ]; then ok; else bad "output differs between thread counts"; fi
if grep -q $'\r' "$tmp/log1"; then bad "progress line printed although stdout is not a tty"; else ok; fi
grep -q "^tokenize: " "$tmp/log1" && ok || bad "no summary line: $(cat "$tmp/log1")"

# 2. Byte-level family, other field, CRLF JSONL.
"$Q" tokenize --tokenizer data/tokenizers/llama3.json --in "$tmp/b.jsonl" "$tmp/a.jsonl" --field body --out "$tmp/l" \
  --threads 2 >/dev/null 2>"$tmp/err" && bad "missing field in a.jsonl should fail" || ok
"$Q" tokenize --tokenizer data/tokenizers/llama3.json --in "$tmp/b.jsonl" --field body --out "$tmp/l" --threads 2 >/dev/null 2>&1 \
  || bad "llama3 tokenize failed"
check_shards llama3 data/tokenizers/llama3.json "$tmp/l" "<|end_of_text|>" body "$tmp/b.jsonl" >/dev/null
# 3. uint32 shards when the vocab exceeds 65536.
"$Q" tokenize --tokenizer "$tmp/wide.json" --in "$tmp/a.jsonl" --out "$tmp/w" >/dev/null 2>&1 || bad "wide tokenize failed"
w=$(check_shards wide "$tmp/wide.json" "$tmp/w" "<|end_of_text|>" text "$tmp/a.jsonl" | tail -1)
[ "$w" = 4 ] && ok || bad "wide vocab should give uint32 shards, got $w"

# 4. Bad inputs: message names file and line, exit 1, nothing of the failed run left in the output dir.
mkdir -p "$tmp/keep"
"$Q" tokenize --tokenizer data/tokenizers/mistral.json --in "$tmp/c.txt" --out "$tmp/keep" >/dev/null 2>&1
before=$(cat "$tmp"/keep/* | md5sum)
bad_case() {  # description file-content-command expected-regex
  local desc=$1 file=$2 want=$3
  rm -rf "$tmp/fresh"
  for out in "$tmp/fresh" "$tmp/keep"; do
    "$Q" tokenize --tokenizer data/tokenizers/mistral.json --in "$tmp/a.jsonl" "$file" --out "$out" --shard-tokens 100 \
      >"$tmp/out" 2>"$tmp/err"; rc=$?
    if [ $rc = 1 ] && grep -Eq "^qstar: error: $file:$want" "$tmp/err" && [ "$(wc -l <"$tmp/err")" = 1 ]; then ok
    else bad "$desc: rc=$rc, stderr: $(head -c 300 "$tmp/err")"; fi
  done
  left=$(ls -A "$tmp/fresh" 2>/dev/null | wc -l)
  [ "$left" = 0 ] && ok || bad "$desc: $left files left in a fresh output dir: $(ls -A "$tmp/fresh")"
  [ "$(cat "$tmp"/keep/* | md5sum)" = "$before" ] && [ "$(ls -A "$tmp/keep" | wc -l)" = 1 ] && ok \
    || bad "$desc: the earlier shards were changed: $(ls -A "$tmp/keep")"
}
printf '{"text": "fine"}\n{"text": "fine"}\n{"text": "cut off' >"$tmp/trunc.jsonl"
bad_case "truncated line" "$tmp/trunc.jsonl" "3: malformed or truncated JSON"
printf '{"text": "fine"}\n{text: 1}\n' >"$tmp/malformed.jsonl"
bad_case "malformed line" "$tmp/malformed.jsonl" "2: malformed"
printf '{"text": "fine"}\n\n{"body": "no text"}\n' >"$tmp/missing.jsonl"
bad_case "missing field" "$tmp/missing.jsonl" "3: missing field \"text\""
printf '{"text": 42}\n' >"$tmp/number.jsonl"
bad_case "non-string field" "$tmp/number.jsonl" "1: field \"text\" is not a string"
printf '{"text": "ok"}\n{"text": "bad \xff\xfe bytes"}\n' >"$tmp/utf8.jsonl"
bad_case "invalid UTF-8 (JSONL)" "$tmp/utf8.jsonl" "2: invalid UTF-8"
printf 'line one\nline two \xc3\n' >"$tmp/utf8.txt"
bad_case "invalid UTF-8 (text)" "$tmp/utf8.txt" "1: invalid UTF-8 \\(line 2"
printf '[1, 2]\n' >"$tmp/array.jsonl"
bad_case "not an object" "$tmp/array.jsonl" "1: line is not a JSON object"
printf 'x' >"$tmp/data.csv"
bad_case "unknown extension" "$tmp/data.csv" " unknown input type"

# 5. Usage errors.
"$Q" tokenize --tokenizer data/tokenizers/mistral.json --out "$tmp/x" >/dev/null 2>&1; [ $? = 1 ] && ok || bad "missing --in should exit 1"
"$Q" tokenize --tokenizer data/tokenizers/mistral.json --in "$tmp/nope.jsonl" --out "$tmp/x" 2>&1 | grep -q "nope.jsonl: input file not found" \
  && ok || bad "missing input file message"
"$Q" tokenize --help | grep -q "usage: qstar tokenize" && ok || bad "--help"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
