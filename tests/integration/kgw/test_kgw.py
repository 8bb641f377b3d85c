"""seldon-pipelinegateway --kafka through seldon-router (conftest.py): chaining, a failing
model, a timeout and the asynchronous mode over REST and gRPC, `seldon pipeline infer`,
and two gateways answering every request once. The timeout case uses a model that holds
every request for 3 s, far longer than the timeout asked for."""
import json
import time

import pytest

from conftest import kh, pg

GUARD = pg.GUARD
wait_value = pg.procs.wait_value
SIMPLE = {"inputs": [
    {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(1, 17))},
    {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]}
F4 = {"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}]}
DOUBLED = [2 * i for i in range(1, 17)]


def infer(s, pipeline, body, headers=None):
    return s.request("POST", f"/v2/pipelines/{pipeline}/infer", body, headers=headers)


def wait_answer(s, pipeline="chain"):
    """A new gateway serves once its consumer holds a partition: until then a request
    fails with 503 naming that, so poll until 200."""
    def answered(r):
        code, _, body = r
        if code == 200:
            return True
        assert code == 503 and b"partition" in body, body
        return False
    return wait_value(lambda: infer(s, pipeline, SIMPLE), answered, GUARD,
                      lambda r: f"{r[2]}\n{s.logs()}", interval=0.05)[2]


def test_chain_rest(ksys):
    ksys.wait_ready("chain")
    body = wait_answer(ksys)
    assert pg.outputs(body)["OUTPUT0"] == DOUBLED
    code, head, body = infer(ksys, "chain", SIMPLE,
                             headers={"x-request-id": "k-1", "x-tenant": "blue"})
    assert code == 200, body
    assert json.loads(body)["id"] == "k-1" and head["x-tenant"] == "blue"
    assert pg.outputs(body)["OUTPUT0"] == DOUBLED
    # The gateway wrote the request keyed <partition>.chain.<id>, and the dataflow answered
    # on the outputs topic: read back by kcat.
    recs = [r for r in kh.consume_all(ksys.broker.bootstrap,
                                      "seldon.default.pipeline.chain.inputs")
            if r.key.endswith(".chain.k-1")]
    assert len(recs) == 1 and recs[0].key.split(".")[0].isdigit(), recs
    assert recs[0].header("pipeline") == "chain", recs[0].headers
    assert recs[0].header("x-tenant") == "blue", recs[0].headers


def test_failing_model_and_timeout(ksys):
    wait_answer(ksys)
    code, _, body = infer(ksys, "failing", F4)
    assert code == 400, body
    assert json.loads(body)["error"].startswith("conditional : ") and b"CHOICE" in body
    code, _, body = infer(ksys, "slowpipe", F4, headers={"seldon-timeout-ms": "100"})
    assert code == 504 and b"timed out" in body, body


def test_grpc_through_the_router(ksys, g):
    wait_answer(ksys)
    grpc = g.grpc
    channel = grpc.insecure_channel(f"{pg.HOST}:{ksys.port}")
    grpc.channel_ready_future(channel).result(timeout=GUARD)
    stub = g.pb2_grpc.GRPCInferenceServiceStub(channel)
    try:
        req = g.pb2.ModelInferRequest()
        for name, values in (("INPUT0", list(range(1, 17))), ("INPUT1", [1] * 16)):
            t = req.inputs.add()
            t.name, t.datatype = name, "INT32"
            t.shape.extend([1, 16])
            t.contents.int_contents.extend(values)
        resp = stub.ModelInfer(req, metadata=[("seldon-model", "chain.pipeline"),
                                              ("x-request-id", "kg-1")], timeout=GUARD)
        assert list(resp.outputs[0].contents.int_contents) == DOUBLED or resp.raw_output_contents
        assert resp.model_name == "chain" and resp.id == "kg-1"
        f = g.pb2.ModelInferRequest()
        t = f.inputs.add()
        t.name, t.datatype = "INPUT", "FP32"
        t.shape.extend([4])
        t.contents.fp32_contents.extend([1, 2, 3, 4])
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(f, metadata=[("seldon-model", "failing.pipeline")], timeout=GUARD)
        assert e.value.code() == grpc.StatusCode.UNKNOWN
        assert e.value.details().startswith("conditional : ")
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(f, metadata=[("seldon-model", "slowpipe.pipeline"),
                                         ("seldon-timeout-ms", "100")], timeout=GUARD)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        channel.close()


def test_async(ksys):
    wait_answer(ksys)
    code, head, body = infer(ksys, "chain", SIMPLE, headers={"seldon-async": "true"})
    assert code == 202, body
    rid = json.loads(body)["id"]
    code, _, body = wait_value(lambda: ksys.request("GET", f"/v2/pipelines/chain/requests/{rid}"),
                               lambda r: r[0] != 202, GUARD, lambda r: r[2], interval=0.02)
    assert code == 200 and pg.outputs(body)["OUTPUT0"] == DOUBLED


def test_seldon_pipeline_infer(ksys):
    wait_answer(ksys)
    r = ksys.cli("pipeline", "infer", "chain", json.dumps(SIMPLE))
    assert r.code == 0, r
    assert pg.outputs(r.out)["OUTPUT0"] == DOUBLED
    r = ksys.cli("--inference-mode", "grpc", "pipeline", "infer", "chain", json.dumps(SIMPLE))
    assert r.code == 0, r
    r = ksys.cli("pipeline", "infer", "failing", json.dumps(F4))
    assert r.code != 0 and "conditional : " in r.err, r


def test_two_gateways_answer_once(ksys):
    """A second gateway joins the group: the outputs partitions are shared; every request
    through the router gets exactly one answer, the right one (its own id back)."""
    wait_answer(ksys)
    ksys.add_gateway("kgw-2", *ksys.kafka_args)
    seen = {}
    deadline = time.monotonic() + GUARD
    i = 0
    while len(seen) < 40:
        rid = f"two-{i}"
        i += 1
        code, _, body = infer(ksys, "chain", SIMPLE, headers={"x-request-id": rid})
        if code == 503:
            # a rebalance in progress: a clear error, never silence
            assert b"partition" in body, body
            assert time.monotonic() < deadline, body
            continue
        assert code == 200, body
        out = json.loads(body)
        assert out["id"] == rid and rid not in seen
        assert pg.outputs(body)["OUTPUT0"] == DOUBLED
        seen[rid] = 1
