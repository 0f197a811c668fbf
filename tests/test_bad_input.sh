#!/usr/bin/env bash
# Bad input gets one clear line naming the file and the problem, and a non-zero exit — never a
# crash, a hang or a silent default. Each case runs a real command and checks exit status, that
# stderr is a single "qstar: error:" line, and that it names the offending file (or option).
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
work=build/test-work/bad; rm -rf "$work"; mkdir -p "$work"
Q=bin/qstar

# expect_error NAME NEEDLE CMD...: CMD must fail with one stderr line "qstar: error: ...NEEDLE..."
expect_error() {
  local name=$1 needle=$2; shift 2
  "$@" > "$work/out.txt" 2> "$work/err.txt"; local rc=$?
  local lines; lines=$(wc -l < "$work/err.txt")
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$lines" = 1 ] && grep -q '^qstar: error: ' "$work/err.txt" \
     && grep -qF -- "$needle" "$work/err.txt"; then
    pass=$((pass+1)); echo "ok   $name: $(cat "$work/err.txt")"
  else
    fail=$((fail+1)); echo "FAIL $name (exit $rc, $lines stderr lines, want one naming '$needle'):"; sed 's/^/       /' "$work/err.txt" | head -5
  fi
}

good="$work/good.bin"
python3 tests/lib/make_shard.py "$good" --random 1024 --tokens 3000
T=(--steps 1 --batch 2 --seq 16 --out "$work/run")

# missing files
expect_error "missing data" "$work/nothing*.bin" $Q train --config configs/tiny.json --data "$work/nothing*.bin" "${T[@]}"
expect_error "missing config" "$work/none.json" $Q train --config "$work/none.json" --data "$good" "${T[@]}"
expect_error "missing model dir" "$work/nomodel" $Q train --model "$work/nomodel" --data "$good" "${T[@]}"
expect_error "missing resume dir" "$work/norun" $Q train --resume "$work/norun" --data "$good"

# malformed config.json
printf '{"vocab_size": 1024, "hidden_size": 64,' > "$work/trunc.json"
expect_error "truncated config.json" "$work/trunc.json" $Q train --config "$work/trunc.json" --data "$good" "${T[@]}"
printf '{"vocab_size": 1024, "hidden_size": "big", "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2}' > "$work/type.json"
expect_error "config value of wrong type" "hidden_size" $Q train --config "$work/type.json" --data "$good" "${T[@]}"
printf '{"vocab_size": 1024, "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1}' > "$work/missing.json"
expect_error "config missing a key" "num_attention_heads" $Q train --config "$work/missing.json" --data "$good" "${T[@]}"
printf '{"vocab_size": 1024, "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 3}' > "$work/heads.json"
expect_error "impossible config (heads)" "$work/heads.json" $Q train --config "$work/heads.json" --data "$good" "${T[@]}"
printf '{"vocab_size": 1024, "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 3}' > "$work/kv.json"
expect_error "impossible config (kv heads)" "num_key_value_heads" $Q train --config "$work/kv.json" --data "$good" "${T[@]}"
expect_error "sequence longer than the model" "max_position_embeddings" $Q train --config configs/tiny.json --data "$good" --steps 1 --batch 1 --seq 5000 --out "$work/run"

# shards
python3 tests/lib/make_shard.py "$work/trunc.bin" --random 1024 --tokens 3000 --corrupt truncate
expect_error "truncated shard" "$work/trunc.bin" $Q train --config configs/tiny.json --data "$work/trunc.bin" "${T[@]}"
python3 tests/lib/make_shard.py "$work/magic.bin" --random 1024 --tokens 3000 --corrupt magic
expect_error "wrong-magic shard" "$work/magic.bin" $Q train --config configs/tiny.json --data "$work/magic.bin" "${T[@]}"
python3 tests/lib/make_shard.py "$work/version.bin" --random 1024 --tokens 3000 --corrupt version
expect_error "unknown shard version" "$work/version.bin" $Q train --config configs/tiny.json --data "$work/version.bin" "${T[@]}"
head -c 20 "$good" > "$work/tiny.bin"
expect_error "shard shorter than its header" "$work/tiny.bin" $Q train --config configs/tiny.json --data "$work/tiny.bin" "${T[@]}"
python3 tests/lib/make_shard.py "$work/vocab.bin" --random 5000 --tokens 3000
expect_error "token outside the vocabulary" "$work/vocab.bin" $Q train --config configs/tiny.json --data "$work/vocab.bin" "${T[@]}"
python3 tests/lib/make_shard.py "$work/short.bin" --random 1024 --tokens 10
expect_error "too little data for one step" "$work/short.bin" $Q train --config configs/tiny.json --data "$work/short.bin" "${T[@]}"

# checkpoints: build a good one, then break copies of it
$Q train --config configs/tiny.json --data "$good" --steps 1 --batch 2 --seq 16 --out "$work/ok" > /dev/null 2>&1
ck="$work/ok/step_000001"
mk() { rm -rf "$work/$1"; cp -r "$ck" "$work/$1"; echo "$work/$1"; }
d=$(mk badheader); printf '\xff\xff\xff\xff\x00\x00\x00\x00{}' > "$d/model.safetensors"
expect_error "safetensors header length beyond the file" "$d/model.safetensors" $Q train --model "$d" --data "$good" "${T[@]}"
d=$(mk notjson); python3 - "$d/model.safetensors" <<'PY'
import sys; open(sys.argv[1], "wb").write((12).to_bytes(8, "little") + b"{not json!!}")
PY
expect_error "safetensors header not JSON" "$d/model.safetensors" $Q train --model "$d" --data "$good" "${T[@]}"
d=$(mk offsets); python3 - "$d/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8+n])
k = next(k for k in h if k != "__metadata__"); h[k]["data_offsets"][1] += 10**9
hb = json.dumps(h).encode(); open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8+n:])
PY
expect_error "safetensors offsets out of range" "$d/model.safetensors" $Q train --model "$d" --data "$good" "${T[@]}"
d=$(mk trunc); python3 - "$d/model.safetensors" <<'PY'
import sys; p = sys.argv[1]; b = open(p, "rb").read(); open(p, "wb").write(b[: len(b) - 1000])
PY
expect_error "truncated safetensors" "$d/model.safetensors" $Q train --model "$d" --data "$good" "${T[@]}"
setkey() { python3 -c 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); c[sys.argv[2]]=int(sys.argv[3]); json.dump(c, open(p,"w"))' "$@"; }
d=$(mk shape); setkey "$d/config.json" intermediate_size 320
expect_error "weights of the wrong shape" "mlp.gate_proj.weight" $Q train --model "$d" --data "$good" "${T[@]}"
d=$(mk missingtensor); setkey "$d/config.json" num_hidden_layers 5
expect_error "config needs a tensor the checkpoint lacks" "model.layers.4" $Q train --model "$d" --data "$good" "${T[@]}"
rm -rf "$work/brokenrun"; mkdir -p "$work/brokenrun"; cp -r "$ck" "$work/brokenrun/"
python3 - "$work/brokenrun/step_000001/optimizer.safetensors" <<'PY'
import sys; p = sys.argv[1]; b = open(p, "rb").read(); open(p, "wb").write(b[:100])
PY
expect_error "truncated optimizer state on resume" "optimizer.safetensors" $Q train --resume "$work/brokenrun"
printf '{"step": 1, "data": ' > "$work/brokenrun/step_000001/state.json"
expect_error "malformed state.json on resume" "state.json" $Q train --resume "$work/brokenrun"

# options
expect_error "unknown option" "--stepz" $Q train --stepz 3
expect_error "malformed number" "--steps" $Q train --config configs/tiny.json --data "$good" --steps 1O --out "$work/run"
expect_error "unknown device" "tpu" $Q train --config configs/tiny.json --data "$good" --device tpu "${T[@]}"
expect_error "unknown command" "frobnicate" $Q frobnicate

echo "$pass passed, $fail failed"
[ $fail = 0 ]
