"""The models a gateway serves come from the scheduler's route table
(RouteService.Subscribe; here the router suite's fake scheduler)."""
import os
import sys

import numpy as np
import pytest

from conftest import SOURCE, KafkaDev, ModelGateway, consume, g, produce, rh, sh  # noqa: F401

grpc = pytest.importorskip("grpc")
pytest.importorskip("grpc_tools")
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration", "router"))
import fake_scheduler  # noqa: E402


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
    r = rh.Router(rh.routes_yaml([(n, ups, None) for n in ["identity", "add10"]]))
    yield r
    r.stop()


def test_models_follow_the_route_table(g, router, server, tmp_path):
    sched = fake_scheduler.FakeScheduler(*fake_scheduler.compile_control(tmp_path))
    broker = KafkaDev()
    ups = [rh.upstream_of(server)]
    gw = None
    try:
        sched.push([("identity", ups)])
        gw = ModelGateway(router, "--scheduler-host", sched.target, broker=broker.bootstrap)
        sched.wait_subscribers(1, 60)
        gw.wait_log(r"route table generation 1: 1 route\(s\)")
        gw.wait_log(r"assigned seldon\.default\.model\.identity\.inputs")
        x = g.request("", {"x": np.array([[5]], dtype=np.float32)}).SerializeToString()
        produce(broker.bootstrap, "seldon.default.model.identity.inputs", x, key="0.p.a")
        assert consume(broker.bootstrap, "seldon.default.model.identity.outputs", 1)[0].key == \
            "0.p.a"
        # A new table: add10 joins; pipelines' routes are not models.
        sched.push([("identity", ups), ("add10", ups), ("cond.pipeline", ups)])
        gw.wait_log(r"route table generation 2: 3 route\(s\)")
        gw.wait_log(r"consuming the inputs of 2 model\(s\)")
        gw.wait_log(r"assigned seldon\.default\.model\.add10\.inputs")
        assert sh.metric(gw.metrics(), "seldon_modelgateway_models") == 2
        produce(broker.bootstrap, "seldon.default.model.add10.inputs", x, key="1.p.b")
        [rec] = consume(broker.bootstrap, "seldon.default.model.add10.outputs", 1)
        resp = g.pb2.ModelInferResponse()
        resp.ParseFromString(rec.value)
        np.testing.assert_array_equal(g.outputs(resp)["x"], [[15]])
        assert "cond.pipeline" not in gw.stderr()
    finally:
        if gw is not None:
            gw.stop()
        broker.stop()
        sched.stop()
