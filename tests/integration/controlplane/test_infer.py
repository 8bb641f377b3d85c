"""`seldon model infer` and `seldon model metadata` against a real seldon-server,
over REST and gRPC (the JSON request turned into a ModelInferRequest by the
library's codec), and through seldon-router with the seldon-model header."""
import importlib.util
import json
import os

import pytest

from conftest import SOURCE, cli, write

_spec = importlib.util.spec_from_file_location(
    "server_helpers", os.path.join(SOURCE, "tests", "integration", "server", "conftest.py"))
sh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sh)

ROUTER = os.environ.get("SELDON_ROUTER") or os.path.join(
    SOURCE, "build", "daemons", "router", "seldon-router")

REQUEST = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                  "data": [1, 2, 3]}]})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not os.path.exists(sh.SERVER):
        pytest.skip("seldon-server not built")
    root = tmp_path_factory.mktemp("models")
    sh.write_samples(root)
    srv = sh.Server(root)
    yield srv
    srv.stop()


def outputs(doc):
    return {o["name"]: o["data"] for o in doc["outputs"]}


def test_infer_rest_and_grpc(server):
    r = cli("model", "infer", "add10", REQUEST, infer=f"{sh.HOST}:{server.http}")
    assert r.code == 0, r
    doc = r.json()
    assert doc["model_name"] == "add10"
    assert list(outputs(doc).values())[0] == [11, 12, 13]
    r = cli("model", "infer", "add10", REQUEST, "--inference-mode", "grpc",
            infer=f"{sh.HOST}:{server.grpc}")
    assert r.code == 0, r
    doc = r.json()
    assert doc["model_name"] == "add10"
    assert list(outputs(doc).values())[0] == [11, 12, 13]


def test_infer_iterations_headers_and_failures(server):
    r = cli("model", "infer", "mul10", REQUEST, "-i", "5", "--header", "x-test=1",
            infer=f"{sh.HOST}:{server.http}")
    assert r.code == 0, r
    doc = r.json()
    assert doc["iterations"] == 5 and doc["success"] == 5 and doc["failures"] == 0
    assert sum(doc["routes"].values()) == 5
    r = cli("model", "infer", "add10", REQUEST, "--show-headers",
            infer=f"{sh.HOST}:{server.http}")
    assert r.code == 0 and "content-type" in r.err.lower(), r
    r = cli("model", "infer", "absent", REQUEST, infer=f"{sh.HOST}:{server.http}")
    assert r.code == 1 and "404" in r.err, r
    r = cli("model", "infer", "add10", "{not json", "--inference-mode", "grpc",
            infer=f"{sh.HOST}:{server.grpc}")
    assert r.code == 1 and "request" in r.err, r
    r = cli("model", "infer", "absent", REQUEST, "--inference-mode", "grpc", "-i", "3",
            infer=f"{sh.HOST}:{server.grpc}")
    assert r.code == 1 and r.json()["failures"] == 3, r


def test_metadata(server):
    r = cli("model", "metadata", "typed", infer=f"{sh.HOST}:{server.http}")
    assert r.code == 0, r
    assert r.json()["name"] == "typed"
    r = cli("model", "metadata", "typed", "--inference-mode", "grpc",
            infer=f"{sh.HOST}:{server.grpc}")
    assert r.code == 0, r
    doc = r.json()
    assert doc["name"] == "typed"
    assert doc["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]


def test_infer_through_the_router(server, tmp_path):
    if not os.path.exists(ROUTER):
        pytest.skip("seldon-router not built")
    routes = write(tmp_path, "routes.yaml",
                   "routes:\n- name: add10\n  upstreams:\n"
                   f'  - {{http: "{sh.HOST}:{server.http}", grpc: "{sh.HOST}:{server.grpc}"}}\n')
    proc = sh.subprocess.Popen([ROUTER, "--routes", routes, "--port", "0", "--metrics-port", "-1",
                                "--host", sh.HOST, "--io-threads", "1"],
                               stdout=sh.subprocess.PIPE, stderr=sh.subprocess.DEVNULL)
    sh.STARTED.append(proc)
    try:
        line = sh.procs.first_line(proc, 60)
        port = int(line.split()[1].split("=")[1])
        for mode in ("rest", "grpc"):
            r = cli("model", "infer", "add10", REQUEST, "--inference-mode", mode, "-i", "3",
                    infer=f"{sh.HOST}:{port}")
            assert r.code == 0 and r.json()["success"] == 3, r
        # The router knows add10 only: seldon-model decides, whatever the path says.
        r = cli("model", "infer", "mul10", REQUEST, infer=f"{sh.HOST}:{port}")
        assert r.code == 1, r
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
        proc.stdout.close()


class _Experiment:
    """An HTTP upstream that splits like an experiment: x-seldon-route alternates between
    two versions, unless the request pins one by sending the header back."""

    def __init__(self):
        import http.server
        import threading
        state = {"n": 0, "seen": []}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                pinned = self.headers.get("x-seldon-route")
                state["seen"].append(pinned)
                route = pinned or (":iris_1:" if state["n"] % 2 == 0 else ":iris2_1:")
                state["n"] += 1
                body = b'{"model_name":"iris_1","outputs":[]}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("x-seldon-route", route)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.state = state
        self.httpd = http.server.ThreadingHTTPServer((sh.HOST, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_iterations_count_routes_and_sticky_sessions_pin_one():
    up = _Experiment()
    try:
        r = cli("model", "infer", "iris", REQUEST, "-i", "10", infer=f"{sh.HOST}:{up.port}")
        assert r.code == 0, r
        assert r.json()["routes"] == {":iris_1:": 5, ":iris2_1:": 5}
        r = cli("model", "infer", "iris", REQUEST, "-i", "10", "-s", infer=f"{sh.HOST}:{up.port}")
        assert r.code == 0, r
        routes = r.json()["routes"]
        assert len(routes) == 1 and sum(routes.values()) == 10, routes
        assert up.state["seen"][-9:] == [list(routes)[0]] * 9
    finally:
        up.close()
