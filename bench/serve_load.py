"""Load benchmark of `asl_resnet serve`: requests/s and p50/p99 latency for 1, 4 and 16
concurrent clients, with one model shared by the request threads and with a pool of copies.

    python serve_load.py ASL_RESNET MODEL_DIR IMAGE [--requests 200] [--repeats 3]

Each configuration runs `--repeats` times against a fresh server (after a warm-up); the median
run is printed. Clients send the same JPEG as a raw image/jpeg body over keep-alive-less HTTP."""
import argparse
import concurrent.futures
import http.client
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from serve_support import start_server  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("binary")
parser.add_argument("model")
parser.add_argument("image")
parser.add_argument("--requests", type=int, default=200)
parser.add_argument("--repeats", type=int, default=3)
args = parser.parse_args()
body = open(args.image, "rb").read()


def one_request(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    start = time.perf_counter()
    connection.request("POST", "/predict", body, {"Content-Type": "image/jpeg"})
    reply = connection.getresponse()
    reply.read()
    connection.close()
    assert reply.status == 200, reply.status
    return time.perf_counter() - start


def measure(port, clients):
    latencies = []
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(lambda _: one_request(port), range(args.requests)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return (args.requests / elapsed, 1000 * latencies[len(latencies) // 2],
            1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))])


print(f"machine: {os.cpu_count()} cores; model {args.model}; {args.requests} requests per run, "
      f"median of {args.repeats}")
print(f"{'model':<18} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
for instances in (1, 4):
    for clients in (1, 4, 16):
        runs = []
        for _ in range(args.repeats):
            server, url = start_server(args.binary, args.model, "--threads", "16",
                                       "--instances", str(instances))
            port = int(url.rsplit(":", 1)[1])
            try:
                for _ in range(10):
                    one_request(port)  # warm-up
                runs.append(measure(port, clients))
            finally:
                server.terminate()
                server.wait(timeout=20)
        runs.sort()
        rate, p50, p99 = runs[len(runs) // 2]
        label = "shared (1)" if instances == 1 else f"pool of {instances}"
        print(f"{label:<18} {clients:>7} {rate:>8.1f} {p50:>8.1f} {p99:>8.1f}")
