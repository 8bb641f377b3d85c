"""seldon-router alone, with experiments in its routes file, against small HTTP upstreams
that record what they receive: the header the upstream is given (seldon-internal-model),
x-seldon-route values accumulating across hops, stickiness, and a mirror that never
answers: the callers are answered all the same (a copy never holds a caller up).
"""
import http.server
import json
import os
import sys
import threading
import urllib.request

import pytest

from conftest import GUARD, HOST, SOURCE

sys.path.insert(0, os.path.join(SOURCE, "tests", "integration", "lib"))
import cluster  # noqa: E402
import procs  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(cluster.ROUTER), reason="needs seldon-router")


class Upstream:
    """An HTTP/1.1 upstream answering {"who": name}; route: its own x-seldon-route, or None.
    hang: holds every request until release(), then answers."""

    def __init__(self, name, route=None, hang=False):
        self.name, self.route, self.hang = name, route, hang
        self.fail = False  # answer 503 (a replica going away)
        self.seen = []  # (path, {header: value}, body)
        self.lock = threading.Lock()
        self.gate = threading.Event()
        up = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with up.lock:
                    up.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()},
                                    body))
                if up.hang:
                    up.gate.wait(GUARD * 4)
                out = json.dumps({"who": up.name}).encode()
                self.send_response(503 if up.fail else 200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                if up.route:
                    self.send_header("x-seldon-route", up.route)
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer((HOST, 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return len(self.seen)

    def release(self):
        self.gate.set()

    def close(self):
        self.release()
        self.srv.shutdown()
        self.srv.server_close()


def post(port, path, headers=()):
    req = urllib.request.Request(f"http://{HOST}:{port}{path}", data=b'{"inputs":[]}',
                                 headers={"content-type": "application/json", **dict(headers)})
    with urllib.request.urlopen(req, timeout=GUARD) as r:
        return json.loads(r.read()), r.headers.get("x-seldon-route")


@pytest.fixture
def setup(tmp_path):
    a = Upstream("a", route=":inner_1:")
    b = Upstream("b")
    mirror = Upstream("mirror", hang=True)
    (tmp_path / "routes.yaml").write_text(f"""routes:
- name: m
  candidates: [{{name: m, weight: 1}}, {{name: b, weight: 1}}]
  mirror: {{name: mir, percent: 100}}
  upstreams: [{{http: "{HOST}:{a.port}", version: 3}}]
- name: b
  upstreams: [{{http: "{HOST}:{b.port}", version: 1}}]
- name: mir
  upstreams: [{{http: "{HOST}:{mirror.port}", version: 7}}]
""")
    # --upstream-conns 8: at most 8 / 4 = 2 mirror copies in flight on the loop
    router = cluster.Daemon("router", [cluster.ROUTER, "--routes", str(tmp_path / "routes.yaml"),
                                       "--port", "0", "--metrics-port", "0", "--host", HOST,
                                       "--io-threads", "1", "--upstream-conns", "8"])
    yield router, a, b, mirror
    mirror.release()
    router.stop()
    for u in (a, b, mirror):
        u.close()


def test_split_headers_accumulate_and_a_hanging_mirror_holds_nobody(setup):
    router, a, b, mirror = setup
    port = router.ports["port"]
    seen = {}
    for _ in range(40):
        body, route = post(port, "/v2/models/m/infer")
        seen[body["who"]] = seen.get(body["who"], 0) + 1
        # the upstream's own value first, ours after it
        assert route == (":inner_1: :m_3:" if body["who"] == "a" else ":b_1:"), route
    assert set(seen) == {"a", "b"}, seen
    # Each upstream was told which model version serves the request.
    assert {h["seldon-internal-model"] for _, h, _ in a.seen} == {"m_3"}
    assert {h["seldon-internal-model"] for _, h, _ in b.seen} == {"b_1"}
    assert {h["seldon-model"] for _, h, _ in b.seen} == {"m"}  # the client's route, as sent
    # The mirror holds its copies unanswered: two of them are in flight (the bound), the
    # others were not sent, and every caller was answered all the same.
    procs.wait_until(lambda: mirror.count() == 2, GUARD,
                     lambda: f"{mirror.count()} copies\n{router.stderr()}")
    assert router.metric("seldon_router_mirrored_total", route="mir") == 2
    assert {h["seldon-internal-model"] for _, h, _ in mirror.seen} == {"mir_7"}
    assert {(p, body) for p, _, body in mirror.seen} == {("/v2/models/m/infer", b'{"inputs":[]}')}
    # Once the mirror answers, copies flow again (up to 2 at a time), and each one the
    # router sent arrives.
    mirror.release()
    procs.wait_until(lambda: router.metric("seldon_router_requests_total", route="mir") == 2,
                     GUARD, router.stderr)
    for _ in range(10):
        post(port, "/v2/models/m/infer")
    sent = lambda: router.metric("seldon_router_mirrored_total", route="mir")
    procs.wait_until(lambda: mirror.count() == sent(), GUARD,
                     lambda: f"{mirror.count()} copies of {sent()}\n{router.stderr()}")
    assert 2 < mirror.count() <= 12, mirror.count()
    # Sticky: a value naming a candidate, anywhere among accumulated ones, pins it.
    for value, who in ((":b_1:", "b"), (":x_2: :m_3:", "a"), (":m:", "a")):
        for _ in range(10):
            assert post(port, "/v2/models/m/infer", [("x-seldon-route", value)])[0]["who"] == who
    # A plain route is not split, whatever the header says.
    for _ in range(5):
        assert post(port, "/v2/models/b/infer", [("x-seldon-route", ":m_3:")]) == (
            {"who": "b"}, ":b_1:")


def test_sticky_version_during_a_rollout(tmp_path):
    """A route serving two versions (a rollout: the scheduler lists both versions' replicas)
    keeps a request whose x-seldon-route names one version on that version's upstreams,
    directly or through an experiment's candidate; a version no longer served pins nothing
    (the request goes to the route, as without the header)."""
    old1, old2, new, other = Upstream("old1"), Upstream("old2"), Upstream("new"), Upstream("c")
    (tmp_path / "routes.yaml").write_text(f"""routes:
- name: r
  upstreams:
  - {{http: "{HOST}:{old1.port}", version: 1}}
  - {{http: "{HOST}:{old2.port}", version: 1}}
  - {{http: "{HOST}:{new.port}", version: 2}}
- name: c
  upstreams: [{{http: "{HOST}:{other.port}", version: 1}}]
- name: e.experiment
  candidates: [{{name: r, weight: 1}}, {{name: c, weight: 1}}]
""")
    router = cluster.Daemon("router", [cluster.ROUTER, "--routes", str(tmp_path / "routes.yaml"),
                                       "--port", "0", "--metrics-port", "0", "--host", HOST,
                                       "--io-threads", "1"])
    try:
        port = router.ports["port"]

        def whos(path, value, n=30):
            out = {}
            for _ in range(n):
                body, route = post(port, path, [("x-seldon-route", value)] if value else [])
                out[(body["who"], route)] = out.get((body["who"], route), 0) + 1
            return out

        # Without the header both versions serve (the rollout's split by replica counts).
        seen = whos("/v2/models/r/infer", None, 60)
        assert {w for w, _ in seen} == {"old1", "old2", "new"}, seen
        # Pinned: the version named, its answer naming it.
        assert whos("/v2/models/r/infer", ":r_2:") == {("new", ":r_2:"): 30}
        seen = whos("/v2/models/r/infer", ":x_5: :r_1:")
        assert set(seen) <= {("old1", ":r_1:"), ("old2", ":r_1:")} and len(seen) == 2, seen
        # Through an experiment: the candidate and its version.
        post_e = [("seldon-model", "e.experiment"), ("x-seldon-route", ":r_2:")]
        for _ in range(10):
            assert post(port, "/v2/models/x/infer", post_e) == ({"who": "new"}, ":r_2:")
        # A version gone from the route: the route serves it, any version.
        seen = whos("/v2/models/r/infer", ":r_7:", 60)
        assert {w for w, _ in seen} == {"old1", "old2", "new"}, seen
        # The pinned upstream fails: the request is retried on the other version.
        new.fail = True
        for _ in range(10):
            body, route = post(port, "/v2/models/r/infer", [("x-seldon-route", ":r_2:")])
            assert body["who"] in ("old1", "old2") and route == ":r_1:", (body, route)
    finally:
        router.stop()
        for u in (old1, old2, new, other):
            u.close()
