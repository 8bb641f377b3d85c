"""seldon up --servers N, --server-memory, --capabilities: placement on one machine."""
import json

from conftest import ADD_REQUEST, Up, load, outputs, status


def manifest(name, folder, extra=""):
    return (f"apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: {name}\n"
            f"spec:\n  storageUri: ./examples/models/{folder}\n{extra}")


def test_replicas_spread_over_the_servers(tmp_path):
    u = Up(tmp_path, "--servers", "2", "--server-memory", "10Mi")
    try:
        (tmp_path / "m.yaml").write_text(manifest("add10", "add10", "  replicas: 2\n"))
        load(u, "m.yaml")
        st = status(u, "add10")
        replicas = st["versions"][0]["modelReplicaState"]
        assert sorted(replicas) == ["0", "1"], st
        rc, out, err = u.cli("server", "status", "mlserver")
        assert rc == 0, err
        srv = json.loads(out)
        assert len(json.dumps(srv)) > 0
        # Requests reach both replicas: each one's counter moves.
        for _ in range(20):
            code, body, _ = u.curl("/v2/models/add10/infer", ADD_REQUEST)
            assert code == 200 and outputs(body)["OUTPUT"] == [11, 12, 13, 14]
        text = u.scrape()
        seen = {r for r in ("0", "1")
                if any(f'server_replica="{r}"' in line and 'model="add10_2"' not in line
                       and 'model="add10_1"' in line and 'code="200"' in line
                       for line in text.splitlines()
                       if line.startswith("seldon_model_infer_total{"))}
        assert seen == {"0", "1"}, text
    finally:
        assert u.stop() == 0, u.stderr()


def test_memory_and_capabilities_decide(tmp_path):
    u = Up(tmp_path, "--server-memory", "1Mi", "--capabilities", "python,sklearn")
    try:
        (tmp_path / "big.yaml").write_text(manifest("big", "add10", "  memory: 5Mi\n"))
        (tmp_path / "gpu.yaml").write_text(manifest("gpu", "add10", "  requirements: [gpu]\n"))
        rc, _, err = u.cli("load", "-f", "big.yaml")
        assert rc == 0, err
        rc, _, err = u.cli("load", "-f", "gpu.yaml")
        assert rc == 0, err
        rc, _, err = u.cli("model", "status", "big", "-w", "ScheduleFailed")
        assert rc == 0, err
        rc, _, err = u.cli("model", "status", "gpu", "-w", "ScheduleFailed")
        assert rc == 0, err
        assert "gpu" in json.dumps(status(u, "gpu"))
        # What fits is placed.
        (tmp_path / "ok.yaml").write_text(manifest("ok", "add10", "  requirements: [python]\n"))
        load(u, "ok.yaml")
        code, body, _ = u.curl("/v2/models/ok/infer", ADD_REQUEST)
        assert code == 200, body
    finally:
        assert u.stop() == 0, u.stderr()


def test_a_new_version_takes_over(tmp_path):
    u = Up(tmp_path)
    try:
        (tmp_path / "m.yaml").write_text(manifest("calc", "add10"))
        load(u, "m.yaml")
        code, body, _ = u.curl("/v2/models/calc/infer", ADD_REQUEST)
        assert outputs(body)["OUTPUT"] == [11, 12, 13, 14]
        (tmp_path / "m.yaml").write_text(manifest("calc", "mul10"))
        load(u, "m.yaml")
        u.wait_log(r"calc_1 unloaded")
        code, body, head = u.curl("/v2/models/calc/infer", ADD_REQUEST)
        assert code == 200 and outputs(body)["OUTPUT"] == [10, 20, 30, 40], body
        assert "x-seldon-route: :calc_2:" in head
    finally:
        assert u.stop() == 0, u.stderr()
