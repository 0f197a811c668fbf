#!/usr/bin/env bash
# Downloads CommonsenseQA (Talmor et al. 2019; terms: https://www.tau-nlp.org/commonsenseqa)
# from its official location, the authors' S3 bucket (sic: "commensenseqa"):
#   https://s3.amazonaws.com/commensenseqa/{train_rand_split,dev_rand_split,test_rand_split_no_answers}.jsonl
# into DIR (default: this folder) as train.jsonl (9,741 questions), validation.jsonl (1,221: the
# split the Quiet-STaR paper reports) and test_no_answers.jsonl (1,140, unlabelled: qstar eval
# refuses it, naming the empty answerKey). The files are in the official layout ({"answerKey",
# "question": {"stem", "choices": [{"label", "text"}]}}), which qstar eval reads as it is, as it
# does the flattened layout of the Hugging Face copy (tau/commonsense_qa). Line counts and fields are
# checked and the sha256 printed; an existing complete file is kept. Not run by the tests.
#
#   data/csqa/prepare.sh [--out DIR]
#   bin/qstar eval --task csqa --data data/csqa/validation.jsonl --ckpt CKPT
set -euo pipefail
OUT="$(cd "$(dirname "$0")" && pwd)"
BASE="https://s3.amazonaws.com/commensenseqa"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0;;
    *) echo "prepare.sh: unknown option $1 (see --help)" >&2; exit 2;;
  esac
done
mkdir -p "$OUT"
. "$(dirname "$0")/../fetch.sh"  # fetch URL FILE
check() {  # FILE LINES LABELLED
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
path, want, labelled = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
n = 0
for i, line in enumerate(open(path, encoding="utf-8"), 1):
    if not line.strip(): continue
    o = json.loads(line)
    q = o.get("question", {})
    ok = isinstance(q.get("stem"), str) and [c.get("label") for c in q.get("choices", [])] == list("ABCDE")
    if labelled: ok = ok and o.get("answerKey") in list("ABCDE")
    assert ok, f"{path}:{i}: not a CommonsenseQA line"
    n += 1
if n != want: sys.exit(f"{path}: {n} questions, expected {want}")
print(f"{path}: {n} questions")
PY
}
for split in train_rand_split:train:9741:1 dev_rand_split:validation:1221:1 test_rand_split_no_answers:test_no_answers:1140:0; do
  IFS=: read -r src name lines labelled <<< "$split"
  f="$OUT/$name.jsonl"
  if [ -f "$f" ] && check "$f" "$lines" "$labelled" > /dev/null 2>&1; then echo "$f: present"
  else fetch "$BASE/$src.jsonl" "$f"; fi
  check "$f" "$lines" "$labelled"
done
(cd "$OUT" && sha256sum train.jsonl validation.jsonl test_no_answers.jsonl)
