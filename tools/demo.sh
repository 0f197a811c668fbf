#!/usr/bin/env bash
# The embedded default demo (`make run`), offline on the bundled corpus:
#   1. generate the OpenWebMath-like math corpus and tokenize it (held-out set with answer labels);
#   2. train the tiny base language model;
#   3. continue it with Quiet-STaR (reference settings: 12-token thoughts, 4 talk tokens, 2 passes);
#   4. score held-out text — all tokens and the answer spans — without and with thoughts, and write
#      the token report (each held-out token coloured by how much the thought before it helped);
#   5. show the model thinking, plot the loss curves (the Quiet-STaR run continues the base run's
#      step axis) and each run's standard panels, print a summary table.
# Everything lands in runs/demo/. DEMO_BASE_STEPS / DEMO_QS_STEPS shorten or lengthen it.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
out=runs/demo
base_steps="${DEMO_BASE_STEPS:-300}"
qs_steps="${DEMO_QS_STEPS:-80}"
tok=data/corpus/tokenizer.json
t_start=$(date +%s)
mkdir -p "$out"
banner() { printf '\n== %s  (%ds)\n' "$1" $(( $(date +%s) - t_start )); }

banner "1. corpus: generating and tokenizing the bundled OpenWebMath-like math text"
data/corpus/build.sh
if [ ! -f "$out/data/train/.done" ]; then
  rm -rf "$out/data/train"
  bin/qstar tokenize --tokenizer "$tok" --in data/corpus/out/train.jsonl --out "$out/data/train"
  touch "$out/data/train/.done"
fi
[ -f "$out/data/heldout/answer_mask.bin" ] || \
  .venv/bin/python data/corpus/answer_mask.py --tokenizer "$tok" --in data/corpus/out/heldout.jsonl --out "$out/data/heldout"

banner "2. base model: tiny Mistral-style LM, $base_steps steps"
rm -rf "$out/base"
bin/qstar train --config configs/tiny.json --data "$out/data/train/*.bin" --out "$out/base" \
  --steps "$base_steps" --batch 8 --seq 256 --lr 2e-3 --warmup 20 --weight-decay 0.01 --log-every 50 \
  --tokenizer "$tok" --sample-every 150 --sample-tokens 40 | grep --line-buffered -v '^[|+]'
base=$(ls -d "$out"/base/step_* | tail -1)

banner "3. Quiet-STaR from the base model, $qs_steps steps (thoughts shown every 20 steps)"
rm -rf "$out/quietstar"
bin/qstar train --mode quietstar --model "$base" --tokenizer "$tok" --data "$out/data/train/*.bin" \
  --out "$out/quietstar" --steps "$qs_steps" --batch 2 --seq 128 --lr 1e-5 --warmup 10 --schedule constant \
  --weight-decay 0.001 --log-every 10 --thoughts-every 20 | grep --line-buffered -v '^[|+]'
qs=$(ls -d "$out"/quietstar/step_* | tail -1)

banner "4. held-out evaluation (all tokens and answer spans)"
ev=(--data "$out/data/heldout/tokens.bin" --answer-mask "$out/data/heldout/answer_mask.bin" --batch 4 --seq 256 --max-batches 20)
bin/qstar eval --ckpt "$base" "${ev[@]}" --json "$out/eval_base.json"
bin/qstar eval --ckpt "$qs" "${ev[@]}" --json "$out/eval_quietstar.json" --token-report "$out/token_report.html"

banner "5. the Quiet-STaR model thinking before each token"
bin/qstar sample --ckpt "$qs" --prompt "Compute 347 + 589. Working in columns, 7 + 9 = 16, write 6 carry 1." \
  --thoughts --max-tokens 16 --temperature 0 --seed 3
# charts with matplotlib (Debian's, which the .venv sees)
py=.venv/bin/python; [ -x "$py" ] || py=python3
"$py" tools/plot_metrics.py "$out/loss.png" "$out/base/metrics.jsonl=base:loss" \
  "$out/quietstar/metrics.jsonl=quietstar:base_nll,talk_nll_mean" --title "qstar demo: training loss" --smooth 5 \
  || echo "(loss plot failed)"
"$py" tools/plot_run.py "$out/base" > /dev/null || echo "(base run panels failed)"
"$py" tools/plot_run.py "$out/quietstar" > /dev/null || echo "(quietstar run panels failed)"

banner "summary"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
b = json.load(open(out + "/eval_base.json"))
q = json.load(open(out + "/eval_quietstar.json"))
f = lambda v: "%.4f" % v if v is not None else "-"
print("  held-out NLL (nats/token)        all tokens   answer tokens")
print("  base model                       %10s   %13s" % (f(b["loss"]), f(b["answer_loss"])))
print("  Quiet-STaR model, no thoughts    %10s   %13s" % (f(q["loss"]), f(q["answer_loss"])))
print("  Quiet-STaR model, with thoughts  %10s   %13s" % (f(q["thought_loss"]), f(q["thought_answer_loss"])))
print("  (%d tokens scored, %d of them answer tokens)" % (q["tokens"], q["answer_tokens"]))
PY
printf '  %-12s %s\n' "runs" "$out/base, $out/quietstar" "plots" "$out/loss.png, $out/base/metrics.png, $out/quietstar/metrics.png" \
  "token report" "$out/token_report.html" "total time" "$(( $(date +%s) - t_start )) s"
