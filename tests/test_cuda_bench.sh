#!/usr/bin/env bash
# The GPU benchmarks of bench/cuda without a GPU: builds their emulator variants (make emu-bench: the
# same sources against emu/, the `emu` backend) and runs each; every op's validation against the
# C reference must pass and each must end with "timing needs a GPU" and exit 0. Where the nvcc
# builds exist (make cuda-bench) and no GPU is present, each must say "timing needs a GPU" and exit 0
# too. The emulator builds also run once with --time, which runs the timing and report code (no
# GPU: the numbers mean nothing, but the code paths a GPU run takes are exercised). Small sizes: the
# whole suite takes well under a minute.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
log=build/test-work/cuda_bench; mkdir -p "$log"

if ! make --no-print-directory emu-bench > "$log/make.log" 2>&1; then
  bad "make emu-bench:"; tail -20 "$log/make.log" | sed 's/^/       /'
fi
names=$(ls bench/cuda/bench_*.cu | sed 's|bench/cuda/||; s|\.cu$||')
for name in $names; do
  b=build/bench/emu/$name
  if [ ! -x "$b" ]; then bad "$name: $b not built (the emulator needs nvcc's CUDA headers)"; continue; fi
  start=$(date +%s)
  if "$b" > "$log/$name.log" 2>&1 && grep -q "timing needs a GPU" "$log/$name.log"; then
    ok "$name on emu: $(grep -E '[0-9]+ passed, [0-9]+ failed' "$log/$name.log" | tail -1 | sed 's/^[^:]*: //') ($(( $(date +%s) - start ))s)"
  else
    bad "$name on emu (log $log/$name.log):"; grep -E "FAIL|error|fatal" "$log/$name.log" | head -8 | sed 's/^/       /'
  fi
done

# the emulator's counters (bench_counted in bench_common.h, vec.cuh's counting helpers): every validated
# case of cross-entropy and RMSNorm backward prints "counted <case>: ... ratio R" with R the bytes its
# launches moved through the helpers over the analytic minimum: at least 0.99 and at most 4. Below 1
# the minimum or the counting is wrong, except for the kernels' scalar per-row accesses, which are not
# counted (targets read, losses and rstd written, the zeros of ignored rows: under 1% of the minimum
# here; the forward's logits are read exactly once, so its ratio is 0.9999). Above 4 a kernel
# re-reads its inputs far more than its design (cross-entropy backward: two reads and one write of
# each logit, 1.5; RMSNorm backward: two passes over each row, about 2). Cases whose kernels use no
# helper (e.g. the RMSNorm forward's scalar loads) print "not counted", which fails here.
for spec in "bench_crossentropy:crossentropy_forward:3" "bench_crossentropy:crossentropy_backward:3" \
            "bench_crossentropy:crossentropy_fused:3" "bench_norm:rmsnorm_backward:3"; do
  IFS=: read -r name kase want <<< "$spec"
  f=$log/$name.log
  [ -f "$f" ] || { bad "$kase counters: no log $f"; continue; }
  lines=$(grep -E "^  counted $kase " "$f")
  n=$(printf '%s\n' "$lines" | grep -cE "ratio [0-9.]+")
  ratios=$(printf '%s\n' "$lines" | grep -oE "ratio [0-9.]+" | awk '{print $2}' | tr '\n' ' ')
  if [ "$n" -ge "$want" ] && printf '%s\n' $ratios | awk '$1 < 0.99 || $1 > 4 {e=1} END {exit e}'; then
    ok "$kase counters on emu: $n cases, moved/minimum = $ratios"
  else
    bad "$kase counters on emu: want >= $want cases with a ratio in [0.99, 4], got $n: ${ratios:-none} (log $f)"
    printf '%s\n' "$lines" | head -4 | sed 's/^/       /'
  fi
done

# the timing and report code (events, L2 flush, result lines, the step table) run on the emulator too
for cmd in "bench_norm --time --repeats 2 --warmup 1" "bench_attention --time --repeats 1 --warmup 0 --k 3" \
           "bench_step --time --steps 1"; do
  name=${cmd%% *}; b=build/bench/emu/$name
  [ -x "$b" ] || continue
  if $b ${cmd#* } > "$log/$name.time.log" 2>&1 && grep -qE "^  time |ms/step" "$log/$name.time.log" \
     && ! grep -qE "[0-9.]+%" <(grep -E "^  time |^tiny" "$log/$name.time.log"); then
    ok "$name --time on emu: timing code runs, no % of peak for an unknown device"
  else
    bad "$name --time on emu (log $log/$name.time.log)"; grep -E "FAIL|error|fatal" "$log/$name.time.log" | head -5 | sed 's/^/       /'
  fi
done

# the peak table matches the names the drivers report, most specific first, and knows no others
cat > "$log/peaks.c" <<'C'
#include <stdio.h>
#include "kernels/gpu_peaks.h"
int main(void) {
    const char* cases[][2] = {{"NVIDIA H100 80GB HBM3", "H100 SXM"}, {"NVIDIA H100 PCIe", "H100 PCIe"},
                              {"NVIDIA H100 NVL", "H100 NVL"}, {"NVIDIA H200", "H200 SXM"}, {"NVIDIA H200 NVL", "H200 NVL"},
                              {"NVIDIA A100-SXM4-80GB", "A100 SXM 80GB"}, {"NVIDIA A100-SXM4-40GB", "A100 SXM 40GB"},
                              {"NVIDIA A100 80GB PCIe", "A100 PCIe 80GB"}, {"NVIDIA A100-PCIE-40GB", "A100 PCIe 40GB"},
                              {"NVIDIA A800-SXM4-80GB", "A800 (A100 SXM 80GB figures)"}, {"NVIDIA GeForce RTX 4090", NULL}, {"qstar emulator", NULL}};
    int bad = 0;
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const GpuPeak* p = gpu_peak_lookup(cases[i][0]);
        const char* got = p ? p->label : NULL;
        if ((got == NULL) != (cases[i][1] == NULL) || (got && strcmp(got, cases[i][1]))) {
            printf("%s -> %s, want %s\n", cases[i][0], got ? got : "unknown", cases[i][1] ? cases[i][1] : "unknown");
            bad++;
        }
    }
    return bad != 0;
}
C
if cc -I. "$log/peaks.c" -o "$log/peaks" && "$log/peaks" > "$log/peaks.log" 2>&1; then
  ok "gpu_peaks.h: device names map to their peaks, unknown GPUs to none"
else
  bad "gpu_peaks.h lookup:"; sed 's/^/       /' "$log/peaks.log"
fi

# the nvcc builds, when present, on a machine without a GPU
if ! (command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L 2> /dev/null | grep -q '^GPU '); then
  for name in $names; do
    b=build/bench/cuda/$name
    [ -x "$b" ] || continue
    if "$b" > "$log/$name.cuda.log" 2>&1 && grep -q "timing needs a GPU" "$log/$name.cuda.log"; then
      ok "$name (nvcc build) without a GPU: exits 0, says timing needs a GPU"
    else
      bad "$name (nvcc build) without a GPU:"; head -5 "$log/$name.cuda.log" | sed 's/^/       /'
    fi
  done
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
