"""Autoscaling with real daemons (docs/autoscaling.md). Waits are for events (a log
line, a status, a count of answered requests); deadlines only guard against hangs."""
import os
import stat

from conftest import Replica, fc, procs

GUARD = fc.GUARD


def held(doc):
    """Replica indexes Available for the newest version."""
    return fc.available_replicas(doc).get(doc["versions"][0]["version"], [])


def desired(doc):
    return doc["versions"][0]["state"]["desiredReplicas"]


def no_failures(*loops):
    for lp in loops:
        failures = lp.join()
        assert failures == [], (f"{len(failures)} of {lp.done} requests for {lp.model} "
                                f"failed; first: {failures[:3]}")


def autoscaled_doc(name, src, lo, hi):
    return fc.model_doc(name, src) + f"  minReplicas: {lo}\n  maxReplicas: {hi}\n"


def test_model_scales_up_under_load_and_down_when_idle(tmp_path):
    """A model with minReplicas 1 and maxReplicas 2 under six request loops: while its
    replica's server is held (SIGSTOP, as a slow model would), six requests are in flight
    on one replica, above --scale-up-inflight 2 for --scale-up-period: a second replica
    is loaded and takes traffic, never a third. Once the loops end, the replicas are idle
    for --scale-down-idle: back to one, the other unloaded. No request fails."""
    sched = fc.Scheduler(tmp_path / "state", "--scale-up-inflight", "2",
                         "--scale-up-period", "500", "--scale-down-idle", "1500")
    reps = [Replica(tmp_path, sched, i) for i in range(3)]
    router = fc.start_router(tmp_path, sched)
    port = router.ports["port"]
    loops = []
    stopped = None
    try:
        fc.apply(sched, tmp_path, autoscaled_doc("add10", fc.source(tmp_path, "add10", 10), 1, 2))
        fc.wait_routed(router, "add10")
        doc = fc.status(sched, "add10")
        assert desired(doc) == 1 and len(held(doc)) == 1, doc
        first = reps[held(doc)[0]]
        loops = [fc.Load(port, "add10", 300) for _ in range(6)]
        for lp in loops:
            lp.at(20)
        fc.sigstop(first.server.proc)
        stopped = first
        sched_log = sched.errfile.name
        procs.wait_until(lambda: "autoscaled up" in open(sched_log).read(), GUARD,
                         lambda: f"never scaled up\n{sched.stderr()}")
        doc = fc.wait_model(sched, "add10", lambda d: len(held(d)) == 2, "never 2 replicas")
        assert desired(doc) == 2
        second = reps[[i for i in held(doc) if reps[i] is not first][0]]
        fc.sigcont(first.server.proc)
        stopped = None
        # The new replica serves (the loops go on).
        fc.serves(router, "add10", lambda: infers(second) > 0, "the new replica never served")
        no_failures(*loops)
        loops = []
        log = open(sched_log).read()
        assert "1 -> 2 replicas" in log and "2 -> 3 replicas" not in log, log[-4000:]
        # Idle now: one replica goes after --scale-down-idle, never below minReplicas.
        doc = fc.wait_model(sched, "add10", lambda d: desired(d) == 1 and len(held(d)) == 1,
                            "never back to 1 replica")
        (keep,) = held(doc)
        gone = [rp for i, rp in enumerate(reps) if i != keep]
        procs.wait_until(lambda: all(not os.path.exists(rp.models / "add10_1") for rp in gone),
                         GUARD, lambda: f"the extra replica never unloaded\n{sched.stderr()}")
        log = open(sched_log).read()
        assert "autoscaled down" in log and "1 -> 0 replicas" not in log, log[-4000:]
        # Still served by the one left.
        after = fc.Load(port, "add10", 50)
        no_failures(after)
    finally:
        if stopped is not None:
            fc.sigcont(stopped.server.proc)
        for lp in loops:
            lp.stop()
        fc.stop_all(router, *reps, sched)


def infers(rep):
    """Inference requests rep's server answered OK for add10."""
    total = 0.0
    for name, labels, value in fc.sh.metrics(rep.server.http):
        if (name == "seldon_model_infer_total" and labels.get("code") in ("200", "0")
                and labels.get("model", "").startswith("add10_")):
            total += value
    return total


def scale_script(tmp_path):
    """A --scale-command that records its arguments and environment, one line a call."""
    out = tmp_path / "scale-calls.txt"
    script = tmp_path / "scale.sh"
    script.write_text("#!/bin/sh\n"
                      f"echo \"$1 $2 $SELDON_SERVER $SELDON_REPLICAS\" >> '{out}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return f"'{script}' \"$@\"", out  # $1 and $2 are the -c command's own arguments


def server_status(sched, name):
    r = fc.cli("server", "status", name, scheduler=sched)
    assert r.code == 0, r
    return r.json()


def test_server_scale_request_runs_the_scale_command(tmp_path):
    """A Server with replicas 1 and maxReplicas 2 and a model that wants 2 replicas: the
    scheduler runs --scale-command with the server and 2 (arguments and environment) and
    shows the request in `seldon server status`; the replica the command's wrapper would
    start (started here) takes the model's second replica. The model then wants one
    again, and the scheduler is killed (SIGKILL) during the cool-down (600 s) and started
    with a 1 s one: the request for 2 was stored, so the status shows it at once, the
    command is asked again for 2 (it sets the count), nothing is reloaded, and after the
    new cool-down the command runs with 1 (a scheduler that forgot the request would
    think the server had 1 replica already and never ask)."""
    cmd, calls = scale_script(tmp_path)
    sched = fc.Scheduler(tmp_path / "state", "--scale-command", cmd,
                         "--server-cooldown", "600000")
    reps = [Replica(tmp_path, sched, 0)]
    try:
        server = ("apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata:\n"
                  "  name: mlserver\nspec:\n  serverConfig: mlserver\n  replicas: 1\n"
                  "  maxReplicas: 2\n")
        fc.apply(sched, tmp_path, server, wait=None)
        src = fc.source(tmp_path, "add10", 10)
        fc.apply(sched, tmp_path, fc.model_doc("add10", src, replicas=2) + "  minReplicas: 1\n")
        procs.wait_until(lambda: calls.exists() and "mlserver 2 mlserver 2" in calls.read_text(),
                         GUARD, lambda: f"the scale command never ran\n{sched.stderr()}")
        st = server_status(sched, "mlserver")
        assert st["requestedReplicas"] == 2, st
        assert "2" in st["scaleReason"], st
        # The wrapper's part: a second replica starts and gets the model.
        reps.append(Replica(tmp_path, sched, 1))
        fc.wait_model(sched, "add10", lambda d: held(d) == [0, 1], "never on 2 replicas")
        st = server_status(sched, "mlserver")
        assert [r["draining"] for r in st["resources"]] == [False, False], st
        # Fewer wanted: the cool-down starts (600 s: nothing happens before the restart).
        fc.apply(sched, tmp_path, fc.model_doc("add10", src, replicas=1) + "  minReplicas: 1\n",
                 wait=None)
        fc.wait_model(sched, "add10", lambda d: desired(d) == 1, "replicas never 1")
        loads = [rp.loads() for rp in reps]
        sched.sigkill()
        assert calls.read_text().splitlines() == ["mlserver 2 mlserver 2"]
        sched.args = [a if a != "600000" else "1000" for a in sched.args]
        sched.start_again()
        sched.wait_ready()
        st = server_status(sched, "mlserver")
        assert st["requestedReplicas"] in (2, 1), st  # 1 once the new cool-down ran out
        # Asked again for 2 at start, then for 1 after the cool-down.
        procs.wait_until(lambda: "mlserver 1 mlserver 1" in calls.read_text(), GUARD,
                         lambda: f"never asked for 1\n{calls.read_text()}\n{sched.stderr()}")
        assert calls.read_text().splitlines() == ["mlserver 2 mlserver 2",
                                                  "mlserver 2 mlserver 2",
                                                  "mlserver 1 mlserver 1"]
        st = server_status(sched, "mlserver")
        assert st["requestedReplicas"] == 1 and "cool-down" in st["scaleReason"], st
        procs.wait_until(lambda: "scale command for 1 replicas: done" in sched.stderr(), GUARD,
                         lambda: sched.stderr())
        # The model stayed served and was never loaded again by the restart.
        doc = fc.wait_model(sched, "add10", lambda d: len(held(d)) == 1, "never on 1 replica")
        assert reps[held(doc)[0]].loads() == loads[held(doc)[0]], "reloaded by the restart"
    finally:
        fc.stop_all(*reps, sched)
