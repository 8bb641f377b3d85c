"""Adaptive batching: concurrent requests are gathered into batches and split
back, so that each caller gets exactly its own rows and its own id; the
batches show in /metrics."""
import json
import threading

import numpy as np
import pytest

from conftest import (GUARD, RawConn, Server, arith, http_bytes, metric, metrics, outputs_of,
                      tensor, write_model)

N = 16
BATCHING = {"max_batch_size": 8, "max_batch_time": 0.05}
MODELS = {
    # name: (settings, expected output name, function of the input)
    "batched": ({"implementation": "builtin.identity", **BATCHING}, None, lambda x: x),
    "batched-declared": ({"implementation": "builtin.identity", **BATCHING,
                          "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]},
                         None, lambda x: x),
    "batched-add": (arith("builtin.add", 10, **BATCHING), "OUTPUT", lambda x: x + 10),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("batching")
    for name, (settings, _, _) in MODELS.items():
        write_model(root, name, settings)
    srv = Server(root)
    yield srv
    srv.stop()


def request_input(model, i):
    """Request i's own rows: 1 to 3 of them, values no other request has.

    The undeclared identity also gets some requests that cannot join the
    others (another width, another datatype): they run alone.
    """
    rows = i % 3 + 1
    width, dtype = 3, np.float32
    if model == "batched" and i % 4 == 3:
        width = 2
    if model == "batched" and i % 5 == 4:
        dtype = np.int64
    x = (i * 1000 + np.arange(rows * width)).reshape(rows, width).astype(dtype)
    name = "INPUT" if model == "batched-add" else "x"
    return name, x


def check_output(model, out, i):
    _, want_name, fn = MODELS[model]
    name, x = request_input(model, i)
    assert list(out) == [want_name or name]
    got = out[want_name or name]
    assert got.dtype == x.dtype and got.shape == x.shape, (got, x)
    np.testing.assert_array_equal(got, fn(x))


def batch_stats(server, model):
    m = metrics(server.http)
    count = metric(m, "seldon_model_batch_size_count", model=model)
    total = metric(m, "seldon_model_batch_size_sum", model=model)
    by_le = {}
    for name, labels, value in m:
        if name == "seldon_model_batch_size_bucket" and labels.get("model") == model:
            by_le[float(labels["le"])] = value
    return m, count, total, by_le


def rest_round(server, model, tag):
    """N client threads, one connection each, the requests encoded beforehand and
    all released at once, so that they arrive within one batch window."""
    conns = [RawConn(server.http) for _ in range(N)]
    payloads = []
    for i in range(N):
        name, x = request_input(model, i)
        payloads.append(http_bytes("POST", f"/v2/models/{model}/infer",
                                   {"id": f"{tag}-{i}", "inputs": [tensor(name, x)]}))
    barrier = threading.Barrier(N)
    responses = [None] * N
    failures = []

    def client(i):
        try:
            barrier.wait(GUARD)
            conns[i].send(payloads[i])
            responses[i] = conns[i].response()
        except Exception as e:  # reported in the test's thread
            failures.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(GUARD * 2)
    for c in conns:
        c.close()
    assert not failures, failures
    for i, r in enumerate(responses):
        assert r.status == 200, r.body
        doc = r.json()
        assert doc["id"] == f"{tag}-{i}" and doc["model_name"] == model
        check_output(model, outputs_of(doc), i)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_concurrent_requests(server, g, model):
    # Every round must be right; batching must show within a few rounds (one
    # is enough unless the machine stalls the client longer than the window).
    for rounds in range(1, 4):
        rest_round(server, model, f"round{rounds}")
        m, count, total, by_le = batch_stats(server, model)
        # Every request went through the batcher once, never more than max_batch_size at a time.
        assert total == rounds * N
        assert by_le[8.0] == count
        if count > by_le[1.0]:
            break  # some batch held more than one request
    assert count > by_le[1.0], (count, by_le)
    assert metric(m, "seldon_model_infer_total", model=model, method_type="rest",
                  code="200") == rounds * N

    # gRPC: the same, as concurrent calls on one channel.
    channel, stub = g.stub(server)
    try:
        reqs = []
        for i in range(N):
            name, x = request_input(model, i)
            reqs.append(g.request(model, {name: x}, raw=bool(i % 2), id=f"g{i}"))
        futures = [stub.ModelInfer.future(r, timeout=GUARD) for r in reqs]
        for i, f in enumerate(futures):
            r = f.result()
            assert r.id == f"g{i}" and r.model_name == model
            check_output(model, g.outputs(r), i)
    finally:
        channel.close()
    m, count, total, by_le = batch_stats(server, model)
    assert total == (rounds + 1) * N
    assert by_le[8.0] == count
    assert metric(m, "seldon_model_infer_total", model=model, method_type="grpc", code="0") == N


def test_single_request_waits_for_its_batch(server):
    # Alone, a request is answered when its batch falls due.
    name, x = request_input("batched-add", 5)
    c = RawConn(server.http)
    try:
        c.send(http_bytes("POST", "/v2/models/batched-add/infer",
                          {"id": "alone", "inputs": [tensor(name, x)]}))
        r = c.response()
        assert r.status == 200 and r.json()["id"] == "alone"
        check_output("batched-add", outputs_of(r.json()), 5)
    finally:
        c.close()


def test_bad_request_in_a_batch(server):
    # A request the runtime refuses fails alone; its batch mates succeed.
    conns = [RawConn(server.http) for _ in range(6)]
    try:
        for i, c in enumerate(conns):
            if i == 2:
                body = {"id": "bad", "inputs": [{"name": "INPUT", "datatype": "BYTES",
                                                 "shape": [1], "data": ["a"]}]}
            else:
                name, x = request_input("batched-add", i)
                body = {"id": f"ok{i}", "inputs": [tensor(name, x)]}
            c.send(http_bytes("POST", "/v2/models/batched-add/infer", body))
        for i, c in enumerate(conns):
            r = c.response()
            if i == 2:
                assert r.status == 400, r.body
                assert "BYTES" in json.loads(r.body)["error"]
            else:
                assert r.status == 200, r.body
                assert r.json()["id"] == f"ok{i}"
                check_output("batched-add", outputs_of(r.json()), i)
    finally:
        for c in conns:
            c.close()
