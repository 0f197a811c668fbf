#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test qstar: the C libraries from apt
# (as root, or through sudo), and the Python packages the reference tests use in a project-local
# virtual environment (.venv, which also sees Debian's CPU build of PyTorch). Quiet and quick when
# everything is already there, so `make run` and `make test` can call it every time.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="build-essential libcjson-dev libopenblas-openmp-dev python3 python3-venv python3-numpy python3-torch openmpi-bin libopenmpi-dev"
PIP_PACKAGES="transformers==4.40.2 tokenizers==0.19.1 safetensors==0.4.3 pyarrow==15.0.2"

missing=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "deps: installing Debian packages:$missing"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "deps: need root or sudo to install:$missing" >&2; exit 1; }
    SUDO=sudo
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The venv uses Debian's interpreter so that --system-site-packages sees python3-torch.
if [ ! -x .venv/bin/python ]; then
  echo "deps: creating .venv (Python packages for reference tests)"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
if ! .venv/bin/python -c "import torch, transformers, tokenizers, safetensors, pyarrow" 2>/dev/null; then
  echo "deps: installing Python packages: $PIP_PACKAGES"
  .venv/bin/pip install -q --disable-pip-version-check $PIP_PACKAGES
fi
