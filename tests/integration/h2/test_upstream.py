"""The client side against an upstream that misbehaves on purpose: a hand-made h2c server
answers each request with RST_STREAM, GOAWAY, garbage, or a trailers-only status. Each
failure reaches the grpcio client as its own status and reason, through h2_testd."""
import socket
import struct
import threading

import pytest

from conftest import GUARD, HOST, start_proxy
from test_raw import (ACK, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PREFACE, RST_STREAM,
                      SETTINGS, frame, hpack)


class FakeUpstream:
    """Accepts h2c connections; on each request's HEADERS, calls answer(sock, stream)."""

    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.threads = []
        self.stop = False
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def _accept(self):
        self.sock.settimeout(0.1)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, c):
        c.settimeout(GUARD)
        buf = b""
        try:
            while len(buf) < len(PREFACE):
                data = c.recv(65536)
                if not data:
                    return
                buf += data
            assert buf.startswith(PREFACE)
            buf = buf[len(PREFACE):]
            c.sendall(frame(SETTINGS, 0, 0))
            while True:
                while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                    data = c.recv(65536)
                    if not data:
                        return
                    buf += data
                n = int.from_bytes(buf[:3], "big")
                ftype, flags = buf[3], buf[4]
                stream = struct.unpack(">I", buf[5:9])[0] & 0x7fffffff
                buf = buf[9 + n:]
                if ftype == SETTINGS and not flags & ACK:
                    c.sendall(frame(SETTINGS, ACK, 0))
                elif ftype == HEADERS:
                    self.requests += 1
                    if self.answer(c, stream) == "close":
                        return
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.sock.close()


def call_live(g, proxy):
    channel, stub = g.stub(proxy.target)
    with channel:
        with pytest.raises(g.grpc.RpcError) as e:
            stub.ServerLive(g.pb2.ServerLiveRequest(), timeout=GUARD)
    return e.value


def route_of(err):
    md = dict(err.initial_metadata() or ())
    md.update(dict(err.trailing_metadata() or ()))
    return md.get("x-seldon-route")


def run(g, answer):
    up = FakeUpstream(answer)
    proxy = start_proxy(up.port)
    try:
        err = call_live(g, proxy)
        assert up.requests >= 1  # the request did reach the upstream
        assert route_of(err) == proxy.route
        return err
    finally:
        proxy.stop()
        up.close()


def test_rst_stream_from_upstream(g):
    def answer(c, stream):
        c.sendall(frame(RST_STREAM, 0, stream, struct.pack(">I", 0x2)))  # INTERNAL_ERROR
    err = run(g, answer)
    assert err.code() == g.grpc.StatusCode.UNAVAILABLE
    assert "stream reset by peer" in err.details()


def test_goaway_before_processing(g):
    def answer(c, stream):
        # Last stream 0, NO_ERROR; the connection stays open: the proxy closes it.
        c.sendall(frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
    err = run(g, answer)
    assert err.code() == g.grpc.StatusCode.UNAVAILABLE
    assert "going away" in err.details()


def test_garbage_from_upstream(g):
    def answer(c, stream):
        c.sendall(b"\xff" * 64)
    err = run(g, answer)
    assert err.code() == g.grpc.StatusCode.UNAVAILABLE
    assert "connection closed" in err.details() or "protocol error" in err.details()


def test_upstream_trailers_only_status_passes_through(g):
    def answer(c, stream):
        block = hpack([(":status", "200"), ("content-type", "application/grpc"),
                       ("grpc-status", "7"), ("grpc-message", "denied here"),
                       ("x-upstream", "fake")])
        c.sendall(frame(HEADERS, END_HEADERS | END_STREAM, stream, block))
    err = run(g, answer)
    assert err.code() == g.grpc.StatusCode.PERMISSION_DENIED
    assert err.details() == "denied here"
    md = dict(err.trailing_metadata() or ())
    assert md.get("x-upstream") == "fake"


def run_forward_only(g, answer):
    up = FakeUpstream(answer)
    proxy = start_proxy(up.port, "--forward-only")
    try:
        err = call_live(g, proxy)
        assert up.requests >= 1
        return err
    finally:
        proxy.stop()
        up.close()


def test_forward_only_passes_a_valid_answer(g):
    def answer(c, stream):
        block = hpack([(":status", "200"), ("content-type", "application/grpc"),
                       ("grpc-status", "7"), ("grpc-message", "denied here")])
        c.sendall(frame(HEADERS, END_HEADERS | END_STREAM, stream, block))
    err = run_forward_only(g, answer)
    assert err.code() == g.grpc.StatusCode.PERMISSION_DENIED
    assert err.details() == "denied here"


@pytest.mark.parametrize("fields", [
    [("content-type", "application/grpc"), ("grpc-status", "7")],            # no :status
    [("content-type", "application/grpc"), (":status", "200"), ("grpc-status", "7")],
    [(":status", "2000"), ("grpc-status", "7")],
    [(":status", "abc"), ("grpc-status", "7")],
])
def test_forward_only_still_requires_status_first(g, fields):
    """Without nghttp2's HTTP checks, an answer that does not open with a 3-digit
    :status is still refused as a protocol error, never forwarded."""
    def answer(c, stream):
        c.sendall(frame(HEADERS, END_HEADERS | END_STREAM, stream, hpack(fields)))
    err = run_forward_only(g, answer)
    assert err.code() != g.grpc.StatusCode.PERMISSION_DENIED
    assert err.code() == g.grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())


def test_forward_only_lowers_upper_case_names(g):
    """A field name in upper case (which HTTP/2 does not allow) from an upstream whose
    answers are only forwarded still reaches the client, lowered: the transport hands
    nghttp2 its names uncopied only when they are already lower case."""
    def answer(c, stream):
        block = hpack([(":status", "200"), ("content-type", "application/grpc"),
                       ("X-Upstream-Tag", "kept"), ("x-upstream-LONG-NAME-over-8", "too"),
                       ("grpc-status", "7"), ("grpc-message", "denied here")])
        c.sendall(frame(HEADERS, END_HEADERS | END_STREAM, stream, block))
    err = run_forward_only(g, answer)
    assert err.code() == g.grpc.StatusCode.PERMISSION_DENIED, (err.code(), err.details())
    md = dict(err.initial_metadata() or ())
    md.update(dict(err.trailing_metadata() or ()))
    assert md.get("x-upstream-tag") == "kept", md
    assert md.get("x-upstream-long-name-over-8") == "too", md
