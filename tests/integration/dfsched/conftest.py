"""seldon-dataflow fed by the scheduler: the system of tests/integration/lib/kafka_cluster.py
(scheduler, agent + server replica, router fed by the scheduler, seldon-kafka-dev,
seldon-modelgateway; pipelines loaded with the `seldon` CLI) plus a seldon-pipelinegateway
in Kafka mode and seldon-dataflow workers started with --scheduler-host (no --pipeline
file), each a process of its own. Deadlines only guard against hangs; no assertion depends
on time.
"""
import os
import socket
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import kafka_cluster as kc  # noqa: E402
from kafka_cluster import (_no_leftovers, df, g, kh, pg, pipeline_docs,  # noqa: E402,F401
                           pytest_configure)

MODELS = ["tfsimple1", "tfsimple2"]


def worker(s, name):
    """A dataflow worker subscribed to the scheduler, with no --pipeline file."""
    return df.Dataflow(s.broker.bootstrap, [], "--scheduler-host", s.scheduler.route_target,
                       "--name", name, "--resubscribe-max", "200")


@pytest.fixture(scope="module")
def ksys(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dfsched")
    # On a port of its own choosing, so that a test can restart it there.
    with socket.socket() as sock:
        sock.bind((kh.HOST, 0))
        port = sock.getsockname()[1]
    broker = kh.KafkaDev(port=port)
    broker.port = port
    with kc.system(tmp, broker, MODELS) as s:
        s.mgw.wait_log(r"consuming the inputs of")
        s.add_gateway("kgw-1", *kc.kafka_args(s.broker.bootstrap))
        yield s
