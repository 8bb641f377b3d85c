"""Faults under traffic: each case runs bounded request loops through seldon-router
(REST, and gRPC beside it where it costs little), injects one fault while they run,
and counts the requests that failed. What each case proves is in docs/faults.md."""
import collections
import json
import os
import re
import subprocess
import threading

import pytest

from conftest import (BODY, GUARD, HOST, Load, Replica, Scheduler, apply, available_replicas,
                      cli, model_doc, procs, replicas, serves, sh, sigcont, sigstop, source,
                      start_router, status, stop_all, wait_model, wait_routed)


def held(doc, version=None):
    """Replica indexes Available for the newest version (or the one given)."""
    av = available_replicas(doc)
    return av.get(version if version is not None else doc["versions"][0]["version"], [])


def loads(reps):
    """What each replica loaded so far: the agent's log and the server's own counter."""
    return [(r.loads(), r.server_loads()) for r in reps if not r.killed]


def no_failures(*loops):
    for lp in loops:
        failures = lp.join()
        kinds = collections.Counter(re.sub(r"[0-9a-f]{32}", "*", f)[:120] for _, f in failures)
        assert failures == [], (
            f"{len(failures)} of {lp.done} requests for {lp.model} failed: {dict(kinds)}; "
            f"first: {failures[:3]}")


def test_scheduler_sigkilled_and_restarted_during_traffic(scheduler, tmp_path, oip):
    """SIGKILL of the scheduler in the middle of 2,400 REST and 600 gRPC requests, and a
    restart: no request fails, no model is loaded again, and the scheduler acts again."""
    reps = replicas(tmp_path, scheduler, 2)
    router = start_router(tmp_path, scheduler)
    port = router.ports["port"]
    try:
        apply(scheduler, tmp_path, model_doc("add10", source(tmp_path, "add10", 10)) + "---\n" +
              model_doc("add20", source(tmp_path, "add20", 20), replicas=2))
        wait_routed(router, "add10")
        wait_routed(router, "add20")
        before = loads(reps)
        assert sum(n for n, _ in before) == 3, before
        rest = Load(port, "add10", 2400)
        grpc = Load(port, "add20", 600, accept=(21,), oip=oip)
        rest.at(400)
        scheduler.sigkill()
        # The router notices, and requests go on being answered while nothing schedules.
        router.wait_log("retrying the subscription")
        down = rest.done
        rest.at(down + 300)
        assert rest.done > down
        scheduler.start_again()
        scheduler.wait_ready()
        router.wait_log("subscribed again")
        no_failures(rest, grpc)
        assert rest.done == 2400 and grpc.done == 600
        assert loads(reps) == before  # nothing loaded again, by the agents' or servers' count
        # The restarted scheduler places, loads and routes a new model.
        apply(scheduler, tmp_path, model_doc("add30", source(tmp_path, "add30", 30)))
        wait_routed(router, "add30")
        assert sum(n for n, _ in loads(reps)) == 4
    finally:
        stop_all(router, *reps)


def test_replica_killed_while_another_holds_the_model(scheduler, tmp_path, oip):
    """A model on two of three replicas; one of its replicas is SIGKILLed (agent and
    server) under traffic: the router retries on the other, nothing fails, and the
    scheduler loads the model on the third replica."""
    reps = replicas(tmp_path, scheduler, 3)
    router = start_router(tmp_path, scheduler)
    port = router.ports["port"]
    try:
        apply(scheduler, tmp_path, model_doc("add10", source(tmp_path, "add10", 10), replicas=2))
        wait_routed(router, "add10")
        first = held(status(scheduler, "add10"))
        assert len(first) == 2, first
        rest = Load(port, "add10", 1500)
        grpc = Load(port, "add10", 500, accept=(11,), oip=oip)
        rest.at(300)
        victim = reps[first[0]]
        victim.kill()
        spare = next(i for i in range(3) if i not in first)
        doc = wait_model(scheduler, "add10",
                         lambda d: sorted(held(d)) == sorted([first[1], spare]),
                         "add10 never rescheduled onto the spare replica")
        assert doc["versions"][0]["state"]["availableReplicas"] == 2
        # Traffic reaches the new replica once it is routed.
        serves(router, "add10", lambda: reps[spare].infers("add10") > 0,
               "the spare replica never served")
        no_failures(rest, grpc)
    finally:
        stop_all(router, *reps)


def test_single_replica_model_moved_when_its_server_dies(scheduler, tmp_path, oip):
    """A model with one replica whose server dies: the scheduler loads it elsewhere, and
    the router holds its requests meanwhile (bounded by their timeout): none fails."""
    reps = replicas(tmp_path, scheduler, 2)
    router = start_router(tmp_path, scheduler)
    port = router.ports["port"]
    try:
        apply(scheduler, tmp_path, model_doc("add10", source(tmp_path, "add10", 10)))
        wait_routed(router, "add10")
        (where,) = held(status(scheduler, "add10"))
        rest = Load(port, "add10", 1200)
        grpc = Load(port, "add10", 300, accept=(11,), oip=oip)
        rest.at(200)
        reps[where].kill()
        other = 1 - where
        wait_model(scheduler, "add10", lambda d: held(d) == [other], "add10 never moved")
        serves(router, "add10", lambda: reps[other].infers("add10") > 0,
               "the other replica never served")
        no_failures(rest, grpc)
    finally:
        stop_all(router, *reps)


def test_holds_are_bounded(scheduler, tmp_path, oip):
    """What the router does not hold: a name no table had is a 404 at once, and a model
    that was unloaded is a 404 (NOT_FOUND) once the hold since its route left has passed."""
    import grpc
    reps = replicas(tmp_path, scheduler, 1)
    router = start_router(tmp_path, scheduler, extra=("--hold", "300"))
    port = router.ports["port"]
    try:
        status, _, out = sh.request(port, "POST", "/v2/models/nosuch/infer", body=BODY)
        assert status == 404 and b"no route" in out, out
        apply(scheduler, tmp_path, model_doc("add10", source(tmp_path, "add10", 10)))
        wait_routed(router, "add10")
        r = cli("model", "unload", "add10", "-w", "ModelTerminated", scheduler=scheduler)
        assert r.code == 0, r
        procs.wait_until(
            lambda: sh.request(port, "POST", "/v2/models/add10/infer", body=BODY)[0] == 404,
            GUARD, lambda: router.stderr())
        pb, rpc = oip
        ch = grpc.insecure_channel(f"{HOST}:{port}")
        try:
            rpc.GRPCInferenceServiceStub(ch).ModelInfer(
                pb.ModelInferRequest(model_name="add10"), metadata=(("seldon-model", "add10"),),
                timeout=GUARD)
            raise AssertionError("answered")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e
        finally:
            ch.close()
    finally:
        stop_all(router, *reps)


def test_agent_restarted_registers_its_models_without_reloading(scheduler, tmp_path, oip):
    """An agent SIGKILLed and started again beside its server (same ports, same models
    folder): it registers what it holds, the scheduler takes those as Available, nothing
    is loaded again, and requests through the router never fail."""
    reps = replicas(tmp_path, scheduler, 2)
    router = start_router(tmp_path, scheduler)
    port = router.ports["port"]
    try:
        apply(scheduler, tmp_path, model_doc("add10", source(tmp_path, "add10", 10), replicas=2))
        wait_routed(router, "add10")
        assert held(status(scheduler, "add10")) == [0, 1]
        server_loads = reps[0].server_loads()
        assert server_loads == 1
        rest = Load(port, "add10", 1500)
        grpc = Load(port, "add10", 400, accept=(11,), oip=oip)
        rest.at(300)
        reps[0].restart_agent()
        reps[0].agent.wait_log("registered with scheduler")
        wait_model(scheduler, "add10", lambda d: held(d) == [0, 1], "replica 0 never back")
        assert reps[0].loads() == 0, reps[0].agent.stderr()  # the new agent loaded nothing
        assert reps[0].server_loads() == server_loads
        served = reps[0].infers("add10")
        serves(router, "add10", lambda: reps[0].infers("add10") > served,
               "replica 0 never served again")
        no_failures(rest, grpc)
        assert reps[1].loads() == 1 and reps[1].server_loads() == 1
    finally:
        stop_all(router, *reps)


def test_router_restarted_while_the_scheduler_is_down(scheduler, tmp_path, oip):
    """The scheduler is SIGKILLed, then the router restarted: it serves every model from
    the routes it saved, and subscribes again once the scheduler is back."""
    reps = replicas(tmp_path, scheduler, 2)
    router = start_router(tmp_path, scheduler)
    try:
        apply(scheduler, tmp_path, model_doc("add10", source(tmp_path, "add10", 10)) + "---\n" +
              model_doc("add20", source(tmp_path, "add20", 20), replicas=2))
        wait_routed(router, "add10")
        wait_routed(router, "add20")
        scheduler.sigkill()
        router.stop()
        router = start_router(tmp_path, scheduler)  # same --state-dir
        router.wait_log("serving on the 2 route(s) in force")
        port = router.ports["port"]
        rest = Load(port, "add10", 600)
        grpc = Load(port, "add20", 300, accept=(21,), oip=oip)
        no_failures(rest, grpc)
        assert router.count("subscribed") == 0  # all of it served without the scheduler
        scheduler.start_again()
        scheduler.wait_ready()
        router.wait_log("subscribed again")
        apply(scheduler, tmp_path, model_doc("add30", source(tmp_path, "add30", 30)))
        wait_routed(router, "add30")
    finally:
        stop_all(router, *reps)


def test_model_scaled_1_3_1_under_load(scheduler, tmp_path, oip):
    """A model scaled from one replica to three and back to one by applying it again with
    another replica count, under REST and gRPC traffic: no request fails, every replica
    serves while it holds the model, and scaling down unloads the extra ones."""
    reps = replicas(tmp_path, scheduler, 3)
    router = start_router(tmp_path, scheduler)
    port = router.ports["port"]
    src = source(tmp_path, "add10", 10)
    try:
        apply(scheduler, tmp_path, model_doc("add10", src, replicas=1))
        wait_routed(router, "add10")
        rest = Load(port, "add10", 3000)
        grpc = Load(port, "add10", 600, accept=(11,), oip=oip)
        rest.at(200)
        r = apply(scheduler, tmp_path, model_doc("add10", src, replicas=3))
        assert r.json()["resources"][0]["version"] == 1  # a replica count is no new version
        wait_model(scheduler, "add10", lambda d: held(d) == [0, 1, 2], "never 3 replicas")
        served = [rp.infers("add10") for rp in reps]
        serves(router, "add10", lambda: all(rp.infers("add10") > s for rp, s in zip(reps, served)),
               "not every replica served")
        apply(scheduler, tmp_path, model_doc("add10", src, replicas=1))
        doc = wait_model(scheduler, "add10", lambda d: len(held(d)) == 1, "never back to 1")
        (keep,) = held(doc)
        gone = [rp for i, rp in enumerate(reps) if i != keep]
        procs.wait_until(lambda: all(not os.path.exists(rp.models / "add10_1") for rp in gone),
                         GUARD, lambda: f"extra replicas never unloaded\n{scheduler.stderr()}")
        done = rest.done
        rest.at(done + 100)  # still served after the scale-down
        no_failures(rest, grpc)
    finally:
        stop_all(router, *reps)


def test_version_rolled_out_under_load(scheduler, tmp_path, oip):
    """A single-replica model's new version (a new storageUri) rolled out under REST and
    gRPC traffic: answers come from the old version, then the new one, and none fails."""
    reps = replicas(tmp_path, scheduler, 2)
    router = start_router(tmp_path, scheduler)
    port = router.ports["port"]
    try:
        apply(scheduler, tmp_path, model_doc("add10", source(tmp_path, "v1", 10)))
        wait_routed(router, "add10")
        rest = Load(port, "add10", 2000, accept=(11, 12))
        grpc = Load(port, "add10", 500, accept=(11, 12), oip=oip)
        rest.at(200)
        r = apply(scheduler, tmp_path, model_doc("add10", source(tmp_path, "v2", 11)))
        assert r.json()["resources"][0]["version"] == 2
        wait_model(scheduler, "add10",
                   lambda d: [v["version"] for v in d["versions"]
                              if v["state"]["state"] == "ModelAvailable"] == [2],
                   "version 2 never alone")
        done = rest.done
        rest.at(done + 200)
        no_failures(rest, grpc)
        assert rest.seen.get(12, 0) > 0 and rest.seen.get(11, 0) > 0, rest.seen
        # The last answers are the new version's.
        assert sh.request(port, "POST", "/v2/models/add10/infer", body=BODY)[0] == 200
        _, _, out = sh.request(port, "POST", "/v2/models/add10/infer", body=BODY)
        assert json.loads(out)["outputs"][0]["data"] == [12]
    finally:
        stop_all(router, *reps)


def test_hung_upstream_times_out_and_other_models_go_on(scheduler, tmp_path, oip):
    """A server that stops answering (SIGSTOP: its agent still accepts and forwards):
    callers of its model get the route's timeout (504, DEADLINE_EXCEEDED), and requests
    for a model on another replica are answered all along."""
    import grpc
    slow = Replica(tmp_path, scheduler, 0, server_name="hangs")
    fast = Replica(tmp_path, scheduler, 0, server_name="mlserver")
    router = start_router(tmp_path, scheduler, timeout_ms=2000)
    port = router.ports["port"]
    stopped = False
    try:
        text = (model_doc("hang", source(tmp_path, "hang", 1)).replace(
            "  storageUri", "  server: hangs\n  storageUri") + "---\n" +
            model_doc("add10", source(tmp_path, "add10", 10)).replace(
                "  storageUri", "  server: mlserver\n  storageUri"))
        apply(scheduler, tmp_path, text)
        wait_routed(router, "hang")
        wait_routed(router, "add10")
        sigstop(slow.server.proc)
        stopped = True
        background = Load(port, "add10", 100000)
        background.at(50)
        results, marks = [], []

        def hung_rest():
            start = background.done
            st, _, out = sh.request(port, "POST", "/v2/models/hang/infer", body=BODY)
            results.append(("rest", st, out))
            marks.append((start, background.done))

        def hung_grpc():
            pb, rpc = oip
            ch = grpc.insecure_channel(f"{HOST}:{port}")
            req = pb.ModelInferRequest(model_name="hang", inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name="x", datatype="FP32", shape=[1],
                    contents=pb.InferTensorContents(fp32_contents=[1]))])
            start = background.done
            try:
                rpc.GRPCInferenceServiceStub(ch).ModelInfer(
                    req, metadata=(("seldon-model", "hang"),), timeout=GUARD)
                results.append(("grpc", "OK", b""))
            except grpc.RpcError as e:
                results.append(("grpc", e.code(), e.details().encode()))
            marks.append((start, background.done))
            ch.close()

        threads = [threading.Thread(target=f) for f in (hung_rest, hung_rest, hung_grpc)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(GUARD)
        assert not any(t.is_alive() for t in threads)
        background.stop()
        no_failures(background)
        kinds = sorted((k, s if k == "rest" else s.name) for k, s, _ in results)
        assert kinds == [("grpc", "DEADLINE_EXCEEDED"), ("rest", 504), ("rest", 504)], results
        assert all(b"timeout" in out for k, _, out in results if k == "rest"), results
        # The other model was answered while the hung requests waited.
        assert all(end > start for start, end in marks), marks
        sigcont(slow.server.proc)
        stopped = False
        # Once the server answers again, so does its model.
        procs.wait_until(
            lambda: sh.request(port, "POST", "/v2/models/hang/infer", body=BODY)[0] == 200,
            GUARD, lambda: router.stderr())
    finally:
        if stopped:
            sigcont(slow.server.proc)
        stop_all(router, slow, fast)


# --- the state volume full -------------------------------------------------------------


class Volume:
    """Where the scheduler keeps its state, and a way to make it full. "tmpfs": a 4 MiB
    tmpfs filled to the last byte by a file (ENOSPC), where one can be mounted. "fsize":
    an ordinary folder, and the scheduler's RLIMIT_FSIZE lowered to the size its LMDB file
    has (EFBIG for any write that needs the file to grow)."""

    def __init__(self, path, kind):
        self.path, self.kind = str(path), kind
        self.pid = None
        os.makedirs(self.path)
        self.mounted, self.why = False, ""
        if kind == "tmpfs":
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", self.path],
                               capture_output=True)
            self.mounted = r.returncode == 0
            self.why = r.stderr.decode(errors="replace")
        self.filler = os.path.join(self.path, "filler")

    def usable(self):
        return self.kind == "fsize" or self.mounted

    def fill(self, pid):
        if self.kind == "fsize":
            import resource
            self.pid = pid
            size = os.stat(os.path.join(self.path, "state", "data.mdb")).st_size
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))
            return
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for size in (65536, 4096, 512):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError:
                    pass
        finally:
            os.close(fd)

    def free(self):
        if self.kind == "fsize":
            import resource
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE,
                             (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        else:
            os.unlink(self.filler)

    def close(self):
        if self.mounted:
            subprocess.run(["umount", "-l", self.path], capture_output=True)


FULL = ("No space left on device", "File too large")


@pytest.mark.parametrize("kind", ["tmpfs", "fsize"])
def test_state_volume_full(tmp_path, oip, kind):
    """The scheduler's LMDB volume fills up: applies and unloads are refused with an error
    that says so, and change nothing; what was acknowledged before stays, across a restart
    too; inference goes on; once there is room again, changes are taken."""
    vol = Volume(tmp_path / "vol", kind)
    if not vol.usable():
        pytest.skip(f"cannot mount a tmpfs here: {vol.why}")
    sched = Scheduler(os.path.join(vol.path, "state"))
    reps = replicas(tmp_path, sched, 2)
    router = start_router(tmp_path, sched)
    port = router.ports["port"]
    try:
        apply(sched, tmp_path, model_doc("add10", source(tmp_path, "add10", 10)))
        wait_routed(router, "add10")
        rest = Load(port, "add10", 1500)
        grpc = Load(port, "add10", 300, accept=(11,), oip=oip)
        vol.fill(sched.proc.pid)
        path = tmp_path / "add20.yaml"
        src20 = source(tmp_path, "add20", 20)
        path.write_text(model_doc("add20", src20))
        r = cli("load", "-f", str(path), scheduler=sched)
        assert r.code != 0, r
        assert any(w in r.err for w in FULL) and "nothing was changed" in r.err, r
        r = cli("model", "status", "add20", scheduler=sched)
        assert r.code != 0 and "NOT_FOUND" in r.err, r  # refused means not applied
        r = cli("model", "unload", "add10", scheduler=sched)
        assert r.code != 0 and any(w in r.err for w in FULL), r
        doc = status(sched, "add10")
        assert doc["versions"][0]["state"]["state"] == "ModelAvailable", doc
        assert not doc.get("deleted"), doc
        assert sum(rp.loads() for rp in reps) == 1  # add20 went nowhere
        rest.at(rest.done + 100)
        vol.free()
        apply(sched, tmp_path, model_doc("add20", src20))
        wait_routed(router, "add20")
        sched.sigkill()
        sched.start_again()
        sched.wait_ready()
        for m in ("add10", "add20"):
            assert status(sched, m)["versions"][0]["state"]["state"] == "ModelAvailable"
        no_failures(rest, grpc)
    finally:
        stop_all(router, *reps, sched)
        vol.close()
