"""Experiments in seldon up: the same split, sticky sessions, mirror and takeover, with the
whole system in one process (the ingress applies the router library's decision itself).

add10 (+10), add20 (+20) and mul10 (*10) answer differently, so an answer shows which
model made it; x-seldon-route names it too.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from conftest import CLI, GUARD, HOST, SOURCE, cli, write

sys.path.insert(0, os.path.join(SOURCE, "tests", "integration", "lib"))
import procs  # noqa: E402

UP = os.environ.get("SELDON_UP") or os.path.join(SOURCE, "build", "daemons", "up", "seldon-up")
pytestmark = pytest.mark.skipif(not os.path.exists(UP), reason="needs seldon-up")

REQUEST = json.dumps({"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [4],
                                  "data": [1, 2, 3, 4]}]})
ANSWERS = {"add10": [11, 12, 13, 14], "add20": [21, 22, 23, 24], "mul10": [10, 20, 30, 40]}


def model_doc(name):
    return ("apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n"
            f"  name: {name}\nspec:\n  storageUri: \"{SOURCE}/examples/models/{name}\"\n"
            "  requirements: [triton, python]\n")


class UpProc:
    def __init__(self, folder):
        self.folder = folder
        self.errpath = os.path.join(folder, "stderr")
        self.err = open(self.errpath, "wb")
        self.proc = subprocess.Popen(
            [UP, "--host", HOST, "--port", "0", "--scheduler-port", "0", "--metrics-port", "0",
             "--workers", "2", "--io-threads", "1", "--grace", "10000"],
            cwd=folder, stdout=subprocess.PIPE, stderr=self.err)
        line = procs.first_line(self.proc, GUARD)
        m = re.fullmatch(r"listening inference=(\d+) scheduler=(\d+) metrics=(-?\d+)",
                         line.strip())
        assert m, f"seldon-up did not start: {line!r}\n{self.stderr()}"
        self.port, self.sched, self.metrics = (int(x) for x in m.groups())

    def stderr(self):
        with open(self.errpath, "rb") as f:
            return f.read().decode(errors="replace")[-20000:]

    def cli(self, *args):
        class S:
            client_target = f"{HOST}:{self.sched}"
        return cli(*args, scheduler=S, infer=f"{HOST}:{self.port}")

    def infer_total(self, vname):
        """seldon_model_infer_total of a versioned model, summed over replicas and codes."""
        with urllib.request.urlopen(f"http://{HOST}:{self.metrics}/metrics", timeout=GUARD) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("seldon_model_infer_total{") and f'model="{vname}"' in line:
                total += float(line.rpartition(" ")[2])
        return total

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(GUARD)
        self.proc.stdout.close()
        self.err.close()
        assert rc == 0, self.stderr()


@pytest.fixture(scope="module")
def up():
    folder = tempfile.mkdtemp(prefix="up-experiments-")
    u = UpProc(folder)
    r = u.cli("load", "-f", write(_Path(folder), "models.yaml",
                                  "---\n".join(model_doc(n) for n in ANSWERS)),
              "-w", "ModelAvailable")
    assert r.code == 0, f"{r}\n{u.stderr()}"
    yield u
    u.stop()


class _Path(str):
    def __truediv__(self, other):
        return _Path(os.path.join(self, other))

    def write_text(self, text):
        with open(self, "w") as f:
            f.write(text)


def start(up, name, body, *flags):
    doc = ("apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata:\n"
           f"  name: {name}\nspec:\n{body}")
    return up.cli("experiment", "start", "-f", write(_Path(up.folder), f"{name}.yaml", doc),
                  *flags)


def routes(up, model, n, *flags):
    r = up.cli("model", "infer", model, REQUEST, "-i", str(n), *flags)
    assert r.code == 0, f"{r}\n{up.stderr()}"
    return r.json()["routes"]


def until_routes(up, model, n, done, *flags):
    deadline = time.monotonic() + GUARD
    while True:
        r = up.cli("model", "infer", model, REQUEST, "-i", str(n), *flags)
        if r.code == 0 and done(r.json()["routes"]):
            return r.json()["routes"]
        assert time.monotonic() < deadline, f"{r}\n{up.stderr()}"
        time.sleep(0.02)


def test_split_sticky_mirror_and_takeover(up):
    r = start(up, "ab", "  default: add10\n  candidates:\n  - {name: add10, weight: 75}\n"
                        "  - {name: add20, weight: 25}\n  mirror: {name: mul10, percent: 100}\n",
              "-w")
    assert r.code == 0, f"{r}\n{up.stderr()}"
    # In one process the table in force changes with the scheduler's state: once -w says
    # active, every request is split (and copied).
    base = up.infer_total("mul10_1")
    assert base == 0
    counts = routes(up, "add10", 2000)
    assert set(counts) == {":add10_1:", ":add20_1:"}, counts
    assert 0.72 <= counts[":add10_1:"] / 2000 <= 0.78, counts
    # gRPC, and every answer is the model x-seldon-route names
    counts = routes(up, "add10", 200, "--inference-mode", "grpc")
    assert set(counts) == {":add10_1:", ":add20_1:"}, counts
    for mode in ("rest", "grpc"):
        for route, model in ((":add10_1:", "add10"), (":add20_1:", "add20")):
            r = up.cli("model", "infer", "add10", REQUEST, "--inference-mode", mode,
                       "--header", f"x-seldon-route={route}", "--show-headers")
            assert r.code == 0 and r.json()["outputs"][0]["data"] == ANSWERS[model], r
            assert f"x-seldon-route: {route}" in r.err, r
        # sticky: the first answer's route pins the rest
        counts = routes(up, "add10", 100, "-s", "--inference-mode", mode)
        assert len(counts) == 1 and list(counts.values()) == [100], counts
    # The mirror got a copy of each of those 2000 + 200 + 2 * 102 requests, never an answer
    # to a caller (no :mul10_1: above).
    n = 2000 + 200 + 2 * (2 + 100)
    procs.wait_until(lambda: up.infer_total("mul10_1") - base >= n, GUARD,
                     lambda: f"{up.infer_total('mul10_1') - base} of {n}\n{up.stderr()}")
    assert up.infer_total("mul10_1") - base == n
    # <name>.experiment reaches it too
    counts = routes(up, "ab.experiment", 100)
    assert set(counts) <= {":add10_1:", ":add20_1:"}, counts
    # Stopping gives add10 its endpoint back.
    assert up.cli("experiment", "stop", "ab").code == 0
    until_routes(up, "add10", 50, lambda c: c == {":add10_1:": 50})
    r = up.cli("model", "infer", "ab.experiment", REQUEST)
    assert r.code == 1 and "404" in r.err, r


def test_pipeline_experiment_splits_sticks_and_gives_the_endpoint_back(up):
    """resourceType pipeline in one process: pa (add10) and pb (add20) split 50/50 through
    pe.experiment and pa's own endpoint, REST and gRPC; a header naming a pipeline pins it;
    stopping gives pa its endpoint back. The step's x-seldon-route names what ran."""
    docs = "---\n".join(
        "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n"
        f"  name: {p}\nspec:\n  steps:\n  - name: {m}\n  output:\n    steps: [{m}]\n"
        for p, m in (("pa", "add10"), ("pb", "add20")))
    r = up.cli("load", "-f", write(_Path(up.folder), "pipelines.yaml", docs))
    assert r.code == 0, f"{r}\n{up.stderr()}"
    for p in ("pa", "pb"):
        r = up.cli("pipeline", "status", p, "-w", "PipelineReady")
        assert r.code == 0, f"{r}\n{up.stderr()}"
    r = start(up, "pe", "  resourceType: pipeline\n  default: pa\n  candidates:\n"
                        "  - {name: pa, weight: 50}\n  - {name: pb, weight: 50}\n", "-w")
    assert r.code == 0, f"{r}\n{up.stderr()}"
    both = {":add10_1:", ":add20_1:"}
    for name in ("pe.experiment", "pa.pipeline"):
        for mode in ("rest", "grpc"):
            counts = routes(up, name, 200, "--inference-mode", mode)
            assert set(counts) == both, (name, mode, counts)
            assert 0.35 <= counts[":add10_1:"] / 200 <= 0.65, counts
    # Every answer is the pipeline's whose step x-seldon-route names.
    for mode in ("rest", "grpc"):
        for _ in range(20):
            r = up.cli("model", "infer", "pa.pipeline", REQUEST, "--inference-mode", mode,
                       "--show-headers")
            assert r.code == 0, r
            data = r.json()["outputs"][0]["data"]
            want = ANSWERS["add10"] if "x-seldon-route: :add10_1:" in r.err else ANSWERS["add20"]
            assert data == want, r
        # sticky: a header naming a candidate pipeline pins it
        counts = routes(up, "pe.experiment", 100, "--header", "x-seldon-route=:pb.pipeline:",
                        "--inference-mode", mode)
        assert counts == {":add20_1:": 100}, counts
        counts = routes(up, "pa.pipeline", 100, "--header", "x-seldon-route=:pa.pipeline:",
                        "--inference-mode", mode)
        assert counts == {":add10_1:": 100}, counts
    assert up.cli("experiment", "stop", "pe").code == 0
    until_routes(up, "pa.pipeline", 50, lambda c: c == {":add10_1:": 50})
    counts = routes(up, "pa.pipeline", 50, "--inference-mode", "grpc")
    assert counts == {":add10_1:": 50}, counts
    r = up.cli("model", "infer", "pe.experiment", REQUEST)
    assert r.code == 1, r
