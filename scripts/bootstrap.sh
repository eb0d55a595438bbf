#!/usr/bin/env bash
# Installs what parallax needs on Debian 12 (packages, the pinned LibTorch venv), then configures
# and builds into build/.
#
#   scripts/bootstrap.sh                 install what is missing, configure, build
#   scripts/bootstrap.sh --print-python  make sure the venv exists; print its interpreter only
#
# Environment: PARALLAX_VENV (default ~/.cache/parallax/venv), PARALLAX_BUILD_DIR (default build),
# PARALLAX_JOBS (default: cores), PARALLAX_CMAKE_ARGS (extra configure arguments).
set -euo pipefail

TORCH_VERSION=2.11.0
TORCHVISION_VERSION=0.26.0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${PARALLAX_VENV:-$HOME/.cache/parallax/venv}
BUILD_DIR=${PARALLAX_BUILD_DIR:-$ROOT/build}
JOBS=${PARALLAX_JOBS:-$(nproc)}
PACKAGES=(build-essential cmake ninja-build ccache git python3 python3-venv
  librange-v3-dev doctest-dev libopencv-dev libjpeg-dev libcli11-dev nlohmann-json3-dev
  libcpp-httplib-dev libgloo-dev openmpi-bin gnuplot-nox)

# For the browser test of `asl_resnet serve` only: installed when possible; where they cannot be,
# that test reports itself skipped.
BROWSER_PACKAGES=(chromium chromium-driver)
SELENIUM_VERSION=4.27.1

log() { echo "[bootstrap] $*" >&2; }

install_packages() {
  local missing=()
  for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || { log "missing packages (${missing[*]}) and no apt-get"; exit 1; }
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

install_browser_tools() {
  local missing=()
  for package in "${BROWSER_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    log "installing ${missing[*]} for the browser test"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        --no-install-recommends "${missing[@]}"; } >&2 ||
      log "could not install ${missing[*]}: the browser test will be skipped"
  fi
  "$VENV/bin/python" -c "import selenium" 2>/dev/null ||
    "$VENV/bin/python" -m pip install -q "selenium==$SELENIUM_VERSION" >&2 ||
    log "could not install selenium: the browser test will be skipped"
}

venv_ok() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$TORCH_VERSION" "$TORCHVISION_VERSION" 2>/dev/null <<'PY'
import sys, torch, torchvision
ok = torch.__version__.split("+")[0] == sys.argv[1] and torchvision.__version__.split("+")[0] == sys.argv[2]
sys.exit(0 if ok else 1)
PY
}

install_venv() {
  venv_ok && return 0
  log "creating $VENV with torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION (several GB, once per machine)"
  mkdir -p "$(dirname "$VENV")"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" >&2
  venv_ok || { log "torch $TORCH_VERSION did not install into $VENV"; exit 1; }
}

if [ "${1:-}" = "--print-python" ]; then
  install_venv
  echo "$VENV/bin/python"
  exit 0
fi

install_packages
install_venv
install_browser_tools
TORCH_PREFIX=$("$VENV/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
GENERATOR=()
# A fresh build tree uses Ninja when present; an existing one keeps the generator it was made with.
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] && command -v ninja >/dev/null; then GENERATOR=(-G Ninja); fi
log "configuring $BUILD_DIR"
# shellcheck disable=SC2086
cmake -S "$ROOT" -B "$BUILD_DIR" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DPARALLAX_PYTHON="$VENV/bin/python" \
  ${PARALLAX_CMAKE_ARGS:-} >&2
log "building with $JOBS jobs"
cmake --build "$BUILD_DIR" -j "$JOBS" >&2
log "done: executables in $BUILD_DIR/bin"
