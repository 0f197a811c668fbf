#!/usr/bin/env bash
# Tests tools/plot_metrics.py, the standard-library-only plotter of metrics.jsonl curves.
# It writes small metrics files (a base run, a resumed Quiet-STaR run with NaN/inf values, missing
# fields and a list field, a single-point run), plots them, and checks each PNG by parsing it here:
# signature, IHDR size and format, every chunk's CRC, IDAT inflating to height*(1+3*width) bytes
# with filter byte 0 on every row, IEND last, and that each series' palette colour covers enough
# pixels. It also checks the error paths (missing file, malformed JSON, unknown field: exit 1 and
# one stderr line naming the file), that a failed run leaves an existing OUT.png untouched and no
# temporary files, and that the output is deterministic. Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
work=build/test-work/plot; rm -rf "$work"; mkdir -p "$work"
P="python3 tools/plot_metrics.py"

ok()  { pass=$((pass+1)); echo "ok   $1"; }
bad() { fail=$((fail+1)); echo "FAIL $1"; [ -n "${2:-}" ] && sed 's/^/       /' <<< "$2" | head -8; }

# check NAME PNG W H MIN_PIXELS SERIES_COUNT: valid PNG of WxH where each of the first
# SERIES_COUNT palette colours covers at least MIN_PIXELS pixels.
check() {
  local name=$1 out
  if out=$(python3 - "$@" 2>&1 <<'EOF'
import struct, sys, zlib
sys.path.insert(0, "tools")
from plot_metrics import PALETTE
_, _, path, w, h, minpx, nser = sys.argv
w, h, minpx, nser = int(w), int(h), int(minpx), int(nser)
d = open(path, "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n", "bad signature"
i, chunks = 8, []
while i < len(d):
    n, = struct.unpack(">I", d[i:i + 4])
    kind, body = d[i + 4:i + 8], d[i + 8:i + 8 + n]
    crc, = struct.unpack(">I", d[i + 8 + n:i + 12 + n])
    assert len(body) == n, f"truncated {kind} chunk"
    assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC in {kind}"
    chunks.append((kind, body))
    i += 12 + n
kinds = [k for k, _ in chunks]
assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds, f"chunk order {kinds}"
W, H, depth, ctype, comp, filt, inter = struct.unpack(">IIBBBBB", chunks[0][1])
assert (W, H) == (w, h), f"IHDR size {W}x{H}, want {w}x{h}"
assert (depth, ctype, comp, filt, inter) == (8, 2, 0, 0, 0), "want 8-bit RGB, no interlace"
raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
stride = 1 + 3 * W
assert len(raw) == H * stride, f"IDAT inflates to {len(raw)} bytes, want {H * stride}"
assert all(raw[y * stride] == 0 for y in range(H)), "a scanline has a filter byte other than 0"
counts = {}
for y in range(H):
    row = raw[y * stride + 1:(y + 1) * stride]
    for x in range(0, 3 * W, 3):
        c = bytes(row[x:x + 3])
        counts[c] = counts.get(c, 0) + 1
have = [counts.get(bytes(PALETTE[k]), 0) for k in range(nser)]
assert all(n >= minpx for n in have), f"series pixel counts {have}, want each >= {minpx}"
assert counts.get(bytes(PALETTE[nser]), 0) == 0 or nser == 0, "an unexpected extra series colour"
assert counts.get(b"\x19\x19\x19", 0) > 300, "hardly any text pixels"
print(f"{W}x{H}, {len(d)} bytes, series pixels {have}")
EOF
  ); then ok "$name ($out)"; else bad "$name" "$out"; fi
}

# expect_error NAME NEEDLE CMD...: exit 1, exactly one stderr line "plot_metrics: error: ...NEEDLE..."
expect_error() {
  local name=$1 needle=$2; shift 2
  "$@" > "$work/out.txt" 2> "$work/err.txt"; local rc=$?
  local lines; lines=$(wc -l < "$work/err.txt")
  if [ $rc -eq 1 ] && [ "$lines" = 1 ] && grep -q '^plot_metrics: error: ' "$work/err.txt" \
     && grep -qF -- "$needle" "$work/err.txt"; then
    ok "$name: $(cat "$work/err.txt")"
  else
    bad "$name (exit $rc, $lines stderr lines, want exit 1 and one line naming '$needle')" "$(cat "$work/err.txt")"
  fi
}

python3 - "$work" <<'EOF'
import json, math, random, sys
work = sys.argv[1]
rng = random.Random(7)
with open(f"{work}/base.jsonl", "w") as f:
    for s in range(1, 301):
        f.write(json.dumps({"step": s, "loss": 2 + 4 * math.exp(-s / 60) + rng.gauss(0, 0.1),
                            "lr": 1e-4, "grad_norm": 1.0, "ms": 10.0, "tokens_per_s": 5e3}) + "\n")
# A resumed Quiet-STaR run: starts at step 151, repeats step 200 (later line wins), has NaN/inf,
# lines without talk_nll_mean, a list field, and a blank line.
with open(f"{work}/qs.jsonl", "w") as f:
    for s in list(range(151, 201)) + list(range(200, 301)):
        b = 2.2 + 4 * math.exp(-s / 70) + rng.gauss(0, 0.1)
        d = {"step": s, "loss": b + 0.2, "base_nll": b, "talk_nll": [b - 0.1, b - 0.2],
             "talk_nll_mean": b - 0.15, "mean_reward": 0.01}
        if s % 17 == 0: d["base_nll"] = float("nan")
        if s % 23 == 0: d["base_nll"] = float("inf")
        if s % 10 == 0: del d["talk_nll_mean"]
        f.write(json.dumps(d) + "\n")
        if s == 250: f.write("\n")
with open(f"{work}/one.jsonl", "w") as f:
    f.write(json.dumps({"step": 1234, "loss": 3.25}) + "\n")
with open(f"{work}/bad.jsonl", "w") as f:
    f.write('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.9}\n{"step": 3, "loss": \n')
with open(f"{work}/array.jsonl", "w") as f:
    f.write('{"step": 1, "loss": 2.0}\n[1, 2]\n')
EOF

# two runs, three series
out=$work/two.png
if $P "$out" "$work/base.jsonl=base:loss" "$work/qs.jsonl=quietstar:base_nll,talk_nll_mean" \
     --title "base vs quietstar" 2> "$work/err.txt"; then
  check "two runs, three series" "$out" 900 540 400 3
else bad "two runs, three series: plotter failed" "$(cat "$work/err.txt")"; fi

# smoothing, log scale, list element, custom size
out=$work/smooth_log.png
if $P "$out" "$work/base.jsonl=base:loss" "$work/qs.jsonl=qs:talk_nll[1]" --smooth 15 --logy \
     --size 640x400 2> "$work/err.txt"; then
  check "--smooth --logy --size, list element" "$out" 640 400 300 2
else bad "--smooth --logy: plotter failed" "$(cat "$work/err.txt")"; fi

# single point, default label and field
out=$work/one.png
if $P "$out" "$work/one.jsonl" 2> "$work/err.txt"; then
  check "single point (6x6 dot + 26x4 legend swatch = 140 px)" "$out" 900 540 140 1
else bad "single point: plotter failed" "$(cat "$work/err.txt")"; fi

# deterministic bytes
$P "$work/two_again.png" "$work/base.jsonl=base:loss" "$work/qs.jsonl=quietstar:base_nll,talk_nll_mean" \
   --title "base vs quietstar" 2>/dev/null
if cmp -s "$work/two.png" "$work/two_again.png"; then ok "same input, same bytes"
else bad "same input gave different PNG bytes"; fi

# errors: one line naming the file, exit 1, OUT untouched, no temp files left
echo "keep me" > "$work/keep.png"
expect_error "missing file" "$work/nothere.jsonl" $P "$work/keep.png" "$work/nothere.jsonl=x:loss"
expect_error "missing second file" "$work/gone/metrics.jsonl" $P "$work/keep.png" "$work/base.jsonl" "$work/gone/metrics.jsonl"
expect_error "malformed JSON names file:line" "$work/bad.jsonl:3" $P "$work/keep.png" "$work/bad.jsonl"
expect_error "line not an object" "$work/array.jsonl:2" $P "$work/keep.png" "$work/array.jsonl"
expect_error "unknown field" "'no_such_field'" $P "$work/keep.png" "$work/base.jsonl=b:no_such_field"
expect_error "list field without index" "talk_nll[0]" $P "$work/keep.png" "$work/qs.jsonl=q:talk_nll"
if [ "$(cat "$work/keep.png")" = "keep me" ]; then ok "failed runs leave OUT.png untouched"
else bad "a failed run changed OUT.png"; fi
if ls -a "$work" | grep -q '\.tmp$'; then bad "temporary files left: $(ls -a "$work" | grep '\.tmp$')"
else ok "no temporary files left behind"; fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
