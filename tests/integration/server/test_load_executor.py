"""Model loads run on their own executor: a load that takes long holds up neither
the inference workers nor inference on other models."""
import fcntl
import threading

import numpy as np

from conftest import (GUARD, Server, infer, outputs_of, post_json, procs, request, tensor,
                      write_model)

X4 = np.array([1, 2, 3, 4], dtype=np.float32)


def wait_for_file(path, proc):
    """Waits for the plugin to say its load has started (or the server to die)."""
    def started():
        if path.exists():
            return True
        assert proc.poll() is None, "seldon-server exited"
        return False
    procs.wait_until(started, GUARD, lambda: f"{path} never appeared")


def test_slow_load_does_not_block_inference(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    gate, started = tmp_path / "gate", tmp_path / "started"
    # The gated load waits until this lock is let go.
    held = open(gate, "w")
    fcntl.flock(held, fcntl.LOCK_EX)
    # A batched model: its requests run on the inference workers, not on the I/O thread.
    write_model(repo, "batched", {"implementation": "builtin.identity", "max_batch_size": 2,
                                  "max_batch_time": 0.001})
    write_model(repo, "add", {"implementation": "builtin.add",
                              "parameters": {"extra": {"constant": 1}}})
    # One worker: were the load to run on it, the batched requests below would wait for it.
    srv = Server(repo, "--workers", "1")
    try:
        write_model(repo, "gated", {"implementation": "libseldon-test-gated.so",
                                    "parameters": {"extra": {"gate": str(gate),
                                                             "started": str(started)}}})
        result = {}

        def load():
            result["load"] = post_json(srv.http, "/v2/repository/models/gated/load")

        loader = threading.Thread(target=load)
        loader.start()
        wait_for_file(started, srv.proc)
        # The load is in progress, and stays so until the gate opens.
        for i in range(5):
            status, doc = infer(srv.http, "batched", [tensor("x", X4 + i)])
            assert status == 200, doc
            np.testing.assert_array_equal(outputs_of(doc)["x"], X4 + i)
            status, doc = infer(srv.http, "add", [tensor("INPUT", X4)])
            assert status == 200, doc
        status, _, _ = request(srv.http, "GET", "/v2/health/ready")
        assert status == 200
        assert loader.is_alive() and "load" not in result
        held.close()
        loader.join(GUARD)
        assert result["load"][0] == 200, result
        status, doc = infer(srv.http, "gated", [tensor("y", X4)])
        assert status == 200, doc
        np.testing.assert_array_equal(outputs_of(doc)["y"], X4)
    finally:
        held.close()
        srv.close()
