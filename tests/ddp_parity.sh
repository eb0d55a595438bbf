#!/usr/bin/env bash
# ddp_parity.sh PYTHON PARALLAX_RUN DDP_PARITY: PyTorch's DDP (2 ranks under torchrun), then ours
# (2 ranks under parallax-run) from the same weights and data; ddp_parity compares.
set -euo pipefail
PYTHON=$1 RUN=$2 PARITY=$3
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
"$PYTHON" "$HERE/ddp_reference.py" prepare "$DIR"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
timeout 120 "$PYTHON" -m torch.distributed.run --nproc-per-node 2 --master-addr 127.0.0.1 \
  --master-port "$PORT" "$HERE/ddp_reference.py" train "$DIR"
timeout 120 "$RUN" --nproc 2 "$PARITY" "$DIR"
