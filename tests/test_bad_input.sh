#!/usr/bin/env bash
# Bad input gets one clear line naming the file and the problem, and exit status 1 — never a
# crash, a hang or a silent default. Each case runs a real command and checks exit status, that
# stderr is a single "qstar: error:" line, and that it names the offending file (or option) and,
# where it matters, the field or tensor. The reproducers of issue 15 live in tests/data/bad/.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
work=build/test-work/bad; rm -rf "$work"; mkdir -p "$work"
Q=bin/qstar

. tests/lib/expect_error.sh

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

# --- issue 15: the reproducers (tests/data/bad/README.md) and their relatives ---
bad=tests/data/bad
# ids beyond what the file describes, each run under 1 GB of address space and 20 s: rejected
# while reading the file, before any table is sized by them
# (one BLAS/OpenMP thread: per-thread buffers on a many-core machine would use up the limit themselves;
# a sanitizer build reserves terabytes of shadow address space, so it gets only the time limit and
# relies on its own allocator's size checks)
vm_limit=1000000
if ldd "$Q" 2>/dev/null | grep -qE 'lib(a|t)san' || nm "$Q" 2>/dev/null | grep -qE '__(a|t)san_init'; then vm_limit=unlimited; fi
small() { (ulimit -v $vm_limit; export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1; exec timeout 20 "$@"); }
for f in min_added_maxid min_added_1e20 min_vocab_4e9 min_added_3e8; do
  expect_error "tokenizer ids out of range: $f" "$bad/$f.json"$'\n'" has id " \
    small $Q tokenize --tokenizer "$bad/$f.json" --in "$bad/one.jsonl" --out "$work/tok_$f"
done
mktok() { printf '%s' "$2" > "$work/$1.json"; echo "$work/$1.json"; }
t=$(mktok frac '{"model":{"type":"BPE","vocab":{"a":0,"b":1.5},"merges":[]}}')
expect_error "tokenizer id not an integer" "$t" $Q tokenize --tokenizer "$t" --in "$bad/one.jsonl" --out "$work/tok_frac"
t=$(mktok tmpl '{"model":{"type":"BPE","vocab":{"a":0,"</s>":1},"merges":[]},"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}}],"special_tokens":{"<s>":{"ids":[1e20]}}}}')
expect_error "post-processor id 1e20" "$t" $Q tokenize --tokenizer "$t" --in "$bad/one.jsonl" --out "$work/tok_tmpl"
t=$(mktok roberta '{"model":{"type":"BPE","vocab":{"a":0,"</s>":1},"merges":[]},"post_processor":{"type":"RobertaProcessing","cls":["<s>"],"sep":["</s>",1]}}')
expect_error "post-processor pair without an id" "$t" $Q tokenize --tokenizer "$t" --in "$bad/one.jsonl" --out "$work/tok_rob"
# the bound must not refuse a trimmed file that keeps a real model's special-token ids (Llama 3's
# <|begin_of_text|> is 128000)
t=$(mktok gap '{"model":{"type":"BPE","vocab":{"a":0,"</s>":1},"merges":[]},"added_tokens":[{"id":128000,"content":"<x>","special":true}]}')
if small $Q tokenize --tokenizer "$t" --in "$bad/one.jsonl" --out "$work/tok_gap" > /dev/null 2> "$work/err.txt"; then
  pass=$((pass+1)); echo "ok   a tokenizer with a gap in its ids still loads"
else fail=$((fail+1)); echo "FAIL a tokenizer with a gap in its ids was refused: $(cat "$work/err.txt")"; fi

# config.json floats that overflow float (1e39, 1e400, 1e406 become infinity): named with the file
expect_error "rms_norm_eps 1e400 (train)" "$bad/cfg_eps_inf.json"$'\n'"rms_norm_eps" \
  $Q train --config "$bad/cfg_eps_inf.json" --data "$good" "${T[@]}"
expect_error "rope_theta 1e39 (train)" "$bad/cfg_rope_inf.json"$'\n'"rope_theta" \
  $Q train --config "$bad/cfg_rope_inf.json" --data "$good" "${T[@]}"
expect_error "rms_norm_eps 1e406 (info)" "$bad/fuzz_cfg_eps_1e406.json"$'\n'"rms_norm_eps" \
  $Q info --config "$bad/fuzz_cfg_eps_1e406.json"
for f in cfg_sliding_window_negative min_cfg_sliding_negative; do
  expect_error "negative sliding_window: $f" "$bad/$f.json"$'\n'"sliding_window" $Q info --config "$bad/$f.json"
done
cfgwith() {  # cfgwith NAME KEY VALUE: configs/tiny.json with KEY set to the JSON text VALUE
  python3 -c 'import json,sys; c=json.load(open("configs/tiny.json")); c.pop(sys.argv[2], None); t=json.dumps(c)[:-1]; open(sys.argv[1],"w").write(t + ", \"%s\": %s}" % (sys.argv[2], sys.argv[3]))' \
    "$work/$1.json" "$2" "$3"
  echo "$work/$1.json"
}
for kv in "initializer_range 1e39" "initializer_range -0.02" "rms_norm_eps 0" "rms_norm_eps 1e-50" "rope_theta -1e4" "rope_theta 1e300"; do
  set -- $kv; c=$(cfgwith "cfg_$1_$2" "$1" "$2")
  expect_error "config $1 = $2" "$c"$'\n'"$1" $Q info --config "$c"
done
c=$(cfgwith cfg_sw_zero sliding_window 0)
$Q info --config "$c" > /dev/null 2>&1 && { pass=$((pass+1)); echo "ok   sliding_window 0 (none) still loads"; } \
  || { fail=$((fail+1)); echo "FAIL sliding_window 0 refused"; }

# non-finite weights and moments: named with file and tensor, for eval and train
setval() {  # setval FILE TENSOR VALUE: element 3 of an F32 tensor of a safetensors file
  python3 - "$@" <<'PY'
import json, struct, sys
p, name, val = sys.argv[1], sys.argv[2], float(sys.argv[3])
b = bytearray(open(p, "rb").read()); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
at = 8 + n + h[name]["data_offsets"][0] + 3 * 4
b[at:at + 4] = struct.pack("<f", val); open(p, "wb").write(bytes(b))
PY
}
d=$(mk nanweights); setval "$d/model.safetensors" model.norm.weight nan
expect_error "NaN weight (eval)" "$d/model.safetensors"$'\n'"model.norm.weight" \
  $Q eval --ckpt "$d" --data "$good" --batch 1 --seq 16 --max-batches 1
expect_error "NaN weight (train)" "$d/model.safetensors"$'\n'"model.norm.weight" $Q train --model "$d" --data "$good" "${T[@]}"
d=$(mk infweights); setval "$d/model.safetensors" model.layers.0.mlp.up_proj.weight -inf
expect_error "-Inf weight (eval)" "$d/model.safetensors"$'\n'"model.layers.0.mlp.up_proj.weight" \
  $Q eval --ckpt "$d" --data "$good" --batch 1 --seq 16 --max-batches 1
rm -rf "$work/nanrun"; mkdir -p "$work/nanrun"; cp -r "$ck" "$work/nanrun/"
setval "$work/nanrun/step_000001/optimizer.safetensors" adam_v nan
expect_error "NaN AdamW moment on resume" "optimizer.safetensors"$'\n'"adam_v" $Q train --resume "$work/nanrun"

# info computes sizes it could never allocate: 2e9 layers (the table was allocated per layer) and
# everything at 2e9 (products beyond 2^64); parameter counts checked against the formula
for shape in "16 8 16 2000000000 2" "2000000000 2000000000 2000000000 2000000000 4000000"; do
  set -- $shape
  printf '{"vocab_size": %s, "hidden_size": %s, "intermediate_size": %s, "num_hidden_layers": %s, "num_attention_heads": %s}' \
    "$@" > "$work/huge.json"
  want=$(python3 -c '
import sys; V, H, IM, L, NH = map(int, sys.argv[1:])
n = 2 * V * H + L * (2 * H + 4 * H * H + 3 * IM * H) + H   # untied, kv heads = heads
print("%.0f" % n if n < 2**53 else "%.4g" % float(n))' "$@")
  if $Q info --config "$work/huge.json" > "$work/info.txt" 2> "$work/err.txt" && grep -q "^parameters: $want " "$work/info.txt"; then
    pass=$((pass+1)); echo "ok   info on a $4-layer, hidden $2 config: parameters $want, nothing allocated"
  else fail=$((fail+1)); echo "FAIL info on huge sizes (want parameters $want):"; cat "$work/info.txt" "$work/err.txt" | sed 's/^/       /' | head -5; fi
done

# a shard whose header claims 2^63 tokens: the byte count in the message must not wrap to 64
python3 - "$work/wrap.bin" <<'PY'
import struct, sys
open(sys.argv[1], "wb").write(struct.pack("<IIIIQ", 0x4B545351, 1, 2, 0, 2**63) + bytes(40) + bytes(100))
PY
expect_error "shard of 2^63 tokens" "$work/wrap.bin"$'\n'"9223372036854775808 tokens"$'\n'"!(64 bytes)" \
  $Q train --config configs/tiny.json --data "$work/wrap.bin" "${T[@]}"

# a failed save (file size limit: EFBIG, as a full disk gives ENOSPC) leaves no .tmp.step_N behind,
# and the previous checkpoint stays the newest, intact
rm -rf "$work/full"; mkdir -p "$work/full"; cp -r "$ck" "$work/full/"; cp -r "$ck" "$work/full_before"
expect_error "checkpoint save on a full disk" "$work/full/.tmp.step_000002" \
  bash -c 'trap "" XFSZ; ulimit -f 1024; exec "$@"' _ $Q train --resume "$work/full" --steps 2
if ! ls -a "$work/full" | grep -q '^\.tmp' && [ ! -e "$work/full/step_000002" ] \
   && diff -r "$work/full_before" "$work/full/step_000001" > /dev/null; then
  pass=$((pass+1)); echo "ok   the failed save left no temp directory; step 1 intact and newest"
else fail=$((fail+1)); echo "FAIL after the failed save: $(ls -a "$work/full" | tr '\n' ' ')"; fi
rm -rf "$work/full_before"

# directories that cannot be written (root ignores permission bits: chattr +i makes them immutable
# instead): the run directory (refused before the first step: metrics.jsonl is rewritten there), and
# the save's own temp directory (the save fails inside: model.safetensors cannot be created); then a
# save whose final name is taken by a file. Each: one error line, exit 1, step 1 intact and newest.
lock()   { if [ "$(id -u)" = 0 ]; then chattr +i "$1" 2>/dev/null; else chmod 555 "$1"; fi && ! touch "$1/.probe" 2>/dev/null; }
unlock() { if [ "$(id -u)" = 0 ]; then chattr -i "$1" 2>/dev/null; else chmod 755 "$1"; fi; rm -f "$1/.probe"; }
rm -rf "$work/ro"; mkdir -p "$work/ro"; cp -r "$ck" "$work/ro/"; cp -r "$ck" "$work/ro_before"
if lock "$work/ro"; then
  expect_error "run directory unwritable" "$work/ro/" $Q train --resume "$work/ro" --steps 2
else fail=$((fail+1)); echo "FAIL cannot make a directory unwritable here (chattr/chmod)"; fi
unlock "$work/ro"
mkdir "$work/ro/.tmp.step_000002"
if lock "$work/ro/.tmp.step_000002"; then
  expect_error "checkpoint save into an unwritable directory" "$work/ro/.tmp.step_000002/model.safetensors" \
    $Q train --resume "$work/ro" --steps 2
else fail=$((fail+1)); echo "FAIL cannot make a directory unwritable here (chattr/chmod)"; fi
unlock "$work/ro/.tmp.step_000002"; rm -rf "$work/ro/.tmp.step_000002"
[ -e "$work/ro/step_000002" ] && { fail=$((fail+1)); echo "FAIL a failed save left step_000002"; }
touch "$work/ro/step_000002"  # a file where the new checkpoint directory goes
expect_error "checkpoint save whose name is taken by a file" "$work/ro/step_000002"$'\n'"cannot rename checkpoint into place" \
  $Q train --resume "$work/ro" --steps 2
rm -f "$work/ro/step_000002"
if ! ls -a "$work/ro" | grep -q '^\.tmp' && diff -r "$work/ro_before" "$work/ro/step_000001" > /dev/null \
   && $Q train --resume "$work/ro" --steps 2 > "$work/ro.log" 2>&1 && grep -q "resuming from .*step_000001 at step 1" "$work/ro.log"; then
  pass=$((pass+1)); echo "ok   after the failed saves: no temp directory, step 1 intact, newest, and it resumes"
else fail=$((fail+1)); echo "FAIL after the failed saves: $(ls -a "$work/ro" | tr '\n' ' ') $(tail -1 "$work/ro.log")"; fi
rm -rf "$work/ro_before"

# state.json: values that do not fit the fields they fill
for bad_state in '{"step": 1e300, "data": {"epoch": 0, "shard_cursor": 0, "window_cursor": 0}}' \
                 '{"step": 1, "data": {"epoch": -1, "shard_cursor": 0, "window_cursor": 0}}' \
                 '{"step": 1, "data": {"epoch": 0, "shard_cursor": 0, "window_cursor": 0}, "settings": [1]}' \
                 '{"step": 1, "data": {"epoch": 0, "shard_cursor": 0, "window_cursor": 0}, "settings": {"batch": 1e12}}'; do
  printf '%s' "$bad_state" > "$work/brokenrun/step_000001/state.json"
  expect_error "state.json: $bad_state" "state.json" $Q train --resume "$work/brokenrun"
done

# options
expect_error "unknown option" "--stepz" $Q train --stepz 3
expect_error "malformed number" "--steps" $Q train --config configs/tiny.json --data "$good" --steps 1O --out "$work/run"
expect_error "unknown device" "tpu" $Q train --config configs/tiny.json --data "$good" --device tpu "${T[@]}"
expect_error "unknown command" "frobnicate" $Q frobnicate

echo "$pass passed, $fail failed"
[ $fail = 0 ]
