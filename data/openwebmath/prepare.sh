#!/usr/bin/env bash
# Downloads part of OpenWebMath (Hugging Face dataset open-web-math/open-web-math: 114 parquet
# files of ~240 MB under data/) and turns it into qstar token shards, in three visible steps:
#   1. list the parquet files of the dataset repo (Hub API) and take the first --files N, sorted;
#   2. download each from its resolve URL  https://huggingface.co/datasets/REPO/resolve/REV/PATH
#      (huggingface_hub when importable, else curl or wget), printing every URL it fetches;
#   3. parquet -> JSONL (parquet_to_jsonl.py, text column only, streamed), then
#      bin/qstar tokenize --tokenizer T --in JSONL --out DIR/shards/NAME for each file.
# Every step skips work already done, so an interrupted run can simply be started again.
# --local-parquet FILE (repeatable) skips steps 1-2 and uses the given files: that is how it is
# tested offline (tests/test_openwebmath.sh). --no-tokenize stops after the JSONL.
# PREPARE_NO_HUB=1 uses curl/wget even when huggingface_hub is installed; HF_TOKEN is sent if set.
#
#   data/openwebmath/prepare.sh --tokenizer PATH/tokenizer.json --files 2 --out runs/owm
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
REPO="open-web-math/open-web-math"
REV="main"
TOKENIZER="$ROOT/data/corpus/tokenizer.json"
FILES=1
OUT=""
LOCAL=()
TOKENIZE=1
QSTAR="${QSTAR:-$ROOT/bin/qstar}"

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; cat <<EOF

options:
  --tokenizer PATH       tokenizer.json for qstar tokenize (default: data/corpus/tokenizer.json;
                         for a real run use the model's, e.g. Mistral-7B's)
  --files N              number of parquet files to download (default 1; 114 in all, ~27 GB)
  --out DIR              output directory: DIR/parquet, DIR/jsonl, DIR/shards (required)
  --revision REV         dataset revision, a branch or commit (default main)
  --local-parquet FILE   use this parquet file instead of downloading (repeatable)
  --no-tokenize          stop after writing DIR/jsonl
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --tokenizer) TOKENIZER="$2"; shift 2;;
    --files) FILES="$2"; shift 2;;
    --out) OUT="$2"; shift 2;;
    --revision) REV="$2"; shift 2;;
    --local-parquet) LOCAL+=("$2"); shift 2;;
    --no-tokenize) TOKENIZE=0; shift;;
    -h|--help) usage; exit 0;;
    *) echo "prepare.sh: unknown option $1 (see --help)" >&2; exit 2;;
  esac
done
[ -n "$OUT" ] || { echo "prepare.sh: --out DIR is required (see --help)" >&2; exit 2; }
[[ "$FILES" =~ ^[1-9][0-9]*$ ]] || { echo "prepare.sh: --files must be a positive integer" >&2; exit 2; }

# pyarrow (and huggingface_hub, if any) live in the project venv; fall back to the system python.
PY=python3
if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; fi
"$PY" -c "import pyarrow" 2>/dev/null || { echo "prepare.sh: pyarrow missing for $PY (run make deps)" >&2; exit 1; }

mkdir -p "$OUT/parquet" "$OUT/jsonl"
parquets=()

if [ ${#LOCAL[@]} -gt 0 ]; then
  for f in "${LOCAL[@]}"; do
    [ -f "$f" ] || { echo "prepare.sh: no such file: $f" >&2; exit 1; }
    parquets+=("$f")
  done
  echo "prepare.sh: using ${#LOCAL[@]} local parquet file(s), no download"
else
  HAVE_HUB=0  # PREPARE_NO_HUB=1 forces the plain curl/wget path
  [ "${PREPARE_NO_HUB:-0}" != 1 ] && "$PY" -c "import huggingface_hub" 2>/dev/null && HAVE_HUB=1
  # Step 1: the file names carry content hashes (train-00000-of-00114-<hash>.parquet), so they are
  # listed rather than guessed.
  API="https://huggingface.co/api/datasets/$REPO/tree/$REV/data"
  if [ "$HAVE_HUB" = 1 ]; then
    echo "prepare.sh: listing $REPO@$REV with huggingface_hub (list_repo_files)"
    listing=$("$PY" - "$REPO" "$REV" <<'EOF'
import sys
from huggingface_hub import HfApi
for f in sorted(HfApi().list_repo_files(sys.argv[1], repo_type="dataset", revision=sys.argv[2])):
    if f.startswith("data/") and f.endswith(".parquet"):
        print(f)
EOF
)
  else
    echo "prepare.sh: listing $API"
    auth=(); [ -n "${HF_TOKEN:-}" ] && auth=(-H "Authorization: Bearer $HF_TOKEN")
    listing=$(curl -fsSL "${auth[@]}" "$API" | "$PY" -c '
import json, sys
for e in sorted(json.load(sys.stdin), key=lambda e: e["path"]):
    if e.get("type") == "file" and e["path"].endswith(".parquet"):
        print(e["path"])')
  fi
  mapfile -t all < <(printf '%s\n' "$listing" | grep -v '^$')
  [ ${#all[@]} -gt 0 ] || { echo "prepare.sh: the listing of $REPO found no parquet files under data/" >&2; exit 1; }
  echo "prepare.sh: ${#all[@]} parquet files in the dataset; taking the first $FILES"
  for path in "${all[@]:0:$FILES}"; do
    name=$(basename "$path")
    dest="$OUT/parquet/$name"
    url="https://huggingface.co/datasets/$REPO/resolve/$REV/$path"
    parquets+=("$dest")
    if [ -s "$dest" ]; then echo "prepare.sh: have $dest"; continue; fi
    echo "prepare.sh: fetch $url -> $dest"
    # Step 2: download to .part and rename, so a partial file is never taken for a finished one.
    if [ "$HAVE_HUB" = 1 ]; then
      "$PY" - "$REPO" "$REV" "$path" "$OUT/parquet/.hub" <<'EOF'
import sys
from huggingface_hub import hf_hub_download
print(hf_hub_download(sys.argv[1], sys.argv[3], repo_type="dataset", revision=sys.argv[2], local_dir=sys.argv[4]))
EOF
      mv "$OUT/parquet/.hub/$path" "$dest"
    elif command -v curl >/dev/null; then
      auth=(); [ -n "${HF_TOKEN:-}" ] && auth=(-H "Authorization: Bearer $HF_TOKEN")
      curl -fL --retry 3 -C - "${auth[@]}" -o "$dest.part" "$url"
      mv "$dest.part" "$dest"
    elif command -v wget >/dev/null; then
      wget -c -O "$dest.part" "$url"
      mv "$dest.part" "$dest"
    else
      echo "prepare.sh: need huggingface_hub, curl or wget to download" >&2; exit 1
    fi
  done
fi

# Step 3: parquet -> JSONL -> shards, one file at a time.
jsonls=()
for p in "${parquets[@]}"; do
  name=$(basename "$p" .parquet)
  j="$OUT/jsonl/$name.jsonl"
  jsonls+=("$j")
  if [ -s "$j" ]; then echo "prepare.sh: have $j"; continue; fi
  "$PY" "$ROOT/data/openwebmath/parquet_to_jsonl.py" --out "$j" "$p"
done

if [ "$TOKENIZE" = 1 ]; then
  [ -f "$TOKENIZER" ] || { echo "prepare.sh: tokenizer not found: $TOKENIZER" >&2; exit 1; }
  if ! "$QSTAR" tokenize --help >/dev/null 2>&1; then
    echo "prepare.sh: $QSTAR has no working 'tokenize' command (build it with make)" >&2; exit 1
  fi
  for j in "${jsonls[@]}"; do
    name=$(basename "$j" .jsonl)
    d="$OUT/shards/$name"
    if [ -f "$d/.done" ]; then echo "prepare.sh: have $d"; continue; fi
    mkdir -p "$d"
    echo "prepare.sh: $QSTAR tokenize --tokenizer $TOKENIZER --in $j --out $d --field text"
    "$QSTAR" tokenize --tokenizer "$TOKENIZER" --in "$j" --out "$d" --field text
    touch "$d/.done"
  done
  echo "prepare.sh: shards under $OUT/shards/ (train with --data '$OUT/shards/*/shard_*.bin')"
fi
