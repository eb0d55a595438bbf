#!/usr/bin/env bash
# Reproduces the CPU figures in docs/benchmarks.md (after scripts/bootstrap.sh has built build/).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${PARALLAX_BUILD_DIR:-$ROOT/build}/bin
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
"$BIN/bench_policies" --repeats 9 --samples 8192 --batch 64
if [ -x "$BIN/bench_distributed" ]; then
  "$BIN/bench_distributed" single-vs-world1 --repeats 15
  "$BIN/parallax-run" --nproc 2 "$BIN/bench_distributed" buckets --repeats 9
fi
# C++ vs Python PyTorch on the CPU: training step, JPEG loading, packed cache (needs the default
# synthetic set: any asl_resnet command without --data draws it).
DATA=${PARALLAX_BUILD_DIR:-$ROOT/build}/asl-data
if [ -x "$BIN/bench_cpu" ] && [ -d "$DATA/asl_alphabet_train" ]; then
  [ -f "$DATA.pxpack" ] || "$BIN/asl_resnet" prepare --data "$DATA" --out "$DATA.pxpack" > /dev/null
  "$("$ROOT/scripts/bootstrap.sh" --print-python)" "$ROOT/bench/compare_cpu.py" "$BIN/bench_cpu" \
    "$DATA/asl_alphabet_train/asl_alphabet_train" "$DATA.pxpack" --repeats 3
else
  echo "cpu comparison: skipped (run scripts/demo.sh first for the synthetic set)"
fi
# asl_resnet serve under load (needs a trained model: the demo's resnet18, or train one).
MODEL=${PARALLAX_SERVE_MODEL:-$(ls -d "${PARALLAX_BUILD_DIR:-$ROOT/build}"/study/runs/resnet18_single_x1_b32_e*_s0 2>/dev/null | head -1)}
if [ -x "$BIN/asl_resnet" ] && [ -n "$MODEL" ]; then
  "$("$ROOT/scripts/bootstrap.sh" --print-python)" "$ROOT/bench/serve_load.py" "$BIN/asl_resnet" "$MODEL" \
    "${PARALLAX_BUILD_DIR:-$ROOT/build}/asl-data/asl_alphabet_test/asl_alphabet_test/A_test.jpg"
else
  echo "serve load: skipped (run scripts/demo.sh first for a model)"
fi
