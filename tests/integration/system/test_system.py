"""Issue 12's system tests on one started system: a seldon-scheduler; two server replicas
with different capabilities and memory,

    mlserver/0: mlserver, sklearn, xgboost, python; 64Mi; an rclone config with an alias
                remote `models:` (--rclone-config)
    triton/0:   triton, tensorflow, python; 4Mi with 100% overcommit (8Mi placeable)

and a seldon-router fed by the scheduler. Models are applied with `seldon load -f` and
answered through the router over REST (curl, http.client) and gRPC (grpcio).

Each test uses its own model names; the memory they claim on triton/0 adds up to at most
its 8Mi, whatever order they run in.
"""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import (SOURCE, Loop, System, add_source, curl_infer, grpc_infer,
                      grpc_stub, model_doc, rest_infer, sh, until, wait_status, write)


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("system")
    remote = tmp / "remote"
    remote.mkdir()
    rclone_conf = tmp / "rclone.conf"
    rclone_conf.write_text(f"[models]\ntype = alias\nremote = {remote}\n")
    s = System(tmp, [
        dict(server_name="mlserver", capabilities=["mlserver", "sklearn", "xgboost", "python"],
             memory="64Mi", extra=["--rclone-config", rclone_conf]),
        dict(server_name="triton", capabilities=["triton", "tensorflow", "python"],
             memory="4Mi", extra=["--overcommit-percent", "100"]),
    ])
    s.remote = remote
    s.src = tmp / "src"
    yield s
    s.stop()


def placed(system, model):
    """(server, [replica indexes]) of the model's newest version."""
    v = system.status(model)["versions"][0]
    return v["serverName"], sorted(int(i) for i in v["modelReplicaState"])


def test_placement_by_requirements_memory_and_pin(system, g):
    src = system.src
    docs = [
        model_doc("p-sk", add_source(src, "p-sk", 1), ["sklearn"], "1Mi"),
        model_doc("p-tf", add_source(src, "p-tf", 2), ["tensorflow"], "1Mi"),
        # Both servers run python; only mlserver/0 has room for 16Mi (triton/0 offers 8Mi).
        model_doc("p-big", add_source(src, "p-big", 3), ["python"], "16Mi"),
        # Both fit: unpinned goes where most memory is free, the pin wins over that.
        model_doc("p-free", add_source(src, "p-free", 4), ["python"], "1Mi"),
        model_doc("p-pin", add_source(src, "p-pin", 5), ["python"], "1Mi", server="triton"),
    ]
    system.apply("placement.yaml", "---\n".join(docs))
    want = {"p-sk": "mlserver", "p-tf": "triton", "p-big": "mlserver", "p-free": "mlserver",
            "p-pin": "triton"}
    for model, server in want.items():
        assert placed(system, model) == (server, [0]), system.status(model)
        # The versioned folder is on that server's replica only.
        for rep in system.replicas:
            held = os.path.isdir(rep.models / f"{model}_1")
            assert held == (rep.name == server), (model, rep.name)
    # `seldon server status` agrees: each replica lists its models.
    for server, models in (("triton", {"p-tf_1", "p-pin_1"}),
                           ("mlserver", {"p-sk_1", "p-big_1", "p-free_1"})):
        r = system.cli("server", "status", server)
        assert r.code == 0, r
        held = set(r.json()["resources"][0]["models"])
        assert models <= held and not (held & {m + "_1" for m in want} - models), r.out

    constants = {"p-sk": 1, "p-tf": 2, "p-big": 3, "p-free": 4, "p-pin": 5}
    system.wait_routed("p-pin", [1.0], [6.0])
    channel, stub = grpc_stub(g, system.port)
    try:
        for model, c in constants.items():
            # REST through the router with curl, gRPC with grpcio, on the same port.
            status, doc = curl_infer(system.port, model, [1, 2, 3])
            assert status == 200, doc
            assert doc["outputs"][0]["data"] == [1 + c, 2 + c, 3 + c], doc
            assert doc["model_name"] == f"{model}_1", doc
            assert grpc_infer(g, stub, model, [10, 20]) == [10 + c, 20 + c]
    finally:
        channel.close()
    # The CLI's infer, over both protocols.
    for mode in ("rest", "grpc"):
        r = system.cli("model", "infer", "p-tf", json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [7]}]}),
            "--inference-mode", mode)
        assert r.code == 0, r
        assert r.json()["outputs"][0]["data"] == [9], r


def test_schedule_failed_and_bad_manifest(system):
    src = system.src
    system.apply("unsatisfiable.yaml", "---\n".join([
        model_doc("f-gpu", add_source(src, "f-gpu", 1), ["sklearn", "gpu-a100"]),
        model_doc("f-mem", add_source(src, "f-mem", 1), ["sklearn"], "1Gi"),
    ]), wait=None)
    v = wait_status(system.scheduler, "f-gpu", "ScheduleFailed")["versions"][0]
    assert "gpu-a100" in v["state"]["reason"], v
    v = wait_status(system.scheduler, "f-mem", "ScheduleFailed")["versions"][0]
    assert "memory" in v["state"]["reason"], v
    # Waiting for ModelAvailable ends with the failure and its reason.
    path = os.path.join(str(system.tmp), "unsatisfiable.yaml")
    r = system.cli("model", "status", "-f", path, "-w", "ModelAvailable", "-t", "1")
    assert r.code != 0 and "gpu-a100" in r.err, r
    # Nothing was sent to an agent for them.
    for rep in system.replicas:
        assert not os.path.exists(rep.models / "f-gpu_1")

    # A misspelled field in the second document: refused by the CLI, field and document
    # named, and nothing applied (not even the good first document).
    bad = (model_doc("f-good", add_source(src, "f-good", 1), ["sklearn"]) + "---\n" +
           model_doc("f-bad", add_source(src, "f-bad", 1), ["sklearn"]).replace(
               "storageUri", "storageUrl"))
    r = system.cli("load", "-f", write(system.tmp, "bad.yaml", bad))
    assert r.code != 0, r
    assert "storageUrl" in r.err and "document 2" in r.err, r
    assert "spec" in r.err, r
    assert system.cli("model", "status", "f-good").code != 0
    assert system.cli("model", "status", "f-bad").code != 0
    # Replica bounds: min <= replicas <= max.
    bounds = model_doc("f-bounds", add_source(src, "f-bounds", 1), ["sklearn"], replicas=1) + \
        "  minReplicas: 2\n"
    r = system.cli("load", "-f", write(system.tmp, "bounds.yaml", bounds))
    assert r.code != 0 and "minReplicas" in r.err, r



def test_rollout_under_traffic(system, g):
    """add10 then add20 under one name: a request loop through the router (REST and
    gRPC) during the rollout has zero failures, and the answers switch to version 2."""
    src = system.src
    mlserver = system.replica("mlserver")
    system.apply("r-v1.yaml", model_doc("r-model", add_source(src, "r-add10", 10), ["sklearn"]))
    system.wait_routed("r-model", [1.0], [11.0])
    rest = Loop(system.port, "r-model", [1.0], least=1000)
    grpc = Loop(system.port, "r-model", [1.0], least=200, g=g)
    try:
        old_rest = rest.wait_answer([11.0])
        old_grpc = grpc.wait_answer([11.0])
        # Version 2: a new storageUri is a spec change.
        system.apply("r-v2.yaml", model_doc("r-model", add_source(src, "r-add20", 20),
                                            ["sklearn"]))
        v = wait_status(system.scheduler, "r-model", "ModelAvailable")["versions"][0]
        assert v["version"] == 2, v
        new_rest = rest.wait_answer([21.0])
        new_grpc = grpc.wait_answer([21.0])
        # Version 1 goes only once version 2 is available; the loops run past its unload.
        mlserver.agent.wait_log("UNLOAD r-model_1")
        until(lambda: os.path.exists(mlserver.models / "r-model_1"), lambda e: not e,
              mlserver.agent)
        after_rest, after_grpc = rest.sent, grpc.sent
        rest.wait_sent(after_rest + 50)
        grpc.wait_sent(after_grpc + 20)
    finally:
        rest.stop()
        grpc.stop()
    for loop, old, new, after in ((rest, old_rest, new_rest, after_rest),
                                  (grpc, old_grpc, new_grpc, after_grpc)):
        assert loop.failures == [], (loop.failures[:10], system.router.stderr())
        assert old < new < after < loop.sent
        assert {tuple(a) for _, a in loop.answers} == {(11.0,), (21.0,)}
        # After version 1 was unloaded, only version 2 answers.
        assert all(a == [21.0] for i, a in loop.answers if i >= after), loop.answers[after:]
    assert rest.sent >= 1000 and grpc.sent >= 200
    versions = system.status("r-model")["versions"]
    assert [v["version"] for v in versions if v["state"]["state"] == "ModelAvailable"] == [2]


def _loads(system):
    return [(r.loads(), r.server_loads()) for r in system.replicas]


def _models(system):
    r = system.cli("model", "list")
    assert r.code == 0, r
    return sorted(r.json()["models"], key=lambda m: m["name"])


def test_scheduler_restart_reloads_nothing(system):
    src = system.src
    system.apply("s-before.yaml", "---\n".join([
        model_doc("s-sk", add_source(src, "s-sk", 40), ["sklearn"]),
        model_doc("s-tf", add_source(src, "s-tf", 41), ["tensorflow"])]))
    system.wait_routed("s-tf", [1.0], [42.0])
    models_before = _models(system)
    assert {"s-sk", "s-tf"} <= {m["name"] for m in models_before}
    servers_before = system.cli("server", "list").json()["servers"]
    assert sorted(s["name"] for s in servers_before) == ["mlserver", "triton"]
    loads_before = _loads(system)
    assert all(a > 0 and s > 0 for a, s in loads_before), loads_before

    # Requests through the router meanwhile: it serves on the routes it has.
    loop = Loop(system.port, "s-sk", [1.0], least=300)
    try:
        loop.wait_answer([41.0])
        system.scheduler.restart()
        sched = system.scheduler
        until(lambda: sched.metric("seldon_scheduler_ready"), lambda v: v == 1, sched)
        until(lambda: sched.metric("seldon_scheduler_agents_connected"), lambda v: v == 2,
              sched)
        until(lambda: system.router.metric("seldon_router_scheduler_connected"),
              lambda v: v == 1, system.router)
        loop.wait_sent(loop.sent + 20)
    finally:
        loop.stop()
    assert loop.failures == [] and loop.sent >= 300, loop.failures[:10]
    # Every resource is back, in the same state.
    models_after = _models(system)
    assert models_after == models_before
    assert system.cli("server", "list").json()["servers"] == servers_before
    # A model per replica loaded after the restart: each agent takes commands in order, so
    # once these are available any reload sent at the reconnect would have been done too.
    system.apply("s-after.yaml", "---\n".join([
        model_doc("s-sk2", add_source(src, "s-sk2", 50), ["sklearn"]),
        model_doc("s-tf2", add_source(src, "s-tf2", 51), ["tensorflow"])]))
    system.wait_routed("s-tf2", [1.0], [52.0])
    assert _loads(system) == [(a + 1, s + 1) for a, s in loads_before], system.logs()
    assert sched.metric("seldon_scheduler_commands_sent_total", op="load") == 2
    # Everything loaded before still answers through the router.
    for model, want in (("s-sk", 41.0), ("s-tf", 42.0), ("s-sk2", 51.0)):
        assert rest_infer(system.port, model, [1.0]) == (200, [want])


def test_overcommit_eviction_and_lazy_reload(system, g):
    """Three 2Mi models pinned on triton/0 (--memory 4Mi, 8Mi placeable): all placed, the
    agent keeps within 4Mi by evicting, and every request is answered correctly."""
    src = system.src
    triton = system.replica("triton")
    names = [f"o-{i}" for i in range(3)]
    system.apply("overcommit.yaml", "---\n".join(
        model_doc(n, add_source(src, n, 60 + i), ["tensorflow"], "2Mi", server="triton")
        for i, n in enumerate(names)))
    for n in names:
        assert system.status(n)["versions"][0]["serverName"] == "triton"
    system.wait_routed(names[0], [1.0], [61.0])
    evicted_before = triton.agent.metric("seldon_cache_evict_count")
    channel, stub = grpc_stub(g, system.port)
    try:
        for round_ in range(3):
            for i, n in enumerate(names):
                assert rest_infer(system.port, n, [1.0, 2.0]) == (200, [61.0 + i, 62.0 + i])
                assert grpc_infer(g, stub, n, [5.0]) == [65.0 + i]
    finally:
        channel.close()
    m = triton.agent.metrics()
    assert sh.metric(m, "seldon_cache_evict_count") > evicted_before, triton.agent.stderr()
    assert sh.metric(m, "seldon_cache_miss_count") > 0
    for n in names:
        assert sh.metric(m, "seldon_cache_evict_count", model=n) > 0, n
    # Evictions are the agent's: the models stay placed and available.
    for n in names:
        assert system.status(n)["versions"][0]["state"]["state"] == "ModelAvailable"


@pytest.mark.skipif(shutil.which("rclone") is None, reason="rclone is not installed")
def test_rclone_remote(system):
    """storageUri models:add7 names the alias remote of the agent's --rclone-config."""
    mlserver = system.replica("mlserver")
    add_source(system.remote, "add7", 7)
    system.apply("rclone.yaml", model_doc("c-add7", "models:add7", ["sklearn"]))
    assert mlserver.agent.count("artifact models:add7: rclone copy") == 1
    system.wait_routed("c-add7", [1.0], [8.0])
    status, doc = curl_infer(system.port, "c-add7", [3, 4])
    assert status == 200 and doc["outputs"][0]["data"] == [10, 11], doc


@pytest.mark.skipif(not os.path.exists(os.path.join(sh.RUNTIME_PATH,
                                                    "libseldon-runtime-xgboost.so")),
                    reason="the xgboost runtime was not built")
def test_xgboost_iris(system):
    """The iris classifier trained by examples/scripts/train_iris_xgboost.py, loaded with a
    Seldon manifest, answers the prediction the script prints, and its accuracy."""
    pytest.importorskip("xgboost")
    pytest.importorskip("sklearn")
    out = system.tmp / "iris-xgb"
    proc = subprocess.run(["/usr/bin/python3",
                           os.path.join(SOURCE, "examples", "scripts", "train_iris_xgboost.py"),
                           str(out), "iris"], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    printed = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    system.apply("iris.yaml", model_doc("iris", str(out), ["xgboost"]))
    assert system.status("iris")["versions"][0]["serverName"] == "mlserver"

    def predict(rows):
        doc = {"inputs": [{"name": "predict", "datatype": "FP32", "shape": [len(rows), 4],
                           "data": [v for row in rows for v in row]}]}
        return sh.request(system.port, "POST", "/v2/models/iris/infer", body=doc)

    r = until(lambda: predict(printed["sample"]), lambda r: r[0] == 200, system.router)
    assert json.loads(r[2])["outputs"][0]["data"] == printed["predict"], r
    from sklearn.datasets import load_iris
    iris = load_iris()
    status, _, body = predict(iris.data.astype(np.float32).tolist())
    assert status == 200, body
    got = np.array(json.loads(body)["outputs"][0]["data"])
    assert round(float((got == iris.target).mean()), 4) == printed["accuracy"]


def test_route_arriving_between_head_and_body(system):
    """A REST request whose head came before its model's route and whose body came after:
    a retriable 503 that says so (the router used to answer 'router out of memory')."""
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1],
                                   "data": [1]}]}).encode()
    conn = sh.RawConn(system.port)
    try:
        conn.send(b"POST /v2/models/h-late/infer HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        sh.wait_server_read_all(system.port)
        system.apply("late.yaml", model_doc("h-late", add_source(system.src, "h-late", 9),
                                            ["sklearn"]))
        system.wait_routed("h-late", [1.0], [10.0])
        conn.send(body)
        resp = conn.response()
    finally:
        conn.close()
    assert resp.status == 503, resp.body
    assert b'no route for model \\"h-late\\" when the request arrived' in resp.body, resp.body
    assert rest_infer(system.port, "h-late", [1.0]) == (200, [10.0])
