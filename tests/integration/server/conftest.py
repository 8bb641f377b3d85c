"""Helpers for the seldon-server integration tests.

Each test module starts the real server ($SELDON_SERVER) as a process on free
loopback ports, with a model repository folder written by the test, and
stops it with SIGTERM at the end: the exit code must be 0, which also
catches sanitizer reports in an ASan build. Clients are the ones users have:
http.client and raw sockets for REST, grpcio stubs generated at test time
from our own proto for gRPC.

Deadlines below only guard against hangs; no assertion depends on time.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import loopback  # noqa: E402  (tests/integration/lib)
import oipstubs  # noqa: E402
import procs  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))

SERVER = os.environ.get("SELDON_SERVER") or os.path.join(
    SOURCE, "build", "daemons", "server", "seldon-server")
RUNTIME_PATH = os.environ.get("SELDON_RUNTIME_PATH") or os.path.join(SOURCE, "build", "runtimes")
PROTO_DIR = os.environ.get("SELDON_PROTO_DIR") or os.path.join(SOURCE, "proto")

# Hang guards, generous enough for a sanitizer build on two busy cores.
START_GUARD = 60.0
GUARD = 30.0
STOP_GUARD = 60.0

HOST = "127.0.0.1"
# The sample server's --max-body: large requests are cheap to make.
SAMPLES_MAX_BODY = 1 << 20

NUMPY_TYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP32": np.float32,
    "FP64": np.float64,
}
DATATYPES = {np.dtype(v): k for k, v in NUMPY_TYPES.items()}


def pytest_configure(config):
    if not os.path.exists(SERVER):
        raise pytest.UsageError(f"seldon-server not found at {SERVER}: set SELDON_SERVER")


# --- The model repository -------------------------------------------------------


def write_model(root, name, settings, folder=None, files=None):
    """Writes <root>/<folder or name>/model-settings.json ("name" filled in) and extra files.

    Written to a temporary file and renamed, so a server reloading at that
    moment never reads half a file.
    """
    path = os.path.join(str(root), folder or name)
    os.makedirs(path, exist_ok=True)
    settings = dict(settings)
    settings.setdefault("name", name)
    for fname, content in list((files or {}).items()) + [
            ("model-settings.json", json.dumps(settings))]:
        mode = "wb" if isinstance(content, bytes) else "w"
        tmp = os.path.join(path, "." + fname + ".tmp")
        with open(tmp, mode) as f:
            f.write(content)
        os.replace(tmp, os.path.join(path, fname))
    return path


def arith(implementation, constant, **more):
    settings = {"implementation": implementation, "parameters": {"extra": {"constant": constant}}}
    settings.update(more)
    return settings


def write_samples(root):
    """Seldon's sample models, as builtins, plus a few with declared metadata."""
    write_model(root, "identity", {"implementation": "builtin.identity"})
    write_model(root, "simple", {"implementation": "builtin.simple"})
    write_model(root, "add10", arith("builtin.add", 10))
    write_model(root, "add20", arith("builtin.add", 20))
    write_model(root, "mul10", arith("builtin.mul", 10))
    write_model(root, "conditional", {"implementation": "builtin.conditional"})
    # Declared inputs: requests are checked against them.
    write_model(root, "typed", {
        "implementation": "builtin.identity",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
    })
    # Version folders: the latest ("2") is served, and named by its folder.
    write_model(root, "versioned", arith("builtin.add", 1), folder="versioned/1")
    write_model(root, "versioned", arith("builtin.add", 2), folder="versioned/2")
    # Adaptive batching: requests wait on the batch timer and run on a worker.
    write_model(root, "batched4", {"implementation": "builtin.identity", "max_batch_size": 4,
                                   "max_batch_time": 0.02})
    # A request alone waits 0.3 s for company: long enough to leave while it waits.
    write_model(root, "slow", {"implementation": "builtin.identity", "max_batch_size": 8,
                               "max_batch_time": 0.3})
    # A version set in the settings.
    write_model(root, "pinned", {"implementation": "builtin.add",
                                 "parameters": {"version": "v7", "extra": {"constant": 5}}})


# --- The server process -----------------------------------------------------------


# Every server process started, so that none outlives the session when a test fails.
STARTED = []


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_servers():
    yield
    for proc in STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Server:
    """A seldon-server process on free loopback ports."""

    def __init__(self, repo, *args, env=None, wait_ready=True):
        self.repo = str(repo)
        self.args = [str(a) for a in args]
        self.errfile = tempfile.NamedTemporaryFile(prefix="seldon-server-", suffix=".stderr",
                                                   delete=False)
        cmd = [SERVER, "--model-repository", self.repo, "--http-port", "0", "--grpc-port", "0",
               "--host", HOST, *self.args]
        full_env = dict(os.environ)
        full_env.update(env or {})
        # A None value removes the variable (e.g. SELDON_RUNTIME_PATH, to test the defaults).
        for key in [k for k, v in full_env.items() if v is None]:
            del full_env[key]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errfile,
                                     env=full_env)
        STARTED.append(self.proc)
        self.returncode = None
        line = self._first_line()
        m = re.fullmatch(r"listening http=(\d+) grpc=(\d+)", line.strip())
        if not m:
            self.kill()
            raise AssertionError(f"seldon-server did not start: stdout {line!r}\n{self.stderr()}")
        self.http = int(m.group(1))
        self.grpc = int(m.group(2))
        self.grpc_target = f"{HOST}:{self.grpc}"
        if wait_ready:
            self.wait_ready()

    def _first_line(self):
        return procs.first_line(self.proc, START_GUARD)

    def wait_ready(self):
        """Polls /v2/health/ready until the start-up loads are done."""
        def ready():
            assert self.proc.poll() is None, f"seldon-server exited\n{self.stderr()}"
            return request(self.http, "GET", "/v2/health/ready")[0] == 200
        procs.wait_until(ready, START_GUARD, lambda: f"not ready in time\n{self.stderr()}",
                         interval=0.02)

    def stderr(self):
        with open(self.errfile.name, "rb") as f:
            text = f.read().decode(errors="replace")
        return "--- seldon-server stderr ---\n" + text[-20000:]

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait(self, timeout=STOP_GUARD):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"seldon-server did not exit in time\n{self.stderr()}")
        return self.returncode

    def stop(self):
        """SIGTERM, then asserts a clean exit (a sanitizer report makes it non-zero)."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        rc = self.wait()
        self.close()
        assert rc == 0, f"seldon-server exited {rc}\n{self.stderr()}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.close()

    def close(self):
        if self.proc.stdout:
            self.proc.stdout.close()
        self.errfile.close()

    def __del__(self):
        try:
            os.unlink(self.errfile.name)
        except OSError:
            pass


@pytest.fixture(scope="session")
def samples(tmp_path_factory):
    """One server for the sample models, shared by the REST, gRPC and error tests."""
    root = tmp_path_factory.mktemp("samples")
    write_samples(root)
    srv = Server(root, "--max-body", str(SAMPLES_MAX_BODY))
    yield srv
    srv.stop()


# --- REST -------------------------------------------------------------------------


def request(port, method, path, body=None, headers=None, timeout=GUARD):
    """One request on a fresh connection: (status, headers with lower-case names, body)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers = dict(headers or {}, **{"Content-Type": "application/json"})
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def get_json(port, path):
    status, headers, body = request(port, "GET", path)
    return status, json.loads(body)


def post_json(port, path, doc=None):
    status, headers, body = request(port, "POST", path, body=doc if doc is not None else b"")
    return status, json.loads(body) if body else None


def assert_error(status, headers, body, want_status, *fragments):
    """An error response: the status, and a JSON {"error": "..."} naming each fragment."""
    assert status == want_status, (status, body)
    assert headers.get("content-type", "").startswith("application/json"), headers
    doc = json.loads(body)
    assert isinstance(doc, dict) and list(doc) == ["error"], doc
    assert isinstance(doc["error"], str) and doc["error"], doc
    for f in fragments:
        assert f in doc["error"], (f, doc["error"])
    return doc["error"]


def tensor(name, array, datatype=None):
    """A REST JSON input tensor; float32 values go out as the doubles they are, so exactly."""
    array = np.asarray(array)
    return {
        "name": name,
        "datatype": datatype or DATATYPES[array.dtype],
        "shape": list(array.shape),
        "data": array.reshape(-1).tolist(),
    }


def outputs_of(doc):
    """{name: numpy array} from a REST JSON response without binary outputs."""
    out = {}
    for t in doc["outputs"]:
        out[t["name"]] = np.array(t["data"], dtype=NUMPY_TYPES[t["datatype"]]).reshape(t["shape"])
    return out


def infer(port, model, inputs, outputs=None, id=None, parameters=None, version=None):
    """A REST inference: (status, parsed body)."""
    doc = {"inputs": inputs}
    if outputs is not None:
        doc["outputs"] = [o if isinstance(o, dict) else {"name": o} for o in outputs]
    if id is not None:
        doc["id"] = id
    if parameters is not None:
        doc["parameters"] = parameters
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    status, _, body = request(port, "POST", path, body=doc)
    return status, json.loads(body)


def binary_body(doc, raw_inputs):
    """A request of the binary extension: (body, headers). raw_inputs: {name: array}, sent
    after the JSON part in the order of doc["inputs"], each declaring binary_data_size."""
    doc = json.loads(json.dumps(doc))
    raw = b""
    for t in doc["inputs"]:
        if t["name"] in raw_inputs:
            array = np.ascontiguousarray(raw_inputs[t["name"]])
            t.setdefault("datatype", DATATYPES[array.dtype])
            t.setdefault("shape", list(array.shape))
            t.pop("data", None)
            data = array.tobytes()
            t.setdefault("parameters", {})["binary_data_size"] = len(data)
            raw += data
    header = json.dumps(doc).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header)),
                          "Content-Type": "application/octet-stream"}


def split_binary(headers, body):
    """(JSON part, {name: array}, names of the outputs that came as binary) of a response."""
    n = int(headers.get("inference-header-content-length", len(body)))
    doc = json.loads(body[:n])
    rest = body[n:]
    out, binary = {}, []
    for t in doc["outputs"]:
        dtype = NUMPY_TYPES[t["datatype"]]
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            assert "data" not in t, t
            out[t["name"]] = np.frombuffer(rest[:size], dtype=dtype).reshape(t["shape"])
            rest = rest[size:]
            binary.append(t["name"])
        else:
            out[t["name"]] = np.array(t["data"], dtype=dtype).reshape(t["shape"])
    assert rest == b"", f"{len(rest)} bytes after the last binary output"
    return doc, out, binary


def http_bytes(method, path, body=b"", headers=None):
    """The bytes of one HTTP/1.1 request with a Content-Length."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)


class RawConn:
    """A raw client connection with a minimal HTTP/1.1 response reader."""

    def __init__(self, port, timeout=GUARD):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError("connection closed by the server")
        self.buf += data

    def response(self):
        """The next response (an interim 100 Continue too); the body by Content-Length."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ", 2)[:2]
        assert version == "HTTP/1.1", lines[0]
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return Response(int(status), headers, body)

    def closed_by_peer(self):
        """True when the server closed the connection (EOF with nothing more to read)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def wait_server_read_all(port):
    """Waits until the server has read every byte sent to its connections on port."""
    loopback.wait_server_read_all(port, GUARD)


# --- Prometheus text --------------------------------------------------------------


def metrics(port):
    """[(name, {label: value}, value)] from GET /metrics."""
    status, headers, body = request(port, "GET", "/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain"), headers
    samples_ = []
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)', line)
        assert m, line
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples_.append((m.group(1), labels, float(m.group(3))))
    return samples_


def wait_metric(port, want, name, **labels):
    """Polls /metrics until the sum of the samples of name (with labels) reaches want."""
    return procs.wait_value(lambda: metric(metrics(port), name, **labels),
                            lambda got: got >= want, GUARD,
                            lambda got: f"{name}{labels} is {got}, not {want}")


def metric(samples_, name, **labels):
    """The sum of the samples of name whose labels include labels."""
    return sum(v for n, ls, v in samples_
               if n == name and all(ls.get(k) == str(want) for k, want in labels.items()))


# --- gRPC -------------------------------------------------------------------------


class Grpc:
    """The generated modules, and helpers to build requests and read responses."""

    CONTENTS = {
        "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
        "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
        "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
        "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
    }

    def __init__(self, pb2, pb2_grpc, grpc):
        self.pb2 = pb2
        self.pb2_grpc = pb2_grpc
        self.grpc = grpc

    def stub(self, server, max_message=64 << 20):
        channel = self.grpc.insecure_channel(server.grpc_target, options=[
            ("grpc.max_send_message_length", max_message),
            ("grpc.max_receive_message_length", max_message),
        ])
        self.grpc.channel_ready_future(channel).result(timeout=GUARD)
        return channel, self.pb2_grpc.GRPCInferenceServiceStub(channel)

    def input(self, name, array, raw=False, datatype=None):
        """(InferInputTensor, raw bytes or None)."""
        array = np.asarray(array)
        dt = datatype or DATATYPES[array.dtype]
        t = self.pb2.ModelInferRequest.InferInputTensor(name=name, datatype=dt,
                                                        shape=list(array.shape))
        if raw:
            return t, np.ascontiguousarray(array).tobytes()
        getattr(t.contents, self.CONTENTS[dt]).extend(array.reshape(-1).tolist())
        return t, None

    def request(self, model, inputs, raw=False, outputs=None, id="", version=""):
        """A ModelInferRequest from {name: array}, typed contents or raw_input_contents."""
        req = self.pb2.ModelInferRequest(model_name=model, model_version=version, id=id)
        for name, array in inputs.items():
            t, data = self.input(name, array, raw=raw)
            req.inputs.append(t)
            if data is not None:
                req.raw_input_contents.append(data)
        for o in outputs or []:
            req.outputs.add(name=o)
        return req

    def outputs(self, resp):
        """{name: numpy array} from a ModelInferResponse, raw or typed contents."""
        out = {}
        for i, t in enumerate(resp.outputs):
            dtype = NUMPY_TYPES[t.datatype]
            if len(resp.raw_output_contents):
                data = np.frombuffer(resp.raw_output_contents[i], dtype=dtype)
            else:
                data = np.array(list(getattr(t.contents, self.CONTENTS[t.datatype])), dtype=dtype)
            out[t.name] = data.reshape(list(t.shape))
        return out


@pytest.fixture(scope="session")
def g(tmp_path_factory):
    """grpcio stubs generated from our own proto, importable for the session."""
    grpc = pytest.importorskip("grpc")
    pytest.importorskip("grpc_tools")
    pb2, pb2_grpc = oipstubs.compile_stubs(tmp_path_factory.mktemp("pb"), PROTO_DIR)
    return Grpc(pb2, pb2_grpc, grpc)


@pytest.fixture(scope="session")
def samples_grpc(g, samples):
    channel, stub = g.stub(samples)
    yield stub
    channel.close()
