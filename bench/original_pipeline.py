"""The original project's training pipeline end to end (Kaggle ASL Alphabet notebook).

    python original_pipeline.py --data FOLDER [--samples 10000] [--epochs 5] [--workers 4] ...

ImageFolder(Resize, ToTensor, ImageNet Normalize) -> random subset of --samples -> 80/20
random_split -> DataLoader(shuffle=True for train) -> torchvision resnet (weights=None, fc
replaced), nn.DataParallel on CUDA, Adam 1e-3, CrossEntropyLoss; val accuracy after each
epoch. --data is a folder of class sub-folders or a Kaggle root holding
asl_alphabet_train/asl_alphabet_train/<class>/. Progress goes to stderr; the last stdout
line is one JSON object. Bad input exits 2 with a one-line message on stderr.
"""
import json
import os
import time

import torch
import torchvision
from torch import nn
from torchvision import transforms

from bench_cli import Parser, fail, log

p = Parser(description=__doc__.split("\n\n")[0])
p.add_argument("--data", required=True,
               help="class sub-folders, or a Kaggle root with asl_alphabet_train/asl_alphabet_train/")
p.add_argument("--samples", type=int, default=10000,
               help="random subset size, capped at the data set size (default 10000)")
p.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
p.add_argument("--arch", choices=("resnet50", "resnet18"), default="resnet50",
               help="torchvision.models architecture, weights=None (default resnet50)")
p.add_argument("--image-size", type=int, default=64, help="Resize((S, S)) side (default 64)")
p.add_argument("--batch-size", type=int, default=32, help="DataLoader batch size (default 32)")
p.add_argument("--workers", type=int, default=4, help="DataLoader num_workers (default 4)")
p.add_argument("--target-accuracy", type=float, default=0.9,
               help="val accuracy for seconds_to_target (default 0.9)")
p.add_argument("--max-seconds", type=float, default=None,
               help="budget: stop after the epoch during which it is exceeded (default none)")
p.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
p.add_argument("--seed", type=int, default=0, help="seed for subset/split and torch (default 0)")
args = p.parse_args()

root = args.data
if not os.path.isdir(root):
    fail(f"--data {root!r} is not a folder")
for kaggle in ("asl_alphabet_train/asl_alphabet_train", "asl_alphabet_train"):  # Kaggle layout
    if os.path.isdir(os.path.join(args.data, kaggle)):
        root = os.path.join(args.data, kaggle)
        break
for name in ("samples", "epochs", "image_size", "batch_size"):
    if getattr(args, name) < 1:
        fail(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
if args.workers < 0:
    fail(f"--workers must be at least 0, got {args.workers}")
try:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
except RuntimeError as e:
    fail(f"bad --device {args.device!r}: {e}")
if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
    fail(f"--device {device} asked for, but this machine has {torch.cuda.device_count()} CUDA devices")
cuda = device.type == "cuda"
torch.manual_seed(args.seed)


def clock():  # wall time, after the device has finished its queued work
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter()


# Timing covers ImageFolder's scan, the subset/split, DataLoader creation, training and
# evaluation. Imports and model construction (incl. the move to the device) are excluded;
# the model needs the class count, so only the class folders are listed before the clock.
try:
    classes, _ = torchvision.datasets.folder.find_classes(root)
except (FileNotFoundError, OSError) as e:
    fail(f"--data {args.data!r}: no class sub-folders found ({e})")
model = getattr(torchvision.models, args.arch)(weights=None)
model.fc = nn.Linear(model.fc.in_features, len(classes))  # 2048 for resnet50
model = model.to(device)
if cuda:
    model = nn.DataParallel(model, device_ids=None if device.index is None else [device.index])
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

start = clock()
transform = transforms.Compose([transforms.Resize((args.image_size, args.image_size)), transforms.ToTensor(),
                                transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
try:
    dataset = torchvision.datasets.ImageFolder(root, transform=transform)
except (FileNotFoundError, OSError) as e:
    fail(f"--data {args.data!r}: {str(e).splitlines()[0]}")
n = min(args.samples, len(dataset))
if n < 2:
    fail(f"--data {args.data!r}: need at least 2 images, found {len(dataset)}")
generator = torch.Generator().manual_seed(args.seed)
subset = torch.utils.data.Subset(dataset, torch.randperm(len(dataset), generator=generator)[:n].tolist())
n_train = int(0.8 * n)
train_set, val_set = torch.utils.data.random_split(subset, [n_train, n - n_train], generator=generator)
train_loader, val_loader = (torch.utils.data.DataLoader(part, batch_size=args.batch_size, shuffle=train,
                                                         num_workers=args.workers)
                             for part, train in ((train_set, True), (val_set, False)))
log(f"{args.arch} on {device}: {len(classes)} classes, {n_train} train / {n - n_train} val "
    f"of {len(dataset)} images in {root}")

epochs, seconds_to_target = [], None
for epoch in range(1, args.epochs + 1):
    model.train()
    epoch_start, loss_sum, seen = clock(), 0.0, 0
    for images, labels in train_loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * labels.size(0)
        seen += labels.size(0)
    train_seconds = clock() - epoch_start
    model.eval()
    correct = total = 0
    with torch.no_grad():  # val accuracy, as the notebook did after each epoch
        for images, labels in val_loader:
            images, labels = images.to(device), labels.to(device)
            correct += (model(images).argmax(1) == labels).sum().item()
            total += labels.size(0)
    seconds_total = clock() - start
    accuracy = correct / max(total, 1)
    epochs.append({"epoch": epoch, "seconds_total": round(seconds_total, 3),
                   "train_loss": round(loss_sum / max(seen, 1), 5), "val_accuracy": round(accuracy, 5),
                   "images_per_second": round(seen / train_seconds, 3)})  # train phase only
    log(f"epoch {epoch}: loss {epochs[-1]['train_loss']:.4f}, val acc {accuracy:.4f}, "
        f"{seconds_total:.1f}s total, {seen / train_seconds:.1f} train images/s")
    if seconds_to_target is None and total and accuracy >= args.target_accuracy:
        seconds_to_target = round(seconds_total, 3)
    if args.max_seconds is not None and seconds_total > args.max_seconds and epoch < args.epochs:
        log(f"stopping: {seconds_total:.1f}s exceeds --max-seconds {args.max_seconds}")
        break

print(json.dumps({"impl": "original-pipeline", "arch": args.arch, "device": str(device), "samples": n,
                  "batch_size": args.batch_size, "image_size": args.image_size, "workers": args.workers,
                  "target_accuracy": args.target_accuracy, "epochs": epochs, "seconds_to_target":
                  seconds_to_target, "final_val_accuracy": epochs[-1]["val_accuracy"]}))
