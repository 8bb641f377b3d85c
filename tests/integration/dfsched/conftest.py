"""seldon-dataflow fed by the scheduler: the pipeline gateway suite's system (scheduler,
agent + server replica, router fed by the scheduler; pipelines loaded with the `seldon`
CLI), plus seldon-kafka-dev, seldon-modelgateway, a seldon-pipelinegateway in Kafka mode
and seldon-dataflow workers started with --scheduler-host (no --pipeline file), each a
process of its own. Deadlines only guard against hangs; no assertion depends on time.
"""
import importlib.util
import os
import socket
import sys
import types

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


pg = _load("pipelinegateway_helpers",
           os.path.join(SOURCE, "tests", "integration", "pipelinegateway", "conftest.py"))
df = _load("dataflow_helpers",
           os.path.join(SOURCE, "tests", "integration", "dataflow", "conftest.py"))
kh = df.kh

MODELS = ["tfsimple1", "tfsimple2"]


def pytest_configure(config):
    pg.pytest_configure(config)
    df.pytest_configure(config)


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers():
    yield
    pg.cluster.kill_leftovers()
    pg.procs.kill_all(pg.cp.STARTED)


@pytest.fixture(scope="session")
def g(tmp_path_factory):
    grpc = pytest.importorskip("grpc")
    pb2, pb2_grpc = pg.oipstubs.compile_stubs(tmp_path_factory.mktemp("oip"), pg.sh.PROTO_DIR)
    return pg.sh.Grpc(pb2, pb2_grpc, grpc)


def pipeline_docs(names):
    """The documents of up's pipelines.yaml that define names."""
    text = open(os.path.join(pg.UP_PIPELINES, "pipelines.yaml")).read()
    docs = []
    for d in text.split("\n---\n"):
        for n in names:
            if f"\n  name: {n}\n" in d:
                docs.append(d)
    return "\n---\n".join(docs) + "\n"


def worker(s, name):
    """A dataflow worker subscribed to the scheduler, with no --pipeline file."""
    return df.Dataflow(s.broker.bootstrap, [], "--scheduler-host", s.scheduler.route_target,
                       "--name", name, "--resubscribe-max", "200")


@pytest.fixture(scope="module")
def ksys(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dfsched")
    src = tmp / "src"
    src.mkdir()
    # On a port of its own choosing, so that a test can restart it there.
    with socket.socket() as sock:
        sock.bind((kh.HOST, 0))
        port = sock.getsockname()[1]
    broker = kh.KafkaDev(port=port)
    broker.port = port
    s = None
    s_extra = []
    try:
        s = pg.System(tmp)
        s.broker = broker
        s.extra = s_extra
        s.load("models.yaml", pg.models_yaml(str(src)), "-w", "ModelAvailable")
        router = types.SimpleNamespace(port=s.port)
        mgw = kh.ModelGateway(router, *sum((["--model", m] for m in MODELS), []),
                              broker=broker.bootstrap)
        s_extra.append(mgw)
        mgw.wait_log(r"consuming the inputs of")
        s.add_gateway("kgw-1", "--kafka", "--kafka-broker", broker.bootstrap,
                      "--kafka-config", "session.timeout.ms=6000",
                      "--kafka-config", "heartbeat.interval.ms=500")
        yield s
    finally:
        for d in s_extra:
            try:
                d.stop()
            except AssertionError:
                pass
        if s is not None:
            s.stop()
            broker = s.broker  # the one running now (a test may have restarted it)
        broker.stop()
