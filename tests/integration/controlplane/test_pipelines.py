"""Pipelines as resources of seldon-scheduler, driven by the seldon CLI.

A pipeline is compiled when applied (a bad one is refused, by the CLI's own
check or by the scheduler, naming the field), is Ready only while every model
its steps call is available (its status names the models it waits for), goes
back to waiting when a model goes, is unloaded to PipelineTerminated, and comes
back after a restart. `seldon pipeline infer` asks the inference host with
`seldon-model: <p>.pipeline` (checked against a stub HTTP server and a stub
gRPC server that record what they receive).
"""
import http.server
import json
import threading
from concurrent import futures

from conftest import GUARD, FakeAgent, cli, model_yaml, write

MLSERVER = ("mlserver", 0, ["sklearn", "mlserver"], 1 << 30, "127.0.0.1:19101",
            "127.0.0.1:19102")

CHAIN = """apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: chain
spec:
  steps:
  - name: m1
  - name: m2
    inputs: [m1]
  output:
    steps: [m2]
"""


def agent(stubs, sched, loaded=()):
    server, index, caps, mem, http_addr, grpc_addr = MLSERVER
    return FakeAgent(stubs, sched, server, index, caps, mem, http_addr, grpc_addr, loaded=loaded)


def gateway(stubs, sched):
    """A pipeline gateway's subscription (RouteService/SubscribePipelines): while one is
    open, pipelines are served, and Ready once their models are available."""
    ch = stubs.grpc.insecure_channel(sched.route_target)
    call = stubs.rpc.RouteServiceStub(ch).SubscribePipelines(stubs.pb.PipelineSubscribeRequest(
        gateway="test", http="127.0.0.1:19110", grpc="127.0.0.1:19110"))
    call.initial_metadata()
    return ch, call


def load_model(sched, tmp_path, a, name):
    r = cli("model", "load", "-f",
            write(tmp_path, f"{name}.yaml", model_yaml(name, requirements=["sklearn"])),
            scheduler=sched)
    assert r.code == 0, r
    cmd = a.next_command()
    if (cmd.op, cmd.model) == (cmd.UNLOAD, name):
        # The model was unloaded just before: its unload went out once the 500 ms unload
        # grace passed (a slow machine), ahead of this load.
        a.report(cmd, "UNLOADED")
        cmd = a.next_command()
    assert (cmd.op, cmd.model) == (cmd.LOAD, name), cmd
    return cmd


def pstatus(sched, name, *more):
    r = cli("pipeline", "status", name, *more, scheduler=sched)
    assert r.code == 0, r
    return r.json()


def state_of(doc):
    return doc["versions"][0]["state"]


def test_ready_only_while_its_models_are_available(scheduler, stubs, tmp_path):
    a = agent(stubs, scheduler)
    gw = gateway(stubs, scheduler)
    path = write(tmp_path, "chain.yaml", CHAIN)
    r = cli("pipeline", "load", "-f", path, scheduler=scheduler)
    assert r.code == 0, r
    assert r.json() == {"resources": [{"kind": "Pipeline", "name": "chain", "version": 1}]}

    doc = pstatus(scheduler, "chain")
    st = state_of(doc)
    assert doc["pipelineName"] == "chain" and doc["deleted"] is False
    assert st["pipelineVersion"] == 1
    assert st["status"] == "PipelineCreating"
    assert st["modelsReady"] is False
    assert st["waitingFor"] == ["m1", "m2"]
    assert '"m1"' in st["reason"] and '"m2"' in st["reason"]
    assert doc["versions"][0]["pipeline"]["kind"] == "Pipeline"

    # A wait for Ready gives up (not Ready while m1 and m2 are not there), naming why.
    r = cli("pipeline", "status", "chain", "-w", "PipelineReady", "-t", "1", scheduler=scheduler)
    assert r.code == 1 and "waiting for models" in r.err, r

    c1 = load_model(scheduler, tmp_path, a, "m1")
    a.report(c1, "LOADED")
    c2 = load_model(scheduler, tmp_path, a, "m2")
    st = state_of(pstatus(scheduler, "chain"))
    assert st["status"] == "PipelineCreating" and st["waitingFor"] == ["m2"], st
    a.report(c2, "LOADED")
    doc = pstatus(scheduler, "chain", "-w", "PipelineReady")
    st = state_of(doc)
    assert st["status"] == "PipelineReady" and st["modelsReady"] is True
    assert st["waitingFor"] == [] and st["reason"] == ""

    assert scheduler.metric("seldon_scheduler_pipelines", state="PipelineReady") == 1
    assert scheduler.metric("seldon_scheduler_pipelines", state="PipelineCreating") == 0
    lst = cli("pipeline", "list", scheduler=scheduler)
    assert lst.code == 0, lst
    assert lst.json()["pipelines"] == [
        {"name": "chain", "version": 1, "state": "PipelineReady", "reason": ""}]

    # `seldon status -f` shows the pipeline beside the models.
    r = cli("status", "-f", path, scheduler=scheduler)
    assert r.code == 0, r
    assert state_of(r.jsons()[0])["status"] == "PipelineReady"

    # A model goes: back to waiting, naming it; it comes back: Ready again.
    r = cli("model", "unload", "m2", scheduler=scheduler)
    assert r.code == 0, r
    st = state_of(pstatus(scheduler, "chain"))
    assert st["status"] == "PipelineCreating" and st["waitingFor"] == ["m2"], st
    c2b = load_model(scheduler, tmp_path, a, "m2")
    a.report(c2b, "LOADED")
    st = state_of(pstatus(scheduler, "chain", "-w", "PipelineReady"))
    assert st["status"] == "PipelineReady"

    # A changed spec is version 2; the same spec again changes nothing.
    r = cli("pipeline", "load", "-f", write(tmp_path, "chain2.yaml",
                                            CHAIN.replace("steps: [m2]", "steps: [m1, m2]")),
            scheduler=scheduler)
    assert r.json()["resources"][0]["version"] == 2, r
    r = cli("pipeline", "load", "-f", path, "-w", "PipelineReady", scheduler=scheduler)
    assert r.json()["resources"][0]["version"] == 3, r
    r = cli("pipeline", "load", "-f", path, scheduler=scheduler)
    assert r.json()["resources"][0]["version"] == 3, r

    # Unload: PipelineTerminated.
    r = cli("pipeline", "unload", "chain", "-w", "PipelineTerminated", scheduler=scheduler)
    assert r.code == 0, r
    doc = pstatus(scheduler, "chain")
    assert state_of(doc)["status"] == "PipelineTerminated" and doc["deleted"] is True
    r = cli("pipeline", "unload", "chain", scheduler=scheduler)
    assert r.code == 1 and "NOT_FOUND" in r.err, r
    a.close()
    gw[1].cancel()
    gw[0].close()


def test_unload_with_kind_pipeline_over_grpc(scheduler, stubs, tmp_path):
    ch = stubs.grpc.insecure_channel(scheduler.client_target)
    stub = stubs.rpc.SchedulerServiceStub(ch)
    events = stub.SubscribeEvents(stubs.pb.EventsRequest())
    events.initial_metadata()  # subscribed
    resp = stub.Apply(stubs.pb.ApplyRequest(manifest=CHAIN, source="chain.yaml"), timeout=GUARD)
    assert [(r.kind, r.name, r.version) for r in resp.resources] == [("Pipeline", "chain", 1)]
    seen = [next(events) for _ in range(2)]
    assert [(e.kind, e.name, e.version, e.state) for e in seen] == [
        ("Pipeline", "chain", 1, "PipelineCreate"), ("Pipeline", "chain", 1, "PipelineCreating")]
    assert '"m1"' in seen[1].reason
    events.cancel()
    st = stub.PipelineStatus(stubs.pb.StatusRequest(name="chain"), timeout=GUARD)
    p = st.pipelines[0]
    assert p.name == "chain" and not p.deleted
    assert p.versions[0].state == "PipelineCreating"
    assert list(p.versions[0].waiting_for) == ["m1", "m2"]
    assert list(p.versions[0].models) == ["m1", "m2"]
    # A pipeline that another one reads is not unloaded first.
    nxt = ("apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: next}\n"
           "spec:\n  input: {externalInputs: [chain.outputs]}\n  steps: [{name: m3}]\n")
    stub.Apply(stubs.pb.ApplyRequest(manifest=nxt, source="next.yaml"), timeout=GUARD)
    try:
        stub.Unload(stubs.pb.UnloadRequest(kind="Pipeline", name="chain"), timeout=GUARD)
        raise AssertionError("a pipeline read by another was unloaded")
    except stubs.grpc.RpcError as e:
        assert e.code() == stubs.grpc.StatusCode.FAILED_PRECONDITION
        assert 'pipeline "next" reads it' in e.details(), e.details()
    stub.Unload(stubs.pb.UnloadRequest(kind="Pipeline", name="next"), timeout=GUARD)
    stub.Unload(stubs.pb.UnloadRequest(kind="Pipeline", name="chain"), timeout=GUARD)
    st = stub.PipelineStatus(stubs.pb.StatusRequest(name="chain"), timeout=GUARD)
    assert st.pipelines[0].versions[0].state == "PipelineTerminated"
    assert st.pipelines[0].deleted
    try:
        stub.PipelineStatus(stubs.pb.StatusRequest(name="nosuch"), timeout=GUARD)
        raise AssertionError("PipelineStatus of an unknown pipeline answered")
    except stubs.grpc.RpcError as e:
        assert e.code() == stubs.grpc.StatusCode.NOT_FOUND
    ch.close()


BAD_INPUT = """apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: bad}
spec:
  steps:
  - name: a
    inputs: [nosuch]
  output: {steps: [a]}
"""

CYCLE = """apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: cyc}
spec:
  steps:
  - name: a
    inputs: [b]
  - name: b
    inputs: [a]
  output: {steps: [b]}
"""


def test_bad_pipelines_are_refused_naming_the_field(scheduler, stubs, tmp_path):
    # The CLI checks the file first: nothing is sent.
    r = cli("pipeline", "load", "-f", write(tmp_path, "bad.yaml", BAD_INPUT), scheduler=scheduler)
    assert r.code == 1 and "spec.steps[0].inputs[0]" in r.err and "nosuch" in r.err, r
    # A cycle passes the manifest check; the scheduler's compiler refuses it.
    r = cli("pipeline", "load", "-f", write(tmp_path, "cyc.yaml", CYCLE), scheduler=scheduler)
    assert r.code == 1 and "INVALID_ARGUMENT" in r.err and "cycle" in r.err, r
    assert 'Pipeline "cyc"' in r.err, r
    # The scheduler refuses both when asked directly.
    ch = stubs.grpc.insecure_channel(scheduler.client_target)
    stub = stubs.rpc.SchedulerServiceStub(ch)
    for text, field in ((BAD_INPUT, "spec.steps[0].inputs[0]"), (CYCLE, "cycle")):
        try:
            stub.Apply(stubs.pb.ApplyRequest(manifest=text, source="p.yaml"), timeout=GUARD)
            raise AssertionError("a bad pipeline was applied")
        except stubs.grpc.RpcError as e:
            assert e.code() == stubs.grpc.StatusCode.INVALID_ARGUMENT
            assert field in e.details(), e.details()
    ch.close()
    # Nothing was stored.
    r = cli("pipeline", "list", scheduler=scheduler)
    assert r.json() == {"pipelines": []}, r
    r = cli("pipeline", "status", "cyc", scheduler=scheduler)
    assert r.code == 1 and "NOT_FOUND" in r.err, r


def test_pipelines_come_back_after_a_restart(scheduler, stubs, tmp_path):
    a = agent(stubs, scheduler)
    gw = gateway(stubs, scheduler)
    c1 = load_model(scheduler, tmp_path, a, "m1")
    a.report(c1, "LOADED")
    c2 = load_model(scheduler, tmp_path, a, "m2")
    a.report(c2, "LOADED")
    path = write(tmp_path, "chain.yaml", CHAIN)
    r = cli("pipeline", "load", "-f", path, "-w", "PipelineReady", scheduler=scheduler)
    assert r.code == 0, r
    r = cli("pipeline", "load", "-f", write(tmp_path, "chain2.yaml",
                                            CHAIN.replace("steps: [m2]", "steps: [m1, m2]")),
            "-w", "PipelineReady", scheduler=scheduler)
    assert r.json()["resources"][0]["version"] == 2, r
    scheduler.restart()  # SIGTERM; the same --state-dir
    a.close()
    gw[0].close()
    gw = gateway(stubs, scheduler)

    doc = pstatus(scheduler, "chain")
    assert state_of(doc)["pipelineVersion"] == 2
    # The models' stored state: available until the replica says otherwise.
    assert state_of(doc)["status"] == "PipelineReady"
    assert doc["versions"][0]["pipeline"]["spec"]["output"]["steps"] == ["m1", "m2"]
    # The replica comes back holding m1 only: the pipeline waits for m2 until it is loaded.
    a = agent(stubs, scheduler, loaded=[("m1", 1)])
    cmd = a.next_command()
    assert (cmd.op, cmd.model) == (cmd.LOAD, "m2"), cmd
    st = state_of(pstatus(scheduler, "chain"))
    assert st["status"] == "PipelineCreating" and st["waitingFor"] == ["m2"], st
    a.report(cmd, "LOADED")
    st = state_of(pstatus(scheduler, "chain", "-w", "PipelineReady"))
    assert st["status"] == "PipelineReady" and st["pipelineVersion"] == 2
    a.close()
    gw[1].cancel()
    gw[0].close()


# --- pipeline infer: what reaches the inference host -----------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        _Recorder.seen.append((self.path, dict(self.headers.items()), body))
        out = json.dumps({"model_name": "chain", "outputs": []}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def test_pipeline_infer_sends_the_pipeline_header(stubs):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        req = '{"inputs":[{"name":"x","datatype":"INT32","shape":[1],"data":[1]}]}'
        r = cli("pipeline", "infer", "chain", req, "--header", "x-a=b", "--show-headers",
                infer=f"127.0.0.1:{srv.server_address[1]}")
        assert r.code == 0, r
        assert r.json()["model_name"] == "chain"
        path, headers, body = _Recorder.seen[-1]
        lower = {k.lower(): v for k, v in headers.items()}
        assert path == "/v2/models/chain/infer"
        assert lower["seldon-model"] == "chain.pipeline"
        assert lower["x-a"] == "b"
        assert json.loads(body)["inputs"][0]["name"] == "x"
        assert "content-type" in r.err.lower()  # --show-headers
    finally:
        srv.shutdown()
        srv.server_close()

    # gRPC: ModelInfer with the metadata, the request naming the pipeline.
    grpc = stubs.grpc
    seen = []

    def infer(request, context):
        seen.append((dict(context.invocation_metadata()), request))
        return b""

    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        r = cli("pipeline", "infer", "chain", req, "--inference-mode", "grpc",
                infer=f"127.0.0.1:{port}")
        assert r.code == 0, r
        md, raw = seen[-1]
        assert md["seldon-model"] == "chain.pipeline"
        assert b"chain" in raw  # ModelInferRequest.model_name
    finally:
        server.stop(None)
