"""Helpers for `seldon pipeline inspect` and the Kafka glue's gaps.

seldon-kafka-dev runs as its own process; records are produced with kcat (values
built with the Python protobuf stubs, Seldon's keys and headers) and read back by
kcat too, and `seldon pipeline inspect` is checked against what kcat reads. The
Kafka suite's helpers (tests/integration/kafka/conftest.py) start the daemons.

Deadlines below only guard against hangs; no assertion depends on time.
"""
import importlib.util
import json
import os
import re
import subprocess
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))

_spec = importlib.util.spec_from_file_location(
    "kafka_helpers", os.path.join(SOURCE, "tests", "integration", "kafka", "conftest.py"))
kh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kh)
sh = kh.sh
rh = kh.rh
procs = kh.procs
g = kh.g
HOST = kh.HOST
GUARD = kh.GUARD
KafkaDev = kh.KafkaDev
ModelGateway = kh.ModelGateway
produce = kh.produce
consume_all = kh.consume_all
consume = kh.consume

CLI = os.environ.get("SELDON_CLI") or os.path.join(SOURCE, "build", "daemons", "cli", "seldon")
SCHEDULER = os.environ.get("SELDON_SCHEDULER") or os.path.join(
    SOURCE, "build", "daemons", "scheduler", "seldon-scheduler")
STARTED = []


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers():
    yield
    procs.kill_all(STARTED)
    procs.kill_all(kh.STARTED)
    procs.kill_all(rh.STARTED)


def pytest_configure(config):
    procs.require((kh.KAFKA_DEV, "SELDON_KAFKA_DEV"), (CLI, "SELDON_CLI"),
                  (SCHEDULER, "SELDON_SCHEDULER"))


class Scheduler:
    """A seldon-scheduler on free loopback ports (its client API is what the CLI asks)."""

    def __init__(self, state_dir):
        self.errfile = tempfile.NamedTemporaryFile(prefix="seldon-scheduler-", suffix=".stderr",
                                                   delete=False)
        cmd = [SCHEDULER, "--state-dir", str(state_dir), "--host", HOST, "--client-port", "0",
               "--agent-port", "0", "--route-port", "0", "--metrics-port", "0"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errfile)
        STARTED.append(self.proc)
        line = procs.first_line(self.proc, GUARD)
        m = re.match(r"listening client=(\d+)", line.strip())
        assert m, f"seldon-scheduler did not start: {line!r}"
        self.target = f"{HOST}:{m.group(1)}"

    def stderr(self):
        with open(self.errfile.name, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        rc = procs.sigterm(self.proc, "seldon-scheduler", self.stderr, self.kill)
        self.proc.stdout.close()
        assert rc == 0, f"seldon-scheduler exited {rc}\n{self.stderr()}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def cli(*args, env=None, check=True):
    """Runs the seldon CLI; returns the CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.pop("SELDON_KAFKA_BROKER", None)
    full_env.update(env or {})
    p = subprocess.run([CLI, *[str(a) for a in args]], capture_output=True, timeout=GUARD * 2,
                       env=full_env)
    out = subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(),
                                      p.stderr.decode(errors="replace"))
    if check:
        assert out.returncode == 0, f"{args} exited {out.returncode}\n{out.stderr}"
    return out


def inspect_lines(out):
    """The text lines of `seldon pipeline inspect`: (topic, key, value, rest)."""
    rows = []
    for line in out.splitlines():
        topic, key, rest = line.split("\t", 2)
        value, sep, headers = rest.partition("\t\t")
        rows.append((topic, key, json.loads(value) if value else None, headers if sep else None))
    return rows
