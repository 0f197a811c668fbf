#!/usr/bin/env bash
# make gpu-check (tools/gpu_check.sh) without a GPU: it says so and exits 0, also when nvidia-smi exists
# but finds no device; with a GPU but no nvcc it stops with a message and exit 1. The report generator
# (tools/gpu_check_report.py) on logs in the exact formats the tests and bench/cuda print: every step,
# each kernel's time, rate and % of peak, the MFU rows of 100m and mistral-7b, failures listed; and its
# cpu-vs-cuda run comparison passes equal runs and fails a first-step difference, a later divergence
# and an lm loss that does not fall.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
work=build/test-work/gpu-check; rm -rf "$work"; mkdir -p "$work/bin"

# a PATH with the tools the script needs but no nvcc, and a fake nvidia-smi in $work/bin (so a broken
# detection stops at "no nvcc" instead of starting a build)
mkdir -p "$work/nonvcc"; for t in bash sh date head grep sed timeout python3 dirname cat; do ln -sf "$(command -v $t)" "$work/nonvcc/$t"; done
ln -sf "$PWD/$work/bin/nvidia-smi" "$work/nonvcc/nvidia-smi"
# 1. no GPU: a fake nvidia-smi that finds no device (what the driver prints on a machine without one)
cat > "$work/bin/nvidia-smi" <<'S'
#!/bin/sh
echo "No devices were found"; exit 6
S
chmod +x "$work/bin/nvidia-smi"
out=$(PATH="$PWD/$work/nonvcc" GPU_CHECK_OUT="$work/out1" "$PWD/$work/nonvcc/bash" tools/gpu_check.sh 2>&1); rc=$?
if [ $rc = 0 ] && grep -q "no NVIDIA GPU" <<< "$out" && [ ! -e "$work/out1" ]; then ok "no device: says so, exits 0, writes nothing"
else bad "no device: rc $rc, output: $out"; fi
if ! PATH=/usr/bin:/bin command -v nvidia-smi > /dev/null 2>&1; then
  out=$(PATH=/usr/bin:/bin GPU_CHECK_OUT="$work/out2" /bin/bash tools/gpu_check.sh 2>&1); rc=$?
  if [ $rc = 0 ] && grep -q "no NVIDIA GPU" <<< "$out"; then ok "no nvidia-smi: says so, exits 0"
  else bad "no nvidia-smi: rc $rc, output: $out"; fi
fi
# 2. a GPU but no nvcc: a clear stop
cat > "$work/bin/nvidia-smi" <<'S'
#!/bin/sh
echo "GPU 0: NVIDIA H200 (UUID: GPU-00000000-0000-0000-0000-000000000000)"
S
out=$(PATH="$PWD/$work/nonvcc" GPU_CHECK_OUT="$work/out3" "$PWD/$work/nonvcc/bash" tools/gpu_check.sh 2>&1); rc=$?
if [ $rc = 1 ] && grep -q "GPU found (NVIDIA H200) but nvcc is not on PATH" <<< "$out"; then ok "GPU without nvcc: a message naming the GPU, exit 1"
else bad "GPU without nvcc: rc $rc, output: $out"; fi

# 3. the report from logs in the printed formats
o="$work/out4"; mkdir -p "$o/logs"
printf 'name, driver_version, memory.total [MiB], compute_cap, clocks.max.sm [MHz]\nNVIDIA H200, 550.54, 143771 MiB, 9.0, 1980 MHz\n' > "$o/gpu.csv"
echo "Cuda compilation tools, release 12.4" > "$o/nvcc.txt"; echo abc1234 > "$o/commit.txt"
printf 'build\tbuild\tpassed\t41\tlogs/build.log\ncross_backend\ttest\tfailed\t120\tlogs/cross_backend.log\nbench_norm\tbench\tpassed\t9\tlogs/bench_norm.log\nbench_step\tbench\tpassed\t80\tlogs/bench_step.log\nbench_matmul\tbench\tskipped\t0\tlogs/bench_matmul.log\nbench_quietstar\tbench\tpassed\t0\tlogs/bench_quietstar.log\n' > "$o/steps.tsv"
echo "bench_quietstar: no CUDA device (no CUDA-capable device is detected): timing needs a GPU; ..." > "$o/logs/bench_quietstar.log"
echo "  LINK  bin/qstar-cuda" > "$o/logs/build.log"
cat > "$o/logs/cross_backend.log" <<'L'
ok   test_ops on cuda (233 passed, 0 failed)
FAIL quietstar training steps differ (logs in build/test-work/cross)
    2 steps, fields loss,grad_norm: worst relative difference 3.1e-03
12 passed, 1 failed
L
{ echo "-- rmsnorm_forward N=4096 H=4096"
  printf '  %-4s %-54s max abs err %.2e  max rel %.2e  %5.1f%% of tol (atol %.0e, rtol %.0e)\n' ok "rmsnorm_forward out" 1.2e-7 3e-7 1.5 1e-5 1e-5
  printf '  time %-54s %9.4f ms' "rmsnorm_forward" 0.0512; printf '  %8.1f GB/s' 2621.4; printf ' (%5.1f%% of HBM)\n' 54.6
  echo "-- matmul N=4096 4096x4096"
  printf '  time %-54s %9.4f ms' "matmul_forward" 0.4012; printf '  %8.2f TFLOP/s' 342.55; printf ' (%5.1f%% of %s)\n' 69.2 "TF32"
  echo "bench_norm: 2 passed, 0 failed"; } > "$o/logs/bench_norm.log"
{ printf '%-28s %-9s %5s %5s %11s %10s %12s %10s %7s\n' preset mode batch seq params ms/step tokens/s TFLOP/s MFU
  printf '%-28s %-9s %5d %5d %10.1fM %10.2f %12.0f %10.1f' 100m lm 8 1024 123.4 210.5 38900 98.1; printf ' %6.1f%%\n' 19.8
  printf '%-28s %-9s %5d %5d %10.1fM %10.2f %12.0f %10.1f' "mistral-7b (est. 32 layers)" quietstar 1 256 7292.1 1650.2 310 201.4; printf ' %6.1f%%\n' 40.7
  echo "bench_step: 2 passed, 0 failed"; } > "$o/logs/bench_step.log"
echo "skipped: the 480 s budget was spent before this step" > "$o/logs/bench_matmul.log"
if python3 tools/gpu_check_report.py "$o" > "$work/report.log" 2>&1 && python3 - "$o" <<'P'
import json, sys
r = json.load(open(sys.argv[1] + "/report.json"))
md = open(sys.argv[1] + "/report.md").read()
k = {x["what"]: x for x in r["kernels"]}
assert r["gpu"].startswith("NVIDIA H200"), r["gpu"]
assert [s["status"] for s in r["steps"]] == ["passed", "failed", "passed", "passed", "skipped", "failed"]  # no device: failed
assert k["rmsnorm_forward"]["ms"] == 0.0512 and k["rmsnorm_forward"]["unit"] == "GB/s" and k["rmsnorm_forward"]["pct_peak"] == 54.6
assert k["matmul_forward"]["rate"] == 342.55 and k["matmul_forward"]["peak"] == "TF32" and k["matmul_forward"]["case"] == "matmul N=4096 4096x4096"
assert r["mfu"] == {"100m lm fp32": 19.8, "mistral-7b (est. 32 layers) quietstar fp32": 40.7}, r["mfu"]
cb = r["steps"][1]
assert cb["passed"] == 12 and cb["failed"] == 1 and abs(cb["worst_error"] - 3.1e-3) < 1e-12, cb
assert r["all_passed"] is False and r["total_seconds"] == 209 and r["build_seconds"] == 41
assert "quietstar training steps differ" in md and "| bench_step | bench | passed | 80 |" in md and "40.7%" in md
assert "skipped" in md
P
then ok "report.md/json: steps, tests' worst errors, kernel times and % of peak, MFU rows, failures, a GPU bench that found no device"
else bad "report generator"; cat "$work/report.log"; fi

# 4. the run comparison
mk() {  # FILE LOSS...: a metrics.jsonl with these losses (base_nll = loss)
  local f=$1; shift; : > "$f"; local i=1
  for l in "$@"; do echo "{\"step\":$i,\"loss\":$l,\"base_nll\":$l}" >> "$f"; i=$((i+1)); done
}
mk "$work/a.jsonl" 4.0 3.9 3.8 3.7 3.6 3.5; mk "$work/b.jsonl" 4.00002 3.9003 3.7995 3.7004 3.6 3.5006
python3 tools/gpu_check_report.py --compare lm "$work/a.jsonl" "$work/b.jsonl" > "$work/c1.log" 2>&1 \
  && ok "compare: runs within the fp32 tolerances pass" || { bad "compare: close runs"; cat "$work/c1.log"; }
mk "$work/b.jsonl" 4.001 3.9 3.8 3.7 3.6 3.5
python3 tools/gpu_check_report.py --compare lm "$work/a.jsonl" "$work/b.jsonl" > "$work/c2.log" 2>&1 \
  && { bad "compare: a 2.5e-4 first-step difference passed"; cat "$work/c2.log"; } || ok "compare: a first-step difference fails"
mk "$work/b.jsonl" 4.0 3.9 3.8 3.7 3.6 3.52
python3 tools/gpu_check_report.py --compare quietstar "$work/a.jsonl" "$work/b.jsonl" > "$work/c3.log" 2>&1 \
  && { bad "compare: a 0.6% later divergence passed"; cat "$work/c3.log"; } || ok "compare: a later divergence fails"
mk "$work/a.jsonl" 4.0 4.1 4.2 4.3 4.4 4.5; cp "$work/a.jsonl" "$work/b.jsonl"
python3 tools/gpu_check_report.py --compare lm "$work/a.jsonl" "$work/b.jsonl" > "$work/c4.log" 2>&1 \
  && { bad "compare: an lm loss that rises passed"; cat "$work/c4.log"; } || ok "compare: an lm loss that does not fall fails"

echo "$pass passed, $fail failed"
[ $fail = 0 ]
