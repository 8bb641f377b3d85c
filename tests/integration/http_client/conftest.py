"""Helpers for the HTTP client tests: client_testd driven over stdin/stdout, and
loopback peers written here (raw sockets) that answer, stall, reset or close on cue.

Waits use a generous deadline only as a guard against hangs; no assertion depends on
elapsed time.
"""

import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time

import pytest

TESTD = os.environ.get("CLIENT_TESTD")
SERVER = os.environ.get("SELDON_SERVER")
EXAMPLES = os.environ.get("SELDON_EXAMPLES")
GUARD = 60.0  # seconds: a hang guard, never the thing tested
MiB = 1 << 20


def pattern(offset, n):
    """The body client_testd generates: byte i is i % 251."""
    start = offset % 251
    base = bytes(range(251))
    reps = (start + n) // 251 + 1
    return (base * reps)[start:start + n]


class Client:
    """client_testd with one pool to upstream; events are the JSON lines it prints."""

    def __init__(self, upstream, *args):
        env = dict(os.environ)
        # Under AddressSanitizer, freed memory sits in a quarantine (256 MiB by default),
        # which would make the peak RSS measure the sanitizer, not the client.
        env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"),
                                                      "quarantine_size_mb=1"]))
        self.proc = subprocess.Popen([TESTD, "--upstream", upstream, *map(str, args)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.buf = b""
        self.events = []
        ev = self.next_event()
        assert ev == {"event": "ready"}, ev

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def send_many(self, lines):
        """One write: the client reads the lines in one go, before its loop runs on."""
        data = "".join(line + "\n" for line in lines).encode()
        assert len(data) <= 4096  # PIPE_BUF: one atomic write
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def next_event(self):
        deadline = time.monotonic() + GUARD
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, "client_testd: no event in time"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                data = os.read(fd, 65536)
                assert data, "client_testd exited (rc %s)" % self.proc.wait()
                self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        ev = json.loads(line)
        self.events.append(ev)
        return ev

    def wait(self, pred):
        for ev in self.events:
            if pred(ev):
                return ev
        while True:
            ev = self.next_event()
            if pred(ev):
                return ev

    def done(self, rid):
        return self.wait(lambda e: e["event"] == "done" and e["id"] == rid)

    def head(self, rid):
        return self.wait(lambda e: e["event"] == "head" and e["id"] == rid)

    def request(self, rid, method="GET", target="/", *opts):
        self.send(" ".join(["req", rid, method, target, *opts]))
        return self.done(rid)

    def stats(self):
        self.send("stats")
        while True:
            ev = self.next_event()
            if ev["event"] == "stats":
                return ev

    def quit(self):
        """Frees the pool; asserts every handle closed and a clean exit."""
        self.send("quit")
        self.wait(lambda e: e["event"] == "freed")
        rc = self.proc.wait(GUARD)
        assert rc == 0, "client_testd exited %d" % rc


@pytest.fixture
def clients():
    made = []

    def make(upstream, *args):
        c = Client(upstream, *args)
        made.append(c)
        return c
    yield make
    for c in made:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait()


def read_head(sock, buf):
    """Reads one HTTP head: (method, target, headers dict lower-cased, rest of buffer),
    or None when the peer closed first."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    return method, target, headers, rest


def read_body(sock, headers, rest, keep=True):
    """Reads a body by its framing without holding it when keep is False:
    (body or None, length, byte sum, rest)."""
    out = []
    total = 0
    s = 0

    def take(data):
        nonlocal total, s
        total += len(data)
        s += sum(data)
        if keep:
            out.append(data)

    def fill(buf):
        data = sock.recv(1 << 20)
        if not data:
            raise EOFError("peer closed inside a body")
        return buf + data

    if "content-length" in headers:
        need = int(headers["content-length"])
        while len(rest) < need:
            if rest:
                take(rest)
                need -= len(rest)
                rest = b""
            rest = fill(rest)
        take(rest[:need])
        rest = rest[need:]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            while b"\r\n" not in rest:
                rest = fill(rest)
            line, rest = rest.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while not rest.startswith(b"\r\n"):
                    if b"\r\n" in rest and not rest.startswith(b"\r\n"):
                        rest = rest.split(b"\r\n", 1)[1]  # a trailer line
                        continue
                    rest = fill(rest)
                rest = rest[2:]
                break
            while size > 0:
                if not rest:
                    rest = fill(rest)
                piece = rest[:size]
                take(piece)
                size -= len(piece)
                rest = rest[len(piece):]
            while len(rest) < 2:
                rest = fill(rest)
            assert rest[:2] == b"\r\n", rest[:10]
            rest = rest[2:]
    return (b"".join(out) if keep else None), total, s, rest


class Peer:
    """A loopback server: each accepted connection runs handler(peer, sock, index) in a
    thread. Counts accepted connections and records every request head it is shown."""

    def __init__(self, handler, backlog=64):
        self.handler = handler
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(backlog)
        self.port = self.lsock.getsockname()[1]
        self.upstream = "127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.accepted = 0
        self.open_now = 0
        self.max_open = 0
        self.requests = []
        self.closed = 0
        self.release = threading.Event()
        self.stopping = False
        self.threads = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self):
        while True:
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                return
            with self.cond:
                index = self.accepted
                self.accepted += 1
                self.open_now += 1
                self.max_open = max(self.max_open, self.open_now)
                self.cond.notify_all()
            t = threading.Thread(target=self._run, args=(sock, index), daemon=True)
            self.threads.append(t)
            t.start()

    def _run(self, sock, index):
        try:
            self.handler(self, sock, index)
        except (OSError, EOFError):
            pass
        finally:
            sock.close()
            with self.cond:
                self.open_now -= 1
                self.closed += 1
                self.cond.notify_all()

    def note(self, method, target, headers):
        with self.cond:
            self.requests.append((method, target, headers))
            self.cond.notify_all()

    def wait_for(self, pred):
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self), GUARD), "peer: condition not reached"

    def close(self):
        self.release.set()
        self.lsock.close()


@pytest.fixture
def peers():
    made = []

    def make(handler, **kw):
        p = Peer(handler, **kw)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


def respond(sock, status=200, body=b"", headers=()):
    head = "HTTP/1.1 %d X\r\nContent-Length: %d\r\n" % (status, len(body))
    for h in headers:
        head += h + "\r\n"
    sock.sendall(head.encode() + b"\r\n" + body)


def keepalive_handler(peer, sock, index):
    """Answers every request on the connection with its target and body length."""
    buf = b""
    while True:
        got = read_head(sock, buf)
        if got is None:
            return
        method, target, headers, rest = got
        peer.note(method, target, headers)
        _, n, s, buf = read_body(sock, headers, rest, keep=False)
        respond(sock, 200, json.dumps({"target": target, "len": n, "sum": s,
                                       "conn": index}).encode())


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class SeldonServer:
    def __init__(self):
        self.proc = subprocess.Popen([SERVER, "--model-repository", EXAMPLES, "--http-port", "0",
                                      "--grpc-port", "0", "--host", "127.0.0.1"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        fd = self.proc.stdout.fileno()
        data = b""
        deadline = time.monotonic() + GUARD
        while b"\n" not in data and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
        m = re.fullmatch(r"listening http=(\d+) grpc=(\d+)", data.decode().strip())
        if not m:
            self.proc.kill()
            raise AssertionError("seldon-server did not start: %r" % data)
        self.http = int(m.group(1))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(GUARD)
