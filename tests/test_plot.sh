#!/usr/bin/env bash
# Tests the matplotlib charts: tools/plot_metrics.py (metrics.jsonl curves, PNG/SVG by extension),
# tools/plot_run.py (the standard panels of one run) and tools/plot_bench.py (thought attention
# benchmark). It writes small metrics files (a base run; a Quiet-STaR run started from the base run's
# step-300 checkpoint, with NaN/inf values, missing fields, a list field and a repeated step; a
# single-point run; an older run whose start is known only from its checkpoints' state.json), plots
# them, and checks the images: PNG size and that each series' colour covers enough pixels, SVG
# well-formed with each series' colour, the continued run drawn from step 301 with a start marker at
# 300 (and on its own steps with --own-steps), same input -> same bytes, the error paths (one stderr
# line naming the file, exit 1, an existing OUT untouched, no temporary files), and that
# `qstar train --model CKPT` records init_model/init_step in its first metrics record.
# Needs matplotlib (make deps installs Debian's python3-matplotlib; the .venv sees it): without it
# every case fails, as the charts are part of `make run`. Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
work=build/test-work/plot; rm -rf "$work"; mkdir -p "$work"
PY=.venv/bin/python; [ -x "$PY" ] || PY=/usr/bin/python3
P="$PY tools/plot_metrics.py"

ok()  { pass=$((pass+1)); echo "ok   $1"; }
bad() { fail=$((fail+1)); echo "FAIL $1"; [ -n "${2:-}" ] && sed 's/^/       /' <<< "$2" | head -8; }

if ! $PY -c "import matplotlib" 2>/dev/null; then
  bad "matplotlib is not importable by $PY (run make deps: it installs Debian's python3-matplotlib)"
  echo "$pass passed, $fail failed"; exit 1
fi

# check_png NAME PNG W H MIN_PIXELS SERIES_COUNT: a PNG of WxH where each of the first SERIES_COUNT
# series colours (plot_metrics.COLORS) covers at least MIN_PIXELS pixels (within a small distance:
# antialiasing) and the next colour does not appear as a line.
check_png() {
  local name=$1 out
  if out=$($PY - "$@" 2>&1 <<'EOF'
import sys
sys.path.insert(0, "tools")
from plot_metrics import COLORS
from PIL import Image
_, _, path, w, h, minpx, nser = sys.argv
w, h, minpx, nser = int(w), int(h), int(minpx), int(nser)
d = open(path, "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
im = Image.open(path).convert("RGB")
assert im.size == (w, h), f"size {im.size}, want {w}x{h}"
px = list(im.getdata())
def count(hexc):
    r, g, b = (int(hexc[i:i + 2], 16) for i in (1, 3, 5))
    return sum(1 for (x, y, z) in px if abs(x - r) + abs(y - g) + abs(z - b) <= 24)
have = [count(COLORS[k]) for k in range(nser)]
assert all(n >= minpx for n in have), f"series pixel counts {have}, want each >= {minpx}"
extra = count(COLORS[nser])
assert extra < minpx // 4, f"an unexpected extra series colour ({extra} px)"
dark = sum(1 for p in px if sum(p) < 150)
assert dark > 300, f"hardly any text or axis pixels ({dark})"
print(f"{w}x{h}, {len(d)} bytes, series pixels {have}")
EOF
  ); then ok "$name ($out)"; else bad "$name" "$out"; fi
}

# expect_error NAME PROG NEEDLE CMD...: exit 1, exactly one stderr line "PROG: error: ...NEEDLE..."
expect_error() {
  local name=$1 prog=$2 needle=$3; shift 3
  "$@" > "$work/out.txt" 2> "$work/err.txt"; local rc=$?
  local lines; lines=$(wc -l < "$work/err.txt")
  if [ $rc -eq 1 ] && [ "$lines" = 1 ] && grep -q "^$prog: error: " "$work/err.txt" \
     && grep -qF -- "$needle" "$work/err.txt"; then
    ok "$name: $(cat "$work/err.txt")"
  else
    bad "$name (exit $rc, $lines stderr lines, want exit 1 and one line naming '$needle')" "$(cat "$work/err.txt")"
  fi
}

$PY - "$work" <<'EOF'
import json, math, os, random, sys
work = sys.argv[1]
rng = random.Random(7)
os.makedirs(f"{work}/base/step_000300")
json.dump({"step": 300, "data": {}, "settings": {}}, open(f"{work}/base/step_000300/state.json", "w"))
with open(f"{work}/base/metrics.jsonl", "w") as f:
    for s in range(1, 301):
        f.write(json.dumps({"step": s, "loss": 2 + 4 * math.exp(-s / 60) + rng.gauss(0, 0.1),
                            "lr": 1e-4, "grad_norm": 1.0, "ms": 10.0, "tokens_per_s": 5e3}) + "\n")
# A Quiet-STaR run from the base run's step 300: its own steps 1..100, step 50 repeated (a resume;
# the later line wins), NaN/inf, lines without talk_nll_mean, a list field and a blank line.
os.makedirs(f"{work}/qs")
with open(f"{work}/qs/metrics.jsonl", "w") as f:
    for s in list(range(1, 51)) + list(range(50, 101)):
        b = 2.2 + 0.5 * math.exp(-s / 30) + rng.gauss(0, 0.05)
        d = {"step": s, "loss": b + 0.2, "lr": 1e-5, "grad_norm": 2.0 + rng.random(), "ms": 50.0,
             "tokens_per_s": 900.0 + rng.random(), "base_nll": b, "talk_nll": [b - 0.1, b - 0.2],
             "talk_nll_mean": b - 0.15, "mean_reward": 0.01 * rng.gauss(0, 1), "mean_advantage": 0.004,
             "frac_positive_advantage": 0.5, "mean_mix_weight": 0.001 * s, "policy_loss": -0.01}
        if s == 1: d.update(init_model=f"{work}/base/step_000300", init_step=300)
        if s % 17 == 0: d["base_nll"] = float("nan")
        if s % 23 == 0: d["base_nll"] = float("inf")
        if s % 10 == 0: del d["talk_nll_mean"]
        f.write(json.dumps(d) + "\n")
        if s == 70: f.write("\n")
# The same run as older qstar wrote it: no init_* record; the checkpoint's settings name the model
# by a path relative to the directory training ran in.
os.makedirs(f"{work}/old/step_000100")
with open(f"{work}/qs/metrics.jsonl") as src, open(f"{work}/old/metrics.jsonl", "w") as dst:
    for line in src:
        if line.strip():
            d = json.loads(line); d.pop("init_model", None); d.pop("init_step", None)
            dst.write(json.dumps(d) + "\n")
json.dump({"step": 100, "settings": {"model": "elsewhere/base/step_000300"}},
          open(f"{work}/old/step_000100/state.json", "w"))
with open(f"{work}/one.jsonl", "w") as f:
    f.write(json.dumps({"step": 1234, "loss": 3.25}) + "\n")
with open(f"{work}/bad.jsonl", "w") as f:
    f.write('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.9}\n{"step": 3, "loss": \n')
with open(f"{work}/array.jsonl", "w") as f:
    f.write('{"step": 1, "loss": 2.0}\n[1, 2]\n')
EOF
B=$work/base/metrics.jsonl Q=$work/qs/metrics.jsonl

# two runs, three series, PNG
if $P "$work/two.png" "$B=base:loss" "$Q=quietstar:base_nll,talk_nll_mean" --title "base vs quietstar" 2> "$work/err.txt"
then check_png "PNG: two runs, three series" "$work/two.png" 900 540 150 3
else bad "two runs, three series: plotter failed" "$(cat "$work/err.txt")"; fi

# the continued run on the shared step axis, with a marker where it starts
if $PY - "$B" "$Q" "$work/old/metrics.jsonl" > "$work/cont.txt" 2>&1 <<'EOF'
import sys
sys.path.insert(0, "tools")
import plot_metrics as pm
b, q, old = sys.argv[1:]
def lines(fig):
    ax = fig.axes[0]
    curves = {l.get_label(): l for l in ax.get_lines() if not l.get_label().startswith("_") and l.get_gid() != "run-start"}
    marks = [l.get_xdata()[0] for l in ax.get_lines() if l.get_gid() == "run-start"]
    return curves, marks
fig, _ = pm.build_figure([b + "=base:loss", q + "=quietstar:base_nll"])
c, m = lines(fig)
xb, xq = c["base loss"].get_xdata(), c["quietstar base_nll"].get_xdata()
assert (min(xb), max(xb)) == (1, 300), (min(xb), max(xb))
assert (min(xq), max(xq)) == (301, 400), (min(xq), max(xq))
assert m == [300], m
assert any("quietstar starts" in t.get_text() for t in fig.axes[0].texts), [t.get_text() for t in fig.axes[0].texts]
fig, _ = pm.build_figure([b + "=base:loss", q + "=quietstar:base_nll"], own_steps=True)
c, m = lines(fig)
assert min(c["quietstar base_nll"].get_xdata()) == 1 and m == [], m
# older run: the checkpoint's settings.model, found beside the run as ../base/step_000300
fig, _ = pm.build_figure([old + "=old:loss"])
c, m = lines(fig)
assert min(c["old loss"].get_xdata()) == 301 and m == [300], (min(c["old loss"].get_xdata()), m)
print("quietstar drawn at steps 301..400 with a marker at 300; --own-steps 1..100; older run via state.json")
EOF
then ok "continued run on the shared step axis: $(tail -1 "$work/cont.txt")"
else bad "continued run on the shared step axis" "$(cat "$work/cont.txt")"; fi

# smoothing, log scale, list element, custom size
if $P "$work/smooth_log.png" "$B=base:loss" "$Q=qs:talk_nll[1]" --smooth 15 --logy --size 640x400 2> "$work/err.txt"
then check_png "--smooth --logy --size, list element" "$work/smooth_log.png" 640 400 100 2
else bad "--smooth --logy: plotter failed" "$(cat "$work/err.txt")"; fi

# single point, default label and field
if $P "$work/one.png" "$work/one.jsonl" 2> "$work/err.txt"
then check_png "single point drawn as a dot" "$work/one.png" 900 540 20 1
else bad "single point: plotter failed" "$(cat "$work/err.txt")"; fi

# SVG by extension
if $P "$work/two.svg" "$B=base:loss" "$Q=quietstar:base_nll,talk_nll_mean" --smooth 5 2> "$work/err.txt" \
   && out=$($PY - "$work/two.svg" 2>&1 <<'EOF'
import sys, xml.etree.ElementTree as ET
sys.path.insert(0, "tools")
from plot_metrics import COLORS
text = open(sys.argv[1]).read()
root = ET.fromstring(text)
assert root.tag.endswith("svg"), root.tag
assert root.get("width") == "648pt" and root.get("height") == "388.8pt", (root.get("width"), root.get("height"))
for c in COLORS[:3]:
    assert "stroke: " + c in text, c + " missing"
assert "stroke: " + COLORS[3] not in text
assert 'id="run-start' in text, "no start marker"
print("well-formed, 900x540 px, 3 series colours, start marker")
EOF
); then ok "SVG by extension: $out"; else bad "SVG output" "$(cat "$work/err.txt") ${out:-}"; fi

# deterministic bytes
$P "$work/two_again.png" "$B=base:loss" "$Q=quietstar:base_nll,talk_nll_mean" --title "base vs quietstar" 2>/dev/null
$P "$work/two_again.svg" "$B=base:loss" "$Q=quietstar:base_nll,talk_nll_mean" --smooth 5 2>/dev/null
if cmp -s "$work/two.png" "$work/two_again.png" && cmp -s "$work/two.svg" "$work/two_again.svg"
then ok "same input, same bytes (PNG and SVG)"
else bad "same input gave different bytes"; fi

# errors: one line naming the file, exit 1, OUT untouched, no temp files left
echo "keep me" > "$work/keep.png"
expect_error "missing file" plot_metrics "$work/nothere.jsonl" $P "$work/keep.png" "$work/nothere.jsonl=x:loss"
expect_error "missing second file" plot_metrics "$work/gone/metrics.jsonl" $P "$work/keep.png" "$B" "$work/gone/metrics.jsonl"
expect_error "malformed JSON names file:line" plot_metrics "$work/bad.jsonl:3" $P "$work/keep.png" "$work/bad.jsonl"
expect_error "line not an object" plot_metrics "$work/array.jsonl:2" $P "$work/keep.png" "$work/array.jsonl"
expect_error "unknown field" plot_metrics "'no_such_field'" $P "$work/keep.png" "$B=b:no_such_field"
expect_error "list field without index" plot_metrics "talk_nll[0]" $P "$work/keep.png" "$Q=q:talk_nll"
expect_error "unknown image type" plot_metrics "'.gif'" $P "$work/out.gif" "$B"
if [ "$(cat "$work/keep.png")" = "keep me" ]; then ok "failed runs leave OUT untouched"
else bad "a failed run changed OUT"; fi

# plot_run: the standard panels of a Quiet-STaR run (continuing the base run) and of an LM run
if $PY tools/plot_run.py "$work/qs" > "$work/out.txt" 2> "$work/err.txt" && [ -f "$work/qs/metrics.png" ]; then
  check_png "plot_run: Quiet-STaR panels" "$work/qs/metrics.png" 1560 1080 300 2
else bad "plot_run on a Quiet-STaR run failed" "$(cat "$work/err.txt")"; fi
if out=$($PY - "$work" 2>&1 <<'EOF'
import sys
sys.path.insert(0, "tools")
import plot_run
work = sys.argv[1]
fig = plot_run.build_run_figure(work + "/qs")
titles = [a.get_title() for a in fig.axes if a.get_visible()]
want = ["training objective", "next-token NLL", "reward and advantage", "share of positive advantages",
        "mean mixing weight", "policy loss", "gradient norm", "throughput", "learning rate"]
assert len(titles) == 9 and all(any(t.startswith(w) for t in titles) for w in want), titles
nll = [a for a in fig.axes if a.get_title().startswith("next-token NLL")][0]
labels = [l.get_label() for l in nll.get_lines()]
assert "earlier run's loss" in labels and "after thought (talk, mean)" in labels, labels
for a in fig.axes[:9]:
    assert [l.get_xdata()[0] for l in a.get_lines() if l.get_gid() == "run-start"] == [300], a.get_title()
earlier = [l for l in nll.get_lines() if l.get_label() == "earlier run's loss"][0]
assert max(earlier.get_xdata()) == 300
assert "continuing" in fig._suptitle.get_text(), fig._suptitle.get_text()
fig = plot_run.build_run_figure(work + "/base")
titles = [a.get_title() for a in fig.axes if a.get_visible()]
assert len(titles) == 4 and titles[0].startswith("training loss"), titles
print("9 Quiet-STaR panels with start markers and the earlier run's loss; 4 LM panels")
EOF
); then ok "plot_run panels: $out"; else bad "plot_run panels" "$out"; fi
if $PY tools/plot_run.py "$work/base" --out "$work/base.svg" > /dev/null 2> "$work/err.txt" && grep -q "<svg" "$work/base.svg"
then ok "plot_run --out SVG"; else bad "plot_run --out SVG" "$(cat "$work/err.txt")"; fi
expect_error "plot_run: not a run directory" plot_run "$work/nope/metrics.jsonl" $PY tools/plot_run.py "$work/nope"

# plot_bench: bench_thought_attention's table
$PY - > "$work/bench.txt" <<'EOF'
print("thought attention, one Quiet-STaR step (steps = n_ahead + talk - 1 = forwards k = 0..steps-1), 2 thread(s)")
print("  validate R=2 L=37 NH=4 NKV=2 HD=16 steps=6  fwd  max|dense-structured|/max|structured| = 1.00e-07")
print("\n%5s %7s %5s %-7s %12s %12s %8s" % ("L", "n_ahead", "steps", "pass", "struct ms", "dense ms", "dense/s"))
for L, a, s, d in [(256, 12, 271, 729), (256, 24, 675, 1176), (1024, 12, 849, 4941), (1024, 24, 1815, 18551)]:
    for p, f in (("fwd", 0.33), ("fwd+bwd", 1.0)):
        print("%5d %7d %5d %-7s %12.2f %12.2f %8.2f %11.3f %11.3f %8.2f %9.1f %9.1f %2d/%-2d"
              % (L, a, a + 3, p, s * f, d * f, d / s, 1, 2, 2, 10, 20, 3, 3))
EOF
if $PY tools/plot_bench.py "$work/bench.txt" "$work/bench.png" 2> "$work/err.txt"; then
  check_png "plot_bench: time vs L, structured and dense" "$work/bench.png" 1120 440 300 2
else bad "plot_bench failed" "$(cat "$work/err.txt")"; fi
if out=$($PY - "$work/bench.txt" 2>&1 <<'EOF'
import sys
sys.path.insert(0, "tools")
import plot_bench
rows = plot_bench.parse_bench(open(sys.argv[1]).read(), sys.argv[1])
assert rows["fwd+bwd"][24] == [(256, 675.0, 1176.0), (1024, 1815.0, 18551.0)], rows["fwd+bwd"][24]
fig = plot_bench.build_bench_figure(rows)
ax = fig.axes[1]
assert ax.get_title() == "forward + backward" and len(ax.get_lines()) == 4
print("rows parsed; 2 panels x (2 n_ahead x structured/dense)")
EOF
); then ok "plot_bench data: $out"; else bad "plot_bench data" "$out"; fi
expect_error "plot_bench: no table" plot_bench "no rows" $PY tools/plot_bench.py "$work/one.jsonl" "$work/x.png"

if ls -a "$work" "$work/qs" | grep -q '\.tmp$'; then bad "temporary files left: $(ls -a "$work" | grep '\.tmp$')"
else ok "no temporary files left behind"; fi

# qstar train --model CKPT records the checkpoint it continues in its first metrics record
if [ -x bin/qstar ]; then
  $PY tests/lib/make_shard.py "$work/d.bin" --random 1000 --tokens 4000 --seed 5 > /dev/null
  if OMP_NUM_THREADS=1 bin/qstar train --config configs/tiny.json --data "$work/d.bin" --out "$work/t_base" --steps 2 \
       --batch 1 --seq 16 > "$work/t.log" 2>&1 \
     && OMP_NUM_THREADS=1 bin/qstar train --model "$work/t_base/step_000002" --data "$work/d.bin" --out "$work/t_cont" \
       --steps 2 --batch 1 --seq 16 >> "$work/t.log" 2>&1 \
     && out=$($PY - "$work" 2>&1 <<'EOF'
import json, sys
work = sys.argv[1]
base = [json.loads(l) for l in open(work + "/t_base/metrics.jsonl")]
cont = [json.loads(l) for l in open(work + "/t_cont/metrics.jsonl")]
assert "init_step" not in base[0] and "init_model" not in base[0], base[0]
assert cont[0]["init_step"] == 2 and cont[0]["init_model"] == work + "/t_base/step_000002", cont[0]
assert "init_step" not in cont[1]
sys.path.insert(0, "tools")
import plot_metrics as pm
assert pm.run_start(work + "/t_cont/metrics.jsonl", pm.read_records(work + "/t_cont/metrics.jsonl"))[0] == 2
print("first record: init_model %s, init_step 2" % cont[0]["init_model"])
EOF
); then ok "train --model records where it starts ($out)"; else bad "train --model start record" "$(tail -3 "$work/t.log") ${out:-}"; fi
else
  bad "bin/qstar not built (make bin/qstar): the train start record is not checked"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
