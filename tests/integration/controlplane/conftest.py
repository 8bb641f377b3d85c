"""Helpers for the control-plane integration tests.

A real seldon-scheduler ($SELDON_SCHEDULER) runs on free loopback ports with its
state in a temporary folder. Users' side is the real seldon CLI ($SELDON_CLI).
Agents and routers are played by grpcio clients of proto/seldon_control.proto
(stubs compiled at test time with grpc_tools): a FakeAgent registers a replica,
receives its commands and reports their outcome as seldon-agent would.

Deadlines below only guard against hangs; no assertion depends on time.
"""
import importlib
import importlib.util
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration", "lib"))
import procs  # noqa: E402

SCHEDULER = os.environ.get("SELDON_SCHEDULER") or os.path.join(
    SOURCE, "build", "daemons", "scheduler", "seldon-scheduler")
CLI = os.environ.get("SELDON_CLI") or os.path.join(SOURCE, "build", "daemons", "cli", "seldon")
PROTO_DIR = os.environ.get("SELDON_PROTO_DIR") or os.path.join(SOURCE, "proto")

HOST = "127.0.0.1"
GUARD = 30.0

STARTED = []


def pytest_configure(config):
    procs.require((SCHEDULER, "SELDON_SCHEDULER"), (CLI, "SELDON_CLI"))


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers():
    yield
    procs.kill_all(STARTED)


# --- grpcio stubs of proto/seldon_control.proto ------------------------------------


class Stubs:
    def __init__(self, out):
        proc = subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", "-I", PROTO_DIR, f"--python_out={out}",
             f"--grpc_python_out={out}", os.path.join(PROTO_DIR, "seldon_control.proto")],
            capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        sys.path.insert(0, str(out))
        try:
            self.pb = importlib.import_module("seldon_control_pb2")
            self.rpc = importlib.import_module("seldon_control_pb2_grpc")
        finally:
            sys.path.remove(str(out))
        import grpc
        self.grpc = grpc


@pytest.fixture(scope="session")
def stubs(tmp_path_factory):
    return Stubs(tmp_path_factory.mktemp("control_stubs"))


# --- the scheduler process ----------------------------------------------------------


class Scheduler:
    """A seldon-scheduler process on free loopback ports."""

    def __init__(self, state_dir, *args):
        self.state_dir = str(state_dir)
        self.args = [str(a) for a in args]
        self.errfile = tempfile.NamedTemporaryFile(prefix="seldon-scheduler-", suffix=".stderr",
                                                   delete=False)
        self.start()

    def start(self, ports=(0, 0, 0, 0)):
        cmd = [SCHEDULER, "--state-dir", self.state_dir, "--host", HOST,
               "--client-port", str(ports[0]), "--agent-port", str(ports[1]),
               "--route-port", str(ports[2]), "--metrics-port", str(ports[3]), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errfile)
        STARTED.append(self.proc)
        line = procs.first_line(self.proc, 60)
        m = re.fullmatch(r"listening client=(\d+) agent=(\d+) route=(\d+) metrics=(-?\d+)",
                         line.strip())
        if not m:
            self.kill()
            raise AssertionError(f"seldon-scheduler did not start: {line!r}\n{self.stderr()}")
        self.client, self.agent, self.route, self.metrics = (int(x) for x in m.groups())
        self.client_target = f"{HOST}:{self.client}"
        self.agent_target = f"{HOST}:{self.agent}"
        self.route_target = f"{HOST}:{self.route}"

    def stderr(self):
        with open(self.errfile.name, "rb") as f:
            text = f.read().decode(errors="replace")
        return "--- seldon-scheduler stderr ---\n" + text[-20000:]

    def stop(self):
        """SIGTERM, then asserts a clean exit (a sanitizer report makes it non-zero)."""
        rc = procs.sigterm(self.proc, "seldon-scheduler", self.stderr, self.kill)
        self.proc.stdout.close()
        assert rc == 0, f"seldon-scheduler exited {rc}\n{self.stderr()}"

    def restart(self):
        """Stops and starts again on the same ports (agents and routers come back there)."""
        self.stop()
        self.start((self.client, self.agent, self.route, self.metrics))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()

    def scrape(self):
        with urllib.request.urlopen(f"http://{HOST}:{self.metrics}/metrics", timeout=GUARD) as r:
            return r.read().decode()

    def metric(self, name, **labels):
        """The value of one series, or None."""
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in self.scrape().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            if key == name or key == f"{name}{{{want}}}":
                return float(value)
        return None


@pytest.fixture
def scheduler(tmp_path):
    s = Scheduler(tmp_path / "state")
    yield s
    if s.proc.poll() is None:
        s.stop()


# --- the CLI -------------------------------------------------------------------------


class Result:
    def __init__(self, proc):
        self.code = proc.returncode
        self.out = proc.stdout.decode(errors="replace")
        self.err = proc.stderr.decode(errors="replace")

    def json(self):
        import json
        return json.loads(self.out)

    def jsons(self):
        import json
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]

    def __repr__(self):
        return f"exit {self.code}\nstdout: {self.out}\nstderr: {self.err}"


def cli(*args, scheduler=None, env=None, infer=None):
    """Runs the seldon CLI; returns its exit code, stdout and stderr."""
    cmd = [CLI]
    if scheduler is not None:
        cmd += ["--scheduler-host", scheduler.client_target]
    if infer is not None:
        cmd += ["--inference-host", infer]
    cmd += [str(a) for a in args]
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(cmd, capture_output=True, timeout=120, env=full_env)
    return Result(proc)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def model_yaml(name, requirements=(), memory=None, replicas=None, server=None,
               uri="gs://seldon-models/scv2/samples/mlserver_1.3.5/iris-sklearn"):
    lines = ["apiVersion: mlops.seldon.io/v1alpha1", "kind: Model", "metadata:",
             f"  name: {name}", "spec:", f'  storageUri: "{uri}"']
    if requirements:
        lines.append("  requirements:")
        lines += [f"  - {r}" for r in requirements]
    if memory:
        lines.append(f"  memory: {memory}")
    if replicas is not None:
        lines.append(f"  replicas: {replicas}")
    if server:
        lines.append(f"  server: {server}")
    return "\n".join(lines) + "\n"


# --- a fake agent ---------------------------------------------------------------------


class FakeAgent:
    """Plays seldon-agent for one server replica: AgentService.Subscribe and Report."""

    def __init__(self, stubs, sched, server, index, capabilities, memory, http, grpc_addr,
                 loaded=(), overcommit=0):
        self.s = stubs
        self.server, self.index = server, index
        self.http, self.grpc_addr = http, grpc_addr
        self.commands = queue.Queue()
        self.channel = stubs.grpc.insecure_channel(sched.agent_target)
        self.stub = stubs.rpc.AgentServiceStub(self.channel)
        req = stubs.pb.AgentSubscribeRequest(
            replica=stubs.pb.ReplicaInfo(server=server, index=index, http=http, grpc=grpc_addr,
                                         capabilities=list(capabilities), memory_bytes=memory,
                                         overcommit_percent=overcommit),
            loaded=[stubs.pb.LoadedModel(name=n, version=v) for n, v in loaded])
        self.call = self.stub.Subscribe(req)
        # The scheduler answers with headers once the replica is registered.
        self.call.initial_metadata()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        try:
            for cmd in self.call:
                self.commands.put(cmd)
        except self.s.grpc.RpcError as e:
            self.commands.put(e)

    def next_command(self, guard=GUARD):
        try:
            c = self.commands.get(timeout=guard)
        except queue.Empty:
            raise AssertionError(f"agent {self.server}/{self.index}: no command came")
        if isinstance(c, Exception):
            raise AssertionError(f"agent {self.server}/{self.index}: stream ended: {c}")
        return c

    def pending(self):
        """Commands received and not taken yet."""
        out = []
        while True:
            try:
                c = self.commands.get_nowait()
            except queue.Empty:
                return out
            if not isinstance(c, Exception):
                out.append(c)

    def report(self, cmd, type_name, reason=""):
        ev = self.s.pb.AgentEvent(server=self.server, index=self.index, command_id=cmd.id,
                                  model=cmd.model, version=cmd.version,
                                  type=self.s.pb.AgentEvent.Type.Value(type_name), reason=reason)
        self.stub.Report(ev, timeout=GUARD)

    def close(self):
        self.call.cancel()
        self.channel.close()


class RouteWatcher:
    """Plays a router: RouteService.Subscribe, keeping every table received."""

    def __init__(self, stubs, sched, name="test-router"):
        self.s = stubs
        self.tables = queue.Queue()
        self.channel = stubs.grpc.insecure_channel(sched.route_target)
        stub = stubs.rpc.RouteServiceStub(self.channel)
        self.call = stub.Subscribe(stubs.pb.RouteSubscribeRequest(router=name))
        self.last = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        try:
            for t in self.call:
                self.tables.put(t)
        except self.s.grpc.RpcError as e:
            self.tables.put(e)

    def next_table(self, guard=GUARD):
        t = self.tables.get(timeout=guard)
        if isinstance(t, Exception):
            raise AssertionError(f"route stream ended: {t}")
        self.last = t
        return t

    def wait_for(self, pred, guard=GUARD):
        """The first table (the last one seen included) for which pred holds."""
        deadline = time.monotonic() + guard
        if self.last is not None and pred(self.last):
            return self.last
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no route table matched; last: {self.last}"
            try:
                t = self.next_table(left)
            except queue.Empty:
                continue
            if pred(t):
                return t

    def close(self):
        self.call.cancel()
        self.channel.close()


def routes_of(table):
    """{route name: [(http, grpc), ...]}"""
    return {r.name: [(u.http, u.grpc) for u in r.upstreams] for r in table.routes}


def wait_status(sched, model, state, guard=GUARD):
    """Polls `seldon model status` until the newest version is in state; returns the JSON."""
    def reached(r):
        if r.code != 0:
            return False
        doc = r.json()
        return doc["versions"] and doc["versions"][0]["state"]["state"] == state
    r = procs.wait_value(lambda: cli("model", "status", model, scheduler=sched), reached,
                         guard, lambda r: f"{model} never reached {state}: {r}", interval=0.05)
    return r.json()
