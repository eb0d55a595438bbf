#!/usr/bin/env bash
# asl_resnet refuses bad input with exit code 2 and one line naming the problem, and leaves no
# output directory behind. Unreadable images are skipped by name, or refused with --strict.
# Usage: asl_resnet_bad_input.sh ASL_RESNET PYTHON
set -euo pipefail
BIN=$1
PY=$2
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
"$BIN" synth --out "$DIR/data" --per-class 3 --seed 4 > /dev/null
TRAIN="$DIR/data/asl_alphabet_train/asl_alphabet_train"
"$BIN" prepare --data "$DIR/data" --out "$DIR/pack.pxpack" --image-size 32 > /dev/null 2>&1

source "$(dirname "${BASH_SOURCE[0]}")/refuse.sh"
small=(--epochs 1 --image-size 32 --batch-size 16 --workers 1 --out "$DIR/out")
refuse "image folder '$DIR/missing' does not exist" train --data "$DIR/missing" "${small[@]}"
mkdir -p "$DIR/flat" && cp "$TRAIN/A/A1.jpg" "$DIR/flat/"
refuse "image folder '$DIR/flat' has no class sub-folders" train --data "$DIR/flat" "${small[@]}"
mkdir -p "$DIR/withempty/A" "$DIR/withempty/B" && cp "$TRAIN/A/A1.jpg" "$DIR/withempty/A/"
refuse "class folder '$DIR/withempty/B' has no images" train --data "$DIR/withempty" "${small[@]}"
refuse "unknown --arch 'resnet99'" train --arch resnet99 --data "$DIR/pack.pxpack" "${small[@]}"
refuse "--image-size: Value 0 not in range" train --image-size 0 --data "$DIR/pack.pxpack" --out "$DIR/out"
refuse "--image-size 16 is too small for alexnet" train --arch alexnet --data "$DIR/pack.pxpack" --image-size 16 --out "$DIR/out"
refuse "holds 32 px images but --image-size is 64" train --data "$DIR/pack.pxpack" --image-size 64 --out "$DIR/out"
refuse "unknown --policy 'dpp:2'" train --policy dpp:2 --data "$DIR/pack.pxpack" "${small[@]}"
refuse "--samples 1000 is more than the 87 images in '$DIR/pack.pxpack'" train --samples 1000 --data "$DIR/pack.pxpack" "${small[@]}"
echo "not a state dict" > "$DIR/text.pt"
refuse "'$DIR/text.pt' is not a state dict" train --pretrained "$DIR/text.pt" --data "$DIR/pack.pxpack" "${small[@]}"
"$PY" -c "import torch, sys; torch.save([torch.zeros(2)], sys.argv[1])" "$DIR/list.pt"
refuse "'$DIR/list.pt' is not a state dict" train --pretrained "$DIR/list.pt" --data "$DIR/pack.pxpack" "${small[@]}"
"$PY" -c "import torch, sys; torch.save({'conv1.weight': torch.zeros(1)}, sys.argv[1])" "$DIR/wrong.pt"
refuse "'$DIR/wrong.pt' has conv1.weight of shape [1], this model [64, 3, 7, 7]" train --pretrained "$DIR/wrong.pt" --data "$DIR/pack.pxpack" "${small[@]}"
refuse "model directory '$DIR/nomodel' does not exist" eval --model "$DIR/nomodel"
refuse "unknown --policies entry 'dpp'" study --policies single,dpp --out "$DIR/out"
refuse "batch size 2 is smaller than the 3 replicas of policy" train --policy dp:3 --batch-size 2 --data "$DIR/pack.pxpack" --epochs 1 --image-size 32 --out "$DIR/out"
# With --nproc, bad data is refused once, by the launching process, not by every rank.
refuse "image folder '$DIR/missing' does not exist" train --policy ddp:gloo --nproc 2 --data "$DIR/missing" "${small[@]}"
test "$(wc -l < "$DIR/err")" = 1
refuse "--samples 1000 is more than the 87 images" train --policy ddp:gloo --nproc 2 --samples 1000 --data "$DIR/pack.pxpack" "${small[@]}"
test "$(wc -l < "$DIR/err")" = 1
refuse "--val-split 0.2 of 4 images leaves no validation image" train --samples 4 --data "$DIR/pack.pxpack" "${small[@]}"
refuse "--policy dp:x: dp:N needs a number of replicas" train --policy dp:x --data "$DIR/pack.pxpack" "${small[@]}"
# Outputs that cannot be written are refused before any work, and nothing is made.
touch "$DIR/file"
refuse "--out '$DIR/file' cannot be written: it is a file, not a directory" train --data "$DIR/pack.pxpack" --out "$DIR/file"
refuse "--out '$DIR/file/out' cannot be written: Not a directory" train --data "$DIR/pack.pxpack" --out "$DIR/file/out"
refuse "--out '$DIR/file/out' cannot be written" synth --out "$DIR/file/out"
refuse "--out '$DIR/file/out' cannot be written" study --data "$DIR/pack.pxpack" --image-size 32 --samples 40 --out "$DIR/file/out"
refuse "--out '$DIR/data' cannot be written: it is a directory" prepare --data "$DIR/data" --out "$DIR/data"
refuse "--out '$DIR/file/p.pxpack' cannot be written" prepare --data "$DIR/data" --out "$DIR/file/p.pxpack"
ln -s "$DIR/nowhere/target" "$DIR/dangling"   # the user's link: refused, and left as it was
refuse "--out '$DIR/dangling/sub' cannot be written: File exists" synth --out "$DIR/dangling/sub"
test -L "$DIR/dangling"
refuse "--out '$DIR/newdir/' cannot be written: a file name cannot end in '/'" prepare --data "$DIR/data" --out "$DIR/newdir/"
test ! -e "$DIR/newdir"
# A refusal once training has started removes the folders it made, parents included.
refuse "batch size 2 is smaller than the 3 replicas" train --policy dp:3 --batch-size 2 --data "$DIR/pack.pxpack" --epochs 1 --image-size 32 --out "$DIR/new/parent/out"
test ! -e "$DIR/new"
refuse "--samples 1000 is more than the 87 images" study --data "$DIR/pack.pxpack" --image-size 32 --samples 1000 --out "$DIR/out"
refuse "image folder '$DIR/missing/asl_alphabet_train' does not exist" study --data "$DIR/missing/asl_alphabet_train" --out "$DIR/out"

# Unreadable files: a text file named .jpg and a truncated JPEG are named and skipped, or
# refused with --strict (training, prepare and eval alike).
mkdir -p "$DIR/bad/A" "$DIR/bad/B"
cp "$TRAIN"/A/*.jpg "$DIR/bad/A/" && cp "$TRAIN"/B/*.jpg "$DIR/bad/B/"
echo "not an image" > "$DIR/bad/A/text.jpg"
head -c 2000 "$TRAIN/B/B1.jpg" > "$DIR/bad/B/cut.jpg"
refuse "cannot read $DIR/bad/A/text.jpg: cannot decode image '$DIR/bad/A/text.jpg'" train --strict --data "$DIR/bad" "${small[@]}"
refuse "cannot read $DIR/bad/A/text.jpg" prepare --strict --data "$DIR/bad" --out "$DIR/out"
"$BIN" train --data "$DIR/bad" "${small[@]}" > /dev/null 2> "$DIR/err"
grep -qF "skipped $DIR/bad/A/text.jpg: cannot decode image" "$DIR/err"
grep -qF "skipped $DIR/bad/B/cut.jpg: image '$DIR/bad/B/cut.jpg' is a truncated JPEG" "$DIR/err"
test -f "$DIR/out/metrics.json"
mv "$DIR/out" "$DIR/model"
refuse "cannot read image '$DIR/missing.jpg'" predict --model "$DIR/model" "$DIR/missing.jpg"
refuse "is a truncated JPEG" predict --model "$DIR/model" "$DIR/bad/B/cut.jpg"
refuse "cannot read $DIR/bad/A/text.jpg" eval --strict --model "$DIR/model" --data "$DIR/bad"
refuse "--json '$DIR/file/e.json' cannot be written" eval --model "$DIR/model" --data "$DIR/bad" --json "$DIR/file/e.json"
# A flag error comes before the images are checked (an unreadable one would be refused).
refuse "--policy dp:x: dp:N needs a number of replicas" train --strict --policy dp:x --data "$DIR/bad" "${small[@]}"
rm "$DIR/model/model.pt"
refuse "'$DIR/model/model.pt' is missing" eval --model "$DIR/model" --data "$DIR/bad"
echo "asl_resnet bad input: ok"
