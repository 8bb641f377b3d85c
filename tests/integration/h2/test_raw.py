"""The h2c server against hand-made frames: limits and bad input.

A few HTTP/2 frames are built here (HPACK literals without indexing, no Huffman), enough to
send what a well-behaved library never would.
"""
import socket
import struct
import time

from conftest import GUARD, HOST, start_proxy

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, CONTINUATION = 0, 1, 3, 4, 6, 7, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack(headers):
    """Literal header fields without indexing, new names, raw strings."""
    out = b""
    for name, value in headers:
        name, value = name.encode(), value.encode()
        out += b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value
    return out


def header_frames(stream, headers, end_stream):
    block = hpack(headers)
    chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)] or [b""]
    out = b""
    for i, chunk in enumerate(chunks):
        flags = (END_HEADERS if i == len(chunks) - 1 else 0)
        if i == 0:
            out += frame(HEADERS, flags | (END_STREAM if end_stream else 0), stream, chunk)
        else:
            out += frame(CONTINUATION, flags, stream, chunk)
    return out


def grpc_request(stream, path, extra=()):
    hs = [(":method", "POST"), (":scheme", "http"), (":path", path),
          (":authority", "test"), ("content-type", "application/grpc"), ("te", "trailers"),
          *extra]
    # An empty message: compressed flag 0, length 0.
    return header_frames(stream, hs, False) + frame(DATA, END_STREAM, stream, b"\x00" * 5)


class Conn:
    def __init__(self, port, ack=True):
        self.sock = socket.create_connection((HOST, port), timeout=GUARD)
        self.buf = b""
        self.ack = ack
        self.seen = []  # types of the frames received
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))

    def send(self, data):
        self.sock.sendall(data)

    def next_frame(self):
        """(type, flags, stream, payload), or None at EOF."""
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        n = int.from_bytes(self.buf[:3], "big")
        ftype, flags = self.buf[3], self.buf[4]
        stream = struct.unpack(">I", self.buf[5:9])[0] & 0x7fffffff
        payload = self.buf[9:9 + n]
        self.buf = self.buf[9 + n:]
        self.seen.append(ftype)
        if ftype == SETTINGS and not flags & ACK and self.ack:
            self.send(frame(SETTINGS, ACK, 0))
        return ftype, flags, stream, payload

    def wait_stream_end(self, stream):
        """Frames until stream ends (END_STREAM or RST_STREAM): returns the last one."""
        deadline = time.monotonic() + GUARD
        while time.monotonic() < deadline:
            f = self.next_frame()
            assert f is not None, "connection closed"
            ftype, flags, sid, _ = f
            if sid == stream and (ftype == RST_STREAM or
                                  (ftype in (HEADERS, DATA) and flags & END_STREAM)):
                return f
        raise AssertionError("stream did not end")

    def close(self):
        self.sock.close()


LIVE = "/inference.GRPCInferenceService/ServerLive"


def test_plain_request(proxy):
    c = Conn(proxy.port)
    try:
        c.send(grpc_request(1, LIVE))
        ftype, flags, _, _ = c.wait_stream_end(1)
        assert ftype == HEADERS and flags & END_STREAM  # trailers
    finally:
        c.close()


def test_header_list_over_limit_resets_the_stream_only(proxy):
    """80 KiB of metadata in 2 KiB fields (each under HPACK's own limits) is over the
    advertised 64 KiB list size: that stream is reset, the connection serves on."""
    c = Conn(proxy.port)
    try:
        big = [(f"x-big-{i}", "v" * 2048) for i in range(40)]
        c.send(grpc_request(1, LIVE, big))
        ftype, _, _, payload = c.wait_stream_end(1)
        assert ftype == RST_STREAM, ftype
        c.send(grpc_request(3, LIVE))
        ftype, flags, _, _ = c.wait_stream_end(3)
        assert ftype == HEADERS and flags & END_STREAM
    finally:
        c.close()


def test_garbage_closes_that_connection_only(proxy):
    # No SETTINGS ack: nothing of ours may arrive after the server closed, or its kernel
    # would answer with a reset that can overtake the GOAWAY.
    c = Conn(proxy.port, ack=False)
    try:
        c.send(b"\xff" * 64)
        saw_goaway = False
        while True:
            f = c.next_frame()
            if f is None:
                break
            saw_goaway = saw_goaway or f[0] == GOAWAY
        assert saw_goaway
    finally:
        c.close()
    # Others are served.
    c = Conn(proxy.port)
    try:
        c.send(grpc_request(1, LIVE))
        ftype, flags, _, _ = c.wait_stream_end(1)
        assert ftype == HEADERS and flags & END_STREAM
    finally:
        c.close()


def test_max_concurrent_streams_advertised(proxy):
    c = Conn(proxy.port)
    try:
        ftype, flags, _, payload = c.next_frame()
        assert ftype == SETTINGS and not flags & ACK
        settings = {struct.unpack(">H", payload[i:i + 2])[0]:
                    struct.unpack(">I", payload[i + 2:i + 6])[0]
                    for i in range(0, len(payload), 6)}
        assert settings[0x3] == 100        # MAX_CONCURRENT_STREAMS
        assert settings[0x6] == 64 << 10   # MAX_HEADER_LIST_SIZE
        assert settings[0x4] == 256 << 10  # INITIAL_WINDOW_SIZE
    finally:
        c.close()


def test_idle_connection_gets_goaway_and_closes(server):
    """A connection with no stream for --idle-timeout-ms gets GOAWAY, then EOF; one with a
    stream open all that time is not cut."""
    proxy = start_proxy(server.grpc, "--idle-timeout-ms", "500", adopt=True)
    try:
        busy = Conn(proxy.port)
        # A ModelStreamInfer stream, left open; the PING's answer shows it was processed.
        busy.send(header_frames(1, [(":method", "POST"), (":scheme", "http"),
                                    (":path", "/inference.GRPCInferenceService/ModelStreamInfer"),
                                    (":authority", "test"), ("content-type", "application/grpc"),
                                    ("te", "trailers")], False))
        busy.send(frame(PING, 0, 0, b"12345678"))
        while True:
            f = busy.next_frame()
            assert f is not None
            if f[0] == PING and f[1] & ACK:
                break
        idle = Conn(proxy.port, ack=False)
        try:
            frames = []
            while True:
                f = idle.next_frame()
                if f is None:
                    break
                frames.append(f[0])
            assert GOAWAY in frames, frames
        finally:
            idle.close()
        # The idle one was cut after the busy stream opened; the busy one still works.
        busy.send(frame(DATA, END_STREAM, 1, b"\x00" * 5))
        ftype, flags, _, _ = busy.wait_stream_end(1)
        assert ftype == HEADERS and flags & END_STREAM
        assert GOAWAY not in busy.seen, busy.seen
        # Its timer lapsed while the stream was open; once idle, it is cut in its turn.
        while busy.next_frame() is not None:
            pass
        assert GOAWAY in busy.seen, busy.seen
        busy.close()
    finally:
        proxy.stop()
