"""The h2c transport through h2_testd, a transparent gRPC proxy, with grpcio clients.

grpcio -> h2_testd (sd2 server -> sd2 client) -> seldon-server's gRPC port.
"""
import shutil
import socket
import subprocess
import threading

import numpy as np
import pytest

from conftest import GUARD, HOST, free_port, procs, start_proxy, start_server
from loopback import wait_server_read_all  # tests/integration/lib, on the path by conftest


def initial(call):
    return {k: v for k, v in call.initial_metadata()}


def route_of(err):
    """x-seldon-route of a failed call: in the initial metadata, or in the trailers of a
    trailers-only response (grpcio reports those as trailing metadata)."""
    md = dict(err.initial_metadata() or ())
    md.update(dict(err.trailing_metadata() or ()))
    return md.get("x-seldon-route")


def test_server_live_through_proxy(g, proxy):
    channel, stub = g.stub(proxy.target)
    with channel:
        resp, call = stub.ServerLive.with_call(g.pb2.ServerLiveRequest(), timeout=GUARD)
        assert resp.live is True
        md = initial(call)
        assert md["x-seldon-route"] == proxy.route


def test_model_infer_unary(g, proxy):
    channel, stub = g.stub(proxy.target)
    with channel:
        req = g.fp32_request("add10", [1.0, 2.0, 3.5], id="req-1")
        resp, call = stub.ModelInfer.with_call(req, timeout=GUARD)
        assert resp.id == "req-1"
        assert resp.model_name == "add10"
        out = resp.outputs[0]
        if resp.raw_output_contents:
            values = np.frombuffer(resp.raw_output_contents[0], dtype=np.float32).tolist()
        else:
            values = list(out.contents.fp32_contents)
        assert values == [11.0, 12.0, 13.5]
        assert initial(call)["x-seldon-route"] == proxy.route


def test_metadata_both_ways(g, proxy):
    """Custom request metadata is seen by the proxy through the transport's list (it
    names the keys back in x-h2-metadata); transport fields are not metadata; the
    response's headers and trailers from the upstream come through."""
    channel, stub = g.stub(proxy.target)
    with channel:
        _, call = stub.ServerLive.with_call(
            g.pb2.ServerLiveRequest(), timeout=GUARD,
            metadata=[("x-custom-key", "v1"), ("seldon-model", "add10")])
        md = initial(call)
        keys = md["x-h2-metadata"].split(",")
        assert "x-custom-key" in keys and "seldon-model" in keys
        assert "te" not in keys and "content-type" not in keys and "grpc-timeout" not in keys
        assert call.code() == g.grpc.StatusCode.OK


def test_error_status_passes_through(g, proxy):
    """An upstream gRPC error (trailers from seldon-server) reaches the client intact."""
    channel, stub = g.stub(proxy.target)
    with channel:
        with pytest.raises(g.grpc.RpcError) as e:
            stub.ModelInfer(g.fp32_request("no-such-model", [1.0]), timeout=GUARD)
        assert e.value.code() == g.grpc.StatusCode.NOT_FOUND
        assert "no-such-model" in e.value.details()
        assert route_of(e.value) == proxy.route


def test_stream_infer_bidirectional(g, proxy):
    """ModelStreamInfer: requests go one at a time, each answer read before the next is
    sent, so both directions really interleave on one stream."""
    channel, stub = g.stub(proxy.target)
    import queue
    q = queue.Queue()

    def requests():
        while True:
            item = q.get()
            if item is None:
                return
            yield item

    with channel:
        call = stub.ModelStreamInfer(requests(), timeout=GUARD)
        for i in range(20):
            q.put(g.fp32_request("add10", [float(i)], id=f"s{i}"))
            resp = next(call)
            assert resp.error_message == ""
            assert resp.infer_response.id == f"s{i}"
            r = resp.infer_response
            if r.raw_output_contents:
                v = np.frombuffer(r.raw_output_contents[0], dtype=np.float32).tolist()
            else:
                v = list(r.outputs[0].contents.fp32_contents)
            assert v == [float(i) + 10.0]
        q.put(None)
        assert list(call) == []
        assert call.code() == g.grpc.StatusCode.OK
        assert initial(call)["x-seldon-route"] == proxy.route


def test_many_concurrent_calls(g, proxy):
    """Many streams multiplexed on one client connection, each through the upstream pool."""
    channel, stub = g.stub(proxy.target)
    with channel:
        futures = [stub.ModelInfer.future(g.fp32_request("add10", [float(i)], id=str(i)),
                                          timeout=GUARD) for i in range(200)]
        for i, f in enumerate(futures):
            assert f.result().id == str(i)


def test_large_message_memory_bounded(g, server):
    """A 16 MiB tensor goes through and back; the proxy's resident memory grows by
    far less than the message: flow control and bounded queues, no buffering."""
    proxy = start_proxy(server.grpc)
    try:
        channel, stub = g.stub(proxy.target)
        with channel:
            # Warm up: connections, HPACK tables, allocator arenas.
            stub.ServerLive(g.pb2.ServerLiveRequest(), timeout=GUARD)
            before = proxy.rss_kib()
            n = (16 << 20) // 4
            data = np.arange(n, dtype=np.float32)
            req = g.pb2.ModelInferRequest(model_name="identity", id="big")
            req.inputs.add(name="x", datatype="FP32", shape=[1, n])
            req.raw_input_contents.append(data.tobytes())
            resp = stub.ModelInfer(req, timeout=120)
            assert resp.id == "big"
            assert len(resp.raw_output_contents[0]) == 16 << 20
            assert np.array_equal(np.frombuffer(resp.raw_output_contents[0], np.float32), data)
            peak = proxy.rss_kib("VmHWM")
        # 16 MiB each way went through; the proxy may hold a few windows' worth.
        assert peak - before < 6 * 1024, (before, peak)
    finally:
        proxy.stop()


def _push_unread(g, proxy, held, count=40, mib=4, warm=True):
    """Sends count messages of mib MiB on a ModelStreamInfer and reads nothing, until
    held() says what holds the client back for good, and the proxy read what the client
    sent before that. Returns (messages taken, proxy's RSS growth KiB)."""
    channel, stub = g.stub(proxy.target, max_message=(mib + 1) << 20)
    with channel:
        if warm:
            stub.ServerLive(g.pb2.ServerLiveRequest(), timeout=GUARD)
        else:
            g.grpc.channel_ready_future(channel).result(timeout=GUARD)
        before = proxy.rss_kib()
        n = (mib << 20) // 4
        big = g.pb2.ModelInferRequest(model_name="identity")
        big.inputs.add(name="x", datatype="FP32", shape=[1, n])
        big.raw_input_contents.append(np.zeros(n, np.float32).tobytes())
        sent = []

        def requests():
            for i in range(count):
                sent.append(i)
                yield big

        call = stub.ModelStreamInfer(requests(), timeout=GUARD)
        # Read nothing. The pressure reaches the client; the bytes in flight land.
        held()
        wait_server_read_all(proxy.port, GUARD)
        peak = proxy.rss_kib("VmHWM")
        call.cancel()
    return len(sent), peak - before


def test_unread_stream_memory_bounded(g):
    """A client that streams 4 MiB requests on a ModelStreamInfer and never reads the
    replies: the proxy's memory stays bounded while tens of MiB go through it (the replies
    back up into flow control, not into the proxy)."""
    # Its own server, which logs when the stream stops reading because its replies wait
    # (the client reads none): from there the proxy holds the client's data for good.
    srv = start_server(0, "--log-level", "debug")
    proxy = start_proxy(srv.grpc)

    def held():
        procs.wait_until(lambda: "grpc: stream paused" in srv.stderr(), GUARD,
                         lambda: f"the server's stream never paused\n{srv.stderr()}")
    try:
        taken, grown = _push_unread(g, proxy, held, count=20)
        assert taken >= 5, taken  # at least 20 MiB went through the proxy
        assert grown < 16 * 1024, (grown, taken)
    finally:
        proxy.stop()
        srv.stop()


def test_upstream_not_reading_throttles_client(g):
    """An upstream that never grants window: the proxy does not consume the client's data
    it cannot forward, so the client stalls and the proxy's memory stays bounded."""
    silent = Silent()
    proxy = start_proxy(silent.port, "--log-level", "debug")

    def held():
        # The upstream never takes what the proxy queued: the first hold is for good.
        procs.wait_until(lambda: "holding the client's data" in proxy.stderr(), GUARD,
                         lambda: f"the proxy never held the client back\n{proxy.stderr()}")
    try:
        taken, grown = _push_unread(g, proxy, held, count=40, warm=False)
        assert taken < 40, "nothing pushed back: the proxy took all 160 MiB"
        assert grown < 8 * 1024, (grown, taken)
    finally:
        proxy.stop()
        silent.close()


def test_upstream_refused(g):
    port = free_port()
    proxy = start_proxy(port)
    try:
        channel, stub = g.stub(proxy.target)
        with channel:
            with pytest.raises(g.grpc.RpcError) as e:
                stub.ServerLive(g.pb2.ServerLiveRequest(), timeout=GUARD)
            assert e.value.code() == g.grpc.StatusCode.UNAVAILABLE
            assert "connection refused" in e.value.details()
            assert route_of(e.value) == proxy.route
    finally:
        proxy.stop()


def test_upstream_connect_timeout(g):
    """An upstream whose accept queue is full drops our SYN: the connect timeout fires and
    the client hears UNAVAILABLE naming it, distinct from a refusal."""
    full = socket.socket()
    full.bind((HOST, 0))
    full.listen(0)
    port = full.getsockname()[1]
    fillers = []
    for _ in range(4):  # a backlog of 0 still admits one or two
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((HOST, port))
        fillers.append(s)
    proxy = start_proxy(port, "--connect-timeout-ms", "300")
    try:
        channel, stub = g.stub(proxy.target)
        with channel:
            with pytest.raises(g.grpc.RpcError) as e:
                stub.ServerLive(g.pb2.ServerLiveRequest(), timeout=GUARD)
            assert e.value.code() == g.grpc.StatusCode.UNAVAILABLE
            assert "connect timed out" in e.value.details()
    finally:
        proxy.stop()
        for s in fillers:
            s.close()
        full.close()


class Silent:
    """An upstream that accepts and reads but never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.passes = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.1)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                pass
            for c in list(self.conns):
                c.setblocking(False)
                try:
                    c.recv(65536)
                except OSError:
                    pass
            self.passes += 1

    def accepted(self):
        """Connections accepted, once every connection made before this call is."""
        start = self.passes
        # A whole accept pass began after the call.
        procs.wait_until(lambda: self.passes >= start + 2, GUARD,
                         lambda: f"the accept thread is stuck at pass {self.passes}")
        return len(self.conns)

    def close(self):
        self.stop = True
        self.thread.join()
        for c in self.conns:
            c.close()
        self.sock.close()


def test_request_timeout_deadline_exceeded(g):
    """The proxy's own request timeout (no client deadline) answers DEADLINE_EXCEEDED."""
    silent = Silent()
    proxy = start_proxy(silent.port, "--request-timeout-ms", "300")
    try:
        channel, stub = g.stub(proxy.target)
        with channel:
            with pytest.raises(g.grpc.RpcError) as e:
                stub.ServerLive(g.pb2.ServerLiveRequest())  # no client deadline
            assert e.value.code() == g.grpc.StatusCode.DEADLINE_EXCEEDED
            assert "timed out" in e.value.details()
    finally:
        proxy.stop()
        silent.close()


def test_pool_opens_connections_up_to_its_bound(g):
    """Streams beyond one connection's concurrency limit open another connection, up to
    the pool's bound; past it they wait in line. An upstream that never answers keeps them
    all open, so the count of its connections is exact; each call then times out."""
    silent = Silent()
    proxy = start_proxy(silent.port, "--request-timeout-ms", "1000",
                        "--upstream-max-streams", "10", "--upstream-max-conns", "3")
    try:
        channel, stub = g.stub(proxy.target)
        with channel:
            futures = [stub.ServerLive.future(g.pb2.ServerLiveRequest()) for _ in range(50)]
            for f in futures:
                assert f.exception(timeout=GUARD).code() == g.grpc.StatusCode.DEADLINE_EXCEEDED
        assert silent.accepted() == 3
    finally:
        proxy.stop()
        silent.close()


def test_grpc_timeout_header_bounds_the_upstream(g):
    """grpc-timeout from the client becomes the upstream request's deadline: the proxy
    itself answers (its message, its route header) rather than the client giving up."""
    silent = Silent()
    proxy = start_proxy(silent.port)
    try:
        channel, stub = g.stub(proxy.target)
        with channel:
            with pytest.raises(g.grpc.RpcError) as e:
                stub.ServerLive(g.pb2.ServerLiveRequest(), timeout=1.0)
            assert e.value.code() == g.grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        proxy.stop()
        silent.close()


def test_upstream_killed_then_back(g):
    """The upstream dies during a call: UNAVAILABLE, not a hang. It comes back on the
    same port: the proxy connects again."""
    srv = start_server()
    port = srv.grpc
    proxy = start_proxy(port)
    srv2 = None
    try:
        channel, stub = g.stub(proxy.target)
        with channel:
            assert stub.ServerLive(g.pb2.ServerLiveRequest(), timeout=GUARD).live
            import queue
            q = queue.Queue()

            def requests():
                while True:
                    item = q.get()
                    if item is None:
                        return
                    yield item

            call = stub.ModelStreamInfer(requests(), timeout=GUARD)
            q.put(g.fp32_request("add10", [1.0], id="a"))
            assert next(call).infer_response.id == "a"
            srv.kill()
            with pytest.raises(g.grpc.RpcError) as e:
                next(call)
            assert e.value.code() == g.grpc.StatusCode.UNAVAILABLE
            q.put(None)
            with pytest.raises(g.grpc.RpcError) as e:
                stub.ServerLive(g.pb2.ServerLiveRequest(), timeout=GUARD)
            assert e.value.code() == g.grpc.StatusCode.UNAVAILABLE
            srv2 = start_server(grpc_port=port)
            resp = stub.ModelInfer(g.fp32_request("add10", [2.0], id="b"), timeout=GUARD)
            assert resp.id == "b"
    finally:
        proxy.stop()
        if srv2:
            srv2.stop()


def test_adopted_connections(g, server):
    """Connections handed over after the preface was read elsewhere (adopt.h) work as
    the transport's own."""
    proxy = start_proxy(server.grpc, adopt=True)
    try:
        channel, stub = g.stub(proxy.target)
        with channel:
            for i in range(5):
                resp, call = stub.ModelInfer.with_call(
                    g.fp32_request("add10", [float(i)], id=f"a{i}"), timeout=GUARD)
                assert resp.id == f"a{i}"
                assert initial(call)["x-seldon-route"] == proxy.route
    finally:
        proxy.stop()


def test_one_port_rest_and_grpc(g, server):
    """One port, both protocols: the HTTP/1.1 server of daemons/common answers REST and hands
    connections that open with the h2c preface to the h2c server (adopt.h)."""
    import http.client
    proxy = start_proxy(server.grpc, one_port=True)
    try:
        conn = http.client.HTTPConnection(HOST, proxy.port, timeout=GUARD)
        try:
            conn.request("GET", "/v2/health/live")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == b"hello"
        finally:
            conn.close()
        channel, stub = g.stub(proxy.target)
        with channel:
            for i in range(5):
                resp, call = stub.ModelInfer.with_call(
                    g.fp32_request("add10", [float(i)], id=f"p{i}"), timeout=GUARD)
                assert resp.id == f"p{i}"
                assert initial(call)["x-seldon-route"] == proxy.route
        # REST again on the same port, after gRPC.
        conn = http.client.HTTPConnection(HOST, proxy.port, timeout=GUARD)
        try:
            conn.request("GET", "/")
            assert conn.getresponse().status == 200
        finally:
            conn.close()
    finally:
        proxy.stop()


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load not installed")
def test_h2load_many_streams(server, tmp_path):
    """Another client implementation, 8 connections with 10 streams each, through upstream
    connections that take 20 streams each (so the pool spreads them): every request gets
    its gRPC answer."""
    proxy = start_proxy(server.grpc, "--upstream-max-streams", "20")
    try:
        body = tmp_path / "empty.grpc"
        body.write_bytes(b"\x00" * 5)  # one empty message
        out = subprocess.run(["h2load", "-n", "5000", "-c", "8", "-m", "10", "-d", str(body),
                              "-H", "content-type: application/grpc", "-H", "te: trailers",
                              f"http://{proxy.target}/inference.GRPCInferenceService/ServerLive"],
                             capture_output=True, timeout=120, text=True)
        assert out.returncode == 0, out.stderr
        assert "5000 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout
        assert "5000 2xx" in out.stdout, out.stdout
    finally:
        proxy.stop()


def test_sigterm_drains_streams_in_flight(g, server):
    """SIGTERM: the server side stops listening and sends GOAWAY, but a stream in flight
    carries on to its end; then the proxy exits 0."""
    import queue
    import signal as sig
    proxy = start_proxy(server.grpc)
    try:
        channel, stub = g.stub(proxy.target)
        with channel:
            q = queue.Queue()

            def requests():
                while True:
                    item = q.get()
                    if item is None:
                        return
                    yield item

            call = stub.ModelStreamInfer(requests(), timeout=GUARD)
            q.put(g.fp32_request("add10", [1.0], id="before"))
            assert next(call).infer_response.id == "before"
            proxy.proc.send_signal(sig.SIGTERM)
            # The listener closes: new connections are refused.
            def refused():
                try:
                    socket.create_connection((HOST, proxy.port), timeout=GUARD).close()
                except ConnectionRefusedError:
                    return True
                except ConnectionResetError:
                    pass  # caught in the backlog as the socket closed
                return False
            procs.wait_until(refused, GUARD, lambda: "still accepting after SIGTERM")
            q.put(g.fp32_request("add10", [2.0], id="after"))
            assert next(call).infer_response.id == "after"
            q.put(None)
            assert list(call) == []
            assert call.code() == g.grpc.StatusCode.OK
    finally:
        proxy.stop()
