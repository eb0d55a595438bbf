#!/usr/bin/env bash
# asl_resnet built without OpenCV (what a CUDA machine without OpenCV C++ gets): trains and
# studies a pack made by the full build; refuses image folders and the image commands with
# exit code 2 and one line. Usage: asl_resnet_packed_only.sh ASL_RESNET ASL_RESNET_PACKED_ONLY
set -euo pipefail
FULL=$1
BIN=$2
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
"$FULL" synth --out "$DIR/data" --per-class 3 --seed 5 > /dev/null
"$FULL" prepare --data "$DIR/data" --out "$DIR/pack.pxpack" --image-size 32 > /dev/null 2>&1

"$BIN" train --data "$DIR/pack.pxpack" --epochs 1 --image-size 32 --batch-size 16 --workers 1 --out "$DIR/model" > /dev/null
grep -q '"val_accuracy"' "$DIR/model/metrics.json"
test -f "$DIR/model/model.pt"
"$BIN" study --data "$DIR/pack.pxpack" --out "$DIR/study" --max-devices 1 --scaling strong --policies single \
  --archs "" --image-size 32 --samples 40 > /dev/null 2>&1
test -f "$DIR/study/study.csv"

source "$(dirname "${BASH_SOURCE[0]}")/refuse.sh"
refuse "asl_resnet was built without OpenCV: --data '$DIR/data' must be a .pxpack file" \
  train --data "$DIR/data" --out "$DIR/out"
refuse "--data '$DIR/nothing.pxpack' does not exist" train --data "$DIR/nothing.pxpack" --out "$DIR/out"
refuse "give --data FILE.pxpack" train --out "$DIR/out"
refuse "asl_resnet was built without OpenCV" study --data "$DIR/data" --out "$DIR/out"
for command in synth prepare eval predict serve; do
  refuse "built without OpenCV: '$command' needs it" "$command" --out "$DIR/out"
done
echo "asl_resnet packed only: ok"
