"""End-to-end tests of the HTTP/1.1 transport (daemons/common/http_server.c).

They start http_testd ($HTTP_TESTD) on a free loopback port and talk to it with raw
sockets and http.client. Waits use a generous deadline only as a guard against hangs;
no assertion depends on elapsed time.
"""

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loopback import wait_server_read_all  # noqa: E402  (tests/integration/lib)
from procs import wait_value  # noqa: E402

TESTD = os.environ.get("HTTP_TESTD")
GUARD = 15.0  # seconds: a hang guard, never the thing tested
MAX_BODY = 1 << 20

pytestmark = pytest.mark.skipif(not TESTD, reason="HTTP_TESTD is not set")


# For the memory bounds: an ASan build otherwise keeps freed memory in quarantine.
LEAN_ASAN = {"ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") +
                              ":quarantine_size_mb=1:thread_local_quarantine_size_kb=64").lstrip(":")}


class Daemon:
    def __init__(self, *args, env=None):
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen([TESTD, "--port", "0", *args], stdout=subprocess.PIPE,
                                     env=full_env)
        ready, _, _ = select.select([self.proc.stdout], [], [], GUARD)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("listening on "):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("http_testd did not start: %r" % line)
        self.port = int(line.split()[-1])

    def stop(self):
        """SIGTERM, then the exit code (a sanitizer report makes it non-zero)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(GUARD)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "hung"


@pytest.fixture(scope="module")
def server():
    d = Daemon("--io-threads", "2", "--max-body", str(MAX_BODY), "--idle-ms", "20000")
    yield d
    assert d.stop() == 0


class Conn:
    """A raw client connection with a minimal HTTP/1.1 response reader."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=GUARD)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        data = self.s.recv(65536)
        if not data:
            raise EOFError("connection closed by the server")
        self.buf += data

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def closed_by_server(self):
        """True once the server closes (EOF), with nothing more sent."""
        try:
            while True:
                data = self.s.recv(65536)
                if not data:
                    return self.buf == b""
                self.buf += data
        except ConnectionResetError:
            return self.buf == b""

    def close(self):
        self.s.close()


def get(path, extra=b""):
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"


def post(path, body, extra=b""):
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def chunked(chunks):
    out = b""
    for c in chunks:
        out += b"%x\r\n" % len(c) + c + b"\r\n"
    return out + b"0\r\n\r\n"


def slow_stats(port):
    """(queued, answered): /slow requests handed to http_testd's worker, and answered."""
    c = Conn(port)
    c.send(get("/slow/stats"))
    status, _, body = c.response()
    c.close()
    assert status == 200, body
    fields = dict(kv.split("=") for kv in body.decode().split())
    return int(fields["queued"]), int(fields["answered"])


def wait_slow(port, queued=0, answered=0):
    """Waits until at least that many /slow requests were queued, and answered."""
    return wait_value(lambda: slow_stats(port),
                      lambda qa: qa[0] >= queued and qa[1] >= answered, GUARD,
                      lambda qa: f"/slow: {qa[0]} queued, {qa[1]} answered")


def still_serving(port):
    c = Conn(port)
    c.send(get("/hello"))
    status, _, body = c.response()
    c.close()
    return status == 200 and body == b"hello"


def test_routes(server):
    h = http.client.HTTPConnection("127.0.0.1", server.port, timeout=GUARD)
    h.request("GET", "/hello")
    r = h.getresponse()
    assert (r.status, r.read()) == (200, b"hello")
    h.request("POST", "/echo", body=b"payload", headers={"Content-Type": "text/x-test"})
    r = h.getresponse()
    assert r.status == 200
    assert r.getheader("x-body-length") == "7"
    assert r.getheader("content-type") == "text/x-test"
    assert r.read() == b"payload"
    h.request("GET", "/headers", headers={"X-Custom-Thing": "Value 1"})
    r = h.getresponse()
    lines = r.read().decode().splitlines()
    assert "x-custom-thing: Value 1" in lines
    h.request("GET", "/nowhere")
    r = h.getresponse()
    assert r.status == 404
    assert json.loads(r.read()) == {"error": "no such route"}
    h.close()


def test_keep_alive_many_requests(server):
    h = http.client.HTTPConnection("127.0.0.1", server.port, timeout=GUARD)
    h.connect()
    sock = h.sock
    for i in range(300):
        body = b"n%d" % i
        h.request("POST", "/echo", body=body)
        r = h.getresponse()
        assert (r.status, r.read()) == (200, body)
        assert h.sock is sock  # no reconnects
    h.close()


def test_pipelining_in_order_with_slow_first(server):
    c = Conn(server.port)
    c.send(get("/slow?ms=300") + get("/hello") + post("/echo", b"third"))
    assert c.response()[2] == b"slow"
    assert c.response()[2] == b"hello"
    status, headers, body = c.response()
    assert (status, body, headers["x-body-length"]) == (200, b"third", "5")
    c.close()


def test_deep_pipeline_past_backpressure(server):
    c = Conn(server.port)
    reqs = [get("/slow?ms=100")] + [post("/echo", b"r%d" % i) for i in range(150)]
    c.send(b"".join(reqs))
    assert c.response()[2] == b"slow"
    for i in range(150):
        assert c.response()[2] == b"r%d" % i
    c.close()


def test_expect_100_continue(server):
    c = Conn(server.port)
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n"
           b"Expect: 100-continue\r\n\r\n")
    status, _, body = c.response()
    assert (status, body) == (100, b"")
    c.send(b"hello world")
    status, _, body = c.response()
    assert (status, body) == (200, b"hello world")
    c.close()


def test_expect_100_continue_too_large(server):
    c = Conn(server.port)
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
           b"Expect: 100-continue\r\n\r\n" % (MAX_BODY + 1))
    status, headers, body = c.response()  # without sending any of the body
    assert status == 413
    assert headers["connection"] == "close"
    assert "error" in json.loads(body)
    assert c.closed_by_server()
    c.close()


def test_chunked_body(server):
    c = Conn(server.port)
    chunks = [b"a" * 10, b"b" * 3000, b"c", b"d" * 70000]
    raw = chunked(chunks)
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    for i in range(0, len(raw), 4096):  # chunk framing split across reads
        c.send(raw[i:i + 4096])
    status, headers, body = c.response()
    assert status == 200
    assert body == b"".join(chunks)
    assert headers["x-body-length"] == str(len(body))
    c.send(get("/hello"))
    assert c.response()[2] == b"hello"
    c.close()


def test_chunked_body_with_trailer_and_extension(server):
    c = Conn(server.port)
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: yes\r\n\r\n")
    assert c.response()[2] == b"abcde"
    c.close()


def test_body_over_max_is_413(server):
    c = Conn(server.port)
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1))
    status, headers, _ = c.response()
    assert status == 413 and headers["connection"] == "close"
    assert c.closed_by_server()
    c.close()


def test_chunked_body_over_max_is_413(server):
    c = Conn(server.port)
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"x" * 65536
    status = None
    try:
        for _ in range(MAX_BODY // len(piece) + 2):
            c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, headers, _ = c.response()
    assert status == 413 and headers["connection"] == "close"
    c.close()


def test_body_at_max_is_accepted(server):
    body = os.urandom(MAX_BODY)
    c = Conn(server.port)
    c.send(post("/echo", body))
    status, _, got = c.response()
    assert status == 200 and got == body
    c.close()


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: t\r\nBad Header Line\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 12x\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
def test_malformed_request_is_400(server, raw):
    c = Conn(server.port)
    c.send(raw)
    status, headers, body = c.response()
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert isinstance(json.loads(body)["error"], str)
    assert c.closed_by_server()
    c.close()


def test_unsupported_http_version_is_505(server):
    c = Conn(server.port)
    c.send(b"GET /hello HTTP/9.9\r\nHost: t\r\n\r\n")
    status, headers, body = c.response()
    assert status == 505
    assert "HTTP/1.1" in json.loads(body)["error"]
    assert c.closed_by_server()
    c.close()
    assert still_serving(server.port)


def test_malformed_after_good_request_keeps_order(server):
    c = Conn(server.port)
    c.send(get("/slow?ms=100") + b"NOT HTTP AT ALL\r\n\r\n")
    assert c.response()[2] == b"slow"
    assert c.response()[0] == 400
    assert c.closed_by_server()
    c.close()


def test_one_byte_at_a_time(server):
    c = Conn(server.port)
    raw = (b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Long-Header: " + b"v" * 300 +
           b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked([b"byte", b"wise"]) + get("/hello"))
    for i in range(len(raw)):
        c.send(raw[i:i + 1])
        if i % 16 == 0:
            wait_server_read_all(server.port, GUARD)  # the bytes so far arrive as one read
    status, _, body = c.response()
    assert (status, body) == (200, b"bytewise")
    assert c.response()[2] == b"hello"
    c.close()


def test_disconnect_mid_body(server):
    for _ in range(20):
        c = Conn(server.port)
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000)
        c.close()
    assert still_serving(server.port)


def test_disconnect_while_slow_pending(server):
    queued, _ = slow_stats(server.port)
    for _ in range(10):
        c = Conn(server.port)
        c.send(get("/slow?ms=150") + get("/hello"))
        c.close()
    # Every /slow request ever queued is answered: the abandoned answers happened.
    wait_slow(server.port, queued=queued + 10, answered=queued + 10)
    assert still_serving(server.port)


def test_http10_closes_after_response(server):
    c = Conn(server.port)
    c.send(b"GET /hello HTTP/1.0\r\n\r\n")
    status, headers, body = c.response()
    assert (status, body) == (200, b"hello")
    assert headers["connection"] == "close"
    assert c.closed_by_server()
    c.close()


def test_http10_keep_alive(server):
    c = Conn(server.port)
    for _ in range(3):
        c.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, body = c.response()
        assert (status, body) == (200, b"hello")
        assert headers["connection"].lower() == "keep-alive"
    c.close()


def test_connection_close_header(server):
    c = Conn(server.port)
    c.send(get("/hello", b"Connection: close\r\n") + get("/hello"))
    status, headers, _ = c.response()
    assert status == 200 and headers["connection"] == "close"
    assert c.closed_by_server()  # the second request is not answered
    c.close()


def test_head_sends_no_body(server):
    c = Conn(server.port)
    c.send(b"HEAD /nowhere HTTP/1.1\r\nHost: t\r\n\r\n" + get("/hello"))
    while b"\r\n\r\n" not in c.buf:
        c._fill()
    head, c.buf = c.buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 404 ")
    assert b"Content-Length: " in head  # announced, not sent
    assert c.response()[2] == b"hello"
    c.close()


def test_folded_header_and_case(server):
    c = Conn(server.port)
    c.send(b"GET /headers?x=1 HTTP/1.1\r\nHost: t\r\nX-Folded: first\r\n  second\r\n"
           b"MiXeD-CaSe: v\r\n\r\n")
    status, _, body = c.response()
    lines = body.decode().splitlines()
    assert status == 200
    assert "x-folded: first second" in lines
    assert "mixed-case: v" in lines
    c.close()


def test_concurrency(server):
    errors = []

    def worker(t):
        try:
            h = http.client.HTTPConnection("127.0.0.1", server.port, timeout=GUARD)
            for i in range(200):
                if i % 2:
                    h.request("GET", "/hello")
                    want = b"hello"
                else:
                    want = b"t%d-i%d" % (t, i)
                    h.request("POST", "/echo", body=want)
                r = h.getresponse()
                got = r.read()
                if r.status != 200 or got != want:
                    errors.append((t, i, r.status, got))
            h.close()
        except Exception as e:  # reported below
            errors.append((t, repr(e)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(GUARD * 4)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_idle_timeout_closes_connection():
    d = Daemon("--idle-ms", "200")
    try:
        c = Conn(d.port)
        c.send(get("/hello"))
        assert c.response()[2] == b"hello"
        assert c.closed_by_server()
        c.close()
        # A request waiting for its handler is not idle.
        c = Conn(d.port)
        c.send(get("/slow?ms=600"))
        assert c.response()[2] == b"slow"
        c.close()
    finally:
        assert d.stop() == 0


def test_sigterm_lets_inflight_request_finish():
    d = Daemon("--io-threads", "2")
    try:
        c = Conn(d.port)
        idle = Conn(d.port)
        c.send(get("/hello") + get("/slow?ms=800"))
        assert c.response()[2] == b"hello"
        wait_slow(d.port, queued=1)  # the /slow request is with its handler
        d.proc.send_signal(signal.SIGTERM)
        status, headers, body = c.response()
        assert (status, body) == (200, b"slow")
        assert headers["connection"] == "close"
        assert c.closed_by_server()
        assert idle.closed_by_server()
        c.close()
        idle.close()
    finally:
        assert d.stop() == 0


def test_stop_gives_up_after_grace():
    # The handler answers after the grace period: the request is abandoned and its
    # late answer must be harmless (the daemon still exits 0, also under ASan).
    d = Daemon("--grace-ms", "100")
    try:
        c = Conn(d.port)
        c.send(get("/hello") + get("/slow?ms=5000"))
        assert c.response()[2] == b"hello"
        wait_slow(d.port, queued=1)
        d.proc.send_signal(signal.SIGTERM)  # the worker answers (late) as the daemon exits
        with pytest.raises((EOFError, ConnectionResetError)):
            c.response()
        c.close()
    finally:
        assert d.stop() == 0


def test_bad_port_fails_cleanly(server):
    p = subprocess.run([TESTD, "--port", str(server.port), "--host", "256.1.1.1"],
                       capture_output=True, timeout=GUARD)
    assert p.returncode == 1
    assert b"host" in p.stderr


# --- Bounded memory, deadlines, encodings --------------------------------------------


def rss_kib(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


def send_until_blocked(sock, data, limit):
    """Sends data up to limit times; True once the server stops reading (send blocks)."""
    sock.settimeout(3.0)  # a send that makes no progress this long: the server stopped reading
    for _ in range(limit):
        try:
            sock.sendall(data)
        except socket.timeout:
            return True
    return False


def test_pipelined_large_requests_never_read_keep_memory_bounded():
    # A client that pipelines 4 MB requests and never reads its answers: the server
    # stops reading once a connection's unsent output passes its limit, so the client
    # blocks long before the server has read 600 MB.
    d = Daemon("--max-body", str(8 << 20), env=LEAN_ASAN)
    try:
        base = rss_kib(d.proc.pid)
        s = socket.create_connection(("127.0.0.1", d.port), timeout=GUARD)
        req = post("/echo", b"x" * (4 << 20))
        assert send_until_blocked(s, req, 150)
        assert rss_kib(d.proc.pid) - base < 64 * 1024
        assert rss_kib(d.proc.pid, "VmHWM") - base < 64 * 1024
        s.close()
        assert still_serving(d.port)
    finally:
        assert d.stop() == 0


def trickle(c, raw, limit):
    """Sends raw one byte at a time until the server answers; the bytes sent."""
    c.s.setblocking(False)
    for i in range(min(limit, len(raw))):
        try:
            c.s.send(raw[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        if select.select([c.s], [], [], 0.05)[0]:
            break
    c.s.setblocking(True)
    c.s.settimeout(GUARD)
    return i + 1


@pytest.mark.parametrize("raw", [
    get("/hello", b"X-Long: " + b"v" * 1000 + b"\r\n"),
    post("/echo", b"b" * 1000),
])
def test_trickled_request_gets_408(raw):
    # Each byte resets the idle timer (20 s); the request deadline (300 ms) still ends it.
    d = Daemon("--request-ms", "300", "--idle-ms", "20000")
    try:
        c = Conn(d.port)
        assert trickle(c, raw, 300) < 300  # answered long before the request was complete
        status, headers, body = c.response()
        assert status == 408 and headers["connection"] == "close"
        assert "error" in json.loads(body)
        assert c.closed_by_server()
        c.close()
        assert still_serving(d.port)  # a request sent at once is not affected
    finally:
        assert d.stop() == 0


def test_content_encoding_gets_415(server):
    c = Conn(server.port)
    c.send(post("/echo", b"\x1f\x8b\x08gzipped?", b"Content-Encoding: gzip\r\n"))
    status, headers, body = c.response()
    assert status == 415
    assert headers["content-type"] == "application/json"
    assert "Content-Encoding" in json.loads(body)["error"]
    assert c.closed_by_server()
    c.close()
    c = Conn(server.port)
    c.send(post("/echo", b"plain", b"Content-Encoding: identity\r\n"))
    assert c.response()[:1] == (200,)
    c.send(get("/hello", b"Content-Encoding: gzip\r\n"))  # no body: nothing to decode
    assert c.response()[2] == b"hello"
    c.close()


# --- One port, two protocols -----------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def test_h2_preface_goes_to_the_adopter(server):
    c = Conn(server.port)
    c.send(PREFACE[:10])  # the server waits for the whole preface before deciding
    wait_server_read_all(server.port, GUARD)
    c.send(PREFACE[10:] + b"bytes after ")
    wait_server_read_all(server.port, GUARD)
    c.send(b"the preface\nignored")
    while b"\n" not in c.buf:
        c._fill()
    assert c.buf == b"adopted: bytes after the preface\n"
    c.buf = b""
    assert c.closed_by_server()  # the adopter released it
    c.close()
    assert still_serving(server.port)


def test_h2_preface_without_adopter_gets_505():
    d = Daemon("--h2", "0")
    try:
        c = Conn(d.port)
        c.send(PREFACE)
        status, headers, body = c.response()
        assert status == 505 and "HTTP/1.1" in json.loads(body)["error"]
        assert c.closed_by_server()
        c.close()
    finally:
        assert d.stop() == 0


def test_whole_body_mode_without_head_handler():
    d = Daemon("--head", "0")
    try:
        c = Conn(d.port)
        c.send(post("/echo", b"abc") + get("/hello"))
        assert c.response()[2] == b"abc"
        assert c.response()[2] == b"hello"
        c.close()
    finally:
        assert d.stop() == 0


# --- Streaming mode ------------------------------------------------------------------


def test_stream_echo_chunked(server):
    body = os.urandom(300000)
    h = http.client.HTTPConnection("127.0.0.1", server.port, timeout=GUARD)
    h.request("POST", "/stream/echo", body=body)
    r = h.getresponse()
    assert r.status == 200
    assert r.getheader("transfer-encoding") == "chunked"
    assert r.read() == body
    h.request("GET", "/hello")  # the connection is kept
    assert h.getresponse().read() == b"hello"
    h.close()


def test_stream_echo_with_length_and_chunked_request(server):
    c = Conn(server.port)
    c.send(post("/stream/echo?len", b"0123456789"))
    status, headers, body = c.response()
    assert (status, headers["content-length"], body) == (200, "10", b"0123456789")
    c.send(b"POST /stream/count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           + chunked([b"a" * 1000, b"b" * 70000, b"c"]))
    assert c.response()[2] == b"count=71001"
    c.close()


def test_stream_requests_pipelined_keep_order(server):
    c = Conn(server.port)
    c.send(get("/slow?ms=200") + post("/stream/echo?len", b"second") +
           post("/stream/count", b"x" * 5000) + get("/hello"))
    assert c.response()[2] == b"slow"
    assert c.response()[2] == b"second"
    assert c.response()[2] == b"count=5000"
    assert c.response()[2] == b"hello"
    c.close()


def test_stream_answered_before_its_body(server):
    c = Conn(server.port)
    c.send(b"POST /stream/reject HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n"
           + b"z" * 1000)
    status, headers, body = c.response()  # without the rest of the body
    assert status == 404 and headers["connection"] == "close"
    c.close()


def test_stream_client_leaves_mid_body(server):
    for _ in range(10):
        c = Conn(server.port)
        c.send(b"POST /stream/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n"
               + b"y" * 5000)
        c.close()
    assert still_serving(server.port)


def test_stream_64_mib_through_with_bounded_memory():
    # The echo route is a proxy in miniature: it forwards what it reads, pausing the
    # client while the response queue is full. 64 MiB pass with the daemon's peak
    # memory well below the body size.
    size = 64 << 20
    d = Daemon("--max-body", str(size), env=LEAN_ASAN)
    try:
        base = rss_kib(d.proc.pid, "VmHWM")
        s = socket.create_connection(("127.0.0.1", d.port), timeout=GUARD)
        piece = bytes(range(256)) * 4096  # 1 MiB
        got = {"n": 0, "bad": False, "head": b""}

        def reader():
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(65536)
            head, rest = buf.split(b"\r\n\r\n", 1)
            got["head"] = head
            # de-chunk on the fly, checking the bytes without keeping them
            pending = rest
            while True:
                while b"\r\n" not in pending:
                    pending += s.recv(65536)
                line, pending = pending.split(b"\r\n", 1)
                n = int(line, 16)
                if n == 0:
                    return
                while len(pending) < n + 2:
                    more = s.recv(1 << 20)
                    if not more:
                        got["bad"] = True
                        return
                    pending += more
                data, pending = pending[:n], pending[n + 2:]
                off = got["n"] % len(piece)
                want = (piece + piece)[off:off + n] if n <= len(piece) else None
                if want is None or data != want:
                    got["bad"] = True
                got["n"] += n

        t = threading.Thread(target=reader)
        t.start()
        s.sendall(b"POST /stream/echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // len(piece)):
            s.sendall(piece)
        t.join(GUARD * 4)
        assert not t.is_alive()
        assert got["head"].startswith(b"HTTP/1.1 200 ")
        assert got["n"] == size and not got["bad"]
        assert rss_kib(d.proc.pid, "VmHWM") - base < 16 * 1024  # KiB: well below 64 MiB
        s.close()
    finally:
        assert d.stop() == 0


def test_sigterm_lets_a_streamed_request_finish():
    d = Daemon("--grace-ms", "10000")
    try:
        c = Conn(d.port)
        c.send(b"POST /stream/count HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n"
               + b"a" * 1000)
        c.send(get("/hello"))  # same connection, not yet parsed: must not start
        d2 = Conn(d.port)
        d2.send(get("/hello"))
        assert d2.response()[2] == b"hello"  # the server is up; the stream is in flight
        d.proc.send_signal(signal.SIGTERM)
        assert d2.closed_by_server()  # idle connections go at once
        d2.close()
        c.send(b"b" * 1000)  # the rest of the body, after the stop began
        status, headers, body = c.response()
        assert (status, body) == (200, b"count=2000")
        assert headers["connection"] == "close"
        assert c.closed_by_server()
        c.close()
        assert d.proc.wait(GUARD) == 0
    finally:
        assert d.stop() == 0


def test_sigterm_aborts_a_stream_past_grace():
    # The body never completes: after the grace period the stream is aborted (its
    # handler frees its state in on_abort) and the daemon exits 0, also under ASan.
    d = Daemon("--grace-ms", "200")
    try:
        c = Conn(d.port)
        c.send(b"POST /stream/count HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n"
               + b"a" * 1000)
        c.send(b"POST /stream/echo HTTP/1.1\r\nHost: t\r\n")  # not parsed yet
        d2 = Conn(d.port)
        d2.send(post("/stream/echo?len", b"e" * 10) + b"POST /stream/echo HTTP/1.1\r\n"
                b"Host: t\r\nContent-Length: 100\r\n\r\n" + b"e" * 10)
        assert d2.response()[2] == b"e" * 10
        d.proc.send_signal(signal.SIGTERM)
        assert c.closed_by_server()
        c.close()
        d2.close()
        assert d.proc.wait(GUARD) == 0
    finally:
        assert d.stop() == 0


def test_streams_on_several_loops():
    d = Daemon("--io-threads", "3")
    errors = []

    def worker(t):
        try:
            h = http.client.HTTPConnection("127.0.0.1", d.port, timeout=GUARD)
            for i in range(30):
                body = os.urandom(1000 * (i + 1))
                h.request("POST", "/stream/echo" if i % 2 else "/stream/echo?len", body=body)
                r = h.getresponse()
                if r.status != 200 or r.read() != body:
                    errors.append((t, i))
            h.close()
        except Exception as e:  # reported below
            errors.append((t, repr(e)))

    try:
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(GUARD * 2)
        assert errors == []
    finally:
        assert d.stop() == 0


def test_requests_stay_on_the_loop_that_accepted_them():
    d = Daemon("--io-threads", "3")
    try:
        for _ in range(12):  # connections spread over the loops
            c = Conn(d.port)
            c.send(get("/loop") + get("/posted"))
            assert c.response()[2] == b"same"
            assert c.response()[2] == b"posted"
            c.close()
    finally:
        assert d.stop() == 0


def test_sigterm_with_a_stream_whose_client_does_not_read():
    # The echo's response queue is full and its writes are pending when the stop
    # gives up: the writes are cancelled, the stream aborted, the daemon exits 0.
    d = Daemon("--grace-ms", "200", "--max-body", str(64 << 20), env=LEAN_ASAN)
    try:
        s = socket.create_connection(("127.0.0.1", d.port), timeout=GUARD)
        s.sendall(b"POST /stream/echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                  % (64 << 20))
        assert send_until_blocked(s, b"w" * (1 << 20), 64)  # paused: the echo is not read
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(GUARD) == 0
        s.close()
    finally:
        assert d.stop() == 0
