#!/usr/bin/env bash
# Tests `qstar eval --token-report OUT.html` (eval/token_report.c). Held-out documents full of HTML
# (<script>alert("x")</script>, & "quotes" 'single' <b>bold</b>) with answer spans are tokenized;
# a tiny base model and a Quiet-STaR continuation are trained for a few steps; eval writes the page.
# Checks: the page parses with only the page's own tags and attributes (the data's <script> and
# <b> come back as text, never as elements), nothing is fetched (no src/href/url/@import), the text
# of each window equals the held-out text, the number of token spans follows --report-tokens, each
# token's colour agrees with the sign of its change, hover titles carry the thought, the summary's
# NLLs equal eval's printed ones, the histogram counts every scored token, the tables are sorted,
# answer tokens are marked, the bad uses fail with one line (lm checkpoint, --no-thoughts, no
# tokenizer) without writing a page. Then headless Chromium (Debian's chromium-headless-shell or
# chromium, installed by make deps) renders the page to a PNG, which must not be blank; where no
# Chromium is installed that case prints "skipped: chromium not installed" (QSTAR_CHROMIUM=none
# forces that; QSTAR_CHROMIUM=NAME picks the browser). Ends "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
work=build/test-work/token_report; rm -rf "$work"; mkdir -p "$work"
Q=bin/qstar
PY=.venv/bin/python
tok=data/corpus/tokenizer.json
export OMP_NUM_THREADS=1

ok()  { pass=$((pass+1)); echo "ok   $1"; }
bad() { fail=$((fail+1)); echo "FAIL $1"; [ -n "${2:-}" ] && sed 's/^/       /' <<< "$2" | head -12; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" = 0 ]; exit $?; }

[ -x "$Q" ] || { bad "bin/qstar not built (make bin/qstar)"; finish; }
[ -x "$PY" ] && $PY -c "import tokenizers" 2>/dev/null || { bad ".venv with tokenizers missing (make deps)"; finish; }

$PY - "$work" <<'EOF'
import json, sys
w = sys.argv[1]
with open(w + "/held.jsonl", "w") as f:
    for k in range(12):
        a, b = 100 + 7 * k, 250 + 13 * k
        t = (f'Problem {k}: compute {a} + {b}. <script>alert("x{k}")</script> & "quotes" \'single\' <b>bold</b>\n'
             f'Working in columns we add the units, then the tens. So {a} + {b} = {a + b}.\n')
        s = t.rindex(str(a + b))
        f.write(json.dumps({"text": t, "answers": [[s, s + len(str(a + b))]]}) + "\n")
EOF
$PY data/corpus/answer_mask.py --tokenizer "$tok" --in "$work/held.jsonl" --out "$work/held" > /dev/null \
  || { bad "answer_mask.py failed"; finish; }
D=$work/held/tokens.bin M=$work/held/answer_mask.bin
if $Q train --config configs/tiny.json --data "$D" --out "$work/base" --steps 3 --batch 2 --seq 32 > "$work/train.log" 2>&1 \
   && $Q train --model "$work/base/step_000003" --mode quietstar --tokenizer "$tok" --data "$D" --steps 2 --batch 1 \
        --seq 32 --n-ahead 6 --n-ahead-talk 2 --lr 1e-3 --warmup 0 --out "$work/qs" >> "$work/train.log" 2>&1; then
  ok "a tiny Quiet-STaR checkpoint to report on"
else bad "training the models failed" "$(tail -5 "$work/train.log")"; finish; fi
C=$work/qs/step_000002

if $Q eval --ckpt "$C" --data "$D" --answer-mask "$M" --batch 2 --seq 64 --token-report "$work/report.html" \
     --report-tokens 300 > "$work/eval.txt" 2> "$work/eval.err" && [ -s "$work/report.html" ]; then
  ok "eval --token-report wrote $(wc -c < "$work/report.html") bytes"
else bad "eval --token-report failed" "$(cat "$work/eval.err")"; finish; fi

if out=$($PY - "$work/report.html" "$work/eval.txt" "$D" "$tok" 2>&1 <<'EOF'
import html.parser, re, struct, sys
from tokenizers import Tokenizer
page_path, eval_path, data_path, tok_path = sys.argv[1:]
raw = open(page_path, encoding="utf-8").read()
problems = []
def check(cond, what):
    if not cond: problems.append(what)

ALLOWED = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "code", "table", "tr", "td", "th",
           "svg", "rect", "line", "text", "span", "div"}
ATTRS = {"lang", "charset", "name", "content", "class", "style", "title", "xmlns", "width", "height", "viewbox",
         "role", "aria-label", "font-family", "font-size", "x", "y", "x1", "y1", "x2", "y2", "fill", "stroke",
         "text-anchor", "transform"}

class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.tags, self.bad_attrs = [], set(), set()
        self.windows, self.tokens, self.cur = [], [], None
        self.hist, self.tables, self.row = [], [], None
        self.in_svg_title = False
    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = dict(attrs)
        self.bad_attrs |= {k for k in a if k not in ATTRS}
        cls = (a.get("class") or "").split()
        if tag == "span" and "w" in cls:
            self.windows.append([])
        if tag == "span" and "t" in cls:
            self.cur = {"cls": cls, "style": a.get("style", ""), "title": a.get("title", ""), "text": ""}
        if tag == "span" and "nl" in cls:
            self.stack.append("nl")
        else:
            self.stack.append(tag)
        if tag == "title" and "svg" in self.stack:
            self.in_svg_title = True
        if tag == "table": self.tables.append([])
        if tag == "tr": self.row = []
        if tag in ("td", "th"): self.row.append("")
    def handle_endtag(self, tag):
        top = self.stack.pop() if self.stack else None
        if tag == "span" and top == "span" and self.cur is not None:
            self.windows[-1].append(self.cur); self.tokens.append(self.cur); self.cur = None
        if tag == "title": self.in_svg_title = False
        if tag == "tr" and self.row is not None: self.tables[-1].append(self.row); self.row = None
    def handle_data(self, data):
        if self.in_svg_title:
            m = re.match(r"(\d+) tokens", data)
            if m: self.hist.append(int(m.group(1)))
        if self.cur is not None and (not self.stack or self.stack[-1] != "nl"):
            self.cur["text"] += data
        if self.row is not None and self.row:
            self.row[-1] += data

p = Page(); p.feed(raw); p.close()
check(p.tags <= ALLOWED, f"unexpected elements {p.tags - ALLOWED} (the data's HTML was not escaped)")
check(not p.bad_attrs, f"unexpected attributes {p.bad_attrs}")
check("<script" not in raw.lower() and "<b>" not in raw, "raw <script> or <b> in the page")
check(not re.search(r"\b(src|href)\s*=|url\(|@import|https?://(?!www\.w3\.org/2000/svg)", raw), "the page fetches something")
check(raw.count("<svg") == 1, "no histogram svg")

# the text of each window is the held-out text (the tokenizer's own decoding of the stream)
hdr = open(data_path, "rb").read()
_, _, width, _, n = struct.unpack("<IIIIQ", hdr[:24])
ids = list(struct.unpack("<%d%s" % (n, "H" if width == 2 else "I"), hdr[64:64 + n * width]))
full = Tokenizer.from_file(tok_path).decode(ids, skip_special_tokens=False)
texts = ["".join(t["text"] for t in w) for w in p.windows]
check(len(p.tokens) == 300, f"{len(p.tokens)} token spans, want 300 (--report-tokens)")
check(len(texts) >= 4, f"only {len(texts)} windows shown")
for k, t in enumerate(texts):
    check(t.lstrip(" ") in full, f"window {k + 1}'s text is not in the held-out text: {t[:80]!r}")
joined = "".join(texts)
check('<script>alert("x0")</script> & "quotes" \'single\' <b>bold</b>' in joined, "the nasty line is not shown verbatim")

# colours follow the sign of each change; titles carry the change and the thought
eval_out = open(eval_path).read()
n_scored = int(re.search(r"tokens: (\d+) scored", eval_out).group(1))
scored = [t for t in p.tokens if "u" not in t["cls"]]
check(len(scored) >= 280, f"only {len(scored)} scored token spans")
for t in scored:
    m = re.match(r"Δ log p ([+-][0-9.]+) \(p ([0-9.]+) without, ([0-9.]+) with\)\nthought: ", t["title"])
    if not m:
        problems.append(f"title {t['title'][:60]!r}"); break
    d = float(m.group(1))
    col = re.search(r"rgba\((\d+),(\d+),(\d+),([0-9.]+)\)", t["style"])
    if not col:
        problems.append(f"style {t['style']!r}"); break
    green = col.group(1) == "44"
    if (d > 0.0005 and not green) or (d < -0.0005 and green):
        problems.append(f"token {t['text']!r} change {d} drawn {'green' if green else 'red'}"); break
answers = [t["text"] for t in p.tokens if "a" in t["cls"]]
check(answers and all(re.fullmatch(r"\s*[0-9]+\s*", a) for a in answers), f"answer tokens marked: {answers[:8]}")

# the summary equals eval's numbers; the histogram counts every scored token
rows = {r[0]: r[1] for tb in p.tables for r in tb if len(r) == 2}
without = re.search(r"without thoughts\s+([0-9.]+)", eval_out).group(1)
withth = re.search(r"with thoughts\s+([0-9.]+)", eval_out).group(1)
check(rows.get("mean NLL without thoughts") == without, f"summary NLL without {rows.get('mean NLL without thoughts')} vs eval {without}")
check(rows.get("mean NLL with thoughts") == withth, f"summary NLL with {rows.get('mean NLL with thoughts')} vs eval {withth}")
check(sum(p.hist) == n_scored and len(p.hist) == 41, f"histogram counts {sum(p.hist)} in {len(p.hist)} bins, eval scored {n_scored}")

# tables: helped most (25 rows, descending), hurt most (10, ascending), token types
occ = [tb for tb in p.tables if tb and tb[0][:3] == ["#", "context", "token"]]
check(len(occ) == 2, f"{len(occ)} occurrence tables")
if len(occ) == 2:
    helped = [float(r[6]) for r in occ[0][1:]]
    hurt = [float(r[6]) for r in occ[1][1:]]
    check(len(helped) == 25 and helped == sorted(helped, reverse=True), f"helped-most column {helped[:5]}")
    check(len(hurt) == 10 and hurt == sorted(hurt), f"hurt-most column {hurt[:5]}")
types = [tb for tb in p.tables if tb and tb[0][:2] == ["token", "occurrences"]]
check(types and len(types[0]) > 3 and all(int(r[1]) >= 3 for r in types[0][1:]), "token types table")
if problems:
    print("\n".join(problems)); sys.exit(1)
print(f"{len(p.tokens)} token spans in {len(texts)} windows, {n_scored} scored, escaping and numbers consistent")
EOF
); then ok "page content: $out"; else bad "page content" "$out"; fi

# a second page in a subdirectory that does not exist yet, all tokens shown by default
if $Q eval --ckpt "$C" --data "$D" --batch 2 --seq 64 --max-batches 2 --token-report "$work/sub/dir/r.html" \
     > /dev/null 2> "$work/eval.err" && grep -q "Where thinking helps" "$work/sub/dir/r.html" 2>/dev/null; then
  ok "report written where its directory did not exist"
else
  bad "report into a new directory" "$(cat "$work/eval.err")"
fi

# expect_error NAME NEEDLE CMD...: exit 1, one stderr line "qstar: error: ...NEEDLE...", no page
expect_error() {
  local name=$1 needle=$2; shift 2
  rm -f "$work/no.html"
  "$@" > "$work/out.txt" 2> "$work/err.txt"; local rc=$?
  local lines; lines=$(wc -l < "$work/err.txt")
  if [ $rc -eq 1 ] && [ "$lines" = 1 ] && grep -q '^qstar: error: ' "$work/err.txt" \
     && grep -qF -- "$needle" "$work/err.txt" && [ ! -e "$work/no.html" ]; then
    ok "$name: $(cat "$work/err.txt")"
  else
    bad "$name (exit $rc, $lines stderr lines, want exit 1, one line naming '$needle', no page)" "$(cat "$work/err.txt")"
  fi
}
expect_error "lm checkpoint" "needs a Quiet-STaR checkpoint" \
  $Q eval --ckpt "$work/base/step_000003" --data "$D" --batch 2 --seq 64 --token-report "$work/no.html"
expect_error "--no-thoughts" "drop --no-thoughts" \
  $Q eval --ckpt "$C" --data "$D" --batch 2 --seq 64 --no-thoughts --token-report "$work/no.html"
mkdir -p "$work/notok" && cp "$C"/config.json "$C"/model.safetensors "$C"/state.json "$work/notok/"
expect_error "checkpoint without a tokenizer" "give --tokenizer" \
  $Q eval --ckpt "$work/notok" --data "$D" --batch 2 --seq 64 --token-report "$work/no.html"
expect_error "--report-tokens 0" "--report-tokens must be positive" \
  $Q eval --ckpt "$C" --data "$D" --batch 2 --seq 64 --token-report "$work/no.html" --report-tokens 0

# headless Chromium renders the page; the PNG must not be blank
# QSTAR_CHROMIUM names the browser to use (none: behave as where no Chromium is installed)
chrome=""
for c in ${QSTAR_CHROMIUM:-chromium-headless-shell chromium chromium-browser}; do
  [ "$c" != none ] && command -v "$c" > /dev/null && { chrome=$c; break; }
done
if [ -z "$chrome" ]; then
  echo "skip render in headless Chromium: skipped: chromium not installed (make deps installs chromium-headless-shell)"
else
  rm -f "$work/shot.png"
  timeout 120 "$chrome" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
    --user-data-dir="$work/chrome-profile" --window-size=1200,1600 --screenshot="$PWD/$work/shot.png" \
    "file://$PWD/$work/report.html" > "$work/chrome.log" 2>&1
  if [ -s "$work/shot.png" ] && out=$($PY - "$work/shot.png" 2>&1 <<'EOF'
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
assert im.size == (1200, 1600), im.size
px = list(im.getdata())
white = sum(1 for p in px if min(p) > 245)
dark = sum(1 for p in px if max(p) < 90)
green = sum(1 for r, g, b in px if g > 120 and r < 90 and b < 90)
red = sum(1 for r, g, b in px if r > 180 and g < 80 and b < 80)
colours = len(set(px))
assert white < 0.97 * len(px), f"{white / len(px):.1%} white: blank"
assert dark > 5000, f"only {dark} dark (text) pixels"
assert green > 300 and red > 300, f"green {green} / red {red} pixels: colours missing"
assert colours > 100, f"{colours} distinct colours"
print(f"{1 - white / len(px):.0%} non-white, {dark} text pixels, green {green}, red {red}, {colours} colours")
EOF
  ); then ok "rendered by $chrome: $out"
  else bad "Chromium render ($chrome)" "${out:-} $(tail -3 "$work/chrome.log")"; fi
fi

finish
