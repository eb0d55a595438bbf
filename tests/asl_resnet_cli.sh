#!/usr/bin/env bash
# asl_resnet end to end on a tiny synthetic set: synth -> prepare -> train with single, dp:2 and
# ddp:gloo --nproc 2; metrics.json holds the contract's fields; bad input exits 2 naming it.
set -euo pipefail
BIN=$1
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
"$BIN" synth --out "$DIR/data" --per-class 4 --seed 1
test -f "$DIR/data/asl_alphabet_train/asl_alphabet_train/del/del4.jpg"
test -f "$DIR/data/asl_alphabet_test/asl_alphabet_test/space_test.jpg"
"$BIN" prepare --data "$DIR/data" --out "$DIR/pack.pxpack" --image-size 32 | grep -q "packed 116 images (0 skipped) of 29 classes"
check() {  # check OUT POLICY WORLD
  python3 - "$1/metrics.json" "$2" "$3" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for key in ("val_accuracy", "train_images_per_second", "wall_seconds", "epochs", "policy", "world_size"):
    assert key in m, key
assert m["policy"] == sys.argv[2] and m["world_size"] == int(sys.argv[3]), (m["policy"], m["world_size"])
assert 0 <= m["val_accuracy"] <= 1 and m["train_images_per_second"] > 0
for e in m["epochs"]:
    assert set(("epoch", "train_loss", "val_loss", "val_accuracy", "seconds")) <= set(e), e
PY
  test "$(wc -l < "$1/classes.txt")" = 29
}
common=(--epochs 1 --image-size 32 --batch-size 16 --workers 1)
"$BIN" train --data "$DIR/pack.pxpack" --policy single "${common[@]}" --out "$DIR/single" > /dev/null
check "$DIR/single" single 1
"$BIN" train --data "$DIR/data" --policy dp:2 "${common[@]}" --out "$DIR/dp2" > /dev/null
check "$DIR/dp2" dp:2 2
"$BIN" train --data "$DIR/pack.pxpack" --policy ddp:gloo --nproc 2 "${common[@]}" --out "$DIR/ddp" > /dev/null
check "$DIR/ddp" ddp:gloo 2
set +e
"$BIN" train --data "$DIR/pack.pxpack" --image-size 64 --out "$DIR/bad" 2> "$DIR/err"; code=$?
set -e
test $code = 2 && grep -q "holds 32 px images but --image-size is 64" "$DIR/err"
set +e
"$BIN" train --arch resnet99 --data "$DIR/pack.pxpack" --out "$DIR/bad" 2> "$DIR/err"; code=$?
set -e
test $code = 2 && grep -q "arch must be resnet18, resnet34 or resnet50" "$DIR/err"
echo "asl_resnet cli: ok"
