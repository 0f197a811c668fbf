#!/usr/bin/env bash
# Live comparison of the C tokenizer (text/tokenizer.c, through the build/tests/test_tokenizer
# driver) with the Hugging Face `tokenizers` library on a seeded random fuzz corpus (mixtures of
# letters, digits, contractions, whitespace runs, CJK, emoji, combining marks, "▁", special-token
# strings, long words), for every test tokenizer in data/tokenizers/ plus the bundled corpus
# tokenizer, and the error messages for bad tokenizer files. The fixed reference texts are covered by
# build/tests/test_tokenizer itself; this catches what a hand-picked list misses.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
PY=.venv/bin/python
DRV=build/tests/test_tokenizer
if [ ! -x "$PY" ]; then bad "SKIP: .venv missing (run make deps)"; echo "$pass passed, $fail failed"; exit 1; fi
if [ ! -x "$DRV" ]; then bad "$DRV not built (run make tests)"; echo "$pass passed, $fail failed"; exit 1; fi
tmp=$(mktemp -d /tmp/qstar_tok_test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# The fuzz corpus (seeded, so failures reproduce).
"$PY" - "$tmp/fuzz.jsonl" <<'EOF'
import json, random, sys
r = random.Random(1234)
pieces = ["a", "Z", "the", "The", " ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "'s", "'S", "'re",
          "'LL", "'ve", "'d", "'m", "'t", "'x", "ſ", "0", "12", "3456", "7.5", "٣", "½", ",", ".", "!?", "$",
          "\\frac{", "}", "^{2}", "_", "(", ")", "==", "->", "{", "}", "#", "//", "\"", "'", "`", "你好", "世界",
          "日本", "カタカナ", "한국어", "😀", "👨‍👩‍👧", "🇫🇷", "❤️", "e\u0301", "\u0308", "a\u0303", "नम", "स्ते",
          "\u00a0", "\u2003", "\u3000", "\u0085", "\u001c", "\u200b", "\u2028", "▁", "▁▁", "<s>", "</s>",
          "<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|endoftext|>", "<mask>", " <mask>", "<|eot_id|>",
          "<0x41>", "é", "ß", "Ω", "ǅ", "\x01", "\x7f", "~~~", "...", "--", "ab" * 20]
out = []
for i in range(500):
    k = r.choice([1, 2, 3, 5, 8, 15, 30, 60])
    out.append("".join(r.choice(pieces) for _ in range(k)))
out.append("数学研究" * 1500)                  # one long word: the heap path
out.append("x" * 3000 + " " * 500 + "y")
out.append(" ".join("".join(r.choice(pieces) for _ in range(20)) for _ in range(300)))
with open(sys.argv[1], "w") as f:
    for t in out:
        f.write(json.dumps(t) + "\n")
EOF

compare() {  # name tokenizer.json
  local name=$1 tj=$2
  for special in 0 1; do
    flag=""; [ $special = 1 ] && flag="--special"
    if ! "$DRV" --encode "$tj" "$tmp/fuzz.jsonl" $flag >"$tmp/got.jsonl" 2>"$tmp/err"; then
      bad "$name: driver failed: $(head -1 "$tmp/err")"; continue
    fi
    res=$("$PY" - "$tj" "$tmp/fuzz.jsonl" "$tmp/got.jsonl" $special "$tmp/ids.jsonl" <<'EOF'
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
texts = [json.loads(l) for l in open(sys.argv[2])]
got = [json.loads(l) for l in open(sys.argv[3])]
special = sys.argv[4] == "1"
bad = 0
with open(sys.argv[5], "w") as f:
    for t, g in zip(texts, got):
        want = tok.encode(t, add_special_tokens=special).ids
        f.write(json.dumps(want) + "\n")
        if want != g:
            bad += 1
            if bad <= 3:
                print("MISMATCH", json.dumps(t)[:200], "want", want[:30], "got", g[:30], file=sys.stderr)
print(len(texts) - bad if len(got) == len(texts) else 0, bad if len(got) == len(texts) else len(texts))
EOF
)
    read -r p f <<<"$res"
    if [ "${f:-1}" = 0 ]; then ok; echo "$name special=$special: $p texts match"; else bad "$name special=$special: $f of $((p + f)) texts differ"; fi
  done
  # Decode of the library's own ids must match the library's decode.
  "$DRV" --decode "$tj" "$tmp/ids.jsonl" >"$tmp/dec.jsonl" 2>"$tmp/err" || { bad "$name: decode driver failed"; return; }
  res=$("$PY" - "$tj" "$tmp/ids.jsonl" "$tmp/dec.jsonl" <<'EOF'
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
ids = [json.loads(l) for l in open(sys.argv[2])]
got = [json.loads(l) for l in open(sys.argv[3])]
bad = sum(1 for i, g in zip(ids, got) if tok.decode(i, skip_special_tokens=False) != g) + abs(len(ids) - len(got))
print(bad)
EOF
)
  if [ "$res" = 0 ]; then ok; else bad "$name: $res decodes differ"; fi
}

for tj in data/tokenizers/*.json data/corpus/tokenizer.json; do
  [ -f "$tj" ] || continue
  name=$(basename "$(dirname "$tj")")/$(basename "$tj" .json)
  compare "$name" "$tj"
done

# Errors: one line "qstar: error: <path>: ...", exit status 1.
expect_error() {  # description file pattern
  "$DRV" --encode "$2" "$tmp/fuzz.jsonl" >/dev/null 2>"$tmp/err"; rc=$?
  if [ $rc = 1 ] && grep -q "^qstar: error: $2: .*$3" "$tmp/err"; then ok; else bad "$1: rc=$rc, stderr: $(head -c 300 "$tmp/err")"; fi
}
expect_error "missing file" "$tmp/nope.json" "cannot read"
echo '{"model": {"type": "BPE", "vocab": {' >"$tmp/trunc.json"
expect_error "malformed JSON" "$tmp/trunc.json" "malformed JSON"
"$PY" - "$tmp" <<'EOF'
import json, sys
d = sys.argv[1]
base = json.load(open("data/tokenizers/llama3.json"))
def variant(name, f):
    j = json.loads(json.dumps(base)); f(j); json.dump(j, open(f"{d}/{name}.json", "w"))
variant("wordpiece", lambda j: j["model"].update(type="WordPiece"))
variant("regex", lambda j: j["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex="\\s+|\\w+"))
variant("nfkc", lambda j: j.update(normalizer={"type": "NFKC"}))
variant("pretok", lambda j: j.update(pre_tokenizer={"type": "Whitespace"}))
variant("merge", lambda j: j["model"]["merges"].append("notatoken alsonot"))
EOF
expect_error "unsupported model" "$tmp/wordpiece.json" "unsupported model type \"WordPiece\""
expect_error "unknown regex" "$tmp/regex.json" "unsupported Split regex"
expect_error "unsupported normalizer" "$tmp/nfkc.json" "unsupported normalizer \"NFKC\""
expect_error "unsupported pre-tokenizer" "$tmp/pretok.json" "unsupported pre_tokenizer \"Whitespace\""
expect_error "merge outside vocab" "$tmp/merge.json" "not in the vocab"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
