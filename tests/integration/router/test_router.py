"""seldon-router in front of two seldon-servers: routing, both protocols on one
port, balancing, failover, timeouts, large bodies, reloads and shutdown."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from conftest import (GUARD, HOST, ROUTER, Router, grpc_stub, metric, request, routes_yaml, sh,
                      upstream_of)

wait_until = sh.procs.wait_until
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
INPUT = [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1.0, 2.0, 3.0]}]


def infer_rest(port, model, headers=None, path_model=None, inputs=INPUT):
    path = f"/v2/models/{path_model or model}/infer"
    status, hdrs, body = request(port, "POST", path, body={"inputs": inputs},
                                 headers=headers)
    return status, hdrs, body


def infer_count(server, model):
    return metric(sh.metrics(server.http), "seldon_model_infer_total", model=model)


# --- routing ------------------------------------------------------------------


def test_help_and_version():
    out = subprocess.run([ROUTER, "--help"], capture_output=True, text=True, timeout=GUARD)
    assert out.returncode == 0 and "--routes" in out.stdout and "SIGHUP" in out.stdout
    out = subprocess.run([ROUTER, "--version"], capture_output=True, text=True, timeout=GUARD)
    assert out.returncode == 0 and out.stdout.startswith("seldon-router ")
    out = subprocess.run([ROUTER], capture_output=True, text=True, timeout=GUARD)
    assert out.returncode == 2 and "--routes is required" in out.stderr


def test_route_by_path(router):
    status, _, body = infer_rest(router.port, "add10")
    assert status == 200, body
    doc = json.loads(body)
    assert doc["model_name"] == "add10"
    assert doc["outputs"][0]["data"] == [11.0, 12.0, 13.0]


def test_route_by_header_wins_over_path(router):
    # The header picks the route; the upstream still serves what the path names.
    status, _, body = infer_rest(router.port, "mul10", headers={"Seldon-Model": "mul10"},
                                 path_model="mul10")
    assert status == 200 and json.loads(body)["outputs"][0]["data"] == [10.0, 20.0, 30.0]
    # A route that exists only by header: the path's model has no route of its own.
    status, _, body = request(router.port, "POST", "/v2/models/unrouted/infer",
                              body={"inputs": INPUT}, headers={"seldon-model": "identity"})
    # identity's upstream answers for the path's model, which it does not serve.
    assert status == 404 and b"unrouted" in body, body


def test_pipeline_path_gives_pipeline_route(router):
    # /v2/pipelines/cond/... is routed as cond.pipeline; the server knows no such path.
    status, hdrs, body = request(router.port, "POST", "/v2/pipelines/cond/infer",
                                 body={"inputs": INPUT})
    assert "x-request-id" in hdrs  # the upstream answered, through the router
    assert status == 404, body


def test_unknown_route_is_404_with_oip_error(router):
    status, hdrs, body = infer_rest(router.port, "nosuchmodel")
    sh.assert_error(status, hdrs, body, 404, "nosuchmodel")
    status, hdrs, body = request(router.port, "GET", "/metrics")
    sh.assert_error(status, hdrs, body, 404, "seldon-model")


def test_request_id_created_and_kept(router):
    status, hdrs, _ = infer_rest(router.port, "identity")
    assert status == 200 and re.fullmatch(UUID, hdrs["x-request-id"]), hdrs
    status, hdrs, _ = infer_rest(router.port, "identity", headers={"X-Request-Id": "abc-123"})
    assert status == 200 and hdrs["x-request-id"] == "abc-123", hdrs


def test_binary_extension_passes_through(router):
    x = np.arange(3 * 1000, dtype=np.float32).reshape(3, 1000)
    doc = {"inputs": [{"name": "x"}], "outputs": [{"name": "x",
                                                     "parameters": {"binary_data": True}}]}
    body, headers = sh.binary_body(doc, {"x": x})
    status, hdrs, resp = request(router.port, "POST", "/v2/models/identity/infer", body=body,
                                 headers=headers)
    assert status == 200, resp
    _, out, binary = sh.split_binary(hdrs, resp)
    assert binary == ["x"]
    np.testing.assert_array_equal(out["x"], x)


def test_chunked_request_body(router):
    body = json.dumps({"inputs": INPUT}).encode()
    conn = http.client.HTTPConnection(HOST, router.port, timeout=GUARD)
    try:
        conn.putrequest("POST", "/v2/models/add20/infer")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Content-Type", "application/json")
        conn.endheaders()
        for i in range(0, len(body), 7):
            piece = body[i:i + 7]
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["outputs"][0]["data"] == [21.0, 22.0, 23.0]
    finally:
        conn.close()


def test_expect_100_continue(router):
    # The router answers the 100 itself and forwards the body; the upstream never waits.
    body = json.dumps({"inputs": INPUT}).encode()
    with socket.create_connection((HOST, router.port), timeout=GUARD) as s:
        s.sendall(b"POST /v2/models/add10/infer HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        assert data.startswith(b"HTTP/1.1 100"), data
        s.sendall(body)
        data = data.split(b"\r\n\r\n", 1)[1]
        while b"\r\n\r\n" not in data or not data.endswith(b"}"):
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["outputs"][0]["data"] == [11.0, 12.0,
                                                                                  13.0]


def test_keep_alive_many_requests_one_connection(router):
    conn = http.client.HTTPConnection(HOST, router.port, timeout=GUARD)
    try:
        for i in range(50):
            conn.request("POST", "/v2/models/identity/infer",
                         body=json.dumps({"id": f"r{i}", "inputs": INPUT}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200
            assert json.loads(resp.read())["id"] == f"r{i}"
    finally:
        conn.close()


# --- gRPC on the same port ----------------------------------------------------------


def test_grpc_same_port(g, router):
    channel, stub = grpc_stub(g, router.grpc_target)
    try:
        req = g.request("add10", {"INPUT": np.array([[1, 2, 3]], dtype=np.float32)})
        resp, call = stub.ModelInfer.with_call(req, metadata=[("seldon-model", "add10")],
                                               timeout=GUARD)
        assert resp.model_name == "add10"
        np.testing.assert_array_equal(g.outputs(resp)["OUTPUT"], [[11, 12, 13]])
        md = dict(call.initial_metadata())
        assert re.fullmatch(UUID, md["x-request-id"]), md
        # A raw-contents request, and the request id the client chose.
        req = g.request("identity", {"x": np.arange(8, dtype=np.int64)}, raw=True)
        resp, call = stub.ModelInfer.with_call(
            req, metadata=[("seldon-model", "identity"), ("x-request-id", "grpc-7")],
            timeout=GUARD)
        np.testing.assert_array_equal(g.outputs(resp)["x"], np.arange(8))
        assert dict(call.initial_metadata())["x-request-id"] == "grpc-7"
        # The same port still speaks REST.
        assert infer_rest(router.port, "identity")[0] == 200
        live = stub.ServerLive(g.pb2.ServerLiveRequest(), metadata=[("seldon-model", "identity")],
                               timeout=GUARD)
        assert live.live
    finally:
        channel.close()


def test_grpc_stream_through_router(g, router):
    channel, stub = grpc_stub(g, router.grpc_target)
    try:
        reqs = [g.request("add10", {"INPUT": np.array([[i]], dtype=np.float32)}, id=f"s{i}")
                for i in range(20)]
        got = list(stub.ModelStreamInfer(iter(reqs), metadata=[("seldon-model", "add10")],
                                         timeout=GUARD))
        assert [r.infer_response.id for r in got] == [f"s{i}" for i in range(20)]
        assert [float(g.outputs(r.infer_response)["OUTPUT"][0][0]) for r in got] == \
            [10.0 + i for i in range(20)]
    finally:
        channel.close()


def test_grpc_errors(g, router):
    channel, stub = grpc_stub(g, router.grpc_target)
    req = g.request("identity", {"x": np.array([1.0], dtype=np.float32)})
    try:
        with pytest.raises(g.grpc.RpcError) as e:
            stub.ModelInfer(req, timeout=GUARD)
        assert e.value.code() == g.grpc.StatusCode.INVALID_ARGUMENT
        assert "seldon-model" in e.value.details()
        with pytest.raises(g.grpc.RpcError) as e:
            stub.ModelInfer(req, metadata=[("seldon-model", "nosuchmodel")], timeout=GUARD)
        assert e.value.code() == g.grpc.StatusCode.NOT_FOUND
        assert "nosuchmodel" in e.value.details()
        # An upstream error passes through with its status and message.
        bad = g.request("nosuchmodel", {"x": np.array([1.0], dtype=np.float32)})
        with pytest.raises(g.grpc.RpcError) as e:
            stub.ModelInfer(bad, metadata=[("seldon-model", "identity")], timeout=GUARD)
        assert e.value.code() == g.grpc.StatusCode.NOT_FOUND
        assert "nosuchmodel" in e.value.details()
    finally:
        channel.close()


# --- balancing and failover ------------------------------------------------------------


def test_balancing_roughly_even(router, servers):
    # One request at a time: every pick is a tie on in-flight counts, broken at random,
    # so the split is a fair coin's (0.35..0.65 is beyond 6 standard deviations at 400).
    # Under concurrency least-request favours the faster server, as it should.
    before = [infer_count(s, "add20") for s in servers]
    n = 400
    results = [infer_rest(router.port, "add20")[0] for _ in range(n)]
    assert results.count(200) == n
    after = [infer_count(s, "add20") for s in servers]
    share = [(a - b) / n for a, b in zip(after, before)]
    assert sum(after) - sum(before) == n
    assert all(0.35 <= s <= 0.65 for s in share), share


def test_one_server_killed_zero_failures(g, tmp_path):
    sh.write_samples(tmp_path)
    a, b = sh.Server(tmp_path), sh.Server(tmp_path)
    r = Router(routes_yaml([("identity", [upstream_of(a), upstream_of(b)], None)]))
    total, kill_at = 2400, 400
    done = []
    lock = threading.Lock()
    killed = threading.Event()

    def one(i):
        status, _, body = infer_rest(r.port, "identity", inputs=[
            {"name": "x", "datatype": "INT64", "shape": [1], "data": [i]}])
        ok = status == 200 and json.loads(body)["outputs"][0]["data"] == [i]
        with lock:
            done.append(ok)
            if len(done) == kill_at:
                b.kill()  # SIGKILL: connections reset, in-flight requests lost upstream
                killed.set()
        return ok

    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, range(total)))
        assert killed.is_set()
        assert results.count(True) == total, f"{results.count(False)} failed of {total}"
        # gRPC after the kill: the dead upstream is skipped (retried or ejected).
        channel, stub = grpc_stub(g, r.grpc_target)
        try:
            for i in range(200):
                req = g.request("identity", {"x": np.array([i], dtype=np.int64)})
                resp = stub.ModelInfer(req, metadata=[("seldon-model", "identity")],
                                       timeout=GUARD)
                assert g.outputs(resp)["x"][0] == i
        finally:
            channel.close()
        samples = r.metrics()
        assert metric(samples, "seldon_router_retries_total", route="identity") >= 1
        assert metric(samples, "seldon_router_ejections_total") >= 1
        assert metric(samples, "seldon_router_requests_total", route="identity",
                      code="200") == total
    finally:
        r.stop()
        a.stop()


def test_connect_refused_upstream_is_retried(servers):
    with socket.socket() as s:  # a port nobody listens on
        s.bind((HOST, 0))
        dead = f"{HOST}:{s.getsockname()[1]}"
    ups = [(dead, dead), upstream_of(servers[0])]
    r = Router(routes_yaml([("identity", ups, None)]))
    try:
        for _ in range(30):
            assert infer_rest(r.port, "identity")[0] == 200
        none = Router(routes_yaml([("identity", [(dead, dead)], None)]))
        try:
            status, hdrs, body = infer_rest(none.port, "identity")
            sh.assert_error(status, hdrs, body, 503)
        finally:
            none.stop()
    finally:
        r.stop()


# --- misbehaving upstreams ----------------------------------------------------------


class Upstream:
    """An HTTP/1.1 upstream on cue: hold requests until released, echo headers."""

    def __init__(self):
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.seen = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                outer.seen.append(dict((k.lower(), v) for k, v in self.headers.items()))
                outer.arrived.set()
                if "hold" in self.path:
                    outer.release.wait(GUARD)
                answer = json.dumps({"got": len(body)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Upstream-Echo", self.headers.get("X-Custom", ""))
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_headers_pass_both_ways():
    up = Upstream()
    r = Router(routes_yaml([("echo", [(f"{HOST}:{up.port}", None)], None)]))
    try:
        status, hdrs, body = request(r.port, "POST", "/v2/models/echo/infer", body=b"abc",
                                     headers={"X-Custom": "hello", "X-Request-Id": "rid-1"})
        assert status == 200 and json.loads(body) == {"got": 3}
        assert hdrs["x-upstream-echo"] == "hello"
        assert hdrs["x-request-id"] == "rid-1"
        seen = up.seen[-1]
        assert seen["x-custom"] == "hello" and seen["x-request-id"] == "rid-1"
        assert seen["seldon-model"] == "echo"  # derived from the path, passed on
        # No header: one is made up, sent upstream and returned.
        status, hdrs, _ = request(r.port, "POST", "/v2/models/echo/infer", body=b"x")
        assert up.seen[-1]["x-request-id"] == hdrs["x-request-id"]
    finally:
        r.stop()
        up.close()


def test_route_timeout_rest_504():
    up = Upstream()
    r = Router(routes_yaml([("slowpoke", [(f"{HOST}:{up.port}", None)], {"timeoutMs": 300})]))
    try:
        status, hdrs, body = request(r.port, "POST", "/v2/models/slowpoke/hold/infer",
                                     body=b"{}")
        sh.assert_error(status, hdrs, body, 504, "timeout")
        assert metric(r.metrics(), "seldon_router_requests_total", route="slowpoke",
                      code="504") == 1
    finally:
        r.stop()
        up.close()


def test_route_timeout_grpc_deadline_exceeded(g):
    release = threading.Event()
    server = g.grpc.server(ThreadPoolExecutor(4))

    def hold(request_bytes, context):
        release.wait(GUARD)
        return b""

    server.add_generic_rpc_handlers((g.grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {"ModelInfer": g.grpc.unary_unary_rpc_method_handler(hold)}),))
    port = server.add_insecure_port(f"{HOST}:0")
    server.start()
    r = Router(routes_yaml([("slowpoke", [(None, f"{HOST}:{port}")], {"timeoutMs": 300})]))
    try:
        channel, stub = grpc_stub(g, r.grpc_target)
        try:
            req = g.request("slowpoke", {"x": np.array([1.0], dtype=np.float32)})
            with pytest.raises(g.grpc.RpcError) as e:
                stub.ModelInfer(req, metadata=[("seldon-model", "slowpoke")], timeout=GUARD)
            assert e.value.code() == g.grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            channel.close()
    finally:
        release.set()
        r.stop()
        server.stop(0)


def test_sigterm_finishes_in_flight():
    up = Upstream()
    r = Router(routes_yaml([("held", [(f"{HOST}:{up.port}", None)], None)]))
    result = {}

    def call():
        result["r"] = request(r.port, "POST", "/v2/models/held/hold/infer", body=b"12345")

    t = threading.Thread(target=call)
    t.start()
    try:
        assert up.arrived.wait(GUARD)
        r.proc.send_signal(signal.SIGTERM)
        r.wait_log(r"SIGTERM: finishing requests in flight")
        # Stopped accepting: a new connection is refused.
        def refused():
            try:
                socket.create_connection((HOST, r.port), timeout=1).close()
            except OSError:
                return True
            return False
        wait_until(refused, GUARD, lambda: "still accepting after SIGTERM")
        up.release.set()
        t.join(GUARD)
        status, _, body = result["r"]
        assert status == 200 and json.loads(body) == {"got": 5}
        assert r.wait() == 0
    finally:
        up.close()
        if r.proc.poll() is None:
            r.kill()


# --- large bodies and memory ------------------------------------------------------------

# Freed memory must return to the process's pool for the bound to mean anything: the
# sanitizer build keeps freed blocks in a quarantine, which is made small here.
SMALL_QUARANTINE = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
                    ":quarantine_size_mb=1:thread_local_quarantine_size_kb=64"}


def test_large_body_streams_with_memory_bounded(servers):
    r = Router(routes_yaml([("identity", [upstream_of(servers[0])], None)]),
               env=SMALL_QUARANTINE)
    try:
        x = np.random.default_rng(3).integers(0, 255, size=64 << 20, dtype=np.uint8)
        doc = {"inputs": [{"name": "x"}], "outputs": [{"name": "x",
                                                         "parameters": {"binary_data": True}}]}
        body, headers = sh.binary_body(doc, {"x": x})
        base = r.rss_kib()
        status, hdrs, resp = request(r.port, "POST", "/v2/models/identity/infer", body=body,
                                     headers=headers, timeout=120)
        assert status == 200, resp[:300]
        _, out, _ = sh.split_binary(hdrs, resp)
        assert np.array_equal(out["x"], x)
        peak = r.rss_kib("VmHWM")
        # 64 MiB went each way; the router held a small part of it at any time.
        assert peak - base < 24 * 1024, (base, peak)
    finally:
        r.stop()


def test_pipelined_client_that_never_reads(servers):
    r = Router(routes_yaml([("identity", [upstream_of(servers[0])], None)]),
               env=SMALL_QUARANTINE)
    try:
        x = np.zeros(1 << 20, dtype=np.uint8)
        doc = {"inputs": [{"name": "x"}], "outputs": [{"name": "x",
                                                         "parameters": {"binary_data": True}}]}
        body, headers = sh.binary_body(doc, {"x": x})
        req = sh.http_bytes("POST", "/v2/models/identity/infer", body, headers)
        base = r.rss_kib()
        s = socket.create_connection((HOST, r.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.settimeout(2.0)
        sent = 0
        try:
            while sent < 400 * len(req):  # stops when the router stops reading
                s.sendall(req)
                sent += len(req)
        except socket.timeout:
            pass
        grown = r.rss_kib() - base
        s.close()
        assert sent < 400 * len(req), "the router read everything: no backpressure"
        assert grown < 64 * 1024, f"router grew {grown} KiB for a client that never reads"
        assert infer_rest(r.port, "identity")[0] == 200  # and it still serves
    finally:
        r.stop()


# --- routes file: reload and refusal --------------------------------------------------


def test_sighup_reload_keeps_connections(servers):
    r = Router(routes_yaml([("identity", [upstream_of(servers[0])], None)]))
    try:
        conn = http.client.HTTPConnection(HOST, r.port, timeout=GUARD)
        conn.request("POST", "/v2/models/add10/infer", body=json.dumps({"inputs": INPUT}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 404
        resp.read()
        r.reload(routes_yaml([("identity", [upstream_of(servers[0])], None),
                              ("add10", [upstream_of(servers[1])], None)]))
        r.wait_log(r"reloaded: 2 route")
        # The same connection, after the reload: not dropped, and on the new table.
        conn.request("POST", "/v2/models/add10/infer", body=json.dumps({"inputs": INPUT}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["outputs"][0]["data"] == [11.0, 12.0, 13.0]
        conn.close()
        assert metric(r.metrics(), "seldon_router_reloads_total", result="ok") == 1
    finally:
        r.stop()


def test_bad_routes_file_refused_with_line_and_field(servers):
    bad = "routes:\n- name: identity\n  upstreams:\n  - {http: \"nohost\"}\n"
    r = Router(bad, expect_fail=True)
    assert r.wait() == 2
    err = r.stderr()
    assert "routes.yaml:4" in err and "routes[0].upstreams[0].http" in err, err
    r.kill()

    # A host name parses (the format allows it) but this router connects to addresses only.
    r = Router("routes:\n- name: identity\n  upstreams:\n  - {http: \"localhost:9\"}\n",
               expect_fail=True)
    assert r.wait() == 2
    assert 'route "identity", upstream 0: "localhost:9": host names are not resolved' in \
        r.stderr(), r.stderr()
    r.kill()

    good = routes_yaml([("identity", [upstream_of(servers[0])], None)])
    r = Router(good)
    try:
        r.reload("routes:\n- name: identity\n  upstream: []\n")
        line = r.wait_log(r"SIGHUP: .*")
        assert "routes.yaml:3" in line and "routes[0].upstream" in line, line
        assert "stay" in line
        assert infer_rest(r.port, "identity")[0] == 200  # the routes in force stayed
        assert metric(r.metrics(), "seldon_router_reloads_total", result="error") == 1
    finally:
        r.stop()


# --- metrics -----------------------------------------------------------------------------


def test_metrics(router):
    for _ in range(5):
        assert infer_rest(router.port, "mul10")[0] == 200
    samples = router.metrics()
    assert metric(samples, "seldon_router_requests_total", route="mul10", code="200") >= 5
    assert metric(samples, "seldon_router_upstream_seconds_count", route="mul10") >= 5
    status, _, text = request(router.metrics_port, "GET", "/metrics")
    assert status == 200
    for family, kind in (("seldon_router_requests_total", "counter"),
                         ("seldon_router_upstream_seconds", "histogram"),
                         ("seldon_router_retries_total", "counter"),
                         ("seldon_router_ejections_total", "counter"),
                         ("seldon_router_open_connections", "gauge")):
        assert f"# TYPE {family} {kind}" in text.decode(), family
    # The gauge is refreshed by each loop on a timer: wait for it to see the connections.
    wait_until(lambda: metric(router.metrics(), "seldon_router_open_connections",
                              side="upstream") >= 1,
               GUARD, lambda: "no upstream connection counted", interval=0.05)
    # A client connection kept open is counted on the other side.
    conn = http.client.HTTPConnection(HOST, router.port, timeout=GUARD)
    try:
        conn.request("GET", "/v2/models/mul10/ready")
        conn.getresponse().read()
        wait_until(lambda: metric(router.metrics(), "seldon_router_open_connections",
                                  side="downstream") >= 1,
                   GUARD, lambda: "no client connection counted", interval=0.05)
    finally:
        conn.close()


def test_grpc_stream_that_never_reads_through_router(g, tmp_path):
    # 160 replies of 1 MiB that the client does not read: flow control must hold the
    # stream back at every hop (client <- router <- server) instead of the router buffering.
    mib = 1 << 20
    sh.write_model(tmp_path, "identity", {"implementation": "builtin.identity"})
    asan = (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=8").lstrip(":")
    srv = sh.Server(tmp_path, "--log-level", "debug", env={"ASAN_OPTIONS": asan})
    r = Router(routes_yaml([("identity", [upstream_of(srv)], None)]), env=SMALL_QUARANTINE)
    channel = g.grpc.insecure_channel(r.grpc_target, options=[
        ("grpc.max_send_message_length", 64 * mib),
        ("grpc.max_receive_message_length", 64 * mib)])
    try:
        stub = g.pb2_grpc.GRPCInferenceServiceStub(channel)
        base = g.request("identity", {"x": np.arange(mib // 4, dtype=np.float32)}, raw=True)
        sent = []
        lock = threading.Lock()

        def requests():
            for i in range(160):
                req = type(base)()
                req.CopyFrom(base)
                req.id = str(i)
                with lock:
                    sent.append(i)
                yield req

        before = r.rss_kib()
        replies = stub.ModelStreamInfer(requests(), metadata=[("seldon-model", "identity")],
                                        timeout=GUARD * 4)
        # The server says when its stream stops reading: the pressure went all the way back.
        wait_until(lambda: "stream paused" in srv.stderr(), GUARD, srv.stderr, interval=0.02)
        grown = r.rss_kib() - before
        with lock:
            pushed = len(sent)
        assert pushed < 160, "the client pushed everything: nothing held it back"
        assert grown < 48 * 1024, f"the router grew {grown} KiB"
        ids = [x.infer_response.id for x in replies]
        assert ids == [str(i) for i in range(160)]
    finally:
        channel.close()
        r.stop()
        srv.stop()


def test_one_server_killed_during_grpc_loop_zero_failures(g, tmp_path):
    sh.write_samples(tmp_path)
    a, b = sh.Server(tmp_path), sh.Server(tmp_path)
    r = Router(routes_yaml([("identity", [upstream_of(a), upstream_of(b)], None)]))
    total, kill_at = 2000, 300
    done = []
    lock = threading.Lock()
    killed = threading.Event()
    channel, stub = grpc_stub(g, r.grpc_target)

    def one(i):
        req = g.request("identity", {"x": np.array([i], dtype=np.int64)})
        try:
            resp = stub.ModelInfer(req, metadata=[("seldon-model", "identity")], timeout=GUARD)
            ok = int(g.outputs(resp)["x"][0]) == i
        except g.grpc.RpcError as e:
            ok = f"{e.code()}: {e.details()}"
        with lock:
            done.append(ok)
            if len(done) == kill_at:
                b.kill()  # SIGKILL: streams in flight on it die with their connection
                killed.set()
        return ok

    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, range(total)))
        assert killed.is_set()
        failures = [x for x in results if x is not True]
        assert not failures, f"{len(failures)} failed of {total}: {failures[:3]}"
        assert metric(r.metrics(), "seldon_router_requests_total", route="identity",
                      code="0") == total
    finally:
        channel.close()
        r.stop()
        a.stop()


def test_sigterm_cuts_a_grpc_stream_that_outlives_the_grace(g, servers):
    r = Router(routes_yaml([("identity", [upstream_of(servers[0])], None)]), "--grace", "300")
    channel, stub = grpc_stub(g, r.grpc_target)
    hold = threading.Event()
    try:
        def requests():
            yield g.request("identity", {"x": np.array([1.0], dtype=np.float32)}, id="first")
            hold.wait(GUARD)  # the stream stays open past the grace

        call = stub.ModelStreamInfer(requests(), metadata=[("seldon-model", "identity")],
                                     timeout=GUARD)
        assert next(call).infer_response.id == "first"  # the stream is through the router
        r.proc.send_signal(signal.SIGTERM)
        assert r.wait(GUARD) == 0, r.stderr()  # the grace passed: the stream was cut
        with pytest.raises(g.grpc.RpcError):
            for _ in call:
                pass
    finally:
        hold.set()
        channel.close()
        if r.proc.poll() is None:
            r.kill()


# --- busy polling -----------------------------------------------------------------


@pytest.mark.parametrize("poll", [None, "0", "5000"])
def test_busy_polling_serves_then_sleeps(g, servers, poll):
    """The router's loops look for the next event for a while before they sleep
    (--busy-poll, on by default): traffic is served as without it, and once traffic stops
    the loops sleep and the router costs no processor time. A loop that kept polling would
    use a whole processor, and two looks at its time half a second apart would never
    agree."""
    text = routes_yaml([(m, [upstream_of(s) for s in servers], None)
                        for m in ("add10", "identity")])
    r = Router(text, *(["--busy-poll", poll] if poll is not None else []))
    try:
        channel, stub = grpc_stub(g, r.grpc_target)
        with channel:
            req = g.request("add10", {"INPUT": np.array([[1, 2, 3]], dtype=np.float32)})
            for i in range(300):
                status, _, body = infer_rest(r.port, "add10")
                assert status == 200, body
                resp = stub.ModelInfer(req, metadata=[("seldon-model", "add10")],
                                       timeout=GUARD)
                np.testing.assert_array_equal(g.outputs(resp)["OUTPUT"], [[11, 12, 13]])
        sh.procs.wait_idle(r.proc.pid, GUARD, "the router")
    finally:
        r.stop()
