"""Autoscaling suite: the fault suite's helpers (tests/faults/conftest.py: the scheduler,
replicas, the router, request loops), loaded as a module, plus replicas whose agents
report their models' load often (--load-report)."""
import importlib.util
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration", "lib"))
import cluster  # noqa: E402
import procs  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "faults_helpers", os.path.join(SOURCE, "tests", "faults", "conftest.py"))
fc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fc)


def pytest_configure(config):
    fc.pytest_configure(config)


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers():
    yield
    cluster.kill_leftovers()
    procs.kill_all(fc.cp.STARTED)


class Replica(cluster.Replica):
    """A seldon-server and its agent, the agent reporting its models' load every 100 ms."""

    def __init__(self, tmp, sched, index, server_name="mlserver"):
        super().__init__(tmp, sched, server_name, ["sklearn"], "512Mi", index=index,
                         extra=("--load-report", "100"))
