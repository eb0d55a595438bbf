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
# asl_resnet serve under load (needs a trained model: the demo's resnet18, or train one).
MODEL=${PARALLAX_SERVE_MODEL:-$(ls -d "${PARALLAX_BUILD_DIR:-$ROOT/build}"/study/runs/resnet18_single_x1_b32_e*_s0 2>/dev/null | head -1)}
if [ -x "$BIN/asl_resnet" ] && [ -n "$MODEL" ]; then
  "$("$ROOT/scripts/bootstrap.sh" --print-python)" "$ROOT/bench/serve_load.py" "$BIN/asl_resnet" "$MODEL" \
    "${PARALLAX_BUILD_DIR:-$ROOT/build}/asl-data/asl_alphabet_test/asl_alphabet_test/A_test.jpg"
else
  echo "serve load: skipped (run scripts/demo.sh first for a model)"
fi
