"""seldon-pipelinegateway --kafka in the distributed system: the pipeline gateway suite's
system (scheduler, agent + server replica, router fed by the scheduler; the pipelines
loaded with the `seldon` CLI), plus seldon-kafka-dev, seldon-modelgateway and
seldon-dataflow (the dataflow suite's helpers), each a process of its own. The gateways
run in Kafka mode: they produce requests and read answers, the dataflow worker runs the
pipelines. Deadlines only guard against hangs; no assertion depends on time.
"""
import importlib.util
import os
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

MODELS = ["tfsimple1", "tfsimple2", "conditional", "slow"]
PIPELINES = ("chain", "failing", "slowpipe")


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


@pytest.fixture(scope="module")
def ksys(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kgw")
    src = tmp / "src"
    src.mkdir()
    broker = kh.KafkaDev()
    s = None
    extra = []
    try:
        s = pg.System(tmp)
        s.broker = broker
        s.load("models.yaml", pg.models_yaml(str(src)), "-w", "ModelAvailable")
        text = pipeline_docs(PIPELINES)
        manifests = tmp / "pipelines.yaml"
        manifests.write_text(text)
        s.load("pipelines.yaml", text)
        router = types.SimpleNamespace(port=s.port)
        mgw = kh.ModelGateway(router, *sum((["--model", m] for m in MODELS), []),
                              broker=broker.bootstrap)
        extra.append(mgw)
        flow = df.Dataflow(broker.bootstrap, [manifests])
        extra.append(flow)
        flow.wait_log(r"serving: Kafka")
        mgw.wait_log(r"consuming the inputs of")
        s.kafka_args = ["--kafka", "--kafka-broker", broker.bootstrap,
                        "--kafka-config", "session.timeout.ms=6000",
                        "--kafka-config", "heartbeat.interval.ms=500"]
        s.add_gateway("kgw-1", *s.kafka_args)
        yield s
    finally:
        for d in extra:
            try:
                d.stop()
            except AssertionError:
                pass
        if s is not None:
            s.stop()
        broker.stop()
