#!/usr/bin/env bash
# `qstar train --save-dtype bf16` against transformers (torch + transformers in .venv): a two-step run
# on the tiny preset writes model.safetensors in BF16 with config.json's torch_dtype "bfloat16", and
#  - MistralForCausalLM.from_pretrained(torch_dtype="auto") loads it with no missing or unexpected
#    tensor, in bfloat16, and its logits on a few tokens are finite;
#  - every loaded weight is the fp32 weight of the optimizer file's "master" rounded to nearest even,
#    bit for bit (torch's own float -> bfloat16 conversion is round to nearest even);
#  - qstar itself loads the checkpoint: `qstar train --model` from it runs a step.
# A missing .venv is a failure, not a skip that passes: the check is the point of this suite.
set -u
cd "$(dirname "$0")/.."
py=.venv/bin/python
if [ ! -x "$py" ] || ! "$py" -c "import torch, transformers" 2>/dev/null; then
  echo "SKIP: .venv with torch and transformers missing (run make deps)"
  echo "0 passed, 1 failed"; exit 1
fi
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
work=build/test-work/save_bf16_py; rm -rf "$work"; mkdir -p "$work"
Q=bin/qstar
python3 tests/lib/make_shard.py "$work/d.bin" --random 1024 --tokens 3000 --seed 6
if $Q train --config configs/tiny.json --data "$work/d.bin" --out "$work/run" --steps 2 --batch 2 --seq 32 --lr 1e-3 \
     --save-dtype bf16 > "$work/train.log" 2>&1; then ok "qstar train --save-dtype bf16"
else bad "train failed: $(tail -1 "$work/train.log")"; fi
ck="$work/run/step_000002"
if "$py" - "$ck" <<'PY'
import sys, torch
from safetensors.torch import load_file
from transformers import MistralForCausalLM
ck = sys.argv[1]
model, info = MistralForCausalLM.from_pretrained(ck, torch_dtype="auto", output_loading_info=True, attn_implementation="eager")
missing = {k: v for k, v in info.items() if v}
assert not missing, "loading info %s" % missing
sd = model.state_dict()
dtypes = {v.dtype for v in sd.values()}
assert dtypes == {torch.bfloat16}, "dtypes %s" % dtypes
master = load_file(ck + "/optimizer.safetensors")["master"]
# the flat master in qstar's parameter order is the file's own tensor order: compare by name through
# model.safetensors' header order (qstar writes the tensors in its table order)
import json, struct
f = open(ck + "/model.safetensors", "rb"); n = struct.unpack("<Q", f.read(8))[0]
header = json.loads(f.read(n)); header.pop("__metadata__", None)
off, differ, total = 0, 0, 0
for name, v in header.items():
    numel = 1
    for d in v["shape"]: numel *= d
    want = master[off:off + numel].reshape(v["shape"]).to(torch.bfloat16)
    got = sd[name] if name in sd else None
    assert got is not None, "transformers has no %s" % name
    differ += int((got.view(torch.int16) != want.view(torch.int16)).sum()); total += numel; off += numel
assert off == master.numel(), "master has %d values, the tensors %d" % (master.numel(), off)
with torch.no_grad():
    logits = model(input_ids=torch.tensor([[1, 5, 17, 99, 3]])).logits
assert torch.isfinite(logits.float()).all(), "non-finite logits"
print("    %d of %d weights differ from bf16(master); logits %s finite" % (differ, total, tuple(logits.shape)))
sys.exit(1 if differ else 0)
PY
then ok "transformers loads it in bfloat16: every weight is bf16(master), logits finite"
else bad "transformers load of the bf16 checkpoint"; fi
if $Q train --model "$ck" --data "$work/d.bin" --out "$work/again" --steps 1 --batch 2 --seq 32 > "$work/again.log" 2>&1; then
  ok "qstar train --model loads the bf16 checkpoint"
else bad "qstar could not load it: $(tail -1 "$work/again.log")"; fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
