"""The user's side of a seldon-up, shared by the up and upkafka suites: the real seldon
CLI ($SELDON_CLI) run in seldon up's folder, curl for REST, grpcio stubs compiled from proto/
for gRPC, and the request bodies of the pipelines suite (tests/integration/up/pipelines).
Deadlines only guard against hangs; no assertion depends on time.
"""
import json
import os
import subprocess

import pytest

import oipstubs

SOURCE = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
CLI = os.environ.get("SELDON_CLI") or os.path.join(SOURCE, "build", "daemons", "cli", "seldon")
PROTO_DIR = os.environ.get("SELDON_PROTO_DIR") or os.path.join(SOURCE, "proto")
HOST = "127.0.0.1"
GUARD = 60.0


class UpClient:
    """cli() and curl() against a seldon-up; self.folder (its working directory),
    self.scheduler (its scheduler port) and self.target (HOST:inference port) are the
    subclass's."""

    def cli(self, *args, timeout=GUARD):
        """Runs the seldon CLI in the folder against this seldon-up: (rc, stdout, stderr)."""
        cmd = [CLI, "--scheduler-host", f"{HOST}:{self.scheduler}", "--inference-host",
               self.target, *[str(a) for a in args]]
        p = subprocess.run(cmd, cwd=self.folder, capture_output=True, timeout=timeout)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def curl(self, path, body=None, headers=()):
        """A REST call with curl: (status, body, headers text)."""
        cmd = ["curl", "-s", "-S", "-D", "-", "-o", "-", "--max-time", str(int(GUARD)),
               f"http://{self.target}{path}"]
        for h in headers:
            cmd += ["-H", h]
        if body is not None:
            cmd += ["-H", "content-type: application/json", "--data-binary", body]
        p = subprocess.run(cmd, capture_output=True, timeout=GUARD + 5)
        assert p.returncode == 0, p.stderr.decode()
        out = p.stdout.decode(errors="replace")
        head, _, rest = out.partition("\r\n\r\n")
        return int(head.split()[1]), rest, head.lower()


def outputs(body):
    return {o["name"]: o["data"] for o in json.loads(body)["outputs"]}


@pytest.fixture(scope="session")
def oip(tmp_path_factory):
    return oipstubs.grpc_stubs(tmp_path_factory.mktemp("oip_stubs"), PROTO_DIR)


def grpc_stub(g, target):
    channel = g.grpc.insecure_channel(target)
    g.grpc.channel_ready_future(channel).result(timeout=GUARD)
    return channel, g.pb2_grpc.GRPCInferenceServiceStub(channel)


# The pipelines suite's request bodies.
SIMPLE = {"inputs": [
    {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(1, 17))},
    {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]}
V4 = [1, 2, 3, 4]


def f32(name, values, shape=None):
    return {"name": name, "datatype": "FP32", "shape": shape or [len(values)], "data": values}


def choice(c):
    return json.dumps({"inputs": [{"name": "CHOICE", "datatype": "INT32", "shape": [1],
                                   "data": [c]}, f32("INPUT0", V4), f32("INPUT1", V4)]})
