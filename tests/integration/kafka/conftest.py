"""Helpers for the Kafka integration tests.

seldon-kafka-dev ($SELDON_KAFKA_DEV) and seldon-modelgateway ($SELDON_MODELGATEWAY)
run as processes of their own, in front of a real seldon-router with static
routes to real seldon-servers (the router suite's helpers). Records are written
and read back with kcat ($KCAT), an independent Kafka client, so keys, headers
and protobuf values are checked as another client sees them.

Deadlines below only guard against hangs; no assertion depends on time.
"""
import importlib.util
import os
import re
import signal
import struct
import subprocess
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))

_spec = importlib.util.spec_from_file_location(
    "router_helpers", os.path.join(SOURCE, "tests", "integration", "router", "conftest.py"))
rh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rh)
sh = rh.sh
procs = sh.procs
g = sh.g
HOST = sh.HOST
GUARD = 60.0

KAFKA_DEV = os.environ.get("SELDON_KAFKA_DEV") or os.path.join(
    SOURCE, "build", "daemons", "kafka-dev", "seldon-kafka-dev")
MODELGATEWAY = os.environ.get("SELDON_MODELGATEWAY") or os.path.join(
    SOURCE, "build", "daemons", "modelgateway", "seldon-modelgateway")
KCAT = os.environ.get("KCAT") or "kcat"

STARTED = []


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers():
    yield
    procs.kill_all(STARTED)
    procs.kill_all(rh.STARTED)


def pytest_configure(config):
    procs.require((KAFKA_DEV, "SELDON_KAFKA_DEV"), (MODELGATEWAY, "SELDON_MODELGATEWAY"),
                  (rh.ROUTER, "SELDON_ROUTER"))


class Daemon:
    """A daemon process whose stderr goes to a file and whose first stdout line says it
    is up."""

    name = "daemon"

    def __init__(self, cmd, pattern, env=None, expect_fail=False):
        self.errpath = tempfile.mktemp(prefix=f"{self.name}-", suffix=".stderr")
        self.errfile = open(self.errpath, "wb")
        full_env = dict(os.environ)
        for k, v in (env or {}).items():
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = v
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errfile,
                                     env=full_env)
        STARTED.append(self.proc)
        if expect_fail:
            return
        line = procs.first_line(self.proc, GUARD)
        self.match = re.fullmatch(pattern, line.strip())
        if not self.match:
            self.kill()
            raise AssertionError(f"{self.name} did not start: {line!r}\n{self.stderr()}")

    def stderr(self):
        with open(self.errpath, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, pattern, count=1):
        procs.wait_until(lambda: len(re.findall(pattern, self.stderr())) >= count, GUARD,
                         lambda: f"no {pattern!r} x{count} in the log of {self.name}:\n"
                                 f"{self.stderr()}")

    def stop(self):
        rc = procs.sigterm(self.proc, self.name, self.stderr, self.kill)
        self.errfile.close()
        assert rc == 0, f"{self.name} exited {rc}\n{self.stderr()}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.errfile.close()


class KafkaDev(Daemon):
    name = "seldon-kafka-dev"

    def __init__(self, *args, port=0):
        super().__init__([KAFKA_DEV, "--port", str(port), *[str(a) for a in args]],
                         r"bootstrap=(\S+) brokers=(\d+)")
        self.bootstrap = self.match.group(1)


class ModelGateway(Daemon):
    name = "seldon-modelgateway"

    def __init__(self, router, *args, broker=None, env=None, expect_fail=False):
        # The development broker's rebalances wait up to session.timeout.ms for every
        # member (45 s by default): short sessions keep the tests short.
        cmd = [MODELGATEWAY, "--router-host", f"{HOST}:{router.port}", "--metrics-port", "0",
               "--host", HOST, "--grace", "20000", "--kafka-config", "session.timeout.ms=6000",
               "--kafka-config", "heartbeat.interval.ms=500"]
        if broker is not None:
            cmd += ["--kafka-broker", broker]
        cmd += [str(a) for a in args]
        super().__init__(cmd, r"serving metrics=(\d+)", env=env, expect_fail=expect_fail)
        if not expect_fail:
            self.metrics_port = int(self.match.group(1))

    def metrics(self):
        return sh.metrics(self.metrics_port)


# --- kcat ---------------------------------------------------------------------


def produce(broker, topic, value, key=None, headers=(), partition=None):
    """One record through kcat: value (bytes) as a file, so any bytes go as they are."""
    with tempfile.NamedTemporaryFile(prefix="kafka-value-", delete=False) as f:
        f.write(value)
        path = f.name
    cmd = [KCAT, "-P", "-b", broker, "-t", topic, "-X", "enable.idempotence=true"]
    if key is not None:
        cmd += ["-k", key]
    if partition is not None:
        cmd += ["-p", str(partition)]
    for name, v in headers:
        cmd += ["-H", f"{name}={v}"]
    cmd.append(path)
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=GUARD)
    finally:
        os.unlink(path)
    assert p.returncode == 0, p.stderr.decode(errors="replace")


class Record:
    def __init__(self, topic, partition, offset, key, headers, value):
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.headers = headers  # [(name, value)]
        self.value = value

    def header(self, name):
        vals = [v for k, v in self.headers if k == name]
        return vals[0] if vals else None

    def __repr__(self):
        return (f"Record({self.topic}[{self.partition}]@{self.offset} key={self.key!r} "
                f"headers={self.headers} value={self.value[:60]!r})")


FMT = r"%t\t%p\t%o\t%k\t%h\t%R%s"


def _parse(out):
    records = []
    at = 0
    while at < len(out):
        fields = []
        for _ in range(5):
            tab = out.index(b"\t", at)
            fields.append(out[at:tab].decode())
            at = tab + 1
        (n,) = struct.unpack(">i", out[at:at + 4])
        at += 4
        value = out[at:at + n] if n >= 0 else None
        at += max(n, 0)
        headers = []
        if fields[4]:
            for kv in fields[4].split(","):
                k, _, v = kv.partition("=")
                headers.append((k, v))
        records.append(Record(fields[0], int(fields[1]), int(fields[2]), fields[3], headers,
                              value))
    return records


def consume(broker, topic, count):
    """The first count records of topic (every partition, from the start), waiting for
    them to arrive; read by kcat."""
    cmd = [KCAT, "-C", "-b", broker, "-t", topic, "-o", "beginning", "-c", str(count), "-q",
           "-f", FMT]
    p = subprocess.run(cmd, capture_output=True, timeout=GUARD * 2)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return _parse(p.stdout)


def consume_all(broker, topic):
    """Every record in topic now (kcat -e: up to the end of each partition)."""
    cmd = [KCAT, "-C", "-b", broker, "-t", topic, "-o", "beginning", "-e", "-q", "-f", FMT]
    p = subprocess.run(cmd, capture_output=True, timeout=GUARD * 2)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return _parse(p.stdout)


def wait_record(broker, topic, key):
    """The record keyed key in topic, once kcat sees it there (topics shared by tests)."""
    found = []

    def seen():
        found[:] = [r for r in consume_all(broker, topic) if r.key == key]
        return bool(found)
    procs.wait_until(seen, GUARD, lambda: f"no record {key} in {topic}")
    return found[0]
