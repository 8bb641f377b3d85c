"""The process: command line, start-up, and graceful shutdown with requests in flight."""
import queue
import re
import signal
import subprocess

import numpy as np
import pytest

from conftest import (GUARD, SERVER, RawConn, Server, get_json, http_bytes, outputs_of, tensor,
                      wait_server_read_all, write_model)


def run(*args):
    return subprocess.run([SERVER, *args], capture_output=True, timeout=GUARD)


def test_help():
    p = run("--help")
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert out.startswith("usage: seldon-server")
    for flag in ("--model-repository", "--http-port", "--grpc-port", "--max-body",
                 "--runtime-path", "--help", "--version"):
        assert flag in out
    assert run("-h").stdout == p.stdout


def test_version():
    p = run("--version")
    assert p.returncode == 0, p.stderr
    assert re.fullmatch(r"seldon-server \d+\.\d+\.\d+\S*\n", p.stdout.decode()), p.stdout


@pytest.mark.parametrize("args,fragment", [
    ([], "--model-repository"),
    (["--model-repository", "/tmp", "--http-port", "http"], "--http-port"),
    (["--model-repository", "/tmp", "--grpc-port", "70000"], "--grpc-port"),
    (["--model-repository", "/tmp", "--max-body", "12"], "--max-body"),
    (["--model-repository", "/tmp", "--log-level", "loud"], "--log-level"),
    (["--model-repository", "/tmp", "stray"], "stray"),
    (["--no-such-flag"], "usage"),
])
def test_bad_arguments(args, fragment):
    p = run(*args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert fragment in p.stderr.decode()
    assert p.stdout == b""


def test_sigint(tmp_path):
    write_model(tmp_path, "m", {"implementation": "builtin.identity"})
    srv = Server(tmp_path)
    assert get_json(srv.http, "/v2/models/m/ready")[0] == 200
    srv.signal(signal.SIGINT)
    assert srv.wait() == 0, srv.stderr()
    srv.close()


@pytest.fixture
def slow_repo(tmp_path):
    # A request alone waits max_batch_time for company: 1.5 s in flight.
    write_model(tmp_path, "slow", {"implementation": "builtin.add", "max_batch_size": 4,
                                   "max_batch_time": 1.5,
                                   "parameters": {"extra": {"constant": 1}}})
    return tmp_path


X = np.array([[1, 2, 3, 4]], dtype=np.float32)


def test_sigterm_rest_in_flight(slow_repo):
    srv = Server(slow_repo)
    c = RawConn(srv.http)
    try:
        c.send(http_bytes("POST", "/v2/models/slow/infer",
                          {"id": "last", "inputs": [tensor("INPUT", X)]}))
        wait_server_read_all(srv.http)
        srv.signal(signal.SIGTERM)
        r = c.response()
        assert r.status == 200, r.body
        assert int(r.headers["content-length"]) == len(r.body)
        assert r.headers.get("connection", "").lower() == "close"
        doc = r.json()
        assert doc["id"] == "last"
        np.testing.assert_array_equal(outputs_of(doc)["OUTPUT"], X + 1)
        assert c.closed_by_peer()
    finally:
        c.close()
    assert srv.wait() == 0, srv.stderr()
    srv.close()


def test_sigterm_grpc_in_flight(slow_repo, g):
    srv = Server(slow_repo)
    channel, stub = g.stub(srv)
    try:
        future = stub.ModelInfer.future(g.request("slow", {"INPUT": X}, id="last-g"),
                                        timeout=GUARD)
        wait_server_read_all(srv.grpc)
        srv.signal(signal.SIGTERM)
        r = future.result()
        assert r.id == "last-g"
        np.testing.assert_array_equal(g.outputs(r)["OUTPUT"], X + 1)
    finally:
        channel.close()
    assert srv.wait() == 0, srv.stderr()
    srv.close()


def test_sigterm_ends_an_idle_stream(tmp_path, g):
    """An open ModelStreamInfer with nothing in flight must not hold the stop for --grace."""
    write_model(tmp_path, "add10", {"implementation": "builtin.add",
                                    "parameters": {"extra": {"constant": 10}}})
    srv = Server(tmp_path, "--grace", "60000")
    channel, stub = g.stub(srv)
    outbox = queue.Queue()

    def requests():
        while True:
            item = outbox.get()
            if item is None:
                return
            yield item

    try:
        replies = stub.ModelStreamInfer(requests(), timeout=GUARD)
        outbox.put(g.request("add10", {"INPUT": np.array([1, 2, 3, 4], dtype=np.float32)}))
        first = next(replies)
        assert first.error_message == ""
        np.testing.assert_array_equal(g.outputs(first.infer_response)["OUTPUT"], [11, 12, 13, 14])
        srv.signal(signal.SIGTERM)
        # The server ends the idle stream itself, well before the 60 s grace.
        with pytest.raises(g.grpc.RpcError) as ended:
            next(replies)
        assert ended.value.code() == g.grpc.StatusCode.UNAVAILABLE
        assert srv.wait(timeout=20) == 0, srv.stderr()
    finally:
        outbox.put(None)
        channel.close()
    srv.close()


def test_start_with_bad_models(tmp_path):
    # Models that fail to load do not keep the server from starting and being ready.
    write_model(tmp_path, "good", {"implementation": "builtin.identity"})
    write_model(tmp_path, "bad", {"implementation": "builtin.add"})
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "model-settings.json").write_text("{{{")
    srv = Server(tmp_path)
    try:
        assert get_json(srv.http, "/v2/health/ready") == (200, {"ready": True})
        assert get_json(srv.http, "/v2/models/good/ready")[0] == 200
        assert get_json(srv.http, "/v2/models/bad/ready")[0] == 400
    finally:
        srv.stop()


def test_no_load_all(tmp_path):
    write_model(tmp_path, "m", {"implementation": "builtin.identity"})
    srv = Server(tmp_path, "--no-load-all")
    try:
        assert get_json(srv.http, "/v2/health/ready")[0] == 200
        assert get_json(srv.http, "/v2/models/m/ready")[0] == 404
        status, _ = get_json(srv.http, "/v2/models/m")
        assert status == 404
        c = RawConn(srv.http)
        c.send(http_bytes("POST", "/v2/repository/models/m/load", b""))
        assert c.response().status == 200
        c.close()
        assert get_json(srv.http, "/v2/models/m/ready")[0] == 200
    finally:
        srv.stop()


def test_idle_timeout(tmp_path):
    # Idle keep-alive connections and stalled requests are closed after --idle-timeout;
    # the server goes on serving.
    write_model(tmp_path, "m", {"implementation": "builtin.identity"})
    srv = Server(tmp_path, "--idle-timeout", "200")
    try:
        idle = RawConn(srv.http)
        idle.send(http_bytes("GET", "/v2/health/live"))
        assert idle.response().status == 200
        stalled = RawConn(srv.http)
        stalled.send(b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        # Each recv blocks until the server closes (GUARD bounds a hang).
        assert idle.closed_by_peer()
        try:
            r = stalled.response()
            assert r.status in (400, 408), r.status  # an answer before closing is fine too
        except (EOFError, ConnectionResetError):
            pass
        idle.close()
        stalled.close()
        assert get_json(srv.http, "/v2/health/live") == (200, {"live": True})
    finally:
        srv.stop()
