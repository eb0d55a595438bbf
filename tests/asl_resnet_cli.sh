#!/usr/bin/env bash
# asl_resnet end to end on a tiny synthetic set: synth (deterministic) -> prepare -> train with
# single, dp:2 and ddp:gloo --nproc 2 (also under SLURM's variables) -> eval -> predict; model.pt loads into torchvision;
# --pretrained with a torchvision state dict and --freeze-backbone; --amp (bf16, fp16 with loss
# scaling), --channels-last and --augment train. Usage: asl_resnet_cli.sh ASL_RESNET PYTHON
set -euo pipefail
BIN=$1
PY=$2
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
"$BIN" synth --out "$DIR/data" --per-class 4 --seed 1 > /dev/null
test -f "$DIR/data/asl_alphabet_train/asl_alphabet_train/del/del4.jpg"
test -f "$DIR/data/asl_alphabet_test/asl_alphabet_test/space_test.jpg"
# Deterministic for a seed, different for another.
"$BIN" synth --out "$DIR/again" --per-class 4 --seed 1 > /dev/null
diff -r "$DIR/data" "$DIR/again" > /dev/null
"$BIN" synth --out "$DIR/other" --per-class 4 --seed 2 > /dev/null
if cmp -s "$DIR/data/asl_alphabet_train/asl_alphabet_train/A/A1.jpg" "$DIR/other/asl_alphabet_train/asl_alphabet_train/A/A1.jpg"; then
  echo "FAILED: seeds 1 and 2 drew the same image"; exit 1   # (`! cmp` would not stop set -e)
fi
"$BIN" prepare --data "$DIR/data" --out "$DIR/pack.pxpack" --image-size 32 2> "$DIR/prepare.err" | grep -q "packed 116 images (0 skipped) of 29 classes"
grep -q "prepare \[####################\] 116/116" "$DIR/prepare.err"

check() {  # check OUT POLICY WORLD
  "$PY" - "$1/metrics.json" "$2" "$3" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for key in ("val_accuracy", "train_images_per_second", "wall_seconds", "epochs", "policy", "world_size", "arch", "image_size"):
    assert key in m, key
assert m["policy"] == sys.argv[2] and m["world_size"] == int(sys.argv[3]), (m["policy"], m["world_size"])
assert 0 <= m["val_accuracy"] <= 1 and m["train_images_per_second"] > 0
for e in m["epochs"]:
    assert set(("epoch", "train_loss", "val_loss", "val_accuracy", "seconds")) <= set(e), e
PY
  test "$(wc -l < "$1/classes.txt")" = 29
  test -f "$1/model.pt" && test -f "$1/checkpoint.pt" && test -f "$1/metrics.csv"
}
common=(--epochs 1 --image-size 32 --batch-size 16 --workers 1)
"$BIN" train --data "$DIR/pack.pxpack" --policy single "${common[@]}" --out "$DIR/single" > /dev/null
check "$DIR/single" single 1
"$BIN" train --data "$DIR/data" --policy dp:2 "${common[@]}" --out "$DIR/dp2" > /dev/null
check "$DIR/dp2" dp:2 2
"$BIN" train --data "$DIR/pack.pxpack" --policy ddp:gloo --nproc 2 "${common[@]}" --out "$DIR/ddp" > /dev/null
check "$DIR/ddp" ddp:gloo 2
# Started by srun (a step of two tasks in a batch job of four), `train --nproc 2` joins that
# job instead of launching one of its own: one job of two ranks, where only rank 0 reports.
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
slurm=(env ENVIRONMENT=BATCH SLURM_NTASKS=4 SLURM_STEP_NUM_TASKS=2 MASTER_ADDR=127.0.0.1 MASTER_PORT="$port" timeout 120 "$BIN" train
       --data "$DIR/pack.pxpack" --policy ddp:gloo --nproc 2 "${common[@]}" --out "$DIR/slurm")
SLURM_PROCID=1 SLURM_LOCALID=1 "${slurm[@]}" > "$DIR/slurm1.log" 2>&1 &
rank1=$!
SLURM_PROCID=0 SLURM_LOCALID=0 "${slurm[@]}" > "$DIR/slurm0.log" 2>&1
wait $rank1
check "$DIR/slurm" ddp:gloo 2
grep -q "val accuracy" "$DIR/slurm0.log"
if grep -q "val accuracy" "$DIR/slurm1.log"; then echo "FAILED: SLURM rank 1 reported"; exit 1; fi
# A batch script's own shell sees SLURM's job variables but no srun step: --nproc 2 launches.
ENVIRONMENT=BATCH SLURM_PROCID=0 SLURM_NTASKS=2 timeout 120 "$BIN" train --data "$DIR/pack.pxpack" --policy ddp:gloo \
  --nproc 2 "${common[@]}" --out "$DIR/batch" > /dev/null
check "$DIR/batch" ddp:gloo 2
"$BIN" train --data "$DIR/pack.pxpack" --amp --channels-last --augment --schedule cosine --arch resnet50 "${common[@]}" --out "$DIR/amp" > /dev/null
check "$DIR/amp" single 1
"$BIN" train --data "$DIR/pack.pxpack" --amp --amp-dtype fp16 --cudnn-benchmark "${common[@]}" --out "$DIR/fp16" > /dev/null
check "$DIR/fp16" single 1
grep -q '"amp": "fp16"' "$DIR/fp16/metrics.json"

# The other architectures train too, and keep torchvision's parameter names (checked below).
"$BIN" train --data "$DIR/data" --arch alexnet --image-size 64 --samples 32 --batch-size 16 --epochs 1 --workers 1 --out "$DIR/alexnet" > /dev/null 2>&1
"$BIN" train --data "$DIR/pack.pxpack" --arch vgg11 --samples 20 "${common[@]}" --out "$DIR/vgg11" > /dev/null
check "$DIR/alexnet" single 1
check "$DIR/vgg11" single 1

# A model that learns the tiny set: eval and predict must agree with it.
"$BIN" train --data "$DIR/pack.pxpack" --arch linear --epochs 30 --image-size 32 --val-split 0 --lr 3e-3 --out "$DIR/linear" > /dev/null
"$BIN" eval --model "$DIR/linear" --data "$DIR/data/asl_alphabet_train/asl_alphabet_train" --json "$DIR/eval.json" > "$DIR/eval.txt"
grep -q "^confusion matrix" "$DIR/eval.txt"
grep -Eq "^accuracy [0-9.]+% \([0-9]+ of 116 images, 0 skipped\)" "$DIR/eval.txt"
"$BIN" eval --model "$DIR/linear" --data "$DIR/data" > "$DIR/eval-test.txt"   # the 29 <class>_test.jpg files
grep -q "of 29 images, 0 skipped" "$DIR/eval-test.txt"
"$PY" - "$DIR/eval.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["images"] == 116, r["images"]
assert r["accuracy"] >= 0.9, r["accuracy"]   # it saw these images 30 times
assert len(r["confusion"]) == 29 and sum(map(sum, r["confusion"])) == 116
assert abs(sum(r["confusion"][i][i] for i in range(29)) / 116 - r["accuracy"]) < 1e-9
assert r["per_class"]["del"]["images"] == 4
PY
"$BIN" predict --model "$DIR/linear" --top 3 "$DIR/data/asl_alphabet_train/asl_alphabet_train/B/B2.jpg" > "$DIR/predict.txt"
grep -Eq "B2.jpg: [A-Za-z]+ [01]\.[0-9]{3} [A-Za-z]+ [01]\.[0-9]{3} [A-Za-z]+ [01]\.[0-9]{3}$" "$DIR/predict.txt"
"$BIN" predict --model "$DIR/linear" --json "$DIR/data/asl_alphabet_train/asl_alphabet_train/B/B2.jpg" > "$DIR/predict.json"
"$PY" - "$DIR/predict.json" "$DIR/eval.json" <<'PY'
import json, sys
top = json.load(open(sys.argv[1]))[0]["top"]
assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]
assert 0 < sum(t["probability"] for t in top) <= 1.0001
confusion = json.load(open(sys.argv[2]))["confusion"]
classes = json.load(open(sys.argv[2]))["classes"]
# eval's confusion row for B agrees with predict on B2 when the whole class is right
if confusion[1][1] == 4:
    assert top[0]["label"] == "B", top
PY

# model.pt is a plain state dict that torchvision loads strictly; --pretrained reads a
# torchvision state dict, replaces the 1000-class fc, and --freeze-backbone keeps the rest.
"$PY" - "$DIR" <<'PY'
import sys, torch, torchvision
d = sys.argv[1]
m = torchvision.models.resnet18(num_classes=29)
m.load_state_dict(torch.load(f"{d}/single/model.pt"), strict=True)
for arch in ("alexnet", "vgg11"):
    getattr(torchvision.models, arch)(num_classes=29).load_state_dict(
        torch.load(f"{d}/{arch}/model.pt"), strict=True)
torch.manual_seed(0)
imagenet = torchvision.models.resnet18(num_classes=1000)
torch.save(dict(imagenet.state_dict()), f"{d}/imagenet.pt")
PY
"$BIN" train --data "$DIR/pack.pxpack" --pretrained "$DIR/imagenet.pt" --freeze-backbone "${common[@]}" --out "$DIR/transfer" > /dev/null 2> "$DIR/transfer.err"
grep -q "skipping fc.weight: \[1000, 512\] in the file, \[29, 512\] here (a new fc is trained)" "$DIR/transfer.err"
"$PY" - "$DIR" <<'PY'
import sys, torch
d = sys.argv[1]
before, after = torch.load(f"{d}/imagenet.pt"), torch.load(f"{d}/transfer/model.pt")
for name in ("conv1.weight", "layer4.1.conv2.weight", "layer2.0.downsample.0.weight", "bn1.weight"):
    assert torch.equal(before[name], after[name]), name     # frozen backbone: untouched
assert after["fc.weight"].shape == (29, 512)
PY
echo "asl_resnet cli: ok"
