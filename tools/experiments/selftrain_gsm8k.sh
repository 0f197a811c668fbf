#!/usr/bin/env bash
# RFT, V-STaR and per-step DPO on GSM8K problems from one model (docs/star-family.md §3-5), each a short
# `qstar selftrain --task gsm8k` run, as a table (results.md, results.json): what each run's metrics.jsonl
# reports, the starting model's greedy test accuracy beside it, and the wall time of each.
#
#   tools/experiments/selftrain_gsm8k.sh [--out DIR] [--smoke]
#
# The model: SmolLM2-135M-Instruct as an HF checkpoint in runs/models/smollm2-135m-instruct (make smollm2;
# SMOLLM2 overrides). The problems: GSM8K's training split (GSM8K_TRAIN, default ../shared/data/gsm8k/train.jsonl
# from the repository root), shuffled with SEED and cut into a training subset (its first SHOTS problems are the
# few-shot exemplars of every generation prompt, the next N_TRAIN the problems the methods sample) and a
# disjoint held-out test subset of N_TEST problems (split.json lists their line numbers in GSM8K_TRAIN).
# Every run and the baseline use the same SHOTS-shot prompt ("Q: ...\nA:" + the reference solution, as STaR's
# GSM8K prompt file) at generation and test time: the instruct model writes no "#### N" answer line zero-shot.
#   baseline  the starting model's greedy test accuracy (a STaR iteration with 0 fine-tuning steps);
#   rft       K samples per problem at TEMPERATURE, the correct ones with right <<...>> annotations kept and
#             deduplicated by equation list, the starting model fine-tuned on them plus the reference solutions
#             (--gold: RFT's D' = D u paths) for FT_STEPS steps;
#   vstar     VSTAR_ITERATIONS generator iterations of K samples per problem (D_GEN: reference solutions + every
#             correct sample; D_VER: every sample, labelled), a DPO verifier from the starting model on
#             D_VER's (correct, incorrect) pairs, then TEST_SAMPLES candidates per test problem: Pass@1, majority
#             vote, best-of-k with the verifier's and with the generator's likelihood;
#   stepdpo   STEP_N_TRAIN problems, STEP_K samples each, at most NEGATIVES wrong ones per problem analysed
#             with ROLLOUTS Monte-Carlo continuations per line prefix (Q of best-of-ROLLOUTS), DPO from the
#             starting model on (successful continuation, first-pit step) pairs weighted by -A.
#
# Settings (environment, full run / --smoke): SEED (1), SHOTS (2 / 1), N_TRAIN (24 / 3), N_TEST (30 / 3),
# MAX_TOKENS (200 / 40), GEN_BATCH (32 / 8), K (4 / 2), TEMPERATURE (0.7), FT_STEPS (16 / 2), BATCH (4 / 2),
# SEQ (320 / 160), LR (1e-5), WARMUP (3 / 1), VSTAR_ITERATIONS (2 / 1), TEST_SAMPLES (4 / 2), BETA (0.1),
# DPO_STEPS (8 / 2), DPO_BATCH (2), DPO_LR (5e-6), STEP_N_TRAIN (8 / 2), STEP_K (4 / 2), ROLLOUTS (3 / 2),
# NEGATIVES (2 / 1). MAX_TOKENS 200 holds 90 % of GSM8K's reference solutions (SmolLM2 tokens: mean 125,
# p90 200); SEQ 320 holds 95 % of prompt + solution. The full run is sized for about 40 minutes of a 2-core
# machine with OMP_NUM_THREADS=2 from speeds measured there with other jobs running (sampling ~74 tokens/s with
# 32 requests in flight, greedy test ~35 tokens/s, fine-tuning ~106 padded tokens/s, i.e. ~12 s a step of
# 4 x 320); the one full run took 2751 s with other jobs sharing the CPU. --smoke checks the whole pipeline in
# about two minutes. Nothing is downloaded.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
OUT=runs/experiments/selftrain_gsm8k; SMOKE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2;;
    --smoke) SMOKE=1; shift;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0;;
    *) echo "selftrain_gsm8k.sh: unknown option $1 (see --help)" >&2; exit 2;;
  esac
done
if [ $SMOKE = 1 ]; then
  d=(1 3 3 40 8 2 2 2 160 1 1 2 2 2 2 2 2 1); [ "$OUT" = runs/experiments/selftrain_gsm8k ] && OUT=runs/experiments/selftrain_gsm8k_smoke
else
  d=(2 24 30 200 32 4 16 4 320 3 2 4 8 2 8 4 3 2)
fi
SHOTS=${SHOTS:-${d[0]}}; N_TRAIN=${N_TRAIN:-${d[1]}}; N_TEST=${N_TEST:-${d[2]}}; MAX_TOKENS=${MAX_TOKENS:-${d[3]}}
GEN_BATCH=${GEN_BATCH:-${d[4]}}; K=${K:-${d[5]}}; FT_STEPS=${FT_STEPS:-${d[6]}}; BATCH=${BATCH:-${d[7]}}
SEQ=${SEQ:-${d[8]}}; WARMUP=${WARMUP:-${d[9]}}; VSTAR_ITERATIONS=${VSTAR_ITERATIONS:-${d[10]}}
TEST_SAMPLES=${TEST_SAMPLES:-${d[11]}}; DPO_STEPS=${DPO_STEPS:-${d[12]}}; DPO_BATCH=${DPO_BATCH:-${d[13]}}
STEP_N_TRAIN=${STEP_N_TRAIN:-${d[14]}}; STEP_K=${STEP_K:-${d[15]}}; ROLLOUTS=${ROLLOUTS:-${d[16]}}
NEGATIVES=${NEGATIVES:-${d[17]}}
SEED=${SEED:-1}; TEMPERATURE=${TEMPERATURE:-0.7}; LR=${LR:-1e-5}; BETA=${BETA:-0.1}; DPO_LR=${DPO_LR:-5e-6}
SMOLLM2=${SMOLLM2:-runs/models/smollm2-135m-instruct}
GSM8K_TRAIN=${GSM8K_TRAIN:-../shared/data/gsm8k/train.jsonl}
Q=bin/qstar
PY=python3; [ -x .venv/bin/python ] && PY=.venv/bin/python
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
say() { echo "== $(date -u +%H:%M:%S) $*"; }
[ -f "$SMOLLM2/config.json" ] && [ -f "$SMOLLM2/tokenizer.json" ] || {
  echo "selftrain_gsm8k.sh: $SMOLLM2 is missing (make smollm2 converts SmolLM2-135M-Instruct there)" >&2; exit 1; }
[ -f "$GSM8K_TRAIN" ] || { echo "selftrain_gsm8k.sh: $GSM8K_TRAIN is missing (GSM8K's train.jsonl; set GSM8K_TRAIN)" >&2; exit 1; }
[ -x "$Q" ] || make bin/qstar
mkdir -p "$OUT"
start=$(date +%s)

# ---- the split: a seeded shuffle of the whole training split, then disjoint slices ---------------------------
"$PY" - "$GSM8K_TRAIN" "$OUT" "$SEED" "$SHOTS" "$N_TRAIN" "$N_TEST" <<'PY'
import json, random, sys
src, out, seed, shots, n_train, n_test = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
lines = open(src).readlines()
idx = list(range(len(lines)))
random.Random(seed).shuffle(idx)
if shots + n_train + n_test > len(idx):
    sys.exit(f"selftrain_gsm8k.sh: {src} has {len(idx)} problems, fewer than SHOTS + N_TRAIN + N_TEST")
tr, te = idx[:shots + n_train], idx[shots + n_train:shots + n_train + n_test]
open(f"{out}/train.jsonl", "w").writelines(lines[i] for i in tr)
open(f"{out}/test.jsonl", "w").writelines(lines[i] for i in te)
json.dump({"source_lines_train": [i + 1 for i in tr], "source_lines_test": [i + 1 for i in te], "seed": seed,
           "shots": shots}, open(f"{out}/split.json", "w"))
PY
say "split: $SHOTS exemplars + $N_TRAIN training problems, $N_TEST test problems (seed $SEED)"

COMMON=(--model "$SMOLLM2" --task gsm8k --train "$OUT/train.jsonl" --test "$OUT/test.jsonl" --shots "$SHOTS"
        --max-tokens "$MAX_TOKENS" --gen-batch "$GEN_BATCH" --seed "$SEED")
FT=(--start-steps "$FT_STEPS" --grow 1 --batch "$BATCH" --seq "$SEQ" --lr "$LR" --warmup "$WARMUP")
DPO=(--beta "$BETA" --dpo-steps "$DPO_STEPS" --dpo-batch "$DPO_BATCH" --dpo-lr "$DPO_LR")
declare -A SECS
run() {  # run NAME ARGS...: one selftrain run in $OUT/NAME, its log in $OUT/NAME.log, its wall time in SECS
  local name=$1; shift
  local t0=$(date +%s)
  rm -rf "${OUT:?}/$name"
  $Q selftrain "$@" --out "$OUT/$name" > "$OUT/$name.log" 2>&1 || {
    echo "selftrain_gsm8k.sh: the $name run failed (see $OUT/$name.log):" >&2; tail -3 "$OUT/$name.log" >&2; exit 1; }
  SECS[$name]=$(( $(date +%s) - t0 ))
  rm -rf "$OUT/$name"/iter_* "$OUT/$name/verifier"  # checkpoints: 540 MB each, not needed for the table
  say "$name: ${SECS[$name]} s; $(tail -1 "$OUT/$name/metrics.jsonl" | cut -c1-160)..."
}

say "baseline: the starting model's greedy test accuracy"
run baseline --method star "${COMMON[@]}" --n-train $((SHOTS + 1)) --iterations 1 --start-steps 0 --no-rationalize
say "rft: $N_TRAIN problems x $K samples, $FT_STEPS fine-tuning steps"
run rft --method rft "${COMMON[@]}" "${FT[@]}" --samples "$K" --temperature "$TEMPERATURE" --gold
say "vstar: $VSTAR_ITERATIONS iterations of $N_TRAIN problems x $K samples, verifier $DPO_STEPS DPO steps, $TEST_SAMPLES candidates per test problem"
run vstar --method vstar "${COMMON[@]}" "${FT[@]}" "${DPO[@]}" --iterations "$VSTAR_ITERATIONS" --samples "$K" \
    --temperature "$TEMPERATURE" --test-samples "$TEST_SAMPLES" --gold
say "stepdpo: $STEP_N_TRAIN problems x $STEP_K samples, $NEGATIVES negatives x $ROLLOUTS rollouts per prefix"
run stepdpo --method stepdpo "${COMMON[@]}" "${DPO[@]}" --seq "$SEQ" --n-train $((SHOTS + STEP_N_TRAIN)) \
    --samples "$STEP_K" --temperature "$TEMPERATURE" --rollouts "$ROLLOUTS" --negatives "$NEGATIVES" --q-estimator any

# ---- table ----------------------------------------------------------------------------------------------------
SETTINGS=$(printf '%s ' SEED=$SEED SHOTS=$SHOTS N_TRAIN=$N_TRAIN N_TEST=$N_TEST MAX_TOKENS=$MAX_TOKENS GEN_BATCH=$GEN_BATCH \
  K=$K TEMPERATURE=$TEMPERATURE FT_STEPS=$FT_STEPS BATCH=$BATCH SEQ=$SEQ LR=$LR WARMUP=$WARMUP \
  VSTAR_ITERATIONS=$VSTAR_ITERATIONS TEST_SAMPLES=$TEST_SAMPLES BETA=$BETA DPO_STEPS=$DPO_STEPS DPO_BATCH=$DPO_BATCH \
  DPO_LR=$DPO_LR STEP_N_TRAIN=$STEP_N_TRAIN STEP_K=$STEP_K ROLLOUTS=$ROLLOUTS NEGATIVES=$NEGATIVES \
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset})
"$PY" - "$OUT" "$SMOLLM2" "$SETTINGS" "$(( $(date +%s) - start ))" \
      "${SECS[baseline]}" "${SECS[rft]}" "${SECS[vstar]}" "${SECS[stepdpo]}" <<'PY'
import json, sys
out, model, settings, total = sys.argv[1], sys.argv[2], sys.argv[3].split(), int(sys.argv[4])
secs = dict(zip(["baseline", "rft", "vstar", "stepdpo"], map(int, sys.argv[5:9])))
S = dict(s.split("=", 1) for s in settings)
rec = {n: [json.loads(l) for l in open(f"{out}/{n}/metrics.jsonl")] for n in secs}
base = rec["baseline"][0]
nt = base["test_problems"]
def acc(a): return f"{100 * a:.1f} % ({round(a * nt)}/{nt})"
def pct(a): return f"{100 * a:.1f} %"
r = rec["rft"][0]
vs_it = [x for x in rec["vstar"] if "stage" not in x]
ver = next(x for x in rec["vstar"] if x.get("stage") == "verifier")
vt = next(x for x in rec["vstar"] if x.get("stage") == "test")
sd = rec["stepdpo"][0]
ks = sorted(vt["best_of_k_verifier"], key=int)
md = ["# RFT, V-STaR and per-step DPO on GSM8K from SmolLM2-135M-Instruct", "",
      f"Model `{model}`; {S['SHOTS']}-shot prompt; {base['test_problems']} held-out test problems (greedy unless said), "
      f"{S['N_TRAIN']} training problems ({S['STEP_N_TRAIN']} for per-step DPO), GSM8K train split shuffled with seed {S['SEED']}.", "",
      f"Starting model, greedy test accuracy: **{acc(base['test_accuracy'])}** ({secs['baseline']} s).", "",
      "| method | settings | what it collected | test accuracy before → after | wall time |",
      "|---|---|---|---|---|",
      f"| RFT | k={S['K']} at T={S['TEMPERATURE']}, {S['N_TRAIN']} problems; {r['steps']} steps × {S['BATCH']} rows "
      f"(seq {S['SEQ']}, lr {S['LR']}) on {r['finetune_examples']} examples (reference solutions + kept paths) | "
      f"{r['samples']} samples, {r['correct_samples']} correct, {r['problems_solved']} problems solved, "
      f"{r['kept']} kept = {r['distinct_paths']} distinct paths ({r['distinct_paths_per_problem']:.2f} per problem, "
      f"{r['distinct_paths_per_solved_problem']:.2f} per solved one); fine-tune loss {r['loss']:.3f} | "
      f"{acc(base['test_accuracy'])} → {acc(r['test_accuracy'])} | {secs['rft']} s |"]
for x in vs_it:
    md.append(f"| V-STaR gen. iter {x['iteration']} | k={S['K']} at T={S['TEMPERATURE']}, {S['N_TRAIN']} problems; "
              f"{x['steps']} steps on {x['finetune_examples']} examples (D_GEN) | {x['samples']} samples, "
              f"{x['correct_samples']} correct, {x['problems_solved']} problems solved; loss {x['loss']:.3f} | "
              f"{acc(base['test_accuracy'])} → {acc(x['test_accuracy'])} | {x['seconds']:.0f} s |")
md.append(f"| V-STaR verifier | DPO β {S['BETA']}, {ver['dpo_steps']} steps × {S['DPO_BATCH']} pairs, lr {S['DPO_LR']} | "
          f"{ver['verifier_samples']} labelled samples ({ver['correct_samples']} correct), {ver['pairs']} pairs over "
          f"{ver['problems_with_pairs']} problems; "
          + (f"after training: loss {ver['final_loss']:.3f}, pair accuracy {pct(ver['final_pair_accuracy'])}, "
             f"margin {ver['final_margin']:.3f}" if ver["pairs"] else "no pair: the verifier is the starting model")
          + f" | - | {ver['seconds']:.0f} s |")
md.append(f"| V-STaR test | {vt['candidates_per_problem']} candidates per test problem at T={S['TEMPERATURE']} | "
          f"Pass@1 {pct(vt['pass_at_1'])}, majority vote {pct(vt['majority_vote'])}; best-of-k with the verifier "
          + ", ".join(f"k={k}: {pct(vt['best_of_k_verifier'][k])}" for k in ks)
          + "; with the generator's likelihood " + ", ".join(f"k={k}: {pct(vt['best_of_k_generator'][k])}" for k in ks)
          + f" | - | {vt['seconds']:.0f} s |")
md.append(f"| per-step DPO | {S['STEP_N_TRAIN']} problems, k={S['STEP_K']} at T={S['TEMPERATURE']}, ≤{S['NEGATIVES']} "
          f"negatives each, {S['ROLLOUTS']} rollouts per prefix (Q of best-of-{S['ROLLOUTS']}); DPO β {S['BETA']}, "
          f"{sd['dpo_steps']} steps, lr {S['DPO_LR']}, pairs weighted by −A | {sd['samples']} samples, "
          f"{sd['correct_samples']} correct; {sd['negatives']} negatives, {sd['rollouts']} rollouts, "
          f"{sd['critical_steps']} critical steps (mean position {sd['mean_critical_position']:.2f} of the solution), "
          f"{sd['pairs']} pairs; "
          + (f"after DPO: pair accuracy {pct(sd['final_pair_accuracy'])}, margin {sd['final_margin']:.3f}" if sd["pairs"]
             else "no pair: no DPO, M_1 is the starting model") + " | "
          f"{acc(base['test_accuracy'])} → {acc(sd['test_accuracy'])} | {secs['stepdpo']} s |")
md += ["", f"Wall time: baseline {secs['baseline']} s, RFT {secs['rft']} s, V-STaR {secs['vstar']} s, "
           f"per-step DPO {secs['stepdpo']} s; {total} s in all.", "",
       "Settings: `" + " ".join(settings) + "`"]
open(f"{out}/results.md", "w").write("\n".join(md) + "\n")
json.dump({"model": model, "settings": S, "seconds": secs, "total_seconds": total, "baseline": base,
           "rft": r, "vstar": rec["vstar"], "stepdpo": sd}, open(f"{out}/results.json", "w"), indent=1)
print("\n".join(md))
PY
say "done in $(( $(date +%s) - start )) s: $OUT/results.md"
