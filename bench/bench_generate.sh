#!/usr/bin/env bash
# Batched generation throughput: `qstar generate` against transformers' generate() on the same
# SmolLM2-135M-Instruct checkpoint (make smollm2), greedy, the same prompts, the same thread count,
# at batch 1 (the first B1_PROMPTS prompts one at a time) and batch 16 (16 chat prompts of different
# lengths at once; transformers left-pads them). Tokens/s counts the tokens each request really
# produced (up to and including EOS) over the generation time alone (model loading excluded), and the
# two sides must produce the same tokens (greedy on the same weights), which the script checks.
# Each side runs every configuration REPEAT times (3) and keeps its fastest: on a shared machine a
# single run's time swings by 20 % and more, and the minimum is the run the others' load disturbed least;
# every time is printed.
#
# QSTAR_BINS="bin/qstar build-portable/x86-64-v3/bin/qstar" times several builds of qstar (another
# -march, another compiler) in the same run, each beside the same transformers figures.
#
#   [REPEAT=3] [QSTAR_BINS=...] bash bench/bench_generate.sh [THREADS=2] [MAX_NEW=48]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
MAX_NEW=${2:-48}
REPEAT=${REPEAT:-3}
B1_PROMPTS=4
ck=runs/models/smollm2-135m-instruct
work=build/bench-work/generate; rm -rf "$work"; mkdir -p "$work"
bash tools/models/smollm2.sh
read -r -a bins <<< "${QSTAR_BINS:-bin/qstar}"
[ -n "${QSTAR_BINS:-}" ] || make --no-print-directory bin/qstar >/dev/null
for q in "${bins[@]}"; do [ -x "$q" ] || { echo "bench_generate: $q is not an executable (QSTAR_BINS)" >&2; exit 1; }; done
export OMP_NUM_THREADS=$THREADS
# OpenMP threads that wait by spinning steal the CPU from the working ones when the cores are shared
# with other jobs (qstar's many small parallel regions lose up to 5x on a busy 2-core machine);
# passive waiting, for both sides, unless the caller says otherwise.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
echo "threads $THREADS, OMP_WAIT_POLICY=$OMP_WAIT_POLICY, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
PY=.venv/bin/python

$PY - "$work" <<'PY'
import json, sys
qs = ["What is the capital of France?", "Write a haiku about the sea.", "Explain what a prime number is.",
      "What is 12 times 13?", "Give me three tips for learning to cook, with one sentence each.",
      "Who wrote Hamlet?", "Describe the water cycle in simple terms for a child.", "Translate 'good morning' into Spanish.",
      "List the planets of the solar system in order from the sun.", "What does a compiler do?",
      "Summarize the plot of Cinderella in two sentences.", "Why is the sky blue?",
      "Suggest a name for a small bakery that sells bread and cakes.", "How many legs does a spider have?",
      "What is the difference between weather and climate? Answer briefly.", "Write one sentence about the number 7."]
with open(sys.argv[1] + "/prompts16.jsonl", "w") as f:
    for i, q in enumerate(qs):
        f.write(json.dumps({"id": i, "prompt": f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"}) + "\n")
PY
head -$B1_PROMPTS "$work/prompts16.jsonl" > "$work/prompts1.jsonl"

for i in "${!bins[@]}"; do
  echo "== ${bins[$i]} generate ($THREADS threads, greedy, max $MAX_NEW new tokens, fastest of $REPEAT runs)"
  for b in 1 16; do
    best=
    for r in $(seq "$REPEAT"); do
      "${bins[$i]}" generate --ckpt "$ck" --in "$work/prompts$b.jsonl" --out "$work/q${b}_$i.jsonl" --temperature 0 \
        --max-tokens $MAX_NEW --batch $b 2> "$work/run.err"; cat "$work/run.err"
      s=$(sed -n 's/.* tokens in \([0-9.]*\) s .*/\1/p' "$work/run.err")
      if [ -z "$best" ] || awk -v a="$s" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$s; cp "$work/run.err" "$work/q${b}_$i.err"; fi
    done
  done
done

echo "== transformers generate ($THREADS threads)"
$PY - "$ck" "$work" "$MAX_NEW" "$THREADS" "$REPEAT" "${bins[@]}" <<'PY'
import json, sys, time
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
ck, work, max_new, threads, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
bins = sys.argv[6:]
torch.set_num_threads(threads)
tok = AutoTokenizer.from_pretrained(ck)
tok.padding_side = "left"
model = AutoModelForCausalLM.from_pretrained(ck, torch_dtype=torch.float32).eval()
eos = tok.eos_token_id

def run(prompts, batch):
    outs, secs = [], 0.0
    for i in range(0, len(prompts), batch):
        enc = tok(prompts[i:i + batch], return_tensors="pt", padding=True)
        t0 = time.perf_counter()
        with torch.no_grad():
            g = model.generate(**enc, max_new_tokens=max_new, do_sample=False, num_beams=1, pad_token_id=eos)
        secs += time.perf_counter() - t0
        for row in g[:, enc.input_ids.shape[1]:].tolist():
            n = row.index(eos) + 1 if eos in row else len(row)
            outs.append(row[:n])
    return outs, secs

results = {}
for b, name in ((1, "prompts1"), (16, "prompts16")):
    prompts = [json.loads(l)["prompt"] for l in open(f"{work}/{name}.jsonl")]
    times = []
    for r in range(repeat):
        outs, secs = run(prompts, b)
        times.append(secs)
        n = sum(len(o) for o in outs)
        print(f"transformers: {len(prompts)} prompts, batch {b}: {n} tokens in {secs:.2f} s ({n / secs:.1f} tokens/s)")
    results[b] = (n, min(times), outs)

def qstar(path):
    return [json.loads(l)["tokens"] for l in open(path)]
print(f"\n| qstar | batch | qstar tokens/s | transformers tokens/s | qstar / transformers | same tokens |")
print("|---|---|---|---|---|---|")
import re
for i, binary in enumerate(bins):
    for b in (1, 16):
        m = re.search(r"(\d+) tokens in ([0-9.]+) s", open(f"{work}/q{b}_{i}.err").read())
        qn, qs = int(m.group(1)), float(m.group(2))
        n, secs, outs = results[b]
        q = qstar(f"{work}/q{b}_{i}.jsonl")
        same = sum(a == b_ for a, b_ in zip(q, outs))
        print(f"| {binary} | {b} | {qn / qs:.1f} | {n / secs:.1f} | {(qn / qs) / (n / secs):.2f}x | {same}/{len(outs)} requests |")
PY
