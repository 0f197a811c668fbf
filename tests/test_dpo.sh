#!/usr/bin/env bash
# The DPO loss and gradient (model/dpo.c) against PyTorch autograd: tests/ref/dpo_reference.py writes a
# tiny policy, a frozen reference with other weights and (prompt, chosen, rejected) triples; qstar's
# sequence log-probabilities (padded rows vs PyTorch's unpadded sequences), the loss and every parameter
# gradient must match (log-probs and loss 1e-5, gradients 1e-4 relative), for standard DPO (beta 0.1)
# and weighted per-pair DPO (beta 0.5), on cpu and (when built) on the emu backend. A run with a 2% wrong
# beta must fail the same checks.
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
if [ ! -x "$PY" ]; then echo "FAIL SKIP: .venv missing (run make deps)"; echo "0 passed, 1 failed"; exit 1; fi
if [ ! -x build/tests/tool_dpo ]; then echo "FAIL build/tests/tool_dpo missing (make tests)"; echo "0 passed, 1 failed"; exit 1; fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} PYTHONWARNINGS=ignore TRANSFORMERS_VERBOSITY=error
work=build/test-work/dpo; rm -rf "$work"; mkdir -p "$work"
for c in plain weighted; do
  if ! $PY tests/ref/dpo_reference.py "$work/$c" --case "$c" > "$work/$c.ref.log" 2>&1; then
    bad "$c: reference script failed: $(tail -1 "$work/$c.ref.log")"; continue
  fi
  out=$(build/tests/tool_dpo "$work/$c" 2>&1); rc=$?
  echo "$out" | grep -v -E '^[0-9]+ passed'
  if [ $rc = 0 ]; then ok "$c: DPO loss and gradients match PyTorch"; else bad "$c: DPO differs from PyTorch"; fi
done
# the same DPO step through the CUDA kernels on the CPU emulator, when this build has the emu backend
if [ -f "$work/plain/ref.safetensors" ]; then
  out=$(build/tests/tool_dpo "$work/plain" --device emu 2>&1); rc=$?
  if echo "$out" | grep -q 'no backend "emu"'; then echo "skipped: emu backend not in this build (no CUDA headers)"
  else
    echo "$out" | grep -v -E '^[0-9]+ passed'
    if [ $rc = 0 ]; then ok "emu: DPO loss and gradients match PyTorch"; else bad "emu: DPO differs from PyTorch"; fi
  fi
fi
if [ -f "$work/weighted/ref.safetensors" ]; then
  out=$(build/tests/tool_dpo "$work/weighted" --beta-scale 1.02 2>&1); rc=$?
  if [ $rc != 0 ] && echo "$out" | grep -q "^FAIL.*differs"; then ok "a 2% wrong beta is caught"
  else bad "a 2% wrong beta passed the checks"; echo "$out" | tail -3; fi
fi
echo "$pass passed, $fail failed"
[ $fail = 0 ]
