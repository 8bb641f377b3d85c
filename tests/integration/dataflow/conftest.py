"""Helpers for the seldon-dataflow tests: the Kafka suite's (broker, model gateway, kcat),
plus the dataflow worker as a process of its own.

Deadlines only guard against hangs; no assertion depends on time.
"""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))

_spec = importlib.util.spec_from_file_location(
    "kafka_helpers", os.path.join(SOURCE, "tests", "integration", "kafka", "conftest.py"))
kh = importlib.util.module_from_spec(_spec)
sys.modules["kafka_helpers"] = kh
_spec.loader.exec_module(kh)

DATAFLOW = os.environ.get("SELDON_DATAFLOW") or os.path.join(
    SOURCE, "build", "daemons", "dataflow", "seldon-dataflow")

g = kh.g
_no_leftovers = kh._no_leftovers


def pytest_configure(config):
    kh.pytest_configure(config)
    kh.procs.require((DATAFLOW, "SELDON_DATAFLOW"))


class Dataflow(kh.Daemon):
    name = "seldon-dataflow"

    def __init__(self, broker, files, *args, group="seldon-dataflow", expect_fail=False):
        cmd = [DATAFLOW, "--metrics-port", "0", "--host", kh.HOST, "--kafka-broker", broker,
               "--group", group, "--kafka-config", "session.timeout.ms=6000",
               "--kafka-config", "heartbeat.interval.ms=500"]
        for f in files:
            cmd += ["--pipeline", str(f)]
        cmd += [str(a) for a in args]
        super().__init__(cmd, r"serving metrics=(\d+)", expect_fail=expect_fail)
        if not expect_fail:
            self.metrics_port = int(self.match.group(1))

    def metrics(self):
        return kh.sh.metrics(self.metrics_port)
