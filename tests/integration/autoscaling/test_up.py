"""seldon up: a Server resource with maxReplicas gets a second embedded replica when a
model wants two, and loses it after --server-cooldown once one is enough. Waits are for
log lines and statuses; deadlines only guard against hangs."""
import importlib.util
import json
import os

from conftest import fc

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "up_helpers", os.path.join(HERE, "..", "up", "conftest.py"))
upc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(upc)


def manifest(replicas):
    return ("apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata:\n  name: mlserver\n"
            "spec:\n  serverConfig: mlserver\n  replicas: 1\n  maxReplicas: 2\n---\n"
            "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: add10\n"
            "spec:\n  storageUri: ./examples/models/add10\n"
            f"  replicas: {replicas}\n  minReplicas: 1\n")


def server(u):
    rc, out, err = u.cli("server", "status", "mlserver")
    assert rc == 0, err
    return json.loads(out)


def test_a_second_embedded_replica_starts_and_goes_after_the_cooldown(tmp_path):
    u = upc.Up(tmp_path, "--servers", "1", "--server-memory", "10Mi", "--server-cooldown", "1000")
    try:
        (tmp_path / "two.yaml").write_text(manifest(2))
        upc.load(u, "two.yaml")
        u.wait_log(r"replica mlserver/1: started \(scaled up to 2\)")
        u.wait_log(r"add10 v1 on mlserver/1: Available")
        st = upc.status(u, "add10")
        assert sorted(st["versions"][0]["modelReplicaState"]) == ["0", "1"], st
        srv = server(u)
        assert srv["requestedReplicas"] == 2 and srv["availableReplicas"] == 2, srv
        # Both replicas answer.
        for _ in range(10):
            code, body, _ = u.curl("/v2/models/add10/infer", upc.ADD_REQUEST)
            assert code == 200 and upc.outputs(body)["OUTPUT"] == [11, 12, 13, 14]
        # One is enough again: after the cool-down the extra replica drains and goes.
        (tmp_path / "one.yaml").write_text(manifest(1))
        upc.load(u, "one.yaml")
        u.wait_log(r"replica mlserver/1: removed \(scaled down to 1\)")
        srv = server(u)
        assert srv["requestedReplicas"] == 1 and "cool-down" in srv["scaleReason"], srv
        assert [r["replicaIdx"] for r in srv["resources"]] == [0], srv
        code, body, _ = u.curl("/v2/models/add10/infer", upc.ADD_REQUEST)
        assert code == 200 and upc.outputs(body)["OUTPUT"] == [11, 12, 13, 14]
    finally:
        assert u.stop() == 0, u.stderr()


def available(st):
    """Replica indexes Available for the newest version."""
    v = st["versions"][0]
    return sorted(int(i) for i, s in v["modelReplicaState"].items() if s["state"] == "Available")


def wait_status(u, name, done, what):
    last = {}

    def reached():
        last["st"] = st = upc.status(u, name)
        return done(st)
    upc.procs.wait_until(reached, upc.GUARD * 2, lambda: f"{what}: {last.get('st')}\n"
                         f"{u.stderr(this_run=True)[-6000:]}")
    return last["st"]


def test_a_model_scales_on_load_and_back_in_seldon_up(tmp_path):
    """The embedded replicas report each model version's requests in flight and idle time
    (--load-report) to the same autoscaler as seldon-agent's: a model with minReplicas 1
    and maxReplicas 2 whose requests each wait 200 ms in its batcher, under six request
    loops (six in flight on one replica, above --scale-up-inflight 2 for
    --scale-up-period), gets a second replica that takes traffic, never a third; once the
    loops end and the replicas are idle for --scale-down-idle it goes back to one. No
    request fails."""
    model = tmp_path / "slowid"
    model.mkdir()
    (model / "model-settings.json").write_text(json.dumps({
        "name": "slowid", "implementation": "builtin.identity", "max_batch_size": 64,
        "max_batch_time": 0.2}))
    u = upc.Up(tmp_path, "--servers", "2", "--load-report", "100", "--scale-up-inflight", "2",
               "--scale-up-period", "500", "--scale-down-idle", "1500")
    loops = []
    try:
        (tmp_path / "slowid.yaml").write_text(
            "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: slowid\n"
            f"spec:\n  storageUri: \"{model}\"\n  replicas: 1\n  minReplicas: 1\n"
            "  maxReplicas: 2\n")
        upc.load(u, "slowid.yaml")
        st = upc.status(u, "slowid")
        assert st["versions"][0]["state"]["desiredReplicas"] == 1 and len(available(st)) == 1
        loops = [fc.Load(u.port, "slowid", 400, accept=(1,)) for _ in range(6)]
        for lp in loops:
            lp.at(5)
        u.wait_log(r"autoscaler: model slowid_1: 1 -> 2 replicas \(autoscaled up")
        st = wait_status(u, "slowid", lambda s: available(s) == [0, 1], "never 2 replicas")
        assert st["versions"][0]["state"]["desiredReplicas"] == 2, st
        # Both replicas serve while the loops go on.
        before = {i: infers(u, i) for i in (0, 1)}
        upc.procs.wait_until(lambda: all(infers(u, i) > before[i] for i in (0, 1)), upc.GUARD,
                             lambda: f"a replica never served: {before}\n{u.stderr()[-4000:]}")
        for lp in loops:
            lp.stop()
        for lp in loops:
            failures = lp.join()
            assert failures == [], f"{len(failures)} of {lp.done} failed: {failures[:3]}"
        loops = []
        log = u.stderr(this_run=True)
        assert "2 -> 3 replicas" not in log, log[-4000:]
        # Idle: back to one replica after --scale-down-idle, never below minReplicas.
        u.wait_log(r"autoscaler: model slowid_1: 2 -> 1 replicas \(autoscaled down")
        wait_status(u, "slowid", lambda s: len(available(s)) == 1 and
                    s["versions"][0]["state"]["desiredReplicas"] == 1, "never back to 1")
        after = fc.Load(u.port, "slowid", 20, accept=(1,))
        assert after.join() == [], after.failures
        assert "1 -> 0 replicas" not in u.stderr(this_run=True)
    finally:
        for lp in loops:
            lp.stop()
        assert u.stop() == 0, u.stderr()


def infers(u, index):
    """Requests replica index answered OK for slowid (seldon up's /metrics)."""
    total = 0.0
    for line in u.scrape().splitlines():
        if (line.startswith("seldon_model_infer_total{") and 'model="slowid_1"' in line
                and f'server_replica="{index}"' in line and 'code="200"' in line):
            total += float(line.rpartition(" ")[2])
    return total
