"""seldon-dataflow --scheduler-host (conftest.py): the worker runs the pipelines the
scheduler gives and reports them back; with a gateway in Kafka mode, `seldon pipeline
status` is PipelineReady only while a dataflow worker runs the pipeline, and says what it
waits for otherwise. A pipeline loaded with the CLI is served through the router, dropped
by the worker when unloaded; a killed worker takes the status out of Ready until a new one
runs the pipeline."""
import json

from conftest import df, pg, pipeline_docs, worker

GUARD = pg.GUARD
SIMPLE = {"inputs": [
    {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(1, 17))},
    {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]}
DOUBLED = [2 * i for i in range(1, 17)]


def gauge(w, name):
    return df.kh.sh.metric(w.metrics(), name)


def status(s, pipeline):
    """(state, reason) of the pipeline's current version, as `seldon pipeline status` says."""
    r = s.cli("pipeline", "status", pipeline)
    assert r.code == 0, f"{r.out}{r.err}"
    st = json.loads(r.out.splitlines()[0])["versions"][0]["state"]
    return st["status"], st["reason"]


def wait_status(s, pipeline, want, reason=""):
    seen = []

    def cond():
        seen[:] = [status(s, pipeline)]
        return seen[0][0] == want and reason in seen[0][1]
    pg.procs.wait_until(cond, GUARD, lambda: f"{pipeline}: {seen} not {want} {reason!r}\n"
                                            f"{s.scheduler.stderr()}")


def pipeline_upstreams(s, pipeline):
    """The upstreams of route "<pipeline>.pipeline" in the router's routes cache."""
    text = (s.tmp / "router" / "routes.yaml").read_text()
    block = text.split(f'- name: "{pipeline}.pipeline"\n', 1)[1].split("\n- name:", 1)[0]
    return [line.strip()[2:] for line in block.splitlines() if line.startswith("  - {")]


def gw_ready(s, pipeline="chain", gw=0):
    """The code of the Kafka gateway's own GET /v2/pipelines/<p>/ready (not via the router)."""
    port = s.gateways[gw].ports["port"]
    return pg.sh.request(port, "GET", f"/v2/pipelines/{pipeline}/ready")[0]


def wait_gw_ready(s, want, pipeline="chain", gw=0):
    seen = []

    def cond():
        seen[:] = [gw_ready(s, pipeline, gw)]
        return seen[0] == want
    pg.procs.wait_until(cond, GUARD, lambda: f"{pipeline}: gateway ready {seen} not {want}\n"
                                            f"{s.logs()}")


def grpc_ready(g, s, pipeline="chain", gw=0):
    """ModelReady asked of the Kafka gateway itself for "<pipeline>.pipeline"."""
    channel = g.grpc.insecure_channel(f"{pg.HOST}:{s.gateways[gw].ports['port']}")
    try:
        stub = g.pb2_grpc.GRPCInferenceServiceStub(channel)
        return stub.ModelReady(g.pb2.ModelReadyRequest(name=pipeline),
                               metadata=[("seldon-model", f"{pipeline}.pipeline")],
                               timeout=GUARD).ready
    finally:
        channel.close()


def infer_until_ok(s, pipeline="chain"):
    """The gateway answers 503 until its consumer holds a partition: poll until 200."""
    def get():
        code, _, body = s.request("POST", f"/v2/pipelines/{pipeline}/infer", SIMPLE)
        assert code in (200, 503, 504), body
        return code, body
    return pg.procs.wait_value(get, lambda v: v[0] == 200, GUARD,
                               lambda v: f"{v[1]}\n{s.logs()}", interval=0.05)[1]


def test_load_ready_infer_kill_restart_unload(ksys, g):
    s = ksys
    s.load("pipelines.yaml", pipeline_docs(["chain"]))
    # Models available and a gateway connected, but it is in Kafka mode: no worker yet.
    wait_status(s, "chain", "PipelineCreating",
                "waiting for a dataflow worker (seldon-dataflow) to connect")

    # No worker has subscribed to the scheduler yet: the gateway's own /ready follows the
    # models alone, as workers run from --pipeline files (unknown to it) may serve it.
    wait_gw_ready(s, 200)

    w1 = worker(s, "df-1")
    s.extra.append(w1)
    w1.wait_log(r"pipeline chain v1: running \(2 step\(s\)\)")
    r = s.cli("pipeline", "status", "chain", "-w", "PipelineReady")
    assert r.code == 0, f"{r.out}{r.err}\n{s.scheduler.stderr()}"
    pg.procs.wait_until(
        lambda: "dataflow worker df-1: 1 pipeline(s) running, 0 failed" in s.scheduler.stderr(),
        GUARD, s.scheduler.stderr)
    # Served through the router: gateway -> Kafka -> the worker -> the model gateway.
    body = infer_until_ok(s)
    assert pg.outputs(body)["OUTPUT0"] == DOUBLED
    wait_gw_ready(s, 200)
    assert grpc_ready(g, s) is True
    assert s.scheduler.metric("seldon_scheduler_dataflow_workers_connected") == 1
    assert s.scheduler.metric("seldon_scheduler_pipeline_gateways_connected") == 1
    # The route the router got for the pipeline names the gateway only, not the worker.
    assert pipeline_upstreams(s, "chain") == [f'{{http: "{pg.HOST}:{s.gateways[0].ports["port"]}"'
                                               f', grpc: "{pg.HOST}:{s.gateways[0].ports["port"]}"}}']

    # The worker dies: the scheduler stops counting it, the status says what it waits for.
    w1.kill()
    s.extra.remove(w1)
    wait_status(s, "chain", "PipelineCreating", "waiting for a dataflow worker")
    # A worker has subscribed once: the gateway's /ready follows the scheduler now.
    wait_gw_ready(s, 424)
    assert grpc_ready(g, s) is False
    # The 424 says why: the scheduler's reason, not a model.
    code, _, body = pg.sh.request(s.gateways[0].ports["port"], "GET", "/v2/pipelines/chain/ready")[:3]
    assert code == 424 and b"waiting for a dataflow worker" in body, (code, body)
    pg.procs.wait_until(
        lambda: "pipeline chain v1: not ready: waiting for a dataflow worker" in
        s.gateways[0].stderr(), GUARD, s.gateways[0].stderr)
    assert s.scheduler.metric("seldon_scheduler_dataflow_workers_connected") == 0
    r = s.cli("pipeline", "list")
    assert r.code == 0 and "waiting for a dataflow worker" in r.out, r.out

    # A new worker runs it again: Ready, and requests are answered again.
    w2 = worker(s, "df-2")
    s.extra.append(w2)
    w2.wait_log(r"pipeline chain v1: running")
    wait_status(s, "chain", "PipelineReady")
    wait_gw_ready(s, 200)
    body = infer_until_ok(s)
    assert pg.outputs(body)["OUTPUT0"] == DOUBLED
    assert gauge(w2, "seldon_dataflow_pipelines") == 1

    # Unloaded: the worker drops it and consumes none of its topics.
    r = s.cli("pipeline", "unload", "chain")
    assert r.code == 0, f"{r.out}{r.err}"
    w2.wait_log(r"pipeline chain v1: removed")
    w2.wait_log(r"scheduler \S+: 0 pipeline\(s\)")
    assert gauge(w2, "seldon_dataflow_pipelines") == 0
    w2.stop()
    s.extra.remove(w2)


def test_help_names_the_flags():
    import subprocess
    out = subprocess.run([df.DATAFLOW, "--help"], capture_output=True, timeout=30).stdout.decode()
    assert "--scheduler-host" in out and "--name" in out and "--resubscribe-max" in out


def test_a_pipeline_the_worker_cannot_run_is_failed_with_its_reason(ksys):
    # The worker runs a --pipeline file's "chain" as well: the scheduler's "chain" cannot
    # run beside it, the worker says so, and the status is PipelineFailed with that reason.
    s = ksys
    path = s.tmp / "worker-pipelines.yaml"
    path.write_text(pipeline_docs(["chain"]))
    w = df.Dataflow(s.broker.bootstrap, [path], "--scheduler-host", s.scheduler.route_target,
                    "--name", "df-3", "--resubscribe-max", "200")
    s.extra.append(w)
    try:
        w.wait_log(r"subscribed to pipelines")
        s.load("pipelines.yaml", pipeline_docs(["chain"]))
        wait_status(s, "chain", "PipelineFailed",
                    "dataflow worker df-3: a --pipeline file's pipeline of that name runs here")
        w.wait_log(r"pipeline chain v\d+: failed: a --pipeline file's pipeline")
        # The file's pipeline runs all along: it is still served.
        assert gauge(w, "seldon_dataflow_pipelines") == 1
        r = s.cli("pipeline", "unload", "chain")
        assert r.code == 0, f"{r.out}{r.err}"
    finally:
        w.stop()
        s.extra.remove(w)


CLIENTS = 4


class Loop:
    """CLIENTS threads sending the pipeline's requests through the router, one after the
    other each, until stop(). Every request must end with 200 and the right outputs, or with
    an error status and a message saying why; a request that hangs past GUARD or a
    connection that closes unanswered fails the test (it would be lost silently)."""

    def __init__(self, s, pipeline="chain"):
        import threading
        self.s = s
        self.pipeline = pipeline
        self.lock = threading.Lock()
        self.results = []   # (mark, code, body) in the order they ended
        self.lost = []      # what ended without an answer
        self.mark = 0       # 0 before the event, 1 after
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def _run(self):
        while not self.done.is_set():
            with self.lock:
                mark = self.mark  # the event happened before this request started
            try:
                code, _, body = self.s.request("POST", f"/v2/pipelines/{self.pipeline}/infer",
                                               SIMPLE, timeout=GUARD)
            except OSError as e:
                with self.lock:
                    self.lost.append(repr(e))
                continue
            with self.lock:
                self.results.append((mark, code, body))
            if code != 200:
                self.done.wait(0.02)  # paced while the system recovers; ends at the stop

    def count(self, mark=None, code=None):
        with self.lock:
            return sum(1 for m, c, _ in self.results
                       if (mark is None or m == mark) and (code is None or c == code))

    def event(self, action):
        """Runs action once some requests were answered; requests started after it count
        as "after"."""
        pg.procs.wait_until(lambda: self.count(code=200) >= 2 * CLIENTS, GUARD,
                            lambda: f"{self.results[-5:]}\n{self.s.logs()}")
        action()
        with self.lock:
            self.mark = 1

    def recovered(self, n=3 * CLIENTS):
        """Waits for n requests started after the event to succeed in a row, then stops."""
        def tail_ok():
            with self.lock:
                after = [c for m, c, _ in self.results if m == 1]
            return len(after) >= n and all(c == 200 for c in after[-n:])
        try:
            pg.procs.wait_until(tail_ok, 4 * GUARD, lambda: (
                f"no recovery: {[(m, c, b[:200]) for m, c, b in self.results[-8:]]}\n"
                f"{self.lost}\n{self.s.logs()}"))
        finally:
            self.done.set()
            for t in self.threads:
                t.join(GUARD + 5)
        assert not any(t.is_alive() for t in self.threads), "a request hangs past its timeout"
        assert not self.lost, f"requests ended without an answer: {self.lost}"
        for m, c, body in self.results:
            if c == 200:
                assert pg.outputs(body)["OUTPUT0"] == DOUBLED, body
            else:
                # A clear error: an error status with a message.
                assert c >= 500 and len(body.strip()) > 0, (c, body)


def load_chain_with_worker(s, name):
    s.load("pipelines.yaml", pipeline_docs(["chain"]))
    w = worker(s, name)
    s.extra.append(w)
    w.wait_log(r"pipeline chain v\d+: running")
    wait_status(s, "chain", "PipelineReady")
    infer_until_ok(s)
    return w


def test_a_gateway_killed_in_a_loop_loses_no_request(ksys):
    s = ksys
    w = load_chain_with_worker(s, "df-4")
    gw2 = s.add_gateway("kgw-2", "--kafka", "--kafka-broker", s.broker.bootstrap,
                        "--kafka-config", "session.timeout.ms=6000",
                        "--kafka-config", "heartbeat.interval.ms=500")
    try:
        # Both gateways are upstreams of the pipeline's route, and the second answers itself.
        pg.procs.wait_until(lambda: len(pipeline_upstreams(s, "chain")) == 2, GUARD, s.logs)
        wait_gw_ready(s, 200, gw=1)
        pg.procs.wait_until(
            lambda: pg.sh.request(gw2.ports["port"], "POST", "/v2/pipelines/chain/infer",
                                  SIMPLE)[0] == 200, GUARD, gw2.stderr)
        loop = Loop(s)
        loop.event(gw2.kill)
        s.gateways.remove(gw2)
        loop.recovered()
        # The loop ran on both sides of the kill.
        assert loop.count(mark=0, code=200) > 0 and loop.count(mark=1, code=200) > 0
        assert len(pipeline_upstreams(s, "chain")) == 1
    finally:
        if gw2 in s.gateways:
            s.gateways.remove(gw2)
            gw2.kill()
        r = s.cli("pipeline", "unload", "chain")
        assert r.code == 0, f"{r.out}{r.err}"
        w.wait_log(r"pipeline chain v\d+: removed")
        w.stop()
        s.extra.remove(w)


def test_the_broker_restarted_in_a_loop_resumes_by_itself(ksys):
    s = ksys
    w = load_chain_with_worker(s, "df-5")
    try:
        loop = Loop(s)

        def restart():
            s.broker.stop()
            s.broker = df.kh.KafkaDev(port=s.broker.port)
            s.broker.port = int(s.broker.bootstrap.rsplit(":", 1)[1])
        loop.event(restart)
        # Everything the broker held is gone: the worker, the model gateway and the
        # gateway reconnect and rejoin by themselves, and requests are answered again.
        loop.recovered()
        assert loop.count(mark=0, code=200) > 0 and loop.count(mark=1, code=200) > 0
    finally:
        r = s.cli("pipeline", "unload", "chain")
        assert r.code == 0, f"{r.out}{r.err}"
        w.stop()
        s.extra.remove(w)
