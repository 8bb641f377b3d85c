"""seldon-server tried as an attacker would: requests that must be refused
with a clear error, the same way on REST and gRPC.

- A requested output the model does not produce: 400 / INVALID_ARGUMENT
  naming the output, as Triton answers (not 200 with "outputs": []).
- Invalid UTF-8 is never echoed into a JSON error body: the body stays valid
  JSON (U+FFFD stands in for the bad bytes).
- gRPC string fields must be UTF-8 (proto3), and a NUL inside a model or
  tensor name is refused, as REST refuses it, instead of being cut short.
  A name in a REST path obeys the same rule, with the same words
  ("model_name: at byte 0: invalid UTF-8").
"""
import json
import os

import numpy as np
import pytest

from conftest import GUARD, RawConn, Server, assert_error, infer, tensor

X = np.array([1, 2, 3], dtype=np.float32)


def rest_raw(port, path_bytes, body=b"{}"):
    conn = RawConn(port)
    try:
        conn.send(b"POST " + path_bytes + b" HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"application/json\r\nContent-Length: " + str(len(body)).encode() +
                  b"\r\n\r\n" + body)
        return conn.response()
    finally:
        conn.close()


def raw_call(g, samples, method, payload, response_type):
    """A call whose request bytes are given as they are, past grpcio's own checks."""
    channel = g.grpc.insecure_channel(samples.grpc_target)
    try:
        call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}",
                                   request_serializer=None,
                                   response_deserializer=response_type.FromString)
        return call(payload, timeout=GUARD)
    finally:
        channel.close()


def patched(g, req, old, new):
    """The serialized request with one byte string swapped for another of the same length."""
    data = req.SerializeToString()
    assert len(old) == len(new) and data.count(old) == 1
    return data.replace(old, new)


# --- A requested output the model does not produce ----------------------------------


def test_missing_output_rest(samples):
    status, doc = infer(samples.http, "add10", [tensor("INPUT", X)],
                        outputs=["OUTPUT", "nope"])
    assert status == 400, doc
    assert doc == {"error": "outputs[1].name: model add10 has no output 'nope'"}
    # Only the missing one: the output that exists is still served alone.
    status, doc = infer(samples.http, "add10", [tensor("INPUT", X)], outputs=["OUTPUT"])
    assert status == 200 and [o["name"] for o in doc["outputs"]] == ["OUTPUT"]


def test_missing_output_grpc(g, samples, samples_grpc):
    req = g.request("add10", {"INPUT": X}, outputs=["nope"])
    with pytest.raises(g.grpc.RpcError) as err:
        samples_grpc.ModelInfer(req, timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.INVALID_ARGUMENT
    assert "outputs[0].name: model add10 has no output 'nope'" in err.value.details()


def test_missing_output_batched_and_streamed(g, samples, samples_grpc):
    # Through adaptive batching, each request is judged on its own outputs.
    status, doc = infer(samples.http, "batched4", [tensor("x", X.reshape(1, 3))],
                        outputs=["x", "nope"])
    assert status == 400 and "has no output 'nope'" in doc["error"], doc
    # On a stream, the error answers that request, and the stream goes on.
    reqs = [g.request("add10", {"INPUT": X}, outputs=["nope"], id="bad"),
            g.request("add10", {"INPUT": X}, id="good")]
    replies = list(samples_grpc.ModelStreamInfer(iter(reqs), timeout=GUARD))
    assert len(replies) == 2
    assert "outputs[0].name: model add10 has no output 'nope'" in replies[0].error_message
    assert replies[1].error_message == "" and replies[1].infer_response.id == "good"


def test_declared_output_not_produced_is_absent(samples):
    # A model that declares an output it did not produce this time (a conditional
    # branch) still answers 200: the declared one is simply absent.
    status, doc = infer(samples.http, "typed", [tensor("x", np.ones((1, 3), np.float32))],
                        outputs=["x"])
    assert status == 200, doc


# --- Invalid UTF-8 in error bodies --------------------------------------------------


@pytest.mark.parametrize("name,at", [(b"\xff\xfe", 0), (b"ok\xc3", 2), (b"\xed\xa0\x80", 0)])
def test_invalid_utf8_model_name_rest(samples, name, at):
    # Refused as gRPC refuses it, in the same words, and the body is valid JSON.
    resp = rest_raw(samples.http, b"/v2/models/" + name + b"/infer",
                    json.dumps({"inputs": [tensor("INPUT", X)]}).encode())
    assert resp.status == 400, resp.body
    doc = json.loads(resp.body.decode("utf-8"))  # raises if the body is not UTF-8
    assert doc == {"error": f"model_name: at byte {at}: invalid UTF-8"}, doc


def test_percent_encoded_name_is_not_decoded(samples):
    resp = rest_raw(samples.http, b"/v2/models/%FF%FE/infer",
                    json.dumps({"inputs": [tensor("INPUT", X)]}).encode())
    assert resp.status == 404
    assert json.loads(resp.body.decode("utf-8")) == {"error": "model %FF%FE not found"}


def test_invalid_utf8_never_reaches_a_json_body(tmp_path):
    # A text the server did not check quoted in an error (here a folder name read from
    # disk) comes out as valid JSON, U+FFFD standing in for the bad bytes.
    root = tmp_path / "repo"
    root.mkdir()
    srv = Server(os.fsdecode(bytes(root) + b"/\xff\xfe-nowhere"))
    try:
        resp = rest_raw(srv.http, b"/v2/repository/models/m/load", b"")
        assert resp.status >= 400
        doc = json.loads(resp.body.decode("utf-8"))
        assert "\ufffd\ufffd-nowhere" in doc["error"], doc
    finally:
        srv.stop()


def test_invalid_utf8_in_tensor_name_rest(samples):
    body = b'{"inputs": [{"name": "a\xff", "datatype": "FP32", "shape": [1], "data": [1]}]}'
    resp = rest_raw(samples.http, b"/v2/models/add10/infer", body)
    assert resp.status == 400
    doc = json.loads(resp.body.decode("utf-8"))
    assert "inputs[0].name" in doc["error"] and "UTF-8" in doc["error"], doc


# --- gRPC string fields -------------------------------------------------------------


def test_nul_in_grpc_model_name_is_refused(g, samples):
    req = g.request("add10Xevil", {"INPUT": X})
    with pytest.raises(g.grpc.RpcError) as err:
        raw_call(g, samples, "ModelInfer", patched(g, req, b"add10Xevil", b"add10\x00evil"),
                 g.pb2.ModelInferResponse)
    assert err.value.code() == g.grpc.StatusCode.INVALID_ARGUMENT
    assert "model_name: at byte 5: a NUL byte is not allowed" in err.value.details()


def test_nul_in_grpc_tensor_name_is_refused(g, samples):
    req = g.request("add10", {"INPUTQevil": X})
    with pytest.raises(g.grpc.RpcError) as err:
        raw_call(g, samples, "ModelInfer", patched(g, req, b"INPUTQevil", b"INPUT\x00evil"),
                 g.pb2.ModelInferResponse)
    assert err.value.code() == g.grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs[0].name: at byte 5: a NUL byte" in err.value.details()


def test_nul_in_rest_names_is_refused_alike(samples):
    body = json.dumps({"inputs": [tensor("INPUT\u0000evil", X)]}).encode()
    resp = rest_raw(samples.http, b"/v2/models/add10/infer", body)
    assert resp.status == 400
    assert "inputs[0].name" in json.loads(resp.body)["error"]


@pytest.mark.parametrize("field,build,old,new", [
    ("model_name", lambda g: g.request("mQQ", {"INPUT": X}), b"mQQ", b"m\xff\xfe"),
    ("id", lambda g: g.request("add10", {"INPUT": X}, id="idQQ"), b"idQQ", b"id\xc3\x28"),
    ("model_version", lambda g: g.request("add10", {"INPUT": X}, version="vQQQ"), b"vQQQ",
     b"v\xed\xa0\x80"),
    ("inputs[0].name", lambda g: g.request("add10", {"QQ": X}), b"QQ", b"\xc0\xaf"),
    ("outputs[0].name", lambda g: g.request("add10", {"INPUT": X}, outputs=["oQQ"]), b"oQQ",
     b"o\xf8\x80"),
])
def test_invalid_utf8_grpc_fields_are_refused(g, samples, field, build, old, new):
    with pytest.raises(g.grpc.RpcError) as err:
        raw_call(g, samples, "ModelInfer", patched(g, build(g), old, new),
                 g.pb2.ModelInferResponse)
    assert err.value.code() == g.grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(field + ": at byte"), err.value.details()
    assert "invalid UTF-8" in err.value.details()


def test_invalid_utf8_grpc_parameter_text(g, samples):
    req = g.request("add10", {"INPUT": X})
    req.parameters["note"].string_param = "QQQ"
    with pytest.raises(g.grpc.RpcError) as err:
        raw_call(g, samples, "ModelInfer", patched(g, req, b"QQQ", b"\xe2\x82\x28"),
                 g.pb2.ModelInferResponse)
    assert err.value.code() == g.grpc.StatusCode.INVALID_ARGUMENT
    assert "parameters[0].value.string_param" in err.value.details()


def test_valid_utf8_still_served(g, samples, samples_grpc):
    out = samples_grpc.ModelInfer(g.request("add10", {"INPUT": X}, id="ïd-✓"), timeout=GUARD)
    assert out.id == "ïd-✓"


@pytest.mark.parametrize("method,build,field", [
    ("ModelReady", lambda g: g.pb2.ModelReadyRequest(name="add10Xevil"), "name"),
    ("ModelMetadata", lambda g: g.pb2.ModelMetadataRequest(name="add10Xevil"), "name"),
    ("RepositoryModelLoad", lambda g: g.pb2.RepositoryModelLoadRequest(model_name="add10Xevil"),
     "model_name"),
    ("RepositoryModelUnload",
     lambda g: g.pb2.RepositoryModelUnloadRequest(model_name="add10Xevil"), "model_name"),
])
def test_nul_in_names_of_other_calls(g, samples, method, build, field):
    # Not add10: refused, naming the field, as ModelInfer and REST refuse it.
    response = {"ModelReady": g.pb2.ModelReadyResponse,
                "ModelMetadata": g.pb2.ModelMetadataResponse,
                "RepositoryModelLoad": g.pb2.RepositoryModelLoadResponse,
                "RepositoryModelUnload": g.pb2.RepositoryModelUnloadResponse}[method]
    for new, why in ((b"add10\x00evil", "at byte 5: a NUL byte"),
                     (b"add10\xffevil", "at byte 5: invalid UTF-8")):
        with pytest.raises(g.grpc.RpcError) as err:
            raw_call(g, samples, method, patched(g, build(g), b"add10Xevil", new), response)
        assert err.value.code() == g.grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == f"{field}: {why}" + (
            " is not allowed in this string" if "NUL" in why else ""), err.value.details()
