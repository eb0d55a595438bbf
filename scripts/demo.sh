#!/usr/bin/env bash
# Bootstrap, then the main job: a small training run that prints its progress and metrics.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/bootstrap.sh"
BIN=${PARALLAX_BUILD_DIR:-$ROOT/build}/bin
OUT=${PARALLAX_DEMO_OUT:-$ROOT/build/demo}
echo "== single =="
"$BIN/quickstart" --policy single --epochs 4 --out "$OUT/single"
echo "== dp:2 (two replicas in one process) =="
"$BIN/quickstart" --policy dp:2 --epochs 4 --out "$OUT/dp2"
echo "metrics: $OUT/single/metrics.json $OUT/dp2/metrics.json"
