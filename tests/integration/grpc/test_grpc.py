"""The gRPC transport (daemons/common/grpc_server.c) against grpcio, through grpc_testd.

grpc_testd serves ServerLive, an echoing ModelInfer (x-fail / x-delay-ms metadata change
its answer) and an echoing ModelStreamInfer. Payloads are raw bytes: the transport does
not look inside messages, so neither do these tests.
"""

import os
import queue
import signal
import subprocess
import threading
from concurrent import futures

import grpc
import pytest

TESTD = os.environ.get("GRPC_TESTD")
SVC = "/inference.GRPCInferenceService/"
MAX_MESSAGE = 2 * 1024 * 1024
WAIT = 30  # seconds; a guard against hangs, never what a test measures

pytestmark = pytest.mark.skipif(not TESTD, reason="GRPC_TESTD is not set (run through CTest)")


class Daemon:
    """grpc_testd on a free loopback port; its stdout lines are collected by a thread."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([TESTD, "--port", "0", *args], stdout=subprocess.PIPE,
                                     text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        line = self.wait_line("listening on ")
        self.port = int(line.split()[-1])
        self.address = f"127.0.0.1:{self.port}"

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def wait_line(self, prefix):
        while True:
            try:
                line = self.lines.get(timeout=WAIT)
            except queue.Empty:
                pytest.fail(f"grpc_testd printed no line starting with {prefix!r}")
            if line is None:
                pytest.fail(f"grpc_testd exited ({self.proc.wait()}) before {prefix!r}")
            if line.startswith(prefix):
                return line

    def drain(self):
        while True:
            try:
                self.lines.get_nowait()
            except queue.Empty:
                return

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("grpc_testd did not stop on SIGTERM")


def open_channel(daemon):
    return grpc.insecure_channel(daemon.address, options=[
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ])


def unary(channel, method):
    return channel.unary_unary(SVC + method, request_serializer=None,
                               response_deserializer=None)


def infer(channel, payload, metadata=None, timeout=WAIT):
    return unary(channel, "ModelInfer")(payload, metadata=metadata, timeout=timeout)


@pytest.fixture(scope="module")
def daemon():
    d = Daemon("--threads", "4", "--max-message", str(MAX_MESSAGE))
    yield d
    assert d.stop() == 0


@pytest.fixture(scope="module")
def channel(daemon):
    ch = open_channel(daemon)
    yield ch
    ch.close()


def assert_serving(channel):
    assert unary(channel, "ServerLive")(b"", timeout=WAIT) == b"\x08\x01"
    assert infer(channel, b"still here") == b"still here"


def test_server_live(channel):
    assert unary(channel, "ServerLive")(b"", timeout=WAIT) == b"\x08\x01"


def test_echo_small_and_empty(channel):
    assert infer(channel, b"\x00\x01hello") == b"\x00\x01hello"
    assert infer(channel, b"") == b""


def test_echo_one_megabyte(channel):
    payload = os.urandom(1024 * 1024)
    assert infer(channel, payload) == payload


def test_echo_compressed_request(channel):
    # gRPC core inflates the request before the handler sees it.
    payload = b"compress me " * 10000
    reply = unary(channel, "ModelInfer")(payload, timeout=WAIT, compression=grpc.Compression.Gzip)
    assert reply == payload


def test_over_max_message_is_resource_exhausted(channel):
    with pytest.raises(grpc.RpcError) as err:
        infer(channel, b"x" * (MAX_MESSAGE + 1))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_serving(channel)


def test_unknown_method_is_unimplemented(channel):
    for path in (SVC + "NoSuchMethod", "/other.Service/ModelInfer"):
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary(path)(b"abc", timeout=WAIT)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert_serving(channel)


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                                  grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL])
def test_failure_status_and_message(channel, code):
    with pytest.raises(grpc.RpcError) as err:
        infer(channel, b"abc", metadata=(("x-fail", str(code.value[0])),))
    assert err.value.code() == code
    assert err.value.details() == "failing as asked"


def test_delayed_replies_from_another_thread(channel):
    calls = [(f"delayed-{ms}".encode(), ms) for ms in (300, 200, 100, 0)]
    pending = [unary(channel, "ModelInfer").future(
        payload, metadata=(("x-delay-ms", str(ms)),), timeout=WAIT) for payload, ms in calls]
    assert [f.result() for f in pending] == [payload for payload, _ in calls]


def test_many_threads_many_concurrent_calls(daemon):
    ch = open_channel(daemon)
    method = unary(ch, "ModelInfer")

    def worker(t):
        payloads = [f"{t}:{i}:".encode() * (1 + (i * 7) % 50) for i in range(200)]
        pending = [method.future(p, timeout=WAIT) for p in payloads]
        return sum(f.result() == p for f, p in zip(pending, payloads))

    try:
        with futures.ThreadPoolExecutor(8) as pool:
            assert list(pool.map(worker, range(8))) == [200] * 8
    finally:
        ch.close()


def test_stream_echo_in_order(channel):
    messages = [f"message {i}".encode() * (i + 1) for i in range(50)]
    stream = channel.stream_stream(SVC + "ModelStreamInfer", request_serializer=None,
                                   response_deserializer=None)
    assert list(stream(iter(messages), timeout=WAIT)) == messages


def test_stream_without_messages(channel):
    stream = channel.stream_stream(SVC + "ModelStreamInfer")
    assert list(stream(iter([]), timeout=WAIT)) == []


def test_streams_side_by_side(channel):
    stream = channel.stream_stream(SVC + "ModelStreamInfer")

    def one(k):
        messages = [f"s{k}-{i}".encode() for i in range(50)]
        return list(stream(iter(messages), timeout=WAIT)) == messages

    with futures.ThreadPoolExecutor(4) as pool:
        assert all(pool.map(one, range(8)))


def test_stream_failure_after_first_message(channel):
    stream = channel.stream_stream(SVC + "ModelStreamInfer")
    got = []
    with pytest.raises(grpc.RpcError) as err:
        for reply in stream(iter([b"one", b"two", b"three"]), metadata=(("x-fail", "9"),),
                            timeout=WAIT):
            got.append(reply)
    assert got == [b"one"]
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == "failing as asked"


def test_stream_answered_from_another_thread(channel):
    # The client half-closes long before the last echo: status OK must wait for the holds.
    messages = [f"async {i}".encode() for i in range(20)]
    stream = channel.stream_stream(SVC + "ModelStreamInfer")
    replies = stream(iter(messages), metadata=(("x-delay-ms", "50"),), timeout=WAIT)
    assert list(replies) == messages
    assert replies.code() == grpc.StatusCode.OK


def test_stream_cancelled_mid_way(daemon, channel):
    stream = channel.stream_stream(SVC + "ModelStreamInfer")
    replies = stream(iter([b"x" * 1000] * 200), metadata=(("x-delay-ms", "20"),), timeout=WAIT)
    assert next(replies) == b"x" * 1000
    replies.cancel()
    assert_serving(channel)


def test_client_deadline_and_cancel(daemon, channel):
    # The deadline passes while the server still holds the call; its late reply is dropped.
    with pytest.raises(grpc.RpcError) as err:
        infer(channel, b"late", metadata=(("x-delay-ms", "500"),), timeout=0.1)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    # An explicit cancel once the server has the call.
    daemon.drain()
    fut = unary(channel, "ModelInfer").future(b"cancelled", metadata=(("x-delay-ms", "300"),),
                                              timeout=WAIT)
    daemon.wait_line("delaying ")
    assert fut.cancel()
    assert_serving(channel)

    # Serving still works after the delay thread answered both dead calls.
    slow = infer(channel, b"after", metadata=(("x-delay-ms", "600"),))
    assert slow == b"after"
    assert_serving(channel)


def test_second_server_on_same_port_fails(daemon):
    proc = subprocess.run([TESTD, "--port", str(daemon.port)], capture_output=True, text=True,
                          timeout=WAIT)
    assert proc.returncode == 1
    assert "cannot listen" in proc.stderr


def test_sigterm_lets_call_in_flight_finish():
    d = Daemon("--threads", "2")
    ch = open_channel(d)
    try:
        fut = unary(ch, "ModelInfer").future(b"in flight", metadata=(("x-delay-ms", "500"),),
                                             timeout=WAIT)
        d.wait_line("delaying ")
        d.proc.send_signal(signal.SIGTERM)
        assert fut.result() == b"in flight"
        assert d.stop() == 0
    finally:
        ch.close()
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
