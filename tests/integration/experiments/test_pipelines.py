"""Experiments over pipelines through real daemons: seldon-scheduler, a seldon-agent +
seldon-server replica, seldon-router and a seldon-pipelinegateway, driven by the seldon
CLI. The scheduler's route table holds "<p>.pipeline" for every pipeline (its upstreams
the gateways), so an experiment with resourceType pipeline splits over them, through
"<e>.experiment" and through its default pipeline's own endpoint; the answer's
x-seldon-route names the step's model version and the pipeline that served
(":iris_1: :p1.pipeline:", as upstream's accumulated values), and a request sending it
back sticks to that pipeline.

Pipeline p1 calls iris (+10), p2 calls iris2 (+20): an answer shows which one ran.
"""
import os

import pytest

import cluster
from conftest import HOST, write
from test_router import ANSWERS, REQUEST, System, experiment_doc  # noqa: F401

GATEWAY = os.environ.get("SELDON_PIPELINEGATEWAY") or os.path.join(
    os.path.dirname(cluster.ROUTER), "..", "pipelinegateway", "seldon-pipelinegateway")

pytestmark = pytest.mark.skipif(
    not os.path.exists(cluster.AGENT) or not cluster.router_subscribes() or
    not os.path.exists(GATEWAY),
    reason="needs seldon-agent, seldon-pipelinegateway and a seldon-router with "
           "--scheduler-host")


def pipeline_doc(name, step):
    return ("apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n"
            f"  name: {name}\nspec:\n  steps:\n  - name: {step}\n"
            f"  output:\n    steps: [{step}]\n")


P1 = ":iris_1: :p1.pipeline:"
P2 = ":iris2_1: :p2.pipeline:"


@pytest.fixture(scope="module")
def psys(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline-experiments")
    s = System(tmp)
    s.gateway = cluster.Daemon("gw", [
        GATEWAY, "--scheduler-host", s.sched.route_target,
        "--router", f"{HOST}:{s.router.ports['port']}", "--host", HOST, "--port", "0",
        "--metrics-port", "0", "--name", "gw"])
    try:
        text = pipeline_doc("p1", "iris") + "---\n" + pipeline_doc("p2", "iris2")
        r = s.cli("load", "-f", write(tmp, "pipelines.yaml", text))
        assert r.code == 0, f"{r}\n{s.sched.stderr()}"
        for p in ("p1", "p2"):
            r = s.cli("pipeline", "status", p, "-w", "PipelineReady")
            assert r.code == 0, f"{r}\n{s.sched.stderr()}"
        yield s
    finally:
        s.gateway.stop()
        s.stop()
        cluster.kill_leftovers()


def answers_match(system, name, mode, header=None):
    """One answer through the router: (x-seldon-route, output data)."""
    args = ["model", "infer", name, REQUEST, "--inference-mode", mode, "--show-headers"]
    if header:
        args += ["--header", f"x-seldon-route={header}"]
    r = system.cli(*args)
    assert r.code == 0, f"{r}\n{system.router.stderr()}\n{system.gateway.stderr()}"
    route = [ln.split(": ", 1)[1].strip() for ln in r.err.splitlines()
             if ln.lower().startswith("x-seldon-route: ")]
    return (route[0] if route else None), r.json()["outputs"][0]["data"]


def test_pipeline_experiment_splits_sticks_and_gives_the_endpoint_back(psys):
    body = ("  resourceType: pipeline\n  default: p1\n  candidates:\n"
            "  - {name: p1, weight: 50}\n  - {name: p2, weight: 50}\n")
    r = psys.start("pe", body, "-w")
    assert r.code == 0, f"{r}\n{psys.sched.stderr()}"
    st = psys.cli("experiment", "status", "pe", "-w")
    assert st.code == 0 and st.json()["active"] is True, st
    # Through the experiment's own name and through the default pipeline's endpoint: both
    # pipelines serve, and x-seldon-route names the pipeline after its step's model.
    for name in ("pe.experiment", "p1.pipeline"):
        counts = psys.until_routes(name, 40, lambda c: set(c) == {P1, P2})
        assert sum(counts.values()) == 40, counts
    counts = psys.routes("pe.experiment", 400)
    assert set(counts) == {P1, P2} and 0.40 <= counts[P1] / 400 <= 0.60, counts
    # Each answer is the pipeline that x-seldon-route names, over REST and gRPC.
    seen = set()
    for mode in ("rest", "grpc"):
        for _ in range(40):
            route, data = answers_match(psys, "p1.pipeline", mode)
            assert route in (P1, P2), route
            assert data == (ANSWERS["iris"] if route == P1 else ANSWERS["iris2"]), (route, data)
            seen.add((mode, route))
            if len(seen) == 4 or (mode == "rest" and len(seen) == 2):
                break
    assert len(seen) == 4, seen
    # Sticky: a header naming a candidate pipeline pins it; -s sends the first answer's back.
    for mode in ("rest", "grpc"):
        counts = psys.routes("pe.experiment", 100, "--header", "x-seldon-route=:p2.pipeline:",
                             "--inference-mode", mode)
        assert counts == {P2: 100}, counts
        counts = psys.routes("p1.pipeline", 100, "-s", "--inference-mode", mode)
        assert len(counts) == 1, counts
    # Stopping gives p1's endpoint back; the experiment's name goes.
    r = psys.cli("experiment", "stop", "pe")
    assert r.code == 0, r
    psys.until_routes("p1.pipeline", 30, lambda c: c == {":iris_1:": 30})
    route, data = answers_match(psys, "p1.pipeline", "grpc")
    assert route == ":iris_1:" and data == ANSWERS["iris"], (route, data)
    r = psys.cli("model", "infer", "pe.experiment", REQUEST)
    assert r.code != 0, r
