"""Helpers for the seldon-agent integration tests.

The agent ($SELDON_AGENT) runs as a process on free loopback ports beside a real
seldon-server ($SELDON_SERVER) that serves the agent's --models-dir. The scheduler
is a fake written here in grpcio: it implements AgentService from
proto/seldon_control.proto (stubs compiled at test time), records every
registration and report, and sends the LOAD and UNLOAD commands a test asks for.

Deadlines below only guard against hangs; no assertion depends on time.
"""
import importlib
import importlib.util
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))

_spec = importlib.util.spec_from_file_location(
    "server_helpers", os.path.join(SOURCE, "tests", "integration", "server", "conftest.py"))
sh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sh)

g = sh.g
HOST = sh.HOST
GUARD = sh.GUARD
request = sh.request
metrics = sh.metrics
metric = sh.metric
wait_until = sh.procs.wait_until
write_model = sh.write_model
Server = sh.Server

AGENT = os.environ.get("SELDON_AGENT") or os.path.join(
    SOURCE, "build", "daemons", "agent", "seldon-agent")
PROTO_DIR = sh.PROTO_DIR

STARTED = []


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers():
    yield
    sh.procs.kill_all(STARTED)


def pytest_configure(config):
    if not os.path.exists(AGENT):
        raise pytest.UsageError(f"seldon-agent not found at {AGENT}: set SELDON_AGENT")


@pytest.fixture(scope="session")
def ctl(tmp_path_factory):
    """(seldon_control_pb2, seldon_control_pb2_grpc), compiled from proto/ for the session."""
    grpc = pytest.importorskip("grpc")  # noqa: F841
    pytest.importorskip("grpc_tools")
    out = str(tmp_path_factory.mktemp("ctlpb"))
    proc = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", PROTO_DIR, f"--python_out={out}",
         f"--grpc_python_out={out}", os.path.join(PROTO_DIR, "seldon_control.proto")],
        capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    sys.path.insert(0, out)
    try:
        return (importlib.import_module("seldon_control_pb2"),
                importlib.import_module("seldon_control_pb2_grpc"))
    finally:
        sys.path.remove(out)


class FakeScheduler:
    """AgentService on a loopback port: records subscriptions and reports, sends commands."""

    def __init__(self, ctl, port=0):
        import grpc
        self.pb, self.pb_grpc = ctl
        self.cond = threading.Condition()
        self.subs = []      # AgentSubscribeRequest, in order
        self.reports = []   # AgentEvent, in order
        self.queues = []    # one command queue per subscription; the last one is live
        self.next_id = 1
        outer = self

        class Servicer(self.pb_grpc.AgentServiceServicer):
            def Subscribe(self, req, context):
                q = queue.Queue()
                with outer.cond:
                    outer.subs.append(req)
                    outer.queues.append(q)
                    outer.cond.notify_all()
                while context.is_active():
                    try:
                        cmd = q.get(timeout=0.05)
                    except queue.Empty:
                        continue
                    if cmd is None:
                        return
                    yield cmd

            def Report(self, ev, context):
                with outer.cond:
                    outer.reports.append(ev)
                    outer.cond.notify_all()
                return outer.pb.AgentEventResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.pb_grpc.add_AgentServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port(f"{HOST}:{port}")
        assert self.port, "cannot bind the fake scheduler"
        self.server.start()

    @property
    def target(self):
        return f"{HOST}:{self.port}"

    def wait_subs(self, n):
        deadline = time.monotonic() + GUARD
        with self.cond:
            while len(self.subs) < n:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.subs)} registration(s), wanted {n}"
                self.cond.wait(left)
            return self.subs[n - 1]

    def command(self, op, model, version, spec=None, memory=0):
        """Sends a command on the live subscription; returns its id."""
        with self.cond:
            cid = self.next_id
            self.next_id += 1
            assert self.queues, "no agent subscribed"
            q = self.queues[-1]
        cmd = self.pb.AgentCommand(
            op=self.pb.AgentCommand.LOAD if op == "LOAD" else self.pb.AgentCommand.UNLOAD,
            id=cid, model=model, version=version,
            spec=json.dumps(spec) if isinstance(spec, dict) else (spec or ""),
            memory_bytes=memory)
        q.put(cmd)
        return cid

    def wait_report(self, cid):
        """The AgentEvent that answers command cid."""
        deadline = time.monotonic() + GUARD * 2
        with self.cond:
            while True:
                for ev in self.reports:
                    if ev.command_id == cid:
                        return ev
                left = deadline - time.monotonic()
                assert left > 0, f"no report for command {cid}: {self.reports}"
                self.cond.wait(left)

    def load(self, model, version, uri, memory=0, artifact_version=None, expect="LOADED"):
        spec = {"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model",
                "metadata": {"name": model}, "spec": {"storageUri": uri}}
        if artifact_version is not None:
            spec["spec"]["artifactVersion"] = artifact_version
        ev = self.wait_report(self.command("LOAD", model, version, spec, memory))
        if expect is not None:
            assert self.pb.AgentEvent.Type.Name(ev.type) == expect, ev
        return ev

    def unload(self, model, version):
        ev = self.wait_report(self.command("UNLOAD", model, version))
        assert self.pb.AgentEvent.Type.Name(ev.type) == "UNLOADED", ev
        return ev

    def stop(self):
        with self.cond:
            for q in self.queues:
                q.put(None)
        self.server.stop(0).wait(GUARD)


class Agent:
    """A seldon-agent process on free loopback ports."""

    def __init__(self, server, models_dir, scheduler=None, *args):
        self.dir = tempfile.mkdtemp(prefix="seldon-agent-")
        self.errpath = os.path.join(self.dir, "stderr")
        self.errfile = open(self.errpath, "wb")
        cmd = [AGENT, "--server-name", "mlserver", "--models-dir", str(models_dir),
               "--server-http", f"{HOST}:{server.http}", "--server-grpc", f"{HOST}:{server.grpc}",
               "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--host", HOST,
               "--reconnect-max", "200", *[str(a) for a in args]]
        if scheduler is not None:
            cmd += ["--scheduler-host", scheduler.target]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errfile)
        STARTED.append(self.proc)
        line = sh.procs.first_line(self.proc, 60)
        m = re.fullmatch(r"listening http=(\d+) grpc=(\d+) metrics=(-?\d+)", line.strip())
        if not m:
            self.kill()
            raise AssertionError(f"seldon-agent did not start: {line!r}\n{self.stderr()}")
        self.http = int(m.group(1))
        self.grpc = int(m.group(2))
        self.metrics_port = int(m.group(3))
        self.grpc_target = f"{HOST}:{self.grpc}"

    def stderr(self):
        with open(self.errpath, "rb") as f:
            return f.read().decode(errors="replace")

    def count_log(self, pattern):
        return len(re.findall(pattern, self.stderr()))

    def metrics(self):
        return metrics(self.metrics_port)

    def stop(self):
        rc = sh.procs.sigterm(self.proc, "seldon-agent", self.stderr, self.kill)
        self.proc.stdout.close()
        assert rc == 0, f"seldon-agent exited {rc}\n{self.stderr()}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Pair:
    """A seldon-server, its agent and a fake scheduler, with a folder of model sources."""

    def __init__(self, ctl, tmp, *agent_args):
        self.tmp = tmp
        self.models = tmp / "models"
        self.models.mkdir()
        self.src = tmp / "src"
        self.src.mkdir()
        self.server = Server(self.models, "--no-load-all")
        self.sched = FakeScheduler(ctl)
        self.agent = Agent(self.server, self.models, self.sched, *agent_args)
        self.reg = self.sched.wait_subs(1)

    def source(self, name, settings, folder=None):
        """Writes a model source folder (model-settings.json named name); returns its path."""
        return write_model(self.src, name, settings, folder=folder)

    def stop(self):
        self.agent.stop()
        self.sched.stop()
        self.server.stop()


@pytest.fixture
def pair(ctl, tmp_path):
    p = Pair(ctl, tmp_path)
    yield p
    p.stop()


def add(constant):
    return {"implementation": "builtin.add", "parameters": {"extra": {"constant": constant}}}


def infer_rest(port, model, values, headers=None):
    """POST /v2/models/<model>/infer with one FP32 tensor: (status, doc)."""
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [len(values)],
                       "data": values}]}
    status, _, body = request(port, "POST", f"/v2/models/{model}/infer", body=doc,
                              headers=headers)
    return status, json.loads(body) if body else None
