"""Real daemons of the control plane for the integration suites that start a whole system:
seldon-agent + seldon-server pairs (server replicas) registered with a seldon-scheduler,
and seldon-router fed by the scheduler's RouteService.

The scheduler process itself is tests/integration/controlplane/conftest.py's Scheduler.
Every process started here is in STARTED; kill_leftovers() ends those still running
(call it from a session fixture). Deadlines only guard against hangs.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, HERE)
import procs  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "server_helpers", os.path.join(SOURCE, "tests", "integration", "server", "conftest.py"))
sh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sh)

AGENT = os.environ.get("SELDON_AGENT") or os.path.join(
    SOURCE, "build", "daemons", "agent", "seldon-agent")
ROUTER = os.environ.get("SELDON_ROUTER") or os.path.join(
    SOURCE, "build", "daemons", "router", "seldon-router")

HOST = "127.0.0.1"
GUARD = 30.0

STARTED = []


def kill_leftovers():
    """SIGKILLs every process started here (daemons and servers) that still runs."""
    procs.kill_all(STARTED + sh.STARTED)


def router_subscribes():
    """Whether ROUTER exists and takes --scheduler-host."""
    if not os.path.exists(ROUTER):
        return False
    out = subprocess.run([ROUTER, "--help"], capture_output=True, timeout=30).stdout.decode()
    return "--scheduler-host" in out


class Daemon:
    """A daemon that prints 'listening k=v ...' once serving; stderr kept in a file."""

    def __init__(self, name, cmd):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"{name}-")
        self.errpath = os.path.join(self.dir, "stderr")
        self.errfile = open(self.errpath, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errfile)
        STARTED.append(self.proc)
        line = procs.first_line(self.proc, 60)
        if not line.startswith("listening "):
            self.kill()
            raise AssertionError(f"{name} did not start: {line!r}\n{self.stderr()}")
        self.ports = {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", line)}

    def text(self):
        with open(self.errpath, "rb") as f:
            return f.read().decode(errors="replace")

    def stderr(self):
        return f"--- {self.name} stderr ---\n" + self.text()[-20000:]

    def count(self, text):
        return self.text().count(text)

    def wait_log(self, text, n=1, guard=GUARD):
        """Waits until text appears n times in the daemon's stderr."""
        def logged():
            if self.count(text) >= n:
                return True
            assert self.proc.poll() is None, f"{self.name} exited\n{self.stderr()}"
            return False
        procs.wait_until(logged, guard, lambda: f"{text!r} x{n} never logged\n{self.stderr()}",
                         interval=0.02)

    def metrics(self):
        """[(name, {label: value}, value)] from its /metrics (--metrics-port 0)."""
        return sh.metrics(self.ports["metrics"])

    def metric(self, name, **labels):
        """The sum of the series of name whose labels include labels."""
        return sh.metric(self.metrics(), name, **labels)

    def stop(self):
        rc = procs.sigterm(self.proc, self.name, self.stderr, self.kill)
        self.proc.stdout.close()
        self.errfile.close()
        assert rc == 0, f"{self.name} exited {rc}\n{self.stderr()}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.errfile.close()


class Replica:
    """A seldon-server and its seldon-agent, registered with the scheduler as replica
    (server_name, index). extra: more agent flags (--overcommit-percent, --rclone-config)."""

    def __init__(self, tmp, sched, server_name, capabilities, memory, index=0, extra=(),
                 metrics=False):
        self.name, self.index = server_name, index
        self.killed = False
        self.models = tmp / f"{server_name}-{index}-models"
        self.models.mkdir()
        self.server = sh.Server(self.models, "--no-load-all")
        self.agent = Daemon(f"agent-{server_name}-{index}", [
            AGENT, "--server-name", server_name, "--replica-index", str(index),
            "--capabilities", ",".join(capabilities),
            "--memory", memory, "--models-dir", str(self.models),
            "--server-http", f"{HOST}:{self.server.http}",
            "--server-grpc", f"{HOST}:{self.server.grpc}",
            "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0" if metrics else "-1",
            "--host", HOST, "--advertise-host", HOST, "--scheduler-host", sched.agent_target,
            "--reconnect-max", "200", *[str(a) for a in extra]])

    def loads(self):
        """Models the agent loaded on its server (first loads and reloads)."""
        return self.agent.count("loaded on the server")

    def server_loads(self):
        """RepositoryModelLoad calls the seldon-server answered OK (its own counter)."""
        return sh.metric(sh.metrics(self.server.http), "seldon_server_requests_total",
                         endpoint="repository_load", code="0")

    def kill(self):
        """SIGKILL of the agent and its server: the replica is gone without a word."""
        self.killed = True
        self.agent.kill()
        self.server.kill()

    def stop(self):
        """SIGTERM to both, asserting clean exits (nothing to do after kill())."""
        if not self.killed:
            self.agent.stop()
            self.server.stop()


def model_source(tmp, name, constant):
    """A builtin.add model folder (its answers are the input plus constant); its path."""
    path = tmp / "src" / name
    path.mkdir(parents=True)
    (path / "model-settings.json").write_text(json.dumps({
        "name": name, "implementation": "builtin.add",
        "parameters": {"extra": {"constant": constant}}}))
    return str(path)


def start_router(tmp_path, scheduler, metrics=False):
    """seldon-router subscribed to the scheduler's routes, on a free port ('port')."""
    return Daemon("router", [ROUTER, "--scheduler-host", scheduler.route_target,
                             "--state-dir", str(tmp_path / "router"), "--port", "0",
                             "--metrics-port", "0" if metrics else "-1", "--host", HOST,
                             "--io-threads", "1", "--resubscribe-max", "200"])


def until(action, done, daemon, guard=GUARD):
    """Repeats action until done(result) and returns that result (the router takes new
    tables as they come); on the guard, fails with the daemon's stderr."""
    return procs.wait_value(action, done, guard, lambda r: f"{r}\n{daemon.stderr()}",
                            interval=0.02)
