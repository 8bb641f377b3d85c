"""The REST API of seldon-server: health, metadata, inference on Seldon's sample
models, HTTP/1.1 connection handling and the binary tensor data extension."""
import json
import struct
import subprocess
import threading

import numpy as np
import pytest

from conftest import (GUARD, NUMPY_TYPES, SAMPLES_MAX_BODY, SERVER, RawConn, assert_error,
                      binary_body, get_json, http_bytes, infer, outputs_of, request, split_binary,
                      tensor)


def test_health(samples):
    assert get_json(samples.http, "/v2/health/live") == (200, {"live": True})
    assert get_json(samples.http, "/v2/health/ready") == (200, {"ready": True})


def test_server_metadata(samples):
    status, doc = get_json(samples.http, "/v2")
    assert status == 200
    assert doc["name"] == "seldon"
    version = subprocess.run([SERVER, "--version"], capture_output=True, timeout=30).stdout
    assert version.decode().split() == ["seldon-server", doc["version"]]
    for ext in ("binary_tensor_data", "model_repository"):
        assert ext in doc["extensions"]


def test_model_metadata(samples):
    status, doc = get_json(samples.http, "/v2/models/simple")
    assert status == 200
    assert doc["name"] == "simple"
    assert doc["platform"] == "builtin.simple"
    assert doc["inputs"] == [{"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
                             {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 16]}]
    assert [o["name"] for o in doc["outputs"]] == ["OUTPUT0", "OUTPUT1"]

    # Declared in model-settings.json.
    status, doc = get_json(samples.http, "/v2/models/typed")
    assert status == 200
    assert doc["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert doc["outputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]


def test_model_versions(samples):
    # The latest version folder is served, named by its folder.
    status, doc = get_json(samples.http, "/v2/models/versioned")
    assert status == 200 and doc["versions"] == ["2"]
    status, doc = get_json(samples.http, "/v2/models/versioned/versions/2")
    assert status == 200 and doc["name"] == "versioned"
    assert_error(*request(samples.http, "GET", "/v2/models/versioned/versions/1"), 404, "versioned")
    # A version set by parameters.version.
    status, doc = get_json(samples.http, "/v2/models/pinned/versions/v7")
    assert status == 200 and doc["versions"] == ["v7"]

    x = np.array([1, 2, 3, 4], dtype=np.float32)
    status, doc = infer(samples.http, "versioned", [tensor("INPUT", x)], version="2")
    assert status == 200, doc
    assert doc["model_name"] == "versioned" and doc["model_version"] == "2"
    np.testing.assert_array_equal(outputs_of(doc)["OUTPUT"], x + 2)
    status, doc = infer(samples.http, "pinned", [tensor("INPUT", x)], version="v7")
    assert status == 200 and doc["model_version"] == "v7"
    np.testing.assert_array_equal(outputs_of(doc)["OUTPUT"], x + 5)
    status, _, body = request(samples.http, "POST", "/v2/models/versioned/versions/1/infer",
                              body={"inputs": [tensor("INPUT", x)]})
    assert status == 404, body


def test_model_ready(samples):
    assert get_json(samples.http, "/v2/models/add10/ready") == (
        200, {"name": "add10", "ready": True})
    status, _ = get_json(samples.http, "/v2/models/versioned/versions/2/ready")
    assert status == 200
    assert_error(*request(samples.http, "GET", "/v2/models/nosuch/ready"), 404, "nosuch")


def test_simple(samples):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = (np.arange(16, dtype=np.int32) * 3 - 7).reshape(1, 16)
    a[0, 15] = np.iinfo(np.int32).max  # wraps like Triton's int32
    status, doc = infer(samples.http, "simple", [tensor("INPUT0", a), tensor("INPUT1", b)],
                        id="tf-1")
    assert status == 200, doc
    assert doc["model_name"] == "simple" and doc["id"] == "tf-1"
    out = outputs_of(doc)
    assert list(out) == ["OUTPUT0", "OUTPUT1"]
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(out["OUTPUT0"], a + b)
        np.testing.assert_array_equal(out["OUTPUT1"], a - b)
    assert [t["datatype"] for t in doc["outputs"]] == ["INT32", "INT32"]

    # Only the outputs asked for.
    status, doc = infer(samples.http, "simple", [tensor("INPUT0", a), tensor("INPUT1", b)],
                        outputs=["OUTPUT1"])
    assert status == 200, doc
    assert list(outputs_of(doc)) == ["OUTPUT1"]


@pytest.mark.parametrize("model,op", [
    ("add10", lambda x: x + 10), ("add20", lambda x: x + 20), ("mul10", lambda x: x * 10)])
@pytest.mark.parametrize("shape", [[4], [1, 4]])
def test_arith(samples, model, op, shape):
    x = np.array([1.5, 2, -3, 4.25], dtype=np.float32).reshape(shape)
    status, doc = infer(samples.http, model, [tensor("INPUT", x)], id=f"{model}-req")
    assert status == 200, doc
    assert doc["id"] == f"{model}-req" and doc["model_name"] == model
    out = outputs_of(doc)
    assert list(out) == ["OUTPUT"] and out["OUTPUT"].dtype == np.float32
    np.testing.assert_array_equal(out["OUTPUT"], op(x))


@pytest.mark.parametrize("choice", [0, 1, 7])
def test_conditional(samples, choice):
    x0 = np.array([1, 2, 3, 4], dtype=np.float32)
    x1 = np.array([10, 20, 30, 40], dtype=np.float32)
    status, doc = infer(samples.http, "conditional", [
        tensor("CHOICE", np.array([choice], dtype=np.int32)),
        tensor("INPUT0", x0), tensor("INPUT1", x1)])
    assert status == 200, doc
    out = outputs_of(doc)
    if choice == 0:
        assert list(out) == ["OUTPUT0"]
        np.testing.assert_array_equal(out["OUTPUT0"], x0)
    else:
        assert list(out) == ["OUTPUT1"]
        np.testing.assert_array_equal(out["OUTPUT1"], x1)


def test_conditional_both_branches_requested(samples):
    # Both branches are declared outputs: asking for both gives the one that fired.
    status, doc = infer(samples.http, "conditional", [
        tensor("CHOICE", np.array([1], dtype=np.int32)),
        tensor("INPUT0", np.zeros(4, np.float32)), tensor("INPUT1", np.ones(4, np.float32))],
        outputs=["OUTPUT0", "OUTPUT1"])
    assert status == 200, doc
    assert list(outputs_of(doc)) == ["OUTPUT1"]


@pytest.mark.parametrize("datatype", ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8",
                                      "INT16", "INT32", "INT64", "FP32", "FP64"])
def test_identity_datatypes(samples, datatype):
    dtype = NUMPY_TYPES[datatype]
    if datatype == "BOOL":
        x = np.array([[True, False, True], [False, False, True]])
    elif datatype.startswith("FP"):
        x = np.array([[0.1, -2.5, 3e10], [np.finfo(dtype).max, np.finfo(dtype).tiny, 0]],
                     dtype=dtype)
    else:
        info = np.iinfo(dtype)
        x = np.array([[info.min, info.max, 0], [1, info.max // 3, info.min // 5]], dtype=dtype)
    status, doc = infer(samples.http, "identity", [tensor("t", x)])
    assert status == 200, doc
    got = outputs_of(doc)["t"]
    assert doc["outputs"][0]["datatype"] == datatype
    assert got.shape == x.shape
    np.testing.assert_array_equal(got, x)


def test_identity_bytes(samples):
    words = ["hello", "w\u00f6rld", ""]
    status, doc = infer(samples.http, "identity",
                        [{"name": "s", "datatype": "BYTES", "shape": [3], "data": words}])
    assert status == 200, doc
    assert doc["outputs"] == [{"name": "s", "datatype": "BYTES", "shape": [3], "data": words}]


# --- Connections -------------------------------------------------------------------


def add10_request(i):
    x = np.array([i, i + 1, i + 2, i + 3], dtype=np.float32)
    return x, http_bytes("POST", "/v2/models/add10/infer",
                         {"id": f"r{i}", "inputs": [tensor("INPUT", x)]},
                         {"Content-Type": "application/json"})


def check_add10(resp, i, x):
    assert resp.status == 200, resp.body
    doc = resp.json()
    assert doc["id"] == f"r{i}"
    np.testing.assert_array_equal(outputs_of(doc)["OUTPUT"], x + 10)


def test_keep_alive(samples):
    c = RawConn(samples.http)
    try:
        for i in range(60):
            if i % 3 == 0:
                c.send(http_bytes("GET", "/v2/health/live"))
                r = c.response()
                assert r.status == 200 and r.json() == {"live": True}
            else:
                x, raw = add10_request(i)
                c.send(raw)
                r = c.response()
                check_add10(r, i, x)
            assert r.headers.get("connection", "").lower() != "close"
    finally:
        c.close()


def test_pipelining(samples):
    # One send, many requests: answers come in request order, even when the
    # first waits for its batch on a worker and the others run inline at once.
    slow = np.arange(6, dtype=np.int64).reshape(2, 3)
    raw = http_bytes("POST", "/v2/models/batched4/infer",
                     {"id": "slow", "inputs": [tensor("x", slow)]})
    expect = []
    for i in range(8):
        x, req = add10_request(i)
        raw += req
        expect.append((i, x))
        if i % 4 == 1:
            raw += http_bytes("GET", "/v2/models/add10/ready")
            expect.append(("ready", None))
    raw += http_bytes("GET", "/v2")
    c = RawConn(samples.http)
    try:
        c.send(raw)
        r = c.response()
        assert r.status == 200, r.body
        assert r.json()["id"] == "slow"
        np.testing.assert_array_equal(outputs_of(r.json())["x"], slow)
        for i, x in expect:
            r = c.response()
            if i == "ready":
                assert r.status == 200 and r.json() == {"name": "add10", "ready": True}
            else:
                check_add10(r, i, x)
        r = c.response()
        assert r.status == 200 and r.json()["name"] == "seldon"
    finally:
        c.close()


def test_expect_continue(samples):
    # As curl does for a large body: headers, wait for 100 Continue, then the body.
    x = np.array([1, 2, 3, 4], dtype=np.float32)
    body = json.dumps({"inputs": [tensor("INPUT", x)]}).encode()
    head = ("POST /v2/models/mul10/infer HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nExpect: 100-continue\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    c = RawConn(samples.http)
    try:
        c.send(head)
        interim = c.response()
        assert interim.status == 100 and interim.body == b""
        c.send(body)
        r = c.response()
        assert r.status == 200, r.body
        np.testing.assert_array_equal(outputs_of(r.json())["OUTPUT"], x * 10)
        # The connection is still usable.
        c.send(http_bytes("GET", "/v2/health/live"))
        assert c.response().status == 200
    finally:
        c.close()


def test_chunked_body(samples):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 5, dtype=np.int32)
    body = json.dumps({"id": "chunky",
                       "inputs": [tensor("INPUT0", a), tensor("INPUT1", b)]}).encode()
    chunks, pos, size = b"", 0, 1
    while pos < len(body):
        part = body[pos:pos + size]
        ext = ";note=x" if size == 3 else ""
        chunks += f"{len(part):x}{ext}\r\n".encode() + part + b"\r\n"
        pos += len(part)
        size = size * 2 + 1
    chunks += b"0\r\n\r\n"
    head = ("POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    c = RawConn(samples.http)
    try:
        c.send(head + chunks)
        r = c.response()
        assert r.status == 200, r.body
        doc = r.json()
        assert doc["id"] == "chunky"
        out = outputs_of(doc)
        np.testing.assert_array_equal(out["OUTPUT0"], a + b)
        np.testing.assert_array_equal(out["OUTPUT1"], a - b)
        # Chunked with Expect: 100-continue, in pieces.
        c.send(head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
        assert c.response().status == 100
        c.send(chunks[:7])
        c.send(chunks[7:])
        r = c.response()
        assert r.status == 200 and r.json()["id"] == "chunky"
    finally:
        c.close()


def test_pipelining_many(samples):
    # Hundreds of requests in one send, while a second thread reads: the
    # server holds back (stops reading) when answers pile up, and catches up.
    n = 400
    raw, expect = b"", []
    for i in range(n):
        x, req = add10_request(i)
        raw += req
        expect.append(x)
    c = RawConn(samples.http)
    got, failures = [], []

    def reader():
        try:
            for _ in range(n):
                got.append(c.response())
        except Exception as e:
            failures.append(e)

    t = threading.Thread(target=reader)
    t.start()
    try:
        c.send(raw)
        t.join(GUARD * 2)
        assert not failures, failures
        assert len(got) == n
        for i, r in enumerate(got):
            check_add10(r, i, expect[i])
    finally:
        c.close()


def test_connection_close(samples):
    # HTTP/1.0 and "Connection: close": one answer, then the server closes.
    for req in (b"GET /v2/health/live HTTP/1.0\r\n\r\n",
                b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
        c = RawConn(samples.http)
        try:
            c.send(req)
            r = c.response()
            assert r.status == 200 and r.json() == {"live": True}
            assert r.headers["connection"].lower() == "close"
            assert c.closed_by_peer()
        finally:
            c.close()


def test_query_and_trailing_slash(samples):
    x = np.array([1, 2, 3, 4], dtype=np.float32)
    for path in ("/v2/models/add20/infer?trace=1", "/v2/models/add20/infer/"):
        status, _, body = request(samples.http, "POST", path, {"inputs": [tensor("INPUT", x)]})
        assert status == 200, body
        np.testing.assert_array_equal(outputs_of(json.loads(body))["OUTPUT"], x + 20)
    assert get_json(samples.http, "/v2/health/ready?verbose=1") == (200, {"ready": True})


# --- The binary tensor data extension ----------------------------------------------


def simple_inputs():
    a = (np.arange(16, dtype=np.int32) * 1000 - 3).reshape(1, 16)
    b = (np.arange(16, dtype=np.int32) ** 2).reshape(1, 16)
    return a, b


def test_binary_inputs(samples):
    a, b = simple_inputs()
    both = [{"name": "INPUT0"}, {"name": "INPUT1"}]
    body, headers = binary_body({"id": "bin-in", "inputs": both},
                                {"INPUT0": a, "INPUT1": b})
    status, rh, data = request(samples.http, "POST", "/v2/models/simple/infer", body, headers)
    assert status == 200, data
    # No binary output asked for: a plain JSON response.
    assert rh["content-type"].startswith("application/json")
    assert "inference-header-content-length" not in rh
    doc = json.loads(data)
    assert doc["id"] == "bin-in"
    out = outputs_of(doc)
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)

    # One input binary, the other JSON.
    body, headers = binary_body({"inputs": [{"name": "INPUT0"}, tensor("INPUT1", b)]},
                                {"INPUT0": a})
    status, rh, data = request(samples.http, "POST", "/v2/models/simple/infer", body, headers)
    assert status == 200, data
    np.testing.assert_array_equal(outputs_of(json.loads(data))["OUTPUT1"], a - b)


def test_binary_outputs_all(samples):
    a, b = simple_inputs()
    both = [{"name": "INPUT0"}, {"name": "INPUT1"}]
    body, headers = binary_body({"id": "bin-out", "inputs": both,
                                 "parameters": {"binary_data_output": True}},
                                {"INPUT0": a, "INPUT1": b})
    status, rh, data = request(samples.http, "POST", "/v2/models/simple/infer", body, headers)
    assert status == 200, data
    assert rh["content-type"] == "application/octet-stream"
    n = int(rh["inference-header-content-length"])
    assert int(rh["content-length"]) == len(data) == n + 2 * 64
    doc, out, binary = split_binary(rh, data)
    assert doc["id"] == "bin-out"
    assert binary == ["OUTPUT0", "OUTPUT1"]
    assert [t["parameters"]["binary_data_size"] for t in doc["outputs"]] == [64, 64]
    # The raw bytes are little-endian int32, in output order.
    assert data[n:n + 64] == (a + b).astype("<i4").tobytes()
    assert data[n + 64:] == (a - b).astype("<i4").tobytes()
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)


def test_binary_output_per_output(samples):
    a, b = simple_inputs()
    doc = {"inputs": [tensor("INPUT0", a), tensor("INPUT1", b)],
           "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}},
                       {"name": "OUTPUT1"}]}
    status, rh, data = request(samples.http, "POST", "/v2/models/simple/infer", doc)
    assert status == 200, data
    assert int(rh["inference-header-content-length"]) == len(data) - 64
    doc, out, binary = split_binary(rh, data)
    assert binary == ["OUTPUT0"]
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)

    # binary_data: false on one output overrides binary_data_output for it.
    x = np.array([0.5, 1.5, 2.5, 3.5], dtype=np.float32)
    body, headers = binary_body({"inputs": [{"name": "INPUT"}],
                                 "parameters": {"binary_data_output": True},
                                 "outputs": [{"name": "OUTPUT",
                                              "parameters": {"binary_data": False}}]},
                                {"INPUT": x})
    status, rh, data = request(samples.http, "POST", "/v2/models/add10/infer", body, headers)
    assert status == 200, data
    assert "inference-header-content-length" not in rh
    np.testing.assert_array_equal(outputs_of(json.loads(data))["OUTPUT"], x + 10)


def test_binary_fp32_round_trip(samples):
    x = np.array([[1e-7, -2.5, 3.25, np.float32(np.pi)]], dtype=np.float32)
    body, headers = binary_body({"inputs": [{"name": "INPUT"}],
                                 "parameters": {"binary_data_output": True}}, {"INPUT": x})
    status, rh, data = request(samples.http, "POST", "/v2/models/mul10/infer", body, headers)
    assert status == 200, data
    doc, out, binary = split_binary(rh, data)
    assert binary == ["OUTPUT"] and out["OUTPUT"].shape == (1, 4)
    np.testing.assert_array_equal(out["OUTPUT"], x * np.float32(10))


def test_binary_bad_sizes(samples):
    a, b = simple_inputs()
    body, headers = binary_body({"inputs": [{"name": "INPUT0"}, {"name": "INPUT1"}]},
                                {"INPUT0": a, "INPUT1": b})
    # The header length past the body.
    bad = dict(headers, **{"Inference-Header-Content-Length": str(len(body) + 1)})
    assert_error(*request(samples.http, "POST", "/v2/models/simple/infer", body, bad), 400,
                 "Inference-Header-Content-Length")
    # Binary data shorter than binary_data_size says.
    assert_error(*request(samples.http, "POST", "/v2/models/simple/infer", body[:-10], headers),
                 400, "binary_data_size")


def test_binary_large(samples):
    # Near the body limit, binary both ways: the bytes come back unchanged.
    x = np.random.default_rng(3).normal(size=(SAMPLES_MAX_BODY // 4 - 1024,)).astype(np.float32)
    body, headers = binary_body({"inputs": [{"name": "big"}],
                                 "parameters": {"binary_data_output": True}}, {"big": x})
    assert len(body) <= SAMPLES_MAX_BODY
    status, rh, data = request(samples.http, "POST", "/v2/models/identity/infer", body, headers)
    assert status == 200, data[:200]
    doc, out, binary = split_binary(rh, data)
    assert binary == ["big"]
    assert data[int(rh["inference-header-content-length"]):] == x.tobytes()


def test_binary_bytes(samples):
    # BYTES in the binary extension: each element a 4-byte little-endian length, then the bytes.
    words = [b"ab", b"\x00\xff\xfe", b"", "w\u00f6rld".encode()]
    raw = b"".join(struct.pack("<I", len(w)) + w for w in words)
    header = json.dumps({"id": "bytes", "inputs": [
        {"name": "s", "datatype": "BYTES", "shape": [4],
         "parameters": {"binary_data_size": len(raw)}}],
        "parameters": {"binary_data_output": True}}).encode()
    status, rh, data = request(samples.http, "POST", "/v2/models/identity/infer", header + raw,
                               {"Inference-Header-Content-Length": str(len(header))})
    assert status == 200, data
    n = int(rh["inference-header-content-length"])
    doc = json.loads(data[:n])
    assert doc["id"] == "bytes"
    assert doc["outputs"][0]["parameters"]["binary_data_size"] == len(raw)
    assert data[n:] == raw
    # Bytes that are not UTF-8 cannot go back as JSON strings: the error says so.
    header = json.dumps({"inputs": [{"name": "s", "datatype": "BYTES", "shape": [4],
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    assert_error(*request(samples.http, "POST", "/v2/models/identity/infer", header + raw,
                          {"Inference-Header-Content-Length": str(len(header))}),
                 400, "UTF-8")


def test_id_round_trip(samples):
    for rid in ['a"b\\c', "\u00e9\u4e2d\U0001f600", "tab\tnew\nline\u0001", "x" * 300]:
        status, doc = infer(samples.http, "identity", [tensor("t", np.zeros(1, np.int8))], id=rid)
        assert status == 200, doc
        assert doc["id"] == rid
