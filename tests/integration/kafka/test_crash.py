"""A model gateway killed in the middle of a bounded loop: the other member of its
group takes its partitions over and every request is answered (duplicates allowed,
never a loss). The broker restarted on its fixed port: the gateway resumes by itself."""
import socket

import numpy as np
import pytest

from conftest import KafkaDev, ModelGateway, consume, consume_all, g, produce, rh, sh  # noqa: F401

IN = "seldon.default.model.{}.inputs"
OUT = "seldon.default.model.{}.outputs"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    sh.write_samples(root)
    s = sh.Server(root)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def router(server):
    ups = [rh.upstream_of(server)]
    r = rh.Router(rh.routes_yaml([(n, ups, None) for n in ["identity", "slow"]]))
    yield r
    r.stop()


def req(g, model, i):
    return g.request(model, {"x": np.array([[i]], dtype=np.float32)},
                     id=f"r{i}").SerializeToString()


def test_killed_gateway_loses_nothing(g, router):
    broker = KafkaDev("--topic", IN.format("slow") + ":2")
    a = b = None
    try:
        # One call at a time per partition, each held 0.3 s by the model's batch timer:
        # the kill lands while records are in flight or waiting.
        a = ModelGateway(router, "--model", "slow", "--max-inflight", "1",
                         broker=broker.bootstrap)
        a.wait_log(r"assigned seldon\.default\.model\.slow\.inputs", count=2)
        b = ModelGateway(router, "--model", "slow", "--max-inflight", "1",
                         broker=broker.bootstrap)
        b.wait_log(r"assigned seldon\.default\.model\.slow\.inputs")
        n = 24
        keys = {f"{i % 2}.p.id{i}" for i in range(n)}
        for i in range(n):
            produce(broker.bootstrap, IN.format("slow"), req(g, "slow", i), key=f"{i % 2}.p.id{i}",
                    partition=i % 2)
        sh.procs.wait_until(
            lambda: sh.metric(a.metrics(), "seldon_modelgateway_records_total", result="ok") >= 2,
            60, a.stderr)
        a_done = sh.metric(a.metrics(), "seldon_modelgateway_records_total", result="ok")
        a.kill()
        b_done = sh.metric(b.metrics(), "seldon_modelgateway_records_total", result="ok")
        assert a_done + b_done < n, "the kill landed after everything was answered"

        def answered():
            return {r.key for r in consume_all(broker.bootstrap, OUT.format("slow"))}
        sh.procs.wait_until(lambda: answered() >= keys, 120,
                            lambda: f"missing {sorted(keys - answered())}\n{b.stderr()}")
        recs = consume_all(broker.bootstrap, OUT.format("slow"))
        assert {r.key for r in recs} == keys
        for r in recs:
            resp = g.pb2.ModelInferResponse()
            resp.ParseFromString(r.value)
            assert resp.id == "r" + r.key.split("id")[-1]
        assert consume_all(broker.bootstrap, "seldon.default.errors.errors") == []
    finally:
        for x in (a, b):
            if x is not None and x.proc.poll() is None:
                x.stop()
        broker.stop()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_gateway_resumes_after_broker_restart(g, router):
    port = free_port()
    broker = KafkaDev(port=port)
    gw = ModelGateway(router, "--model", "identity", broker=broker.bootstrap)
    try:
        gw.wait_log(r"assigned seldon\.default\.model\.identity\.inputs")
        produce(broker.bootstrap, IN.format("identity"), req(g, "identity", 1), key="0.p.before")
        assert [r.key for r in consume(broker.bootstrap, OUT.format("identity"), 1)] == [
            "0.p.before"]
        broker.stop()
        broker = KafkaDev(port=port)  # empty: topics, groups and offsets are gone
        produce(broker.bootstrap, IN.format("identity"), req(g, "identity", 2), key="1.p.after")
        [rec] = consume(broker.bootstrap, OUT.format("identity"), 1)
        assert rec.key == "1.p.after"
    finally:
        gw.stop()
        broker.stop()
