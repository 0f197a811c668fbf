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

# apt_need WHY PKG...: installs those of the packages that are missing (apt-get update once per run)
updated=0
apt_need() {
  local why=$1 p missing=""; shift
  for p in "$@"; do installed "$p" || missing="$missing $p"; done
  [ -n "$missing" ] || return 0
  echo "deps: installing $why:$missing"
  if [ -n "$SUDO" ]; then
    command -v sudo >/dev/null || { echo "deps: need root or sudo to install:$missing" >&2; exit 1; }
  fi
  [ "$updated" = 1 ] || { $SUDO apt-get update -qq; updated=1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

case "${1:-}" in
  # make fuzz: only clang and its libFuzzer/sanitizer runtime, which make test does not need
  fuzz) apt_need "clang and libFuzzer for make fuzz" clang libclang-rt-dev; exit 0 ;;
  # make portable-check: clang and its OpenMP runtime, for the clang build
  portable) apt_need "for make portable-check" clang libomp-dev; exit 0 ;;
  # make portable-check ARM=1: also the aarch64 cross compiler, qemu-user, and the arm64 C libraries
  # through dpkg multiarch (the cross gcc looks for headers and libraries in the multiarch folders,
  # /usr/include/aarch64-linux-gnu and /usr/lib/aarch64-linux-gnu)
  portable-arm)
    dpkg --print-foreign-architectures | grep -qx arm64 \
      || { echo "deps: adding the arm64 architecture (dpkg multiarch)"; $SUDO dpkg --add-architecture arm64; }
    apt_need "for make portable-check ARM=1" clang libomp-dev gcc-aarch64-linux-gnu qemu-user libc6-dev:arm64 \
      libopenblas-openmp-dev:arm64 libcjson-dev:arm64 libgomp1:arm64
    exit 0 ;;
esac
apt_need "Debian packages" $APT_PACKAGES
# optional: a headless browser for tests/test_token_report.sh; a failure here only makes that case skip
if [ "${QSTAR_NO_CHROMIUM:-0}" != 1 ] && ! installed chromium-headless-shell && ! installed chromium \
   && { [ -z "$SUDO" ] || command -v sudo >/dev/null; }; then
  echo "deps: installing chromium-headless-shell (renders the token report in its test; QSTAR_NO_CHROMIUM=1 skips)"
  [ "$updated" = 1 ] || $SUDO apt-get update -qq || true
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
