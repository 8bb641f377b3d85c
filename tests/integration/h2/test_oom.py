"""Out of memory: with every Nth allocation of the transport (and of nghttp2) failing, each
call still ends (a status, never a hang); once allocations succeed again the proxy serves as
before, and it exits cleanly (no leak or stale pointer under ASan)."""
import signal

import pytest

from conftest import GUARD, procs, start_proxy


@pytest.mark.parametrize("every", [13, 97, 331])
def test_calls_end_when_allocations_fail(g, server, every):
    proxy = start_proxy(server.grpc, "--fail-every", str(every))
    codes = {}
    try:
        for round_ in range(8):
            channel, stub = g.stub(proxy.target)
            with channel:
                futures = [stub.ModelInfer.future(
                    g.fp32_request("add10", [float(i)] * 64, id=str(i)), timeout=GUARD)
                    for i in range(10)]
                for f in futures:
                    e = f.exception(timeout=GUARD + 5)
                    code = e.code() if e is not None else g.grpc.StatusCode.OK
                    codes[code] = codes.get(code, 0) + 1
        # A hang would end at the client's own deadline.
        assert g.grpc.StatusCode.DEADLINE_EXCEEDED not in codes, codes
        proxy.proc.send_signal(signal.SIGUSR1)
        # Serving again, on new connections (the log line says the signal was taken).
        procs.wait_until(lambda: "no longer fail" in proxy.stderr(), GUARD, proxy.stderr)
        channel, stub = g.stub(proxy.target)
        with channel:
            for i in range(10):
                resp = stub.ModelInfer(g.fp32_request("add10", [1.0], id=f"after{i}"),
                                       timeout=GUARD)
                assert resp.id == f"after{i}"
    finally:
        proxy.stop()
