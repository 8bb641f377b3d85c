"""seldon-dataflow over seldon-kafka-dev: pipeline requests written to the inputs topic
by kcat, the steps served by seldon-modelgateway through a real router and server, the
answers read back from the outputs topic by kcat (keys, headers, protobuf values)."""
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import Dataflow, g, kh  # noqa: F401

sh, rh = kh.sh, kh.rh
PIN = "seldon.default.pipeline.{}.inputs"
POUT = "seldon.default.pipeline.{}.outputs"
MIN = "seldon.default.model.{}.inputs"

PIPELINES = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: chain
spec:
  steps:
  - name: add10
  - name: add20
    inputs:
    - add10
  output:
    steps:
    - add20
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: join
spec:
  steps:
  - name: add10
  - name: mul10
  output:
    steps:
    - add10
    - mul10
    tensorMap:
      add10.outputs.x: a
      mul10.outputs.x: b
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: cond
spec:
  steps:
  - name: conditional
  - name: mul10
    inputs:
    - conditional.outputs.OUTPUT0
    tensorMap:
      conditional.outputs.OUTPUT0: x
  - name: add10
    inputs:
    - conditional.outputs.OUTPUT1
    tensorMap:
      conditional.outputs.OUTPUT1: x
  output:
    steps:
    - mul10
    - add10
    stepsJoin: any
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: trig
spec:
  steps:
  - name: identity
  - name: add20
    inputs:
    - trig.inputs.x
    triggers:
    - identity.outputs.t
  output:
    steps:
    - add20
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: broken
spec:
  steps:
  - name: add10
  - name: missing
    inputs:
    - add10
  output:
    steps:
    - missing
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: slowp
spec:
  timeoutMs: 100
  steps:
  - name: slow
  output:
    steps:
    - slow
"""

PIPELINES += """---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: batched
spec:
  steps:
  - name: add10
    batch:
      size: 2
      windowMs: 20000
  output:
    steps:
    - add10
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: bfirst
spec:
  timeoutMs: 10000
  steps:
  - name: conditional
  - name: slow
    inputs:
    - bfirst.inputs.x
    batch:
      size: 2
      windowMs: 20000
  output:
    steps:
    - conditional
    - slow
"""

MODELS = ["identity", "add10", "add20", "mul10", "conditional", "missing", "slow"]


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
    r = rh.Router(rh.routes_yaml([(n, ups, None) for n in MODELS]))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def broker():
    b = kh.KafkaDev()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    p = tmp_path_factory.mktemp("pipelines") / "pipelines.yaml"
    p.write_text(PIPELINES)
    return p


@pytest.fixture(scope="module")
def system(broker, router, manifests):
    mgw = kh.ModelGateway(router, *sum((["--model", m] for m in MODELS), []),
                          broker=broker.bootstrap)
    df = Dataflow(broker.bootstrap, [manifests])
    df.wait_log(r"serving: Kafka")
    mgw.wait_log(r"consuming the inputs of")
    yield broker, df, mgw
    df.stop()
    mgw.stop()


def request(g, tensors, id=""):
    return g.request("", tensors, id=id).SerializeToString()


def infer(broker, pipeline, key, tensors, headers=()):
    kh.produce(broker.bootstrap, PIN.format(pipeline), request(g_mod(), tensors, id="rid"),
               key=key, headers=[("x-request-id", key.rsplit(".", 1)[1]), *headers])
    return kh.wait_record(broker.bootstrap, POUT.format(pipeline), key)


_G = []


def g_mod():
    return _G[0]


@pytest.fixture(autouse=True)
def _keep_g(g):
    _G[:] = [g]


def response(g, rec):
    assert rec.header("seldon-pipeline-errors") is None, rec
    resp = g.pb2.ModelInferResponse()
    resp.ParseFromString(rec.value)
    return resp


def f32(v):
    return np.asarray(v, dtype=np.float32)


def test_chain_keys_headers_and_values(system, g):
    broker, df, _ = system
    key = "2.chain.c1"
    rec = infer(broker, "chain", key, {"x": f32([[1, 2, 3]])}, headers=[("x-tenant", "blue")])
    assert rec.key == key and rec.partition == 2  # the key's partition
    assert rec.header("pipeline") == "chain"
    assert rec.header("x-tenant") == "blue"
    assert rec.header("x-request-id") == "c1"
    resp = response(g, rec)
    assert resp.model_name == "chain"
    np.testing.assert_array_equal(g.outputs(resp)["x"], [[31, 32, 33]])
    # The step inputs on the model topics: the same key, the pipeline header, protobuf.
    steps = [r for r in kh.consume_all(broker.bootstrap, MIN.format("add20")) if r.key == key]
    assert steps and steps[0].header("pipeline") == "chain" and steps[0].partition == 2
    assert steps[0].header("x-tenant") == "blue"
    req = g.pb2.ModelInferRequest()
    req.ParseFromString(steps[0].value)
    assert req.model_name == "add20"
    assert sh.metric(df.metrics(), "seldon_dataflow_requests_total", result="ok") >= 1


def test_join(system, g):
    broker, _, _ = system
    rec = infer(broker, "join", "1.join.j1", {"x": f32([[1, 2]])})
    out = g.outputs(response(g, rec))
    np.testing.assert_array_equal(out["a"], [[11, 12]])
    np.testing.assert_array_equal(out["b"], [[10, 20]])


def test_conditional(system, g):
    broker, _, _ = system
    tensors = {"CHOICE": np.asarray([0], dtype=np.int32), "INPUT0": f32([1, 2]),
               "INPUT1": f32([5, 6])}
    out = g.outputs(response(g, infer(broker, "cond", "0.cond.k0", tensors)))
    np.testing.assert_array_equal(out["x"], [10, 20])
    tensors["CHOICE"] = np.asarray([1], dtype=np.int32)
    out = g.outputs(response(g, infer(broker, "cond", "3.cond.k1", tensors)))
    np.testing.assert_array_equal(out["x"], [15, 16])


def test_trigger(system, g):
    broker, _, _ = system
    rec = infer(broker, "trig", "1.trig.t1", {"x": f32([1]), "t": f32([1])})
    np.testing.assert_array_equal(g.outputs(response(g, rec))["x"], [21])


def test_failing_model_is_an_error_record(system):
    broker, _, _ = system
    rec = infer(broker, "broken", "3.broken.b1", {"x": f32([1])})
    assert rec.partition == 3
    assert rec.header("seldon-pipeline-errors") == "missing"
    assert rec.header("seldon-error-kind") == "model"
    assert rec.value.startswith(b"missing : "), rec.value


def test_timeout_is_an_error_record(system):
    broker, _, _ = system
    rec = infer(broker, "slowp", "0.slowp.s1", {"x": f32([1])})
    assert rec.header("seldon-pipeline-errors") == "slowp"
    assert rec.header("seldon-error-kind") == "timeout"
    assert b"time" in rec.value


def test_bad_value_is_an_error_record(system):
    broker, _, _ = system
    kh.produce(broker.bootstrap, PIN.format("chain"), b"\xff\xff\xff", key="1.chain.bad")
    rec = kh.wait_record(broker.bootstrap, POUT.format("chain"), "1.chain.bad")
    assert rec.header("seldon-error-kind") == "input"
    assert b"not a ModelInferRequest" in rec.value


def test_two_workers_one_killed(broker, router, manifests, g):
    """Two dataflow workers and two model gateways share the work; one of each is killed
    (SIGKILL) in the middle of a bounded loop: every request gets its answer on the
    outputs topic, and every answer of a key is the right one."""
    group = "df-kill"
    mg_args = sum((["--model", m] for m in ["add10", "add20"]), []) + ["--group", "mg-kill"]
    mg1 = kh.ModelGateway(router, *mg_args, broker=broker.bootstrap)
    mg2 = kh.ModelGateway(router, *mg_args, broker=broker.bootstrap)
    d1 = Dataflow(broker.bootstrap, [manifests], group=group)
    d2 = Dataflow(broker.bootstrap, [manifests], group=group)
    try:
        # Both workers hold partitions before the loop starts.
        kh.procs.wait_until(
            lambda: (sh.metric(d1.metrics(), "seldon_dataflow_partitions") or 0) > 0 and
            (sh.metric(d2.metrics(), "seldon_dataflow_partitions") or 0) > 0, kh.GUARD,
            lambda: f"partitions not shared:\n{d1.stderr()}\n{d2.stderr()}")
        n = 40
        keys = [f"{i % 4}.chain.kill{i}" for i in range(n)]
        for i, key in enumerate(keys):
            kh.produce(broker.bootstrap, PIN.format("chain"), request(g, {"x": f32([i])}),
                       key=key)
            if i == n // 2:
                d2.proc.send_signal(signal.SIGKILL)
                mg2.proc.send_signal(signal.SIGKILL)
        def logs(d):
            return "\n".join(l for l in d.stderr().splitlines() if "kafka: " not in l)
        recs = kh.procs.wait_value(
            lambda: [r for r in kh.consume_all(broker.bootstrap, POUT.format("chain"))
                     if r.key in keys],
            lambda rs: {r.key for r in rs} == set(keys), 3 * kh.GUARD,
            lambda rs: (f"lost: {set(keys) - {r.key for r in rs}}\n{d1.metrics()}\n{logs(d1)}\n"
                        f"{logs(mg1)}"), interval=0.2)
        for r in recs:
            i = int(r.key.rsplit("kill", 1)[1])
            np.testing.assert_array_equal(g.outputs(response(g, r))["x"], [i + 30])
    finally:
        d1.stop()
        d2.kill()
        mg1.stop()
        mg2.kill()


def test_broker_restart_resumes(router, manifests, g):
    """The broker is stopped and started again on its port (everything it held is gone):
    the workers reconnect and rejoin by themselves, and the next requests are answered."""
    import socket
    with socket.socket() as s:
        s.bind((kh.HOST, 0))
        port = s.getsockname()[1]
    b = kh.KafkaDev(port=port)
    mgw = kh.ModelGateway(router, "--model", "add10", "--model", "add20", "--group", "mg-rs",
                          broker=b.bootstrap)
    df = Dataflow(b.bootstrap, [manifests], "--timeout", "5000", group="df-rs")
    try:
        rec = infer(b, "chain", "1.chain.before", {"x": f32([1])})
        np.testing.assert_array_equal(g.outputs(response(g, rec))["x"], [31])
        b.stop()
        b = kh.KafkaDev(port=port)
        deadline = time.monotonic() + 3 * kh.GUARD
        sent = {"key": None, "at": 0.0, "k": 0}

        def answer():
            """The answer to the request last produced, else None; a request is produced
            (under a new key) when none is out or the last one went unanswered for 15 s:
            one produced before the groups were assigned again may be lost."""
            if sent["key"] is not None:
                recs = [r for r in kh.consume_all(b.bootstrap, POUT.format("chain"))
                        if r.key == sent["key"]]
                if recs:
                    return recs[0]
                if time.monotonic() - sent["at"] < 15:
                    return None
            sent["key"] = f"2.chain.after{sent['k']}"
            sent["k"] += 1
            sent["at"] = time.monotonic()
            try:
                kh.produce(b.bootstrap, PIN.format("chain"), request(g, {"x": f32([2])}),
                           key=sent["key"])
            except AssertionError:  # the broker not taking records yet: produce again
                sent["key"] = None
            return None

        answered = kh.procs.wait_value(
            answer, lambda rec: rec is not None, 3 * kh.GUARD,
            lambda _: f"no answer after the restart\n{df.stderr()}", interval=0.2)
        k = sent["k"]
        # Requests in flight across the restart may end with a clear error (a timeout);
        # once the groups rejoined, requests are answered again.
        while answered.header("seldon-pipeline-errors") is not None:
            assert b"timed out" in answered.value or b"time" in answered.value, answered
            assert time.monotonic() < deadline, f"no answer after the restart\n{df.stderr()}"
            key = f"2.chain.after{k}"
            k += 1
            answered = infer(b, "chain", key, {"x": f32([2])})
        np.testing.assert_array_equal(g.outputs(response(g, answered))["x"], [32])
    finally:
        df.stop()
        mgw.stop()
        b.stop()


def test_back_pressure_max_live(broker, router, g, tmp_path):
    """--max-live 1: the inputs pause while a request runs and resume after it; every
    request of a burst is answered."""
    manifest = tmp_path / "chain2.yaml"
    manifest.write_text(PIPELINES.split("---")[0].replace("name: chain", "name: chain2"))
    mgw = kh.ModelGateway(router, "--model", "add10", "--model", "add20", "--group", "mg-bp",
                          broker=broker.bootstrap)
    df = Dataflow(broker.bootstrap, [manifest], "--max-live", "1", "--log-level", "debug",
                  group="df-bp")
    try:
        keys = [f"{i % 4}.chain2.bp{i}" for i in range(6)]
        for i, key in enumerate(keys):
            kh.produce(broker.bootstrap, PIN.format("chain2"), request(g, {"x": f32([i])}),
                       key=key)
        for i, key in enumerate(keys):
            rec = kh.wait_record(broker.bootstrap, POUT.format("chain2"), key)
            np.testing.assert_array_equal(g.outputs(response(g, rec))["x"], [i + 30])
        df.wait_log(r"inputs paused")
        df.wait_log(r"inputs resumed")
    finally:
        df.stop()
        mgw.stop()


def test_batched_step_answers_each_request_under_its_own_key(system, g):
    # Two requests of different partitions (so of different gateways) batched into one
    # step call: each answer goes to its own key's partition with its own rows.
    broker, df, _ = system
    keys = ["0.batched.q1", "3.batched.q2"]
    for i, key in enumerate(keys):
        kh.produce(broker.bootstrap, PIN.format("batched"),
                   request(g, {"x": f32([[i + 1, i + 2]])}, id="rid"), key=key,
                   headers=[("x-request-id", key.rsplit(".", 1)[1])])
    for i, key in enumerate(keys):
        rec = kh.wait_record(broker.bootstrap, POUT.format("batched"), key)
        assert rec.partition == int(key.split(".")[0]), rec
        assert rec.header("x-request-id") == key.rsplit(".", 1)[1], rec.headers
        np.testing.assert_array_equal(g.outputs(response(g, rec))["x"], [[i + 11, i + 12]])
    # One call for the two, as the batch asked for.
    steps = [r for r in kh.consume_all(broker.bootstrap, MIN.format("add10"))
             if r.header("pipeline") == "batched"]
    assert len(steps) == 1, [(r.key, r.partition) for r in steps]


def test_batch_outlives_its_first_request(system, g):
    # a and b (one partition: consumed in that order) are batched into one call of slow,
    # which goes out under a's key; a then fails at once on its other step (no CHOICE)
    # while slow holds the batch: b still gets its rows of slow's answer, which came back
    # under a's key, rather than waiting out its timeout.
    broker, _, _ = system
    a, b = "1.bfirst.a1", "1.bfirst.b1"
    va = request(g, {"x": f32([[1, 2]])}, id="a")
    vb = request(g, {"x": f32([[5, 6]]), "CHOICE": np.asarray([0], dtype=np.int32),
                     "INPUT0": f32([7]), "INPUT1": f32([8])}, id="b")
    # One kcat run for both, so that b is consumed before a's failure comes back.
    data = b"".join(k.encode() + b"|KEY|" + v + b"|END|" for k, v in ((a, va), (b, vb)))
    assert b"|KEY|" not in va + vb and b"|END|" not in va + vb
    p = subprocess.run([kh.KCAT, "-P", "-b", broker.bootstrap, "-t", PIN.format("bfirst"),
                        "-p", "1", "-K", "|KEY|", "-D", "|END|"], input=data,
                       capture_output=True, timeout=kh.GUARD)
    assert p.returncode == 0, p.stderr
    ra = kh.wait_record(broker.bootstrap, POUT.format("bfirst"), a)
    assert ra.header("seldon-error-kind") == "model" and ra.value.startswith(b"conditional : ")
    rb = kh.wait_record(broker.bootstrap, POUT.format("bfirst"), b)
    out = g.outputs(response(g, rb))
    np.testing.assert_array_equal(out["x"], [[5, 6]])
    np.testing.assert_array_equal(out["OUTPUT0"], [7])
    # The case did happen: one call of slow for both, under a's key.
    steps = [r for r in kh.consume_all(broker.bootstrap, MIN.format("slow"))
             if r.header("pipeline") == "bfirst"]
    assert [r.key for r in steps] == [a], [(r.key, r.partition) for r in steps]
