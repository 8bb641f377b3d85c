"""gRPC request framing in seldon up, for a model's call and a pipeline's (both read their
messages with plserve's sdp_grpc_in): a unary call's one message, compressed, unfinished,
too large or missing messages (sent as they are with nghttp), a stream's messages each
answered (grpcio, raw bytes without the stubs' serializers).
"""
import re
import struct
import subprocess

import pytest

from conftest import GUARD, Up, grpc_stub, load
from oipstubs import infer_request, output_values

INFER = "/inference.GRPCInferenceService/ModelInfer"
STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"

PIPELINE = """apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: twice
spec:
  steps:
  - name: add10
  - name: mul10
    inputs:
    - add10
  output:
    steps:
    - mul10
"""

TARGETS = [("add10", [11, 12, 13, 14]), ("twice.pipeline", [110, 120, 130, 140])]


@pytest.fixture(scope="module")
def fup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("framing")
    u = Up(folder)
    load(u, "examples/manifests/models.yaml")
    with open(folder / "twice.yaml", "w") as f:
        f.write(PIPELINE)
    rc, out, err = u.cli("pipeline", "load", "-f", "twice.yaml")
    assert rc == 0, err
    rc, out, err = u.cli("pipeline", "status", "twice", "-w", "PipelineReady")
    assert rc == 0, err
    yield u
    if u.proc.poll() is None:
        rc = u.stop()
        assert rc == 0, u.stderr()


def request(oip):
    return infer_request(oip, [("INPUT", "FP32", [4], [1, 2, 3, 4])]).SerializeToString()


@pytest.mark.parametrize("target,want", TARGETS)
def test_one_message_answers(fup, oip, target, want):
    channel, _ = grpc_stub(oip, fup.target)
    try:
        call = channel.unary_unary(INFER)
        raw = call(request(oip), metadata=[("seldon-model", target)], timeout=GUARD)
        resp = oip.pb2.ModelInferResponse.FromString(raw)
        assert output_values(resp, 0) == want
    finally:
        channel.close()


def nghttp(fup, tmp_path, target, body):
    """A ModelInfer call whose DATA is body as it is (nghttp sends it): its trailers."""
    path = tmp_path / "body.bin"
    path.write_bytes(body)
    cmd = ["nghttp", "-v", "-n", "-d", str(path), "-H", "content-type: application/grpc", "-H",
           "te: trailers", "-H", f"seldon-model: {target}", f"http://{fup.target}{INFER}"]
    p = subprocess.run(cmd, capture_output=True, timeout=GUARD)
    out = p.stdout.decode(errors="replace")
    status = re.search(r"grpc-status: (\d+)", out)
    message = re.search(r"grpc-message: (.*)", out)
    assert status, out
    return int(status.group(1)), message.group(1).strip() if message else ""


def framed(msg, flag=0, length=None):
    return bytes([flag]) + struct.pack(">I", len(msg) if length is None else length) + msg


@pytest.mark.parametrize("target,want", TARGETS)
def test_framing_errors(fup, oip, tmp_path, target, want):
    msg = request(oip)
    assert nghttp(fup, tmp_path, target, framed(msg))[0] == 0  # the call as nghttp makes it
    status, why = nghttp(fup, tmp_path, target, framed(msg, flag=1))
    assert (status, why) == (12, "compressed messages are not supported")
    status, why = nghttp(fup, tmp_path, target, framed(msg, length=len(msg) + 10))
    assert (status, why) == (13, "the request ended inside a message")
    status, why = nghttp(fup, tmp_path, target, framed(b"", length=1 << 31))
    assert (status, why) == (8, "request message larger than --max-body")
    status, why = nghttp(fup, tmp_path, target, b"")
    assert (status, why) == (13, "the call carried no request message")


@pytest.mark.parametrize("target,want", TARGETS)
def test_stream_messages_each_answered(fup, oip, target, want):
    channel, _ = grpc_stub(oip, fup.target)
    try:
        call = channel.stream_stream(STREAM)
        answers = list(call(iter([request(oip)] * 5), metadata=[("seldon-model", target)],
                            timeout=GUARD))
        assert len(answers) == 5
        for raw in answers:
            m = oip.pb2.ModelStreamInferResponse.FromString(raw)
            assert m.error_message == ""
            assert output_values(m.infer_response, 0) == want
    finally:
        channel.close()


def test_many_headers_through_steps_and_back(fup, oip):
    """More x-* headers, and longer, than a request keeps without allocating: all of them
    come back, each once, with the steps' x-seldon-route after them (REST and gRPC)."""
    sent = [(f"x-h{i}", f"v{i}-" + "z" * 60) for i in range(10)]
    body = '{"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [4], "data": [1,2,3,4]}]}'
    code, out, head = fup.curl("/v2/pipelines/twice/infer", body,
                               headers=[f"{n}: {v}" for n, v in sent])
    assert code == 200, out
    for n, v in sent:
        assert head.count(f"{n}: {v}\r\n") == 1, head
    routes = re.findall(r"x-seldon-route: (\S+)", head)
    assert len(routes) == 1 and re.fullmatch(r":add10_\d+::mul10_\d+:", routes[0]), head

    channel, stub = grpc_stub(oip, fup.target)
    try:
        req = infer_request(oip, [("INPUT", "FP32", [4], [1, 2, 3, 4])])
        resp, call = stub.ModelInfer.with_call(
            req, metadata=[("seldon-model", "twice.pipeline")] + sent, timeout=GUARD)
        assert output_values(resp, 0) == [110, 120, 130, 140]
        md = list(call.initial_metadata())
        for n, v in sent:
            assert md.count((n, v)) == 1, md
        assert re.fullmatch(r":add10_\d+::mul10_\d+:", dict(md)["x-seldon-route"]), md
    finally:
        channel.close()
