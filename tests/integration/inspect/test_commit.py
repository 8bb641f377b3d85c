"""seldon-modelgateway commits an input's offset only once its output is produced.

A gateway whose producer refuses the answer (message.max.bytes below the answer's
size: librdkafka refuses it before it leaves) keeps producing it again and never
counts the record done; stopped, it commits what was done and nothing past the
stuck record. A second gateway in the same group then answers the stuck record
(the commit did not pass it: no loss) and not the record answered before it (the
commit did pass that one)."""
import numpy as np
import pytest

from conftest import ModelGateway, KafkaDev, consume, consume_all, g, produce, rh, sh  # noqa: F401

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


def req(g, n, rid):
    x = np.arange(n, dtype=np.float32).reshape(1, n)
    return g.request("identity", {"x": x}, id=rid).SerializeToString()


def test_offset_committed_only_after_the_output(g, router):
    broker = KafkaDev("--topic", IN + ":1", "--topic", OUT + ":1")
    a = b = None
    try:
        a = ModelGateway(router, "--model", "identity", "--kafka-config", "message.max.bytes=1000",
                         "--kafka-commit-interval", "50", "--grace", "500",
                         broker=broker.bootstrap)
        a.wait_log(r"assigned seldon\.default\.model\.identity\.inputs")
        produce(broker.bootstrap, IN, req(g, 1, "small"), key="0.p.small",
                headers=[("pipeline", "p")])
        assert [r.key for r in consume(broker.bootstrap, OUT, 1)] == ["0.p.small"]
        # 400 floats: the answer passes the producer's 1000 bytes and is refused.
        produce(broker.bootstrap, IN, req(g, 400, "big"), key="0.p.big",
                headers=[("pipeline", "p")])
        a.wait_log(r"seldon\.default\.model\.identity\.outputs: .*producing again", count=2)
        assert sh.metric(a.metrics(), "seldon_modelgateway_records_total", result="ok") == 1
        assert sh.metric(a.metrics(), "seldon_modelgateway_produce_retries_total") >= 2
        a.stop()
        a = None
        assert [r.key for r in consume_all(broker.bootstrap, OUT)] == ["0.p.small"]
        # Same group, no limit: the stuck record is answered now, the first is not again.
        b = ModelGateway(router, "--model", "identity", broker=broker.bootstrap)
        b.wait_log(r"assigned seldon\.default\.model\.identity\.inputs")
        recs = consume(broker.bootstrap, OUT, 2)
        assert [r.key for r in recs] == ["0.p.small", "0.p.big"]
        resp = g.pb2.ModelInferResponse()
        resp.ParseFromString(recs[1].value)
        assert resp.id == "big" and len(resp.raw_output_contents[0]) == 1600
        sh.procs.wait_until(
            lambda: sh.metric(b.metrics(), "seldon_modelgateway_records_total", result="ok") == 1,
            60, b.stderr)
        assert consume_all(broker.bootstrap, "seldon.default.errors.errors") == []
    finally:
        for x in (a, b):
            if x is not None and x.proc.poll() is None:
                x.stop()
        broker.stop()
