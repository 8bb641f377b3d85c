"""seldon-pipelinegateway in the distributed system (conftest.py): Seldon Core 2's pipeline
scenario families that matter for the transport, through seldon-router over REST and gRPC
and with `seldon pipeline infer`; two gateways sharing the load; the router and the gateways
serving while the scheduler is down; x-* headers there and back.

The pipelines are seldon up's (tests/integration/up/pipelines/pipelines.yaml). No assertion
depends on time: the timeout case uses a model that holds every request for 3 s, far longer
than the timeout asked for.
"""
import json
import os
import subprocess

import pytest

from conftest import GUARD, HOST, UP_PIPELINES, System, cp, models_yaml, outputs, sh
from conftest import cluster
from oipstubs import infer_request, output_values
from procs import wait_until, wait_value

cluster_until = cluster.until

SIMPLE = {"inputs": [
    {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(1, 17))},
    {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]}
V4 = [1, 2, 3, 4]
PIPELINES = ("chain", "join", "cond", "inputs", "triggers", "chained", "cycle", "failing",
             "slowpipe", "ident")


def f32(name, values, shape=None):
    return {"name": name, "datatype": "FP32", "shape": shape or [len(values)], "data": values}


def choice(c):
    return {"inputs": [{"name": "CHOICE", "datatype": "INT32", "shape": [1], "data": [c]},
                       f32("INPUT0", V4), f32("INPUT1", V4)]}


def pipeline_status(s, name):
    r = s.cli("pipeline", "status", name)
    assert r.code == 0, r
    return r.json()["versions"][0]["state"]


@pytest.fixture(scope="module")
def sysm(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gw")
    src = tmp / "src"
    src.mkdir()
    s = System(tmp)
    try:
        s.load("models.yaml", models_yaml(str(src)), "-w", "ModelAvailable")
        s.load("pipelines.yaml", open(os.path.join(UP_PIPELINES, "pipelines.yaml")).read())
        yield s
    finally:
        s.stop()


def wait_state(s, name, state):
    last = {}

    def reached():
        last["st"] = st = pipeline_status(s, name)
        return st["pipelineVersion"] and st["status"] == state
    wait_until(reached, GUARD, lambda: f"{name}: {last['st']}\n{s.logs()}")
    return last["st"]


def test_a_pipeline_waits_for_a_gateway(sysm):
    """Models ready and no gateway: not Ready, and the status says what it waits for; the
    router has the route but no upstream. Then gw1 connects and it is Ready."""
    st = wait_state(sysm, "chain", "PipelineCreating")
    assert "pipeline gateway" in st["reason"], st
    code, _, body = sysm.request("POST", "/v2/pipelines/chain/infer", SIMPLE)
    assert code in (404, 503), body
    sysm.add_gateway("gw1")
    wait_state(sysm, "chain", "PipelineReady")
    for name in PIPELINES:
        sysm.wait_ready(name, 200)
    sysm.wait_ready("unready", 424)


def test_model_chaining_and_join_rest(sysm):
    code, head, body = sysm.request("POST", "/v2/pipelines/chain/infer", SIMPLE)
    assert code == 200, body
    out = outputs(body)
    assert out["OUTPUT0"] == [2 * i for i in range(1, 17)] and out["OUTPUT1"] == [2] * 16
    assert json.loads(body)["model_name"] == "chain"
    assert json.loads(body)["id"] == head["x-request-id"]
    code, _, body = sysm.request("POST", "/v2/models/anything/infer", SIMPLE,
                                 headers={"seldon-model": "join.pipeline"})
    assert code == 200, body
    assert outputs(body)["OUTPUT0"] == [2 * i for i in range(1, 17)]


def test_conditional_and_two_outputs_named_output(sysm):
    code, _, body = sysm.request("POST", "/v2/pipelines/cond/infer", choice(0))
    assert code == 200, body
    assert json.loads(body)["outputs"] == [
        {"name": "OUTPUT", "datatype": "FP32", "shape": [4], "data": [10, 20, 30, 40]}]
    code, _, body = sysm.request("POST", "/v2/pipelines/cond/infer", choice(1))
    assert code == 200 and outputs(body)["OUTPUT"] == [11, 12, 13, 14], body
    code, _, body = sysm.request("POST", "/v2/pipelines/inputs/infer",
                                 {"inputs": [f32("INPUT0", V4), f32("INPUT1", V4)]})
    assert code == 200, body
    assert [o["data"] for o in json.loads(body)["outputs"]] == [[10, 20, 30, 40],
                                                                 [11, 12, 13, 14]]


def test_triggers_and_cycle(sysm):
    ts = [f32("INPUT", V4), {"name": "ok3", "datatype": "INT32", "shape": [1], "data": [1]},
          {"name": "ok4", "datatype": "INT32", "shape": [1], "data": [1]}]
    code, _, body = sysm.request("POST", "/v2/pipelines/triggers/infer", {"inputs": ts})
    assert code == 200 and outputs(body) == {"OUTPUT": [11, 12, 13, 14]}, body
    code, _, body = sysm.request("POST", "/v2/pipelines/cycle/infer",
                                 {"inputs": [f32("INPUT", V4)]})
    assert code == 400 and json.loads(body)["error"] == "Max step revisits (3) exceeded"


def test_input_chaining_result_by_id(sysm):
    code, head, body = sysm.request("POST", "/v2/pipelines/inputs/infer",
                                    {"inputs": [f32("INPUT0", V4), f32("INPUT1", V4)]},
                                    headers={"x-request-id": "chain-me-1"})
    assert code == 200 and head["x-request-id"] == "chain-me-1", body
    code, body = poll_result(sysm, "chained", "chain-me-1")
    assert code == 200 and outputs(body) == {"OUTPUT": [31, 32, 33, 34]}, body


def test_failing_model_and_timeout(sysm):
    code, _, body = sysm.request("POST", "/v2/pipelines/failing/infer",
                                 {"inputs": [f32("INPUT", V4)]})
    assert code == 400, body
    assert json.loads(body)["error"].startswith("conditional : ") and b"CHOICE" in body
    code, _, body = sysm.request("POST", "/v2/pipelines/slowpipe/infer",
                                 {"inputs": [f32("INPUT", V4)]},
                                 headers={"seldon-timeout-ms": "100"})
    assert code == 504 and b"timed out" in body, body
    code, _, body = sysm.request("POST", "/v2/pipelines/slowpipe/infer",
                                 {"inputs": [f32("INPUT", V4)]},
                                 headers={"seldon-timeout-ms": "soon"})
    assert code == 400 and b"seldon-timeout-ms" in body
    # The pipeline's own timeout (spec.timeoutMs) applies to requests that ask for none.
    sysm.load("slowspec.yaml", """apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: slowspec
spec:
  timeoutMs: 150
  steps:
  - name: slow
  output:
    steps:
    - slow
""")
    sysm.wait_ready("slowspec", 200)
    code, _, body = sysm.request("POST", "/v2/pipelines/slowspec/infer",
                                 {"inputs": [f32("INPUT", V4)]})
    assert code == 504 and b"timed out" in body, body


def poll_result(s, pipeline, rid):
    last = {}

    def done():
        code, _, body = s.request("GET", f"/v2/pipelines/{pipeline}/requests/{rid}")
        last["r"] = (code, body)
        return code != 202
    wait_until(done, GUARD, lambda: last["r"][1])
    return last["r"]


def test_async_mode(sysm):
    for path, headers in (("/v2/pipelines/chain/infer", {"seldon-async": "true"}),
                          ("/v2/pipelines/chain/infer?async=true", {})):
        code, head, body = sysm.request("POST", path, SIMPLE, headers=headers)
        assert code == 202, body
        rid = json.loads(body)["id"]
        assert head["x-request-id"] == rid
        code, body = poll_result(sysm, "chain", rid)
        assert code == 200 and outputs(body)["OUTPUT0"] == [2 * i for i in range(1, 17)]
    code, _, body = sysm.request("GET", "/v2/pipelines/chain/requests/no-such-id")
    assert code == 404 and b"no-such-id" in body


def test_ready_and_unknown(sysm):
    code, _, body = sysm.request("GET", "/v2/pipelines/unready/ready")
    assert code == 424, body
    code, _, body = sysm.request("GET", "/v2/pipelines/nosuch/ready")
    assert code == 404, body
    code, _, body = sysm.request("POST", "/v2/pipelines/nosuch/infer", SIMPLE)
    assert code == 404 and b"nosuch" in body, body


def test_x_headers_round_trip_rest(sysm):
    code, head, body = sysm.request("POST", "/v2/pipelines/chain/infer", SIMPLE,
                                    headers={"x-tenant": "blue", "x-request-id": "mine-42"})
    assert code == 200, body
    assert head["x-tenant"] == "blue" and head["x-request-id"] == "mine-42"
    assert json.loads(body)["id"] == "mine-42"


def grpc_stub(g, port):
    channel = g.grpc.insecure_channel(f"{HOST}:{port}")
    g.grpc.channel_ready_future(channel).result(timeout=GUARD)
    return channel, g.pb2_grpc.GRPCInferenceServiceStub(channel)


def test_grpc_through_the_router(sysm, g):
    channel, stub = grpc_stub(g, sysm.port)
    grpc = g.grpc
    try:
        md = [("seldon-model", "chain.pipeline"), ("x-tenant", "green")]
        req = infer_request(g, [("INPUT0", "INT32", [1, 16], list(range(1, 17))),
                               ("INPUT1", "INT32", [1, 16], [1] * 16)])
        resp, call = stub.ModelInfer.with_call(req, metadata=md + [("x-request-id", "g-1")],
                                               timeout=GUARD)
        assert output_values(resp, 0) == [2 * i for i in range(1, 17)]
        assert resp.model_name == "chain" and resp.id == "g-1"
        meta = dict(call.initial_metadata())
        assert meta["x-request-id"] == "g-1" and meta["x-tenant"] == "green"

        req = infer_request(g, [("CHOICE", "INT32", [1], [0]), ("INPUT0", "FP32", [4], V4),
                               ("INPUT1", "FP32", [4], V4)])
        resp = stub.ModelInfer(req, metadata=[("seldon-model", "cond.pipeline")], timeout=GUARD)
        assert [o.name for o in resp.outputs] == ["OUTPUT"]
        assert output_values(resp, 0) == [10, 20, 30, 40]

        req = infer_request(g, [("INPUT", "FP32", [4], V4)])
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req, metadata=[("seldon-model", "failing.pipeline")], timeout=GUARD)
        assert e.value.code() == grpc.StatusCode.UNKNOWN
        assert e.value.details().startswith("conditional : ")
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req, metadata=[("seldon-model", "slowpipe.pipeline"),
                                           ("seldon-timeout-ms", "100")], timeout=GUARD)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req, metadata=[("seldon-model", "slowpipe.pipeline")], timeout=0.2)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

        # ModelReady answers for a pipeline as /ready does.
        ready = g.pb2.ModelReadyRequest(name="cond")
        assert stub.ModelReady(ready, metadata=[("seldon-model", "cond.pipeline")],
                               timeout=GUARD).ready is True
        assert stub.ModelReady(ready, metadata=[("seldon-model", "unready.pipeline")],
                               timeout=GUARD).ready is False
    finally:
        channel.close()


def test_grpc_raw_contents_pass_unchanged(sysm, g):
    channel, stub = grpc_stub(g, sysm.port)
    try:
        payload = bytes(range(256)) * 4  # any bit patterns, NaNs included
        req = infer_request(g, [("INPUT", "FP32", [1, len(payload) // 4], payload)])
        resp = stub.ModelInfer(req, metadata=[("seldon-model", "ident.pipeline")], timeout=GUARD)
        assert list(resp.outputs[0].shape) == [1, len(payload) // 4]
        assert resp.raw_output_contents[0] == payload
    finally:
        channel.close()


def test_grpc_stream_infer(sysm, g):
    """ModelStreamInfer to a pipeline answers each request of the stream (by its id)."""
    channel, stub = grpc_stub(g, sysm.port)
    try:
        reqs = [infer_request(g, [("CHOICE", "INT32", [1], [k % 2]), ("INPUT0", "FP32", [4], V4),
                                 ("INPUT1", "FP32", [4], V4)], rid=f"s-{k}") for k in range(4)]
        reqs.append(infer_request(g, [("INPUT0", "FP32", [4], V4)], rid="s-bad"))
        answers = {}
        for r in stub.ModelStreamInfer(iter(reqs), metadata=[("seldon-model", "cond.pipeline")],
                                       timeout=GUARD):
            if r.error_message:
                answers["error"] = r.error_message
            else:
                answers[r.infer_response.id] = output_values(r.infer_response, 0)
        for k in range(4):
            assert answers[f"s-{k}"] == ([10, 20, 30, 40] if k % 2 == 0 else [11, 12, 13, 14])
        assert answers["error"].startswith("conditional : "), answers
    finally:
        channel.close()


def test_clients_that_go_away(sysm, g):
    """A REST client and a gRPC stream leave while their requests wait in a batch window;
    the answers that come later find no one, and the gateway goes on serving. The model is
    this test's own (slow's artifact: every request waits for a 3 s batch window that the
    first one opens), so nothing else opened its window; the request sent last joins it, and
    its answer comes with theirs."""
    import http.client
    slow = sysm.tmp / "src" / "slow"
    sysm.load("gone-model.yaml", cp.model_yaml("slowgone", uri=str(slow)), "-w",
              "ModelAvailable")
    sysm.load("gone.yaml", """apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: gone
spec:
  steps:
  - name: slowgone
  output:
    steps:
    - slowgone
""")
    sysm.wait_ready("gone", 200)
    conn = http.client.HTTPConnection(HOST, sysm.port, timeout=0.3)
    conn.request("POST", "/v2/pipelines/gone/infer",
                 body=json.dumps({"inputs": [f32("INPUT", V4)]}),
                 headers={"Content-Type": "application/json"})
    with pytest.raises(OSError):
        conn.getresponse()
    conn.close()
    channel, stub = grpc_stub(g, sysm.port)
    try:
        reqs = [infer_request(g, [("INPUT", "FP32", [4], V4)], rid=f"gone-{k}") for k in range(3)]
        with pytest.raises(g.grpc.RpcError) as e:
            for _ in stub.ModelStreamInfer(iter(reqs), metadata=[("seldon-model", "gone.pipeline")],
                                           timeout=0.3):
                pass
        assert e.value.code() == g.grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        channel.close()
    code, _, body = sysm.request("POST", "/v2/pipelines/gone/infer",
                                 {"inputs": [f32("INPUT", V4)]},
                                 headers={"seldon-timeout-ms": "30000"})
    assert code == 200 and outputs(body) == {"INPUT": V4}, body


def test_seldon_pipeline_infer(sysm):
    r = sysm.cli("pipeline", "infer", "cond", json.dumps(choice(0)))
    assert r.code == 0, r
    assert outputs(r.out)["OUTPUT"] == [10, 20, 30, 40]
    r = sysm.cli("--inference-mode", "grpc", "pipeline", "infer", "cond", json.dumps(choice(1)))
    assert r.code == 0, r
    assert outputs(r.out)["OUTPUT"] == [11, 12, 13, 14]
    r = sysm.cli("pipeline", "infer", "failing", json.dumps({"inputs": [f32("INPUT", V4)]}))
    assert r.code != 0 and "conditional : " in r.err, r


class FakeModels:
    """A gRPC model server in this process, behind a FakeAgent replica ("fake" capability):
    its models answer their inputs back, say x-model-<name>: seen in their headers and
    x-seldon-route: :<name>: in their trailers, and keep the metadata each call brought."""

    def __init__(self, g, stubs, scheduler):
        import concurrent.futures
        import queue
        import threading
        self.g, self.seen = g, []
        grpc = g.grpc
        handler = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
            "ModelInfer": grpc.unary_unary_rpc_method_handler(
                self.infer, request_deserializer=g.pb2.ModelInferRequest.FromString,
                response_serializer=g.pb2.ModelInferResponse.SerializeToString)})
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(4))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port(f"{HOST}:0")
        self.server.start()
        self.agent = cp.FakeAgent(stubs, scheduler, "fake", 0, ["fake"], 1 << 30,
                                  f"{HOST}:{self.port}", f"{HOST}:{self.port}")
        self.stopping = threading.Event()
        self.acker = threading.Thread(target=self.ack, daemon=True)
        self.acker.start()
        self._queue = queue

    def ack(self):
        while not self.stopping.is_set():
            try:
                cmd = self.agent.commands.get(timeout=0.1)
            except Exception:
                continue
            if isinstance(cmd, Exception):
                return
            self.agent.report(cmd, "LOADED" if cmd.op == cmd.LOAD else "UNLOADED")

    def infer(self, req, ctx):
        md = dict(ctx.invocation_metadata())
        self.seen.append((req.model_name, md))
        resp = self.g.pb2.ModelInferResponse(model_name=req.model_name, id=req.id)
        for t in req.inputs:
            o = resp.outputs.add()
            o.name, o.datatype = t.name, t.datatype
            o.shape.extend(t.shape)
            o.contents.CopyFrom(t.contents)
        resp.raw_output_contents.extend(req.raw_input_contents)
        ctx.send_initial_metadata([(f"x-model-{req.model_name}", "seen")])
        ctx.set_trailing_metadata([("x-seldon-route", f":{req.model_name}:")])
        return resp

    def close(self):
        self.stopping.set()
        self.agent.close()
        self.server.stop(0)


def test_x_headers_pass_every_step_and_merge_back(sysm, g, tmp_path):
    """The request's x-* headers reach every step's model; the models' x-* answer headers
    come back on the pipeline's answer, x-seldon-route accumulating in step order."""
    (tmp_path / "stubs").mkdir()
    fake = FakeModels(g, cp.Stubs(tmp_path / "stubs"), sysm.scheduler)
    try:
        docs = [cp.model_yaml(n, requirements=["fake"], uri="gs://fake/any") for n in
                ("xh1", "xh2")]
        sysm.load("xh-models.yaml", "---\n".join(docs), "-w", "ModelAvailable")
        sysm.load("xh-pipeline.yaml", """apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: xhp
spec:
  steps:
  - name: xh1
  - name: xh2
    inputs:
    - xh1
  output:
    steps:
    - xh2
""")
        sysm.wait_ready("xhp", 200)
        code, head, body = sysm.request("POST", "/v2/pipelines/xhp/infer",
                                        {"inputs": [f32("INPUT", V4)]},
                                        headers={"x-tenant": "blue", "x-request-id": "xh-1"})
        assert code == 200 and outputs(body) == {"INPUT": V4}, body
        assert head["x-tenant"] == "blue" and head["x-request-id"] == "xh-1"
        # each step's router names the model version (:xh1_1:) beside the model's own value
        assert head["x-seldon-route"] == ":xh1_1::xh1::xh2_1::xh2:", head
        assert head["x-model-xh1"] == "seen" and head["x-model-xh2"] == "seen"
        calls = [(m, md) for m, md in fake.seen if md.get("x-request-id") == "xh-1"]
        assert [m for m, _ in calls] == ["xh1", "xh2"]
        assert all(md.get("x-tenant") == "blue" for _, md in calls)

        # gRPC: metadata in, metadata out.
        channel, stub = grpc_stub(g, sysm.port)
        try:
            req = infer_request(g, [("INPUT", "FP32", [4], V4)])
            resp, call = stub.ModelInfer.with_call(
                req, metadata=[("seldon-model", "xhp.pipeline"), ("x-tenant", "red")],
                timeout=GUARD)
            meta = dict(call.initial_metadata())
            assert meta["x-tenant"] == "red" and meta["x-seldon-route"] == \
                ":xh1_1::xh1::xh2_1::xh2:", meta
            assert resp.id == meta["x-request-id"]
            assert [md.get("x-tenant") for m, md in fake.seen[-2:]] == ["red", "red"]
        finally:
            channel.close()
    finally:
        fake.close()


def gateway_requests(gw):
    return gw.metric("seldon_pipelinegateway_requests_total", protocol="rest", code="200")


def test_two_gateways_share_the_load(sysm):
    gw1 = sysm.gateways[0]
    gw2 = sysm.add_gateway("gw2", "--pipeline-timeout", "150", "--io-threads", "2")
    gw2.wait_log("2 gateway(s)")
    gw1.wait_log("2 gateway(s)")
    sysm.router.wait_log("route table", n=1)
    before2 = gateway_requests(gw2) or 0
    def new_gateway_served():  # the router takes the new table soon
        code, _, body = sysm.request("POST", "/v2/pipelines/cond/infer", choice(1))
        assert code == 200 and outputs(body)["OUTPUT"] == [11, 12, 13, 14], body
        return (gateway_requests(gw2) or 0) != before2

    wait_until(new_gateway_served, GUARD,
               lambda: f"gw2 never got a request through the router\n{sysm.logs()}")
    b1, b2 = gateway_requests(gw1), gateway_requests(gw2)
    for _ in range(40):
        code, _, body = sysm.request("POST", "/v2/pipelines/cond/infer", choice(0))
        assert code == 200 and outputs(body)["OUTPUT"] == [10, 20, 30, 40], body
    assert gateway_requests(gw1) > b1 and gateway_requests(gw2) > b2
    # Async results are found whichever gateway keeps them.
    ids = []
    for k in range(8):
        code, head, body = sysm.request("POST", "/v2/pipelines/cond/infer", choice(k % 2),
                                        headers={"seldon-async": "true"})
        assert code == 202, body
        ids.append((k, json.loads(body)["id"]))
    for k, rid in ids:
        code, body = poll_result(sysm, "cond", rid)
        assert code == 200, body
        assert outputs(body)["OUTPUT"] == ([10, 20, 30, 40] if k % 2 == 0 else [11, 12, 13, 14])
    # Deterministically: kept by gw1, asked of gw2 (which asks gw1).
    code, head, body = sh.request(gw1.ports["port"], "POST", "/v2/pipelines/chain/infer", SIMPLE,
                                  headers={"seldon-async": "true", "x-request-id": "on-gw1"})
    assert code == 202, body
    code, _, body = wait_value(
        lambda: sh.request(gw2.ports["port"], "GET", "/v2/pipelines/chain/requests/on-gw1"),
        lambda r: r[0] != 202, GUARD, lambda r: f"on-gw1 still pending: {r}\n{sysm.logs()}")
    assert code == 200 and outputs(body)["OUTPUT0"] == [2 * i for i in range(1, 17)], body
    code, _, body = sh.request(gw2.ports["port"], "GET", "/v2/pipelines/chain/requests/nowhere")
    assert code == 404, body
    # --pipeline-timeout: gw2's requests that ask for no timeout end after 150 ms.
    code, _, body = sh.request(gw2.ports["port"], "POST", "/v2/pipelines/slowpipe/infer",
                               {"inputs": [f32("INPUT", V4)]})
    assert code == 504 and b"timed out" in body, body
    # A pipeline's own timeout wins over --pipeline-timeout, its step calls included: slow
    # answers after its 3 s batch window, within slowlong's 60 s.
    sysm.load("slowlong.yaml", """apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: slowlong
spec:
  timeoutMs: 60000
  steps:
  - name: slow
  output:
    steps:
    - slow
""")
    sysm.wait_ready("slowlong", 200)
    wait_until(lambda: sh.request(gw2.ports["port"], "GET",
                                  "/v2/pipelines/slowlong/ready")[0] == 200,
               GUARD, lambda: "gateway 2 never served slowlong")
    code, _, body = sh.request(gw2.ports["port"], "POST", "/v2/pipelines/slowlong/infer",
                               {"inputs": [f32("INPUT", V4)]})
    assert code == 200 and outputs(body) == {"INPUT": V4}, body


def test_serving_goes_on_while_the_scheduler_is_down(sysm, g):
    """Last: the scheduler is killed; router and gateways serve on the last routes and
    pipelines; it comes back on the same ports and the gateways subscribe again."""
    sysm.scheduler.kill()
    for gw in sysm.gateways:
        gw.wait_log("serving the")
    sysm.router.wait_log("serving on the")
    for k in range(6):
        code, _, body = sysm.request("POST", "/v2/pipelines/cond/infer", choice(k % 2))
        assert code == 200, body
        assert outputs(body)["OUTPUT"] == ([10, 20, 30, 40] if k % 2 == 0 else [11, 12, 13, 14])
    code, _, body = sysm.request("POST", "/v2/pipelines/chain/infer", SIMPLE)
    assert code == 200, body
    sysm.scheduler.start((sysm.scheduler.client, sysm.scheduler.agent, sysm.scheduler.route,
                          sysm.scheduler.metrics))
    for gw in sysm.gateways:
        gw.wait_log("subscribed to pipelines again")
    wait_state(sysm, "cond", "PipelineReady")
    # The router may have taken a table from before the gateways came back (the pipelines'
    # routes without upstreams: 503); the next one has them.
    code, _, body = cluster_until(
        lambda: sysm.request("POST", "/v2/pipelines/cond/infer", choice(1)),
        lambda r: r[0] != 503, sysm.router)
    assert code == 200 and outputs(body)["OUTPUT"] == [11, 12, 13, 14], body


def test_help_and_metrics(sysm):
    from conftest import GATEWAY
    out = subprocess.run([GATEWAY, "--help"], capture_output=True, timeout=30)
    assert out.returncode == 0 and b"--scheduler-host" in out.stdout
    gw = sysm.gateways[0]
    assert gw.metric("seldon_pipelinegateway_pipelines") >= len(PIPELINES)
    assert gw.metric("seldon_pipelinegateway_scheduler_connected") == 1
    assert gw.metric("seldon_pipelinegateway_step_calls_total", code="0") > 0
    assert sysm.scheduler.metric("seldon_scheduler_pipeline_gateways_connected") == \
        len(sysm.gateways)
