"""Training-step throughput of Python PyTorch eager, data already on the device.

    python gpu_eager.py [--arch resnet50] [--batch-size 32] [--amp bf16] [--channels-last] ...

One random batch (N(0,1) images, random int64 targets) is made once on the device; each
step is zero_grad, forward (under autocast with --amp), cross_entropy, backward, optimizer
step. --warmup steps run once, then --repeats timed runs of --steps steps each; the median
images/s is reported. Progress goes to stderr; the last stdout line is one JSON object.
Bad input exits 2 with a one-line message on stderr.
"""
import json
import resource
import statistics
import time

import torch
import torchvision

from bench_cli import Parser, fail, log

p = Parser(description=__doc__.split("\n\n")[0])
p.add_argument("--arch", choices=("resnet18", "resnet50"), default="resnet50",
               help="torchvision.models architecture, weights=None (default resnet50)")
p.add_argument("--classes", type=int, default=29, help="number of output classes (default 29)")
p.add_argument("--image-size", type=int, default=64, help="square input side (default 64)")
p.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
p.add_argument("--steps", type=int, default=50, help="timed steps per repeat (default 50)")
p.add_argument("--warmup", type=int, default=10, help="untimed steps before timing (default 10)")
p.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported (default 3)")
p.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
p.add_argument("--optimizer", choices=("adam", "adam-fused", "sgd"), default="adam",
               help="adam (lr 1e-3; PyTorch's default implementation: foreach on CUDA), "
                    "adam-fused (fused=True), or sgd (lr 0.01, momentum 0.9); default adam")
p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none",
               help="autocast dtype; fp16 also uses torch.amp.GradScaler (default none)")
p.add_argument("--channels-last", action="store_true", help="model and input in channels_last")
p.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave)")
p.add_argument("--seed", type=int, default=0, help="torch.manual_seed (default 0)")
args = p.parse_args()

for name in ("classes", "image_size", "batch_size", "steps", "repeats"):
    if getattr(args, name) < 1:
        fail(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
if args.warmup < 0:
    fail(f"--warmup must be at least 0, got {args.warmup}")
if args.threads is not None:
    if args.threads < 1:
        fail(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
try:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
except RuntimeError as e:
    fail(f"bad --device {args.device!r}: {e}")
if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
    fail(f"--device {device} asked for, but this machine has {torch.cuda.device_count()} CUDA devices")
cuda = device.type == "cuda"
torch.backends.cudnn.benchmark = args.cudnn_benchmark
torch.manual_seed(args.seed)

memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
model = getattr(torchvision.models, args.arch)(weights=None, num_classes=args.classes)
model = model.to(device, memory_format=memory_format).train()
x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
x = x.contiguous(memory_format=memory_format)
y = torch.randint(0, args.classes, (args.batch_size,), dtype=torch.int64, device=device)
if args.optimizer == "adam":
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
elif args.optimizer == "adam-fused":
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
else:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
scaler = torch.amp.GradScaler(device.type) if args.amp == "fp16" else None


def step():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss


def sync():
    if cuda:
        torch.cuda.synchronize(device)


log(f"{args.arch} on {device}, batch {args.batch_size}, {args.image_size}px, amp {args.amp}, "
    f"channels_last {args.channels_last}, {args.optimizer}")
try:
    for _ in range(args.warmup):
        loss = step()
    sync()
except RuntimeError as e:  # e.g. an autocast dtype this device/build does not support
    fail(f"--amp {args.amp} on {device.type} failed during warm-up: {str(e).splitlines()[0]}")
if args.warmup and not torch.isfinite(loss).item():
    log(f"warning: warm-up loss is {loss.item()}")

runs = []
for r in range(args.repeats):
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync()
    elapsed = time.perf_counter() - start
    runs.append(args.steps * args.batch_size / elapsed)
    log(f"repeat {r + 1}/{args.repeats}: {runs[-1]:.1f} images/s, loss {loss.item():.4f}")

if cuda:
    peak = torch.cuda.max_memory_allocated(device) / 2**20
else:  # Linux reports ru_maxrss in KiB: the whole process's peak resident set
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({
    "impl": "python-eager", "arch": args.arch, "device": str(device),
    "batch_size": args.batch_size, "image_size": args.image_size, "amp": args.amp,
    "channels_last": args.channels_last, "optimizer": args.optimizer,
    "images_per_second": round(statistics.median(runs), 3),
    "runs": [round(v, 3) for v in runs], "peak_memory_mib": round(peak, 1),
}))
