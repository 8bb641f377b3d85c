"""Helpers for the Python and TorchScript runtime tests.

The server side reuses tests/integration/server/conftest.py (the Server
process, REST helpers), loaded here under another name; gRPC goes through
grpcio stubs compiled from proto/ at test time. Models are made by the tests
with Debian's packages (/usr/bin/python3 runs pytest).

Deadlines only guard against hangs; no assertion depends on time.
"""
import importlib.util
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration", "lib"))


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


srv = _load("pyrt_server_helpers",
            os.path.join(SOURCE, "tests", "integration", "server", "conftest.py"))
import oipstubs  # noqa: E402

RUNTIME_PATH = srv.RUNTIME_PATH


def plugin(name):
    """Skips the test when libseldon-runtime-<name>.so was not built."""
    path = os.path.join(RUNTIME_PATH, f"libseldon-runtime-{name}.so")
    if not os.path.exists(path):
        pytest.skip(f"{path} was not built")
    return path


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_servers():
    yield
    for proc in srv.STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def g(tmp_path_factory):
    return oipstubs.grpc_stubs(tmp_path_factory.mktemp("stubs"), srv.PROTO_DIR)


def grpc_stub(g, server):
    channel = g.grpc.insecure_channel(server.grpc_target)
    g.grpc.channel_ready_future(channel).result(timeout=srv.GUARD)
    return g.pb2_grpc.GRPCInferenceServiceStub(channel)


def grpc_outputs(g, response):
    """{name: array} from a ModelInferResponse (raw contents)."""
    import numpy as np
    out = {}
    for i, t in enumerate(response.outputs):
        dtype = srv.NUMPY_TYPES[t.datatype]
        out[t.name] = np.frombuffer(response.raw_output_contents[i], dtype=dtype).reshape(
            list(t.shape))
    return out


def grpc_request(g, model, inputs, outputs=(), parameters=None):
    """A ModelInferRequest with raw contents: inputs = [(name, array)]."""
    import numpy as np
    req = g.pb2.ModelInferRequest(model_name=model)
    for name, array in inputs:
        array = np.ascontiguousarray(array)
        t = req.inputs.add()
        t.name = name
        t.datatype = srv.DATATYPES[array.dtype]
        t.shape.extend(array.shape)
        req.raw_input_contents.append(array.tobytes())
    for name in outputs:
        req.outputs.add().name = name
    for k, v in (parameters or {}).items():
        req.parameters[k].string_param = v
    return req
