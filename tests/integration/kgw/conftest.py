"""seldon-pipelinegateway --kafka in the distributed system: the system of
tests/integration/lib/kafka_cluster.py (scheduler, agent + server replica, router fed by the
scheduler, seldon-kafka-dev, seldon-modelgateway; the pipelines loaded with the `seldon`
CLI) plus seldon-dataflow running them from a --pipeline file, each a process of its own.
The gateways run in Kafka mode: they produce requests and read answers, the dataflow worker
runs the pipelines. Deadlines only guard against hangs; no assertion depends on time.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import kafka_cluster as kc  # noqa: E402
from kafka_cluster import _no_leftovers, df, g, kh, pg, pytest_configure  # noqa: E402,F401

MODELS = ["tfsimple1", "tfsimple2", "conditional", "slow"]
PIPELINES = ("chain", "failing", "slowpipe")


@pytest.fixture(scope="module")
def ksys(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kgw")
    with kc.system(tmp, kh.KafkaDev(), MODELS) as s:
        text = kc.pipeline_docs(PIPELINES)
        manifests = tmp / "pipelines.yaml"
        manifests.write_text(text)
        s.load("pipelines.yaml", text)
        flow = df.Dataflow(s.broker.bootstrap, [manifests])
        s.extra.append(flow)
        flow.wait_log(r"serving: Kafka")
        s.mgw.wait_log(r"consuming the inputs of")
        s.kafka_args = kc.kafka_args(s.broker.bootstrap)
        s.add_gateway("kgw-1", *s.kafka_args)
        yield s
