"""inference.GRPCInferenceService of seldon-server, through grpcio stubs generated
from our own proto: every method."""
import subprocess

import numpy as np
import pytest

from conftest import GUARD, SERVER, wait_metric


def test_server_live_ready(g, samples_grpc):
    assert samples_grpc.ServerLive(g.pb2.ServerLiveRequest(), timeout=GUARD).live is True
    assert samples_grpc.ServerReady(g.pb2.ServerReadyRequest(), timeout=GUARD).ready is True


def test_server_metadata(g, samples_grpc):
    r = samples_grpc.ServerMetadata(g.pb2.ServerMetadataRequest(), timeout=GUARD)
    assert r.name == "seldon"
    version = subprocess.run([SERVER, "--version"], capture_output=True, timeout=30).stdout
    assert version.decode().split() == ["seldon-server", r.version]
    assert "binary_tensor_data" in r.extensions and "model_repository" in r.extensions


def test_model_ready(g, samples_grpc):
    rq = g.pb2.ModelReadyRequest
    assert samples_grpc.ModelReady(rq(name="add10"), timeout=GUARD).ready is True
    assert samples_grpc.ModelReady(rq(name="versioned", version="2"), timeout=GUARD).ready
    with pytest.raises(g.grpc.RpcError) as err:
        samples_grpc.ModelReady(rq(name="nosuch"), timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.NOT_FOUND
    assert "nosuch" in err.value.details()


def test_model_metadata(g, samples_grpc):
    r = samples_grpc.ModelMetadata(g.pb2.ModelMetadataRequest(name="simple"), timeout=GUARD)
    assert r.name == "simple" and r.platform == "builtin.simple"
    assert [(t.name, t.datatype, list(t.shape)) for t in r.inputs] == [
        ("INPUT0", "INT32", [-1, 16]), ("INPUT1", "INT32", [-1, 16])]
    assert [t.name for t in r.outputs] == ["OUTPUT0", "OUTPUT1"]
    r = samples_grpc.ModelMetadata(g.pb2.ModelMetadataRequest(name="pinned"), timeout=GUARD)
    assert list(r.versions) == ["v7"]
    r = samples_grpc.ModelMetadata(g.pb2.ModelMetadataRequest(name="typed"), timeout=GUARD)
    assert [(t.name, t.datatype, list(t.shape)) for t in r.inputs] == [("x", "FP32", [-1, 3])]
    with pytest.raises(g.grpc.RpcError) as err:
        samples_grpc.ModelMetadata(g.pb2.ModelMetadataRequest(name="nosuch"), timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("raw", [False, True], ids=["contents", "raw"])
def test_infer_simple(g, samples_grpc, raw):
    a = (np.arange(16, dtype=np.int32) * 7 - 30).reshape(1, 16)
    b = (np.arange(16, dtype=np.int32) - 4).reshape(1, 16)
    req = g.request("simple", {"INPUT0": a, "INPUT1": b}, raw=raw, id="g-simple")
    r = samples_grpc.ModelInfer(req, timeout=GUARD)
    assert r.model_name == "simple" and r.id == "g-simple"
    out = g.outputs(r)
    assert list(out) == ["OUTPUT0", "OUTPUT1"]
    assert [t.datatype for t in r.outputs] == ["INT32", "INT32"]
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)

    req = g.request("simple", {"INPUT0": a, "INPUT1": b}, raw=raw, outputs=["OUTPUT1"])
    out = g.outputs(samples_grpc.ModelInfer(req, timeout=GUARD))
    assert list(out) == ["OUTPUT1"]


@pytest.mark.parametrize("raw", [False, True], ids=["contents", "raw"])
@pytest.mark.parametrize("model,op", [
    ("add10", lambda x: x + 10), ("add20", lambda x: x + 20), ("mul10", lambda x: x * 10)])
def test_infer_arith(g, samples_grpc, raw, model, op):
    x = np.array([1.5, -2, 3, 4.125], dtype=np.float32)
    r = samples_grpc.ModelInfer(g.request(model, {"INPUT": x}, raw=raw), timeout=GUARD)
    out = g.outputs(r)
    assert out["OUTPUT"].dtype == np.float32
    np.testing.assert_array_equal(out["OUTPUT"], op(x))


@pytest.mark.parametrize("raw", [False, True], ids=["contents", "raw"])
def test_infer_conditional(g, samples_grpc, raw):
    x0 = np.array([1, 2, 3, 4], dtype=np.float32)
    x1 = np.array([5, 6, 7, 8], dtype=np.float32)
    for choice, name, want in [(0, "OUTPUT0", x0), (1, "OUTPUT1", x1)]:
        req = g.request("conditional", {"CHOICE": np.array([choice], dtype=np.int32),
                                        "INPUT0": x0, "INPUT1": x1}, raw=raw)
        out = g.outputs(samples_grpc.ModelInfer(req, timeout=GUARD))
        assert list(out) == [name]
        np.testing.assert_array_equal(out[name], want)


@pytest.mark.parametrize("raw", [False, True], ids=["contents", "raw"])
@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint16, np.int32, np.int64, np.uint64,
                                   np.float32, np.float64])
def test_infer_identity_datatypes(g, samples_grpc, raw, dtype):
    x = (np.arange(12).reshape(3, 4) % 5 * 3 - 1).astype(dtype)
    out = g.outputs(samples_grpc.ModelInfer(g.request("identity", {"t": x}, raw=raw),
                                            timeout=GUARD))
    assert out["t"].dtype == dtype
    np.testing.assert_array_equal(out["t"], x)


def test_infer_version(g, samples_grpc):
    x = np.array([1, 2, 3, 4], dtype=np.float32)
    r = samples_grpc.ModelInfer(g.request("versioned", {"INPUT": x}, version="2"), timeout=GUARD)
    assert r.model_version == "2"
    np.testing.assert_array_equal(g.outputs(r)["OUTPUT"], x + 2)
    with pytest.raises(g.grpc.RpcError) as err:
        samples_grpc.ModelInfer(g.request("versioned", {"INPUT": x}, version="1"), timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.NOT_FOUND


def test_stream_infer(g, samples_grpc):
    # Several requests on one stream, each answered; a bad one gets an
    # error_message and the stream carries on.
    x = np.array([1, 2, 3, 4], dtype=np.float32)
    reqs = []
    for i in range(12):
        if i == 5:
            reqs.append(g.request("nosuch", {"INPUT": x}, id="bad"))
        elif i == 8:
            # A datatype the model's declared inputs refuse.
            reqs.append(g.request("typed", {"x": np.ones((1, 3), dtype=np.int32)}, id="bad2"))
        else:
            model = ["add10", "mul10", "batched4"][i % 3]
            name = "x" if model == "batched4" else "INPUT"
            reqs.append(g.request(model, {name: x + i}, raw=bool(i % 2), id=f"s{i}"))
    responses = list(samples_grpc.ModelStreamInfer(iter(reqs), timeout=GUARD))
    assert len(responses) == len(reqs)
    errors = [r.error_message for r in responses if r.error_message]
    assert len(errors) == 2, errors
    assert any("nosuch" in e for e in errors), errors
    assert any("inputs[0].datatype" in e for e in errors), errors
    got = {r.infer_response.id: r.infer_response for r in responses if not r.error_message}
    assert sorted(got) == sorted(f"s{i}" for i in range(12) if i not in (5, 8))
    for i in range(12):
        if i in (5, 8):
            continue
        r = got[f"s{i}"]
        model = ["add10", "mul10", "batched4"][i % 3]
        assert r.model_name == model
        want = {"add10": x + i + 10, "mul10": (x + i) * 10, "batched4": x + i}[model]
        np.testing.assert_array_equal(list(g.outputs(r).values())[0], want)


def test_stream_many_in_flight(g, samples_grpc):
    # Requests written faster than answered, on a model whose answers wait for a batch.
    reqs = [g.request("batched4", {"x": np.full((2, 2), i, dtype=np.int64)}, id=f"b{i}",
                      raw=True) for i in range(20)]
    responses = list(samples_grpc.ModelStreamInfer(iter(reqs), timeout=GUARD))
    assert [r.error_message for r in responses] == [""] * 20
    for r in responses:
        i = int(r.infer_response.id[1:])
        np.testing.assert_array_equal(g.outputs(r.infer_response)["x"],
                                      np.full((2, 2), i, dtype=np.int64))
    assert sorted(r.infer_response.id for r in responses) == sorted(f"b{i}" for i in range(20))


def test_repository_index(g, samples_grpc):
    r = samples_grpc.RepositoryIndex(g.pb2.RepositoryIndexRequest(), timeout=GUARD)
    rows = {m.name: m for m in r.models}
    for name in ("identity", "simple", "add10", "add20", "mul10", "conditional", "typed"):
        assert rows[name].state == "READY", rows[name]
    assert rows["versioned"].version == "2" and rows["pinned"].version == "v7"
    r = samples_grpc.RepositoryIndex(g.pb2.RepositoryIndexRequest(ready=True), timeout=GUARD)
    assert all(m.state == "READY" for m in r.models)
    assert {m.name for m in r.models} >= {"add10", "simple"}


def test_client_gives_up(g, samples, samples_grpc):
    # Calls the client abandons while their requests wait for a batch: the
    # server completes them into the void and goes on (ASan checks the lifetimes).
    x = np.arange(4, dtype=np.float32)
    with pytest.raises(g.grpc.RpcError) as err:
        samples_grpc.ModelInfer(g.request("slow", {"x": x}), timeout=0.05)
    assert err.value.code() == g.grpc.StatusCode.DEADLINE_EXCEEDED
    # A stream cancelled with requests in flight.
    stream = samples_grpc.ModelStreamInfer(
        iter([g.request("slow", {"x": x + i}, id=str(i)) for i in range(3)]), timeout=GUARD)
    stream.cancel()
    with pytest.raises(g.grpc.RpcError) as err:
        list(stream)
    assert err.value.code() == g.grpc.StatusCode.CANCELLED
    # A future cancelled.
    future = samples_grpc.ModelInfer.future(g.request("slow", {"x": x}), timeout=GUARD)
    future.cancel()
    # The abandoned requests complete on the server (or were never started).
    r = samples_grpc.ModelInfer(g.request("slow", {"x": x}, id="after"), timeout=GUARD)
    assert r.id == "after"
    np.testing.assert_array_equal(g.outputs(r)["x"], x)
    wait_metric(samples.http, 2, "seldon_model_infer_total", model="slow", method_type="grpc")


def test_stream_malformed_message(g, samples):
    # Bytes that are not a ModelInferRequest, mid-stream: an error_message, and the stream goes on.
    channel, _ = g.stub(samples)
    try:
        call = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=lambda b: b,
            response_deserializer=g.pb2.ModelStreamInferResponse.FromString)
        x = np.array([1, 2, 3, 4], dtype=np.float32)
        good = [g.request("add10", {"INPUT": x + i}, id=f"m{i}").SerializeToString()
                for i in range(2)]
        responses = list(call(iter([good[0], b"\xff\xff\xff\xff\x0f", good[1]]),
                              timeout=GUARD))
        assert len(responses) == 3
        assert [bool(r.error_message) for r in responses].count(True) == 1
        ok = sorted(r.infer_response.id for r in responses if not r.error_message)
        assert ok == ["m0", "m1"]
    finally:
        channel.close()


def test_stream_errors_carry_ids(g, samples):
    # Every stream response names its request, failures included: an unknown
    # model, a request the model's declared inputs refuse, a runtime's own
    # refusal, and bytes that do not decode (the id is read from what does).
    channel, _ = g.stub(samples)
    try:
        call = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=lambda b: b,
            response_deserializer=g.pb2.ModelStreamInferResponse.FromString)
        x = np.array([1, 2, 3, 4], dtype=np.float32)
        msgs = [
            g.request("add10", {"INPUT": x}, id="ok-1").SerializeToString(),
            g.request("nosuch", {"INPUT": x}, id="err-404").SerializeToString(),
            g.request("typed", {"x": np.ones((1, 3), dtype=np.int32)},
                      id="err-datatype").SerializeToString(),
            g.request("add10", {"INPUT": np.array([True, False])},
                      id="err-runtime").SerializeToString(),
            g.request("add10", {"INPUT": x}, id="err-garbled").SerializeToString()
            + b"\xff\xff\xff\xff\x0f",
            g.request("add10", {"INPUT": x}, id="ok-2").SerializeToString(),
        ]
        responses = list(call(iter(msgs), timeout=GUARD))
        assert len(responses) == len(msgs)
        by_id = {r.infer_response.id: r for r in responses}
        assert sorted(by_id) == sorted(["ok-1", "ok-2", "err-404", "err-datatype",
                                        "err-runtime", "err-garbled"])
        for rid, r in by_id.items():
            assert bool(r.error_message) == rid.startswith("err-"), (rid, r.error_message)
        assert "nosuch" in by_id["err-404"].error_message
        assert by_id["err-404"].infer_response.model_name == "nosuch"
        assert "inputs[0].datatype" in by_id["err-datatype"].error_message
        assert by_id["err-datatype"].infer_response.model_name == "typed"
        assert "BOOL" in by_id["err-runtime"].error_message
        assert by_id["err-garbled"].infer_response.model_name == "add10"
        np.testing.assert_array_equal(g.outputs(by_id["ok-2"].infer_response)["OUTPUT"], x + 10)
    finally:
        channel.close()
