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
import urllib.request

import pytest

from conftest import CLI, GUARD, HOST, SOURCE, cli, write

sys.path.insert(0, os.path.join(SOURCE, "tests", "integration", "lib"))
import procs  # noqa: E402

UP = os.environ.get("SELDON_UP") or os.path.join(SOURCE, "build", "daemons", "up", "seldon-up")
pytestmark = pytest.mark.skipif(not os.path.exists(UP), reason="needs seldon-up")

REQUEST = json.dumps({"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [4],
                                  "data": [1, 2, 3, 4]}]})
# A pipeline experiment's answers: the step's version, then the pipeline chosen.
PA = ":add10_1: :pa.pipeline:"
PB = ":add20_1: :pb.pipeline:"
ANSWERS = {"add10": [11, 12, 13, 14], "add20": [21, 22, 23, 24], "mul10": [10, 20, 30, 40]}


def model_doc(name):
    return ("apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n"
            f"  name: {name}\nspec:\n  storageUri: \"{SOURCE}/examples/models/{name}\"\n"
            "  requirements: [triton, python]\n")


class UpProc:
    def __init__(self, folder, *extra):
        self.folder = folder
        self.errpath = os.path.join(folder, "stderr")
        self.err = open(self.errpath, "wb")
        self.proc = subprocess.Popen(
            [UP, "--host", HOST, "--port", "0", "--scheduler-port", "0", "--metrics-port", "0",
             "--workers", "2", "--io-threads", "1", "--grace", "10000", *extra],
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
    """n requests at a time until their routes' counts satisfy done (the table in force
    changes on its own after an experiment's change)."""
    def counts():
        r = up.cli("model", "infer", model, REQUEST, "-i", str(n), *flags)
        return r, r.json()["routes"] if r.code == 0 else None
    return procs.wait_value(
        counts, lambda rc: rc[1] is not None and done(rc[1]), GUARD,
        lambda rc: f"{model}: the routes never settled: {rc[0]}\n{up.stderr()}")[1]


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
    both = {PA, PB}
    for name in ("pe.experiment", "pa.pipeline"):
        for mode in ("rest", "grpc"):
            counts = routes(up, name, 200, "--inference-mode", mode)
            assert set(counts) == both, (name, mode, counts)
            assert 0.35 <= counts[PA] / 200 <= 0.65, counts
    # Every answer is the pipeline's that x-seldon-route names: its step's version, then
    # the pipeline the experiment chose, as seldon-router says it.
    for mode in ("rest", "grpc"):
        for _ in range(20):
            r = up.cli("model", "infer", "pa.pipeline", REQUEST, "--inference-mode", mode,
                       "--show-headers")
            assert r.code == 0, r
            data = r.json()["outputs"][0]["data"]
            want = ANSWERS["add10"] if f"x-seldon-route: {PA}" in r.err else ANSWERS["add20"]
            assert f"x-seldon-route: {PA}" in r.err or f"x-seldon-route: {PB}" in r.err, r
            assert data == want, r
        # sticky: a header naming a candidate pipeline pins it
        counts = routes(up, "pe.experiment", 100, "--header", "x-seldon-route=:pb.pipeline:",
                        "--inference-mode", mode)
        assert counts == {PB: 100}, counts
        counts = routes(up, "pa.pipeline", 100, "--header", "x-seldon-route=:pa.pipeline:",
                        "--inference-mode", mode)
        assert counts == {PA: 100}, counts
        # sticky with -s: the first answer's value, sent back, pins its pipeline
        for name in ("pe.experiment", "pa.pipeline"):
            counts = routes(up, name, 100, "-s", "--inference-mode", mode)
            assert len(counts) == 1 and set(counts) <= both and list(counts.values()) == [100], \
                (name, mode, counts)
        # the whole value of an answer sent back pins too (accumulated tokens)
        counts = routes(up, "pe.experiment", 50, "--header", f"x-seldon-route={PA}",
                        "--inference-mode", mode)
        assert counts == {PA: 50}, counts
    assert up.cli("experiment", "stop", "pe").code == 0
    until_routes(up, "pa.pipeline", 50, lambda c: c == {":add10_1:": 50})
    counts = routes(up, "pa.pipeline", 50, "--inference-mode", "grpc")
    assert counts == {":add10_1:": 50}, counts
    r = up.cli("model", "infer", "pe.experiment", REQUEST)
    assert r.code == 1, r


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    import oipstubs
    return oipstubs.grpc_stubs(tmp_path_factory.mktemp("oip_stubs"),
                               os.environ.get("SELDON_PROTO_DIR") or os.path.join(SOURCE, "proto"))


def test_pipeline_experiment_mirror_and_message_name(up, stubs):
    """A pipeline experiment's mirror (pc, mul10, 100%) receives a copy of every request,
    REST, gRPC and a gRPC stream, and no caller sees its answer; a gRPC call that names the
    experiment only in the message's model_name (no seldon-model metadata) is split too,
    and sticks to the pipeline its x-seldon-route metadata names."""
    from oipstubs import infer_request, output_values
    docs = "---\n".join(
        "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n"
        f"  name: {p}\nspec:\n  steps:\n  - name: {m}\n  output:\n    steps: [{m}]\n"
        for p, m in (("pa", "add10"), ("pb", "add20"), ("pc", "mul10")))
    r = up.cli("load", "-f", write(_Path(up.folder), "pipelines3.yaml", docs))
    assert r.code == 0, f"{r}\n{up.stderr()}"
    for p in ("pa", "pb", "pc"):
        r = up.cli("pipeline", "status", p, "-w", "PipelineReady")
        assert r.code == 0, f"{r}\n{up.stderr()}"
    r = start(up, "pm", "  resourceType: pipeline\n  candidates:\n"
                        "  - {name: pa, weight: 50}\n  - {name: pb, weight: 50}\n"
                        "  mirror: {name: pc, percent: 100}\n", "-w")
    assert r.code == 0, f"{r}\n{up.stderr()}"
    base = up.infer_total("mul10_1")
    n = 0
    for mode in ("rest", "grpc"):
        counts = routes(up, "pm.experiment", 100, "--inference-mode", mode)
        assert set(counts) == {PA, PB}, (mode, counts)
        n += 100
    # A ModelStreamInfer call through the experiment: each of its requests is copied.
    channel = stubs.grpc.insecure_channel(f"{HOST}:{up.port}")
    stub = stubs.pb2_grpc.GRPCInferenceServiceStub(channel)
    tensors = [("INPUT", "FP32", [4], [1, 2, 3, 4])]
    reqs = [infer_request(stubs, tensors, rid=f"s{i}") for i in range(5)]
    answers = list(stub.ModelStreamInfer(iter(reqs), metadata=(("seldon-model", "pm.experiment"),),
                                         timeout=GUARD))
    assert len(answers) == 5 and all(not a.error_message for a in answers), answers
    n += 5
    # The message's model_name alone names the experiment: split, and sticky by metadata.
    seen = set()
    for i in range(40):
        req = infer_request(stubs, tensors, rid=f"m{i}")
        req.model_name = "pm.experiment"
        resp, call = stub.ModelInfer.with_call(req, timeout=GUARD)
        md = dict(call.initial_metadata())
        route = md.get("x-seldon-route")
        assert route in (PA, PB), md
        want = ANSWERS["add10"] if route == PA else ANSWERS["add20"]
        assert output_values(resp, 0) == want, (route, resp)
        seen.add(route)
    n += 40
    assert seen == {PA, PB}, seen
    for i in range(20):
        req = infer_request(stubs, tensors, rid=f"k{i}")
        req.model_name = "pm.experiment"
        resp, call = stub.ModelInfer.with_call(
            req, metadata=(("x-seldon-route", ":pb.pipeline:"),), timeout=GUARD)
        assert dict(call.initial_metadata()).get("x-seldon-route") == PB
        assert output_values(resp, 0) == ANSWERS["add20"], resp
    n += 20
    channel.close()
    # The copies arrive on their own; none was an answer (no :mul10_1: above).
    procs.wait_value(lambda: up.infer_total("mul10_1") - base, lambda v: v >= n, GUARD,
                     lambda v: f"the mirror pipeline's model ran {v} times of {n}\n{up.stderr()}")
    assert up.infer_total("mul10_1") - base == n
    assert up.cli("experiment", "stop", "pm").code == 0


def test_sticky_versions_during_a_rollout(tmp_path):
    """A rollout that stays under way (version 2 of sv loaded on one of two replicas, the
    other's load held by the test): the route lists both versions. :sv_1: keeps requests on
    version 1 and :sv_2: on version 2, REST and gRPC, by header and with -s; once the
    rollout ends (version 1 gone), :sv_1: pins nothing and version 2 answers."""
    import fcntl
    folder = str(tmp_path)
    gate = tmp_path / "gate"
    gate.write_text("")
    held = open(gate, "w")
    fcntl.flock(held, fcntl.LOCK_EX)  # the second load of version 2 waits for this
    u = UpProc(folder, "--servers", "2")
    try:
        once = tmp_path / "once"
        once.mkdir()
        (once / "model-settings.json").write_text(json.dumps(
            {"name": "sv", "implementation": "libseldon-test-once.so",
             "parameters": {"extra": {"gate": str(gate), "marker": str(tmp_path / "marker")}}}))
        v1 = (f"apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: sv\n"
              f"spec:\n  storageUri: \"{SOURCE}/examples/models/add10\"\n  replicas: 2\n")
        r = u.cli("load", "-f", write(_Path(folder), "sv1.yaml", v1), "-w", "ModelAvailable")
        assert r.code == 0, f"{r}\n{u.stderr()}"
        assert routes(u, "sv", 20) == {":sv_1:": 20}
        r = u.cli("load", "-f", write(_Path(folder), "sv2.yaml",
                                      v1.replace(f"{SOURCE}/examples/models/add10", str(once))))
        assert r.code == 0, f"{r}\n{u.stderr()}"
        # Version 2 serves on one replica: a request pinned to it gets it.
        procs.wait_value(lambda: routes(u, "sv", 20, "--header", "x-seldon-route=:sv_2:"),
                         lambda c: c == {":sv_2:": 20}, GUARD,
                         lambda c: f"version 2 never served a pinned request: {c}\n{u.stderr()}")
        identity = [1, 2, 3, 4]
        for mode in ("rest", "grpc"):
            # Unpinned: each replica's newest version, so both answer during the rollout.
            counts = routes(u, "sv", 100, "--inference-mode", mode)
            assert set(counts) == {":sv_1:", ":sv_2:"}, (mode, counts)
            for route, want in ((":sv_1:", ANSWERS["add10"]), (":sv_2:", identity)):
                counts = routes(u, "sv", 100, "--header", f"x-seldon-route={route}",
                                "--inference-mode", mode)
                assert counts == {route: 100}, (mode, route, counts)
                r = u.cli("model", "infer", "sv", REQUEST, "--inference-mode", mode,
                          "--header", f"x-seldon-route={route}", "--show-headers")
                assert r.code == 0 and r.json()["outputs"][0]["data"] == want, r
                assert f"x-seldon-route: {route}" in r.err, r
            # -s: the first answer's version holds for the rest
            counts = routes(u, "sv", 100, "-s", "--inference-mode", mode)
            assert len(counts) == 1 and list(counts.values()) == [100], (mode, counts)
        # The rollout ends: version 1 leaves, and a pin to it falls back to version 2.
        fcntl.flock(held, fcntl.LOCK_UN)
        procs.wait_value(lambda: routes(u, "sv", 20, "--header", "x-seldon-route=:sv_1:"),
                         lambda c: c == {":sv_2:": 20}, GUARD,
                         lambda c: f"version 1 still answers: {c}\n{u.stderr()}")
    finally:
        held.close()
        u.stop()
