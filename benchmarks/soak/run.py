#!/usr/bin/python3
"""Soak: a whole distributed system on loopback (seldon-scheduler, three seldon-agent +
seldon-server replicas, seldon-router) under mixed traffic for N minutes, while a control
loop keeps changing it: models loaded and unloaded, versions rolled out, a model scaled
up and down, and experiments started and stopped (when the CLI has `seldon experiment`).

It reports the failed requests (there should be none) and, for every process, its
resident memory (RSS) and open file descriptors after the warm-up and at the end, with
the change (flat within 5% is the goal). Exit status 1 when a request failed or a figure
grew by more than 5%.

    /usr/bin/python3 benchmarks/soak/run.py                  # 10 minutes
    /usr/bin/python3 benchmarks/soak/run.py --minutes 3 --json soak.json

Binaries come from ./build (or SELDON_SCHEDULER, SELDON_AGENT, SELDON_SERVER,
SELDON_ROUTER, SELDON_CLI). Not a test: nothing here runs under CTest.
"""
import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "faults"))
import conftest as f  # noqa: E402  (tests/faults: the fault suite's helpers)


def args_of():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    p.add_argument("--warmup", type=float, default=30.0,
                   help="seconds of traffic before the first sample (default 30; at most a "
                        "tenth of the run)")
    p.add_argument("--rest", type=int, default=2, help="REST request loops (default 2)")
    p.add_argument("--grpc", type=int, default=1, help="gRPC request loops (default 1)")
    p.add_argument("--pace", type=float, default=1.0,
                   help="seconds between two changes of the control loop (default 1)")
    p.add_argument("--json", help="write the report here too")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return p.parse_args()


# --- processes and their resources ------------------------------------------------------


def sample(pid):
    """(RSS bytes, open fds) of a running process."""
    rss = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def processes(sched, reps, router):
    out = {"seldon-scheduler": sched.proc.pid, "seldon-router": router.proc.pid}
    for r in reps:
        out[f"seldon-agent/{r.index}"] = r.agent.proc.pid
        out[f"seldon-server/{r.index}"] = r.server.proc.pid
    return out


# --- traffic ----------------------------------------------------------------------------


class Traffic:
    """Request loops that run until stopped, over the models that stay loaded all along
    (their answers are checked); each loop round-robins over them."""

    def __init__(self, port, models, rest, grpc, oip):
        self.loops = []
        for i in range(rest + grpc):
            model, accept = models[i % len(models)]
            lp = f.Load(port, model, 1 << 40, accept=accept, oip=oip if i >= rest else None)
            self.loops.append(lp)

    def done(self):
        return sum(lp.done for lp in self.loops)

    def stop(self):
        for lp in self.loops:
            lp.stop()
        failures = []
        for lp in self.loops:
            failures += [(lp.model, i, what) for i, what in lp.join()]
        return failures


# --- the control loop -------------------------------------------------------------------


class Churn:
    """Changes the system while traffic runs, one step at a time, until stopped."""

    def __init__(self, sched, tmp, router, experiments, pace):
        self.sched, self.tmp, self.router = sched, tmp, router
        self.pace = pace
        self.wakeup = threading.Event()
        self.lock = threading.Lock()
        self.experiments = experiments
        self.steps = collections.Counter()
        self.errors = []
        self.stopping = False
        self.version = 1
        self.replicas = 1
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def cli(self, *args):
        r = f.cli(*args, scheduler=self.sched)
        if r.code != 0:
            self.errors.append(f"seldon {' '.join(args)}: {r.err.strip()[:300]}")
        return r

    def file(self, text):
        path = self.tmp / f"churn-{time.monotonic_ns()}.yaml"
        path.write_text(text)
        return str(path)

    def _run(self):
        n = 0
        while not self.stopping:
            if n > 0 and self.wakeup.wait(self.pace):
                break
            n += 1
            with self.lock:
                try:
                    self._step(n)
                except (AssertionError, OSError) as e:
                    self.errors.append(f"step {n}: {str(e)[:300]}")

    def _step(self, n):
        step = n % 4
        if step == 0:
            # A model loaded, asked, unloaded (four names in turn: the scheduler keeps
            # the status of an unloaded model, as upstream does).
            name = f"churn{(n // 4) % 4}"
            src = self.tmp / "src" / "churn"
            self.cli("model", "load", "-f",
                     self.file(f.model_doc(name, str(src))), "-w", "ModelAvailable")
            f.wait_routed(self.router, name)
            self.cli("model", "unload", name, "-w", "ModelTerminated")
            self.steps["load+unload"] += 1
        elif step == 1:
            # A new version of "roll" (another storageUri, the same answers).
            self.version += 1
            src = self.tmp / "src" / f"roll-v{self.version}"
            shutil.copytree(self.tmp / "src" / "roll", src)
            self.cli("model", "load", "-f", self.file(f.model_doc("roll", str(src))),
                     "-w", "ModelAvailable")
            self.steps["rollout"] += 1
        elif step == 2:
            # "scaled" between one and two replicas.
            self.replicas = 3 - self.replicas
            self.cli("model", "load", "-f",
                     self.file(f.model_doc("scaled", str(self.tmp / "src" / "scaled"),
                                           replicas=self.replicas)),
                     "-w", "ModelAvailable")
            self.steps[f"scale to {self.replicas}"] += 1
        elif step == 3 and self.experiments:
            text = ("apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata:\n"
                    "  name: soak\nspec:\n  default: expa\n  candidates:\n"
                    "  - name: expa\n    weight: 50\n  - name: expb\n    weight: 50\n")
            self.cli("experiment", "start", "-f", self.file(text), "-w")
            self.cli("experiment", "stop", "soak")
            self.steps["experiment start+stop"] += 1

    def pause(self):
        """Returns once the change in progress is done and the system is in the state a
        sample is taken in (scaled to one replica); none starts until resume()."""
        self.lock.acquire()
        self.settle()

    def settle(self):
        if self.replicas != 1:
            self._step(2)
        f.wait_model(self.sched, "scaled", lambda d: len(f.available_replicas(d).get(
            d["versions"][0]["version"], [])) == 1 and len(d["versions"]) == 1,
            "scaled never back to one replica")

    def resume(self):
        self.lock.release()

    def stop(self):
        self.stopping = True
        self.wakeup.set()
        self.thread.join(600)
        self.settle()


# --- the run ----------------------------------------------------------------------------


def main():
    a = args_of()
    seconds = a.minutes * 60
    warmup = min(a.warmup, seconds / 10)
    tmp = Path(tempfile.mkdtemp(prefix="seldon-soak-"))
    experiments = "experiment start" in subprocess.run([f.cp.CLI, "--help"], capture_output=True,
                                                 text=True).stdout
    (tmp / "stubs").mkdir()
    oip = f.oipstubs.compile_stubs(tmp / "stubs", f.sh.PROTO_DIR) if a.grpc else None
    sched = f.Scheduler(tmp / "state")
    reps = f.replicas(tmp, sched, 3)
    router = f.start_router(tmp, sched)
    port = router.ports["port"]
    report = {"minutes": a.minutes, "experiments": experiments}
    try:
        docs = [f.model_doc("add10", f.source(tmp, "add10", 10), replicas=2),
                f.model_doc("add20", f.source(tmp, "add20", 20)),
                f.model_doc("roll", f.source(tmp, "roll", 30)),
                f.model_doc("scaled", f.source(tmp, "scaled", 40))]
        f.source(tmp, "churn", 50)
        stable = [("add10", (11,)), ("add20", (21,)), ("roll", (31,)), ("scaled", (41,))]
        if experiments:
            docs += [f.model_doc("expa", f.source(tmp, "expa", 60)),
                     f.model_doc("expb", f.source(tmp, "expb", 60))]
            stable.append(("expa", (61,)))
        f.apply(sched, tmp, "---\n".join(docs))
        for m, _ in stable:
            f.wait_routed(router, m)
        traffic = Traffic(port, stable, a.rest, a.grpc, oip)
        churn = Churn(sched, tmp, router, experiments, a.pace)
        churn.start()
        start = time.monotonic()
        time.sleep(warmup)  # a benchmark's duration, not a test's wait
        procs = processes(sched, reps, router)
        churn.pause()
        before = {name: sample(pid) for name, pid in procs.items()}
        churn.resume()
        requests_before = traffic.done()
        time.sleep(max(0.0, seconds - (time.monotonic() - start)))
        # The last change finishes first: a fetch's pipes or a new replica's connections
        # in the middle of one are not what the end looks like. Traffic still runs.
        churn.stop()
        after = {name: sample(pid) for name, pid in procs.items()}
        failures = traffic.stop()
        total = traffic.done()
    finally:
        f.stop_all(router, *reps, sched)
    rows, grew = [], []
    for name in before:
        (r0, d0), (r1, d1) = before[name], after[name]
        rss_pct = 100.0 * (r1 - r0) / r0 if r0 else 0.0
        fd_pct = 100.0 * (d1 - d0) / d0 if d0 else 0.0
        rows.append({"process": name, "rss_start": r0, "rss_end": r1, "rss_change_pct": rss_pct,
                     "fds_start": d0, "fds_end": d1, "fds_change_pct": fd_pct})
        if rss_pct > 5 or fd_pct > 5:
            grew.append(name)
    kinds = collections.Counter(w[:120] for _, _, w in failures)
    report.update({"requests": total, "requests_measured": total - requests_before,
                   "failures": len(failures), "failure_kinds": dict(kinds),
                   "churn_steps": dict(churn.steps), "churn_errors": churn.errors[:20],
                   "processes": rows, "grew_over_5pct": grew})
    print(f"soak: {a.minutes:g} min, {total} requests ({a.rest} REST + {a.grpc} gRPC loops), "
          f"{len(failures)} failed; experiments {'on' if experiments else 'absent from the CLI'}")
    print(f"churn: {dict(churn.steps)}; control errors: {len(churn.errors)}")
    for e in churn.errors[:5]:
        print(f"  {e}")
    for k, v in kinds.most_common(5):
        print(f"  {v} x {k}")
    print(f"{'process':<18} {'RSS start':>11} {'RSS end':>11} {'change':>8} "
          f"{'fds start':>9} {'fds end':>8} {'change':>8}")
    for r in rows:
        print(f"{r['process']:<18} {r['rss_start'] / 1024:>9.0f}Ki {r['rss_end'] / 1024:>9.0f}Ki "
              f"{r['rss_change_pct']:>+7.1f}% {r['fds_start']:>9} {r['fds_end']:>8} "
              f"{r['fds_change_pct']:>+7.1f}%")
    print("flat within 5%: " + ("yes" if not grew else "no: " + ", ".join(grew)))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures or grew or churn.errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        f.cluster.kill_leftovers()
        f.procs.kill_all(f.cp.STARTED)
