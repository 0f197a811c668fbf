#!/usr/bin/env bash
# Offline test of the OpenWebMath preparation (data/openwebmath/): builds a small parquet file shaped
# like the real dataset (url, text, date, metadata; several row groups; Unicode, LaTeX, newlines,
# an empty text), runs prepare.sh with --local-parquet (no download) and checks that the JSONL holds
# exactly the input texts, in order. If bin/qstar has the tokenize command, it also runs the shard
# step and checks that the shards hold the tokenizer's ids of those texts; if not, that is reported
# as a failure ("qstar tokenize not available"), since the pipeline is incomplete without it.
# Ends with "N passed, N failed"; exits non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { echo "ok    $1"; pass=$((pass + 1)); }
bad() { echo "FAIL  $1${2:+: $2}"; fail=$((fail + 1)); }
PREP=data/openwebmath/prepare.sh
VPY=.venv/bin/python

if bash $PREP --help >/dev/null 2>&1; then ok "prepare.sh --help"; else bad "prepare.sh --help"; fi
bash $PREP --files 1 >/dev/null 2>&1; rc=$?
if [ "$rc" = 2 ]; then ok "prepare.sh without --out is a usage error"; else bad "prepare.sh without --out is a usage error" "rc $rc"; fi

if [ ! -x "$VPY" ] || ! "$VPY" -c "import pyarrow" 2>/dev/null; then
  bad "parquet conversion" "SKIP: .venv missing (run make deps)"
  echo "$pass passed, $fail failed"; exit 1
fi

# A parquet file like the dataset's: row groups of 3 rows, so streaming crosses group boundaries.
"$VPY" - "$tmp/owm.parquet" "$tmp/expected.json" <<'EOF'
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
texts = [
    "# Solve $3x + 7 = 22$\n\nSubtract 7: $3x = 15$, so $x = 5$.",
    "Let $f(x) = \\frac{1}{x}$. Then $f'(x) = -\\frac{1}{x^2}$.\n\n\\begin{align} a &= b \\\\ c &= d \\end{align}",
    "Unicode: \u2211_{i=1}^n i = n(n+1)/2, \u03c0 \u2248 3.14159, caf\u00e9, \u65e5\u672c\u8a9e, emoji \U0001F600.",
    "",
    "Quotes \"inside\" and a backslash \\ and a tab\there.",
    "   leading and trailing spaces   ",
    "Line one\r\nLine two (CRLF)\n",
    "347 + 589 = 936",
]
texts += ["Document number %d: %d times %d is %d." % (i, i, i + 3, i * (i + 3)) for i in range(10)]
n = len(texts)
table = pa.table({
    "url": ["https://math.example.org/q/%d" % i for i in range(n)],
    "text": texts,
    "date": ["2023-0%d-1%dT00:00:00" % (1 + i % 9, i % 10) for i in range(n)],
    "metadata": [json.dumps({"extraction_info": {"found_math": True}, "score": i / n}) for i in range(n)],
})
pq.write_table(table, sys.argv[1], row_group_size=3)
json.dump([t for t in texts if t], open(sys.argv[2], "w"))
EOF
[ -f "$tmp/owm.parquet" ] && ok "made a test parquet file" || bad "made a test parquet file"

# Conversion only.
if bash $PREP --local-parquet "$tmp/owm.parquet" --out "$tmp/out" --no-tokenize >"$tmp/prep.log" 2>&1; then
  ok "prepare.sh --local-parquet --no-tokenize runs"
else
  bad "prepare.sh --local-parquet --no-tokenize runs" "$(tail -2 "$tmp/prep.log")"
fi
check_jsonl() {  # $1 = jsonl, $2 = expected json, $3 = max docs (0: all)
  "$VPY" - "$1" "$2" "$3" <<'EOF'
import json, sys
got = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
want = json.load(open(sys.argv[2]))
k = int(sys.argv[3])
if k:
    want = want[:k]
assert all(list(d) == ["text"] for d in got), "extra fields"
assert [d["text"] for d in got] == want, "texts differ: %d got, %d expected" % (len(got), len(want))
EOF
}
if out=$(check_jsonl "$tmp/out/jsonl/owm.jsonl" "$tmp/expected.json" 0 2>&1); then
  ok "JSONL holds exactly the input texts, in order (empty text dropped)"
else
  bad "JSONL holds exactly the input texts" "$(echo "$out" | tail -1)"
fi
if bash $PREP --local-parquet "$tmp/owm.parquet" --out "$tmp/out" --no-tokenize 2>&1 | grep -q "have $tmp/out/jsonl/owm.jsonl"; then
  ok "a second run reuses the finished JSONL"
else
  bad "a second run reuses the finished JSONL"
fi
"$VPY" data/openwebmath/parquet_to_jsonl.py --max-docs 4 --batch-rows 2 --out "$tmp/four.jsonl" "$tmp/owm.parquet" 2>/dev/null
if out=$(check_jsonl "$tmp/four.jsonl" "$tmp/expected.json" 4 2>&1); then ok "parquet_to_jsonl --max-docs 4"; else bad "parquet_to_jsonl --max-docs 4" "$out"; fi
if ! "$VPY" data/openwebmath/parquet_to_jsonl.py --field body --out "$tmp/x.jsonl" "$tmp/owm.parquet" 2>"$tmp/err" \
   && grep -q "no column 'body'" "$tmp/err" && [ ! -e "$tmp/x.jsonl" ] && [ ! -e "$tmp/x.jsonl.tmp" ]; then
  ok "a missing column is an error naming it, leaving no output"
else
  bad "a missing column is an error naming it, leaving no output"
fi

# The download path, offline: a stand-in curl answers the Hub listing with files out of order plus
# entries to ignore, and "downloads" by copying the test parquet; the URLs it was asked for are
# compared with the documented pattern.
mkdir -p "$tmp/bin"
cat >"$tmp/bin/curl" <<EOF
#!/usr/bin/env bash
echo "\$*" >>"$tmp/curl.log"
out=""; url=""
while [ \$# -gt 0 ]; do case "\$1" in -o) out="\$2"; shift 2;; -H|-C|--retry) shift 2;; -*) shift;; *) url="\$1"; shift;; esac; done
case "\$url" in
  */api/datasets/*) echo '[{"type":"file","path":"data/train-00001-of-00114-bbb.parquet","size":1},
    {"type":"directory","path":"data/sub"},{"type":"file","path":"data/README.md","size":1},
    {"type":"file","path":"data/train-00000-of-00114-aaa.parquet","size":1},
    {"type":"file","path":"data/train-00002-of-00114-ccc.parquet","size":1}]';;
  */resolve/*) cp "$tmp/owm.parquet" "\$out";;
  *) exit 22;;
esac
EOF
chmod +x "$tmp/bin/curl"
if PREPARE_NO_HUB=1 PATH="$tmp/bin:$PATH" bash $PREP --files 2 --out "$tmp/dl" --no-tokenize >"$tmp/dl.log" 2>&1; then
  base="https://huggingface.co/datasets/open-web-math/open-web-math"
  want="$base/api-listing $base/resolve/main/data/train-00000-of-00114-aaa.parquet $base/resolve/main/data/train-00001-of-00114-bbb.parquet"
  got=$(grep -o 'https://[^ ]*' "$tmp/curl.log" | sed 's#https://huggingface.co/api/datasets/open-web-math/open-web-math/tree/main/data#'"$base"'/api-listing#' | tr '\n' ' ' | sed 's/ $//')
  if [ "$got" = "$want" ] && [ -s "$tmp/dl/jsonl/train-00001-of-00114-bbb.jsonl" ] && [ ! -e "$tmp/dl/jsonl/train-00002-of-00114-ccc.jsonl" ] \
     && grep -q "fetch $base/resolve/main/data/train-00000-of-00114-aaa.parquet" "$tmp/dl.log"; then
    ok "download path (mocked curl): lists, takes the first --files 2 in order, prints and fetches resolve URLs"
  else
    bad "download path (mocked curl)" "fetched: $got"
  fi
else
  bad "download path (mocked curl)" "$(tail -2 "$tmp/dl.log" | tr '\n' ' ')"
fi

# Shards through qstar tokenize.
if [ -x bin/qstar ] && bin/qstar tokenize --help >/dev/null 2>&1; then
  if bash $PREP --local-parquet "$tmp/owm.parquet" --out "$tmp/out" --tokenizer data/corpus/tokenizer.json \
       >"$tmp/tok.log" 2>&1; then
    ok "prepare.sh runs qstar tokenize"
    if out=$("$VPY" - "$tmp/out/shards/owm" "$tmp/expected.json" data/corpus/tokenizer.json <<'EOF' 2>&1
import glob, json, os, struct, sys
import numpy as np
from tokenizers import Tokenizer
shard_dir, expected, tokfile = sys.argv[1:4]
ids = []
files = sorted(f for f in glob.glob(os.path.join(shard_dir, "*")) if os.path.isfile(f))
n_shards = 0
for f in files:
    with open(f, "rb") as fh:
        head = fh.read(64)
        if len(head) < 64 or struct.unpack("<I", head[:4])[0] != 0x4B545351:
            continue  # not a shard (e.g. a manifest)
        _, version, width, _, n = struct.unpack("<IIIIQ", head[:24])
        data = np.frombuffer(fh.read(), dtype=np.uint16 if width == 2 else np.uint32)
        assert len(data) == n, "%s: header says %d tokens, file has %d" % (f, n, len(data))
        ids += data.tolist()
        n_shards += 1
assert n_shards, "no shard files in %s" % shard_dir
tok = Tokenizer.from_file(tokfile)
want = [i for t in json.load(open(expected)) for i in tok.encode(t, add_special_tokens=False).ids]
content = [i for i in ids if i not in (1, 2)]  # BOS/EOS placement is the tokenizer command's choice
assert content == want, "shard ids differ from tokenizers' (%d vs %d ids)" % (len(content), len(want))
assert ids.count(2) >= len(json.load(open(expected))), "fewer EOS than documents"
print("%d shard(s), %d tokens" % (n_shards, len(ids)))
EOF
    ); then
      ok "shards hold the tokenizer's ids of every document ($out)"
    else
      bad "shards hold the tokenizer's ids of every document" "$(echo "$out" | tail -1)"
    fi
  else
    bad "prepare.sh runs qstar tokenize" "$(tail -3 "$tmp/tok.log" | tr '\n' ' ')"
  fi
else
  bad "token shards" "qstar tokenize not available (bin/qstar tokenize --help fails; build bin/qstar with the tokenize command)"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
