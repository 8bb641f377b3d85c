"""Pipelines outside seldon up, on loopback: a seldon-scheduler, one server replica (a
seldon-agent and a seldon-server), a seldon-router fed by the scheduler and two
seldon-pipelinegateway processes subscribed to it, whose steps call their models through
the router. Pipelines are loaded with the real `seldon` CLI; traffic goes through the
router's one port with http.client, curl and grpcio, as users send it.

The pipelines and models are seldon up's (tests/integration/up/pipelines), the models'
artifacts copied from examples/models. Deadlines below only guard against hangs; no
assertion depends on time.
"""
import importlib.util
import json
import os
import shutil
import sys

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
UP_PIPELINES = os.path.join(SOURCE, "tests", "integration", "up", "pipelines")
GATEWAY = os.environ.get("SELDON_PIPELINEGATEWAY") or os.path.join(
    SOURCE, "build", "daemons", "pipelinegateway", "seldon-pipelinegateway")


def pytest_configure(config):
    procs.require((cp.SCHEDULER, "SELDON_SCHEDULER"), (cp.CLI, "SELDON_CLI"),
                  (cluster.AGENT, "SELDON_AGENT"), (sh.SERVER, "SELDON_SERVER"),
                  (cluster.ROUTER, "SELDON_ROUTER"), (GATEWAY, "SELDON_PIPELINEGATEWAY"))


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers():
    yield
    cluster.kill_leftovers()
    procs.kill_all(cp.STARTED)


@pytest.fixture(scope="session")
def g(tmp_path_factory):
    grpc = pytest.importorskip("grpc")
    pb2, pb2_grpc = oipstubs.compile_stubs(tmp_path_factory.mktemp("oip"), sh.PROTO_DIR)
    return sh.Grpc(pb2, pb2_grpc, grpc)


def start_gateway(name, scheduler, router_port, *extra):
    return cluster.Daemon(name, [
        GATEWAY, "--scheduler-host", scheduler.route_target,
        "--router", f"{HOST}:{router_port}", "--host", HOST, "--port", "0",
        "--metrics-port", "0", "--name", name, "--resubscribe-max", "200", *extra])


def models_yaml(src):
    """up's models.yaml with storageUri pointing at copies of the artifacts in src."""
    text = open(os.path.join(UP_PIPELINES, "models.yaml")).read()
    for d in os.listdir(os.path.join(SOURCE, "examples", "models")):
        shutil.copytree(os.path.join(SOURCE, "examples", "models", d), os.path.join(src, d),
                        dirs_exist_ok=True)
    shutil.copytree(os.path.join(UP_PIPELINES, "models", "slow"), os.path.join(src, "slow"),
                    dirs_exist_ok=True)
    text = text.replace('"./examples/models/', f'"{src}/').replace('"./pipelines/models/',
                                                                  f'"{src}/')
    return text


class System:
    """Scheduler, one replica, the router and two gateways (the second started by tests)."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.scheduler = cp.Scheduler(tmp / "scheduler-state")
        self.replica = None
        self.router = None
        self.gateways = []
        try:
            self.replica = cluster.Replica(tmp, self.scheduler, "mlserver", ["mlserver"],
                                           "256Mi")
            self.router = cluster.start_router(tmp, self.scheduler, metrics=True)
        except BaseException:
            self.stop()
            raise
        self.port = self.router.ports["port"]
        self.infer_host = f"{HOST}:{self.port}"

    def add_gateway(self, name, *extra):
        gw = start_gateway(name, self.scheduler, self.router.ports["port"], *extra)
        self.gateways.append(gw)
        return gw

    def logs(self):
        parts = [self.scheduler.stderr()]
        if self.replica is not None:
            parts += [self.replica.agent.stderr(), self.replica.server.stderr()]
        for d in [self.router] + self.gateways:
            if d is not None:
                parts.append(d.stderr())
        return "\n".join(parts)

    def cli(self, *args):
        return cp.cli(*args, scheduler=self.scheduler, infer=self.infer_host)

    def load(self, name, text, *wait):
        path = cp.write(self.tmp, name, text)
        r = self.cli("load", "-f", path, *wait)
        assert r.code == 0, f"{r}\n{self.logs()}"

    def request(self, method, path, body=None, headers=None, timeout=GUARD):
        return sh.request(self.port, method, path, body=body, headers=headers, timeout=timeout)

    def wait_ready(self, pipeline, want=200):
        """Polls /v2/pipelines/<p>/ready through the router until it answers want."""
        def code():
            try:
                return self.request("GET", f"/v2/pipelines/{pipeline}/ready")[0]
            except OSError:  # the router is not listening yet
                return 0
        procs.wait_value(code, lambda c: c == want, GUARD,
                         lambda c: f"{pipeline}: ready {c}, not {want}\n{self.logs()}")

    def stop(self):
        errors = []
        for d in self.gateways + ([self.router] if self.router else []) + (
                [self.replica] if self.replica else []):
            try:
                d.stop()
            except AssertionError as e:
                errors.append(str(e))
        if self.scheduler.proc.poll() is None:
            self.scheduler.stop()
        assert not errors, "\n".join(errors)


def outputs(body):
    """{name: data} of a REST answer (two outputs may share a name: a list then)."""
    out = {}
    for o in json.loads(body)["outputs"]:
        if o["name"] in out:
            prev = out[o["name"]]
            out[o["name"]] = (prev if isinstance(prev[0], list) else [prev]) + [o["data"]]
        else:
            out[o["name"]] = o["data"]
    return out
