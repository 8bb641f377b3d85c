"""seldon up: a Server resource with maxReplicas gets a second embedded replica when a
model wants two, and loses it after --server-cooldown once one is enough. Waits are for
log lines and statuses; deadlines only guard against hangs."""
import importlib.util
import json
import os

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
