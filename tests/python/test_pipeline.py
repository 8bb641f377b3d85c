"""Pipelines in process from Python (seldon.Pipeline over include/seldon/pipeline_host.h)."""

import os

import numpy as np
import pytest

import seldon
from seldon import SeldonError

MODELS = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "models")
)

HEAD = "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: %s\nspec:\n"

CONDITIONAL = HEAD % "tfsimple-conditional" + """\
  steps:
  - name: conditional
  - name: mul10
    inputs: [conditional.outputs.OUTPUT0]
    tensorMap: {conditional.outputs.OUTPUT0: INPUT}
  - name: add10
    inputs: [conditional.outputs.OUTPUT1]
    tensorMap: {conditional.outputs.OUTPUT1: INPUT}
  output:
    steps: [mul10, add10]
    stepsJoin: any
"""

CHAIN = HEAD % "chain" + """\
  steps:
  - name: first
  - name: second
    inputs: [first]
  output:
    steps: [second]
"""

MS = 1_000_000
T0 = 10**12


def cond_inputs(choice):
    return {
        "CHOICE": np.array([choice], dtype=np.int32),
        "INPUT0": np.array([1, 2, 3, 4], dtype=np.float32),
        "INPUT1": np.array([5, 6, 7, 8], dtype=np.float32),
    }


@pytest.fixture
def repo():
    r = seldon.Repository(MODELS)
    r.load("conditional", "add10", "mul10")
    return r


def test_conditional_with_builtin_models(repo):
    with seldon.Pipeline(CONDITIONAL, repository=repo) as pipe:
        assert pipe.names == ["tfsimple-conditional"]
        pipe.check()
        out = pipe.infer(cond_inputs(0))
        assert list(out) == ["OUTPUT"]
        assert out["OUTPUT"].dtype == np.float32
        np.testing.assert_array_equal(out["OUTPUT"], [10, 20, 30, 40])
        np.testing.assert_array_equal(pipe.infer(cond_inputs(1))["OUTPUT"], [15, 16, 17, 18])


def test_python_steps_beside_repository_models(repo):
    seen = []

    def add10(t):
        seen.append(t)
        return {"OUTPUT": t["INPUT"] + 1000}

    pipe = seldon.Pipeline(CONDITIONAL, repository=repo,
                           steps={"add10": add10, "mul10": lambda t: {"OUTPUT": t["INPUT"] * 100}})
    np.testing.assert_array_equal(pipe.infer(cond_inputs(0))["OUTPUT"], [100, 200, 300, 400])
    assert pipe.calls("mul10") == 1
    assert pipe.calls("add10") == 0, "the branch not taken never runs"
    np.testing.assert_array_equal(pipe.infer(cond_inputs(1))["OUTPUT"], [1005, 1006, 1007, 1008])
    assert pipe.calls("mul10") == 1
    # The step got its input renamed by the tensorMap, as an array it may keep.
    assert list(seen[0]) == ["INPUT"]
    seen[0]["INPUT"][0] = -1  # a copy: writing to it harms nobody
    np.testing.assert_array_equal(pipe.infer(cond_inputs(1))["OUTPUT"], [1005, 1006, 1007, 1008])
    pipe.close()


def test_datatypes_travel_through_python_steps():
    def first(t):
        return {"I": t["I"] * 2, "F": t["F"] / 2, "B": ~t["B"], "S": t["S"]}

    def second(t):
        return {k + "2": v for k, v in t.items()}

    pipe = seldon.Pipeline(CHAIN, steps={"first": first, "second": second})
    out = pipe.infer({
        "I": np.arange(6, dtype=np.int64).reshape(2, 3),
        "F": np.array([1.0, 3.0]),
        "B": np.array([True, False]),
        "S": np.array([b"ab", b"\x00c"], dtype=object),
    })
    assert sorted(out) == ["B2", "F2", "I2", "S2"]
    assert out["I2"].dtype == np.int64 and out["I2"].shape == (2, 3)
    np.testing.assert_array_equal(out["I2"], [[0, 2, 4], [6, 8, 10]])
    assert out["F2"].dtype == np.float64
    np.testing.assert_array_equal(out["F2"], [0.5, 1.5])
    np.testing.assert_array_equal(out["B2"], [False, True])
    assert list(out["S2"]) == [b"ab", b"\x00c"]


def test_a_failing_step_names_the_model():
    def second(t):
        raise ValueError("no luck with %d" % int(t["X"][0]))

    pipe = seldon.Pipeline(CHAIN, steps={"first": lambda t: t, "second": second})
    with pytest.raises(SeldonError) as e:
        pipe.infer({"X": np.array([7], dtype=np.int32)})
    assert e.value.message.startswith("second : ValueError: no luck with 7"), e.value.message
    # A step that returns no dict.
    pipe.attach("second", lambda t: [1, 2])
    with pytest.raises(SeldonError) as e:
        pipe.infer({"X": np.array([7], dtype=np.int32)})
    assert "second : TypeError" in e.value.message


def test_missing_models_and_bad_manifests():
    pipe = seldon.Pipeline(CHAIN, steps={"first": lambda t: t})
    with pytest.raises(SeldonError) as e:
        pipe.check()
    assert e.value.name == "SELDON_ENOTFOUND"
    assert 'step "second"' in e.value.message
    with pytest.raises(SeldonError) as e:
        seldon.Pipeline("kind: [nope")
    assert e.value.name == "SELDON_EPARSE"
    cyc = HEAD % "p" + "  steps:\n  - name: a\n    inputs: [b]\n  - name: b\n    inputs: [a]\n"
    with pytest.raises(SeldonError) as e:
        seldon.Pipeline(cyc)
    assert "a cycle" in e.value.message


def test_batching_gives_every_caller_its_rows():
    batched = HEAD % "batched" + """\
  steps:
  - name: double
    batch: {size: 2, windowMs: 1000}
  output:
    steps: [double]
"""
    shapes = []

    def double(t):
        shapes.append(t["X"].shape)
        return {"Y": t["X"] * 2}

    pipe = seldon.Pipeline(batched, steps={"double": double})
    # infer cannot wait for the window: the request is canceled (and leaves the batch).
    with pytest.raises(SeldonError) as e:
        pipe.infer({"X": np.array([[9.0, 9.0]])}, now_ns=T0)
    assert e.value.name == "SELDON_ESTATE"
    assert pipe.requests == 0
    pipe.push("a", {"X": np.array([[1.0, 2.0]])}, headers={"x-trace": "t1"}, now_ns=T0)
    assert pipe.results() == [] and pipe.requests == 1
    pipe.push("b", {"X": np.array([[3.0, 4.0], [5.0, 6.0]])}, now_ns=T0 + MS)
    res = {r.request_id: r for r in pipe.results()}
    assert shapes == [(3, 2)], "one call for both callers"
    assert sorted(res) == ["a", "b"]
    assert res["a"].ok and res["a"].headers == {"x-trace": "t1"}
    np.testing.assert_array_equal(res["a"].outputs["Y"], [[2, 4]])
    np.testing.assert_array_equal(res["b"].outputs["Y"], [[6, 8], [10, 12]])
    # Alone, a request waits for the window: time passes through run().
    pipe.push("c", {"X": np.array([[1.0, 1.0]])}, now_ns=T0 + 2 * MS)
    assert pipe.deadline == T0 + 1002 * MS
    pipe.run(now_ns=T0 + 500 * MS)
    assert pipe.results() == []
    pipe.run(now_ns=pipe.deadline)
    (r,) = pipe.results()
    assert r.request_id == "c" and r.ok
    np.testing.assert_array_equal(r.outputs["Y"], [[2, 2]])


def test_timeouts_and_branches_that_end_nowhere():
    joined = HEAD % "joined" + """\
  steps:
  - name: a
  - name: b
  - name: c
    inputs: [a, b]
  output:
    steps: [c]
"""
    pipe = seldon.Pipeline(joined, steps={
        "a": lambda t: {"A": t["X"]},
        "b": lambda t: {},  # answers no tensor: c can never join
        "c": lambda t: {"Y": t["A"]},
    })
    pipe.push("r", {"X": np.array([1], dtype=np.int32)}, now_ns=T0)
    (r,) = pipe.results()
    assert not r.ok and r.error_kind == 4 and "no output" in r.error
    assert pipe.calls("c") == 0

    waiting = HEAD % "waiting" + """\
  steps:
  - name: slow
    batch: {size: 10, windowMs: 1000}
  output:
    steps: [slow]
"""
    pipe = seldon.Pipeline(waiting, timeout_ms=300, steps={"slow": lambda t: t})
    pipe.push("r", {"X": np.array([1], dtype=np.int32)}, now_ns=T0)
    pipe.push("s", {"X": np.array([2], dtype=np.int32)}, timeout_ms=50, now_ns=T0)
    assert pipe.results() == []
    assert pipe.deadline == T0 + 50 * MS
    pipe.run(now_ns=T0 + 50 * MS)
    (r,) = pipe.results()
    assert r.request_id == "s" and r.status == -14 and r.error_kind == 2  # SELDON_ETIMEDOUT
    pipe.run(now_ns=T0 + 300 * MS)
    (r,) = pipe.results()
    assert r.request_id == "r" and r.status == -14
    assert pipe.requests == 0 and pipe.calls("slow") == 0


def test_the_example_runs():
    import subprocess
    import sys

    example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bindings",
                           "python", "examples", "pipeline_conditional.py")
    out = subprocess.run([sys.executable, example, MODELS], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                             p for p in (seldon.__path__[0] + "/..",
                                         os.environ.get("PYTHONPATH")) if p)))
    assert out.stdout == ("CHOICE 0: OUTPUT [10.0, 20.0, 30.0, 40.0]\n"
                          "CHOICE 1: OUTPUT [15.0, 16.0, 17.0, 18.0]\n"), out.stderr
