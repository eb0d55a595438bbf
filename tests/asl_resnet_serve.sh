#!/usr/bin/env bash
# Trains a small model on a tiny synthetic set, then runs the serve test MODE against it:
# http (serve_http.py) or browser (serve_browser.py; exit 77 = skipped, reason printed).
# Usage: asl_resnet_serve.sh ASL_RESNET PYTHON http|browser [SCREENSHOT.png]
set -euo pipefail
BIN=$1
PY=$2
MODE=$3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
"$BIN" synth --out "$DIR/data" --per-class 4 --seed 5 > /dev/null
"$BIN" prepare --data "$DIR/data" --out "$DIR/pack.pxpack" --image-size 32 > /dev/null 2>&1
"$BIN" train --data "$DIR/pack.pxpack" --arch linear --epochs 30 --image-size 32 --val-split 0 \
  --lr 3e-3 --out "$DIR/model" > /dev/null 2>&1
IMAGES="$DIR/data/asl_alphabet_train/asl_alphabet_train"
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
case $MODE in
  http) exec "$PY" "$HERE/serve_http.py" "$BIN" "$DIR/model" "$IMAGES" ;;
  browser) "$PY" "$HERE/serve_browser.py" "$BIN" "$DIR/model" "$IMAGES/L/L2.jpg" ${4:+"$4"} ;;
  *) echo "unknown mode $MODE"; exit 2 ;;
esac
