#!/usr/bin/env bash
# A first Quiet-STaR experiment on a real pretrained model: SmolLM2-135M-Instruct (make smollm2)
# trained with thoughts on GSM8K training text for a wall-clock budget, then the zero-shot soft
# accuracy (qstar eval --task ... --metric soft) on GSM8K and CommonsenseQA of the base model and of
# the trained one, the latter with and without thoughts, on a fixed subset of a split the run did not
# train on; a table (results.md, results.json) and plots (the run's panels, the accuracies).
#
#   tools/experiments/quietstar_smollm2.sh [--minutes 60] [--out DIR] [--eval-n 100]
#
# Data, in order of preference (nothing is downloaded):
#   training text  ../shared/data/gsm8k/train.jsonl as "Q: {question}\nA: {answer}" documents, without
#                  the held-out problems below; else the bundled corpus (data/corpus/out/train.jsonl,
#                  made by data/corpus/build.sh)
#   GSM8K eval     data/gsm8k/test.jsonl (data/gsm8k/prepare.sh), its first --eval-n problems; else
#                  the last --eval-n problems of the training file, which are then left out of training
#   CSQA eval      data/csqa/validation.jsonl (data/csqa/prepare.sh) or $CSQA_DATA, its first --eval-n;
#                  else CSQA is reported as not run
# Settings (environment): SEQ (128) BATCH (1) GRAD_ACCUM (1) N_AHEAD (8) N_AHEAD_TALK (4) N_PASSES (2)
# LR (1e-6, the reference's) WARMUP (20) SEED (1337) EVAL_BATCH (2) MODEL (runs/models/smollm2-135m-instruct).
# --minutes is the training time (fractions allowed); the evaluations come on top of it (the trained
# model's, with thoughts, costs about n_ahead times the base model's). Training runs in chunks (qstar
# train --stop-after, then --resume) sized from the measured step time, so it ends within the budget
# with a checkpoint; only the newest checkpoint is kept.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
MINUTES=60; OUT=runs/experiments/quietstar_smollm2; EVAL_N=100
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2;;
    --out) OUT="$2"; shift 2;;
    --eval-n) EVAL_N="$2"; shift 2;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0;;
    *) echo "quietstar_smollm2.sh: unknown option $1 (see --help)" >&2; exit 2;;
  esac
done
SEQ=${SEQ:-128}; BATCH=${BATCH:-1}; GRAD_ACCUM=${GRAD_ACCUM:-1}; N_AHEAD=${N_AHEAD:-8}; N_AHEAD_TALK=${N_AHEAD_TALK:-4}
N_PASSES=${N_PASSES:-2}; LR=${LR:-1e-6}; WARMUP=${WARMUP:-20}; SEED=${SEED:-1337}; EVAL_BATCH=${EVAL_BATCH:-2}
MODEL=${MODEL:-runs/models/smollm2-135m-instruct}
Q=bin/qstar
PY=python3; [ -x .venv/bin/python ] && PY=.venv/bin/python
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
say() { echo "== $(date -u +%H:%M:%S) $*"; }

[ -x "$Q" ] || make bin/qstar
[ -f "$MODEL/config.json" ] || { say "converting SmolLM2 (make smollm2)"; make smollm2; }
mkdir -p "$OUT"
start=$(date +%s)

# ---- data -------------------------------------------------------------------------------------------
GSM_TRAIN=../shared/data/gsm8k/train.jsonl
CSQA=${CSQA_DATA:-data/csqa/validation.jsonl}
say "data"
"$PY" - "$GSM_TRAIN" data/gsm8k/test.jsonl data/corpus/out/train.jsonl "$EVAL_N" "$OUT" <<'PY'
import json, os, sys
train, test, corpus, n, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
rows = [l for l in open(train, encoding="utf-8") if l.strip()] if os.path.exists(train) else []
if os.path.exists(test):
    ev, src = [l for l in open(test, encoding="utf-8") if l.strip()][:n], f"{test} (first {n})"
elif rows:
    ev, rows, src = rows[-n:], rows[:-n], f"{train} (last {n}, held out of training)"
else:
    sys.exit("no GSM8K file to evaluate on: run data/gsm8k/prepare.sh")
open(f"{out}/gsm8k_eval.jsonl", "w").writelines(ev)
with open(f"{out}/train_text.jsonl", "w") as f:
    if rows:
        for l in rows:
            o = json.loads(l)
            f.write(json.dumps({"text": f"Q: {o['question']}\nA: {o['answer']}"}) + "\n")
        tsrc = f"{train} ({len(rows)} problems)"
    else:
        if not os.path.exists(corpus):
            sys.exit("no training text: neither ../shared/data/gsm8k/train.jsonl nor data/corpus/out (data/corpus/build.sh)")
        f.writelines(open(corpus, encoding="utf-8"))
        tsrc = corpus
json.dump({"train_text": tsrc, "gsm8k_eval": src}, open(f"{out}/data.json", "w"))
print(f"  training text: {tsrc}\n  GSM8K eval:    {src}")
PY
have_csqa=0
if [ -f "$CSQA" ]; then
  grep -v '^[[:space:]]*$' "$CSQA" | head -n "$EVAL_N" > "$OUT/csqa_eval.jsonl"; have_csqa=1
  echo "  CSQA eval:     $CSQA (first $(wc -l < "$OUT/csqa_eval.jsonl"))"
else echo "  CSQA eval:     not run ($CSQA missing: data/csqa/prepare.sh)"; fi
rm -rf "$OUT/shards"
$Q tokenize --tokenizer "$MODEL/tokenizer.json" --in "$OUT/train_text.jsonl" --out "$OUT/shards" > "$OUT/tokenize.log" 2>&1 \
  || { tail -3 "$OUT/tokenize.log"; exit 1; }

evaluate() {  # NAME CKPT
  local name=$1 ck=$2
  for t in gsm8k csqa; do
    [ $t = csqa ] && [ $have_csqa = 0 ] && continue
    say "eval $name $t (soft, ${EVAL_N} questions)"
    $Q eval --task $t --metric soft --data "$OUT/${t}_eval.jsonl" --ckpt "$ck" --batch "$EVAL_BATCH" --seed "$SEED" \
      --json "$OUT/eval_${name}_$t.json" | sed 's/^/  /'
  done
}
evaluate base "$MODEL"

# ---- training within the budget ------------------------------------------------------------------------
train_budget=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
run="$OUT/run"; rm -rf "$run"
common=(--mode quietstar --data "$OUT/shards/*.bin" --seq "$SEQ" --batch "$BATCH" --grad-accum "$GRAD_ACCUM"
        --n-ahead "$N_AHEAD" --n-ahead-talk "$N_AHEAD_TALK" --n-passes "$N_PASSES" --lr "$LR" --warmup "$WARMUP" --seed "$SEED"
        --steps 1000000 --log-every 1)
[ "$train_budget" -lt 1 ] && train_budget=1
say "training for $train_budget s (at least one step)"
t_train=$(date +%s); steps=0; chunk=1; step_secs=0
while :; do
  t0=$(date +%s)
  if [ $steps = 0 ]; then
    $Q train --model "$MODEL" "${common[@]}" --out "$run" --stop-after $chunk --save-every $chunk >> "$OUT/train.log" 2>&1
  else
    $Q train --resume "$run" --stop-after $chunk --save-every $chunk >> "$OUT/train.log" 2>&1
  fi || { tail -5 "$OUT/train.log"; exit 1; }
  steps=$((steps + chunk))
  step_secs=$(( ($(date +%s) - t0 + chunk - 1) / chunk ))
  [ $step_secs -lt 1 ] && step_secs=1
  # keep the newest checkpoint only (each holds weights and AdamW moments)
  ls -d "$run"/step_* | sort | head -n -1 | xargs -r rm -rf
  left=$(( train_budget - ($(date +%s) - t_train) ))
  echo "  step $steps: $(grep -E '^step' "$OUT/train.log" | tail -1 | cut -c1-150) (~${step_secs} s/step, ${left} s left)"
  [ $left -lt $step_secs ] && break
  chunk=$(( left / step_secs )); [ $chunk -gt 20 ] && chunk=20; [ $chunk -lt 1 ] && chunk=1
done
ckpt=$(ls -d "$run"/step_* | sort | tail -1)
say "trained $steps steps in $(( $(date +%s) - t_train )) s: $ckpt"
evaluate trained "$ckpt"

# ---- table and plots ----------------------------------------------------------------------------------------
csqa_src=""; [ $have_csqa = 1 ] && csqa_src="$CSQA (first $(wc -l < "$OUT/csqa_eval.jsonl"))"
"$PY" - "$OUT" "$steps" "$MINUTES" "$SEQ" "$BATCH" "$GRAD_ACCUM" "$N_AHEAD" "$N_AHEAD_TALK" "$N_PASSES" "$LR" "$WARMUP" "$SEED" "$EVAL_N" "$(( $(date +%s) - start ))" "$csqa_src" <<'PY'
import json, os, sys
out, steps, minutes, seq, batch, accum, na, nat, npass, lr, warmup, seed, evn, secs, csqa_src = sys.argv[1:]
data = json.load(open(f"{out}/data.json"))
data["csqa_eval"] = csqa_src or "not run"
def get(name, task):
    p = f"{out}/eval_{name}_{task}.json"
    return json.load(open(p)) if os.path.exists(p) else None
res = {"settings": {"model": "SmolLM2-135M-Instruct", "steps": int(steps), "budget_minutes": float(minutes), "seq": int(seq),
                    "batch": int(batch), "grad_accum": int(accum), "n_ahead": int(na), "n_ahead_talk": int(nat),
                    "n_passes": int(npass), "lr": float(lr), "warmup": int(warmup), "seed": int(seed),
                    "eval_questions": int(evn), "wall_seconds": int(secs), **data}, "results": {}}
lines = ["| task | n | base | trained, without thoughts | trained, with thoughts |", "|---|---|---|---|---|"]
for t in ("gsm8k", "csqa"):
    b, tr = get("base", t), get("trained", t)
    if not b:
        lines.append(f"| {t} | – | not run (no data) | | |"); continue
    res["results"][t] = {"n": b["n"], "base": b["accuracy"], "trained": tr["accuracy"], "trained_thoughts": tr["thought_accuracy"]}
    lines.append(f"| {t} | {b['n']} | {b['accuracy']:.4f} | {tr['accuracy']:.4f} | {tr['thought_accuracy']:.4f} |")
s = res["settings"]
md = "\n".join(lines) + (f"\n\nSoft accuracy (zero-shot, qstar eval --metric soft). Quiet-STaR on SmolLM2-135M-Instruct, {steps} steps "
      f"in a {minutes}-minute budget; seq {seq}, batch {batch} x grad-accum {accum}, n_ahead {na}, n_ahead_talk {nat}, "
      f"n_passes {npass}, lr {lr}, warmup {warmup}, seed {seed}; training text: {s['train_text']}; GSM8K eval: {s['gsm8k_eval']}; CSQA eval: {s['csqa_eval']}.\n")
open(f"{out}/results.md", "w").write(md)
json.dump(res, open(f"{out}/results.json", "w"), indent=1)
print(md)
try:
    import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
    tasks = list(res["results"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    w = 0.25
    for k, (key, label) in enumerate([("base", "base"), ("trained", "trained, no thoughts"), ("trained_thoughts", "trained, thoughts")]):
        ax.bar([i + (k - 1) * w for i in range(len(tasks))], [res["results"][t][key] for t in tasks], w, label=label)
    ax.set_xticks(range(len(tasks))); ax.set_xticklabels(tasks); ax.set_ylabel("soft accuracy")
    ax.set_title(f"SmolLM2-135M, Quiet-STaR {steps} steps"); ax.legend(fontsize=8)
    fig.tight_layout(); fig.savefig(f"{out}/accuracy.png", dpi=120)
    print(f"plot: {out}/accuracy.png")
except ImportError:
    print("plot: matplotlib missing (make deps): accuracy.png not drawn")
PY
"$PY" tools/plot_run.py "$run" --out "$OUT/metrics.png" && echo "plot: $OUT/metrics.png" || echo "plot_run failed (see above)"
say "done in $(( $(date +%s) - start )) s: $OUT/results.md"
