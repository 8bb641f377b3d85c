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
                self.send_response(200)
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
