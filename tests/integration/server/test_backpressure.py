"""A gRPC client that sends on ModelStreamInfer and never reads its replies
must cost the server a bounded amount of memory: the stream stops reading
while too many replies wait to be written (an unread stream used to grow the
server by 2 GB in 15 s), and reads again once the client takes them.
"""
import os
import threading

import numpy as np

from conftest import GUARD, Server, procs, write_model

MIB = 1 << 20
MESSAGES = 160  # 1 MiB each: 160 MiB of replies if nothing held the stream back
BOUND = 96 * MIB


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def wait_for(predicate, what, server):
    def happened():
        if predicate():
            return True
        assert server.proc.poll() is None, f"server exited\n{server.stderr()}"
        return False
    procs.wait_until(happened, GUARD, lambda: f"{what} did not happen\n{server.stderr()}",
                     interval=0.02)


def test_unread_stream_stays_bounded_then_resumes(tmp_path, g):
    write_model(tmp_path, "identity", {"implementation": "builtin.identity"})
    # Under AddressSanitizer, freed buffers sit in a quarantine (256 MiB by default) that
    # would count as growth here: keep it small. Release builds ignore the variable.
    asan = (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=8").lstrip(":")
    srv = Server(tmp_path, "--log-level", "debug", env={"ASAN_OPTIONS": asan})
    channel = g.grpc.insecure_channel(srv.grpc_target, options=[
        ("grpc.max_send_message_length", 64 * MIB),
        ("grpc.max_receive_message_length", 64 * MIB)])
    try:
        stub = g.pb2_grpc.GRPCInferenceServiceStub(channel)
        x = np.arange(MIB // 4, dtype=np.float32)
        base = g.request("identity", {"x": x}, raw=True)
        sent = []
        lock = threading.Lock()

        def requests():
            for i in range(MESSAGES):
                req = type(base)()
                req.CopyFrom(base)
                req.id = str(i)
                with lock:
                    sent.append(i)
                yield req

        before = rss(srv.proc.pid)
        replies = stub.ModelStreamInfer(requests(), timeout=GUARD * 4)
        # The server says when it stops reading; the client keeps trying to send.
        wait_for(lambda: "stream paused" in srv.stderr(), "the stream pause", srv)
        paused_at = rss(srv.proc.pid)
        with lock:
            pushed = len(sent)
        assert pushed < MESSAGES, "the client could push everything: nothing held it back"
        assert paused_at - before < BOUND, (before, paused_at)
        # A paused stream holds no thread: other calls are served meanwhile.
        small = g.request("identity", {"y": np.ones(3, np.float32)}, id="other")
        assert stub.ModelInfer(small, timeout=GUARD).id == "other"

        # Reading the replies lets the stream go on: every request is answered, in order.
        ids = []
        for r in replies:
            assert r.error_message == "", r.error_message
            assert r.infer_response.id == str(len(ids))
            ids.append(r.infer_response.id)
        assert len(ids) == MESSAGES
        assert rss(srv.proc.pid) - before < BOUND
    finally:
        channel.close()
        srv.stop()
