"""The distributed system as users run it, on loopback: one seldon-scheduler, server
replicas made of a seldon-agent and a seldon-server each, and a seldon-router fed by the
scheduler. Everything is driven with the real `seldon` CLI (load -f manifests written
here, status -w, infer), and traffic goes through the router's one port with curl,
http.client and grpcio.

The scheduler process is tests/integration/controlplane/conftest.py's Scheduler; agents,
servers and the router are tests/integration/lib/cluster.py's. Deadlines below only guard
against hangs; no assertion depends on time.
"""
import http.client
import importlib.util
import json
import os
import subprocess
import sys
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration", "lib"))
import cluster  # noqa: E402
import oipstubs  # noqa: E402
import procs  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "controlplane_helpers", os.path.join(SOURCE, "tests", "integration", "controlplane",
                                         "conftest.py"))
cp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cp)

sh = cluster.sh
HOST = cluster.HOST
GUARD = cluster.GUARD
cli = cp.cli
write = cp.write
model_yaml = cp.model_yaml
wait_status = cp.wait_status
until = cluster.until


def pytest_configure(config):
    procs.require((cp.SCHEDULER, "SELDON_SCHEDULER"), (cp.CLI, "SELDON_CLI"),
                  (cluster.AGENT, "SELDON_AGENT"), (sh.SERVER, "SELDON_SERVER"))
    if not cluster.router_subscribes():
        raise pytest.UsageError(f"{cluster.ROUTER} does not take --scheduler-host: set "
                                "SELDON_ROUTER")


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers():
    yield
    cluster.kill_leftovers()
    procs.kill_all(cp.STARTED)


def pytest_terminal_summary(terminalreporter):
    """What the failover test saw during the move (failures are counted, not asserted)."""
    seen = sys.modules.get("test_failover")
    if seen is not None and getattr(seen, "FAILOVER", None):
        terminalreporter.write_line(f"failover: {seen.FAILOVER}")


@pytest.fixture(scope="session")
def g(tmp_path_factory):
    """grpcio and the OIP stubs compiled from proto/ (a sh.Grpc)."""
    grpc = pytest.importorskip("grpc")
    pb2, pb2_grpc = oipstubs.compile_stubs(tmp_path_factory.mktemp("oip"), sh.PROTO_DIR)
    return sh.Grpc(pb2, pb2_grpc, grpc)


class System:
    """A scheduler, server replicas (cluster.Replica keyword arguments each) and a router."""

    def __init__(self, tmp, replicas):
        self.tmp = tmp
        self.scheduler = cp.Scheduler(tmp / "scheduler-state")
        self.replicas = []
        self.router = None
        try:
            for spec in replicas:
                self.replicas.append(cluster.Replica(tmp, self.scheduler, metrics=True, **spec))
            self.router = cluster.start_router(tmp, self.scheduler, metrics=True)
        except BaseException:
            self.stop()
            raise
        self.port = self.router.ports["port"]
        self.infer_host = f"{HOST}:{self.port}"

    def replica(self, name, index=0):
        return next(r for r in self.replicas if (r.name, r.index) == (name, index))

    def logs(self):
        """Every daemon's stderr, for assertion messages."""
        parts = [self.scheduler.stderr()]
        for r in self.replicas:
            parts += [r.agent.stderr(), r.server.stderr()]
        if self.router is not None:
            parts.append(self.router.stderr())
        return "\n".join(parts)

    def cli(self, *args):
        """The seldon CLI with --scheduler-host and --inference-host of this system."""
        return cli(*args, scheduler=self.scheduler, infer=self.infer_host)

    def apply(self, name, text, wait="ModelAvailable"):
        """seldon load -f FILE [-w STATE]; asserts success; the file's path."""
        path = write(self.tmp, name, text)
        args = ["load", "-f", path] + (["-w", wait] if wait else [])
        r = self.cli(*args)
        assert r.code == 0, f"{r}\n{self.logs()}"
        return path

    def status(self, model):
        r = self.cli("model", "status", model)
        assert r.code == 0, r
        return r.json()

    def wait_routed(self, model, values, want):
        """Waits until the router answers want for model (it takes new tables as they come)."""
        until(lambda: rest_infer(self.port, model, values), lambda r: r == (200, want),
              self.router)

    def stop(self):
        errors = []
        for d in ([self.router] if self.router else []) + self.replicas:
            try:
                d.stop()
            except AssertionError as e:
                errors.append(str(e))
        if self.scheduler.proc.poll() is None:
            self.scheduler.stop()
        assert not errors, "\n".join(errors)


# --- Model sources and manifests --------------------------------------------------------


def add_source(root, name, constant):
    """A builtin.add model folder: its answers are the input plus constant."""
    return sh.write_model(root, name, sh.arith("builtin.add", constant))


def model_doc(name, uri, requirements=(), memory=None, server=None, replicas=None):
    return model_yaml(name, requirements=requirements, memory=memory, replicas=replicas,
                      server=server, uri=uri)


# --- Traffic through the router ----------------------------------------------------------


def tensor_doc(values):
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [len(values)],
                        "data": values}]}


def rest_infer(port, model, values):
    """One REST inference through the router: (status, output data or the body text)."""
    try:
        status, _, body = sh.request(port, "POST", f"/v2/models/{model}/infer",
                                     body=tensor_doc(values))
    except OSError as e:
        return (0, str(e))
    if status != 200:
        return (status, body[:300])
    return (status, json.loads(body)["outputs"][0]["data"])


def curl_infer(port, model, values, grpc_header=None):
    """The same with curl, as a user types it: (HTTP status, parsed body)."""
    proc = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST",
         "-H", "Content-Type: application/json", "-d", json.dumps(tensor_doc(values)),
         f"http://{HOST}:{port}/v2/models/{model}/infer"],
        capture_output=True, timeout=GUARD)
    assert proc.returncode == 0, proc.stderr.decode()
    body, _, code = proc.stdout.decode().rpartition("\n")
    return int(code), json.loads(body) if body else None


def grpc_stub(g, port):
    channel = g.grpc.insecure_channel(f"{HOST}:{port}")
    g.grpc.channel_ready_future(channel).result(timeout=GUARD)
    return channel, g.pb2_grpc.GRPCInferenceServiceStub(channel)


def grpc_infer(g, stub, model, values):
    """ModelInfer through the router (seldon-model names the route): the first output as a
    list."""
    import numpy as np
    req = g.request(model, {"x": np.array(values, dtype=np.float32)})
    resp = stub.ModelInfer(req, metadata=[("seldon-model", model)], timeout=GUARD)
    return list(g.outputs(resp).values())[0].tolist()


class Loop:
    """Requests through the router in a thread until stopped (and at least `least` sent).

    REST on one keep-alive connection (a new one after an error), or gRPC on one channel.
    Records every answer in order, and every failure with its index."""

    def __init__(self, port, model, values, least, g=None):
        self.port, self.model, self.values, self.least, self.g = port, model, values, least, g
        self.answers = []    # (index, answer)
        self.failures = []   # (index, what)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def sent(self):
        return len(self.answers) + len(self.failures)

    def _run(self):
        if self.g is not None:
            self._run_grpc()
        else:
            self._run_rest()

    def _more(self):
        return not self.stopping.is_set() or self.sent < self.least

    def _run_rest(self):
        body = json.dumps(tensor_doc(self.values)).encode()
        headers = {"Content-Type": "application/json"}
        conn = None
        while self._more():
            i = self.sent
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, self.port, timeout=GUARD)
                conn.request("POST", f"/v2/models/{self.model}/infer", body=body,
                             headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status == 200:
                    self.answers.append((i, json.loads(data)["outputs"][0]["data"]))
                else:
                    self.failures.append((i, f"{resp.status} {data[:200]!r}"))
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                self.failures.append((i, repr(e)))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _run_grpc(self):
        channel, stub = grpc_stub(self.g, self.port)
        try:
            while self._more():
                i = self.sent
                try:
                    self.answers.append((i, grpc_infer(self.g, stub, self.model, self.values)))
                except self.g.grpc.RpcError as e:
                    self.failures.append((i, f"{e.code()} {e.details()}"))
        finally:
            channel.close()

    def wait_answer(self, want, guard=GUARD):
        """Waits until the loop got want as an answer; returns the request's index."""
        def seen():
            return next((i for i, a in list(self.answers) if a == want), None)
        return until(seen, lambda i: i is not None, _Noted(self), guard)

    def wait_success_from(self, n, guard=GUARD):
        """Waits for an answer to request n or a later one; returns its index."""
        def seen():
            return next((i for i, _ in list(self.answers) if i >= n), None)
        return until(seen, lambda i: i is not None, _Noted(self), guard)

    def wait_sent(self, n, guard=GUARD * 2):
        until(lambda: self.sent, lambda s: s >= n, _Noted(self), guard)

    def stop(self):
        self.stopping.set()
        self.thread.join(GUARD * 4)
        assert not self.thread.is_alive(), "the request loop did not end"


class _Noted:
    """For until()'s failure message: what the loop has seen."""

    def __init__(self, loop):
        self.loop = loop

    def stderr(self):
        return (f"loop: {self.loop.sent} sent, last answers {self.loop.answers[-3:]}, "
                f"failures {self.loop.failures[:5]}")
