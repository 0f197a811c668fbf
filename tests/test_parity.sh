#!/usr/bin/env bash
# Parity with an independent implementation: transformers' MistralForCausalLM (CPU) computes logits,
# loss and autograd gradients for tiny random models (GQA + untied lm_head; tied embeddings; bf16
# weights in sharded safetensors); qstar must agree (logits <= 1e-4 abs, gradients <= 1e-3 relative).
# Then transformers must load what qstar writes: the re-exported weights and a checkpoint from
# `qstar train`.
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
if [ ! -x "$PY" ]; then echo "FAIL SKIP: .venv missing (run make deps)"; echo "0 passed, 1 failed"; exit 1; fi
work=build/test-work/parity; rm -rf "$work"; mkdir -p "$work"
export PYTHONWARNINGS=ignore TRANSFORMERS_VERBOSITY=error

for c in gqa tied bf16-sharded; do
  if ! $PY tests/ref/mistral_reference.py "$work/$c" --case "$c" > "$work/$c.ref.log" 2>&1; then
    bad "$c: reference script failed: $(tail -1 "$work/$c.ref.log")"; continue
  fi
  out=$(build/tests/tool_parity "$work/$c" "$work/$c-export" 2>&1); rc=$?
  echo "$out" | grep -v -E '^[0-9]+ passed'
  if [ $rc = 0 ]; then ok "$c: qstar matches transformers"; else bad "$c: qstar differs from transformers"; fi
  if $PY tests/ref/load_in_transformers.py "$work/$c-export" "$work/$c/ref.safetensors"; then ok "$c: export loads"
  else bad "$c: transformers cannot load qstar's export"; fi
done

# A checkpoint written by a real training run loads too.
python3 tests/lib/make_shard.py "$work/shard.bin" --random 1024 --tokens 4000 --seed 1
if bin/qstar train --config configs/tiny.json --data "$work/shard.bin" --out "$work/run" --steps 2 --batch 2 --seq 32 \
     > "$work/train.log" 2>&1 && $PY tests/ref/load_in_transformers.py "$work/run/step_000002"; then
  ok "train checkpoint loads in transformers"
else
  bad "train checkpoint does not load in transformers"; tail -3 "$work/train.log"
fi
echo "$pass passed, $fail failed"
[ $fail = 0 ]
