#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test qstar: the C libraries from apt
# (as root, or through sudo), and the Python packages the reference tests use in a project-local
# virtual environment (.venv, which also sees Debian's CPU build of PyTorch). Quiet and quick when
# everything is already there, so `make run` and `make test` can call it every time.
# Charts use Debian's python3-matplotlib (the .venv sees it). The token report's render test uses
# Debian's chromium-headless-shell (about 95 MB to download): installed when apt can, otherwise that
# one test says "skipped: chromium not installed"; QSTAR_NO_CHROMIUM=1 leaves it out.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="build-essential libcjson-dev libopenblas-openmp-dev python3 python3-venv python3-numpy python3-torch python3-matplotlib openmpi-bin libopenmpi-dev"
PIP_PACKAGES="transformers==4.40.2 tokenizers==0.19.1 safetensors==0.4.3 pyarrow==15.0.2"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

# `tools/deps.sh fuzz` (make fuzz): only clang and its libFuzzer/sanitizer runtime, which make test
# does not need
if [ "${1:-}" = fuzz ]; then
  if ! command -v clang >/dev/null || ! installed libclang-rt-dev; then
    echo "deps: installing clang and libclang-rt-dev (libFuzzer) for make fuzz"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-dev >/dev/null
  fi
  exit 0
fi
# `tools/deps.sh portable` (make portable-check): clang and its OpenMP runtime, for the clang build.
# `tools/deps.sh portable-arm` (make portable-check ARM=1): the aarch64 cross compiler, qemu-user, and
# the arm64 C libraries through dpkg multiarch (the cross gcc looks for headers and libraries in the
# multiarch folders, /usr/include/aarch64-linux-gnu and /usr/lib/aarch64-linux-gnu).
if [ "${1:-}" = portable ] || [ "${1:-}" = portable-arm ]; then
  need="clang libomp-dev"
  if [ "$1" = portable-arm ]; then
    need="$need gcc-aarch64-linux-gnu qemu-user libc6-dev:arm64 libopenblas-openmp-dev:arm64 libcjson-dev:arm64 libgomp1:arm64"
    dpkg --print-foreign-architectures | grep -qx arm64 || { echo "deps: adding the arm64 architecture (dpkg multiarch)"; $SUDO dpkg --add-architecture arm64; }
  fi
  missing=""
  for p in $need; do installed "$p" || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "deps: installing for make portable-check:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
  exit 0
fi
missing=""
for p in $APT_PACKAGES; do
  installed "$p" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "deps: installing Debian packages:$missing"
  if [ -n "$SUDO" ]; then
    command -v sudo >/dev/null || { echo "deps: need root or sudo to install:$missing" >&2; exit 1; }
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# optional: a headless browser for tests/test_token_report.sh; a failure here only makes that case skip
if [ "${QSTAR_NO_CHROMIUM:-0}" != 1 ] && ! installed chromium-headless-shell && ! installed chromium \
   && { [ -z "$SUDO" ] || command -v sudo >/dev/null; }; then
  echo "deps: installing chromium-headless-shell (renders the token report in its test; QSTAR_NO_CHROMIUM=1 skips)"
  [ -n "$missing" ] || $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium-headless-shell \
    >/dev/null 2>&1 || echo "deps: chromium-headless-shell could not be installed; the render test will skip"
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
