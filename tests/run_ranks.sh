#!/usr/bin/env bash
# run_ranks.sh N PROGRAM [ARGS...]: starts N ranks of PROGRAM on 127.0.0.1 with torchrun's
# environment and a free port; exits non-zero if any rank fails; kills all ranks after 120 s.
set -u
N=$1; shift
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
for ((rank = 0; rank < N; rank++)); do
  RANK=$rank WORLD_SIZE=$N LOCAL_RANK=$rank MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT \
    timeout 120 "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
