"""Helpers for the seldon-up integration tests.

seldon-up ($SELDON_UP) runs as a process in a temporary folder, the way a user
runs `seldon up` in a project folder: its state goes to ./.seldon there, and the
folder holds `examples` (a link to the repository's), so that the example
manifests' relative storageUri resolve as they do from the repository's top
folder. Users' side is the real seldon CLI ($SELDON_CLI), curl for REST and
grpcio (stubs compiled from proto/ at test time) for gRPC.

Deadlines below only guard against hangs; no assertion depends on time.
"""
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration", "lib"))
import procs  # noqa: E402
from upclient import (CLI, GUARD, HOST, PROTO_DIR, UpClient, grpc_stub, oip,  # noqa: E402,F401
                      outputs)

UP = os.environ.get("SELDON_UP") or os.path.join(SOURCE, "build", "daemons", "up", "seldon-up")
STARTED = []


def pytest_configure(config):
    procs.require((UP, "SELDON_UP"), (CLI, "SELDON_CLI"))


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers():
    yield
    procs.kill_all(STARTED)


class Up(UpClient):
    """A seldon-up process in folder (its working directory) on free loopback ports."""

    def __init__(self, folder, *args, via_cli=False):
        self.via_cli = via_cli  # started as `seldon up ...`
        self.folder = str(folder)
        self.args = [str(a) for a in args]
        link = os.path.join(self.folder, "examples")
        if not os.path.exists(link):
            os.symlink(os.path.join(SOURCE, "examples"), link)
        self.errpath = os.path.join(self.folder, "seldon-up.stderr")
        self.runs = 0
        self.start()

    def start(self):
        self.runs += 1
        self.errfile = open(self.errpath, "ab")
        self.errfile.write(f"--- run {self.runs} ---\n".encode())
        self.errfile.flush()
        self.log_start = os.path.getsize(self.errpath)
        cmd = [CLI, "up"] if self.via_cli else [UP]
        cmd += ["--host", HOST, "--port", "0", "--scheduler-port", "0", "--metrics-port", "0",
               "--workers", "2", "--io-threads", "1", "--grace", "10000", *self.args]
        self.proc = subprocess.Popen(cmd, cwd=self.folder, stdout=subprocess.PIPE,
                                     stderr=self.errfile)
        STARTED.append(self.proc)
        line = procs.first_line(self.proc, GUARD)
        m = re.fullmatch(r"listening inference=(\d+) scheduler=(\d+) metrics=(-?\d+)",
                         line.strip())
        if not m:
            self.kill()
            raise AssertionError(f"seldon-up did not start: {line!r}\n{self.stderr()}")
        self.port, self.scheduler, self.metrics_port = (int(x) for x in m.groups())
        self.target = f"{HOST}:{self.port}"

    def stderr(self, this_run=False):
        with open(self.errpath, "rb") as f:
            if this_run:
                f.seek(self.log_start)
            return f.read().decode(errors="replace")

    def wait_log(self, pattern):
        """The first match of pattern in this run's log, waited for; fails at once when
        seldon-up exited."""
        def look():
            found = re.search(pattern, self.stderr(this_run=True))
            assert found or self.proc.poll() is None, f"seldon-up exited\n{self.stderr()}"
            return found
        return procs.wait_until(look, GUARD,
                                lambda: f"no {pattern!r} in the log:\n{self.stderr()}")

    def stop(self):
        """SIGTERM; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(GUARD)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"seldon-up did not exit on SIGTERM\n{self.stderr()}")
        self.proc.stdout.close()
        self.errfile.close()
        return rc

    def restart(self):
        rc = self.stop()
        assert rc == 0, f"seldon-up exited {rc}\n{self.stderr()}"
        self.start()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.errfile.close()

    def scrape(self):
        url = f"http://{HOST}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=GUARD) as r:
            return r.read().decode()


def load(up, *files, wait="ModelAvailable"):
    """seldon load -f FILE -w STATE, for each file."""
    for f in files:
        rc, out, err = up.cli("load", "-f", f, "-w", wait)
        assert rc == 0, f"seldon load -f {f} failed ({rc}): {err}\n{up.stderr()}"


def status(up, name):
    rc, out, err = up.cli("model", "status", name)
    assert rc == 0, err
    return json.loads(out)


ADD_REQUEST = json.dumps({"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [4],
                                      "data": [1, 2, 3, 4]}]})
SIMPLE_REQUEST = json.dumps({"inputs": [
    {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(1, 17))},
    {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]})


def add_request(g, model="", values=(1, 2, 3, 4)):
    req = g.pb2.ModelInferRequest(model_name=model)
    t = req.inputs.add()
    t.name = "INPUT"
    t.datatype = "FP32"
    t.shape.extend([len(values)])
    t.contents.fp32_contents.extend(values)
    return req


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    """A seldon-up with the example models loaded."""
    u = Up(tmp_path_factory.mktemp("project"))
    load(u, "examples/manifests/models.yaml")
    yield u
    if u.proc.poll() is None:
        rc = u.stop()
        assert rc == 0, u.stderr()
