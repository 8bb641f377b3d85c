"""seldon-router fed by the scheduler (--scheduler-host): routes pushed over
RouteService.Subscribe are served, saved, and kept through the scheduler's
outages and the router's own restarts.

The scheduler here is a fake (fake_scheduler.py: grpcio serving RouteService
from our proto) so that a test pushes exactly the table it needs, stops it and
starts it again on cue. The upstreams are two real seldon-servers; which one
answered is read from their own seldon_model_infer_total counters.
"""
import os
import re
import socket
import subprocess
import tempfile

import numpy as np
import pytest

from conftest import (GUARD, HOST, ROUTER, STARTED, Router, grpc_stub, metric, request,
                      routes_yaml, sh, upstream_of)

grpc = pytest.importorskip("grpc")
pytest.importorskip("grpc_tools")

import fake_scheduler  # noqa: E402  (after the skips: it imports grpc)

INPUT = [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1.0, 2.0, 3.0]}]
OUTAGE = r"scheduler \S+: .*: serving on the \d+ route\(s\) in force; retrying the subscription"


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    """The control-plane stubs, compiled from proto/seldon_control.proto."""
    return fake_scheduler.compile_control(tmp_path_factory.mktemp("control_pb"))


@pytest.fixture
def scheduler(control):
    s = fake_scheduler.FakeScheduler(*control)
    yield s
    s.stop()


class SubRouter(Router):
    """A seldon-router subscribed to a scheduler, with its own state folder."""

    def __init__(self, scheduler_target, state_dir, *args, routes_text=None, log="info"):
        self.dir = tempfile.mkdtemp(prefix="seldon-router-sub-")
        self.state_dir = state_dir
        self.errpath = os.path.join(self.dir, "stderr")
        self.errfile = open(self.errpath, "wb")
        cmd = [ROUTER, "--scheduler-host", scheduler_target, "--state-dir", state_dir,
               "--port", "0", "--metrics-port", "0", "--host", HOST, "--grace", "20000",
               "--resubscribe-max", "300", "--log-level", log, "--name", "test-router"]
        if routes_text is not None:
            self.routes = os.path.join(self.dir, "routes.yaml")
            self.write_routes(routes_text)
            cmd += ["--routes", self.routes]
        self.proc = subprocess.Popen(cmd + [str(a) for a in args], stdout=subprocess.PIPE,
                                     stderr=self.errfile)
        STARTED.append(self.proc)
        line = self._first_line()
        m = re.fullmatch(r"listening port=(\d+) metrics=(-?\d+)", line.strip())
        if not m:
            self.kill()
            raise AssertionError(f"seldon-router did not start: {line!r}\n{self.stderr()}")
        self.port = int(m.group(1))
        self.metrics_port = int(m.group(2))
        self.grpc_target = f"{HOST}:{self.port}"

    @property
    def cache(self):
        return os.path.join(self.state_dir, "routes.yaml")

    def gauge(self, name):
        return metric(self.metrics(), name)

    def wait_metric(self, name, want):
        """Waits until the metric's value is exactly want."""
        def get():
            assert self.proc.poll() is None, self.stderr()
            return metric(self.metrics(), name)
        sh.procs.wait_value(get, lambda got: got == want, GUARD,
                            lambda got: f"{name} is {got}, not {want}\n{self.stderr()}")

    def wait_generation(self, generation):
        self.wait_metric("seldon_router_route_generation", generation)


def infer_count(server, model="identity"):
    return metric(sh.metrics(server.http), "seldon_model_infer_total", model=model)


def infer(router, model="identity"):
    return request(router.port, "POST", f"/v2/models/{model}/infer", body={"inputs": INPUT})


def served_by(router, servers, model="identity"):
    """Sends one request for model through the router; returns the index of the server
    that answered it (from the servers' own counters)."""
    before = [infer_count(s, model) for s in servers]
    status, _, body = infer(router, model)
    assert status == 200, body
    after = [infer_count(s, model) for s in servers]
    moved = [i for i in range(len(servers)) if after[i] != before[i]]
    assert len(moved) == 1 and after[moved[0]] == before[moved[0]] + 1, (before, after)
    return moved[0]


def up(server):
    return upstream_of(server)


def test_help_names_the_flags():
    out = subprocess.run([ROUTER, "--help"], capture_output=True, text=True, timeout=GUARD)
    assert out.returncode == 0
    for flag in ("--scheduler-host", "--routes-cache", "--state-dir", "--resubscribe-max"):
        assert flag in out.stdout, flag
    for bad in ("scheduler:http", "bad host:9002", "[::1:9002", "127.0.0.1:0"):
        out = subprocess.run([ROUTER, "--scheduler-host", bad],
                             capture_output=True, text=True, timeout=GUARD)
        assert out.returncode == 2 and "--scheduler-host: bad value" in out.stderr, out.stderr


def test_pushed_routes_are_served_and_replaced(g, servers, scheduler, tmp_path):
    gen = scheduler.push([("identity", [up(servers[0])]), ("add10", [up(servers[0])])])
    # Several loops: the generation shows only once every loop took the table.
    r = SubRouter(scheduler.target, str(tmp_path / "state"), "--io-threads", "3")
    try:
        r.wait_generation(gen)
        r.wait_metric("seldon_router_scheduler_connected", 1)
        assert scheduler.subscribers == ["test-router"]
        assert served_by(r, servers) == 0
        assert served_by(r, servers, "add10") == 0

        # gRPC takes the same table.
        channel, stub = grpc_stub(g, r.grpc_target)
        try:
            before = infer_count(servers[0])
            req = g.request("identity", {"x": np.array([[1.0, 2.0]], dtype=np.float32)})
            stub.ModelInfer(req, metadata=[("seldon-model", "identity")], timeout=GUARD)
            assert infer_count(servers[0]) == before + 1
        finally:
            channel.close()

        # A new table replaces it: identity moves to the other server, add10 goes away.
        gen = scheduler.push([("identity", [up(servers[1])])])
        r.wait_generation(gen)
        for _ in range(12):  # new connections, spread over the loops
            assert served_by(r, servers) == 1
        status, _, body = infer(r, "add10")
        assert status == 404 and b"no route" in body, body

        samples = r.metrics()
        assert metric(samples, "seldon_router_route_tables_received_total") == 2
        assert metric(samples, "seldon_router_route_tables_rejected_total") == 0
        r.wait_log(rf"route table generation {gen}: 1 route\(s\)")

        # Saved in the routes file format, with its generation.
        with open(r.cache) as f:
            text = f.read()
        assert text.startswith("# seldon-router: routes from the scheduler at ")
        assert f"generation {gen}\n" in text.splitlines(True)[0]
        assert '"identity"' in text and f"{HOST}:{servers[1].http}" in text
        assert "add10" not in text
    finally:
        r.stop()


def test_outage_keeps_serving_then_restart_on_saved_routes_then_resume(servers, scheduler,
                                                                        tmp_path):
    state = str(tmp_path / "state")
    gen = scheduler.push([("identity", [up(servers[0])]), ("add10", [up(servers[1])])])
    r = SubRouter(scheduler.target, state, log="debug")
    r2 = None
    try:
        r.wait_generation(gen)
        r.wait_metric("seldon_router_scheduler_connected", 1)

        # The scheduler goes away: the router says so once and keeps serving.
        scheduler.stop()
        r.wait_metric("seldon_router_scheduler_connected", 0)
        r.wait_log(OUTAGE)
        failures = 0
        for i in range(300):
            status, _, _ = infer(r, "identity" if i % 2 else "add10")
            failures += status != 200
        assert failures == 0
        # Several attempts failed by now (debug lines), yet one info line for the outage.
        r.wait_log(r"scheduler \S+: attempt 3: ")
        assert len(re.findall(OUTAGE, r.stderr())) == 1, r.stderr()
        assert served_by(r, servers) == 0 and served_by(r, servers, "add10") == 1
        r.stop()

        # Restarted while the scheduler is still down: the saved routes are served.
        r2 = SubRouter(scheduler.target, state)
        r2.wait_log(rf"starting on the scheduler's routes saved in \S+ \(generation {gen}\)")
        assert r2.gauge("seldon_router_route_generation") == gen
        assert r2.gauge("seldon_router_scheduler_connected") == 0
        failures = 0
        for i in range(300):
            status, _, _ = infer(r2, "identity" if i % 2 else "add10")
            failures += status != 200
        assert failures == 0
        assert served_by(r2, servers) == 0 and served_by(r2, servers, "add10") == 1
        r2.wait_log(OUTAGE)

        # The scheduler is back: the router subscribes again, and a new table is served.
        scheduler.start()
        r2.wait_metric("seldon_router_scheduler_connected", 1)
        r2.wait_log(r"subscribed again, \d+ attempt\(s\) after the outage began")
        r2.wait_log(rf"route table generation {gen}: 2 route\(s\), unchanged")
        gen = scheduler.push([("identity", [up(servers[1])]), ("mul10", [up(servers[0])])])
        r2.wait_generation(gen)
        assert served_by(r2, servers) == 1
        assert served_by(r2, servers, "mul10") == 0
        assert infer(r2, "add10")[0] == 404
    finally:
        r.kill()
        if r2 is not None:
            r2.stop()


def test_stream_ended_by_the_scheduler_is_resubscribed(servers, scheduler, tmp_path):
    gen = scheduler.push([("identity", [up(servers[0])])])
    r = SubRouter(f"localhost:{scheduler.port}", str(tmp_path / "state"))
    try:
        r.wait_generation(gen)
        scheduler.wait_subscribers(1, GUARD)
        scheduler.end_streams()
        r.wait_log(r"the scheduler ended the subscription \(grpc-status 0\)")
        scheduler.wait_subscribers(2, GUARD)
        r.wait_log(r"subscribed again")
        gen = scheduler.push([("identity", [up(servers[1])])])
        r.wait_generation(gen)
        assert served_by(r, servers) == 1
    finally:
        r.stop()


def test_bad_tables_are_rejected_and_the_old_one_kept(servers, scheduler, tmp_path):
    gen = scheduler.push([("identity", [up(servers[0])])])
    r = SubRouter(scheduler.target, str(tmp_path / "state"))
    try:
        r.wait_generation(gen)
        with open(r.cache) as f:
            saved = f.read()

        # An upstream given by host name: the router resolves no names.
        bad = scheduler.push([("identity", [("localhost:8080", None)])])
        line = r.wait_log(rf".*route table generation {bad} rejected: .*")
        assert 'upstream 0: "localhost:8080": host names are not resolved' in line, line
        assert "the routes in force stay" in line
        r.wait_metric("seldon_router_route_tables_rejected_total", 1)

        # A route named twice.
        bad = scheduler.push([("identity", [up(servers[1])]), ("identity", [up(servers[1])])])
        line = r.wait_log(rf".*route table generation {bad} rejected: .*")
        assert 'duplicate route "identity"' in line, line
        r.wait_metric("seldon_router_route_tables_rejected_total", 2)

        # A retry bound out of range, and a route without upstreams.
        bad = scheduler.push([("identity", [up(servers[1])], -1, 99)])
        line = r.wait_log(rf".*route table generation {bad} rejected: .*")
        assert "retries" in line, line
        bad = scheduler.push([("identity", [])])
        line = r.wait_log(rf".*route table generation {bad} rejected: .*")
        assert 'route "identity" has no upstreams' in line, line
        r.wait_metric("seldon_router_route_tables_rejected_total", 4)

        # Bytes that are no RouteTable at all (a field with a truncated length).
        scheduler.push_raw(b"\x12\x7f\x0a")
        r.wait_log(r"a message of 3 bytes is not a RouteTable: the routes in force stay")
        r.wait_metric("seldon_router_route_tables_rejected_total", 5)

        # The old table still routes, the gauge still names it, the cache still holds it.
        assert served_by(r, servers) == 0
        samples = r.metrics()
        assert metric(samples, "seldon_router_route_generation") == gen
        assert metric(samples, "seldon_router_route_tables_received_total") == 6
        with open(r.cache) as f:
            assert f.read() == saved
        assert r.gauge("seldon_router_scheduler_connected") == 1  # a bad table is no outage

        # And a good table after them is taken.
        gen = scheduler.push([("identity", [up(servers[1])], 5000, 1)])
        r.wait_generation(gen)
        assert served_by(r, servers) == 1
    finally:
        r.stop()


def test_routes_file_starts_until_the_scheduler_speaks(servers, control, tmp_path):
    # Nothing listens where the scheduler should be, and nothing was saved yet.
    s = fake_scheduler.FakeScheduler(*control)
    target = s.target
    s.stop()
    text = routes_yaml([("identity", [up(servers[0])], None)],
                       defaults={"timeoutMs": 7000, "retries": 2})
    state = str(tmp_path / "state")
    r = SubRouter(target, state, routes_text=text)
    try:
        r.wait_log(OUTAGE)
        assert served_by(r, servers) == 0
        assert not os.path.exists(r.cache)

        # The scheduler comes up on that port: its table replaces the file's routes and
        # is built with the file's defaults.
        s.start()
        gen = s.push([("identity", [up(servers[1])])])
        r.wait_generation(gen)
        assert served_by(r, servers) == 1
        with open(r.cache) as f:
            text = f.read()
        assert "timeoutMs: 7000" in text and "retries: 2" in text

        # SIGHUP re-reads the file for its defaults; the scheduler's routes stay.
        r.reload()
        r.wait_log(r"SIGHUP: \S+ reloaded: its defaults apply from the scheduler's next table")
        assert served_by(r, servers) == 1
    finally:
        r.stop()
        s.stop()


def test_scheduler_killed_during_requests_zero_failures(g, servers, tmp_path):
    """SIGKILL on the scheduler (its connection just drops) while REST and gRPC
    requests flow; then a restarted scheduler on the same port is followed again."""
    stubs = tmp_path / "stubs"
    s = fake_scheduler.SchedulerProcess(stubs)
    state = str(tmp_path / "state")
    r = SubRouter(s.target, state)
    channel = None
    try:
        gen = s.push([("identity", [up(servers[0])]), ("add10", [up(servers[1])])], 1)
        r.wait_generation(gen)
        r.wait_metric("seldon_router_scheduler_connected", 1)
        channel, stub = grpc_stub(g, r.grpc_target)
        req = g.request("add10", {"INPUT": np.array([[1, 2, 3]], dtype=np.float32)})

        failures = 0
        for i in range(1000):  # 2,000 requests, REST and gRPC
            if i == 200:
                s.kill()
                r.wait_metric("seldon_router_scheduler_connected", 0)  # the rest: in the outage
            status, _, _ = infer(r, "identity")
            failures += status != 200
            resp = stub.ModelInfer(req, metadata=[("seldon-model", "add10")], timeout=GUARD)
            failures += list(g.outputs(resp)["OUTPUT"][0]) != [11, 12, 13]
        assert failures == 0
        line = r.wait_log(OUTAGE)
        assert "connection lost" in line or "closed" in line or "reset" in line, line

        s = fake_scheduler.SchedulerProcess(stubs, port=s.port)
        gen = s.push([("identity", [up(servers[1])])], 2)
        r.wait_generation(gen)
        r.wait_metric("seldon_router_scheduler_connected", 1)
        assert served_by(r, servers) == 1
        assert infer(r, "add10")[0] == 404
    finally:
        if channel is not None:
            channel.close()
        r.stop()
        s.kill()


def test_routes_cache_flag_and_a_cache_that_does_not_load(servers, scheduler, tmp_path):
    # --routes-cache in a folder that does not exist yet: created, and written there.
    cache = tmp_path / "deep" / "er" / "cache.yaml"
    gen = scheduler.push([("identity", [up(servers[1])])])
    r = SubRouter(scheduler.target, str(tmp_path / "unused"), "--routes-cache", str(cache))
    try:
        r.wait_generation(gen)
        r.wait_log(rf"saved to {re.escape(str(cache))}")
        assert cache.exists() and f"generation {gen}" in cache.read_text()
        assert not os.path.exists(tmp_path / "unused" / "routes.yaml")
    finally:
        r.stop()
    scheduler.stop()

    # The saved file is an ordinary routes file: --routes serves it with no scheduler.
    plain = Router(cache.read_text())
    try:
        assert served_by(plain, servers) == 1
    finally:
        plain.stop()

    # A damaged cache is logged and left aside: the --routes file is served instead.
    cache.write_text("routes:\n- name: identity\n  upstreams: [oops\n")
    text = routes_yaml([("identity", [up(servers[0])], None)])
    r = SubRouter(scheduler.target, str(tmp_path / "unused"), "--routes-cache", str(cache),
                  routes_text=text)
    try:
        line = r.wait_log(r".*routes cache: .*: not used")
        assert str(cache) in line, line
        assert served_by(r, servers) == 0
        assert r.gauge("seldon_router_route_generation") == 0
    finally:
        r.stop()
    scheduler.start()  # for the fixture's own stop


def test_a_server_that_is_no_scheduler_is_one_outage(servers, tmp_path):
    # A seldon-server's gRPC port answers the call with UNIMPLEMENTED, again and again:
    # one info line for the whole outage, the routes file served all along.
    text = routes_yaml([("identity", [up(servers[1])], None)])
    r = SubRouter(f"{HOST}:{servers[0].grpc}", str(tmp_path / "state"), routes_text=text,
                  log="debug")
    try:
        line = r.wait_log(OUTAGE)
        assert "the subscription was refused (grpc-status 12" in line, line
        r.wait_log(r"scheduler \S+: attempt 3: the subscription was refused")
        assert len(re.findall(OUTAGE, r.stderr())) == 1, r.stderr()
        assert "subscribed" not in r.stderr().replace("subscription", "")
        assert r.gauge("seldon_router_scheduler_connected") == 0
        assert served_by(r, servers) == 1
        assert not os.path.exists(r.cache)
    finally:
        r.stop()


def test_a_cache_that_cannot_be_written_is_logged_and_routes_still_served(servers, scheduler,
                                                                           tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    gen = scheduler.push([("identity", [up(servers[0])])])
    r = SubRouter(scheduler.target, str(tmp_path / "state"), "--routes-cache",
                  str(blocker / "routes.yaml"))
    try:
        r.wait_log(r"routes cache: .*: routes will not be saved")
        r.wait_generation(gen)
        line = r.wait_log(r".*routes cache: .*: a restart would not see these routes")
        assert str(blocker) in line, line
        assert served_by(r, servers) == 0
    finally:
        r.stop()


def test_a_scheduler_that_never_answers_is_an_outage(servers, tmp_path):
    # A listener that accepts the connection and never says a word (a hung process):
    # after the answer deadline (10 s) the attempt is given up and counted as an outage.
    lsock = socket.socket()
    lsock.bind((HOST, 0))
    lsock.listen(16)
    text = routes_yaml([("identity", [up(servers[0])], None)])
    r = SubRouter(f"{HOST}:{lsock.getsockname()[1]}", str(tmp_path / "state"),
                  routes_text=text)
    try:
        conn, _ = lsock.accept()  # the router's attempt
        assert served_by(r, servers) == 0  # served meanwhile
        line = r.wait_log(OUTAGE)
        assert "no answer to the subscription in time" in line, line
        assert r.gauge("seldon_router_scheduler_connected") == 0
        assert served_by(r, servers) == 0
        conn.close()
    finally:
        r.stop()
        lsock.close()
