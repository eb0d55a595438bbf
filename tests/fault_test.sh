#!/usr/bin/env bash
# fault_test.sh WORLD VICTIM STEP kill|stop LIMIT_S PROGRAM: starts WORLD ranks of PROGRAM on
# 127.0.0.1; rank VICTIM kills itself (or freezes) after STEP steps. Passes when every other rank
# exits non-zero within LIMIT_S seconds. All ranks are killed at the end, whatever happens.
set -u
WORLD=$1 VICTIM=$2 STEP=$3 MODE=$4 LIMIT=$5 PROGRAM=$6
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
suffix=""
[ "$MODE" = stop ] && suffix=":stop"
pids=()
for ((rank = 0; rank < WORLD; rank++)); do
  RANK=$rank WORLD_SIZE=$WORLD LOCAL_RANK=$rank MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT \
    DIST_WORKER_DIE="$VICTIM:$STEP$suffix" DIST_WORKER_TIMEOUT_S=5 "$PROGRAM" &
  pids+=($!)
done
cleanup() { for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done; }
trap cleanup EXIT
start=$(date +%s)
status=0
for ((rank = 0; rank < WORLD; rank++)); do
  [ "$rank" = "$VICTIM" ] && continue
  pid=${pids[$rank]}
  while kill -0 "$pid" 2>/dev/null; do
    if (( $(date +%s) - start > LIMIT )); then
      echo "FAIL: rank $rank still running after ${LIMIT}s"; exit 1
    fi
    sleep 0.1
  done
  wait "$pid"; code=$?
  echo "rank $rank exited with code $code after $(( $(date +%s) - start ))s"
  [ "$code" -ne 0 ] || { echo "FAIL: rank $rank exited 0"; status=1; }
done
exit $status
