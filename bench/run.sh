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
