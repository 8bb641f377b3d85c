"""Several model gateways in one consumer group share the input partitions; the
broker address comes from the flag, the environment or a config file."""
import os
import re
import tempfile

import numpy as np
import pytest

from conftest import (KafkaDev, ModelGateway, consume, g, produce, rh, sh)  # noqa: F401

IN = "seldon.default.model.identity.inputs"
OUT = "seldon.default.model.identity.outputs"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    sh.write_samples(root)
    s = sh.Server(root)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def router(server):
    r = rh.Router(rh.routes_yaml([("identity", [rh.upstream_of(server)], None)]))
    yield r
    r.stop()


def req(g, i):
    return g.request("identity", {"x": np.array([[i]], dtype=np.float32)},
                     id=f"r{i}").SerializeToString()


def assigned(gw):
    """The partitions a gateway holds now, replaying its log's assignments in order."""
    held = set()
    for what, part in re.findall(r"kafka: (assigned|revoked) (\S+ \[\d+\])", gw.stderr()):
        if what == "assigned":
            held.add(part)
        else:
            held.discard(part)
    return held


def test_two_gateways_share_partitions(g, router):
    broker = KafkaDev("--topic", IN + ":4", "--topic", OUT + ":4")
    a = b = None
    try:
        a = ModelGateway(router, "--model", "identity", broker=broker.bootstrap)
        a.wait_log(r"assigned seldon\.default\.model\.identity\.inputs", count=4)
        b = ModelGateway(router, "--model", "identity", broker=broker.bootstrap)
        # The group rebalances: each member ends with two of the four partitions.
        b.wait_log(r"assigned seldon\.default\.model\.identity\.inputs", count=2)
        sh.procs.wait_until(lambda: len(assigned(a)) == 2 and len(assigned(b)) == 2, 60,
                            lambda: f"{a.stderr()}\n{b.stderr()}")
        assert assigned(a).isdisjoint(assigned(b))
        n = 16
        for i in range(n):
            produce(broker.bootstrap, IN, req(g, i), key=f"{i % 4}.p.id{i}", partition=i % 4,
                    headers=[("x-request-id", f"id{i}")])
        recs = consume(broker.bootstrap, OUT, n)
        assert sorted(r.key for r in recs) == sorted(f"{i % 4}.p.id{i}" for i in range(n))
        for r in recs:
            assert r.partition == int(r.key.split(".")[0])
            assert r.header("x-request-id") == r.key.split(".")[-1]
            resp = g.pb2.ModelInferResponse()
            resp.ParseFromString(r.value)
            assert resp.id == "r" + r.key.split("id")[-1]
        done = [sh.metric(x.metrics(), "seldon_modelgateway_records_total", result="ok")
                for x in (a, b)]
        assert sum(done) == n and all(d > 0 for d in done), done
    finally:
        for x in (a, b):
            if x is not None:
                x.stop()
        broker.stop()


def test_broker_from_environment(g, router):
    broker = KafkaDev()
    try:
        gw = ModelGateway(router, "--model", "identity",
                          env={"SELDON_KAFKA_BROKER": broker.bootstrap})
        try:
            gw.wait_log(re.escape(f"Kafka {broker.bootstrap},"))
            gw.wait_log(r"assigned seldon\.default\.model\.identity\.inputs")
            produce(broker.bootstrap, IN, req(g, 7), key="0.p.env")
            [rec] = consume(broker.bootstrap, OUT, 1)
            assert rec.key == "0.p.env"
        finally:
            gw.stop()
    finally:
        broker.stop()


def test_flag_and_config_file_win_over_environment(g, router):
    broker = KafkaDev()
    dead = "127.0.0.1:1"
    try:
        # --kafka-broker wins over the environment.
        gw = ModelGateway(router, "--model", "identity", broker=broker.bootstrap,
                          env={"SELDON_KAFKA_BROKER": dead})
        try:
            gw.wait_log(r"assigned seldon\.default\.model\.identity\.inputs")
        finally:
            gw.stop()
        # A config file's bootstrap.servers wins too, and its other properties apply.
        with tempfile.NamedTemporaryFile("w", suffix=".properties", delete=False) as f:
            f.write("# librdkafka properties\n\nbootstrap.servers = %s\n"
                    "client.id=from-the-file\n" % broker.bootstrap)
            path = f.name
        gw = ModelGateway(router, "--model", "identity", "--kafka-config-file", path,
                          "--kafka-config", "debug=generic", "--log-level", "debug", "--group", "g2",
                          env={"SELDON_KAFKA_BROKER": dead})
        try:
            gw.wait_log(r"assigned seldon\.default\.model\.identity\.inputs")
            assert "from-the-file" in gw.stderr()  # librdkafka's debug lines name the client
            produce(broker.bootstrap, IN, req(g, 8), key="1.p.file")
            recs = consume(broker.bootstrap, OUT, 1)
            assert recs[0].key == "1.p.file"
        finally:
            gw.stop()
        os.unlink(path)
    finally:
        broker.stop()


def test_bad_kafka_property_is_refused(router):
    gw = ModelGateway(router, "--model", "identity", "--kafka-config", "no.such.property=1",
                      expect_fail=True)
    assert gw.proc.wait(60) == 2
    gw.errfile.close()
    assert "no.such.property" in gw.stderr()


def test_prefix_and_namespace(g, router):
    broker = KafkaDev()
    try:
        gw = ModelGateway(router, "--model", "identity", "--kafka-prefix", "acme",
                          "--kafka-namespace", "ns1", broker=broker.bootstrap)
        try:
            gw.wait_log(r"assigned acme\.ns1\.model\.identity\.inputs")
            produce(broker.bootstrap, "acme.ns1.model.identity.inputs", req(g, 3), key="0.p.ns")
            [rec] = consume(broker.bootstrap, "acme.ns1.model.identity.outputs", 1)
            assert rec.key == "0.p.ns"
        finally:
            gw.stop()
        bad = ModelGateway(router, "--model", "identity", "--kafka-prefix", "a/b",
                           expect_fail=True)
        assert bad.proc.wait(60) == 2
        bad.errfile.close()
        assert "--kafka-prefix" in bad.stderr()
    finally:
        broker.stop()
