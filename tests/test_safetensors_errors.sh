#!/usr/bin/env bash
# Bad safetensors input must stop st_open with one clear line: exit status non-zero, stderr a single
# line "qstar: error: ..." that names the offending file. Each case builds a broken file (or
# directory) and runs `build/tests/test_safetensors --open` on it; a good file is run first so that a
# broken binary cannot make every case "pass".
set -u
cd "$(dirname "$0")/.."
bin=${ST_TEST_BIN:-build/tests/test_safetensors}  # override to run e.g. a sanitizer build
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

if [ ! -x "$bin" ]; then
  echo "FAIL $bin not built (make build/tests/test_safetensors)"
  echo "0 passed, 1 failed"; exit 1
fi
py=$(command -v python3 || echo .venv/bin/python)
tmp=$(mktemp -d /tmp/qstar_st_err.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# mk FILE HEADER_JSON DATA_BYTES [HEADER_LENGTH_OVERRIDE]: writes an 8-byte length, header, zero data.
mk() {
  "$py" - "$@" <<'EOF'
import struct, sys
path, header, nbytes = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
hlen = int(sys.argv[4]) if len(sys.argv) > 4 else len(header)
open(path, "wb").write(struct.pack("<Q", hlen) + header + b"\0" * nbytes)
EOF
}

# expect_error NAME TARGET MUST_CONTAIN...: --open TARGET must fail with one line naming the file.
expect_error() {
  local name=$1 target=$2; shift 2
  "$bin" --open "$target" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  local lines; lines=$(wc -l <"$tmp/err")
  local first; first=$(head -c 300 "$tmp/err")
  if [ "$rc" = 0 ]; then bad "$name: exit status 0"; return; fi
  if [ "$rc" -ge 128 ]; then bad "$name: crashed with status $rc"; return; fi
  if [ "$lines" != 1 ]; then bad "$name: stderr has $lines lines: $first"; return; fi
  if [[ "$first" != "qstar: error: "* ]]; then bad "$name: stderr does not start with 'qstar: error: ': $first"; return; fi
  for s in "$@"; do
    if ! grep -qF -- "$s" "$tmp/err"; then bad "$name: stderr lacks '$s': $first"; return; fi
  done
  ok
  echo "ok   $name: $first"
}

t='{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}'

# Control: a good file opens.
mk "$tmp/good.safetensors" "{\"w\":$t}" 24
if "$bin" --open "$tmp/good.safetensors" >/dev/null 2>"$tmp/err"; then ok; else bad "good file rejected: $(cat "$tmp/err")"; fi

mk "$tmp/hlen.safetensors" "{\"w\":$t}" 24 100000
expect_error "header length larger than the file" "$tmp/hlen.safetensors" "$tmp/hlen.safetensors" "header length"

mk "$tmp/notjson.safetensors" '{"w": {"dtype": "F32", "shape": [2,3], "data_offsets": [0,24]' 24
expect_error "header not JSON" "$tmp/notjson.safetensors" "$tmp/notjson.safetensors" "JSON"

mk "$tmp/notobj.safetensors" '[1, 2, 3]' 0
expect_error "header JSON not an object" "$tmp/notobj.safetensors" "$tmp/notobj.safetensors"

mk "$tmp/beyond.safetensors" '{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[24,48]}}' 24
expect_error "data_offsets beyond end of file" "$tmp/beyond.safetensors" "$tmp/beyond.safetensors" "end of the file"

mk "$tmp/inconsistent.safetensors" '{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}' 24
expect_error "offsets inconsistent with shape x dtype" "$tmp/inconsistent.safetensors" "$tmp/inconsistent.safetensors" "tensor w" "[2, 3]"

mk "$tmp/inconsistent16.safetensors" '{"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,24]}}' 24
expect_error "offsets sized for F32 but dtype BF16" "$tmp/inconsistent16.safetensors" "$tmp/inconsistent16.safetensors" "BF16"

mk "$tmp/dtype.safetensors" '{"w":{"dtype":"F31","shape":[2,3],"data_offsets":[0,24]}}' 24
expect_error "unknown dtype" "$tmp/dtype.safetensors" "$tmp/dtype.safetensors" "F31"

mk "$tmp/negshape.safetensors" '{"w":{"dtype":"F32","shape":[-2,3],"data_offsets":[0,24]}}' 24
expect_error "negative shape" "$tmp/negshape.safetensors" "$tmp/negshape.safetensors" "shape"

mk "$tmp/overlap.safetensors" "{\"w\":$t,\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}" 24
expect_error "overlapping tensors" "$tmp/overlap.safetensors" "$tmp/overlap.safetensors" "overlap"

mk "$tmp/meta.safetensors" "{\"__metadata__\":{\"format\":1},\"w\":$t}" 24
expect_error "non-string metadata" "$tmp/meta.safetensors" "$tmp/meta.safetensors" "__metadata__"

mk "$tmp/dup.safetensors" "{\"w\":$t,\"w\":$t}" 24
expect_error "duplicate tensor name" "$tmp/dup.safetensors" "$tmp/dup.safetensors" "twice"

expect_error "missing file" "$tmp/absent.safetensors" "$tmp/absent.safetensors"

printf 'abc' >"$tmp/short.safetensors"
expect_error "file shorter than 8 bytes" "$tmp/short.safetensors" "$tmp/short.safetensors"
: >"$tmp/empty.safetensors"
expect_error "empty file" "$tmp/empty.safetensors" "$tmp/empty.safetensors"

mkdir -p "$tmp/emptydir"
expect_error "directory without a model" "$tmp/emptydir" "$tmp/emptydir"

# Sharded directories.
mkdir -p "$tmp/noshard"
mk "$tmp/noshard/model-00001-of-00002.safetensors" "{\"w\":$t}" 24
cat >"$tmp/noshard/model.safetensors.index.json" <<'EOF'
{"metadata": {}, "weight_map": {"w": "model-00001-of-00002.safetensors", "v": "model-00002-of-00002.safetensors"}}
EOF
expect_error "index naming a missing shard" "$tmp/noshard" "$tmp/noshard/model.safetensors.index.json" "model-00002-of-00002.safetensors"

mkdir -p "$tmp/notinshard"
mk "$tmp/notinshard/model-00001-of-00002.safetensors" "{\"w\":$t}" 24
mk "$tmp/notinshard/model-00002-of-00002.safetensors" "{\"v\":$t}" 24
cat >"$tmp/notinshard/model.safetensors.index.json" <<'EOF'
{"metadata": {}, "weight_map": {"w": "model-00001-of-00002.safetensors", "v": "model-00002-of-00002.safetensors", "u": "model-00002-of-00002.safetensors"}}
EOF
expect_error "index naming a tensor absent from its shard" "$tmp/notinshard" "$tmp/notinshard/model-00002-of-00002.safetensors" "tensor u"
# Control for the same directory once the index is right.
cat >"$tmp/notinshard/model.safetensors.index.json" <<'EOF'
{"metadata": {}, "weight_map": {"w": "model-00001-of-00002.safetensors", "v": "model-00002-of-00002.safetensors"}}
EOF
if "$bin" --open "$tmp/notinshard" >/dev/null 2>"$tmp/err"; then ok; else bad "good sharded dir rejected: $(cat "$tmp/err")"; fi

mkdir -p "$tmp/badshard"
mk "$tmp/badshard/model-00001-of-00001.safetensors" '{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}' 24 999999
echo '{"weight_map": {"w": "model-00001-of-00001.safetensors"}}' >"$tmp/badshard/model.safetensors.index.json"
expect_error "corrupt shard inside a sharded directory" "$tmp/badshard" "$tmp/badshard/model-00001-of-00001.safetensors"

mkdir -p "$tmp/badindex"
echo '{"weight_map": ' >"$tmp/badindex/model.safetensors.index.json"
expect_error "index not JSON" "$tmp/badindex" "$tmp/badindex/model.safetensors.index.json"

mkdir -p "$tmp/twice"
mk "$tmp/twice/a.safetensors" "{\"w\":$t}" 24
mk "$tmp/twice/b.safetensors" "{\"w\":$t}" 24
echo '{"weight_map": {"w": "a.safetensors", "x": "b.safetensors"}}' >"$tmp/twice/model.safetensors.index.json"
expect_error "tensor in two shards" "$tmp/twice" "$tmp/twice/b.safetensors" "tensor w"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
