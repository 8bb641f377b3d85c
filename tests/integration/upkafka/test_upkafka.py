"""seldon up --kafka with the development broker it starts itself: Seldon Core 2's pipeline
scenario families (a chain, a join, a conditional with tensorMap, triggers, chained
externalInputs, a failing model) through seldon up's inference port over REST and gRPC; the
topics read back with kcat (keys "<partition>.<resource>.<request id>", the `pipeline` and
x-* headers, protobuf values); `seldon pipeline inspect` against the same broker; SIGTERM
exits 0 and stops the broker child.
"""
import json
import os
import re

import pytest

from conftest import GUARD, KUp, grpc_stub, kh, outputs, procs
from oipstubs import infer_request, output_values
from upclient import SIMPLE, V4, choice, f32

NS = "seldon.default"


@pytest.fixture(scope="module")
def kup(tmp_path_factory):
    env = dict(os.environ)
    # seldon up finds seldon-kafka-dev itself (beside it, or in the build tree).
    env.pop("SELDON_KAFKA_DEV", None)
    env.pop("SELDON_KAFKA_BROKER", None)
    u = KUp(tmp_path_factory.mktemp("upkafka"), "--kafka-dev-port", "0", env=env)
    m = re.search(r"development broker (\S+) \(pid (\d+)\)", u.stderr())
    assert m and m.group(1) == u.broker, u.stderr()
    u.child = int(m.group(2))
    u.load_all()
    yield u
    if u.proc.poll() is None:
        assert u.stop() == 0, u.stderr()


def records(broker, topic, rid):
    """The records of topic whose key names request rid (read by kcat)."""
    found = []

    def seen():
        found[:] = [r for r in kh.consume_all(broker, topic) if r.key.endswith("." + rid)]
        return bool(found)
    procs.wait_until(seen, GUARD, lambda: f"no record of {rid} in {topic}")
    return found


def check_key(rec, resource, rid):
    m = re.fullmatch(r"(\d+)\.(.+)\.([^.]+)", rec.key)
    assert m and m.group(2) == resource and m.group(3) == rid, rec
    # Every record of a request goes to the partition its key names.
    assert rec.partition == int(m.group(1)), rec


def test_chain_rest_and_its_records(kup, oip):
    code, body, head = kup.curl("/v2/pipelines/chain/infer", json.dumps(SIMPLE),
                                headers=["x-request-id: kchain-1", "x-tenant: blue"])
    assert code == 200, body
    out = outputs(body)
    assert out["OUTPUT0"] == [2 * i for i in range(1, 17)]
    assert out["OUTPUT1"] == [2] * 16
    assert json.loads(body)["model_name"] == "chain"
    assert "x-request-id: kchain-1" in head and "x-tenant: blue" in head

    (req,) = records(kup.broker, f"{NS}.pipeline.chain.inputs", "kchain-1")
    check_key(req, "chain", "kchain-1")
    assert req.header("pipeline") == "chain"
    assert req.header("x-request-id") == "kchain-1"
    assert req.header("x-tenant") == "blue"
    pb = oip.pb2.ModelInferRequest.FromString(req.value)
    assert [t.name for t in pb.inputs] == ["INPUT0", "INPUT1"]

    (ans,) = records(kup.broker, f"{NS}.pipeline.chain.outputs", "kchain-1")
    assert ans.key == req.key
    assert ans.header("pipeline") == "chain" and ans.header("x-tenant") == "blue"
    resp = oip.pb2.ModelInferResponse.FromString(ans.value)
    assert resp.model_name == "chain"
    assert output_values(resp, 0) == [2 * i for i in range(1, 17)]

    # The steps: the same key on the models' topics, with the pipeline header.
    for topic, kind in (("model.tfsimple1.inputs", "ModelInferRequest"),
                        ("model.tfsimple1.outputs", "ModelInferResponse"),
                        ("model.tfsimple2.inputs", "ModelInferRequest"),
                        ("model.tfsimple2.outputs", "ModelInferResponse")):
        mine = [r for r in records(kup.broker, f"{NS}.{topic}", "kchain-1")
                if r.header("pipeline") == "chain"]
        assert len(mine) == 1 and mine[0].key == req.key, (topic, mine)
        assert mine[0].header("x-request-id") == "kchain-1"
        getattr(oip.pb2, kind).FromString(mine[0].value)
    step2 = oip.pb2.ModelInferResponse.FromString(
        records(kup.broker, f"{NS}.model.tfsimple2.outputs", "kchain-1")[0].value)
    assert output_values(step2, 1) == [2] * 16


def test_models_are_called_in_process(kup):
    """The model gateway's calls reach the replica by function call, not through the
    inference port: the ingress counts no gRPC request while the models answer gRPC calls."""
    ingress0 = kup.metric_sum("seldon_up_requests_total{", 'protocol="grpc"')
    calls0 = kup.metric_sum("seldon_model_infer_total{", 'model="tfsimple1_1"', 'code="0"')
    code, body, _ = kup.curl("/v2/pipelines/chain/infer", json.dumps(SIMPLE))
    assert code == 200, body
    assert kup.metric_sum("seldon_model_infer_total{", 'model="tfsimple1_1"',
                          'code="0"') == calls0 + 1
    assert kup.metric_sum("seldon_up_requests_total{", 'protocol="grpc"') == ingress0
    assert kup.metric_sum("seldon_modelgateway_records_total{", 'result="ok"') >= 2


def test_join_through_tensor_map_rest_and_grpc(kup, oip):
    code, body, _ = kup.curl("/v2/pipelines/join/infer", json.dumps(SIMPLE))
    assert code == 200, body
    assert outputs(body) == {"OUTPUT0": [2 * i for i in range(1, 17)], "OUTPUT1": [2] * 16}
    channel, stub = grpc_stub(oip, kup.target)
    try:
        req = infer_request(oip, [("INPUT0", "INT32", [1, 16], list(range(1, 17))),
                                 ("INPUT1", "INT32", [1, 16], [1] * 16)])
        resp, call = stub.ModelInfer.with_call(
            req, metadata=[("seldon-model", "join.pipeline"), ("x-request-id", "kjoin-g")],
            timeout=GUARD)
        assert resp.model_name == "join" and resp.id == "kjoin-g"
        assert output_values(resp, 0) == [2 * i for i in range(1, 17)]
        assert output_values(resp, 1) == [2] * 16
    finally:
        channel.close()
    (ans,) = records(kup.broker, f"{NS}.pipeline.join.outputs", "kjoin-g")
    check_key(ans, "join", "kjoin-g")
    # Both branches' model outputs were there to join, under the same key.
    for model in ("tfsimple1", "tfsimple2", "tfsimple3"):
        mine = [r for r in records(kup.broker, f"{NS}.model.{model}.outputs", "kjoin-g")
                if r.header("pipeline") == "join"]
        assert [r.key for r in mine] == [ans.key], model


def test_conditional_with_tensor_map(kup, oip):
    code, body, _ = kup.curl("/v2/pipelines/cond/infer", choice(0),
                             headers=["x-request-id: kcond-0"])
    assert code == 200, body
    assert json.loads(body)["outputs"] == [
        {"name": "OUTPUT", "datatype": "FP32", "shape": [4], "data": [10, 20, 30, 40]}]
    code, body, _ = kup.curl("/v2/pipelines/cond/infer", choice(1),
                             headers=["x-request-id: kcond-1"])
    assert code == 200 and outputs(body)["OUTPUT"] == [11, 12, 13, 14], body
    # Only the branch taken called its model: mul10 for CHOICE 0, add10 for CHOICE 1.
    mul = [r.key for r in kh.consume_all(kup.broker, f"{NS}.model.mul10.inputs")]
    add = [r.key for r in kh.consume_all(kup.broker, f"{NS}.model.add10.inputs")]
    assert any(k.endswith(".kcond-0") for k in mul) and not any(k.endswith(".kcond-0") for k in add)
    assert any(k.endswith(".kcond-1") for k in add) and not any(k.endswith(".kcond-1") for k in mul)
    channel, stub = grpc_stub(oip, kup.target)
    try:
        req = infer_request(oip, [("CHOICE", "INT32", [1], [0]), ("INPUT0", "FP32", [4], V4),
                                 ("INPUT1", "FP32", [4], V4)])
        resp = stub.ModelInfer(req, metadata=[("seldon-model", "cond.pipeline")], timeout=GUARD)
        assert [(o.name, o.datatype, list(o.shape)) for o in resp.outputs] == \
            [("OUTPUT", "FP32", [4])]
        assert output_values(resp, 0) == [10, 20, 30, 40]
    finally:
        channel.close()


def test_triggers(kup):
    def req(*triggers):
        ts = [f32("INPUT", V4)] + [{"name": t, "datatype": "INT32", "shape": [1], "data": [1]}
                                   for t in triggers]
        return json.dumps({"inputs": ts})
    code, body, _ = kup.curl("/v2/pipelines/triggers/infer", req("ok2"))
    assert code == 200 and outputs(body) == {"OUTPUT": [10, 20, 30, 40]}, body
    code, body, _ = kup.curl("/v2/pipelines/triggers/infer", req("ok1", "ok3"),
                             headers=["x-request-id: ktrig-13"])
    assert code == 200 and outputs(body) == {"OUTPUT": [10, 20, 30, 40]}, body
    # ok4 missing: add10 was not triggered (no record of that request on its inputs).
    assert not any(r.key.endswith(".ktrig-13")
                   for r in kh.consume_all(kup.broker, f"{NS}.model.add10.inputs"))
    code, body, _ = kup.curl("/v2/pipelines/triggers/infer", req("ok3", "ok4"))
    assert code == 200 and outputs(body) == {"OUTPUT": [11, 12, 13, 14]}, body


def test_two_outputs_named_alike_grpc(kup, oip):
    channel, stub = grpc_stub(oip, kup.target)
    try:
        req = infer_request(oip, [("INPUT0", "FP32", [4], V4), ("INPUT1", "FP32", [4], V4)])
        resp = stub.ModelInfer(req, metadata=[("seldon-model", "inputs.pipeline")],
                               timeout=GUARD)
        assert [o.name for o in resp.outputs] == ["OUTPUT", "OUTPUT"]
        assert output_values(resp, 0) == [10, 20, 30, 40]
        assert output_values(resp, 1) == [11, 12, 13, 14]
    finally:
        channel.close()


def test_chained_external_inputs(kup, oip):
    code, body, head = kup.curl("/v2/pipelines/inputs/infer", choice(0),
                                headers=["x-request-id: kchain-me"])
    assert code == 200, body
    # Pipeline "chained" read add10's output of that request and added 20: its answer is
    # on its own outputs topic, under the key of the request that fed it.
    (rec,) = records(kup.broker, f"{NS}.pipeline.chained.outputs", "kchain-me")
    check_key(rec, "inputs", "kchain-me")
    assert rec.header("pipeline") == "chained"
    resp = oip.pb2.ModelInferResponse.FromString(rec.value)
    assert output_values(resp, 0) == [31, 32, 33, 34]
    assert any(r.header("pipeline") == "chained"
               for r in records(kup.broker, f"{NS}.model.add20.inputs", "kchain-me"))


def test_failing_model_rest_and_grpc(kup, oip):
    code, body, _ = kup.curl("/v2/pipelines/failing/infer",
                             json.dumps({"inputs": [f32("INPUT", V4)]}),
                             headers=["x-request-id: kfail-1"])
    assert code == 400, body
    assert json.loads(body)["error"].startswith("conditional : "), body
    errs = [r for r in records(kup.broker, f"{NS}.errors.errors", "kfail-1")
            if r.header("pipeline") == "failing"]
    assert errs and errs[0].header("seldon-pipeline-errors") == "conditional"
    (ans,) = records(kup.broker, f"{NS}.pipeline.failing.outputs", "kfail-1")
    assert ans.header("seldon-pipeline-errors") == "conditional"
    assert ans.header("seldon-error-kind") == "model"
    channel, stub = grpc_stub(oip, kup.target)
    try:
        req = infer_request(oip, [("INPUT", "FP32", [4], V4)])
        with pytest.raises(oip.grpc.RpcError) as e:
            stub.ModelInfer(req, metadata=[("seldon-model", "failing.pipeline")], timeout=GUARD)
        assert e.value.code() == oip.grpc.StatusCode.UNKNOWN
        assert e.value.details().startswith("conditional : ")
    finally:
        channel.close()


def test_raw_contents_unchanged_over_kafka(kup, oip):
    channel, stub = grpc_stub(oip, kup.target)
    try:
        payload = bytes(range(256)) * 4
        req = infer_request(oip, [("INPUT", "FP32", [1, len(payload) // 4], payload)])
        resp = stub.ModelInfer(req, metadata=[("seldon-model", "ident.pipeline")], timeout=GUARD)
        assert resp.raw_output_contents[0] == payload
    finally:
        channel.close()


def test_ready_and_unknown(kup):
    assert kup.curl("/v2/pipelines/chain/ready")[0] == 200
    assert kup.curl("/v2/pipelines/unready/ready")[0] == 424
    code, body, _ = kup.curl("/v2/pipelines/nosuch/infer", json.dumps(SIMPLE))
    assert code == 404 and "nosuch" in body


def test_seldon_pipeline_inspect_matches_kcat(kup):
    code, body, _ = kup.curl("/v2/pipelines/chain/infer", json.dumps(SIMPLE),
                             headers=["x-request-id: kinspect-1"])
    assert code == 200, body
    (ans,) = records(kup.broker, f"{NS}.pipeline.chain.outputs", "kinspect-1")
    rc, out, err = kup.cli("pipeline", "inspect", "chain.outputs", "--kafka-broker", kup.broker,
                           "--request-id", "kinspect-1", "--offset", "100")
    assert rc == 0, err
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, out
    topic, key, value = lines[0].split("\t", 2)
    assert topic == f"{NS}.pipeline.chain.outputs" and key == ans.key
    doc = json.loads(value)
    assert doc["modelName"] == "chain"
    assert [o["name"] for o in doc["outputs"]] == ["OUTPUT0", "OUTPUT1"]
    # A step's tensor, as the step's outputs topic holds it.
    rc, out, err = kup.cli("pipeline", "inspect", "chain.tfsimple1.outputs.OUTPUT0",
                           "--kafka-broker", kup.broker, "--request-id", "kinspect-1",
                           "--offset", "100")
    assert rc == 0, err
    (line,) = [ln for ln in out.splitlines() if ln.strip()]
    topic, key, value = line.split("\t", 2)
    assert topic == f"{NS}.model.tfsimple1.outputs" and key == ans.key
    tensor = json.loads(value)
    assert tensor["name"] == "OUTPUT0"
    assert tensor["contents"]["intContents"] == [i + 1 for i in range(1, 17)]


def test_unload_and_load_again(kup):
    """A pipeline unloaded leaves the gateway and the dataflow worker (404); loaded again it
    is served over Kafka again, with the same answers."""
    rc, out, err = kup.cli("pipeline", "unload", "join")
    assert rc == 0, err
    procs.wait_until(lambda: kup.curl("/v2/pipelines/join/ready")[0] == 404, GUARD,
                     lambda: f"join still served\n{kup.stderr()}")
    assert re.search(r"pipeline join v1: removed", kup.stderr()), kup.stderr()
    rc, out, err = kup.cli("load", "-f", "pipelines/pipelines.yaml")
    assert rc == 0, err
    procs.wait_until(lambda: kup.curl("/v2/pipelines/join/ready")[0] == 200, GUARD,
                     lambda: f"join not served again\n{kup.stderr()}")
    code, body, _ = kup.curl("/v2/pipelines/join/infer", json.dumps(SIMPLE))
    assert code == 200, body
    assert outputs(body) == {"OUTPUT0": [2 * i for i in range(1, 17)], "OUTPUT1": [2] * 16}


def test_sigterm_exits_0_and_stops_the_broker(kup):
    assert os.path.exists(f"/proc/{kup.child}")
    assert kup.stop() == 0, kup.stderr()
    # seldon up waited for its child: no process, not even a zombie, is left.
    assert not os.path.exists(f"/proc/{kup.child}"), kup.stderr()
    assert "stopping the development broker" in kup.stderr()
