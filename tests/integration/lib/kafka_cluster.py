"""The distributed system with Kafka, shared by the kgw and dfsched suites: the pipeline
gateway suite's system (scheduler, agent + server replica, router fed by the scheduler;
models loaded with the `seldon` CLI) plus seldon-kafka-dev and seldon-modelgateway (the
dataflow suite's helpers), each a process of its own. A suite's conftest.py imports
pytest_configure and the fixtures from here and adds its own dataflow workers and gateways.
Deadlines only guard against hangs; no assertion depends on time.
"""
import contextlib
import importlib.util
import os
import sys
import types

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))


def _load(name, path):
    if name in sys.modules:
        return sys.modules[name]
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


def kafka_args(bootstrap):
    """A gateway's flags for Kafka mode on the broker at bootstrap."""
    return ["--kafka", "--kafka-broker", bootstrap,
            "--kafka-config", "session.timeout.ms=6000",
            "--kafka-config", "heartbeat.interval.ms=500"]


@contextlib.contextmanager
def system(tmp, broker, models):
    """pg.System in tmp with the models loaded and s.mgw, a seldon-modelgateway serving
    models (--model) through the router on broker. s.broker is broker and s.extra the
    processes stopped before the system (the model gateway first); on exit the broker in
    s.broker then (a test may have restarted it) is stopped too."""
    src = tmp / "src"
    src.mkdir()
    s = None
    extra = []
    try:
        s = pg.System(tmp)
        s.broker = broker
        s.extra = extra
        s.load("models.yaml", pg.models_yaml(str(src)), "-w", "ModelAvailable")
        router = types.SimpleNamespace(port=s.port)
        s.mgw = kh.ModelGateway(router, *sum((["--model", m] for m in models), []),
                                broker=broker.bootstrap)
        extra.append(s.mgw)
        yield s
    finally:
        for d in extra:
            try:
                d.stop()
            except AssertionError:
                pass
        if s is not None:
            s.stop()
            broker = s.broker
        broker.stop()
