"""The process: command line, start-up, and graceful shutdown with requests in flight."""
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
