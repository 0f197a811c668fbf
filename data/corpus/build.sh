#!/usr/bin/env bash
# Generates the bundled offline corpus (the default data of the demo and the tests) if missing:
#   data/corpus/out/train.jsonl    ~3 MB of text, --split train   --seed 1
#   data/corpus/out/heldout.jsonl  ~0.3 MB,       --split heldout --seed 1 (a salted, disjoint stream)
# Idempotent and quick (about 2 s): a file that exists is left alone, so builds can call it every
# time. Generated data stays out of git (data/corpus/.gitignore); the generator is deterministic, so
# every machine gets byte-identical files. Token shards are made from them with
#   bin/qstar tokenize --tokenizer data/corpus/tokenizer.json --in data/corpus/out/train.jsonl --out DIR
# Set FORCE=1 to regenerate.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/out"
mkdir -p "$out"
PY="${PYTHON:-python3}"
for split in train heldout; do
  f="$out/$split.jsonl"
  if [ -s "$f" ] && [ "${FORCE:-0}" != 1 ]; then continue; fi
  "$PY" "$here/gen_corpus.py" --split "$split" --seed 1 --out "$f"
done
