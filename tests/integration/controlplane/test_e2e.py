"""The whole control plane with real daemons: seldon-scheduler, two seldon-server +
seldon-agent pairs with different capabilities, and seldon-router fed by the
scheduler's RouteService. Models are applied with the seldon CLI and inferred
through the router with the CLI, over REST and gRPC.

Skipped when seldon-agent, or a seldon-router that takes --scheduler-host, is not
built in this tree.
"""
import json
import os
import sys

import pytest

from conftest import HOST, SOURCE, cli, wait_status, write

sys.path.insert(0, os.path.join(SOURCE, "tests", "integration", "lib"))
import cluster  # noqa: E402
from cluster import Replica, model_source, sh, start_router, until  # noqa: E402,F401

pytestmark = pytest.mark.skipif(
    not os.path.exists(cluster.AGENT) or not os.path.exists(sh.SERVER)
    or not cluster.router_subscribes(),
    reason="needs seldon-agent, seldon-server and a seldon-router with --scheduler-host")


@pytest.fixture(scope="module", autouse=True)
def _no_leftover_daemons():
    yield
    cluster.kill_leftovers()


def model_doc(name, uri, requirements):
    reqs = "".join(f"  - {r}\n" for r in requirements)
    return ("apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n"
            f"  name: {name}\nspec:\n  storageUri: \"{uri}\"\n  memory: 1Mi\n"
            f"  requirements:\n{reqs}")


REQUEST = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                  "data": [1, 2, 3]}]})


def answer(r):
    assert r.code == 0, r
    return r.json()["outputs"][0]["data"]


def test_models_placed_loaded_and_routed(scheduler, tmp_path):
    sklearn = Replica(tmp_path, scheduler, "mlserver", ["sklearn", "mlserver"], "512Mi")
    tf = Replica(tmp_path, scheduler, "triton", ["tensorflow", "triton"], "512Mi")
    router = start_router(tmp_path, scheduler)
    infer_host = f"{HOST}:{router.ports['port']}"
    try:
        text = (model_doc("add10", model_source(tmp_path, "add10", 10), ["sklearn"]) + "---\n" +
                model_doc("add20", model_source(tmp_path, "add20", 20), ["tensorflow"]))
        r = cli("load", "-f", write(tmp_path, "models.yaml", text), "-w", "ModelAvailable",
                scheduler=scheduler)
        assert r.code == 0, f"{r}\n{scheduler.stderr()}\n{sklearn.agent.stderr()}"
        assert wait_status(scheduler, "add10", "ModelAvailable")["versions"][0][
            "serverName"] == "mlserver"
        assert wait_status(scheduler, "add20", "ModelAvailable")["versions"][0][
            "serverName"] == "triton"
        # Each server holds the version it was given, and only that.
        assert os.path.isdir(sklearn.models / "add10_1") and not os.path.exists(
            sklearn.models / "add20_1")
        assert os.path.isdir(tf.models / "add20_1")
        # Through the router, once its table has the routes: REST and gRPC.
        r = until(lambda: cli("model", "infer", "add10", REQUEST, infer=infer_host),
                  lambda r: r.code == 0, router)
        assert answer(r) == [11, 12, 13]
        assert answer(cli("model", "infer", "add20", REQUEST, infer=infer_host)) == [21, 22, 23]
        r = cli("model", "infer", "add10", REQUEST, "--inference-mode", "grpc", "-i", "20",
                infer=infer_host)
        assert r.code == 0 and r.json()["success"] == 20, r
        # The scheduler restarts (same --state-dir): the agents reconnect, nothing is loaded
        # again, the router served on meanwhile, and a model loaded afterwards is routed.
        loads = [rep.agent.count("loaded on the server") for rep in (sklearn, tf)]
        assert loads == [1, 1], loads
        scheduler.restart()
        r = cli("model", "infer", "add10", REQUEST, "-i", "20", infer=infer_host)
        assert r.code == 0 and r.json()["success"] == 20, r
        until(lambda: scheduler.metric("seldon_scheduler_ready"), lambda v: v == 1, scheduler)
        wait_status(scheduler, "add10", "ModelAvailable")
        wait_status(scheduler, "add20", "ModelAvailable")
        r = cli("model", "load", "-f",
                write(tmp_path, "add30.yaml",
                      model_doc("add30", model_source(tmp_path, "add30", 30), ["sklearn"])),
                "-w", "ModelAvailable", scheduler=scheduler)
        assert r.code == 0, r
        r = until(lambda: cli("model", "infer", "add30", REQUEST, infer=infer_host),
                  lambda r: r.code == 0, router)
        assert answer(r) == [31, 32, 33]
        loads = [rep.agent.count("loaded on the server") for rep in (sklearn, tf)]
        assert loads == [2, 1], loads  # add30 only
        assert scheduler.metric("seldon_scheduler_commands_sent_total", op="load") == 1
        # Unloaded: gone from the server and from the routes.
        r = cli("model", "unload", "add20", "-w", "ModelTerminated", scheduler=scheduler)
        assert r.code == 0, r
        r = until(lambda: cli("model", "infer", "add20", REQUEST, infer=infer_host),
                  lambda r: r.code != 0, router)
        assert "404" in r.err, r
        assert answer(cli("model", "infer", "add10", REQUEST, infer=infer_host)) == [11, 12, 13]
    finally:
        router.stop()
        sklearn.stop()
        tf.stop()


def test_scheduler_killed_during_traffic(scheduler, tmp_path):
    """SIGKILL of the scheduler in the middle of 2,000 requests through the router: none
    fails; after its restart a new model is placed, loaded and routed."""
    rep = Replica(tmp_path, scheduler, "mlserver", ["sklearn"], "512Mi")
    router = start_router(tmp_path, scheduler)
    port = router.ports["port"]
    try:
        r = cli("model", "load", "-f",
                write(tmp_path, "add10.yaml",
                      model_doc("add10", model_source(tmp_path, "add10", 10), ["sklearn"])),
                "-w", "ModelAvailable", scheduler=scheduler)
        assert r.code == 0, r
        until(lambda: sh.request(port, "GET", "/v2/models/add10")[0], lambda s: s == 200,
              router)
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}
        failures, killed = [], False
        for i in range(2000):
            status, _, out = sh.request(port, "POST", "/v2/models/add10/infer", body=body)
            if status != 200 or json.loads(out)["outputs"][0]["data"] != [11]:
                failures.append((i, status, out[:200]))
            if i == 500:
                scheduler.proc.kill()  # SIGKILL: no goodbye to anyone
                scheduler.proc.wait()
                killed = True
        assert killed and failures == [], failures[:5]
        scheduler.proc.stdout.close()
        scheduler.start((scheduler.client, scheduler.agent, scheduler.route, scheduler.metrics))
        until(lambda: scheduler.metric("seldon_scheduler_ready"), lambda v: v == 1, scheduler)
        r = cli("model", "load", "-f",
                write(tmp_path, "add20.yaml",
                      model_doc("add20", model_source(tmp_path, "add20", 20), ["sklearn"])),
                "-w", "ModelAvailable", scheduler=scheduler)
        assert r.code == 0, r
        r = until(lambda: cli("model", "infer", "add20", REQUEST, infer=f"{HOST}:{port}"),
                  lambda r: r.code == 0, router)
        assert answer(r) == [21, 22, 23]
        assert answer(cli("model", "infer", "add10", REQUEST, infer=f"{HOST}:{port}")) == [
            11, 12, 13]
        assert rep.agent.count("loaded on the server") == 2  # add10 once, add20
    finally:
        router.stop()
        rep.stop()
