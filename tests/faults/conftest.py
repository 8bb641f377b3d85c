"""The fault suite: a whole system of real daemons on loopback (seldon-scheduler,
seldon-agent + seldon-server replicas, seldon-router), a bounded request loop through
the router on a thread of its own, and a fault injected while it runs. Every case
counts the requests that failed; most of them require none.

Processes come from tests/integration/lib/cluster.py (agents, servers, routers) and
tests/integration/controlplane/conftest.py (the scheduler, the seldon CLI). Waits are
for events (a log line, a status, a count of answered requests); deadlines only guard
against hangs, and no assertion depends on time.
"""
import importlib.util
import json
import os
import signal
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration", "lib"))
import cluster  # noqa: E402
import oipstubs  # noqa: E402
import procs  # noqa: E402
from cluster import HOST, Daemon, sh  # noqa: E402,F401

_spec = importlib.util.spec_from_file_location(
    "controlplane_helpers",
    os.path.join(SOURCE, "tests", "integration", "controlplane", "conftest.py"))
cp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cp)

GUARD = 60.0


def pytest_configure(config):
    procs.require((cp.SCHEDULER, "SELDON_SCHEDULER"), (cp.CLI, "SELDON_CLI"),
                  (cluster.AGENT, "SELDON_AGENT"), (sh.SERVER, "SELDON_SERVER"),
                  (cluster.ROUTER, "SELDON_ROUTER"))


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers():
    yield
    cluster.kill_leftovers()
    procs.kill_all(cp.STARTED)


@pytest.fixture(scope="session")
def oip(tmp_path_factory):
    """(pb2, pb2_grpc) of grpc_predict_v2.proto."""
    return oipstubs.compile_stubs(tmp_path_factory.mktemp("oip_stubs"), sh.PROTO_DIR)


# --- the scheduler -------------------------------------------------------------------


class Scheduler(cp.Scheduler):
    def sigkill(self):
        """SIGKILL: no goodbye to agents nor routers, nothing flushed on the way out."""
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()

    def start_again(self):
        self.start((self.client, self.agent, self.route, self.metrics))

    def wait_ready(self):
        cluster.until(lambda: self.metric("seldon_scheduler_ready"), lambda v: v == 1, self,
                      guard=GUARD)


@pytest.fixture
def scheduler(tmp_path):
    s = Scheduler(tmp_path / "state")
    yield s
    if s.proc.poll() is None:
        s.stop()


def cli(*args, scheduler=None):
    return cp.cli(*args, scheduler=scheduler)


def model_doc(name, source, replicas=None, memory="1Mi", requirements=("sklearn",)):
    reqs = "".join(f"  - {r}\n" for r in requirements)
    text = ("apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n"
            f"  name: {name}\nspec:\n  storageUri: \"{source}\"\n  memory: {memory}\n"
            f"  requirements:\n{reqs}")
    if replicas is not None:
        text += f"  replicas: {replicas}\n"
    return text


def apply(sched, tmp_path, text, wait="ModelAvailable"):
    """seldon model load -f (-w wait); asserts success and returns the result."""
    path = tmp_path / f"apply-{time.monotonic_ns()}.yaml"
    path.write_text(text)
    args = ["load", "-f", str(path)] + (["-w", wait] if wait else [])
    r = cli(*args, scheduler=sched)
    assert r.code == 0, f"{r}\n{sched.stderr()}"
    return r


def status(sched, model):
    r = cli("model", "status", model, scheduler=sched)
    assert r.code == 0, r
    return r.json()


def wait_model(sched, model, pred, why, guard=GUARD):
    """Polls `seldon model status` until pred(doc) holds; returns the doc."""
    box = {}

    def check():
        r = cli("model", "status", model, scheduler=sched)
        box["r"] = r
        return r.code == 0 and pred(r.json())

    procs.wait_until(check, guard, lambda: f"{why}: {box.get('r')}\n{sched.stderr()}")
    return box["r"].json()


def available_replicas(doc):
    """{version: sorted replica indexes Available} of a status document."""
    return {v["version"]: sorted(int(i) for i, s in v["modelReplicaState"].items()
                                 if s["state"] == "Available") for v in doc["versions"]}


def source(tmp_path, name, constant):
    return cluster.model_source(tmp_path, name, constant)


# --- replicas ------------------------------------------------------------------------


class Replica(cluster.Replica):
    """cluster.Replica whose agent can be killed and started again on its own ports."""

    def __init__(self, tmp, sched, index, server_name="mlserver", memory="512Mi"):
        self.sched = sched
        self.memory = memory
        super().__init__(tmp, sched, server_name, ["sklearn"], memory, index=index)

    def agent_cmd(self, http_port, grpc_port):
        return [cluster.AGENT, "--server-name", self.name, "--replica-index", str(self.index),
                "--capabilities", "sklearn", "--memory", self.memory,
                "--models-dir", str(self.models),
                "--server-http", f"{HOST}:{self.server.http}",
                "--server-grpc", f"{HOST}:{self.server.grpc}",
                "--http-port", str(http_port), "--grpc-port", str(grpc_port),
                "--metrics-port", "-1", "--host", HOST, "--advertise-host", HOST,
                "--scheduler-host", self.sched.agent_target, "--reconnect-max", "200"]

    def restart_agent(self):
        """SIGKILLs the agent alone and starts it again on the same ports, beside the
        same server and models folder (a sidecar restarted by its supervisor)."""
        ports = self.agent.ports
        self.agent.kill()
        self.agent = Daemon(f"agent-{self.name}-{self.index}",
                            self.agent_cmd(ports["http"], ports["grpc"]))

    def loads(self):
        """Models this agent process loaded on its server (not those it found loaded)."""
        return self.agent.count(": loaded on the server (")

    def infers(self, model):
        """Inference requests this replica's server answered OK for model (any version)."""
        total = 0.0
        for name, labels, value in sh.metrics(self.server.http):
            if (name == "seldon_model_infer_total" and labels.get("code") in ("200", "0")
                    and labels.get("model", "").startswith(model + "_")):
                total += value
        return total


def replicas(tmp_path, sched, n):
    return [Replica(tmp_path, sched, i) for i in range(n)]


# --- the router ----------------------------------------------------------------------


def start_router(tmp_path, sched, timeout_ms=None, state="router", extra=()):
    """seldon-router subscribed to the scheduler, /metrics on; its routes' defaults from a
    --routes file when timeout_ms is given."""
    cmd = [cluster.ROUTER, "--scheduler-host", sched.route_target,
           "--state-dir", str(tmp_path / state), "--port", "0", "--metrics-port", "0",
           "--host", HOST, "--io-threads", "1", "--resubscribe-max", "200", *extra]
    if timeout_ms is not None:
        path = tmp_path / "router-defaults.yaml"
        path.write_text(f"defaults:\n  timeoutMs: {timeout_ms}\nroutes: []\n")
        cmd += ["--routes", str(path)]
    return Daemon("router", cmd)


def wait_routed(router, model, n=1):
    """Waits until a request for model through the router is answered 200 (n in a row)."""
    def ok():
        return all(sh.request(router.ports["port"], "POST", f"/v2/models/{model}/infer",
                              body=BODY)[0] == 200 for _ in range(n))
    procs.wait_until(ok, GUARD, lambda: f"{model} never routed\n{router.stderr()}")


def serves(router, model, cond, why):
    """Sends requests for model through the router until cond() holds (a replica's count
    moved): the traffic that shows it does not depend on a loop still running."""
    def check():
        sh.request(router.ports["port"], "POST", f"/v2/models/{model}/infer", body=BODY)
        return cond()
    procs.wait_until(check, GUARD, lambda: f"{why}\n{router.stderr()}")


# --- request loops -------------------------------------------------------------------


BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}


class Load:
    """A bounded request loop through the router on a thread of its own: n requests for
    model, each answer checked (status 200 and an output in `accept`). REST on one
    keep-alive connection (a new one after a failure), or gRPC ModelInfer with the
    seldon-model metadata when oip stubs are given.

    done counts the requests answered, failures keeps (index, what) of every failed one;
    at(k) waits until k requests were answered (the event a fault is injected on)."""

    def __init__(self, port, model, n, accept=(11,), oip=None, timeout=GUARD, headers=None):
        self.port, self.model, self.n = port, model, n
        self.accept = set(accept)
        self.oip = oip
        self.timeout = timeout
        self.headers = headers or {}
        self.done = 0
        self.failures = []
        self.seen = {}
        self.cond = threading.Condition()
        self.error = None
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            if self.oip is None:
                self._rest()
            else:
                self._grpc()
        except BaseException as e:  # noqa: BLE001  (reported by join)
            self.error = e
        finally:
            with self.cond:
                self.n = self.done
                self.cond.notify_all()

    def _record(self, i, value, failure):
        with self.cond:
            if failure is not None:
                self.failures.append((i, failure))
            else:
                self.seen[value] = self.seen.get(value, 0) + 1
            self.done = i + 1
            self.cond.notify_all()

    def _check(self, value):
        return None if value in self.accept else f"unexpected answer {value}"

    def _rest(self):
        import http.client
        body = json.dumps(BODY).encode()
        headers = {"Content-Type": "application/json", **self.headers}
        conn = None
        for i in range(self.n):
            if self.stopping:
                break
            failure, value = None, None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
                conn.request("POST", f"/v2/models/{self.model}/infer", body=body,
                             headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    failure = f"{resp.status} {data[:300]!r}"
                else:
                    value = json.loads(data)["outputs"][0]["data"][0]
                    failure = self._check(value)
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                failure = f"{type(e).__name__}: {e}"
                if conn is not None:
                    conn.close()
                conn = None
            self._record(i, value, failure)
        if conn is not None:
            conn.close()

    def _grpc(self):
        import grpc
        pb, rpc = self.oip
        channel = grpc.insecure_channel(f"{HOST}:{self.port}")
        stub = rpc.GRPCInferenceServiceStub(channel)
        req = pb.ModelInferRequest(model_name=self.model, inputs=[pb.ModelInferRequest.InferInputTensor(
            name="x", datatype="FP32", shape=[1],
            contents=pb.InferTensorContents(fp32_contents=[1]))])
        md = (("seldon-model", self.model),) + tuple(self.headers.items())
        try:
            for i in range(self.n):
                if self.stopping:
                    break
                failure, value = None, None
                try:
                    resp = stub.ModelInfer(req, metadata=md, timeout=self.timeout)
                    out = resp.outputs[0]
                    if out.contents.fp32_contents:
                        value = int(out.contents.fp32_contents[0])
                    else:
                        import struct
                        value = int(struct.unpack("<f", resp.raw_output_contents[0][:4])[0])
                    failure = self._check(value)
                except grpc.RpcError as e:
                    failure = f"{e.code()}: {e.details()}"
                self._record(i, value, failure)
        finally:
            channel.close()

    def at(self, k):
        """Waits until k requests were answered (or the loop ended)."""
        with self.cond:
            ok = self.cond.wait_for(lambda: self.done >= min(k, self.n), timeout=GUARD * 4)
        assert ok, f"the request loop for {self.model} stalled at {self.done}"
        assert self.error is None, self.error
        return self.done

    def stop(self):
        """Ends the loop after the request in progress."""
        self.stopping = True

    def join(self):
        self.thread.join(GUARD * 10)
        assert not self.thread.is_alive(), f"the request loop for {self.model} never ended"
        if self.error is not None:
            raise self.error
        return self.failures


def stop_all(*daemons):
    """Stops what is still running (SIGTERM and a clean exit), in order."""
    for d in daemons:
        if d is None:
            continue
        if isinstance(d, (cluster.Replica,)):
            d.stop()
        elif isinstance(d, cp.Scheduler):
            if d.proc.poll() is None:
                d.stop()
        else:
            if d.proc.poll() is None:
                d.stop()


def sigstop(proc):
    proc.send_signal(signal.SIGSTOP)


def sigcont(proc):
    proc.send_signal(signal.SIGCONT)
