"""Experiments through real daemons: seldon-scheduler, a seldon-agent + seldon-server
replica and seldon-router fed by the scheduler, driven by the seldon CLI as a user does.

Three builtin.add models answer differently (iris: +10, iris2: +20, iris3: +30), so an
answer shows which model made it, and x-seldon-route names it too. The counts per route
come from `seldon model infer -i N`. Nothing here waits a fixed time: the helpers poll
for the state (the router takes each new table as it comes).
"""
import json
import os
import sys

import pytest

from conftest import HOST, SOURCE, Scheduler, cli, write

sys.path.insert(0, os.path.join(SOURCE, "tests", "integration", "lib"))
import cluster  # noqa: E402
import procs  # noqa: E402
from cluster import Replica, model_source, start_router, until  # noqa: E402

pytestmark = pytest.mark.skipif(
    not os.path.exists(cluster.AGENT) or not cluster.router_subscribes(),
    reason="needs seldon-agent and a seldon-router with --scheduler-host")

REQUEST = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                  "data": [1, 2, 3]}]})
ANSWERS = {"iris": [11, 12, 13], "iris2": [21, 22, 23], "iris3": [31, 32, 33]}


def model_doc(name, uri):
    return ("apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n"
            f"  name: {name}\nspec:\n  storageUri: \"{uri}\"\n  memory: 1Mi\n"
            "  requirements: [sklearn]\n")


def experiment_doc(name, body):
    return ("apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata:\n"
            f"  name: {name}\nspec:\n{body}")


class System:
    def __init__(self, tmp):
        self.tmp = tmp
        self.sched = Scheduler(tmp / "state")
        self.replica = Replica(tmp, self.sched, "mlserver", ["sklearn", "mlserver"], "512Mi",
                               metrics=True)
        self.router = start_router(tmp, self.sched, metrics=True)
        self.infer_host = f"{HOST}:{self.router.ports['port']}"
        text = "---\n".join(model_doc(n, model_source(tmp, n, int(a[0]) - 1))
                            for n, a in ANSWERS.items())
        r = self.cli("load", "-f", write(tmp, "models.yaml", text), "-w", "ModelAvailable")
        assert r.code == 0, f"{r}\n{self.sched.stderr()}"

    def cli(self, *args):
        return cli(*args, scheduler=self.sched, infer=self.infer_host)

    def start(self, name, body, *flags):
        return self.cli("experiment", "start", "-f",
                        write(self.tmp, f"{name}.yaml", experiment_doc(name, body)), *flags)

    def routes(self, model, n, *flags):
        """`seldon model infer model -i n`: {x-seldon-route: count}, all answered."""
        r = self.cli("model", "infer", model, REQUEST, "-i", str(n), *flags)
        assert r.code == 0, f"{r}\n{self.router.stderr()}"
        out = r.json()
        assert out["success"] == n, out
        return out["routes"]

    def until_routes(self, model, n, done, *flags):
        """Repeats -i n until done(counts): the router takes the scheduler's tables as they
        come, so the first requests may find the route missing (404)."""
        def attempt():
            r = self.cli("model", "infer", model, REQUEST, "-i", str(n), *flags)
            return r.json()["routes"] if r.code == 0 else None
        return until(attempt, lambda c: c is not None and done(c), self.router)

    def mirrored(self, model):
        """Inference calls the agent counted for model (the mirror's copies among them)."""
        return self.replica.agent.metric("seldon_model_infer_total", model=model) or 0

    def copies(self):
        """Mirror copies the router sent to iris3 (seldon_router_mirrored_total)."""
        return self.router.metric("seldon_router_mirrored_total", route="iris3") or 0

    def settled(self, agent_base=0, copies_base=0):
        """Waits until the agent counted every copy the router sent since the bases were
        taken (direct calls to iris3 aside): no copy is in flight or lost."""
        procs.wait_until(
            lambda: self.mirrored("iris3") - agent_base == self.copies() - copies_base, 30,
            lambda: f"agent {self.mirrored('iris3') - agent_base}, router "
                    f"{self.copies() - copies_base}\n" + self.router.stderr())

    def stop(self):
        self.router.stop()
        self.replica.stop()
        self.sched.stop()


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    s = System(tmp_path_factory.mktemp("experiments"))
    yield s
    s.stop()
    cluster.kill_leftovers()


AB = "  default: iris\n  candidates:\n  - {name: iris, weight: 75}\n  - {name: iris2, weight: 25}\n"


def test_split_75_25_and_endpoint_back_on_stop(system):
    r = system.start("ab", AB, "-w")
    assert r.code == 0, f"{r}\n{system.sched.stderr()}"
    st = system.cli("experiment", "status", "ab", "-w")
    assert st.code == 0, st
    status = st.json()
    assert status["experimentName"] == "ab" and status["active"] is True, status
    assert status["candidatesReady"] is True and status["statusDescription"] == \
        "experiment active", status
    assert system.sched.metric("seldon_scheduler_experiments", state="ExperimentActive") == 1
    # The router has the split once a few requests reach iris2 through the default's name.
    system.until_routes("iris", 20, lambda c: ":iris2_1:" in c)
    counts = system.routes("iris", 2000)
    assert set(counts) == {":iris_1:", ":iris2_1:"}, counts
    share = counts[":iris_1:"] / 2000
    assert 0.72 <= share <= 0.78, counts
    # gRPC splits too, and each answer is the model that x-seldon-route names.
    counts = system.routes("iris", 300, "--inference-mode", "grpc")
    assert set(counts) == {":iris_1:", ":iris2_1:"}, counts
    for mode in ("rest", "grpc"):
        for route, model in ((":iris_1:", "iris"), (":iris2_1:", "iris2")):
            r = system.cli("model", "infer", "iris", REQUEST, "--inference-mode", mode,
                           "--header", f"x-seldon-route={route}", "--show-headers")
            assert r.code == 0, r
            assert r.json()["outputs"][0]["data"] == ANSWERS[model], (mode, route, r)
            assert f"x-seldon-route: {route}" in r.err, r
    # Stopping gives the endpoint back: iris answers alone again.
    r = system.cli("experiment", "stop", "ab")
    assert r.code == 0 and r.json()["unloaded"] is True, r
    system.until_routes("iris", 50, lambda c: c == {":iris_1:": 50})
    r = system.cli("experiment", "status", "ab")
    assert r.code == 1 and "NOT_FOUND" in r.err, r
    assert system.sched.metric("seldon_scheduler_experiments", state="ExperimentActive") == 0


def test_sticky_sessions_hold(system):
    r = system.start("sticky", AB.replace("75", "50").replace("25", "50"), "-w")
    assert r.code == 0, r
    system.until_routes("iris", 40, lambda c: len(c) == 2)
    # -s sends the first answer's x-seldon-route back: every later answer comes from it.
    for mode in ("rest", "grpc"):
        for _ in range(3):
            counts = system.routes("iris", 100, "-s", "--inference-mode", mode)
            assert len(counts) == 1 and list(counts.values()) == [100], counts
    # A header naming a candidate pins it, whatever the weights say.
    counts = system.routes("iris", 200, "--header", "x-seldon-route=:iris2_1:")
    assert counts == {":iris2_1:": 200}, counts
    counts = system.routes("iris", 200, "--header", "x-seldon-route=:iris_1:",
                           "--inference-mode", "grpc")
    assert counts == {":iris_1:": 200}, counts
    # A value naming no candidate leaves the split as it is.
    counts = system.routes("iris", 200, "--header", "x-seldon-route=:iris3_1:")
    assert len(counts) == 2, counts
    assert system.cli("experiment", "stop", "sticky").code == 0
    system.until_routes("iris", 20, lambda c: c == {":iris_1:": 20})


def test_mirror_gets_copies_callers_never_see_them(system):
    agent0, copies0 = system.mirrored("iris3"), system.copies()
    r = system.start("mirrored", AB + "  mirror: {name: iris3, percent: 100}\n", "-w")
    assert r.code == 0, r
    system.until_routes("iris", 10, lambda c: ":iris2_1:" in c)
    system.settled(agent0, copies0)
    base, copies = system.mirrored("iris3"), system.copies()
    n = 0
    for mode in ("rest", "grpc"):
        counts = system.routes("iris", 200, "--inference-mode", mode)
        n += 200
        assert ":iris3_1:" not in counts and sum(counts.values()) == 200, counts
        # the answers are the candidates' own
        r = system.cli("model", "infer", "iris", REQUEST, "--inference-mode", mode)
        assert r.json()["outputs"][0]["data"] in (ANSWERS["iris"], ANSWERS["iris2"]), r
        n += 1
    # Every request was copied (percent 100), and each copy reached the mirror's model.
    system.settled(base, copies)
    assert system.copies() - copies == n
    assert system.mirrored("iris3") - base == n
    # The mirror's own name still answers by itself.
    r = system.cli("model", "infer", "iris3", REQUEST)
    assert r.code == 0 and r.json()["outputs"][0]["data"] == ANSWERS["iris3"], r
    assert system.cli("experiment", "stop", "mirrored").code == 0
    system.until_routes("iris", 20, lambda c: c == {":iris_1:": 20})


def test_half_mirror_samples_its_share(system):
    agent0, copies0 = system.mirrored("iris3"), system.copies()
    r = system.start("half", "  candidates: [{name: iris, weight: 1}]\n"
                             "  mirror: {name: iris3, percent: 50}\n", "-w")
    assert r.code == 0, r
    system.until_routes("half.experiment", 5, lambda c: c == {":iris_1:": 5})
    system.settled(agent0, copies0)
    base, copies = system.mirrored("iris3"), system.copies()
    counts = system.routes("half.experiment", 1000)
    assert counts == {":iris_1:": 1000}, counts
    # About half of the requests were copied, and every copy arrived.
    system.settled(base, copies)
    sent = system.copies() - copies
    assert 420 <= sent <= 580, sent
    assert system.mirrored("iris3") - base == sent
    assert system.cli("experiment", "stop", "half").code == 0


def test_experiment_without_default_has_its_own_endpoint(system):
    r = system.start("nodefault", "  candidates:\n  - {name: iris, weight: 50}\n"
                                  "  - {name: iris2, weight: 50}\n", "-w")
    assert r.code == 0, r
    counts = system.until_routes("nodefault.experiment", 40, lambda c: len(c) == 2)
    assert set(counts) == {":iris_1:", ":iris2_1:"}
    # iris itself is not taken over
    assert system.routes("iris", 30) == {":iris_1:": 30}
    lst = system.cli("experiment", "list")
    assert lst.code == 0 and {"name": "nodefault", "active": True,
                              "statusDescription": "experiment active"} in \
        lst.json()["experiments"], lst
    assert system.cli("experiment", "stop", "nodefault").code == 0


def test_waiting_for_a_candidate(system):
    r = system.start("waits", "  default: iris\n  candidates:\n  - {name: iris, weight: 50}\n"
                              "  - {name: nope, weight: 50}\n")
    assert r.code == 0, r
    st = system.cli("experiment", "status", "waits").json()
    assert st["active"] is False and st["candidatesReady"] is False, st
    assert st["statusDescription"] == 'waiting for candidate model "nope"', st
    # -w gives up at the timeout, naming what it waits for
    r = system.cli("experiment", "status", "waits", "-w", "-t", "1")
    assert r.code == 1 and 'waiting for candidate model \\"nope\\"' in r.err or \
        'waiting for candidate model "nope"' in r.err, r
    # iris is not split meanwhile
    assert system.routes("iris", 20) == {":iris_1:": 20}
    assert system.cli("experiment", "stop", "waits").code == 0


@pytest.mark.parametrize("body,field", [
    ("  default: iris\n  candidates: [{name: iris2, weight: 1}]\n",
     'spec.default: "iris" is not one of the candidates'),
    ("  resourceType: model\n", "an experiment needs at least one candidate or a mirror"),
    ("  candidates: [{name: a, weight: 1}, {name: a, weight: 2}]\n",
     'spec.candidates[1].name: "a" is already a candidate'),
    ("  candidates: [{name: a, weight: x}]\n", "spec.candidates[0].weight"),
])
def test_bad_experiments_are_refused_naming_the_field(system, body, field):
    r = system.start("bad", body)
    assert r.code == 1 and field in r.err, r


def test_the_mirror_is_not_a_candidate(system):
    r = system.start("dup", "  candidates: [{name: iris, weight: 1}]\n"
                            "  mirror: {name: iris, percent: 10}\n")
    assert r.code == 1 and 'spec.mirror.name: "iris" is already a candidate' in r.err, r


def test_a_model_is_the_default_of_one_experiment(system):
    assert system.start("first", AB).code == 0
    r = system.start("second", AB)
    assert r.code == 1, r
    assert 'spec.default: "iris" is already the default of experiment "first"' in r.err, r
    assert system.cli("experiment", "stop", "first").code == 0
    assert system.start("second", AB).code == 0
    assert system.cli("experiment", "stop", "second").code == 0


def test_experiment_survives_a_scheduler_restart(system):
    assert system.start("kept", AB, "-w").code == 0
    system.until_routes("iris", 20, lambda c: ":iris2_1:" in c)
    system.sched.restart()
    # The router split on meanwhile (its table is the last it had) ...
    counts = system.routes("iris", 40)
    assert set(counts) <= {":iris_1:", ":iris2_1:"}, counts
    # ... and the scheduler brought the experiment back from its store: active once the
    # agent is back, and the routes it sends split as before.
    r = system.cli("experiment", "status", "kept", "-w")
    assert r.code == 0 and r.json()["active"] is True, f"{r}\n{system.sched.stderr()}"
    system.router.wait_log("subscribed again")  # a table from the restarted scheduler
    system.until_routes("iris", 40, lambda c: len(c) == 2)
    assert system.cli("experiment", "stop", "kept").code == 0
    system.until_routes("iris", 20, lambda c: c == {":iris_1:": 20})
