"""seldon-server on the HTTP transport, tried as an attacker would: a client that
pipelines large inference requests and never reads its answers leaves the server's
memory bounded; a client that trickles its request gets 408 within --idle-timeout;
a compressed body gets 415.

Starts the real server ($SELDON_SERVER) on loopback with an identity model in a
temporary repository. Deadlines only guard against hangs.
"""
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys

import pytest

from test_http import LEAN_ASAN, Conn, rss_kib, send_until_blocked, trickle

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from procs import wait_until  # noqa: E402  (tests/integration/lib)

SERVER = os.environ.get("SELDON_SERVER")
GUARD = 30.0

pytestmark = pytest.mark.skipif(not SERVER, reason="SELDON_SERVER is not set")


class Server:
    def __init__(self, repo, *args):
        env = dict(os.environ)
        env.update(LEAN_ASAN)
        self.proc = subprocess.Popen(
            [SERVER, "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0",
             "--host", "127.0.0.1", *args], stdout=subprocess.PIPE, env=env)
        ready, _, _ = select.select([self.proc.stdout], [], [], GUARD)
        line = self.proc.stdout.readline().decode() if ready else ""
        m = re.match(r"listening http=(\d+) grpc=(\d+)", line)
        if not m:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("seldon-server did not start: %r" % line)
        self.port = int(m.group(1))
        wait_until(lambda: self.status("/v2/models/identity/ready") == 200, GUARD,
                   lambda: "the identity model never became ready", interval=0.05)

    def status(self, path):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=GUARD)
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            more = s.recv(65536)
            if not more:
                break
            data += more
        s.close()
        return int(data.split(b" ", 2)[1]) if data else 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(GUARD)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "hung"


def infer_request(nbytes):
    """POST /v2/models/identity/infer with an FP32 tensor of nbytes, binary extension."""
    n = nbytes // 4
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [n],
                       "parameters": {"binary_data_size": n * 4}}],
           "parameters": {"binary_data_output": True}}
    head = json.dumps(doc).encode()
    body = head + b"\0" * (n * 4)
    return (b"POST /v2/models/identity/infer HTTP/1.1\r\nHost: t\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n"
            % (len(head), len(body)) + body)


def test_pipelined_4mb_requests_never_read(identity_repo):
    srv = Server(identity_repo, "--max-body", str(8 << 20), "--io-threads", "1", "--workers", "1")
    try:
        base = rss_kib(srv.proc.pid)
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=GUARD)
        # Without backpressure the server reads all 600 MB and answers into memory.
        assert send_until_blocked(s, infer_request(4 << 20), 150)
        assert rss_kib(srv.proc.pid) - base < 64 * 1024  # KiB
        assert rss_kib(srv.proc.pid, "VmHWM") - base < 64 * 1024
        s.settimeout(GUARD)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200 ")  # the requests were real inferences
        s.close()
        assert srv.status("/v2/health/live") == 200
    finally:
        assert srv.stop() == 0


@pytest.fixture
def identity_repo(tmp_path):
    os.makedirs(tmp_path / "identity")
    (tmp_path / "identity" / "model-settings.json").write_text(
        json.dumps({"name": "identity", "implementation": "builtin.identity"}))
    return tmp_path


def test_trickled_request_gets_408_within_idle_timeout(identity_repo):
    # Every byte would reset an idle timer; the request deadline still ends it.
    srv = Server(identity_repo, "--idle-timeout", "500")
    try:
        raw = infer_request(4000)
        c = Conn(srv.port)
        assert trickle(c, raw, 300) < 300  # a bounded trickle: 15 s at most
        status, headers, body = c.response()
        assert status == 408 and headers["connection"] == "close"
        assert "error" in json.loads(body)
        c.close()
    finally:
        assert srv.stop() == 0


def test_compressed_body_gets_415(identity_repo):
    srv = Server(identity_repo)
    try:
        c = Conn(srv.port)
        body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1],
                                       "data": [1]}]}).encode()
        c.send(b"POST /v2/models/identity/infer HTTP/1.1\r\nHost: t\r\n"
               b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        status, _, got = c.response()
        assert status == 415
        assert "Content-Encoding" in json.loads(got)["error"]
        c.close()
    finally:
        assert srv.stop() == 0
