"""asl_resnet serve over loopback: python serve_http.py ASL_RESNET MODEL_DIR IMAGES_DIR

The page, /healthz, /predict (multipart and raw bodies; answers equal to `asl_resnet predict`),
the error statuses (413, 400, 404, 405) with JSON bodies, 50 concurrent requests, a fuzz loop
whose memory stays flat, SIGTERM, and refusal of a missing or broken model directory or of a
port already in use (exit 2).
Prints "serve http: ok"."""
import concurrent.futures
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid

from serve_support import start_server

BIN, MODEL, IMAGES = sys.argv[1], sys.argv[2], sys.argv[3]


def request(url, data=None, headers=None, method=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def multipart(field, filename, content):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() + content + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def expect_json_error(status, headers, body, code):
    assert status == code, (status, body)
    assert headers.get("Content-Type", "").startswith("application/json"), headers
    assert "error" in json.loads(body), body


# Refused at start-up: missing and broken model directories.
for broken, message in ((os.path.join(MODEL, "missing"), "does not exist"),):
    out = subprocess.run([BIN, "serve", "--model", broken], capture_output=True, text=True)
    assert out.returncode == 2 and message in out.stderr.strip().splitlines()[-1], out.stderr
with tempfile.TemporaryDirectory() as bad:
    for name in ("metrics.json", "classes.txt", "model.pt"):
        open(os.path.join(bad, name), "w").write("garbage")
    out = subprocess.run([BIN, "serve", "--model", bad], capture_output=True, text=True)
    assert out.returncode == 2 and "metrics.json" in out.stderr, out.stderr

proc, url = start_server(BIN, MODEL, "--threads", "4", "--max-upload-mb", "1")
try:
    status, headers, page = request(url + "/")
    assert status == 200 and b'type="file"' in page and b"/predict" in page
    assert b"http://" not in page and b"https://" not in page, "the page must be self-contained"
    status, _, body = request(url + "/healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and len(health["classes"]) == 29, health

    # A second server on the same port is refused (it must not share the port with this one).
    port = url.rsplit(":", 1)[1]
    out = subprocess.run([BIN, "serve", "--model", MODEL, "--port", port], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "cannot listen on 127.0.0.1:" + port in out.stderr, out

    # Answers equal the command line's, for a multipart upload and a raw body alike.
    files = sorted(os.path.join(IMAGES, c, c + "1.jpg") for c in health["classes"])
    cli = json.loads(subprocess.run([BIN, "predict", "--model", MODEL, "--json", *files],
                                    capture_output=True, check=True, text=True).stdout)
    correct = 0
    for path, expected in zip(files, cli):
        content = open(path, "rb").read()
        status, _, body = request(url + "/predict", *multipart("image", "x.jpg", content))
        assert status == 200, body
        reply = json.loads(body)
        assert len(reply["top"]) == 3 and reply["milliseconds"] > 0
        for a, b in zip(reply["top"], expected["top"]):
            assert a["label"] == b["label"] and abs(a["probability"] - b["probability"]) < 1e-5
        correct += reply["top"][0]["label"] == os.path.basename(os.path.dirname(path))
    assert correct >= 26, f"only {correct} of 29 training images predicted correctly"
    status, _, body = request(url + "/predict", open(files[1], "rb").read(),
                              {"Content-Type": "image/jpeg"})
    assert status == 200 and json.loads(body)["top"][0]["label"] == cli[1]["top"][0]["label"]

    # Errors: JSON bodies, right statuses, and the server keeps serving.
    jpeg = open(files[0], "rb").read()
    expect_json_error(*request(url + "/predict", os.urandom(2 << 20),
                               {"Content-Type": "image/jpeg"}), 413)
    expect_json_error(*request(url + "/predict", b"", {"Content-Type": "image/jpeg"}), 400)
    expect_json_error(*request(url + "/predict", b"hello", {"Content-Type": "image/png"}), 400)
    expect_json_error(*request(url + "/predict", jpeg[: len(jpeg) // 2],
                               {"Content-Type": "image/jpeg"}), 400)
    expect_json_error(*request(url + "/predict", b"text", {"Content-Type": "text/plain"}), 400)
    expect_json_error(*request(url + "/predict", *multipart("other", "x.jpg", jpeg)), 400)
    try:  # an image whose header claims 400 megapixels (tiny file): refused before decoding
        from PIL import Image
        huge = io.BytesIO()
        Image.new("1", (20000, 20000)).save(huge, format="PNG")
        status, headers, body = request(url + "/predict", huge.getvalue(),
                                        {"Content-Type": "image/png"})
        expect_json_error(status, headers, body, 400)
    except ImportError:
        print("(Pillow missing: the huge-image case was not checked)")
    expect_json_error(*request(url + "/predict"), 405)
    expect_json_error(*request(url + "/", b"x", method="DELETE"), 405)
    expect_json_error(*request(url + "/nothing-here"), 404)
    expect_json_error(*request(url + "/../../etc/passwd"), 404)
    assert request(url + "/healthz")[0] == 200

    # 50 concurrent requests, all answered.
    def one(i):
        return request(url + "/predict", open(files[i % 29], "rb").read(),
                       {"Content-Type": "image/jpeg"})[0]
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(one, range(50)))
    assert statuses == [200] * 50, statuses

    # Fuzz: random bytes, cut and corrupted JPEGs; the server stays up, memory stays flat.
    rng = random.Random(7)

    def fuzz(n):
        for _ in range(n):
            kind = rng.randrange(3)
            if kind == 0:
                data = os.urandom(rng.randrange(1, 5000))
            elif kind == 1:
                data = jpeg[: rng.randrange(1, len(jpeg))]
            else:
                data = bytearray(jpeg)
                for _ in range(20):
                    data[rng.randrange(len(data))] = rng.randrange(256)
                data = bytes(data)
            status = request(url + "/predict", data, {"Content-Type": "image/jpeg"})[0]
            assert status in (200, 400), status
    fuzz(100)
    before = rss_kib(proc.pid)
    fuzz(300)
    after = rss_kib(proc.pid)
    print(f"fuzz: RSS {before} KiB after 100 requests, {after} KiB after 400")
    assert after - before < 20 * 1024, (before, after)
    assert request(url + "/healthz")[0] == 200
finally:
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=20)
assert code == 0, code
print("serve http: ok")
