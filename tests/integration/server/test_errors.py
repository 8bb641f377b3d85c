"""Bad input, each class, over REST and gRPC: the right status, a JSON
{"error": "..."} body naming the problem, and a server that keeps serving."""
import json
import socket
import threading

import numpy as np
import pytest

from conftest import (GUARD, HOST, SAMPLES_MAX_BODY, RawConn, assert_error, http_bytes, infer,
                      metric, metrics, outputs_of, request, tensor, wait_metric,
                      wait_server_read_all)

X4 = np.array([1, 2, 3, 4], dtype=np.float32)


def still_serving(port):
    """The server answers a fresh request correctly (a hang fails on the guard timeout)."""
    status, doc = infer(port, "add10", [tensor("INPUT", X4)])
    assert status == 200, doc
    np.testing.assert_array_equal(outputs_of(doc)["OUTPUT"], X4 + 10)


def test_unknown_model(samples, g, samples_grpc):
    assert_error(*request(samples.http, "POST", "/v2/models/nosuch/infer",
                          {"inputs": [tensor("INPUT", X4)]}), 404, "nosuch")
    assert_error(*request(samples.http, "GET", "/v2/models/nosuch"), 404, "nosuch")
    assert_error(*request(samples.http, "GET", "/v2/models/add10/versions/9"), 404, "add10")
    with pytest.raises(g.grpc.RpcError) as err:
        samples_grpc.ModelInfer(g.request("nosuch", {"INPUT": X4}), timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.NOT_FOUND
    assert "nosuch" in err.value.details()


@pytest.mark.parametrize("method,path", [
    ("GET", "/"), ("GET", "/v3"), ("GET", "/v2/nothing"), ("GET", "/v2/health"),
    ("GET", "/v2/health/alive"), ("GET", "/v2/models/add10/bogus"),
    ("POST", "/v2/models/add10/versions/1/infer/more"), ("POST", "/v2/repository/models/x"),
    ("POST", "/v2/pipelines/p/infer")])
def test_unknown_path(samples, method, path):
    body = b"{}" if method == "POST" else None
    assert_error(*request(samples.http, method, path, body), 404)


@pytest.mark.parametrize("method,path", [
    ("GET", "/v2/models/add10/infer"), ("PUT", "/v2/models/add10/infer"),
    ("POST", "/v2/health/live"), ("DELETE", "/v2/models/add10"),
    ("GET", "/v2/repository/index"), ("GET", "/v2/repository/models/add10/load")])
def test_wrong_method(samples, method, path):
    body = b"{}" if method in ("POST", "PUT") else None
    assert_error(*request(samples.http, method, path, body), 405, method)


@pytest.mark.parametrize("body,fragments", [
    (b'{"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [4], "data": [1,2,3,4]',
     ["inputs[0]", "at byte 81"]),
    (b'{"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [4], "data": [1,2,3,4]}]} x',
     ["at byte 85"]),
    (b'', ["at byte 0"]),
    (b'not json', ["expected an object"]),
    (b'[1, 2]', ["expected an object"]),
    (b'{"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [4], "data": [1,2,,4]}]}',
     ["inputs[0].data[2]"]),
    (b'{"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": "4", "data": [1,2,3,4]}]}',
     ["inputs[0].shape"]),
    (b'{"inputs": [{"name": "INPUT", "datatype": "FP31", "shape": [4], "data": [1,2,3,4]}]}',
     ["inputs[0].datatype", "FP31"]),
    (b'{"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [4], "data": [1,2,3]}]}',
     ["inputs[0].data"]),
    (b'{"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [4], "data": [1,2,"x",4]}]}',
     ["inputs[0].data[2]"]),
    (b'{"inputs": [{"datatype": "FP32", "shape": [4], "data": [1,2,3,4]}]}',
     ["inputs[0]", "name"]),
    (b'{"inputs": [{"name": "INPUT", "datatype": "INT8", "shape": [2], "data": [1, 300]}]}',
     ["inputs[0].data[1]", "INT8"]),
    (b'{"inputs": [], "inputs": []}', ["inputs", "duplicate"]),
])
def test_malformed_json(samples, body, fragments):
    status, headers, data = request(samples.http, "POST", "/v2/models/add10/infer", body,
                                    {"Content-Type": "application/json"})
    assert_error(status, headers, data, 400, *fragments)


def test_declared_metadata_mismatch(samples, g, samples_grpc):
    ok = np.arange(6, dtype=np.float32).reshape(2, 3)
    status, doc = infer(samples.http, "typed", [tensor("x", ok)])
    assert status == 200, doc
    np.testing.assert_array_equal(outputs_of(doc)["x"], ok)

    cases = [
        (ok.astype(np.int32), ["inputs[0].datatype", "FP32", "INT32"]),
        (ok.reshape(6), ["inputs[0].shape", "[-1,3]", "[6]"]),
        (ok.reshape(3, 2), ["inputs[0].shape", "[3,2]"]),
    ]
    for array, fragments in cases:
        assert_error(*request(samples.http, "POST", "/v2/models/typed/infer",
                              {"inputs": [tensor("x", array)]}), 400, *fragments)
        for raw in (False, True):
            with pytest.raises(g.grpc.RpcError) as err:
                samples_grpc.ModelInfer(g.request("typed", {"x": array}, raw=raw), timeout=GUARD)
            assert err.value.code() == g.grpc.StatusCode.INVALID_ARGUMENT
            for f in fragments:
                assert f in err.value.details()
    # The runtime's own checks reach the client too.
    a = np.zeros((1, 16), dtype=np.int32)
    assert_error(*request(samples.http, "POST", "/v2/models/simple/infer",
                          {"inputs": [tensor("INPUT0", a), tensor("INPUT1", a[:, :8])]}),
                 400, "INPUT1", "shape")
    with pytest.raises(g.grpc.RpcError) as err:
        samples_grpc.ModelInfer(g.request("simple", {"INPUT0": a}), timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.INVALID_ARGUMENT
    assert "INPUT1" in err.value.details()


def test_body_too_large(samples, g, samples_grpc):
    big = np.zeros(SAMPLES_MAX_BODY // 4 + 16, dtype=np.float32)
    body = json.dumps({"inputs": [tensor("t", big)]}).encode()
    assert len(body) > SAMPLES_MAX_BODY
    status, headers, data = request(samples.http, "POST", "/v2/models/identity/infer", body)
    assert_error(status, headers, data, 413)

    # curl-style: the limit is known from the headers, so no 100 Continue and no body.
    c = RawConn(samples.http)
    try:
        c.send(("POST /v2/models/identity/infer HTTP/1.1\r\nHost: x\r\n"
                "Expect: 100-continue\r\nContent-Type: application/json\r\n"
                f"Content-Length: {SAMPLES_MAX_BODY + 1}\r\n\r\n").encode())
        r = c.response()
        assert r.status == 413
        assert list(json.loads(r.body)) == ["error"]
    finally:
        c.close()

    # Chunked: the running total is bounded too.
    c = RawConn(samples.http)
    try:
        c.send(b"POST /v2/models/identity/infer HTTP/1.1\r\nHost: x\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n" % (64 << 10) + b" " * (64 << 10) + b"\r\n"
        try:
            for _ in range(SAMPLES_MAX_BODY // (64 << 10) + 2):
                c.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending
        r = c.response()
        assert r.status == 413
    finally:
        c.close()

    # gRPC: a message over the limit.
    with pytest.raises(g.grpc.RpcError) as err:
        samples_grpc.ModelInfer(g.request("identity", {"t": big}, raw=True), timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.RESOURCE_EXHAUSTED
    # Just under the limits works on both.
    small = np.arange(SAMPLES_MAX_BODY // 8, dtype=np.float32)
    out = g.outputs(samples_grpc.ModelInfer(g.request("identity", {"t": small}, raw=True),
                                            timeout=GUARD))
    np.testing.assert_array_equal(out["t"], small)
    still_serving(samples.http)


def test_malformed_protobuf(samples, g):
    channel, _ = g.stub(samples)
    try:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(g.grpc.RpcError) as err:
            call(b"\xff\xff\xff\xff\x0f", timeout=GUARD)
        assert err.value.code() == g.grpc.StatusCode.INVALID_ARGUMENT
        # raw_input_contents that do not match the inputs.
        req = g.request("add10", {"INPUT": X4}, raw=True)
        req.raw_input_contents.append(b"1234")
        with pytest.raises(g.grpc.RpcError) as err:
            g.pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req, timeout=GUARD)
        assert err.value.code() == g.grpc.StatusCode.INVALID_ARGUMENT
        assert "raw_input_contents" in err.value.details()
        # A method the service does not have.
        call = channel.unary_unary("/inference.GRPCInferenceService/NoSuchMethod")
        with pytest.raises(g.grpc.RpcError) as err:
            call(b"", timeout=GUARD)
        assert err.value.code() == g.grpc.StatusCode.UNIMPLEMENTED
    finally:
        channel.close()


def test_client_disconnects(samples):
    body = json.dumps({"inputs": [tensor("INPUT", X4)]}).encode()
    head = ("POST /v2/models/add10/infer HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    # Gone mid-headers, mid-body, mid-chunk, and after a whole request whose
    # answer waits for its batch (the answer has nowhere to go).
    partials = [head[:20], head + body[:10],
                b"POST /v2/models/add10/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"40\r\n{\"inp",
                http_bytes("POST", "/v2/models/batched4/infer",
                           {"inputs": [tensor("x", X4)]})]
    for data in partials:
        for _ in range(5):
            s = socket.create_connection((HOST, samples.http), timeout=GUARD)
            s.sendall(data)
            s.close()
        # Reset instead of a clean close.
        s = socket.create_connection((HOST, samples.http), timeout=GUARD)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.sendall(data)
        s.close()
        still_serving(samples.http)
    # A batch whose callers all left still runs, and the model keeps serving.
    status, doc = infer(samples.http, "batched4", [tensor("x", X4)], id="after")
    assert status == 200 and doc["id"] == "after"


def test_slow_client(samples):
    # One byte per send: the server waits for the rest without holding up anyone else.
    body = json.dumps({"id": "slow", "inputs": [tensor("INPUT", X4)]}).encode()
    data = http_bytes("POST", "/v2/models/add10/infer", body)
    slow = [RawConn(samples.http) for _ in range(3)]
    try:
        for i, byte in enumerate(data):
            for c in slow:
                c.send(bytes([byte]))
            if i % 25 == 0:
                # Meanwhile other clients are served, on fresh connections.
                still_serving(samples.http)
        for c in slow:
            r = c.response()
            assert r.status == 200, r.body
            assert r.json()["id"] == "slow"
            np.testing.assert_array_equal(outputs_of(r.json())["OUTPUT"], X4 + 10)
    finally:
        for c in slow:
            c.close()


def test_garbage_request_line(samples):
    # Bytes that are not HTTP: a JSON 400, then the connection is closed.
    for garbage in (b"\x00\x01NOT HTTP AT ALL\r\n\r\n",
                    b"GET /v2 HTTP/1.1\r\nBad Header Line\r\n\r\n"):
        c = RawConn(samples.http)
        try:
            c.send(garbage)
            r = c.response()
            assert r.status == 400, (garbage, r.status)
            assert list(json.loads(r.body)) == ["error"]
            assert c.closed_by_peer()
        finally:
            c.close()
    still_serving(samples.http)


def test_concurrent_bad_and_good(samples):
    # Errors under concurrency do not disturb the good requests next to them.
    failures = []

    def worker(k):
        try:
            for i in range(15):
                if (i + k) % 3 == 0:
                    status, _, data = request(samples.http, "POST", "/v2/models/add10/infer",
                                              b'{"inputs": [')
                    assert status == 400, data
                else:
                    x = X4 + k * 100 + i
                    status, doc = infer(samples.http, "add10", [tensor("INPUT", x)],
                                        id=f"{k}-{i}")
                    assert status == 200 and doc["id"] == f"{k}-{i}", doc
                    np.testing.assert_array_equal(outputs_of(doc)["OUTPUT"], x + 10)
        except Exception as e:  # reported below, in the test's thread
            failures.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(GUARD * 2)
    assert not failures, failures


def test_many_connections(samples):
    # Hundreds of open connections, most idle: the server keeps answering.
    conns = [RawConn(samples.http) for _ in range(200)]
    try:
        for c in conns[::10]:
            c.send(http_bytes("GET", "/v2/health/live"))
        for c in conns[::10]:
            assert c.response().status == 200
        still_serving(samples.http)
    finally:
        for c in conns:
            c.close()


def test_client_leaves_while_waiting(samples):
    # Requests waiting for their batch when their clients leave: the server
    # answers into the void later, and goes on.
    before = metric(metrics(samples.http), "seldon_model_infer_total", model="slow",
                    method_type="rest")
    conns = [RawConn(samples.http) for _ in range(3)]
    for i, c in enumerate(conns):
        c.send(http_bytes("POST", "/v2/models/slow/infer",
                          {"id": str(i), "inputs": [tensor("x", X4 + i)]}))
    wait_server_read_all(samples.http)
    for c in conns:
        c.close()
    wait_metric(samples.http, before + 3, "seldon_model_infer_total", model="slow",
                method_type="rest")
    status, doc = infer(samples.http, "slow", [tensor("x", X4)], id="after")
    assert status == 200 and doc["id"] == "after"
    still_serving(samples.http)
