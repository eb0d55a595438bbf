#!/usr/bin/env bash
# Bootstrap (packages, venv, build), then the whole test suite. Non-zero on any failure.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/bootstrap.sh"
cd "${PARALLAX_BUILD_DIR:-$ROOT/build}"
ctest --output-on-failure -j "${PARALLAX_TEST_JOBS:-2}" --timeout 900 "$@"
