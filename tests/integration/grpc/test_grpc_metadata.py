"""gRPC metadata through the transport: request metadata read as a list,
response initial and trailing metadata set per call (x-seldon-route), with
the status and its message, on unary calls and streams. See grpc_testd.c."""
import grpc
import pytest

from test_grpc import WAIT, infer, open_channel, Daemon, SVC

pytestmark = pytest.mark.usefixtures()


@pytest.fixture(scope="module")
def daemon():
    d = Daemon("--threads", "2")
    yield d
    assert d.stop() == 0


@pytest.fixture(scope="module")
def channel(daemon):
    ch = open_channel(daemon)
    yield ch
    ch.close()


def test_unary_initial_and_trailing_metadata(channel):
    call = channel.unary_unary(SVC + "ModelInfer", request_serializer=None,
                               response_deserializer=None)
    body, state = call.with_call(b"hello", metadata=[("x-route", ":iris_1:"), ("a-key", "1"),
                                                     ("z-key", "2")], timeout=WAIT)
    assert body == b"hello"
    initial = dict(state.initial_metadata())
    assert initial["x-seldon-route"] == ":iris_1:"
    keys = initial["x-request-keys"].split(",")
    # The client's own entries, in the order sent, among gRPC's (user-agent...).
    mine = [k for k in keys if k in ("x-route", "a-key", "z-key")]
    assert mine == ["x-route", "a-key", "z-key"], keys
    assert "user-agent" in keys
    assert int(initial["x-bad-key-rc"]) < 0  # an invalid key is refused, not sent
    assert "bad key" not in initial
    assert dict(state.trailing_metadata())["x-trailer"] == "done"
    assert state.code() == grpc.StatusCode.OK


def test_metadata_with_a_failure_status(channel):
    with pytest.raises(grpc.RpcError) as err:
        infer(channel, b"x", metadata=[("x-route", "r2"), ("x-fail", "5")])
    e = err.value
    assert e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "failing as asked"
    assert dict(e.initial_metadata())["x-seldon-route"] == "r2"
    assert dict(e.trailing_metadata())["x-trailer"] == "done"


def test_no_metadata_asked_none_sent(channel):
    call = channel.unary_unary(SVC + "ModelInfer", request_serializer=None,
                               response_deserializer=None)
    _, state = call.with_call(b"plain", timeout=WAIT)
    assert "x-seldon-route" not in dict(state.initial_metadata())
    assert "x-trailer" not in dict(state.trailing_metadata())


def test_stream_metadata(channel):
    call = channel.stream_stream(SVC + "ModelStreamInfer", request_serializer=None,
                                 response_deserializer=None)
    replies = call(iter([b"a", b"b", b"c"]), metadata=[("x-route", "s1")], timeout=WAIT)
    assert list(replies) == [b"a", b"b", b"c"]
    assert dict(replies.initial_metadata())["x-seldon-route"] == "s1"
    assert dict(replies.trailing_metadata())["x-trailer"] == "done"
    assert replies.code() == grpc.StatusCode.OK
