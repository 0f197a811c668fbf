#!/usr/bin/env bash
# Quiet-STaR parity with an independent implementation of the reference algorithm: PyTorch runs the
# step with the reference's dense (L, (k+1)L) mask and autograd (tests/ref/quietstar_reference.py);
# qstar runs its thought-attention step on the same weights and forced thoughts. Base NLL, talk NLLs,
# rewards, advantages and the total loss must agree to 1e-4 relative and every gradient to 1e-3.
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
pass=0; fail=0
if [ ! -x "$PY" ]; then echo "FAIL SKIP: .venv missing (run make deps)"; echo "0 passed, 1 failed"; exit 1; fi
work=build/test-work/qsparity; rm -rf "$work"; mkdir -p "$work"
export PYTHONWARNINGS=ignore
run_case() {
  local name=$1; shift
  if ! $PY tests/ref/quietstar_reference.py "$work/$name" "$@" > "$work/$name.log" 2>&1; then
    fail=$((fail+1)); echo "FAIL $name: reference failed: $(tail -2 "$work/$name.log")"; return
  fi
  if build/tests/tool_quietstar_parity "$work/$name" > "$work/$name.out" 2>&1; then
    pass=$((pass+1)); echo "ok   $name ($(tail -1 "$work/$name.out"))"
  else
    fail=$((fail+1)); echo "FAIL $name"; grep -E "FAIL|error" "$work/$name.out" | head -10
  fi
}
run_case reference-shape                                  # n_ahead 6, talk 3, passes 2, batch 2, seq 12
run_case nll-gradients --policy-weight 0                  # gradients of the NLL terms alone
run_case one-pass --passes 1 --n-ahead 4 --n-talk 1 --seq 9 --batch 3
run_case long-thought --n-ahead 12 --n-talk 4 --seq 20 --batch 1 --seed 9
run_case zero-mixer --zero-mixer --seed 11                # talk logits must equal the base logits
echo "$pass passed, $fail failed"
[ $fail = 0 ]
