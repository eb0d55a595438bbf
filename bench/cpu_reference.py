"""The Python side of bench_cpu (bench/cpu.cpp), same work, same output line:

    python cpu_reference.py step [--arch resnet18] [--image-size 64] [--batch 32] [--steps 20]
        torchvision's model, one warm-up epoch then one timed epoch of an eager loop over
        tensors already in memory (Adam 1e-3): "images_per_second X"
    python cpu_reference.py loader --data FOLDER [--image-size 64] [--batch 32] [--workers 2]
                            [--epochs 3]
        torchvision ImageFolder + DataLoader(num_workers, persistent_workers) with Resize,
        ToTensor and ImageNet Normalize, shuffled epochs: "batches_per_second X", the median
        epoch (the workers start once, so later epochs do not pay for their start)
"""
import argparse
import statistics
import time

import torch
import torchvision

parser = argparse.ArgumentParser()
parser.add_argument("mode", choices=("step", "loader"))
parser.add_argument("--arch", default="resnet18")
parser.add_argument("--image-size", type=int, default=64)
parser.add_argument("--batch", type=int, default=32)
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--data")
parser.add_argument("--workers", type=int, default=2)
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()

if args.mode == "step":
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.arch)(num_classes=29)
    n = args.batch * args.steps
    x = torch.randn(n, 3, args.image_size, args.image_size)
    y = torch.randint(0, 29, (n,))
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    for epoch in range(2):
        start = time.perf_counter()
        for i in range(0, n, args.batch):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x[i:i + args.batch]), y[i:i + args.batch])
            loss.backward()
            optimizer.step()
        elapsed = time.perf_counter() - start
    print(f"images_per_second {n / elapsed:.3f}")
else:
    t = torchvision.transforms
    transform = t.Compose([t.Resize((args.image_size, args.image_size)), t.ToTensor(),
                           t.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    dataset = torchvision.datasets.ImageFolder(args.data, transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True,
                                         num_workers=args.workers,
                                         persistent_workers=args.workers > 0)
    rates = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        batches = sum(1 for _ in loader)
        rates.append(batches / (time.perf_counter() - start))
    print(f"batches_per_second {statistics.median(rates):.3f}")
