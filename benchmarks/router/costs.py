#!/usr/bin/python3
"""Deterministic per-request costs of seldon-router (and seldon-server), for
comparing two builds on a loaded machine where timings say nothing:

    /usr/bin/python3 benchmarks/router/costs.py [--build-dir build] [--requests N]
        [--what router|server] [--no-callgrind] [--no-strace]

router: one seldon-server (--io-threads 1 --workers 1) behind seldon-router (--io-threads 1
--busy-poll 0: a polling loop would add its idle rounds to the counts).
For REST (small JSON body) and gRPC (256 floats) at 1 and 16 connections it sends exactly N
requests with h2load (-n) and reports, per request:
  - the router's system calls by name (strace -c -f -p on the router during the N requests);
  - the router's instructions (callgrind Ir, counted only during the N requests) and its
    calls to malloc/calloc/realloc (from the same callgrind profile).
server: the same for seldon-server alone, with the large REST body (FP32 x 1,000) at 16
connections (Ir and allocations per request and per MiB of request body).

Nothing here is a timing. Prints one table; the callgrind profiles stay in --out.
"""
import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
_spec = importlib.util.spec_from_file_location(
    "bench_server", os.path.join(SOURCE, "benchmarks", "server", "run.py"))
bs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bs)

HOST = bs.HOST
MODEL = "identity"
PATH = bs.INFER_PATH.format(MODEL)


def log(msg):
    print(f"[costs {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load(kind, port, body, conns, count, headers=()):
    extra = [a for h in headers for a in ("-H", h)]
    if kind == "rest":
        cmd = ["h2load", "--h1", "-t1", f"-c{conns}", f"-n{count}", "-d", body, "-H",
               "content-type: application/json", *extra, f"http://{HOST}:{port}{PATH}"]
    else:
        cmd = ["h2load", "-t1", f"-c{conns}", "-m1", f"-n{count}", "-d", body, "-H",
               "content-type: application/grpc", "-H", "te: trailers", *extra,
               f"http://{HOST}:{port}{bs.GRPC_PATH}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600).stdout
    m = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if not m or int(m.group(1)) != count:
        raise RuntimeError(f"h2load: {out[-800:]}")


def strace_counts(pid, fn):
    out = tempfile.mktemp(prefix="costs-strace.")
    st = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(pid)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached to every thread
    fn()
    time.sleep(0.3)
    st.send_signal(2)
    st.wait()
    counts = {}
    with open(out) as f:
        for line in f:
            parts = line.split()
            # % time, seconds, usecs/call, calls, [errors,] syscall
            if len(parts) >= 5 and parts[-1].isidentifier() and parts[0][0].isdigit():
                counts[parts[-1]] = int(parts[3])
    os.unlink(out)
    return counts


def switch_counts(pid, fn):
    """Context switches and CPU time of the process (all threads) during fn, from perf
    stat's software counters (no hardware counters needed)."""
    out = tempfile.mktemp(prefix="costs-perf.")
    st = subprocess.Popen(["perf", "stat", "-x,", "-o", out, "-e",
                           "context-switches,cpu-migrations,task-clock", "-p", str(pid)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    fn()
    st.send_signal(2)
    st.wait()
    counts = {}
    with open(out) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) >= 3 and parts[0].replace(".", "").isdigit():
                counts[parts[2]] = float(parts[0])
    os.unlink(out)
    return counts


def callgrind_cost(pid, outfile, fn):
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    fn()
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    time.sleep(0.5)
    dumps = sorted((p for p in os.listdir(os.path.dirname(outfile))
                    if p.startswith(os.path.basename(outfile) + ".")),
                   key=lambda p: os.path.getmtime(os.path.join(os.path.dirname(outfile), p)))
    path = os.path.join(os.path.dirname(outfile), dumps[-1])
    ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", path], capture_output=True,
                         text=True).stdout
    total = 0
    m = re.search(r"^([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", ann, re.M)
    if m:
        total = int(m.group(1).replace(",", ""))
    allocs = 0
    # calls= lines of the dump name the callee by id; count calls into the allocators.
    names = {}
    cur = None
    with open(path) as f:
        for line in f:
            m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.strip())
            if m:
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                if line.startswith("cfn="):
                    cur = names.get(m.group(1))
                continue
            m = re.match(r"calls=(\d+)", line)
            if m and cur in ("malloc", "calloc", "realloc", "posix_memalign",
                             "aligned_alloc"):
                allocs += int(m.group(1))
    # Calls from inside the allocators (realloc->malloc) are not in a daemon's code path
    # but would be counted twice; they are rare enough for a before/after comparison.
    return total, allocs, path


def run(args):
    b = args.build_dir
    work = args.out or tempfile.mkdtemp(prefix="costs.")
    os.makedirs(work, exist_ok=True)
    server_bin = os.path.join(b, "daemons", "server", "seldon-server")
    router_bin = os.path.join(b, "daemons", "router", "seldon-router")
    bodies_bin = args.bodies or os.path.join(b, "benchmarks", "server", "bench_server_bodies")
    bodies = {}
    for key, kind, n in (("small", "json", bs.SMALL), ("large", "json", bs.LARGE),
                         ("grpc", "grpc", bs.GRPC_FLOATS)):
        bodies[key] = os.path.join(work, f"request_{key}.{'json' if kind == 'json' else 'bin'}")
        subprocess.run([bodies_bin, kind, str(n), bodies[key]], check=True)
    repo = os.path.join(work, "repo")
    bs.write_model(repo, MODEL, {"implementation": "builtin.identity"})
    procs = []
    rows = []
    n = args.requests

    def srv_cmd(binary):
        cmd = [binary, "--model-repository", repo, "--http-port", "0", "--grpc-port", "0",
               "--host", HOST, "--log-level", "warn"]
        if not args.server_defaults:
            cmd += ["--io-threads", "1", "--grpc-threads", "1", "--workers", "1"]
        return cmd

    try:
        if args.what == "router":
            server = bs.Server("seldon-server", srv_cmd(server_bin), work,
                               ready=r"listening http=\d+ grpc=\d+")
            procs.append(server)
            bs.wait_ready(server, MODEL)
            routes = os.path.join(work, "routes.yaml")
            with open(routes, "w") as f:
                f.write(f"routes:\n- name: {MODEL}\n  upstreams:\n"
                        f"  - {{http: \"{HOST}:{server.ports['http']}\", "
                        f"grpc: \"{HOST}:{server.ports['grpc']}\"}}\n")
            rcmd = [router_bin, "--port", "0", "--metrics-port", "0", "--host", HOST, "--routes",
                    routes, "--log-level", "warn", "--io-threads", "1",
                    "--busy-poll", "0"]
            cases = [("rest", "small", 1), ("rest", "small", 16), ("grpc", "grpc", 1),
                     ("grpc", "grpc", 16)]
            hdrs = (f"seldon-model: {MODEL}",)
            if not args.no_strace:
                router = bs.Server("seldon-router", rcmd, work, ready=r"listening port=\d+")
                procs.append(router)
                for kind, body, c in cases:
                    port = router.ports["port"]
                    load(kind, port, bodies[body], c, 500, hdrs)
                    counts = strace_counts(router.proc.pid, lambda: load(
                        kind, port, bodies[body], c, n, hdrs))
                    rows.append((f"router {kind} c{c} syscalls/req",
                                 " ".join(f"{k}={v / n:.2f}" for k, v in sorted(counts.items())
                                          if v / n >= 0.005 and k != "total") +
                                 f" total={counts.get('total', 0) / n:.2f}"))
                router.stop()
                procs.remove(router)
            if not args.no_callgrind:
                cg = os.path.join(work, "callgrind.router")
                router = bs.Server("seldon-router", ["valgrind", "--tool=callgrind",
                                                     f"--callgrind-out-file={cg}"] + rcmd, work,
                                   ready=r"listening port=\d+")
                procs.append(router)
                for kind, body, c in cases:
                    port = router.ports["port"]
                    load(kind, port, bodies[body], c, 300, hdrs)
                    ir, allocs, path = callgrind_cost(router.proc.pid, cg, lambda: load(
                        kind, port, bodies[body], c, n, hdrs))
                    rows.append((f"router {kind} c{c} Ir/req, allocs/req",
                                 f"{ir / n:,.0f} Ir  {allocs / n:.2f} allocs  ({path})"))
        else:
            binary = args.server_bin or server_bin
            cases = (("large", 16), ("small", 1))
            if not args.no_strace:
                server = bs.Server("seldon-server", srv_cmd(binary), work,
                                   ready=r"listening http=\d+ grpc=\d+")
                procs.append(server)
                bs.wait_ready(server, MODEL)
                port = server.ports["http"]
                for body, c in cases:
                    load("rest", port, bodies[body], c, 500)
                    counts = strace_counts(server.proc.pid, lambda: load(
                        "rest", port, bodies[body], c, n))
                    rows.append((f"server REST {body} c{c} syscalls/req",
                                 " ".join(f"{k}={v / n:.2f}" for k, v in sorted(counts.items())
                                          if v / n >= 0.005 and k != "total") +
                                 f" total={counts.get('total', 0) / n:.2f}"))
                    if args.perf:
                        sw = switch_counts(server.proc.pid, lambda: load(
                            "rest", port, bodies[body], c, n))
                        rows.append((f"server REST {body} c{c} switches/req",
                                     " ".join(f"{k}={v / n:.3f}" for k, v in sorted(sw.items()))))
                server.stop()
                procs.remove(server)
            if not args.no_callgrind:
                cg = os.path.join(work, "callgrind.server")
                server = bs.Server("seldon-server", ["valgrind", "--tool=callgrind",
                                                     f"--callgrind-out-file={cg}"] +
                                   srv_cmd(binary), work, ready=r"listening http=\d+ grpc=\d+")
                procs.append(server)
                bs.wait_ready(server, MODEL, guard=120)
                port = server.ports["http"]
                for body, c in cases:
                    load("rest", port, bodies[body], c, 200)
                    ir, allocs, path = callgrind_cost(server.proc.pid, cg, lambda: load(
                        "rest", port, bodies[body], c, n))
                    mib = os.path.getsize(bodies[body]) / 1048576.0
                    rows.append((f"server REST {body} c{c} Ir/req, allocs/req",
                                 f"{ir / n:,.0f} Ir  {allocs / n:.2f} allocs  "
                                 f"{ir / n / mib:,.0f} Ir/MiB ({path})"))
    finally:
        for p in reversed(procs):
            p.stop()
    for name, val in rows:
        print(f"{name:<34} {val}")
    if not args.out:
        log(f"profiles in {work}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", default=os.path.join(SOURCE, "build"))
    p.add_argument("--server-bin", help="the seldon-server to profile (--what server)")
    p.add_argument("--bodies", help="bench_server_bodies to make the request bodies with")
    p.add_argument("--what", choices=("router", "server"), default="router")
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--server-defaults", action="store_true",
                   help="seldon-server with its default threads (else one of each)")
    p.add_argument("--no-callgrind", action="store_true")
    p.add_argument("--perf", action="store_true",
                   help="also context switches per request (perf stat software counters)")
    p.add_argument("--no-strace", action="store_true")
    p.add_argument("--out", help="folder for bodies and profiles (default: a new temporary one)")
    args = p.parse_args()
    args.build_dir = os.path.abspath(args.build_dir)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
