"""C++ (bench_cpu) against Python PyTorch (cpu_reference.py) on the CPU, interleaved in rotating
order, median of --repeats; peak resident memory of each process from wait4.

    python compare_cpu.py BENCH_CPU DATA_FOLDER PACK [--repeats 5]

Prints three tables: training step (ours vs eager), JPEG folder loading (ours vs torchvision's
DataLoader with 2 workers), and the packed cache vs the JPEG folder (ours)."""
import argparse
import os
import statistics
import subprocess
import sys

parser = argparse.ArgumentParser()
parser.add_argument("bench_cpu")
parser.add_argument("folder")
parser.add_argument("pack")
parser.add_argument("--repeats", type=int, default=5)
args = parser.parse_args()
reference = [sys.executable, os.path.join(os.path.dirname(__file__), "cpu_reference.py")]


def run(command):
    """(figure, peak RSS in MiB) of one process."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, (command, out)
    return float(out.split()[-1]), usage.ru_maxrss / 1024


def compare(title, unit, candidates):
    results = {label: [] for label, _ in candidates}
    memory = {label: [] for label, _ in candidates}
    for r in range(args.repeats):
        for k in range(len(candidates)):
            label, command = candidates[(r + k) % len(candidates)]
            figure, rss = run(command)
            results[label].append(figure)
            memory[label].append(rss)
    base = statistics.median(results[candidates[0][0]])
    print(f"\n{title} (median of {args.repeats}, interleaved)\n")
    print(f"| | {unit} | vs first row | peak RSS MiB |\n|---|---:|---:|---:|")
    for label, _ in candidates:
        m = statistics.median(results[label])
        print(f"| {label} | {m:.1f} | {m / base:.2f}x | {statistics.median(memory[label]):.0f} |")


print(f"machine: {os.cpu_count()} cores; torch threads default (all cores) on both sides")
step = ["--arch", "resnet18", "--image-size", "64", "--batch", "32", "--steps", "20"]
compare("ResNet-18 training step, 64 px, batch 32, Adam, data in memory", "images/s",
        [("Python eager (torchvision resnet18)", reference + ["step"] + step),
         ("parallax Trainer<Single> (C++)", [args.bench_cpu, "step"] + step)])
# Median epoch of 5 within each run (workers started once on both sides): steady state, not
# start-up; a packed epoch takes only tens of milliseconds.
load = ["--image-size", "64", "--batch", "32", "--workers", "2", "--epochs", "5"]
compare("Loading a JPEG folder into normalised 64 px batches of 32, 2 workers", "batches/s",
        [("torchvision ImageFolder + DataLoader", reference + ["loader", "--data", args.folder] + load),
         ("parallax Loader over ImageFolder", [args.bench_cpu, "loader", "--data", args.folder] + load)])
compare("parallax Loader: JPEG folder vs packed cache", "batches/s",
        [("ImageFolder (decode every epoch)", [args.bench_cpu, "loader", "--data", args.folder] + load),
         ("PackedImages (memory-mapped)", [args.bench_cpu, "loader", "--data", args.pack] + load)])
