"""seldon-modelgateway over seldon-kafka-dev: records in, the model called through
the router, answers and error records out, read back by kcat."""
import json

import numpy as np
import pytest

from conftest import (HOST, KafkaDev, ModelGateway, consume, consume_all, g, produce, rh, wait_record,  # noqa: F401
                      sh)

IN = "seldon.default.model.{}.inputs"
OUT = "seldon.default.model.{}.outputs"
ERRORS = "seldon.default.errors.errors"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    sh.write_samples(root)
    s = sh.Server(root)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def router(server):
    ups = [rh.upstream_of(server)]
    # "missing" is routed to a server that does not have it: the model call fails.
    r = rh.Router(rh.routes_yaml([(n, ups, None)
                                  for n in ["identity", "add10", "missing", "slow"]]))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def broker():
    b = KafkaDev("--topic", IN.format("add10") + ":4")
    yield b
    b.stop()


def request_bytes(g, model, x, id=""):
    return g.request(model, {"x": np.asarray(x, dtype=np.float32)}, id=id).SerializeToString()


def test_answer_keeps_key_headers_and_partition(g, broker, router):
    gw = ModelGateway(router, "--model", "identity", broker=broker.bootstrap)
    try:
        gw.wait_log(r"assigned seldon\.default\.model\.identity\.inputs")
        key = "3.mypipe.cg5u1df3bq8s73f0slsg"
        produce(broker.bootstrap, IN.format("identity"), request_bytes(g, "", [[1, 2, 3]], "r1"),
                key=key, headers=[("pipeline", "mypipe"), ("x-request-id", "cg5u1df3"),
                                  ("x-pipeline-version", "1"), ("X-Custom", "abc"),
                                  ("other", "not-copied")])
        [rec] = consume(broker.bootstrap, OUT.format("identity"), 1)
        assert rec.key == key
        assert rec.partition == 3  # the key's partition: where the waiting gateway reads
        assert rec.header("pipeline") == "mypipe"
        assert rec.header("x-request-id") == "cg5u1df3"
        assert rec.header("x-pipeline-version") == "1"
        assert rec.header("X-Custom") == "abc"
        assert rec.header("other") is None
        assert rec.header("seldon-pipeline-errors") is None
        resp = g.pb2.ModelInferResponse()
        resp.ParseFromString(rec.value)
        assert resp.model_name == "identity"  # set from the topic: the request had none
        assert resp.id == "r1"
        np.testing.assert_array_equal(g.outputs(resp)["x"], [[1, 2, 3]])
        m = sh.metric(gw.metrics(), "seldon_modelgateway_records_total", result="ok")
        assert m == 1
    finally:
        gw.stop()


def test_raw_contents_stay_raw(g, broker, router):
    gw = ModelGateway(router, "--model", "add10", broker=broker.bootstrap)
    try:
        gw.wait_log(r"assigned seldon\.default\.model\.add10\.inputs", count=4)
        req = g.request("add10", {"x": np.array([[1, 2]], dtype=np.float32)}, raw=True, id="raw")
        produce(broker.bootstrap, IN.format("add10"), req.SerializeToString(), key="0.p.raw1")
        [rec] = consume(broker.bootstrap, OUT.format("add10"), 1)
        resp = g.pb2.ModelInferResponse()
        resp.ParseFromString(rec.value)
        assert len(resp.raw_output_contents) == 1
        np.testing.assert_array_equal(g.outputs(resp)["x"], [[11, 12]])
    finally:
        gw.stop()


def test_failing_model_gives_an_error_record(g, broker, router):
    gw = ModelGateway(router, "--model", "missing", broker=broker.bootstrap)
    try:
        gw.wait_log(r"assigned seldon\.default\.model\.missing\.inputs")
        produce(broker.bootstrap, IN.format("missing"), request_bytes(g, "", [[1]]),
                key="1.p.e1", headers=[("pipeline", "p"), ("x-request-id", "e1")])
        produce(broker.bootstrap, IN.format("missing"), b"\x0b not protobuf", key="2.p.e2")
        recs = sorted(consume(broker.bootstrap, ERRORS, 2), key=lambda r: r.key)
        assert [r.key for r in recs] == ["1.p.e1", "2.p.e2"]
        assert [r.partition for r in recs] == [1, 2]
        for r in recs:
            assert r.header("seldon-pipeline-errors") == "missing"
        assert recs[0].header("pipeline") == "p"
        assert recs[0].header("x-request-id") == "e1"
        assert b"missing" in recs[0].value  # the server's refusal, passed on
        assert b"neither a ModelInferRequest" in recs[1].value
        assert consume_all(broker.bootstrap, OUT.format("missing")) == []
        m = sh.metric(gw.metrics(), "seldon_modelgateway_records_total", result="error")
        assert m == 2
    finally:
        gw.stop()


def test_json_values_go_over_rest(broker, router):
    """As upstream: a value that is JSON rather than protobuf is sent to the router over
    REST and the JSON answer is produced as it is; a failure is an error record."""
    gw = ModelGateway(router, "--model", "identity", "--model", "missing", "--group", "rest",
                      broker=broker.bootstrap)
    try:
        gw.wait_log(r"assigned seldon\.default\.model\.(identity|missing)\.inputs", count=8)
        body = json.dumps({"id": "j1", "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [3, 4]}]}).encode()
        produce(broker.bootstrap, IN.format("identity"), body, key="2.p.json1",
                headers=[("x-request-id", "json1")])
        rec = wait_record(broker.bootstrap, OUT.format("identity"), "2.p.json1")
        assert rec.key == "2.p.json1"
        assert rec.partition == 2
        assert rec.header("x-request-id") == "json1"
        doc = json.loads(rec.value)
        assert doc["model_name"] == "identity"
        assert doc["id"] == "j1"
        assert doc["outputs"][0]["data"] == [3, 4]
        produce(broker.bootstrap, IN.format("missing"), body, key="0.p.json2")
        rec = wait_record(broker.bootstrap, ERRORS, "0.p.json2")
        assert rec.key == "0.p.json2"
        assert rec.header("seldon-pipeline-errors") == "missing"
        assert rec.value.startswith(b"HTTP 404")
    finally:
        gw.stop()


def test_a_call_past_its_timeout_is_an_error_record(g, broker, router):
    # "slow" holds a lone request 0.3 s for company: longer than this gateway waits.
    gw = ModelGateway(router, "--model", "slow", "--timeout", "50", broker=broker.bootstrap)
    try:
        gw.wait_log(r"assigned seldon\.default\.model\.slow\.inputs")
        produce(broker.bootstrap, IN.format("slow"), request_bytes(g, "", [[1]]), key="1.p.late",
                headers=[("x-request-id", "late")])
        rec = wait_record(broker.bootstrap, ERRORS, "1.p.late")
        assert rec.header("seldon-pipeline-errors") == "slow"
        assert rec.header("x-request-id") == "late"
        assert b"--timeout (50 ms)" in rec.value
        assert consume_all(broker.bootstrap, OUT.format("slow")) == []
    finally:
        gw.stop()


def test_router_away_gives_error_records(g, broker):
    """Nothing listens at --router-host: each record is answered by an error record that
    says so, and the gateway goes on."""
    class Away:
        port = 1
    gw = ModelGateway(Away, "--model", "add10", "--group", "away", broker=broker.bootstrap)
    try:
        gw.wait_log(r"assigned seldon\.default\.model\.add10\.inputs", count=4)
        produce(broker.bootstrap, IN.format("add10"), request_bytes(g, "", [[1]]), key="3.p.away")
        rec = wait_record(broker.bootstrap, ERRORS, "3.p.away")
        assert rec.partition == 3
        assert rec.header("seldon-pipeline-errors") == "add10"
        assert b"router 127.0.0.1:1: " in rec.value
    finally:
        gw.stop()
