"""Helpers for the seldon-router integration tests.

The router ($SELDON_ROUTER) runs as a process on free loopback ports, in front
of real seldon-server processes ($SELDON_SERVER) serving Seldon's sample models.
Where a test needs an upstream to misbehave on cue (hang, answer late, echo the
headers it got), the upstream is a small HTTP or gRPC server written in the test.
The server suite's helpers (requests, binary extension, /metrics, grpcio stubs)
are reused from tests/integration/server/conftest.py.

Deadlines below only guard against hangs; no assertion depends on time.
"""
import importlib.util
import os
import re
import signal
import subprocess
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))

_spec = importlib.util.spec_from_file_location(
    "server_helpers", os.path.join(SOURCE, "tests", "integration", "server", "conftest.py"))
sh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sh)

# Re-exported: the grpcio stubs fixture and the helpers the tests use.
g = sh.g
HOST = sh.HOST
GUARD = sh.GUARD
request = sh.request
metrics = sh.metrics
metric = sh.metric

ROUTER = os.environ.get("SELDON_ROUTER") or os.path.join(
    SOURCE, "build", "daemons", "router", "seldon-router")

STARTED = []


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers():
    yield
    sh.procs.kill_all(STARTED)


def pytest_configure(config):
    if not os.path.exists(ROUTER):
        raise pytest.UsageError(f"seldon-router not found at {ROUTER}: set SELDON_ROUTER")


def routes_yaml(routes, defaults=None):
    """A routes file: routes is [(name, [(http, grpc)], extra dict or None)]."""
    lines = []
    if defaults:
        lines.append("defaults:")
        for k, v in defaults.items():
            lines.append(f"  {k}: {v}")
    lines.append("routes:")
    for name, ups, extra in routes:
        lines.append(f"- name: {name}")
        for k, v in (extra or {}).items():
            lines.append(f"  {k}: {v}")
        lines.append("  upstreams:")
        for http, grpc in ups:
            parts = []
            if http:
                parts.append(f'http: "{http}"')
            if grpc:
                parts.append(f'grpc: "{grpc}"')
            lines.append("  - {" + ", ".join(parts) + "}")
    return "\n".join(lines) + "\n"


def upstream_of(server):
    return (f"{HOST}:{server.http}", f"{HOST}:{server.grpc}")


class Router:
    """A seldon-router process on free loopback ports."""

    def __init__(self, routes_text, *args, env=None, expect_fail=False):
        self.dir = tempfile.mkdtemp(prefix="seldon-router-")
        self.routes = os.path.join(self.dir, "routes.yaml")
        self.write_routes(routes_text)
        self.errpath = os.path.join(self.dir, "stderr")
        self.errfile = open(self.errpath, "wb")
        cmd = [ROUTER, "--routes", self.routes, "--port", "0", "--metrics-port", "0",
               "--host", HOST, "--grace", "20000", *[str(a) for a in args]]
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errfile,
                                     env=full_env)
        STARTED.append(self.proc)
        if expect_fail:
            return
        line = self._first_line()
        m = re.fullmatch(r"listening port=(\d+) metrics=(-?\d+)", line.strip())
        if not m:
            self.kill()
            raise AssertionError(f"seldon-router did not start: {line!r}\n{self.stderr()}")
        self.port = int(m.group(1))
        self.metrics_port = int(m.group(2))
        self.grpc_target = f"{HOST}:{self.port}"

    def write_routes(self, text):
        tmp = self.routes + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.routes)

    def _first_line(self):
        return sh.procs.first_line(self.proc, 60)

    def stderr(self):
        with open(self.errpath, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, pattern, count=1):
        """Waits until pattern appears count times in the router's log; returns the last match."""
        found = sh.procs.wait_value(lambda: re.findall(pattern, self.stderr()),
                                    lambda found: len(found) >= count, GUARD,
                                    lambda _: f"no {pattern!r} in the log:\n{self.stderr()}")
        return found[-1]

    def reload(self, text=None):
        """Rewrites the routes file (when given) and sends SIGHUP."""
        if text is not None:
            self.write_routes(text)
        self.proc.send_signal(signal.SIGHUP)

    def rss_kib(self, field="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"no {field}")

    def metrics(self):
        return metrics(self.metrics_port)

    def wait(self, timeout=60):
        return self.proc.wait(timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(60)
        self.proc.stdout.close()
        self.errfile.close()
        assert rc == 0, f"seldon-router exited {rc}\n{self.stderr()}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.errfile.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two seldon-servers over the same sample models."""
    root = tmp_path_factory.mktemp("samples")
    sh.write_samples(root)
    pair = [sh.Server(root, "--max-body", str(200 << 20)) for _ in range(2)]
    yield pair
    for s in pair:
        if s.proc.poll() is None:
            s.stop()


@pytest.fixture(scope="module")
def router(servers):
    """A router with a route per sample model over both servers."""
    ups = [upstream_of(s) for s in servers]
    names = ["identity", "add10", "add20", "mul10", "simple", "slow"]
    r = Router(routes_yaml([(n, ups, None) for n in names] +
                           [("cond.pipeline", ups[:1], None)]))
    yield r
    r.stop()


def grpc_stub(g, target, max_message=256 << 20):
    channel = g.grpc.insecure_channel(target, options=[
        ("grpc.max_send_message_length", max_message),
        ("grpc.max_receive_message_length", max_message),
    ])
    g.grpc.channel_ready_future(channel).result(timeout=GUARD)
    return channel, g.pb2_grpc.GRPCInferenceServiceStub(channel)
