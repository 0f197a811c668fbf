#!/usr/bin/env bash
# The embedded default demo (`make run`): everything offline on the bundled corpus. Generates the
# OpenWebMath-like math corpus, tokenizes it with the bundled tokenizer, trains the tiny model,
# and reports held-out loss with a generated sample. Output goes to runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
out=runs/demo
steps="${DEMO_STEPS:-300}"
tok=data/corpus/tokenizer.json
mkdir -p "$out"

echo "== 1. corpus: generating the bundled OpenWebMath-like math text"
data/corpus/build.sh
for split in train heldout; do
  if [ ! -f "$out/data/$split/.done" ]; then
    rm -rf "$out/data/$split"
    bin/qstar tokenize --tokenizer "$tok" --in "data/corpus/out/$split.jsonl" --out "$out/data/$split"
    touch "$out/data/$split/.done"
  fi
done

echo "== 2. train the tiny base model ($steps steps)"
rm -rf "$out/base"
bin/qstar train --config configs/tiny.json --data "$out/data/train/*.bin" --out "$out/base" \
  --steps "$steps" --batch 8 --seq 256 --lr 2e-3 --warmup 20 --weight-decay 0.01 --log-every 25 \
  --tokenizer "$tok" --sample-every 100 --sample-tokens 40

echo "== 3. held-out evaluation"
ckpt=$(ls -d "$out"/base/step_* | tail -1)
bin/qstar eval --ckpt "$ckpt" --data "$out/data/heldout/*.bin" --batch 8 --seq 256 | tee "$out/eval.txt"

first=$(head -1 "$out/base/metrics.jsonl" | sed -E 's/.*"loss":([0-9.e+-]+).*/\1/')
last=$(tail -1 "$out/base/metrics.jsonl" | sed -E 's/.*"loss":([0-9.e+-]+).*/\1/')
echo
echo "== summary"
printf '  %-28s %s\n' "checkpoint" "$ckpt" "train loss (first -> last)" "$first -> $last" \
  "held-out" "$(sed -E 's/^eval: //' "$out/eval.txt")" "metrics" "$out/base/metrics.jsonl"
