"""Out of memory: with every Nth allocation of the transport (and of nghttp2) failing, each
call still ends (a status, never a hang), the proxy keeps serving, and it exits cleanly
(no leak or stale pointer under ASan)."""
import pytest

from conftest import GUARD, start_proxy


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
        if every > 13:  # at 13, hardly a connection gets through its set-up
            assert codes.get(g.grpc.StatusCode.OK, 0) > 0, codes
    finally:
        proxy.stop()
