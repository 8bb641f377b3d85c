"""End-to-end tests of the HTTP/1.1 client (daemons/common/http_client.c) through
client_testd, against seldon-server and against loopback peers that misbehave."""

import json
import socket
import struct
import threading

import pytest

from conftest import (EXAMPLES, SERVER, TESTD, Client, MiB, SeldonServer, free_port,
                      keepalive_handler, pattern, read_body, read_head, respond)

pytestmark = pytest.mark.skipif(not TESTD, reason="CLIENT_TESTD is not set")


def body_of(done):
    return json.loads(done["body"])


# ---- Against the real seldon-server ----

@pytest.mark.skipif(not SERVER or not EXAMPLES, reason="SELDON_SERVER is not set")
def test_seldon_server_keepalive_and_inference(clients):
    srv = SeldonServer()
    try:
        c = clients("127.0.0.1:%d" % srv.http, "--max-conns", 1)
        # Readiness: the models of the repository load after the port opens.
        for i in range(2000):
            d = c.request("r%d" % i, "GET", "/v2/health/ready")
            assert d["result"] == "ok", d
            if d["status"] == 200:
                break
        for i in range(20):
            d = c.request("k%d" % i, "GET", "/v2/models/add10/ready")
            assert (d["result"], d["status"]) == ("ok", 200), d
        doc = '{"inputs":[{"name":"INPUT","datatype":"FP32","shape":[2],"data":[1,2]}]}'
        d = c.request("inf", "POST", "/v2/models/add10/infer", "data=" + doc,
                      "h=Content-Type:application/json", "keep=1")
        assert (d["result"], d["status"]) == ("ok", 200), d
        out = body_of(d)["outputs"][0]
        assert out["data"] == [11, 12]
        # A 404 from the server is a response like any other, and keeps the connection.
        d = c.request("nf", "GET", "/v2/models/nope/ready")
        assert (d["result"], d["status"]) == ("ok", 404), d
        s = c.stats()
        assert s["connects"] == 1, s
        assert s["reuses"] >= 22, s
        assert (s["open"], s["idle"], s["active"]) == (1, 1, 0), s
        c.quit()
    finally:
        assert srv.stop() == 0


# ---- Keep-alive and the pool bound ----

def test_keepalive_reuse_counted_by_peer(clients, peers):
    p = peers(keepalive_handler)
    c = clients(p.upstream)
    for i in range(10):
        d = c.request("a%d" % i, "GET", "/x%d" % i, "keep=1")
        assert (d["result"], d["status"]) == ("ok", 200), d
        assert body_of(d)["target"] == "/x%d" % i
    assert p.accepted == 1
    assert [r[1] for r in p.requests] == ["/x%d" % i for i in range(10)]
    assert all(r[2]["host"] == p.upstream for r in p.requests)
    c.quit()


def test_connection_close_is_not_reused(clients, peers):
    def handler(peer, sock, index):
        got = read_head(sock, b"")
        if got is None:
            return
        peer.note(*got[:3])
        respond(sock, 200, b"bye", ["Connection: close"])
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    p = peers(handler)
    c = clients(p.upstream)
    for i in range(3):
        d = c.request("c%d" % i, "GET", "/", "keep=1")
        assert (d["result"], d["body"]) == ("ok", "bye"), d
    assert p.accepted == 3
    s = c.stats()
    assert (s["connects"], s["reuses"], s["retries"]) == (3, 0, 0), s
    c.quit()


def test_request_connection_close_is_not_reused(clients, peers):
    p = peers(keepalive_handler)
    c = clients(p.upstream)
    for i in range(2):
        d = c.request("c%d" % i, "GET", "/", "h=Connection:close")
        assert d["result"] == "ok", d
    assert p.accepted == 2
    c.quit()


def test_bounded_pool_under_concurrency(clients, peers):
    def handler(peer, sock, index):
        buf = b""
        while True:
            got = read_head(sock, buf)
            if got is None:
                return
            method, target, headers, buf = got
            peer.note(method, target, headers)
            peer.release.wait()
            respond(sock, 200, target.encode())
    p = peers(handler)
    c = clients(p.upstream, "--max-conns", 3, "--max-idle", 3)
    for i in range(12):
        c.send("req q%d GET /q%d" % (i, i))
    # Three requests reach the peer, one per connection; the rest wait in the queue.
    p.wait_for(lambda peer: len(peer.requests) == 3)
    s = c.stats()
    assert (s["open"], s["queued"], s["active"]) == (3, 9, 12), s
    assert p.accepted == 3
    p.release.set()
    for i in range(12):
        d = c.done("q%d" % i)
        assert (d["result"], d["status"]) == ("ok", 200), d
    assert p.accepted == 3 and p.max_open == 3
    s = c.stats()
    assert (s["connects"], s["open"], s["idle"], s["queued"]) == (3, 3, 3, 0), s
    c.quit()


def test_idle_bound_and_idle_timeout(clients, peers):
    def handler(peer, sock, index):
        buf = b""
        while True:
            got = read_head(sock, buf)
            if got is None:
                return
            method, target, headers, buf = got
            peer.note(method, target, headers)
            peer.release.wait()
            respond(sock, 200, b"")
    p = peers(handler)
    c = clients(p.upstream, "--max-conns", 3, "--max-idle", 1, "--idle-ms", 100)
    for i in range(3):
        c.send("req q%d GET /" % i)
    p.wait_for(lambda peer: len(peer.requests) == 3)
    p.release.set()
    for i in range(3):
        assert c.done("q%d" % i)["result"] == "ok"
    # Two of the three connections are over the idle bound and close at once; the
    # last one closes when its idle timeout fires.
    p.wait_for(lambda peer: peer.closed == 3)
    assert c.request("again")["result"] == "ok"
    assert p.accepted == 4
    s = c.stats()
    assert (s["connects"], s["open"], s["idle"]) == (4, 1, 1), s
    c.quit()


def test_queue_bound(clients, peers):
    def handler(peer, sock, index):
        buf = b""
        while True:
            got = read_head(sock, buf)
            if got is None:
                return
            method, target, headers, buf = got
            peer.note(method, target, headers)
            peer.release.wait()
            respond(sock, 200, b"")
    p = peers(handler)
    c = clients(p.upstream, "--max-conns", 1, "--max-queued", 2)
    # In one write, so that all five start before the connection opens: two wait
    # for it, three find the queue full.
    c.send_many(["req b%d GET /" % i for i in range(5)])
    full = [c.done("b%d" % i) for i in (2, 3, 4)]
    assert all(d["result"] == "queue_full" for d in full), full
    p.release.set()
    for i in (0, 1):
        assert c.done("b%d" % i)["result"] == "ok"
    c.quit()


# ---- Failures, reported distinctly ----

def test_connect_refused(clients):
    c = clients("127.0.0.1:%d" % free_port())
    for i in range(3):
        d = c.request("r%d" % i)
        assert d["result"] == "refused", d
    s = c.stats()
    assert (s["open"], s["active"], s["queued"]) == (0, 0, 0), s
    c.quit()


def test_connect_timeout(clients):
    # A listener whose accept queue is full drops further SYNs: connect hangs.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(2):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    try:
        c = clients("127.0.0.1:%d" % port, "--connect-ms", 200, "--timeout-ms", 60000)
        d = c.request("t")
        assert d["result"] == "connect_timeout", d
        c.quit()
    finally:
        for s in fillers:
            s.close()
        lsock.close()


def test_reset_before_response(clients, peers):
    def handler(peer, sock, index):
        got = read_head(sock, b"")
        peer.note(*got[:3])
        # Abortive close: RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    p = peers(handler)
    c = clients(p.upstream)
    d = c.request("r")
    assert d["result"] == "reset", d
    assert p.accepted == 1  # a fresh connection is never replayed
    c.quit()


def test_closed_inside_body(clients, peers):
    def handler(peer, sock, index):
        read_head(sock, b"")
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
    p = peers(handler)
    c = clients(p.upstream)
    d = c.request("r")
    assert (d["result"], d["status"], d["bytes"]) == ("reset", 200, 9), d
    c.quit()


def test_request_timeout(clients, peers):
    def handler(peer, sock, index):
        got = read_head(sock, b"")
        peer.note(*got[:3])
        while sock.recv(65536):  # never answers; waits for the client to go
            pass
        with peer.cond:
            peer.cond.notify_all()
    p = peers(handler)
    c = clients(p.upstream, "--timeout-ms", 300)
    d = c.request("t")
    assert d["result"] == "timeout", d
    p.wait_for(lambda peer: peer.closed == 1)  # the connection was closed, not reused
    c.quit()


def test_per_request_timeout(clients, peers):
    def handler(peer, sock, index):
        buf = b""
        while True:
            got = read_head(sock, buf)
            if got is None:
                return
            method, target, headers, buf = got
            peer.note(method, target, headers)
            if target == "/slow":
                while sock.recv(65536):
                    pass
                return
            respond(sock, 200, b"fast")
    p = peers(handler)
    c = clients(p.upstream, "--timeout-ms", 0)  # no pool-wide timeout
    assert c.request("f", "GET", "/fast", "timeout=60000")["result"] == "ok"
    d = c.request("s", "GET", "/slow", "timeout=200")
    assert d["result"] == "timeout", d
    c.quit()


def test_bad_response(clients, peers):
    def handler(peer, sock, index):
        read_head(sock, b"")
        sock.sendall(b"HTTP/1.1 abc nonsense\r\n\r\n")
        while sock.recv(65536):
            pass
    p = peers(handler)
    c = clients(p.upstream)
    d = c.request("b")
    assert d["result"] == "bad_response", d
    c.quit()


def test_head_over_bound_is_bad_response(clients, peers):
    def handler(peer, sock, index):
        read_head(sock, b"")
        sock.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
        while sock.recv(65536):
            pass
    p = peers(handler)
    c = clients(p.upstream)
    assert c.request("b")["result"] == "bad_response"
    c.quit()


def test_header_count_over_bound_is_bad_response(clients, peers):
    def handler(peer, sock, index):
        read_head(sock, b"")
        # 20 KB of head, under the 64 KiB bound, but 5,000 headers.
        sock.sendall(b"HTTP/1.1 200 OK\r\n" + b"a:\r\n" * 5000 + b"\r\n")
        while sock.recv(65536):
            pass
    p = peers(handler)
    c = clients(p.upstream)
    assert c.request("b")["result"] == "bad_response"
    c.quit()


def test_cancel(clients, peers):
    def handler(peer, sock, index):
        buf = b""
        while True:
            got = read_head(sock, buf)
            if got is None:
                return
            method, target, headers, buf = got
            peer.note(method, target, headers)
            if target == "/hang":
                while sock.recv(65536):
                    pass
                return
            respond(sock, 200, b"ok")
    p = peers(handler)
    c = clients(p.upstream)
    c.send("req h GET /hang")
    p.wait_for(lambda peer: len(peer.requests) == 1)
    c.send("cancel h")
    assert c.done("h")["result"] == "canceled"
    p.wait_for(lambda peer: peer.closed == 1)  # its connection was closed
    d = c.request("n", "GET", "/next", "keep=1")
    assert (d["result"], d["body"]) == ("ok", "ok"), d
    assert p.accepted == 2
    c.quit()


def test_cancel_queued_and_pool_free(clients, peers):
    def handler(peer, sock, index):
        got = read_head(sock, b"")
        if got is None:
            return
        peer.note(*got[:3])
        while sock.recv(65536):
            pass
    p = peers(handler)
    c = clients(p.upstream, "--max-conns", 1)
    c.send("req a GET /")
    c.send("req b GET /")
    p.wait_for(lambda peer: len(peer.requests) == 1)
    c.send("cancel b")
    assert c.done("b")["result"] == "canceled"
    # Freeing the pool ends the request in flight, then closes every handle.
    c.send("quit")
    assert c.done("a")["result"] == "canceled"
    c.wait(lambda e: e["event"] == "freed")
    assert c.proc.wait() == 0


# ---- Bodies ----

def test_chunked_response(clients, peers):
    pieces = [b"alpha-", b"", b"beta-" * 1000, b"gamma"]

    def handler(peer, sock, index):
        buf = b""
        while True:
            got = read_head(sock, buf)
            if got is None:
                return
            buf = got[3]
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                         b"X-Kind: chunked\r\n\r\n")
            for piece in pieces:
                if piece:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\nX-Trailer: t\r\n\r\n")
    p = peers(handler)
    c = clients(p.upstream)
    for i in range(2):
        d = c.request("c%d" % i, "GET", "/", "keep=1")
        assert d["result"] == "ok", d
        assert d["body"].encode() == b"".join(pieces)
        h = c.head("c%d" % i)
        assert ["X-Kind", "chunked"] in h["headers"]
    assert p.accepted == 1
    c.quit()


def test_informational_head_is_skipped(clients, peers):
    def handler(peer, sock, index):
        read_head(sock, b"")
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nhi")
        while sock.recv(65536):
            pass
    p = peers(handler)
    c = clients(p.upstream)
    d = c.request("i", "POST", "/", "data=x", "keep=1")
    assert (d["result"], d["status"], d["body"]) == ("ok", 201, "hi"), d
    assert [e["status"] for e in c.events if e["event"] == "head"] == [201]
    c.quit()


def test_body_until_close(clients, peers):
    def handler(peer, sock, index):
        read_head(sock, b"")
        sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end")
    p = peers(handler)
    c = clients(p.upstream)
    d = c.request("e", "GET", "/", "keep=1")
    assert (d["result"], d["body"]) == ("ok", "to the end"), d
    c.quit()


def test_body_ended_by_close_is_never_reused(clients, peers):
    """http-parser reads a 204 with a non-chunked Transfer-Encoding until EOF, yet calls
    it keep-alive: a response that the close ended must not leave its connection idle
    (found by fuzzing: the next request waited on a dead connection)."""
    def handler(peer, sock, index):
        read_head(sock, b"")
        sock.sendall(b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: gzip\r\n\r\nxyz")
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    p = peers(handler)
    c = clients(p.upstream)
    for i in range(2):
        d = c.request("e%d" % i)
        assert (d["result"], d["status"]) == ("ok", 204), d
    assert p.accepted == 2
    assert c.stats()["reuses"] == 0
    c.quit()


def test_head_request_has_no_body(clients, peers):
    def handler(peer, sock, index):
        buf = b""
        while True:
            got = read_head(sock, buf)
            if got is None:
                return
            buf = got[3]
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    p = peers(handler)
    c = clients(p.upstream)
    for i in range(2):
        d = c.request("h%d" % i, "HEAD", "/")
        assert (d["result"], d["bytes"]) == ("ok", 0), d
    assert p.accepted == 1
    c.quit()


@pytest.mark.parametrize("chunked", [0, 1])
def test_streamed_64mib_request_body(clients, peers, chunked):
    size = 64 * MiB
    p = peers(keepalive_handler)
    c = clients(p.upstream)
    opts = ["body=%d" % size, "keep=1", "piece=%d" % (256 * 1024)]
    if chunked:
        opts.append("chunked=1")
    d = c.request("big", "POST", "/upload", *opts)
    assert (d["result"], d["status"], d["sent"]) == ("ok", 200, size), d
    got = body_of(d)
    assert got["len"] == size
    assert got["sum"] == sum(pattern(0, size))
    framing = p.requests[0][2]
    if chunked:
        assert framing["transfer-encoding"] == "chunked" and "content-length" not in framing
    else:
        assert framing["content-length"] == str(size)
    # Streamed under backpressure: writes waited for on_drain, the client never held the body.
    assert d["drain_waits"] > 0, d
    assert d["rss_kb"] < 32 * 1024, d
    # And the connection stays good for the next request.
    assert c.request("after", "GET", "/")["result"] == "ok"
    assert p.accepted == 1
    c.quit()


def test_early_answer_while_streaming(clients, peers):
    """The server answers 413 before reading the body (and drains, as servers do): the
    request ends with that answer, and its connection is not reused."""
    def handler(peer, sock, index):
        buf = b""
        while True:
            got = read_head(sock, buf)
            if got is None:
                return
            method, target, headers, rest = got
            peer.note(method, target, headers)
            if target == "/big":
                respond(sock, 413, b"too large", ["Connection: close"])
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(1 << 20):
                    pass
                return
            _, _, _, buf = read_body(sock, headers, rest, keep=False)
            respond(sock, 200, b"small")
    p = peers(handler)
    c = clients(p.upstream)
    d = c.request("big", "POST", "/big", "body=%d" % (64 * MiB), "keep=1")
    assert (d["result"], d["status"], d["body"]) == ("ok", 413, "too large"), d
    assert d["sent"] < 64 * MiB  # the client stopped before the end of its body
    d = c.request("next", "POST", "/small", "data=x", "keep=1")
    assert (d["result"], d["body"]) == ("ok", "small"), d
    assert p.accepted == 2
    c.quit()


def test_streamed_64mib_response_body(clients, peers):
    size = 64 * MiB
    block = pattern(0, 251 * 4096)

    def handler(peer, sock, index):
        read_head(sock, b"")
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        left = size
        while left:
            piece = block[:min(left, len(block))]
            sock.sendall(piece)
            left -= len(piece)
        while sock.recv(65536):
            pass
    p = peers(handler)
    c = clients(p.upstream)
    d = c.request("big")
    assert (d["result"], d["bytes"]) == ("ok", size), d
    assert d["sum"] == sum(block) * (size // len(block)) + sum(block[:size % len(block)])
    assert d["rss_kb"] < 32 * 1024, d
    c.quit()


def test_pause_stops_reading(clients, peers):
    """While paused, the client reads nothing: the peer's sends fill the socket buffers
    and stop, well short of the body; after resume everything arrives."""
    size = 64 * MiB
    state = {}
    sent_before_resume = threading.Event()

    def handler(peer, sock, index):
        read_head(sock, b"")
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        peer.release.wait()  # the client has paused
        sock.setblocking(False)
        block = b"z" * 65536
        sent = 0
        while True:
            try:
                sent += sock.send(block[:min(len(block), size - sent)])
            except BlockingIOError:
                break
        state["sent"] = sent
        sent_before_resume.set()
        sock.setblocking(True)
        while sent < size:
            sent += sock.send(block[:min(len(block), size - sent)])
        while sock.recv(65536):
            pass
    p = peers(handler)
    c = clients(p.upstream)
    c.send("req p GET / pause=1")
    c.wait(lambda e: e["event"] == "paused" and e["id"] == "p")
    p.release.set()
    assert sent_before_resume.wait(60)
    assert state["sent"] < 16 * MiB, state
    c.send("resume p")
    d = c.done("p")
    assert (d["result"], d["bytes"]) == ("ok", size), d
    c.quit()


# ---- Retry on a stale keep-alive connection ----

def stale_handler(peer, sock, index):
    """On the first connection: answers one request, then closes on the second
    without answering (the server dropped its idle keep-alive connection just as the
    request went out). Later connections answer everything."""
    buf = b""
    served = 0
    while True:
        got = read_head(sock, buf)
        if got is None:
            return
        method, target, headers, rest = got
        peer.note(method, target, headers)
        if index == 0 and served == 1:
            return
        _, n, s, buf = read_body(sock, headers, rest, keep=False)
        respond(sock, 200, json.dumps({"conn": index, "len": n, "sum": s}).encode())
        served += 1


def test_retry_on_stale_idle_connection(clients, peers):
    p = peers(stale_handler)
    c = clients(p.upstream)
    assert c.request("a", "GET", "/a")["result"] == "ok"
    d = c.request("b", "POST", "/b", "data=payload", "keep=1")
    assert (d["result"], d["status"]) == ("ok", 200), d
    assert body_of(d) == {"conn": 1, "len": 7, "sum": sum(b"payload")}
    assert [r[1] for r in p.requests] == ["/a", "/b", "/b"]
    assert p.accepted == 2
    s = c.stats()
    assert s["retries"] == 1, s
    c.quit()


def test_no_replay_of_a_body_larger_than_the_bound(clients, peers):
    p = peers(stale_handler)
    c = clients(p.upstream, "--write-limit", 65536)
    assert c.request("a", "GET", "/a")["result"] == "ok"
    d = c.request("b", "POST", "/b", "body=%d" % (4 * MiB))
    assert d["result"] == "reset", d
    assert c.stats()["retries"] == 0
    c.quit()


def test_bad_upstream_is_refused():
    import subprocess
    for bad in ["localhost:80", "127.0.0.1", "127.0.0.1:0", "[::1:80", "1.2.3.4:99999"]:
        p = subprocess.run([TESTD, "--upstream", bad], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=30)
        assert p.returncode == 2, bad
        assert b"invalid" in p.stderr, p.stderr


def test_ipv6_upstream(clients):
    try:
        lsock = socket.socket(socket.AF_INET6)
        lsock.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    lsock.listen(8)
    port = lsock.getsockname()[1]

    def serve():
        sock, _ = lsock.accept()
        got = read_head(sock, b"")
        respond(sock, 200, got[2]["host"].encode())
        while sock.recv(65536):
            pass
        sock.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    c = clients("[::1]:%d" % port)
    d = c.request("v6", "GET", "/", "keep=1")
    assert (d["result"], d["body"]) == ("ok", "[::1]:%d" % port), d
    c.quit()
    lsock.close()


def test_help():
    import subprocess
    p = subprocess.run([TESTD, "--help"], capture_output=True, timeout=30)
    assert p.returncode == 0 and p.stdout.startswith(b"usage: client_testd")


def test_mixed_load_with_cancels_and_timeouts(clients, peers):
    """Many requests at once over a small pool, some canceled, some timing out, some
    streaming bodies, against a peer that answers at uneven speed: every request ends
    exactly once and the pool ends empty (under ASan, also free of memory errors)."""
    import random
    rnd = random.Random(11)

    def handler(peer, sock, index):
        buf = b""
        r = random.Random(index)
        while True:
            got = read_head(sock, buf)
            if got is None:
                return
            method, target, headers, rest = got
            _, n, _, buf = read_body(sock, headers, rest, keep=False)
            if target.startswith("/stall"):
                while sock.recv(65536):
                    pass
                return
            if r.random() < 0.3:
                threading.Event().wait(r.random() / 500)  # an uneven server, not a test wait
            if target.startswith("/close"):
                respond(sock, 200, b"x" * n, ["Connection: close"])
                return
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"%x\r\n%s\r\n0\r\n\r\n" % (n + 1, b"y" * (n + 1)))
    p = peers(handler)
    c = clients(p.upstream, "--max-conns", 6, "--max-idle", 3, "--max-queued", 400)
    expected = {}
    for i in range(300):
        rid = "m%d" % i
        kind = rnd.choice(["plain", "plain", "body", "close", "stall", "cancel"])
        if kind == "plain":
            c.send("req %s GET /p%d" % (rid, i))
            expected[rid] = {"ok"}
        elif kind == "body":
            c.send("req %s POST /b%d body=%d piece=4096 %s" % (
                rid, i, rnd.randrange(0, 300000), rnd.choice(["", "chunked=1"])))
            expected[rid] = {"ok"}
        elif kind == "close":
            c.send("req %s POST /close%d data=abc" % (rid, i))
            expected[rid] = {"ok"}
        elif kind == "stall":
            c.send("req %s GET /stall%d timeout=%d" % (rid, i, rnd.randrange(1, 50)))
            expected[rid] = {"timeout"}
        else:
            c.send("req %s GET /stall%d" % (rid, i))
            c.send("cancel %s" % rid)
            expected[rid] = {"canceled"}
    for rid, want in expected.items():
        d = c.done(rid)
        assert d["result"] in want, d
    assert sum(1 for e in c.events if e["event"] == "done") == len(expected)
    s = c.stats()
    assert (s["active"], s["queued"]) == (0, 0), s
    assert s["open"] <= 6, s
    c.quit()
