"""The example plugin (examples/plugin_runtime) loads from the runtime path and scales."""
import numpy as np
import pytest

from conftest import Failure, plugin, run, tensor, write_model

IMPL = "libseldon-runtime-scale.so"


@pytest.fixture(scope="module", autouse=True)
def _built():
    plugin("scale")


def test_scales_every_input(tmp_path):
    write_model(tmp_path, "s", {"implementation": IMPL, "parameters": {"extra": {"factor": 2.5}}})
    a = np.array([1, -2, 3.25, 1e30], dtype=np.float32)
    b = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = run(tmp_path, "s", [tensor("a", a), tensor("INPUT", b)])
    assert list(out) == ["a_scaled", "INPUT_scaled"]
    np.testing.assert_array_equal(out["a_scaled"], a * np.float32(2.5))
    np.testing.assert_array_equal(out["INPUT_scaled"], b * np.float32(2.5))
    assert out["INPUT_scaled"].shape == (2, 3)


def test_requested_outputs_and_integer_factor(tmp_path):
    write_model(tmp_path, "s", {"implementation": IMPL, "parameters": {"extra": {"factor": 3}}})
    a = np.ones(4, dtype=np.float32)
    out = run(tmp_path, "s", [tensor("a", a), tensor("b", a)], outputs=["b_scaled"])
    assert list(out) == ["b_scaled"]
    np.testing.assert_array_equal(out["b_scaled"], a * 3)


def test_default_factor(tmp_path):
    write_model(tmp_path, "s", {"implementation": IMPL})
    a = np.array([0.5, 7], dtype=np.float32)
    np.testing.assert_array_equal(run(tmp_path, "s", [tensor("x", a)])["x_scaled"], a)


def test_errors(tmp_path):
    write_model(tmp_path, "bad", {"implementation": IMPL,
                                  "parameters": {"extra": {"factor": "big"}}})
    with pytest.raises(Failure) as err:
        run(tmp_path, "bad", [])
    assert err.value.stage == "load" and "factor must be a number" in err.value.error

    write_model(tmp_path, "s", {"implementation": IMPL})
    with pytest.raises(Failure) as err:
        run(tmp_path, "s", [tensor("i", np.arange(3, dtype=np.int32))])
    assert err.value.stage == "infer" and "input i is INT32" in err.value.error
