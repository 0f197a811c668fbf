#!/usr/bin/env bash
# make gpu-check — everything the first lent GPU should prove, in one run, into one report.
#
# On a machine with an NVIDIA GPU (nvidia-smi lists one) and nvcc:
#   1. builds bin/qstar, bin/qstar-cuda, the C tests linked with the cuda backend (build/tests-cuda/)
#      and the GPU benchmarks (build/bench/cuda/);
#   2. runs the cross-backend suite with the cuda backend (QSTAR_CROSS_DEVICE=cuda
#      tests/test_cross_backend.sh: test_ops with TF32-aware matmul tolerances, thought attention,
#      the Quiet-STaR ops, the model and Quiet-STaR gradient checks, generation, Quiet-STaR parity
#      with PyTorch, lm and quietstar training steps cpu vs cuda, sampling) and the host-sync budget
#      (test_host_syncs cpu cuda);
#      the bf16 table: tests/test_bf16 (cuda-bf16 against the fp32 CPU oracle) and test_recompute;
#   3. a short lm run (30 steps) and a short quietstar run (4 steps) of the tiny preset on cuda and on
#      cpu from the same data: the loss must fall (lm) and agree with the CPU's step by step;
#   4. every bench/cuda benchmark (each validates against the C reference, then times);
#   5. writes $GPU_CHECK_OUT (runs/gpu-check)/report.md and report.json: the GPU, each test's result
#      and worst error, each kernel's time, GB/s or TFLOP/s and % of peak (kernels/gpu_peaks.h), the
#      MFU of the 100m and mistral-7b-shape steps (tools/gpu_check_report.py; logs in logs/).
# Budget: GPU_CHECK_BUDGET seconds (480) for steps 2-4, each step also under its own timeout; a step
# that would start after the budget is spent is reported as skipped, never silently dropped. The build
# (step 1) is timed and reported separately: an incremental build after `make cuda` takes seconds.
# Without a GPU it says so and exits 0 (tests/test_gpu_check.sh checks that path and the report).
# Exit status: 0 when every step passed, 1 otherwise (the report says which).
set -u
cd "$(dirname "$0")/.."
OUT=${GPU_CHECK_OUT:-runs/gpu-check}
BUDGET=${GPU_CHECK_BUDGET:-480}

# a GPU is there when `nvidia-smi -L` lists one ("GPU 0: NVIDIA H200 (UUID: ...)"); on a machine without one
# nvidia-smi is missing or prints "No devices were found" and fails
gpu_name=
if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L 2> /dev/null | grep -q '^GPU '; then
  gpu_name=$(nvidia-smi -L | grep '^GPU ' | head -1 | sed -E 's/^GPU [0-9]+: //; s/ \(UUID.*//')
fi
if [ -z "$gpu_name" ]; then
  echo "gpu-check: no NVIDIA GPU on this machine (nvidia-smi lists none): nothing to check; run make gpu-check on a GPU machine"
  exit 0
fi
if ! command -v nvcc > /dev/null 2>&1; then
  echo "gpu-check: GPU found ($gpu_name) but nvcc is not on PATH: install the CUDA toolkit (make deps) and rerun"
  exit 1
fi

rm -rf "$OUT"; mkdir -p "$OUT/logs"
steps="$OUT/steps.tsv"
: > "$steps"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm --format=csv > "$OUT/gpu.csv" 2>&1
nvcc --version | tail -2 > "$OUT/nvcc.txt" 2>&1
git rev-parse --short HEAD > "$OUT/commit.txt" 2> /dev/null || echo unknown > "$OUT/commit.txt"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
jobs=$(nproc)

start=$(date +%s)
# step NAME KIND TIMEOUT CMD...: runs CMD with its output in logs/NAME.log; records name, kind, status,
# seconds. KIND: build, test, run, bench.
step() {
  local name=$1 kind=$2 limit=$3; shift 3
  local log="$OUT/logs/$name.log" t0 rc status
  if [ "$kind" != build ] && [ $(( $(date +%s) - start )) -ge "$BUDGET" ]; then
    printf '%s\t%s\tskipped\t0\t%s\n' "$name" "$kind" "logs/$name.log" >> "$steps"
    echo "skipped: the ${BUDGET} s budget was spent before this step" > "$log"
    echo "  skip  $name (budget spent)"; return
  fi
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" bash -c '"$@"' step "$@" > "$log" 2>&1; rc=$?
  status=passed
  [ $rc = 0 ] || status=failed
  [ $rc = 124 ] || [ $rc = 137 ] && status=timeout
  printf '%s\t%s\t%s\t%d\t%s\n' "$name" "$kind" "$status" $(( $(date +%s) - t0 )) "logs/$name.log" >> "$steps"
  printf '  %-7s %-34s %4d s\n' "$status" "$name" $(( $(date +%s) - t0 ))
}

echo "gpu-check on $gpu_name: logs in $OUT/logs"
TESTS="test_ops test_thought_attention test_quietstar_ops test_host_syncs test_model_grad test_quietstar_grad test_generate tool_quietstar_parity test_bf16 test_recompute"
step build build 1200 make -j"$jobs" bin/qstar bin/qstar-cuda cuda-bench $(for t in $TESTS; do echo build/tests-cuda/$t; done)
start=$(date +%s)  # the budget covers the checks, not the build

# 2. tests with the cuda backend
step cross_backend test 240 env QSTAR_CROSS_DEVICE=cuda bash tests/test_cross_backend.sh
step host_syncs test 60 build/tests-cuda/test_host_syncs cpu cuda
# the bf16 table on the GPU against the fp32 CPU oracle (ops, an lm and a quietstar step, 50 steps' curve)
step bf16 test 300 build/tests-cuda/test_bf16 cuda-bf16
step recompute test 60 env QSTAR_TEST_DEVICE=cuda-bf16 build/tests-cuda/test_recompute

# 3. short runs, cuda vs cpu
work="$OUT/work"; mkdir -p "$work"
# a learnable text: a fixed pseudo-random pattern of 61 tokens repeated (uniform random tokens would keep
# the loss at log(vocab)); the CPU's 30 lm steps take it from 6.97 to 1.76
pattern=$(python3 -c "import random; r = random.Random(7); print(','.join(str(r.randrange(5, 1000)) for _ in range(61)))")
python3 tests/lib/make_shard.py "$work/d.bin" --pattern "$pattern" --tokens 40000 > /dev/null
LM=(--config configs/tiny.json --data "$work/d.bin" --steps 30 --batch 4 --seq 64 --lr 3e-3 --warmup 0 --log-every 1)
QS=(--config configs/tiny.json --mode quietstar --tokenizer data/corpus/tokenizer.json --data "$work/d.bin" --steps 4
    --batch 2 --seq 48 --lr 1e-3 --warmup 0 --log-every 1)
runs_check() {  # KIND ARGS...: train on cpu and cuda, compare the metrics (tools/gpu_check_report.py --compare)
  local kind=$1; shift
  bin/qstar train "$@" --device cpu --out "$work/${kind}_cpu" > "$work/${kind}_cpu.log" 2>&1 || { echo "cpu run failed"; tail -5 "$work/${kind}_cpu.log"; return 1; }
  # exact fp32 products (QSTAR_TF32=0): with TF32 the first H200 run drifted from the cpu run by 3.3 % over
  # 30 lm steps and 18 % over 4 quietstar steps (other thoughts sampled), so TF32 hid what this compares
  QSTAR_TF32=0 bin/qstar-cuda train "$@" --device cuda --precision fp32 --out "$work/${kind}_cuda" > "$work/${kind}_cuda.log" 2>&1 || { echo "cuda run failed"; tail -5 "$work/${kind}_cuda.log"; return 1; }
  python3 tools/gpu_check_report.py --compare "$kind" "$work/${kind}_cpu/metrics.jsonl" "$work/${kind}_cuda/metrics.jsonl"
}
export -f runs_check
export work
step run_lm run 120 runs_check lm "${LM[@]}"
step run_quietstar run 120 runs_check quietstar "${QS[@]}"

# 4. benchmarks: each validates against the C reference, then times
for b in build/bench/cuda/bench_*; do
  [ -x "$b" ] || continue
  name=$(basename "$b")
  case $name in
    bench_step) step "$name" bench 240 "$b" --steps 3; step "${name}_bf16" bench 240 "$b" --steps 3 --precision bf16 ;;
    bench_attention) step "$name" bench 120 "$b" --repeats 10 ;;
    *) step "$name" bench 90 "$b" --repeats 20 ;;
  esac
done

python3 tools/gpu_check_report.py "$OUT"
echo "gpu-check: total $(( $(date +%s) - start )) s after the build; report: $OUT/report.md"
python3 -c "import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))['all_passed'] else 1)" "$OUT/report.json"
