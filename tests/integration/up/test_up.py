"""seldon up: the example models loaded with the CLI, served through one port."""
import json
import signal
import struct

import pytest

from conftest import (ADD_REQUEST, GUARD, SIMPLE_REQUEST, UP, Up, add_request, grpc_stub, load,
                      outputs, procs, status)


def test_help_lists_every_flag():
    import subprocess
    p = subprocess.run([UP, "--help"], capture_output=True, timeout=GUARD)
    assert p.returncode == 0
    text = p.stdout.decode()
    for flag in ("--state-dir", "--port", "--scheduler-port", "--metrics-port", "--servers",
                 "--server-name", "--server-memory", "--capabilities", "--overcommit-percent",
                 "--workers", "--log-level"):
        assert flag in text
    p = subprocess.run([UP, "--servers", "zero"], capture_output=True, timeout=GUARD)
    assert p.returncode == 2 and b"--servers" in p.stderr


def test_models_are_available_on_the_replica(up):
    for name in ("add10", "mul10", "tfsimple1"):
        st = status(up, name)
        v = st["versions"][0]
        assert v["state"]["state"] == "ModelAvailable", st
        assert v["serverName"] == "mlserver"
    up.wait_log(r"replica 0: add10_1 loaded")


def test_rest_through_the_inference_port(up):
    code, body, head = up.curl("/v2/models/add10/infer", ADD_REQUEST)
    assert code == 200, body
    assert outputs(body)["OUTPUT"] == [11, 12, 13, 14]
    assert "x-seldon-route: :add10_1:" in head
    assert json.loads(body)["model_name"] == "add10_1"
    code, body, _ = up.curl("/v2/models/mul10/infer", ADD_REQUEST)
    assert code == 200 and outputs(body)["OUTPUT"] == [10, 20, 30, 40], body
    code, body, _ = up.curl("/v2/models/tfsimple1/infer", SIMPLE_REQUEST)
    assert code == 200, body
    out = outputs(body)
    assert out["OUTPUT0"] == [i + 1 for i in range(1, 17)]
    assert out["OUTPUT1"] == [i - 1 for i in range(1, 17)]


def test_rest_routed_by_the_header(up):
    # The header wins over the path, as in Seldon Core 2's Envoy routes.
    code, body, head = up.curl("/v2/models/mul10/infer", ADD_REQUEST,
                               headers=["seldon-model: mul10"])
    assert code == 200 and outputs(body)["OUTPUT"] == [10, 20, 30, 40]
    code, body, _ = up.curl("/v2/models/add10/ready", headers=["seldon-model: add10"])
    assert code == 200, body
    code, body, _ = up.curl("/v2/models/add10")
    assert code == 200 and json.loads(body)["name"] == "add10_1", body
    code, body, head = up.curl("/v2")
    assert code == 200 and "name" in json.loads(body) and "x-seldon-route" not in head, body
    code, body, _ = up.curl("/v2/health/ready")
    assert code == 200


def test_grpc_through_the_inference_port(up, oip):
    channel, stub = grpc_stub(oip, up.target)
    try:
        resp, call = stub.ModelInfer.with_call(add_request(oip, "add10"),
                                               metadata=[("seldon-model", "add10")],
                                               timeout=GUARD)
        assert list(resp.outputs[0].contents.fp32_contents) == [11, 12, 13, 14] or \
            list(struct.unpack("<4f", resp.raw_output_contents[0])) == [11, 12, 13, 14]
        assert resp.model_name == "add10_1"
        # Without the metadata, the request's model name routes it.
        resp = stub.ModelInfer(add_request(oip, "mul10"), timeout=GUARD)
        values = list(resp.outputs[0].contents.fp32_contents) or \
            list(struct.unpack("<4f", resp.raw_output_contents[0]))
        assert values == [10, 20, 30, 40]
        assert stub.ModelReady(oip.pb2.ModelReadyRequest(name="tfsimple1"), timeout=GUARD).ready
        meta = stub.ModelMetadata(oip.pb2.ModelMetadataRequest(name="add10"), timeout=GUARD)
        assert meta.name == "add10_1"
        assert stub.ServerLive(oip.pb2.ServerLiveRequest(), timeout=GUARD).live
        # A stream: every message answered, in any order, each naming its request.
        reqs = []
        for i in range(5):
            r = add_request(oip, "add10", values=(i, i, i, i))
            r.id = f"r{i}"
            reqs.append(r)
        got = {}
        for m in stub.ModelStreamInfer(iter(reqs), metadata=[("seldon-model", "add10")],
                                       timeout=GUARD):
            assert m.error_message == ""
            r = m.infer_response
            got[r.id] = list(r.outputs[0].contents.fp32_contents) or \
                list(struct.unpack("<4f", r.raw_output_contents[0]))
        assert got == {f"r{i}": [i + 10] * 4 for i in range(5)}
    finally:
        channel.close()


def test_unknown_model_is_named(up, oip):
    code, body, _ = up.curl("/v2/models/nope/infer", ADD_REQUEST)
    assert code == 404 and 'model \\"nope\\" not found' in body, body
    channel, stub = grpc_stub(oip, up.target)
    try:
        with pytest.raises(oip.grpc.RpcError) as e:
            stub.ModelInfer(add_request(oip, "nope"), metadata=[("seldon-model", "nope")],
                            timeout=GUARD)
        assert e.value.code() == oip.grpc.StatusCode.NOT_FOUND
        assert '"nope"' in e.value.details()
    finally:
        channel.close()


def test_cli_infers_through_seldon_up(up):
    rc, out, err = up.cli("model", "infer", "add10", ADD_REQUEST)
    assert rc == 0, err
    assert outputs(out)["OUTPUT"] == [11, 12, 13, 14]
    rc, out, err = up.cli("model", "infer", "tfsimple1", SIMPLE_REQUEST, "--inference-mode",
                          "grpc")
    assert rc == 0, err
    assert "OUTPUT0" in out


def test_metrics_label_the_replica(up):
    up.curl("/v2/models/add10/infer", ADD_REQUEST)
    text = up.scrape()
    lines = [line for line in text.splitlines() if line.startswith("seldon_model_infer_total{")]
    assert any('server_replica="0"' in line and 'model="add10_1"' in line for line in lines), text
    assert text.count("# TYPE seldon_model_infer_total ") == 1
    assert 'seldon_up_requests_total{protocol="rest",code="200"}' in text
    assert 'seldon_scheduler_models{state="ModelAvailable"} 3' in text, text
    assert 'seldon_up_model_commands_total{server_replica="0",outcome="loaded"} 3' in text


def test_bad_storage_uri_fails_with_the_reason(tmp_path):
    u = Up(tmp_path)
    try:
        (tmp_path / "bad.yaml").write_text(
            "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: bad\n"
            "spec:\n  storageUri: ./no/such/folder\n  requirements: [python]\n")
        rc, out, err = u.cli("load", "-f", "bad.yaml")
        assert rc == 0, err
        u.wait_log(r"bad_1 load failed: .*no/such/folder")
        st = status(u, "bad")
        assert "no/such/folder" in json.dumps(st), st
    finally:
        assert u.stop() == 0, u.stderr()


def test_restart_brings_the_models_back(tmp_path, oip):
    u = Up(tmp_path)
    try:
        load(u, "examples/manifests/add10.yaml", "examples/manifests/tfsimple1.yaml")
        code, body, _ = u.curl("/v2/models/add10/infer", ADD_REQUEST)
        assert code == 200, body
        settings = tmp_path / ".seldon" / "models" / "add10_1" / "model-settings.json"
        assert json.loads(settings.read_text())["name"] == "add10_1"  # renamed for the version
        u.restart()  # SIGTERM exits 0, then the same folder again
        u.wait_log(r"state in \./\.seldon: reloaded")
        # No apply: the scheduler's state brings both models back on the fresh replica.
        u.wait_log(r"replica 0: add10_1 loaded")
        u.wait_log(r"replica 0: tfsimple1_1 loaded")
        rc, out, err = u.cli("model", "status", "add10", "-w", "ModelAvailable")
        assert rc == 0, err
        code, body, _ = u.curl("/v2/models/add10/infer", ADD_REQUEST)
        assert code == 200 and outputs(body)["OUTPUT"] == [11, 12, 13, 14], body
        channel, stub = grpc_stub(oip, u.target)
        try:
            assert stub.ModelReady(oip.pb2.ModelReadyRequest(name="tfsimple1"),
                                   timeout=GUARD).ready
        finally:
            channel.close()
        # Artifacts are fetched once: the second run loaded what the first one fetched.
        assert "already fetched" in u.stderr(this_run=True)
        assert "fetched into" not in u.stderr(this_run=True)
    finally:
        if u.proc.poll() is None:
            assert u.stop() == 0, u.stderr()


def test_seldon_up_through_the_cli_and_ctrl_c(tmp_path):
    u = Up(tmp_path, via_cli=True)  # `seldon up`: the CLI runs seldon-up in its place
    load(u, "examples/manifests/mul10.yaml")
    code, body, _ = u.curl("/v2/models/mul10/infer", ADD_REQUEST)
    assert code == 200 and outputs(body)["OUTPUT"] == [10, 20, 30, 40], body
    u.proc.send_signal(signal.SIGINT)
    assert u.proc.wait(GUARD) == 0, u.stderr()
    u.proc.stdout.close()
    u.errfile.close()
    assert "stopped" in u.stderr()


def test_sigterm_lets_an_open_stream_finish(tmp_path, oip):
    """SIGTERM with a gRPC stream open: the stream still gets its answers, then exit 0."""
    import queue
    u = Up(tmp_path)
    try:
        load(u, "examples/manifests/add10.yaml")
        channel, stub = grpc_stub(oip, u.target)
        q = queue.Queue()

        def requests():
            while True:
                r = q.get()
                if r is None:
                    return
                yield r

        answers = stub.ModelStreamInfer(requests(), metadata=[("seldon-model", "add10")],
                                        timeout=GUARD)
        q.put(add_request(oip, "add10", values=(1, 1, 1, 1)))
        first = next(answers)
        assert first.error_message == ""
        u.proc.send_signal(signal.SIGTERM)
        u.wait_log(r"SIGTERM: finishing requests in flight")
        q.put(add_request(oip, "add10", values=(2, 2, 2, 2)))
        second = next(answers)
        r = second.infer_response
        assert (list(r.outputs[0].contents.fp32_contents) or
                list(struct.unpack("<4f", r.raw_output_contents[0]))) == [12, 12, 12, 12]
        q.put(None)
        assert list(answers) == []  # the stream ends with OK
        channel.close()
        assert u.proc.wait(GUARD) == 0, u.stderr()
    finally:
        if u.proc.poll() is None:
            u.kill()


def test_pipelined_rest_requests(up):
    """Many requests written at once on one connection: every answer comes, in order."""
    import socket
    body = ADD_REQUEST.encode()
    one = (b"POST /v2/models/add10/infer HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
           b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    n = 64
    with socket.create_connection(("127.0.0.1", up.port), timeout=GUARD) as s:
        s.sendall(one * n)
        data = b""
        while data.count(b'"data":[11.0,12.0,13.0,14.0]') < n:
            chunk = s.recv(65536)
            assert chunk, data[-500:]
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == n == data.count(b"HTTP/1.1 ")


def test_idle_seldon_up_uses_no_processor(up):
    """The ingress loops look for the next event for a while before they sleep
    (--busy-poll, on by default). Once requests stop they sleep: two looks at the
    process's time half a second apart agree. A loop that kept polling would use a whole
    processor and never pass."""
    for _ in range(20):
        code, body, _ = up.curl("/v2/models/add10/infer", ADD_REQUEST)
        assert code == 200, body
    procs.wait_idle(up.proc.pid, GUARD, "seldon up")
