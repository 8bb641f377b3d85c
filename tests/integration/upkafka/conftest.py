"""Helpers for the seldon up --kafka tests.

seldon-up ($SELDON_UP) runs with --kafka in a temporary folder, as a user runs it: the
pipelines suite's models and pipelines (tests/integration/up/pipelines) are loaded with the
real seldon CLI ($SELDON_CLI), requests go to seldon up's inference port with curl (REST) and
grpcio (gRPC), and the Kafka topics are read back with kcat ($KCAT) through the Kafka
suite's helpers. The broker is either the one seldon up starts itself (a seldon-kafka-dev
child) or a seldon-kafka-dev ($SELDON_KAFKA_DEV) started apart and named with
--kafka-broker.

Deadlines below only guard against hangs; no assertion depends on time.
"""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration", "lib"))
import procs  # noqa: E402
from upclient import (CLI, GUARD, HOST, PROTO_DIR, UpClient, grpc_stub, oip,  # noqa: E402,F401
                      outputs)

_spec = importlib.util.spec_from_file_location(
    "kafka_helpers", os.path.join(SOURCE, "tests", "integration", "kafka", "conftest.py"))
kh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kh)

UP = os.environ.get("SELDON_UP") or os.path.join(SOURCE, "build", "daemons", "up", "seldon-up")
PIPELINES = os.path.join(SOURCE, "tests", "integration", "up", "pipelines")
STARTED = []

SERVED = ("chain", "join", "cond", "inputs", "triggers", "chained", "failing", "ident")


def pytest_configure(config):
    procs.require((UP, "SELDON_UP"), (CLI, "SELDON_CLI"), (kh.KAFKA_DEV, "SELDON_KAFKA_DEV"))


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers():
    yield
    procs.kill_all(STARTED)
    procs.kill_all(kh.STARTED)


class KUp(UpClient):
    """seldon-up --kafka in folder, on free loopback ports."""

    def __init__(self, folder, *args, env=None):
        self.folder = str(folder)
        for name, target in (("examples", os.path.join(SOURCE, "examples")),
                             ("pipelines", PIPELINES)):
            link = os.path.join(self.folder, name)
            if not os.path.exists(link):
                os.symlink(target, link)
        self.errpath = os.path.join(self.folder, "seldon-up.stderr")
        self.errfile = open(self.errpath, "ab")
        cmd = [UP, "--kafka", "--host", HOST, "--port", "0", "--scheduler-port", "0",
               "--metrics-port", "0", "--workers", "2", "--io-threads", "1", "--grace", "10000",
               *[str(a) for a in args]]
        self.proc = subprocess.Popen(cmd, cwd=self.folder, stdout=subprocess.PIPE,
                                     stderr=self.errfile, env=env)
        STARTED.append(self.proc)
        line = procs.first_line(self.proc, GUARD)
        m = re.fullmatch(r"listening inference=(\d+) scheduler=(\d+) metrics=(-?\d+) kafka=(\S+)",
                         line.strip())
        if not m:
            self.kill()
            raise AssertionError(f"seldon-up --kafka did not start: {line!r}\n{self.stderr()}")
        self.port, self.scheduler, self.metrics_port = (int(x) for x in m.groups()[:3])
        self.broker = m.group(4)
        self.target = f"{HOST}:{self.port}"

    def stderr(self):
        with open(self.errpath, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        """SIGTERM; the exit status."""
        rc = procs.sigterm(self.proc, "seldon-up", self.stderr, self.kill)
        self.proc.stdout.close()
        self.errfile.close()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def scrape(self):
        p = subprocess.run(["curl", "-s", "-S", "--max-time", str(int(GUARD)),
                            f"http://{HOST}:{self.metrics_port}/metrics"],
                           capture_output=True, timeout=GUARD + 5)
        assert p.returncode == 0, p.stderr.decode()
        return p.stdout.decode(errors="replace")

    def metric_sum(self, prefix, *parts):
        """The sum of the samples whose line starts with prefix and holds every part."""
        total = 0.0
        for line in self.scrape().splitlines():
            if line.startswith(prefix) and all(p in line for p in parts):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def load_all(self):
        """The pipelines suite's models and pipelines, loaded with the CLI; waits until each
        pipeline served here says ready (the scheduler's state, and the three roles hold
        partitions of its topics)."""
        for f, wait in (("pipelines/models.yaml", ["-w", "ModelAvailable"]),
                        ("pipelines/pipelines.yaml", [])):
            rc, out, err = self.cli("load", "-f", f, *wait)
            assert rc == 0, f"seldon load -f {f}: {err}\n{self.stderr()}"
        for name in SERVED:
            procs.wait_until(lambda: self.curl(f"/v2/pipelines/{name}/ready")[0] == 200, GUARD,
                             lambda: f"{name} not ready\n{self.stderr()}")
