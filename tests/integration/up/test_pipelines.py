"""seldon up runs pipelines in process: Seldon Core 2's pipeline scenario families with the
builtin models, through the one inference port over REST (curl) and gRPC (grpcio).

The pipelines are tests/integration/up/pipelines/pipelines.yaml,
the models pipelines/models.yaml (loaded with the seldon CLI). No assertion depends on time:
the timeout case uses a model that holds requests far longer than the timeout asked for.
The pipelines are loaded with `seldon load -f` (the scheduler stores and compiles them; seldon up
serves what the scheduler holds).
"""
import base64
import json
import os
import re
import threading

import pytest

from conftest import GUARD, HERE, Up, grpc_stub, load, outputs, procs
from oipstubs import infer_request, output_values
from upclient import SIMPLE, V4, choice, f32


@pytest.fixture(scope="module")
def pup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipelines")
    os.symlink(os.path.join(HERE, "pipelines"), os.path.join(str(folder), "pipelines"))
    u = Up(folder, "--pipeline-async-ttl", "600000")
    load(u, "pipelines/models.yaml")
    rc, out, err = u.cli("load", "-f", "pipelines/pipelines.yaml")
    assert rc == 0, err
    for name in ("chain", "join", "cond", "inputs", "triggers", "chained", "batched", "cycle",
                 "failing", "slowpipe", "ident"):
        wait_ready(u, name, 200)
    wait_ready(u, "unready", 424)
    yield u
    if u.proc.poll() is None:
        rc = u.stop()
        assert rc == 0, u.stderr()


def async_result(up, path):
    """GET path (/v2/pipelines/<p>/requests/<id>) until it stops saying 202 (pending);
    its (code, body)."""
    code, body, _ = procs.wait_value(
        lambda: up.curl(path), lambda r: r[0] != 202, GUARD,
        lambda r: f"{path} still pending: {r[1]}\n{up.stderr()}")
    return code, body


def wait_ready(up, name, want):
    """Polls the pipeline's ready endpoint (answered by the ingress loop) until it says want."""
    procs.wait_value(lambda: up.curl(f"/v2/pipelines/{name}/ready")[0], lambda code: code == want,
                     GUARD, lambda code: f"{name}: ready says {code}, not {want}\n{up.stderr()}")


def infer_count(up, model):
    """seldon_model_infer_total of the model's version 1 on the replica, all codes."""
    total = 0.0
    for line in up.scrape().splitlines():
        if line.startswith("seldon_model_infer_total{") and f'model="{model}_1"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


# ------------------------------------------------------------------ REST

def test_model_chaining_rest(pup):
    code, body, head = pup.curl("/v2/pipelines/chain/infer", json.dumps(SIMPLE))
    assert code == 200, body
    out = outputs(body)
    # tfsimple1: (a+b, a-b); tfsimple2 of that: (2a, 2b).
    assert out["OUTPUT0"] == [2 * i for i in range(1, 17)]
    assert out["OUTPUT1"] == [2] * 16
    assert json.loads(body)["model_name"] == "chain"


def test_seldon_model_header_routes_to_the_pipeline(pup):
    code, body, _ = pup.curl("/v2/models/anything/infer", json.dumps(SIMPLE),
                             headers=["seldon-model: chain.pipeline"])
    assert code == 200, body
    assert outputs(body)["OUTPUT0"] == [2 * i for i in range(1, 17)]


def test_join_of_two_steps_through_tensor_map(pup):
    code, body, _ = pup.curl("/v2/pipelines/join/infer", json.dumps(SIMPLE))
    assert code == 200, body
    out = outputs(body)
    # tfsimple3(INPUT0 = tfsimple1's a+b, INPUT1 = tfsimple2's a-b) = (2a, 2b)
    assert out["OUTPUT0"] == [2 * i for i in range(1, 17)]
    assert out["OUTPUT1"] == [2] * 16


def test_conditional_runs_one_branch_only(pup):
    add0, mul0 = infer_count(pup, "add10"), infer_count(pup, "mul10")
    code, body, _ = pup.curl("/v2/pipelines/cond/infer", choice(0))
    assert code == 200, body
    assert json.loads(body)["outputs"] == [
        {"name": "OUTPUT", "datatype": "FP32", "shape": [4], "data": [10, 20, 30, 40]}]
    assert infer_count(pup, "mul10") == mul0 + 1
    assert infer_count(pup, "add10") == add0  # the other branch never ran
    code, body, _ = pup.curl("/v2/pipelines/cond/infer", choice(1))
    assert code == 200, body
    assert outputs(body)["OUTPUT"] == [11, 12, 13, 14]
    assert infer_count(pup, "add10") == add0 + 1
    assert infer_count(pup, "mul10") == mul0 + 1


def test_trigger_joins_on_pipeline_inputs(pup):
    def req(*triggers):
        ts = [f32("INPUT", V4)] + [{"name": t, "datatype": "INT32", "shape": [1], "data": [1]}
                                   for t in triggers]
        return json.dumps({"inputs": ts})
    # any: one of ok1, ok2 is enough for mul10; add10 needs both ok3 and ok4 (inner).
    code, body, _ = pup.curl("/v2/pipelines/triggers/infer", req("ok2"))
    assert code == 200 and outputs(body) == {"OUTPUT": [10, 20, 30, 40]}, body
    add0 = infer_count(pup, "add10")
    code, body, _ = pup.curl("/v2/pipelines/triggers/infer", req("ok1", "ok3"))
    assert code == 200 and outputs(body) == {"OUTPUT": [10, 20, 30, 40]}, body
    assert infer_count(pup, "add10") == add0  # ok4 missing: add10 was not triggered
    code, body, _ = pup.curl("/v2/pipelines/triggers/infer", req("ok3", "ok4"))
    assert code == 200 and outputs(body) == {"OUTPUT": [11, 12, 13, 14]}, body
    # Trigger tensors are not passed on to the step.
    assert infer_count(pup, "add10") == add0 + 1


def test_input_chaining_through_another_pipeline(pup):
    code, body, head = pup.curl("/v2/pipelines/inputs/infer", choice(0),
                                headers=["x-request-id: chain-me-1"])
    assert code == 200, body
    assert "x-request-id: chain-me-1" in head
    # Pipeline "chained" read add10's output of that request and added 20.
    code, body = async_result(pup, "/v2/pipelines/chained/requests/chain-me-1")
    assert code == 200, body
    assert outputs(body) == {"OUTPUT": [31, 32, 33, 34]}


def test_batching_answers_every_caller_its_own_rows(pup):
    n0 = infer_count(pup, "identity")
    results = {}

    def call(k):
        req = json.dumps({"inputs": [f32("INPUT", [k, k + 1], [1, 2])]})
        results[k] = pup.curl("/v2/pipelines/batched/infer", req)
    threads = [threading.Thread(target=call, args=(k * 10,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(GUARD)
    for k in range(4):
        code, body, _ = results[k * 10]
        assert code == 200, body
        out = json.loads(body)["outputs"][0]
        assert out["shape"] == [1, 2] and out["data"] == [k * 10, k * 10 + 1], body
    assert infer_count(pup, "identity") == n0 + 1  # one model call for the four callers


def test_cycle_ends_at_max_step_revisits(pup):
    code, body, _ = pup.curl("/v2/pipelines/cycle/infer", json.dumps({"inputs": [f32("INPUT", V4)]}))
    assert code == 400
    assert json.loads(body)["error"] == "Max step revisits (3) exceeded"


def test_failing_model(pup):
    code, body, _ = pup.curl("/v2/pipelines/failing/infer",
                             json.dumps({"inputs": [f32("INPUT", V4)]}))
    assert code == 400
    assert json.loads(body)["error"].startswith("conditional : "), body
    assert "CHOICE" in body


def test_timeout_per_request(pup):
    code, body, _ = pup.curl("/v2/pipelines/slowpipe/infer",
                             json.dumps({"inputs": [f32("INPUT", V4)]}),
                             headers=["seldon-timeout-ms: 100"])
    assert code == 504, body
    assert "timed out" in body
    code, body, _ = pup.curl("/v2/pipelines/slowpipe/infer",
                             json.dumps({"inputs": [f32("INPUT", V4)]}),
                             headers=["seldon-timeout-ms: soon"])
    assert code == 400 and "seldon-timeout-ms" in body


def test_async_mode(pup):
    for path, headers in (("/v2/pipelines/chain/infer", ["seldon-async: true"]),
                          ("/v2/pipelines/chain/infer?async=true", [])):
        code, body, head = pup.curl(path, json.dumps(SIMPLE), headers=headers)
        assert code == 202, body
        rid = json.loads(body)["id"]
        assert f"x-request-id: {rid}" in head
        code, body = async_result(pup, f"/v2/pipelines/chain/requests/{rid}")
        assert code == 200, body
        assert outputs(body)["OUTPUT0"] == [2 * i for i in range(1, 17)]
    code, body, _ = pup.curl("/v2/pipelines/chain/requests/no-such-id")
    assert code == 404 and "no-such-id" in body


def test_async_errors_are_kept_too(pup):
    code, body, _ = pup.curl("/v2/pipelines/failing/infer",
                             json.dumps({"inputs": [f32("INPUT", V4)]}),
                             headers=["seldon-async: true", "x-request-id: will-fail"])
    assert code == 202, body
    code, body = async_result(pup, "/v2/pipelines/failing/requests/will-fail")
    assert code == 400 and json.loads(body)["error"].startswith("conditional : ")


def test_ready_endpoints(pup):
    assert pup.curl("/v2/pipelines/cond/ready")[0] == 200
    code, body, _ = pup.curl("/v2/pipelines/unready/ready")
    assert code == 424, body
    code, body, _ = pup.curl("/v2/pipelines/nosuch/ready")
    assert code == 404 and "nosuch" in body


def test_unknown_pipeline_rest(pup):
    code, body, _ = pup.curl("/v2/pipelines/nosuch/infer", json.dumps(SIMPLE))
    assert code == 404 and json.loads(body)["error"] == 'pipeline "nosuch" not found'


def test_request_id_and_x_headers_come_back(pup):
    code, body, head = pup.curl("/v2/pipelines/chain/infer", json.dumps(SIMPLE),
                                headers=["x-tenant: blue"])
    assert code == 200
    m = re.search(r"x-request-id: (\S+)", head)
    assert m and json.loads(body)["id"] == m.group(1)
    assert "x-tenant: blue" in head
    code, body, head = pup.curl("/v2/pipelines/chain/infer", json.dumps(SIMPLE),
                                headers=["x-request-id: mine-42"])
    assert "x-request-id: mine-42" in head and json.loads(body)["id"] == "mine-42"


def test_bad_input_names_the_field(pup):
    code, body, _ = pup.curl("/v2/pipelines/chain/infer", '{"inputs": [{"name": 3}]}')
    assert code == 400 and "inputs[0]" in body, body


# ------------------------------------------------------------------ gRPC

def test_grpc_pipelines(pup, oip):
    channel, stub = grpc_stub(oip, pup.target)
    grpc = oip.grpc
    try:
        md = [("seldon-model", "chain.pipeline")]
        req = infer_request(oip, [("INPUT0", "INT32", [1, 16], list(range(1, 17))),
                                 ("INPUT1", "INT32", [1, 16], [1] * 16)])
        resp, call = stub.ModelInfer.with_call(req, metadata=md, timeout=GUARD)
        assert output_values(resp, 0) == [2 * i for i in range(1, 17)]
        assert resp.model_name == "chain"
        rid = dict(call.initial_metadata())["x-request-id"]
        assert rid and resp.id == rid
        resp, call = stub.ModelInfer.with_call(req, metadata=md + [("x-request-id", "g-1")],
                                               timeout=GUARD)
        assert resp.id == "g-1" and dict(call.initial_metadata())["x-request-id"] == "g-1"

        # Two outputs named OUTPUT, in output.steps order (upstream's input_tensors scenario).
        req = infer_request(oip, [("INPUT0", "FP32", [4], V4), ("INPUT1", "FP32", [4], V4)])
        resp = stub.ModelInfer(req, metadata=[("seldon-model", "inputs.pipeline")],
                               timeout=GUARD)
        assert [o.name for o in resp.outputs] == ["OUTPUT", "OUTPUT"]
        assert output_values(resp, 0) == [10, 20, 30, 40]
        assert output_values(resp, 1) == [11, 12, 13, 14]

        # Conditional, upstream's payload and answer.
        req = infer_request(oip, [("CHOICE", "INT32", [1], [0]), ("INPUT0", "FP32", [4], V4),
                                 ("INPUT1", "FP32", [4], V4)])
        resp = stub.ModelInfer(req, metadata=[("seldon-model", "cond.pipeline")], timeout=GUARD)
        assert [(o.name, o.datatype, list(o.shape)) for o in resp.outputs] == \
            [("OUTPUT", "FP32", [4])]
        assert base64.b64encode(resp.raw_output_contents[0]) == b"AAAgQQAAoEEAAPBBAAAgQg=="

        # A model error: UNKNOWN with "<model> : <error>".
        req = infer_request(oip, [("INPUT", "FP32", [4], V4)])
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req, metadata=[("seldon-model", "failing.pipeline")], timeout=GUARD)
        assert e.value.code() == grpc.StatusCode.UNKNOWN
        assert e.value.details().startswith("conditional : ")

        # A timeout asked by the request (the server's, not the client's deadline).
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req, metadata=[("seldon-model", "slowpipe.pipeline"),
                                           ("seldon-timeout-ms", "100")], timeout=GUARD)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "timed out" in e.value.details()

        # Unknown pipeline.
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req, metadata=[("seldon-model", "nosuch.pipeline")], timeout=GUARD)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert "nosuch" in e.value.details()
    finally:
        channel.close()


def test_grpc_raw_contents_pass_unchanged(pup, oip):
    channel, stub = grpc_stub(oip, pup.target)
    try:
        payload = bytes(range(256)) * 4  # any bit patterns, NaNs included
        req = infer_request(oip, [("INPUT", "FP32", [1, len(payload) // 4], payload)])
        resp = stub.ModelInfer(req, metadata=[("seldon-model", "ident.pipeline")], timeout=GUARD)
        assert resp.outputs[0].name == "INPUT"
        assert list(resp.outputs[0].shape) == [1, len(payload) // 4]
        assert resp.raw_output_contents[0] == payload
    finally:
        channel.close()


# ------------------------------------------------------------------ the CLI

def test_seldon_pipeline_infer(pup):
    rc, out, err = pup.cli("pipeline", "infer", "cond", choice(0))
    assert rc == 0, err
    assert outputs(out)["OUTPUT"] == [10, 20, 30, 40]
    rc, out, err = pup.cli("pipeline", "infer", "chain", json.dumps(SIMPLE))
    assert rc == 0, err
    assert outputs(out)["OUTPUT0"] == [2 * i for i in range(1, 17)]
    rc, out, err = pup.cli("pipeline", "status", "cond")
    assert rc == 0 and "PipelineReady" in out, out + err


def test_unload_and_load_again(pup):
    assert pup.curl("/v2/pipelines/ident/ready")[0] == 200
    rc, out, err = pup.cli("pipeline", "unload", "ident")
    assert rc == 0, err
    wait_ready(pup, "ident", 404)
    code, body, _ = pup.curl("/v2/pipelines/ident/infer", json.dumps({"inputs": [f32("INPUT", V4)]}))
    assert code == 404 and "ident" in body
    rc, out, err = pup.cli("pipeline", "load", "-f", "pipelines/pipelines.yaml")
    assert rc == 0, err
    wait_ready(pup, "ident", 200)
    code, body, _ = pup.curl("/v2/pipelines/ident/infer", json.dumps({"inputs": [f32("INPUT", V4)]}))
    assert code == 200 and outputs(body) == {"INPUT": V4}, body


def test_a_new_version_of_a_chained_pipeline(pup, tmp_path):
    """Pipeline "inputs" v2 swaps its tensors; "chained", which reads it, follows."""
    spec = open(os.path.join(HERE, "pipelines", "pipelines.yaml")).read()
    doc = [d for d in spec.split("\n---\n") if "name: inputs\n" in d][0]
    v2 = doc.replace("inputs.inputs.INPUT0", "@").replace("inputs.inputs.INPUT1",
                                                           "inputs.inputs.INPUT0")
    v2 = v2.replace("@", "inputs.inputs.INPUT1")
    path = os.path.join(pup.folder, "inputs-v2.yaml")
    with open(path, "w") as f:
        f.write(v2)
    rc, out, err = pup.cli("pipeline", "load", "-f", "inputs-v2.yaml")
    assert rc == 0, err
    pup.wait_log(r"pipeline inputs v2: served")
    pup.wait_log(r"pipeline chained v\d+: served")
    req = json.dumps({"inputs": [f32("INPUT0", V4), f32("INPUT1", [2, 4, 6, 8])]})
    v1 = [[10, 20, 30, 40], [12, 14, 16, 18]]
    v2 = [[20, 40, 60, 80], [11, 12, 13, 14]]
    def answer():
        code, body, _ = pup.curl("/v2/pipelines/inputs/infer", req)
        got = [o["data"] for o in json.loads(body)["outputs"]] if code == 200 else None
        assert got in (v1, v2) or code == 404, body  # v1 until v2, nothing else
        return got, body

    # the ingress loop has v2 once the control loop's post reached it
    procs.wait_value(answer, lambda a: a[0] == v2, GUARD,
                     lambda a: f"v2 never answered: {a[1]}\n{pup.stderr()}")
    code, body, _ = pup.curl("/v2/pipelines/inputs/infer", req, headers=["x-request-id: v2-b"])
    assert code == 200, body
    code, body, _ = procs.wait_value(
        lambda: pup.curl("/v2/pipelines/chained/requests/v2-b"), lambda r: r[0] != 202, GUARD,
        lambda r: f"the chained result is still pending: {r}\n{pup.stderr()}")
    assert code == 200 and outputs(body) == {"OUTPUT": [31, 32, 33, 34]}, body


def test_restart_brings_the_pipelines_back(pup):
    """Last in this module: the scheduler stored the pipelines; seldon up serves them again."""
    pup.restart()
    wait_ready(pup, "cond", 200)
    code, body, _ = pup.curl("/v2/pipelines/cond/infer", choice(1))
    assert code == 200 and outputs(body)["OUTPUT"] == [11, 12, 13, 14], body


def test_several_ingress_loops(tmp_path_factory):
    """--io-threads 3: every loop's engine serves the pipelines; async results are read from
    whichever loop takes the GET (every curl is a new connection). --pipeline-timeout sets
    the timeout of requests that ask for none."""
    folder = tmp_path_factory.mktemp("loops")
    os.symlink(os.path.join(HERE, "pipelines"), os.path.join(str(folder), "pipelines"))
    u = Up(folder, "--io-threads", "3", "--pipeline-timeout", "150")
    try:
        load(u, "pipelines/models.yaml")
        rc, out, err = u.cli("pipeline", "load", "-f", "pipelines/pipelines.yaml")
        assert rc == 0, err
        for _ in range(6):  # enough connections to reach every loop
            wait_ready(u, "cond", 200)
        ids = []
        for k in range(6):
            code, body, _ = u.curl("/v2/pipelines/cond/infer", choice(k % 2))
            assert code == 200, body
            assert outputs(body)["OUTPUT"] == ([10, 20, 30, 40] if k % 2 == 0 else
                                               [11, 12, 13, 14])
            code, body, _ = u.curl("/v2/pipelines/cond/infer", choice(k % 2),
                                   headers=["seldon-async: true"])
            assert code == 202, body
            ids.append((k, json.loads(body)["id"]))
        for k, rid in ids:
            code, body = async_result(u, f"/v2/pipelines/cond/requests/{rid}")
            assert code == 200, body
            assert outputs(body)["OUTPUT"] == ([10, 20, 30, 40] if k % 2 == 0 else
                                               [11, 12, 13, 14])
        wait_ready(u, "slowpipe", 200)
        code, body, _ = u.curl("/v2/pipelines/slowpipe/infer",
                               json.dumps({"inputs": [f32("INPUT", V4)]}))
        assert code == 504 and "timed out" in body, body
    finally:
        if u.proc.poll() is None:
            assert u.stop() == 0, u.stderr()


def test_steps_wait_for_evicted_models(tmp_path_factory):
    """Overcommit: conditional, mul10 and add10 of 600Ki each on a 1Mi replica, one loaded at
    a time. Each step whose model was evicted waits for its reload, as model requests do."""
    folder = tmp_path_factory.mktemp("evict")
    os.symlink(os.path.join(HERE, "pipelines"), os.path.join(str(folder), "pipelines"))
    u = Up(folder, "--server-memory", "1Mi", "--overcommit-percent", "200")
    try:
        for name in ("conditional", "mul10", "add10"):
            (folder / f"{name}.yaml").write_text(
                "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n"
                f"  name: {name}\nspec:\n  storageUri: ./examples/models/{name}\n"
                "  memory: 600Ki\n")
            load(u, f"{name}.yaml")
        u.wait_log(r"evicting mul10_1 to make room for add10_1")
        rc, out, err = u.cli("pipeline", "load", "-f", "pipelines/pipelines.yaml")
        assert rc == 0, err
        wait_ready(u, "cond", 200)
        for c in (0, 1, 0, 1):
            code, body, _ = u.curl("/v2/pipelines/cond/infer", choice(c))
            assert code == 200, body
            assert outputs(body)["OUTPUT"] == ([10, 20, 30, 40] if c == 0 else [11, 12, 13, 14])
        u.wait_log(r"conditional_1 requested while evicted: loading it again")
        u.wait_log(r"mul10_1 requested while evicted: loading it again")
    finally:
        if u.proc.poll() is None:
            assert u.stop() == 0, u.stderr()
