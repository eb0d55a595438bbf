#!/usr/bin/env bash
# Bootstrap, then the flagship: asl_resnet's timing study on the synthetic ASL set (drawn on
# first use): strong and weak scaling of single / dp / ddp over the devices present (CPU
# replicas and processes on a machine without GPUs), and a per-architecture comparison.
# About 5 minutes on 2 CPU cores. Extra arguments go to `asl_resnet study`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/bootstrap.sh"
BIN=${PARALLAX_BUILD_DIR:-$ROOT/build}/bin
OUT=${PARALLAX_DEMO_OUT:-${PARALLAX_BUILD_DIR:-$ROOT/build}/study}
"$BIN/asl_resnet" study --out "$OUT" "$@"
echo
echo "tables: $OUT/study.md (also study.csv, study.json); charts: $OUT/scaling_time.png $OUT/scaling_efficiency.png $OUT/models.png"
echo "each run's model directory: $OUT/runs/ (try: $BIN/asl_resnet eval --model $OUT/runs/<run>)"
