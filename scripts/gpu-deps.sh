#!/usr/bin/env bash
# Prepares, on this (CPU) machine, what scripts/gpu-check.sh needs on a CUDA machine that has
# python3 + torch but no apt, no internet and no OpenCV C++:
#   deps/include  header-only dependencies copied from this machine's Debian packages: range-v3
#                 (range, meta, concepts, std), doctest, CLI11, nlohmann-json, and gloo's headers
#                 (only headers: LibTorch's ProcessGroupGloo.hpp includes them). cpp-httplib is
#                 not copied: Debian's is a header plus a library, and `serve` needs OpenCV too.
#   deps/data     a small synthetic set: the JPEG folder (Kaggle layout) and its 64 px pack,
#                 together under 40 MB, so that both pipelines train on the same images.
# Usage: scripts/gpu-deps.sh [DEPS_DIR]   (after scripts/bootstrap.sh has built build/)
# Then: the device's `carry` of "deps", and `bash scripts/gpu-check.sh` there.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPS=${1:-$ROOT/deps}
BIN=${PARALLAX_BUILD_DIR:-$ROOT/build}/bin
PER_CLASS=${PARALLAX_GPU_PER_CLASS:-50}
[ -x "$BIN/asl_resnet" ] || { echo "gpu-deps: $BIN/asl_resnet is missing: run scripts/bootstrap.sh first" >&2; exit 2; }
for dir in range meta concepts std doctest CLI nlohmann gloo; do
  [ -d "/usr/include/$dir" ] || { echo "gpu-deps: /usr/include/$dir is missing: run scripts/bootstrap.sh first" >&2; exit 2; }
done

# Built beside the target and renamed at the end: an interrupted run leaves no half-made folder.
WORK="$DEPS.tmp.$$"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/include" "$WORK/data"
for dir in range meta concepts std doctest CLI nlohmann gloo; do cp -r "/usr/include/$dir" "$WORK/include/"; done
"$BIN/asl_resnet" synth --out "$WORK/data/asl" --per-class "$PER_CLASS" --seed 0 > /dev/null
start=$(date +%s%N)
"$BIN/asl_resnet" prepare --data "$WORK/data/asl" --out "$WORK/data/asl.pxpack" --image-size 64 2> /dev/null
milliseconds=$(( ($(date +%s%N) - start) / 1000000 ))
printf 'prepare_ms %s\ncores %s\ncpu %s\n' "$milliseconds" "$(nproc)" \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" > "$WORK/data/prepare.txt"
rm -rf "$DEPS"
mv "$WORK" "$DEPS"
trap - EXIT
echo "gpu-deps: $(du -sh "$DEPS/include" | cut -f1) of headers, $(du -sh "$DEPS/data" | cut -f1) of data in $DEPS"
