"""Helpers for the h2c transport tests.

h2_testd ($H2_TESTD) is a transparent gRPC proxy built on daemons/common/h2*.c.
The tests put it between grpcio clients (stubs generated from proto/ at test
time) and the real seldon-server ($SELDON_SERVER), or in front of upstreams
that misbehave on purpose (a closed port, a socket that never answers).

Every process is stopped at the end; h2_testd must exit 0 on SIGTERM, which
also catches sanitizer reports in an ASan build. Deadlines only guard against
hangs; no assertion depends on time.
"""
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import oipstubs  # noqa: E402  (tests/integration/lib)
import procs  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
TESTD = os.environ.get("H2_TESTD") or os.path.join(
    SOURCE, "build", "tests", "integration", "h2", "h2_testd")
SERVER = os.environ.get("SELDON_SERVER") or os.path.join(
    SOURCE, "build", "daemons", "server", "seldon-server")
PROTO_DIR = os.environ.get("SELDON_PROTO_DIR") or os.path.join(SOURCE, "proto")
MODELS = os.path.join(SOURCE, "examples", "models")

HOST = "127.0.0.1"
START_GUARD = 60.0
GUARD = 30.0

STARTED = []


def pytest_configure(config):
    procs.require((TESTD, "H2_TESTD"), (SERVER, "SELDON_SERVER"))


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers():
    yield
    procs.kill_all(STARTED)


def free_port():
    """A port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Proc:
    """A daemon that prints its port(s) on its first stdout line."""

    def __init__(self, name, cmd, pattern, env=None):
        self.name = name
        self.errfile = tempfile.NamedTemporaryFile(prefix=name + "-", suffix=".stderr",
                                                   delete=False)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errfile,
                                     env=env)
        STARTED.append(self.proc)
        line = self._first_line()
        self.match = re.fullmatch(pattern, line.strip())
        if not self.match:
            self.kill()
            raise AssertionError(f"{name} did not start: {line!r}\n{self.stderr()}")

    def _first_line(self):
        return procs.first_line(self.proc, START_GUARD)

    @property
    def pid(self):
        return self.proc.pid

    def stderr(self):
        with open(self.errfile.name, "rb") as f:
            text = f.read().decode(errors="replace")
        return f"--- {self.name} stderr ---\n" + text[-20000:]

    def stop(self):
        """SIGTERM, then asserts a clean exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(START_GUARD)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not exit in time\n{self.stderr()}")
        self.proc.stdout.close()
        assert rc == 0, f"{self.name} exited {rc}\n{self.stderr()}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def rss_kib(self, field="VmRSS"):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"no {field} for {self.name}")


def start_server(grpc_port=0, *args):
    # One I/O thread, one worker, one gRPC thread: two cores are shared.
    p = Proc("seldon-server", [SERVER, "--model-repository", MODELS, "--host", HOST,
                               "--http-port", "0", "--grpc-port", str(grpc_port),
                               "--io-threads", "1", "--workers", "1", "--grpc-threads", "1",
                               "--max-body", str(64 << 20), "--grace", "1000", *args],
             r"listening http=(\d+) grpc=(\d+)")
    p.http = int(p.match.group(1))
    p.grpc = int(p.match.group(2))
    wait_ready(p)
    return p


def wait_ready(srv):
    """Polls /v2/health/ready: the start-up model loads finish after "listening"."""
    def ready():
        assert srv.proc.poll() is None, f"seldon-server exited\n{srv.stderr()}"
        conn = http.client.HTTPConnection(HOST, srv.http, timeout=GUARD)
        try:
            conn.request("GET", "/v2/health/ready")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()
    procs.wait_until(ready, START_GUARD, lambda: f"not ready in time\n{srv.stderr()}",
                     interval=0.02)


def start_proxy(upstream_port, *args, adopt=False, one_port=False):
    cmd = [TESTD, "--host", HOST, "--port", "0", "--upstream", f"{HOST}:{upstream_port}",
           *[str(a) for a in args]]
    if adopt:
        cmd.append("--adopt")
    if one_port:
        cmd.append("--one-port")
    # Under AddressSanitizer, freed blocks wait in a quarantine (256 MiB by default) that
    # would count as the proxy's memory; keep it small so that the memory bounds hold
    # (ignored by a normal build).
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(filter(None, [
        env.get("ASAN_OPTIONS"), "quarantine_size_mb=1", "thread_local_quarantine_size_kb=64"]))
    p = Proc("h2_testd", cmd, r"listening on (\d+)", env=env)
    p.port = int(p.match.group(1))
    p.target = f"{HOST}:{p.port}"
    p.route = f"{HOST}:{upstream_port}"
    return p


class Grpc:
    def __init__(self, pb2, pb2_grpc, grpc):
        self.pb2 = pb2
        self.pb2_grpc = pb2_grpc
        self.grpc = grpc

    def stub(self, target, max_message=64 << 20):
        channel = self.grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", max_message),
            ("grpc.max_receive_message_length", max_message),
            ("grpc.enable_retries", 0),
        ])
        return channel, self.pb2_grpc.GRPCInferenceServiceStub(channel)

    def fp32_request(self, model, values, id=""):
        req = self.pb2.ModelInferRequest(model_name=model, id=id)
        t = req.inputs.add(name="INPUT0", datatype="FP32", shape=[1, len(values)])
        t.contents.fp32_contents.extend(values)
        return req


@pytest.fixture(scope="session")
def g(tmp_path_factory):
    grpc = pytest.importorskip("grpc")
    pytest.importorskip("grpc_tools")
    pb2, pb2_grpc = oipstubs.compile_stubs(tmp_path_factory.mktemp("pb"), PROTO_DIR)
    return Grpc(pb2, pb2_grpc, grpc)


@pytest.fixture(scope="module")
def server():
    srv = start_server()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def proxy(server):
    p = start_proxy(server.grpc)
    yield p
    p.stop()
