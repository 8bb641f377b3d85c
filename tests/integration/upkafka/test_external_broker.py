"""seldon up --kafka-broker HOST:PORT: pipelines over a Kafka cluster seldon up did not start
(a seldon-kafka-dev process of its own here), with the Kafka daemons' flags (a topic
namespace, librdkafka properties). seldon up starts no broker, and leaves this one running
when it exits.
"""
import json
import re

import pytest

from conftest import GUARD, KUp, grpc_stub, kh, outputs, procs
from oipstubs import infer_request, output_values

SIMPLE = {"inputs": [
    {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(1, 17))},
    {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]}
NS = "seldon.upk"


@pytest.fixture(scope="module")
def ext(tmp_path_factory):
    broker = kh.KafkaDev()
    u = KUp(tmp_path_factory.mktemp("upkafka-ext"), "--kafka-broker", broker.bootstrap,
            "--kafka-namespace", "upk", "--kafka-config", "session.timeout.ms=6000",
            "--kafka-config", "fetch.wait.max.ms=10")
    u.dev = broker
    assert u.broker == broker.bootstrap
    assert "development broker" not in u.stderr()
    u.load_all()
    yield u
    if u.proc.poll() is None:
        assert u.stop() == 0, u.stderr()
    broker.stop()


def test_chain_rest_and_grpc_on_the_named_cluster(ext, oip):
    code, body, _ = ext.curl("/v2/pipelines/chain/infer", json.dumps(SIMPLE),
                             headers=["x-request-id: kext-1"])
    assert code == 200, body
    assert outputs(body)["OUTPUT0"] == [2 * i for i in range(1, 17)]
    channel, stub = grpc_stub(oip, ext.target)
    try:
        req = infer_request(oip, [("INPUT0", "INT32", [1, 16], list(range(1, 17))),
                                 ("INPUT1", "INT32", [1, 16], [1] * 16)])
        resp = stub.ModelInfer(req, metadata=[("seldon-model", "chain.pipeline"),
                                              ("x-request-id", "kext-2")], timeout=GUARD)
        assert output_values(resp, 1) == [2] * 16 and resp.id == "kext-2"
    finally:
        channel.close()
    # The namespace flag names the topics; the records are on the cluster named.
    for rid in ("kext-1", "kext-2"):
        found = []

        def seen():
            found[:] = [r for r in kh.consume_all(ext.broker, f"{NS}.pipeline.chain.outputs")
                        if r.key.endswith("." + rid)]
            return bool(found)
        procs.wait_until(seen, GUARD, lambda: f"no answer of {rid}\n{ext.stderr()}")
        (rec,) = found
        assert re.fullmatch(rf"\d+\.chain\.{rid}", rec.key), rec
        assert rec.header("pipeline") == "chain" and rec.header("x-request-id") == rid
        resp = oip.pb2.ModelInferResponse.FromString(rec.value)
        assert resp.model_name == "chain" and output_values(resp, 1) == [2] * 16


def test_conditional_on_the_named_cluster(ext):
    req = json.dumps({"inputs": [
        {"name": "CHOICE", "datatype": "INT32", "shape": [1], "data": [1]},
        {"name": "INPUT0", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]},
        {"name": "INPUT1", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}]})
    code, body, _ = ext.curl("/v2/pipelines/cond/infer", req)
    assert code == 200 and outputs(body)["OUTPUT"] == [11, 12, 13, 14], body


def test_sigterm_leaves_the_cluster_running(ext):
    assert ext.stop() == 0, ext.stderr()
    assert ext.dev.proc.poll() is None  # not seldon up's to stop
    assert any(r.key.endswith(".kext-1")
               for r in kh.consume_all(ext.broker, f"{NS}.pipeline.chain.inputs"))
