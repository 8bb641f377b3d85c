"""seldon up --servers N, --server-memory, --capabilities: placement on one machine."""
import json

from conftest import ADD_REQUEST, GUARD, Up, load, outputs, procs, status


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


def test_restart_with_fewer_servers(tmp_path):
    """A replica the previous run had is not waited for: its models come back at once."""
    u = Up(tmp_path, "--servers", "2")
    try:
        (tmp_path / "m.yaml").write_text(manifest("add10", "add10", "  replicas: 2\n"))
        load(u, "m.yaml")
        assert sorted(status(u, "add10")["versions"][0]["modelReplicaState"]) == ["0", "1"]
        u.stop()
        u.args = []  # one replica this time; the default --ready-timeout is 600 s
        u.start()
        u.wait_log(r"replica mlserver/1 is not part of this run")
        u.wait_log(r"replica 0: add10_1 loaded")
        code, body, _ = u.curl("/v2/models/add10/infer", ADD_REQUEST)
        assert code == 200 and outputs(body)["OUTPUT"] == [11, 12, 13, 14], body
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
        # Unloaded: gone from the routes, then from the replica.
        rc, _, err = u.cli("model", "unload", "calc", "-w", "ModelTerminated")
        assert rc == 0, err
        u.wait_log(r"calc_2 unloaded")
        code, body, _ = u.curl("/v2/models/calc/infer", ADD_REQUEST)
        assert code == 404 and "calc" in body, body
    finally:
        assert u.stop() == 0, u.stderr()


def wait_until(cond, thread, why):
    """cond() while the request loop thread runs (it fails at once when the loop died)."""
    def look():
        assert thread.is_alive(), "the request loop ended"
        return cond()
    procs.wait_until(look, GUARD, why, interval=0.005)


def test_a_rollout_under_load_never_fails(tmp_path):
    """Requests keep coming while version 2 replaces version 1: none fails."""
    import http.client
    import threading
    u = Up(tmp_path)
    try:
        (tmp_path / "m.yaml").write_text(manifest("roll", "add10"))
        load(u, "m.yaml")
        routes, failures, stop = {}, [], threading.Event()

        def loop():
            conn = http.client.HTTPConnection("127.0.0.1", u.port, timeout=60)
            while not stop.is_set():
                conn.request("POST", "/v2/models/roll/infer", ADD_REQUEST,
                             {"content-type": "application/json"})
                r = conn.getresponse()
                body = r.read()
                if r.status != 200:
                    failures.append((r.status, body))
                route = r.getheader("x-seldon-route")
                routes[route] = routes.get(route, 0) + 1
            conn.close()

        t = threading.Thread(target=loop)
        t.start()
        try:
            u.wait_log(r"route table \d+: 1 route")
            wait_until(lambda: routes.get(":roll_1:", 0) > 0, t,
                       lambda: f"version 1 never answered: {routes}\n{u.stderr()}")
            (tmp_path / "m.yaml").write_text(manifest("roll", "mul10"))
            load(u, "m.yaml")
            u.wait_log(r"roll_1 unloaded")
            seen = routes.get(":roll_2:", 0)
            wait_until(lambda: routes.get(":roll_2:", 0) >= seen + 50, t,  # past the unload
                       lambda: f"version 2 answered {routes.get(':roll_2:', 0) - seen} of 50 "
                               f"requests after the unload: {routes}\n{u.stderr()}")
        finally:
            stop.set()
            t.join(60)
        assert failures == []
        assert routes[":roll_1:"] > 0 and routes[":roll_2:"] > 50, routes
    finally:
        assert u.stop() == 0, u.stderr()


def test_rclone_remote(tmp_path):
    """A storageUri on an rclone remote (an alias in a config file) is fetched with rclone."""
    import shutil
    bucket = tmp_path / "bucket" / "models" / "mul3" / "1"
    bucket.mkdir(parents=True)
    (bucket / "model-settings.json").write_text(json.dumps(
        {"name": "mul3", "implementation": "builtin.mul",
         "parameters": {"extra": {"constant": 3}}}))
    conf = tmp_path / "rclone.conf"
    conf.write_text(f"[bucket]\ntype = alias\nremote = {tmp_path / 'bucket'}\n")
    if shutil.which("rclone") is None:
        import pytest
        pytest.skip("rclone is not installed (scripts/install-deps.sh installs it)")
    u = Up(tmp_path, "--rclone-config", conf)
    try:
        (tmp_path / "m.yaml").write_text(
            "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: mul3\n"
            "spec:\n  storageUri: bucket:models/mul3\n  artifactVersion: 1\n")
        load(u, "m.yaml")
        u.wait_log(r"artifact bucket:models/mul3/1: rclone copy")
        code, body, _ = u.curl("/v2/models/mul3/infer", ADD_REQUEST)
        assert code == 200 and outputs(body)["OUTPUT"] == [3, 6, 9, 12], body
        (tmp_path / "gone.yaml").write_text(
            "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: gone\n"
            "spec:\n  storageUri: bucket:models/nothing-here\n")
        rc, _, err = u.cli("load", "-f", "gone.yaml")
        assert rc == 0, err
        u.wait_log(r"gone_1 load failed: storageUri bucket:models/nothing-here: rclone copy failed")
    finally:
        assert u.stop() == 0, u.stderr()


def test_overcommit_evicts_and_reloads(tmp_path, oip):
    """Three models of 600Ki on a 1Mi replica with 200% overcommit: the scheduler places all
    three, the replica keeps one loaded at a time, and a request for an evicted one waits
    for it to be loaded again (least recently used out) and gets its right answer."""
    import struct
    import threading
    from conftest import SIMPLE_REQUEST, add_request, grpc_stub
    u = Up(tmp_path, "--server-memory", "1Mi", "--overcommit-percent", "200")
    try:
        for name in ("add10", "mul10", "tfsimple1"):
            (tmp_path / f"{name}.yaml").write_text(manifest(name, name, "  memory: 600Ki\n"))
            load(u, f"{name}.yaml")
        u.wait_log(r"evicting add10_1 to make room for mul10_1")
        u.wait_log(r"evicting mul10_1 to make room for tfsimple1_1")
        for name in ("add10", "mul10", "tfsimple1"):  # all placed, as the scheduler sees it
            assert status(u, name)["versions"][0]["state"]["state"] == "ModelAvailable"
        code, body, _ = u.curl("/v2/models/add10/infer", ADD_REQUEST)
        assert code == 200 and outputs(body)["OUTPUT"] == [11, 12, 13, 14], body
        u.wait_log(r"add10_1 requested while evicted: loading it again")
        code, body, _ = u.curl("/v2/models/tfsimple1/infer", SIMPLE_REQUEST)
        assert code == 200 and outputs(body)["OUTPUT0"][0] == 2, body
        # gRPC to an evicted one (mul10 went first, add10 was used last but one).
        channel, stub = grpc_stub(oip, u.target)
        try:
            resp = stub.ModelInfer(add_request(oip, "mul10"), timeout=60)
            values = list(resp.outputs[0].contents.fp32_contents) or \
                list(struct.unpack("<4f", resp.raw_output_contents[0]))
            assert values == [10, 20, 30, 40]
        finally:
            channel.close()
        # Requests for all three at once, over and over: every answer is right.
        errors = []

        def hammer(name, want):
            for _ in range(10):
                code, body, _ = u.curl(f"/v2/models/{name}/infer", ADD_REQUEST)
                if code != 200 or outputs(body)["OUTPUT"] != want:
                    errors.append((name, code, body))

        threads = [threading.Thread(target=hammer, args=("add10", [11, 12, 13, 14])),
                   threading.Thread(target=hammer, args=("mul10", [10, 20, 30, 40]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        text = u.scrape()
        evicts = [line for line in text.splitlines()
                  if line.startswith("seldon_cache_evict_count{")]
        misses = [line for line in text.splitlines()
                  if line.startswith("seldon_cache_miss_count{")]
        assert evicts and misses, text
        assert any('model_internal="add10_1"' in line for line in misses)
    finally:
        assert u.stop() == 0, u.stderr()
