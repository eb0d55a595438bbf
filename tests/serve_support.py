"""Starting `asl_resnet serve` on a free loopback port for the HTTP and browser tests."""
import socket
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary, model, *extra):
    """Starts the server and waits (60 s at most) for its "serving" line: (process, base URL)."""
    port = free_port()
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([binary, "serve", "--model", model, "--port", str(port), *extra],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        log.seek(0)
        if "serving http://127.0.0.1:%d/" % port in log.read():
            return proc, "http://127.0.0.1:%d" % port
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError("server exited early: " + log.read())
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start")
