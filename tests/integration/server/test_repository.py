"""The repository extension: load, reload and unload through REST and gRPC,
load failures with their reasons, and reloads while requests are in flight."""
import threading

import numpy as np
import pytest

from conftest import (GUARD, RawConn, Server, arith, assert_error, get_json, http_bytes, infer,
                      metric, metrics, outputs_of, post_json, procs, request, tensor,
                      wait_server_read_all, write_model)

X4 = np.array([1, 2, 3, 4], dtype=np.float32)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repository")
    write_model(root, "steady", arith("builtin.mul", 10))
    # A model that fails at start-up: the server still starts, and says why.
    write_model(root, "broken-at-start", {"implementation": "no.such.runtime"})
    return root


@pytest.fixture(scope="module")
def server(repo):
    srv = Server(repo)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def stub(g, server):
    channel, stub = g.stub(server)
    yield stub
    channel.close()


def index(server, ready=None):
    status, doc = post_json(server.http, "/v2/repository/index",
                            None if ready is None else {"ready": ready})
    assert status == 200, doc
    return {row["name"]: row for row in doc}


def grpc_index(g, stub, ready=False):
    r = stub.RepositoryIndex(g.pb2.RepositoryIndexRequest(ready=ready), timeout=GUARD)
    return {m.name: m for m in r.models}


def add_result(server, model, x=X4, version=None):
    status, doc = infer(server.http, model, [tensor("INPUT", x)], version=version)
    assert status == 200, doc
    return outputs_of(doc)["OUTPUT"]


def grpc_result(g, stub, model, x=X4):
    return g.outputs(stub.ModelInfer(g.request(model, {"INPUT": x}), timeout=GUARD))["OUTPUT"]


def rest_load(server, model):
    return request(server.http, "POST", f"/v2/repository/models/{model}/load", b"")


def rest_unload(server, model):
    return request(server.http, "POST", f"/v2/repository/models/{model}/unload", b"")


def steady_serving(server):
    np.testing.assert_array_equal(add_result(server, "steady"), X4 * 10)


def test_index(server, g, stub):
    rows = index(server)
    assert rows["steady"]["state"] == "READY" and rows["steady"]["reason"] == ""
    assert rows["broken-at-start"]["state"] == "FAILED"
    assert "no.such.runtime" in rows["broken-at-start"]["reason"]
    assert list(index(server, ready=True)) == ["steady"]
    assert set(index(server, ready=False)) == {"steady", "broken-at-start"}
    rows = grpc_index(g, stub)
    assert rows["steady"].state == "READY"
    assert rows["broken-at-start"].state == "FAILED"
    assert "no.such.runtime" in rows["broken-at-start"].reason
    assert list(grpc_index(g, stub, ready=True)) == ["steady"]
    # A body that is not {"ready": bool}.
    assert_error(*request(server.http, "POST", "/v2/repository/index", {"ready": "yes"}), 400,
                 "ready")
    assert_error(*request(server.http, "POST", "/v2/repository/index", b"{"), 400)
    # Not ready, not found: the metadata of a model that failed says why.
    assert_error(*request(server.http, "GET", "/v2/models/broken-at-start/ready"), 400, "FAILED")


def test_load_new_model_rest(server, repo):
    assert_error(*request(server.http, "GET", "/v2/models/late"), 404, "late")
    write_model(repo, "late", arith("builtin.add", 3))
    status, headers, body = rest_load(server, "late")
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    np.testing.assert_array_equal(add_result(server, "late"), X4 + 3)
    assert get_json(server.http, "/v2/models/late/ready") == (200, {"name": "late",
                                                                     "ready": True})
    assert index(server)["late"]["state"] == "READY"


def test_load_new_model_grpc(server, repo, g, stub):
    with pytest.raises(g.grpc.RpcError) as err:
        stub.ModelReady(g.pb2.ModelReadyRequest(name="late-g"), timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.NOT_FOUND
    write_model(repo, "late-g", arith("builtin.mul", -2))
    stub.RepositoryModelLoad(g.pb2.RepositoryModelLoadRequest(model_name="late-g"),
                             timeout=GUARD)
    assert stub.ModelReady(g.pb2.ModelReadyRequest(name="late-g"), timeout=GUARD).ready
    np.testing.assert_array_equal(grpc_result(g, stub, "late-g"), X4 * -2)
    assert grpc_index(g, stub)["late-g"].state == "READY"


def test_reload_rest(server, repo):
    write_model(repo, "hot", arith("builtin.add", 10, parameters={
        "version": "1", "extra": {"constant": 10}}))
    assert rest_load(server, "hot")[0] == 200
    np.testing.assert_array_equal(add_result(server, "hot"), X4 + 10)
    # add10 becomes add20, version 2.
    write_model(repo, "hot", {"implementation": "builtin.add",
                              "parameters": {"version": "2", "extra": {"constant": 20}}})
    status, _, body = rest_load(server, "hot")
    assert status == 200, body
    np.testing.assert_array_equal(add_result(server, "hot"), X4 + 20)
    np.testing.assert_array_equal(add_result(server, "hot", version="2"), X4 + 20)
    status, doc = get_json(server.http, "/v2/models/hot")
    assert status == 200 and doc["versions"] == ["2"]
    assert_error(*request(server.http, "POST", "/v2/models/hot/versions/1/infer",
                          {"inputs": [tensor("INPUT", X4)]}), 404, "hot")
    assert index(server)["hot"]["version"] == "2"
    # Another implementation altogether.
    write_model(repo, "hot", arith("builtin.mul", 3))
    assert rest_load(server, "hot")[0] == 200
    np.testing.assert_array_equal(add_result(server, "hot"), X4 * 3)


def test_reload_grpc(server, repo, g, stub):
    write_model(repo, "hot-g", arith("builtin.add", 10))
    load = g.pb2.RepositoryModelLoadRequest(model_name="hot-g")
    stub.RepositoryModelLoad(load, timeout=GUARD)
    np.testing.assert_array_equal(grpc_result(g, stub, "hot-g"), X4 + 10)
    write_model(repo, "hot-g", {"implementation": "builtin.add",
                                "parameters": {"version": "7", "extra": {"constant": 20}}})
    stub.RepositoryModelLoad(load, timeout=GUARD)
    np.testing.assert_array_equal(grpc_result(g, stub, "hot-g"), X4 + 20)
    md = stub.ModelMetadata(g.pb2.ModelMetadataRequest(name="hot-g"), timeout=GUARD)
    assert list(md.versions) == ["7"]
    assert grpc_index(g, stub)["hot-g"].version == "7"


def test_unload_rest(server, repo, g, stub):
    write_model(repo, "gone", arith("builtin.add", 1))
    assert rest_load(server, "gone")[0] == 200
    np.testing.assert_array_equal(add_result(server, "gone"), X4 + 1)
    status, _, body = rest_unload(server, "gone")
    assert status == 200, body
    assert_error(*request(server.http, "POST", "/v2/models/gone/infer",
                          {"inputs": [tensor("INPUT", X4)]}), 404, "gone")
    with pytest.raises(g.grpc.RpcError) as err:
        stub.ModelInfer(g.request("gone", {"INPUT": X4}), timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.NOT_FOUND
    # Known, but not ready.
    assert request(server.http, "GET", "/v2/models/gone/ready")[0] != 200
    assert stub.ModelReady(g.pb2.ModelReadyRequest(name="gone"), timeout=GUARD).ready is False
    rows = index(server)
    assert rows["gone"]["state"] == "UNAVAILABLE"
    assert "gone" not in index(server, ready=True)
    # Unloading what is not loaded; loading it back.
    assert_error(*rest_unload(server, "gone"), 404, "gone")
    assert_error(*rest_unload(server, "never-heard-of"), 404, "never-heard-of")
    assert rest_load(server, "gone")[0] == 200
    np.testing.assert_array_equal(add_result(server, "gone"), X4 + 1)
    steady_serving(server)


def test_unload_grpc(server, repo, g, stub):
    write_model(repo, "gone-g", arith("builtin.add", 2))
    stub.RepositoryModelLoad(g.pb2.RepositoryModelLoadRequest(model_name="gone-g"),
                             timeout=GUARD)
    np.testing.assert_array_equal(grpc_result(g, stub, "gone-g"), X4 + 2)
    unload = g.pb2.RepositoryModelUnloadRequest(model_name="gone-g")
    stub.RepositoryModelUnload(unload, timeout=GUARD)
    with pytest.raises(g.grpc.RpcError) as err:
        stub.ModelInfer(g.request("gone-g", {"INPUT": X4}), timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.NOT_FOUND
    assert_error(*request(server.http, "POST", "/v2/models/gone-g/infer",
                          {"inputs": [tensor("INPUT", X4)]}), 404)
    assert grpc_index(g, stub)["gone-g"].state == "UNAVAILABLE"
    with pytest.raises(g.grpc.RpcError) as err:
        stub.RepositoryModelUnload(unload, timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.NOT_FOUND
    with pytest.raises(g.grpc.RpcError) as err:
        stub.RepositoryModelLoad(g.pb2.RepositoryModelLoadRequest(model_name="never-heard-of"),
                                 timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.NOT_FOUND
    with pytest.raises(g.grpc.RpcError) as err:
        stub.RepositoryModelLoad(g.pb2.RepositoryModelLoadRequest(model_name=""), timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.INVALID_ARGUMENT


# Load failures: (settings, extra files, a fragment of the reason).
FAILURES = {
    "bad-implementation": ({"implementation": "nosuch.runtime"}, None, "nosuch.runtime"),
    "runtime-load-fails": ({"implementation": "builtin.add"}, None, "constant"),
    "bad-constant": (arith("builtin.mul", "ten"), None, "ten"),
    "bad-settings": (None, {"model-settings.json": '{"implementation": "builtin.add",'},
                     "model-settings.json"),
    "bad-batching": ({"implementation": "builtin.identity", "max_batch_size": -3}, None,
                     "max_batch_size"),
    "bad-plugin": ({"implementation": "./not-a-plugin.so"}, {"not-a-plugin.so": b"\x7fELF junk"},
                   "not-a-plugin.so"),
}


def write_failure(repo, name, kind):
    settings, files, _ = FAILURES[kind]
    if settings is None:
        import os
        os.makedirs(os.path.join(str(repo), name), exist_ok=True)
        for fname, text in files.items():
            with open(os.path.join(str(repo), name, fname), "w") as f:
                f.write(text)
    else:
        write_model(repo, name, settings, files=files)


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_load_failure(server, repo, g, stub, kind):
    why = FAILURES[kind][2]
    name = f"fail-{kind}"
    write_failure(repo, name, kind)
    assert_error(*rest_load(server, name), 400, why)
    rows = index(server)
    assert rows[name]["state"] == "FAILED" and why in rows[name]["reason"], rows[name]
    assert name not in index(server, ready=True)
    with pytest.raises(g.grpc.RpcError) as err:
        stub.RepositoryModelLoad(g.pb2.RepositoryModelLoadRequest(model_name=name),
                                 timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.INVALID_ARGUMENT
    assert why in err.value.details()
    row = grpc_index(g, stub)[name]
    assert row.state == "FAILED" and why in row.reason
    assert_error(*request(server.http, "POST", f"/v2/models/{name}/infer",
                          {"inputs": [tensor("INPUT", X4)]}), 404, name)
    # The others keep serving.
    steady_serving(server)
    np.testing.assert_array_equal(grpc_result(g, stub, "steady"), X4 * 10)
    # Fixed, it loads.
    write_model(repo, name, arith("builtin.add", 4))
    assert rest_load(server, name)[0] == 200
    np.testing.assert_array_equal(add_result(server, name), X4 + 4)
    assert index(server)[name]["reason"] == ""


def test_failed_reload_keeps_serving(server, repo, g, stub):
    write_model(repo, "sturdy", arith("builtin.add", 10))
    assert rest_load(server, "sturdy")[0] == 200
    write_model(repo, "sturdy", {"implementation": "nosuch.runtime"})
    assert_error(*rest_load(server, "sturdy"), 400, "nosuch.runtime")
    with pytest.raises(g.grpc.RpcError) as err:
        stub.RepositoryModelLoad(g.pb2.RepositoryModelLoadRequest(model_name="sturdy"),
                                 timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.INVALID_ARGUMENT
    # The instance already serving keeps serving; the index says why the new one failed.
    np.testing.assert_array_equal(add_result(server, "sturdy"), X4 + 10)
    row = index(server)["sturdy"]
    assert row["state"] == "READY" and "nosuch.runtime" in row["reason"]


def test_reload_under_load(server, repo, g, stub):
    # Requests keep flowing over REST (one keep-alive connection) and gRPC
    # while the model is reloaded again and again: every one succeeds, with
    # either the old or the new constant.
    write_model(repo, "busy", arith("builtin.add", 0))
    assert rest_load(server, "busy")[0] == 200
    constants = [0]
    stop = threading.Event()
    results = {"rest": [], "grpc": []}
    failures = []

    def rest_hammer():
        c = RawConn(server.http)
        try:
            i = 0
            while not stop.is_set() or i < 5:
                x = X4 + i
                c.send(http_bytes("POST", "/v2/models/busy/infer",
                                  {"id": str(i), "inputs": [tensor("INPUT", x)]}))
                r = c.response()
                assert r.status == 200, r.body
                assert r.json()["id"] == str(i)
                delta = outputs_of(r.json())["OUTPUT"] - x
                assert len(set(delta.tolist())) == 1, delta
                results["rest"].append(delta[0])
                i += 1
        except Exception as e:
            failures.append(e)
        finally:
            c.close()

    def grpc_hammer():
        try:
            i = 0
            while not stop.is_set() or i < 5:
                x = X4 * (i + 1)
                delta = grpc_result(g, stub, "busy", x) - x
                assert len(set(delta.tolist())) == 1, delta
                results["grpc"].append(delta[0])
                i += 1
        except Exception as e:
            failures.append(e)

    threads = [threading.Thread(target=rest_hammer), threading.Thread(target=grpc_hammer)]
    for t in threads:
        t.start()
    try:
        for k in range(1, 13):
            constants.append(k * 10)
            write_model(repo, "busy", arith("builtin.add", k * 10))
            if k % 2:
                assert rest_load(server, "busy")[0] == 200
            else:
                stub.RepositoryModelLoad(g.pb2.RepositoryModelLoadRequest(model_name="busy"),
                                         timeout=GUARD)
            # New requests see the new behaviour at once.
            np.testing.assert_array_equal(add_result(server, "busy"), X4 + k * 10)
            # Both streams of requests move on before the next reload.
            seen = {p: len(results[p]) for p in results}
            procs.wait_until(lambda: failures or all(len(results[p]) >= seen[p] + 3
                                                     for p in results),
                             GUARD, lambda: "the requests stalled", interval=0.001)
    finally:
        stop.set()
        for t in threads:
            t.join(GUARD * 2)
    assert not failures, failures
    for proto in ("rest", "grpc"):
        assert results[proto], proto
        assert set(results[proto]) <= set(constants), (proto, set(results[proto]))
    steady_serving(server)


def test_reload_and_unload_while_requests_wait(server, repo):
    # Requests waiting in the batcher of an instance that is replaced or
    # unloaded finish on that instance; new requests see the change.
    batching = {"max_batch_size": 8, "max_batch_time": 1.0}
    write_model(repo, "waits-reload", arith("builtin.add", 1, **batching))
    write_model(repo, "waits-unload", arith("builtin.add", 2, **batching))
    for name in ("waits-reload", "waits-unload"):
        assert rest_load(server, name)[0] == 200
    conns = []
    for name in ("waits-reload", "waits-unload"):
        for i in range(2):
            c = RawConn(server.http)
            c.send(http_bytes("POST", f"/v2/models/{name}/infer",
                              {"id": f"{name}-{i}", "inputs": [tensor("INPUT", X4 + i)]}))
            conns.append((c, name, i))
    wait_server_read_all(server.http)
    write_model(repo, "waits-reload", arith("builtin.add", 100))
    assert rest_load(server, "waits-reload")[0] == 200
    assert rest_unload(server, "waits-unload")[0] == 200
    try:
        for c, name, i in conns:
            r = c.response()
            assert r.status == 200, r.body
            assert r.json()["id"] == f"{name}-{i}"
            constant = 1 if name == "waits-reload" else 2
            np.testing.assert_array_equal(outputs_of(r.json())["OUTPUT"], X4 + i + constant)
    finally:
        for c, _, _ in conns:
            c.close()
    np.testing.assert_array_equal(add_result(server, "waits-reload"), X4 + 100)
    assert infer(server.http, "waits-unload", [tensor("INPUT", X4)])[0] == 404


def test_loaded_gauge(server):
    # /metrics counts the models ready, as the index does.
    ready = index(server, ready=True)
    assert metric(metrics(server.http), "seldon_loaded_model_gauge") == len(ready)


def test_names_cannot_escape(server, repo, g, stub, tmp_path_factory):
    # A model folder next to the repository, not in it: no name reaches it.
    outside = tmp_path_factory.mktemp("outside")
    write_model(outside, "evil", arith("builtin.add", 666))
    rel = f"../{outside.name}/evil"
    for name in ["..", ".hidden", "..%2Fevil", "a%2F..%2F..", "%2e%2e"]:
        status, headers, body = rest_load(server, name)
        assert status in (400, 404), (name, status, body)
    assert request(server.http, "POST", f"/v2/repository/models/{rel}/load", b"")[0] == 404
    for name in ["..", rel, "/etc", "a/b"]:
        with pytest.raises(g.grpc.RpcError) as err:
            stub.RepositoryModelLoad(g.pb2.RepositoryModelLoadRequest(model_name=name),
                                     timeout=GUARD)
        assert err.value.code() in (g.grpc.StatusCode.INVALID_ARGUMENT,
                                    g.grpc.StatusCode.NOT_FOUND), name
    assert all(row["state"] != "READY" or "evil" not in name
               for name, row in index(server).items())
