"""The same serving code in seldon up (daemons/common/plserve.c): the request's x-* headers
come back over REST and gRPC (metadata, not only x-request-id), each step's model version is
added to x-seldon-route in step order, and ModelStreamInfer to a pipeline answers every
request of the stream. seldon up ($SELDON_UP) runs in a temporary folder with the pipelines
and models of tests/integration/up/pipelines, as tests/integration/up does.
"""
import importlib.util
import json
import os

import pytest

from conftest import GUARD, HOST, SOURCE, UP_PIPELINES, outputs, procs

_spec = importlib.util.spec_from_file_location(
    "up_helpers", os.path.join(SOURCE, "tests", "integration", "up", "conftest.py"))
uph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(uph)

V4 = [1, 2, 3, 4]


def f32(name, values):
    return {"name": name, "datatype": "FP32", "shape": [len(values)], "data": values}


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    if not os.path.exists(uph.UP):
        pytest.skip("no seldon-up: set SELDON_UP")
    folder = tmp_path_factory.mktemp("uph")
    os.symlink(UP_PIPELINES, os.path.join(str(folder), "pipelines"))
    u = uph.Up(folder)
    uph.load(u, "pipelines/models.yaml")
    rc, out, err = u.cli("load", "-f", "pipelines/pipelines.yaml")
    assert rc == 0, err
    yield u
    if u.proc.poll() is None:
        assert u.stop() == 0, u.stderr()


def wait_ready(u, name):
    procs.wait_value(lambda: u.curl(f"/v2/pipelines/{name}/ready")[0], lambda c: c == 200, GUARD,
                     lambda c: f"{name}: ready {c}, not 200\n{u.stderr()}")


def test_rest_x_headers_and_routes(up):
    wait_ready(up, "ident")
    code, body, head = up.curl("/v2/pipelines/ident/infer",
                               json.dumps({"inputs": [f32("INPUT", V4)]}),
                               headers=["x-tenant: blue", "x-seldon-route: :old_9:"])
    assert code == 200 and outputs(body) == {"INPUT": V4}, body
    assert "x-tenant: blue" in head
    assert "x-seldon-route: :identity_1::identity2_1:" in head, head


def test_grpc_x_metadata_and_stream(up, g):
    wait_ready(up, "cond")
    channel = g.grpc.insecure_channel(up.target)
    g.grpc.channel_ready_future(channel).result(timeout=GUARD)
    stub = g.pb2_grpc.GRPCInferenceServiceStub(channel)
    try:
        req = g.pb2.ModelInferRequest()
        for name, v in (("CHOICE", None), ("INPUT0", V4), ("INPUT1", V4)):
            t = req.inputs.add()
            t.name = name
            if v is None:
                t.datatype, t.contents.int_contents[:] = "INT32", [1]
                t.shape.append(1)
            else:
                t.datatype = "FP32"
                t.shape.append(4)
                t.contents.fp32_contents.extend(v)
        resp, call = stub.ModelInfer.with_call(
            req, metadata=[("seldon-model", "cond.pipeline"), ("x-tenant", "green")],
            timeout=GUARD)
        meta = dict(call.initial_metadata())
        assert meta["x-tenant"] == "green" and meta["x-request-id"] == resp.id
        assert meta["x-seldon-route"] == ":conditional_1::add10_1:", meta
        # No seldon-model: the message's model name says the pipeline; metadata all the same.
        named = g.pb2.ModelInferRequest()
        named.CopyFrom(req)
        named.model_name = "cond.pipeline"
        resp, call = stub.ModelInfer.with_call(named, metadata=[("x-tenant", "violet")],
                                               timeout=GUARD)
        meta = dict(call.initial_metadata())
        assert meta["x-tenant"] == "violet" and meta["x-request-id"] == resp.id, meta
        assert meta["x-seldon-route"] == ":conditional_1::add10_1:", meta
        reqs = []
        for k in range(3):
            r = g.pb2.ModelInferRequest()
            r.CopyFrom(req)
            r.id = f"st-{k}"
            reqs.append(r)
        assert stub.ModelReady(g.pb2.ModelReadyRequest(name="cond"),
                               metadata=[("seldon-model", "cond.pipeline")],
                               timeout=GUARD).ready is True
        ids = sorted(a.infer_response.id for a in stub.ModelStreamInfer(
            iter(reqs), metadata=[("seldon-model", "cond.pipeline")], timeout=GUARD))
        assert ids == ["st-0", "st-1", "st-2"]
    finally:
        channel.close()
