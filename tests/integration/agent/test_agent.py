"""seldon-agent: registration, loads (local and rclone), the proxy, reconnects,
overcommit eviction with lazy reload, and metrics."""
import fcntl
import json
import os
import subprocess

import numpy as np

from conftest import (AGENT, HOST, Agent, FakeScheduler, add, infer_rest, metric, request,
                      wait_until)
from conftest import metrics as sh_metrics


def test_help():
    out = subprocess.run([AGENT, "--help"], capture_output=True, timeout=30)
    assert out.returncode == 0
    assert b"--scheduler-host" in out.stdout and b"--memory" in out.stdout


def test_bad_flags_named():
    out = subprocess.run([AGENT, "--server-name", "s", "--models-dir", "/tmp", "--memory", "lots"],
                         capture_output=True, timeout=30)
    assert out.returncode == 2
    assert b"--memory" in out.stderr


def test_registration_fields(ctl, tmp_path):
    from conftest import Pair
    p = Pair(ctl, tmp_path, "--replica-index", "3", "--capabilities", "sklearn,gpu",
             "--memory", "1Gi", "--overcommit-percent", "25", "--advertise-host", "127.0.0.1")
    try:
        r = p.reg.replica
        assert r.server == "mlserver"
        assert r.index == 3
        assert list(r.capabilities) == ["sklearn", "gpu"]
        assert r.memory_bytes == 1 << 30
        assert r.overcommit_percent == 25
        assert r.http == f"127.0.0.1:{p.agent.http}"
        assert r.grpc == f"127.0.0.1:{p.agent.grpc}"
        assert list(p.reg.loaded) == []
        m = p.agent.metrics()
        assert metric(m, "seldon_server_replica_memory_capacity_bytes_gauge", server="mlserver",
                      server_replica="3") == 1 << 30
    finally:
        p.stop()


def test_load_local_then_infer_rest_and_grpc(pair, g):
    src = pair.source("add10", add(10))
    ev = pair.sched.load("add10", 1, src)
    assert (ev.server, ev.index, ev.model, ev.version) == ("mlserver", 0, "add10", 1)
    # Placed under the versioned name, renamed in its settings; the source is untouched.
    placed = json.load(open(pair.models / "add10_1" / "model-settings.json"))
    assert placed["name"] == "add10_1"
    assert placed["parameters"]["extra"]["constant"] == 10
    assert json.load(open(os.path.join(src, "model-settings.json")))["name"] == "add10"

    status, doc = infer_rest(pair.agent.http, "add10", [1, 2, 3])
    assert status == 200, doc
    assert doc["model_name"] == "add10_1"
    assert doc["outputs"][0]["data"] == [11, 12, 13]

    channel, stub = g.stub(pair.agent)
    try:
        resp = stub.ModelInfer(g.request("add10", {"x": np.array([5, 6], dtype=np.float32)}),
                               timeout=30)
        assert resp.model_name == "add10_1"
        assert g.outputs(resp)["x"].tolist() == [15, 16]
        ready = stub.ModelReady(g.pb2.ModelReadyRequest(name="add10"), timeout=30)
        assert ready.ready
        meta = stub.ModelMetadata(g.pb2.ModelMetadataRequest(name="add10"), timeout=30)
        assert meta.name == "add10_1"
        # A model this replica does not hold.
        try:
            stub.ModelInfer(g.request("nope", {"x": np.array([1], dtype=np.float32)}), timeout=30)
            raise AssertionError("expected NOT_FOUND")
        except g.grpc.RpcError as e:
            assert e.code() == g.grpc.StatusCode.NOT_FOUND
            assert "nope" in e.details()
    finally:
        channel.close()

    # gRPC on the REST port too (h2c prior knowledge is handed to the gRPC side).
    channel = g.grpc.insecure_channel(f"{HOST}:{pair.agent.http}")
    try:
        stub = g.pb2_grpc.GRPCInferenceServiceStub(channel)
        resp = stub.ModelInfer(g.request("add10", {"x": np.array([1], dtype=np.float32)}),
                               timeout=30)
        assert g.outputs(resp)["x"].tolist() == [11]
    finally:
        channel.close()

    status, _, body = request(pair.agent.http, "POST", "/v2/models/absent/infer", body={})
    assert status == 404 and b"absent" in body


def test_versions_and_internal_header(pair, g):
    pair.sched.load("m", 1, pair.source("m1", add(1)))
    pair.sched.load("m", 2, pair.source("m2", add(2)))
    status, doc = infer_rest(pair.agent.http, "m", [0])
    assert status == 200 and doc["model_name"] == "m_2" and doc["outputs"][0]["data"] == [2]
    status, doc = infer_rest(pair.agent.http, "m", [0], headers={"seldon-internal-model": "m_1"})
    assert status == 200 and doc["model_name"] == "m_1" and doc["outputs"][0]["data"] == [1]
    channel, stub = g.stub(pair.agent)
    try:
        req = g.request("m", {"x": np.array([0], dtype=np.float32)})
        resp = stub.ModelInfer(req, timeout=30)
        assert resp.model_name == "m_2" and g.outputs(resp)["x"].tolist() == [2]
        resp = stub.ModelInfer(req, timeout=30, metadata=[("seldon-internal-model", "m_1")])
        assert resp.model_name == "m_1" and g.outputs(resp)["x"].tolist() == [1]
        # No name in the message: the header's is put in; without a header, refused.
        ready = stub.ModelReady(g.pb2.ModelReadyRequest(), timeout=30,
                                metadata=[("seldon-internal-model", "m_1")])
        assert ready.ready
        try:
            stub.ModelReady(g.pb2.ModelReadyRequest(), timeout=30)
            raise AssertionError("expected NOT_FOUND")
        except g.grpc.RpcError as e:
            assert e.code() == g.grpc.StatusCode.NOT_FOUND and "names no model" in e.details()
        # The versioned name itself is taken as it is.
        resp = stub.ModelInfer(g.request("m_1", {"x": np.array([0], dtype=np.float32)}),
                               timeout=30)
        assert resp.model_name == "m_1"
    finally:
        channel.close()
    pair.sched.unload("m", 2)
    assert not (pair.models / "m_2").exists()
    status, doc = infer_rest(pair.agent.http, "m", [0])
    assert status == 200 and doc["model_name"] == "m_1"
    # An unloaded version's series go (so a long-lived agent does not grow with every
    # version it ever served: docs/autoscaling.md); the live version's stay.
    m = pair.agent.metrics()
    assert not [s for s in m if s[1].get("model_internal") == "m_2"], m
    assert metric(m, "seldon_model_infer_total", model_internal="m_1") >= 1
    assert metric(m, "seldon_loaded_model_gauge", model_internal="m_1") == 1
    # The server's too, once its instance of m_2 is gone (the last call let it go).
    wait_until(lambda: not [s for s in sh_metrics(pair.server.http)
                            if s[1].get("model") == "m_2"], 30,
               lambda: f"seldon-server kept m_2's series: {sh_metrics(pair.server.http)}")
    assert metric(sh_metrics(pair.server.http), "seldon_model_infer_total", model="m_1",
                  code="200") >= 1
    pair.sched.unload("m", 1)
    status, doc = infer_rest(pair.agent.http, "m", [0])
    assert status == 404, doc
    m = pair.agent.metrics()
    assert not [s for s in m if s[1].get("model") == "m"], m
    # Unloading what is not held is not an error.
    pair.sched.unload("m", 7)


def test_artifact_version_fetched_once(pair):
    pair.source("v", add(100), folder="store/1")
    pair.source("v", add(200), folder="store/2")
    uri = "file://" + str(pair.src / "store")
    pair.sched.load("v", 1, uri, artifact_version=2)
    status, doc = infer_rest(pair.agent.http, "v", [0])
    assert status == 200 and doc["outputs"][0]["data"] == [200]
    assert pair.agent.count_log(r"fetched into") == 1
    pair.sched.unload("v", 1)
    pair.sched.load("v", 2, uri, artifact_version=2)
    assert pair.agent.count_log(r"fetched into") == 1, pair.agent.stderr()
    assert pair.agent.count_log(r"already fetched") == 1
    status, doc = infer_rest(pair.agent.http, "v", [0])
    assert status == 200 and doc["model_name"] == "v_2" and doc["outputs"][0]["data"] == [200]


def test_rclone_remote(pair, g):
    remote_root = pair.tmp / "bucket"
    write = __import__("conftest").write_model
    write(remote_root, "mul", {"implementation": "builtin.mul",
                               "parameters": {"extra": {"constant": 3}}}, folder="models/mul/1")
    conf = pair.tmp / "rclone.conf"
    conf.write_text(f"[bucket]\ntype = alias\nremote = {remote_root}\n")
    # The pair's agent again, with the rclone config.
    pair.agent.stop()
    pair.agent = Agent(pair.server, pair.models, pair.sched, "--rclone-config", conf)
    pair.sched.wait_subs(2)
    ev = pair.sched.load("mul", 1, "bucket:models/mul", artifact_version=1)
    assert ev.reason == ""
    status, doc = infer_rest(pair.agent.http, "mul", [2, 4])
    assert status == 200 and doc["outputs"][0]["data"] == [6, 12]
    channel, stub = g.stub(pair.agent)
    try:
        resp = stub.ModelInfer(g.request("mul", {"x": np.array([1], dtype=np.float32)}),
                               timeout=30)
        assert g.outputs(resp)["x"].tolist() == [3]
    finally:
        channel.close()
    # A remote path that does not exist: LOAD_FAILED with rclone's own reason.
    ev = pair.sched.load("gone", 1, "bucket:models/nothing-here", expect="LOAD_FAILED")
    assert "bucket:models/nothing-here" in ev.reason
    assert "directory not found" in ev.reason or "not found" in ev.reason, ev.reason
    # A remote the config does not have.
    ev = pair.sched.load("gone", 2, "nosuchremote:x", expect="LOAD_FAILED")
    assert "nosuchremote" in ev.reason, ev.reason


def test_bad_uris_fail_with_reason(pair):
    ev = pair.sched.load("bad", 1, str(pair.src / "does-not-exist"), expect="LOAD_FAILED")
    assert "does-not-exist" in ev.reason and "No such file" in ev.reason, ev.reason
    # A folder the server cannot load: the server's reason comes back.
    pair.source("broken", {"implementation": "no-such-runtime"})
    ev = pair.sched.load("broken", 1, str(pair.src / "broken"), expect="LOAD_FAILED")
    assert "no-such-runtime" in ev.reason, ev.reason
    assert not (pair.models / "broken_1").exists()
    # A spec without storageUri.
    ev = pair.sched.wait_report(pair.sched.command("LOAD", "nouri", 1, {
        "apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model", "metadata": {"name": "nouri"},
        "spec": {}}))
    assert pair.sched.pb.AgentEvent.Type.Name(ev.type) == "LOAD_FAILED"
    assert "spec.storageUri" in ev.reason, ev.reason


def test_reconnect_rereports_loaded(pair, ctl):
    pair.sched.load("add10", 1, pair.source("add10", add(10)))
    pair.sched.load("add20", 4, pair.source("add20", add(20)))
    port = pair.sched.port
    pair.sched.stop()
    status, doc = infer_rest(pair.agent.http, "add10", [1])  # serving goes on meanwhile
    assert status == 200 and doc["outputs"][0]["data"] == [11]
    pair.sched = FakeScheduler(ctl, port)
    reg = pair.sched.wait_subs(1)
    assert sorted((m.name, m.version) for m in reg.loaded) == [("add10", 1), ("add20", 4)]
    assert reg.replica.server == "mlserver"
    # Commands flow on the new stream.
    pair.sched.unload("add20", 4)


def test_overcommit_eviction_and_lazy_reload(ctl, tmp_path, g):
    from conftest import Pair
    p = Pair(ctl, tmp_path, "--memory", "100", "--overcommit-percent", "50")
    try:
        for i, c in enumerate([1, 2, 3]):
            p.sched.load(f"m{c}", 1, p.source(f"m{c}", add(c)), memory=40)
        # 3 x 40 > 100: loading m3 evicted the least recently used, m1.
        m = p.agent.metrics()
        assert metric(m, "seldon_cache_evict_count", model="m1") == 1
        assert metric(m, "seldon_loaded_model_gauge", model="m1") == 0
        assert metric(m, "seldon_loaded_model_gauge", model="m3") == 1
        status, _, body = request(p.server.http, "POST", "/v2/repository/index", body={})
        index = {x["name"]: x["state"] for x in json.loads(body)}
        assert index["m1_1"] != "READY" and index["m3_1"] == "READY", index
        # A request for m1 reloads it (evicting m2, now the least recently used) and answers.
        status, doc = infer_rest(p.agent.http, "m1", [10])
        assert status == 200 and doc["outputs"][0]["data"] == [11], doc
        m = p.agent.metrics()
        assert metric(m, "seldon_cache_miss_count", model="m1") == 1
        assert metric(m, "seldon_cache_evict_count", model="m2") == 1
        assert metric(m, "seldon_load_model_counter", model="m1") == 2
        # Round robin over all three through REST and gRPC: every answer right.
        channel, stub = g.stub(p.agent)
        try:
            for k in range(12):
                c = [1, 2, 3][k % 3]
                if k % 2:
                    status, doc = infer_rest(p.agent.http, f"m{c}", [k])
                    assert status == 200 and doc["outputs"][0]["data"] == [k + c], doc
                else:
                    resp = stub.ModelInfer(
                        g.request(f"m{c}", {"x": np.array([k], dtype=np.float32)}), timeout=60)
                    assert g.outputs(resp)["x"].tolist() == [k + c]
                    assert resp.model_name == f"m{c}_1"
        finally:
            channel.close()
        m = p.agent.metrics()
        assert metric(m, "seldon_cache_miss_count") >= 4
        assert sum(metric(m, "seldon_loaded_model_gauge", model=f"m{c}") for c in (1, 2, 3)) == 2
        assert sum(metric(m, "seldon_loaded_model_memory_bytes_gauge", model=f"m{c}")
                   for c in (1, 2, 3)) == 80
        # More than the whole replica: refused with the reason.
        ev = p.sched.load("big", 1, p.source("big", add(0)), memory=500, expect="LOAD_FAILED")
        assert "500" in ev.reason and "--memory" in ev.reason, ev.reason
        # The scheduler hears about evicted models as held on reconnect.
        port = p.sched.port
        p.sched.stop()
        p.sched = FakeScheduler(ctl, port)
        reg = p.sched.wait_subs(1)
        assert sorted(x.name for x in reg.loaded) == ["m1", "m2", "m3"]
    finally:
        p.stop()


def test_metrics(pair, g):
    pair.sched.load("add10", 1, pair.source("add10", add(10)))
    for _ in range(3):
        assert infer_rest(pair.agent.http, "add10", [1])[0] == 200
    channel, stub = g.stub(pair.agent)
    try:
        stub.ModelInfer(g.request("add10", {"x": np.array([1], dtype=np.float32)}), timeout=30)
    finally:
        channel.close()
    m = pair.agent.metrics()
    base = dict(server="mlserver", server_replica="0", model="add10", model_internal="add10_1")
    assert metric(m, "seldon_model_infer_total", method_type="rest", code="200", **base) == 3
    assert metric(m, "seldon_model_infer_total", method_type="grpc", code="0", **base) == 1
    assert metric(m, "seldon_model_infer_api_seconds_count", method_type="rest", **base) == 3
    assert metric(m, "seldon_loaded_model_gauge", **base) == 1
    assert metric(m, "seldon_load_model_counter", **base) == 1
    assert metric(m, "seldon_model_infer_seconds_total", method_type="rest", **base) > 0
    assert metric(m, "seldon_model_aggregate_infer_total", server="mlserver", server_replica="0",
                  method_type="rest", code="200") == 3
    assert metric(m, "seldon_model_aggregate_infer_seconds_total", method_type="grpc") > 0
    assert metric(m, "seldon_loaded_model_memory_bytes_gauge", **base) == 0  # none declared
    assert metric(m, "seldon_server_replica_memory_capacity_bytes_gauge", server="mlserver") == 0
    status, _, body = request(pair.agent.metrics_port, "GET", "/metrics")
    for family in ["seldon_cache_evict_count", "seldon_cache_miss_count",
                   "seldon_unload_model_counter"]:
        assert f"# TYPE {family} counter".encode() in body, family


def test_stop_while_fetching(ctl, tmp_path):
    """SIGTERM while a fetch runs: the child is stopped and the agent exits cleanly."""
    from conftest import Pair
    fake = tmp_path / "slow-rclone"
    marker = tmp_path / "started"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexec sleep 120\n")
    fake.chmod(0o755)
    p = Pair(ctl, tmp_path, "--rclone", fake)
    try:
        p.sched.command("LOAD", "slow", 1, {
            "apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model",
            "metadata": {"name": "slow"}, "spec": {"storageUri": "remote:slow"}})
        wait_until(marker.exists, 30, p.agent.stderr)
        # Serving goes on while the fetch runs: the loop never waits on it.
        assert request(p.agent.http, "GET", "/v2/health/ready")[0] == 200
    finally:
        p.stop()


def test_rclone_failure_reason(ctl, tmp_path):
    """Whatever rclone prints on stderr when it fails is the reason reported."""
    from conftest import Pair
    fake = tmp_path / "failing-rclone"
    fake.write_text("#!/bin/sh\necho \"args: $*\" >&2\necho 'Failed to copy: access denied' >&2\n"
                    "exit 7\n")
    fake.chmod(0o755)
    conf = tmp_path / "r.conf"
    conf.write_text("[s3]\ntype = alias\nremote = /nowhere\n")
    p = Pair(ctl, tmp_path, "--rclone", fake, "--rclone-config", conf)
    try:
        ev = p.sched.load("x", 1, "s3://bucket/models/x", expect="LOAD_FAILED")
        assert "access denied" in ev.reason and "exit 7" in ev.reason, ev.reason
        # With a config file, s3://bucket/path is the config's remote named s3.
        assert f"--config {conf} s3:bucket/models/x" in ev.reason, ev.reason
        assert not (p.models / "x_1").exists()
    finally:
        p.stop()


def test_concurrent_requests_share_one_reload(ctl, tmp_path, g):
    """Many requests (REST with bodies, chunked or not, and gRPC streams) for an evicted
    model wait for one reload, and every one gets its own right answer."""
    import http.client
    import threading
    from conftest import Pair
    p = Pair(ctl, tmp_path, "--memory", "100")
    try:
        p.sched.load("a", 1, p.source("a", add(1)), memory=60)
        p.sched.load("b", 1, p.source("b", add(2)), memory=60)  # evicts a
        assert metric(p.agent.metrics(), "seldon_cache_evict_count", model="a") == 1
        results, errors = {}, []

        def rest(k, chunked):
            try:
                body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1],
                                               "data": [k]}]}).encode()
                conn = http.client.HTTPConnection(HOST, p.agent.http, timeout=60)
                if chunked:
                    conn.putrequest("POST", "/v2/models/a/infer")
                    conn.putheader("Transfer-Encoding", "chunked")
                    conn.putheader("Content-Type", "application/json")
                    conn.endheaders()
                    for i in range(0, len(body), 7):
                        piece = body[i:i + 7]
                        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                    conn.send(b"0\r\n\r\n")
                else:
                    conn.request("POST", "/v2/models/a/infer", body=body,
                                 headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                results[k] = (resp.status, json.loads(resp.read()))
                conn.close()
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        def stream(k):
            try:
                channel, stub = g.stub(p.agent)
                reqs = [g.request("a", {"x": np.array([k + i], dtype=np.float32)}, id=str(i))
                        for i in range(3)]
                got = [g.outputs(r.infer_response)["x"].tolist()
                       for r in stub.ModelStreamInfer(iter(reqs), timeout=60)]
                results[k] = got
                channel.close()
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        threads = [threading.Thread(target=rest, args=(k, k % 2 == 0)) for k in range(8)]
        threads += [threading.Thread(target=stream, args=(100 + 10 * k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        for k in range(8):
            status, doc = results[k]
            assert status == 200 and doc["outputs"][0]["data"] == [k + 1], (k, doc)
            assert doc["model_name"] == "a_1"
        for k in range(3):
            base = 100 + 10 * k
            assert results[base] == [[base + 1], [base + 2], [base + 3]]
        m = p.agent.metrics()
        assert metric(m, "seldon_load_model_counter", model="a") == 2  # one reload for all
        assert metric(m, "seldon_cache_evict_count", model="b") == 1
    finally:
        p.stop()


def test_large_grpc_message_and_limit(ctl, tmp_path, g):
    """A message larger than the h2 windows is read whole, renamed and answered; one over
    --max-message is refused with RESOURCE_EXHAUSTED."""
    from conftest import Pair
    p = Pair(ctl, tmp_path, "--max-message", str(4 << 20))
    try:
        p.sched.load("id", 1, p.source("id", {"implementation": "builtin.identity"}))
        channel, stub = g.stub(p.agent)
        try:
            x = np.arange(300_000, dtype=np.float32)  # 1.2 MB raw
            resp = stub.ModelInfer(g.request("id", {"x": x}, raw=True), timeout=60)
            assert resp.model_name == "id_1"
            assert np.array_equal(g.outputs(resp)["x"], x)
            big = np.zeros(2_000_000, dtype=np.float32)  # 8 MB
            try:
                stub.ModelInfer(g.request("id", {"x": big}, raw=True), timeout=60)
                raise AssertionError("expected RESOURCE_EXHAUSTED")
            except g.grpc.RpcError as e:
                assert e.code() == g.grpc.StatusCode.RESOURCE_EXHAUSTED, e
                assert "--max-message" in e.details()
            # The agent is fine afterwards.
            resp = stub.ModelInfer(g.request("id", {"x": x[:3]}), timeout=60)
            assert g.outputs(resp)["x"].tolist() == [0, 1, 2]
            # Calls that name no model pass as they are.
            assert stub.ServerLive(g.pb2.ServerLiveRequest(), timeout=30).live
        finally:
            channel.close()
    finally:
        p.stop()


def test_without_scheduler_serves_nothing_but_health(tmp_path):
    from conftest import Server
    models = tmp_path / "models"
    models.mkdir()
    server = Server(models, "--no-load-all")
    agent = Agent(server, models, None)
    try:
        assert request(agent.http, "GET", "/v2/health/live")[0] == 200
        status, _, body = request(agent.http, "POST", "/v2/models/x/infer", body={})
        assert status == 404 and b"not loaded on this replica" in body
    finally:
        agent.stop()
        server.stop()


def test_large_rest_bodies_stream_both_ways(ctl, tmp_path):
    """Bodies and answers over the gathering threshold stream through, also to a model
    that was evicted (its body waits, paused, for the reload)."""
    from conftest import Pair
    p = Pair(ctl, tmp_path, "--memory", "100")
    try:
        p.sched.load("id", 1, p.source("id", {"implementation": "builtin.identity"}), memory=60)
        values = [float(i % 1000) for i in range(100_000)]  # ~0.6 MB of JSON each way
        status, doc = infer_rest(p.agent.http, "id", values)
        assert status == 200 and doc["outputs"][0]["data"] == values
        p.sched.load("other", 1, p.source("other", add(1)), memory=60)  # evicts id
        assert metric(p.agent.metrics(), "seldon_cache_evict_count", model="id") == 1
        status, doc = infer_rest(p.agent.http, "id", values)
        assert status == 200 and doc["outputs"][0]["data"] == values
        assert doc["model_name"] == "id_1"
        # Small ones, gathered and sent whole, after the big ones on fresh connections.
        status, doc = infer_rest(p.agent.http, "id", [1.5])
        assert status == 200 and doc["outputs"][0]["data"] == [1.5]
    finally:
        p.stop()


def test_reload_does_not_wait_for_a_long_fetch(ctl, tmp_path):
    """While a LOAD's fetch takes long, a request for an evicted model is answered: the
    reload takes the server lane beside the fetch. The LOAD completes afterwards."""
    from conftest import GUARD, Pair
    started, release = tmp_path / "started", tmp_path / "release"
    fake = tmp_path / "gated-rclone"
    # rclone copy [--config F] remote:/abs/path DST: waits until the test lets go of its
    # lock on the release file, then copies.
    fake.write_text(f"""#!/bin/sh
for a in "$@"; do src=$dst; dst=$a; done
touch {started}
flock -s {release} true
exec cp -R "${{src#gated:}}/." "$dst"
""")
    fake.chmod(0o755)
    gate = open(release, "w")
    fcntl.flock(gate, fcntl.LOCK_EX)
    p = Pair(ctl, tmp_path, "--memory", "100", "--rclone", fake)
    try:
        p.sched.load("a", 1, p.source("a", add(1)), memory=60)
        p.sched.load("b", 1, p.source("b", add(2)), memory=60)  # evicts a
        cid = p.sched.command("LOAD", "c", 1, {
            "apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model", "metadata": {"name": "c"},
            "spec": {"storageUri": "gated:" + p.source("c", add(3)), "memory": "30"}})
        wait_until(started.exists, GUARD, p.agent.stderr)
        status, doc = infer_rest(p.agent.http, "a", [0])  # reloads a, evicting b
        assert status == 200 and doc["outputs"][0]["data"] == [1], doc
        # Answered while the fetch still waited: c's LOAD is not reported yet.
        assert all(ev.command_id != cid for ev in list(p.sched.reports)), p.sched.reports
        gate.close()
        ev = p.sched.wait_report(cid)
        assert p.sched.pb.AgentEvent.Type.Name(ev.type) == "LOADED", ev
        status, doc = infer_rest(p.agent.http, "c", [0])
        assert status == 200 and doc["outputs"][0]["data"] == [3], doc
        m = p.agent.metrics()
        assert metric(m, "seldon_loaded_model_memory_bytes_gauge", model="c") == 30
        assert metric(m, "seldon_cache_evict_count", model="b") == 1
    finally:
        gate.close()
        p.stop()


def test_server_lost_a_model_reloads_it(pair, g):
    """The server answers 404 / NOT_FOUND for a model the agent holds (unloaded behind its
    back, or the server restarted): the agent loads it again and the request is answered."""
    from conftest import Server
    pair.sched.load("add10", 1, pair.source("add10", add(10)))
    status, _, _ = request(pair.server.http, "POST", "/v2/repository/models/add10_1/unload",
                           body=b"")
    assert status == 200
    status, doc = infer_rest(pair.agent.http, "add10", [1])
    assert status == 200 and doc["outputs"][0]["data"] == [11], doc
    request(pair.server.http, "POST", "/v2/repository/models/add10_1/unload", body=b"")
    channel, stub = g.stub(pair.agent)
    try:
        resp = stub.ModelInfer(g.request("add10", {"x": np.array([2], dtype=np.float32)}),
                               timeout=60)
        assert g.outputs(resp)["x"].tolist() == [12]
    finally:
        channel.close()
    # The server restarts on the same ports, with nothing loaded.
    http, grpc_port = pair.server.http, pair.server.grpc
    pair.server.stop()
    pair.server = Server(pair.models, "--no-load-all", "--http-port", http, "--grpc-port",
                         grpc_port)
    status, doc = infer_rest(pair.agent.http, "add10", [3])
    assert status == 200 and doc["outputs"][0]["data"] == [13], doc
    assert metric(pair.agent.metrics(), "seldon_load_model_counter", model="add10") == 4
    # A model the agent never held is still a plain 404.
    status, _, _ = request(pair.agent.http, "POST", "/v2/models/other/infer", body={})
    assert status == 404


def test_sigterm_lets_an_open_grpc_stream_finish(pair, g):
    """On SIGTERM the gRPC side drains: a ModelStreamInfer stream already open keeps being
    answered until the client ends it; then the agent exits 0."""
    import queue as q
    import signal
    pair.sched.load("add10", 1, pair.source("add10", add(10)))
    channel, stub = g.stub(pair.agent)
    requests = q.Queue()

    def gen():
        while True:
            item = requests.get()
            if item is None:
                return
            yield item

    try:
        responses = stub.ModelStreamInfer(gen(), timeout=60)
        requests.put(g.request("add10", {"x": np.array([1], dtype=np.float32)}))
        first = next(responses)
        assert g.outputs(first.infer_response)["x"].tolist() == [11]
        pair.agent.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "SIGTERM" in pair.agent.stderr(), 30, pair.agent.stderr)
        requests.put(g.request("add10", {"x": np.array([2], dtype=np.float32)}))
        second = next(responses)
        assert g.outputs(second.infer_response)["x"].tolist() == [12]
        requests.put(None)
        assert list(responses) == []
    finally:
        channel.close()
    assert pair.agent.proc.wait(60) == 0, pair.agent.stderr()


def test_agent_restart_keeps_what_it_held(pair):
    """The versions an agent holds are recorded beside the models: a restarted agent
    registers with them, and serves them (loading again on first use)."""
    pair.sched.load("add10", 1, pair.source("add10", add(10)))
    pair.sched.load("add20", 2, pair.source("add20", add(20)))
    pair.sched.unload("add20", 2)
    pair.sched.load("add20", 3, pair.source("add20", add(20)))
    pair.agent.stop()
    pair.agent = Agent(pair.server, pair.models, pair.sched)
    reg = pair.sched.wait_subs(2)
    assert sorted((m.name, m.version) for m in reg.loaded) == [("add10", 1), ("add20", 3)]
    # The server still has them: they count as loaded, nothing is loaded again.
    wait_until(lambda: pair.agent.count_log(r"2 restored model version\(s\) still loaded") > 0,
               30, pair.agent.stderr)
    status, doc = infer_rest(pair.agent.http, "add20", [1])
    assert status == 200 and doc["model_name"] == "add20_3" and doc["outputs"][0]["data"] == [21]
    m = pair.agent.metrics()
    assert metric(m, "seldon_loaded_model_gauge", model="add20") == 1
    assert metric(m, "seldon_load_model_counter", model="add20") == 0
    # The scheduler's LOAD for a version held is answered without fetching anything.
    pair.sched.load("add10", 1, pair.source("add10", add(10)))
    assert pair.agent.count_log(r"fetched into|already fetched") == 0, pair.agent.stderr()
    status, doc = infer_rest(pair.agent.http, "add10", [1])
    assert status == 200 and doc["outputs"][0]["data"] == [11]
    # Unloaded for good: forgotten by the next restart.
    pair.sched.unload("add10", 1)
    pair.agent.stop()
    pair.agent = Agent(pair.server, pair.models, pair.sched)
    reg = pair.sched.wait_subs(3)
    assert [(m.name, m.version) for m in reg.loaded] == [("add20", 3)]
