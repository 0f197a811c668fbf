#!/usr/bin/env bash
# Downloads GSM8K (Cobbe et al. 2021, MIT license) from its official repository, openai/grade-school-math:
#   https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/{train,test}.jsonl
# into DIR (default: this folder) as train.jsonl (7,473 problems) and test.jsonl (1,319), checks the
# line counts and that every line has "question" and an "answer" ending in "#### N", and prints the
# files' sha256. An existing complete file is kept. Not run by the tests (they have no network and
# write their own small files in the same format).
#
#   data/gsm8k/prepare.sh [--out DIR]
#   bin/qstar eval --task gsm8k --data data/gsm8k/test.jsonl --ckpt CKPT
set -euo pipefail
OUT="$(cd "$(dirname "$0")" && pwd)"
BASE="https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0;;
    *) echo "prepare.sh: unknown option $1 (see --help)" >&2; exit 2;;
  esac
done
mkdir -p "$OUT"
. "$(dirname "$0")/../fetch.sh"  # fetch URL FILE
check() {  # FILE LINES
  python3 - "$1" "$2" <<'PY'
import json, re, sys
path, want = sys.argv[1], int(sys.argv[2])
n = 0
for i, line in enumerate(open(path, encoding="utf-8"), 1):
    if not line.strip(): continue
    o = json.loads(line)
    assert isinstance(o.get("question"), str) and re.search(r"####\s*-?[\d,.]+\s*$", o.get("answer", "")), f"{path}:{i}: not a GSM8K line"
    n += 1
if n != want: sys.exit(f"{path}: {n} problems, expected {want}")
print(f"{path}: {n} problems")
PY
}
for split in train:7473 test:1319; do
  name=${split%%:*}; lines=${split#*:}; f="$OUT/$name.jsonl"
  if [ -f "$f" ] && check "$f" "$lines" > /dev/null 2>&1; then echo "$f: present"; else fetch "$BASE/$name.jsonl" "$f"; fi
  check "$f" "$lines"
done
(cd "$OUT" && sha256sum train.jsonl test.jsonl)
