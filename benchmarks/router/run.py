#!/usr/bin/python3
"""The seldon-router benchmark: one seldon-server reached directly, through
seldon-router, and through nginx as a reverse proxy, in the same run, on
loopback, with the ratios computed here.

    /usr/bin/python3 benchmarks/router/run.py [--quick | --smoke] [options]

REST is loaded with wrk (keep-alive, a Lua script posting a small JSON body),
gRPC with h2load (a pre-framed ModelInferRequest, the seldon-model header for
the router), at 1 and at 16 connections. nginx proxies REST with proxy_pass
and upstream keep-alive, gRPC with grpc_pass. Then 10,000 idle keep-alive
connections are opened to the router and its RSS is read before and after.

Prints one table (case, ours, reference, ratio, target) and every raw figure;
saves them under the build folder (benchmarks/router/bench_router.txt and
.json). Targets are printed for reading, never enforced.
"""
import argparse
import importlib.util
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))

# The server benchmark's process, load-generator and formatting helpers.
_spec = importlib.util.spec_from_file_location("bench_server",
                                               os.path.join(SOURCE, "benchmarks", "server",
                                                            "run.py"))
bs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bs)

HOST = bs.HOST
MODEL = "identity"
PATH = bs.INFER_PATH.format(MODEL)
IDLE_CONNS = 10000


def log(msg):
    print(f"[bench_router {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build(args):
    if not os.path.exists(os.path.join(args.build_dir, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", SOURCE, "-B", args.build_dir], check=True,
                       stdout=subprocess.DEVNULL)
    log("building bench_router_deps (seldon-router, seldon-server, body maker)")
    subprocess.run(["cmake", "--build", args.build_dir, "-j2", "--target", "bench_router_deps"],
                   check=True, stdout=subprocess.DEVNULL)


def copy_binaries(args, workdir):
    """Copies the binaries, so a concurrent rebuild cannot swap them mid-run."""
    b = args.build_dir
    src = {
        "server": os.path.join(b, "daemons", "server", "seldon-server"),
        "router": os.path.join(b, "daemons", "router", "seldon-router"),
        "bodies": os.path.join(b, "benchmarks", "server", "bench_server_bodies"),
    }
    bins = {}
    for key, path in src.items():
        if not os.path.exists(path):
            raise SystemExit(f"bench_router: {path} is missing: build target bench_router_deps")
        bins[key] = os.path.join(workdir, "bin", os.path.basename(path))
        os.makedirs(os.path.dirname(bins[key]), exist_ok=True)
        shutil.copy2(path, bins[key])
    return bins


def router_conf(workdir, server):
    path = os.path.join(workdir, "routes.yaml")
    with open(path, "w") as f:
        f.write("routes:\n"
                f"- name: {MODEL}\n"
                "  upstreams:\n"
                f"  - {{http: \"{HOST}:{server.ports['http']}\", "
                f"grpc: \"{HOST}:{server.ports['grpc']}\"}}\n")
    return path


def nginx_proxy_conf(workdir, workers, rest_port, grpc_port, server):
    d = os.path.join(workdir, f"nginx-proxy-{workers}")
    os.makedirs(d, exist_ok=True)
    conf = f"""
worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    http2_max_requests 100000000;
    upstream rest_up {{
        server {HOST}:{server.ports['http']};
        keepalive 64;
        keepalive_requests 100000000;
    }}
    upstream grpc_up {{
        server {HOST}:{server.ports['grpc']};
        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen {HOST}:{rest_port};
        location / {{
            proxy_pass http://rest_up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
        }}
    }}
    server {{
        listen {HOST}:{grpc_port} http2;
        location / {{
            grpc_pass grpc://grpc_up;
        }}
    }}
}}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path, d


def idle_connections(router, port, count):
    """Opens count keep-alive connections, each having made one request; returns RSS delta KiB."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    before = router.rss_kib()
    socks = []
    req = (f"GET /v2/health/live HTTP/1.1\r\nHost: {HOST}\r\n\r\n").encode()
    try:
        for _ in range(count):
            s = socket.create_connection((HOST, port), timeout=10)
            s.sendall(req)
            socks.append(s)
        for s in socks:  # every connection has been served once and stays open, idle
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError("the router closed an idle connection")
                data += chunk
        after = router.rss_kib()
    finally:
        for s in socks:
            s.close()
    return before, after, len(socks)


def run(args):
    if not args.no_build:
        build(args)
    load_start = bs.load_average()
    log(f"1-minute load average at start: {load_start:.2f} ({bs.CORES} cores)")
    t_start = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="bench_router.")
    os.chmod(workdir, 0o755)
    servers = []

    def start(s):
        servers.append(s)
        return s

    def stop_all():
        while servers:
            servers.pop().stop()

    bench = None
    figures = {}
    idle = None
    try:
        bins = copy_binaries(args, workdir)
        bench = bs.Bench(args, workdir)
        bodies = {}
        for key, kind, n in (("small", "json", bs.SMALL), ("grpc", "grpc", bs.GRPC_FLOATS)):
            ext = "json" if kind == "json" else "bin"
            bodies[key] = os.path.join(workdir, f"request_{key}.{ext}")
            subprocess.run([bins["bodies"], kind, str(n), bodies[key]], check=True)
            os.chmod(bodies[key], 0o644)
        script = bs.wrk_script(workdir, bodies["small"])
        repo = os.path.join(workdir, "repo")
        bs.write_model(repo, MODEL, {"implementation": "builtin.identity"})

        # One upstream seldon-server for every case, with its defaults.
        upstream = start(bs.seldon(bins, workdir, repo, False, "seldon-server"))
        bs.wait_ready(upstream, MODEL)

        cases = []
        # direct
        cases.append(("direct", upstream, upstream.ports["http"], upstream.ports["grpc"], ()))
        # seldon-router, one port
        routes = router_conf(workdir, upstream)
        rcmd = [bins["router"], "--port", "0", "--metrics-port", "0", "--host", HOST,
                "--routes", routes, "--log-level", "warn"]
        if args.router_threads:
            rcmd += ["--io-threads", str(args.router_threads)]
        router = start(bs.Server("seldon-router", rcmd, workdir,
                                 ready=r"listening port=\d+"))
        cases.append(("router", router, router.ports["port"], router.ports["port"],
                      (f"seldon-model: {MODEL}",)))
        # The same router with its loops sleeping at once (--busy-poll 0), for the record.
        router0 = start(bs.Server("seldon-router-nopoll", rcmd + ["--busy-poll", "0"], workdir,
                                  ready=r"listening port=\d+"))
        cases.append(("router-nopoll", router0, router0.ports["port"], router0.ports["port"],
                      (f"seldon-model: {MODEL}",)))
        # nginx
        rest_port, grpc_port = bs.free_port(), bs.free_port()
        conf, prefix = nginx_proxy_conf(workdir, args.nginx_workers, rest_port, grpc_port,
                                        upstream)
        ngx = start(bs.Server("nginx-proxy", ["nginx", "-c", conf, "-p", prefix, "-e",
                                               os.path.join(prefix, "error.log")], workdir))
        bs.wait_port(rest_port)
        bs.wait_port(grpc_port)
        cases.append(("nginx", ngx, rest_port, grpc_port, ()))

        # Each path answers the same bytes before it is measured.
        with open(bodies["small"], "rb") as f:
            small = f.read()
        _, _, expect = bs.http_exchange(upstream.ports["http"], PATH, small)
        for name, _, rport, _, _ in cases:
            _, status, body = bs.http_exchange(rport, PATH, small)
            if status != 200 or body != expect:
                raise RuntimeError(f"{name} answered {status}: {body[:200]!r}")

        # One connection: the three paths in turn, round after round, so that a drift of
        # the machine (or where the scheduler put each thread) falls on all three alike;
        # the rows take the median round.
        rounds = {name: {"rest": [], "grpc": []} for name, *_ in cases}
        for rnd in range(args.rounds):
            for name, proc, rport, gport, hdrs in cases:
                tag = f" (round {rnd + 1}/{args.rounds})" if args.rounds > 1 else ""
                rounds[name]["rest"].append(bench.wrk(
                    f"{name}: REST small c1{tag}", proc, rport, PATH, script, 1))
                rounds[name]["grpc"].append(bench.h2load_grpc(
                    f"{name}: gRPC 256 floats c1{tag}", proc, gport, bodies["grpc"], 1, hdrs))
        for name, proc, rport, gport, hdrs in cases:
            figures[name] = {"rounds": rounds[name]}
            for proto in ("rest", "grpc"):
                ms = sorted(rounds[name][proto], key=lambda m: m.get("p50_us", 0.0))
                figures[name][f"{proto}_c1"] = ms[len(ms) // 2]
            figures[name]["rest_c16"] = bench.wrk(
                f"{name}: REST small c16", proc, rport, PATH, script, 16)
            figures[name]["grpc_c16"] = bench.h2load_grpc(
                f"{name}: gRPC 256 floats c16", proc, gport, bodies["grpc"], 16, hdrs)

        log(f"{IDLE_CONNS:,} idle keep-alive connections to the router")
        idle = idle_connections(router, router.ports["port"],
                                200 if args.smoke else IDLE_CONNS)
        log(f"  router RSS {idle[0]} KiB before, {idle[1]} KiB with {idle[2]:,} idle connections")
    finally:
        stop_all()

    rows = []

    def row(case, o, r, unit, rat, target):
        rows.append((case, bs.fmt(o, unit), bs.fmt(r, unit),
                     "n/a" if rat != rat else f"{rat:.2f}", target))

    d, r, n = figures["direct"], figures["router"], figures["nginx"]
    r0 = figures["router-nopoll"]

    def added(proxy, proto):
        """The median over rounds of the proxy's p50 minus direct's in the same round."""
        diffs = sorted(p["p50_us"] - q["p50_us"]
                       for p, q in zip(proxy["rounds"][proto], d["rounds"][proto])
                       if "p50_us" in p and "p50_us" in q)
        return diffs[len(diffs) // 2] if diffs else float("nan")

    for proto, tool in (("rest", "REST"), ("grpc", "gRPC")):
        added_r = added(r, proto)
        added_n = added(n, proto)
        row(f"{tool} c1 p50 added over direct: router / nginx", added_r, added_n, "us",
            bs.ratio(added_r, added_n), "router <= 20 us")
        row(f"{tool} c1 p50: router / direct", r[f"{proto}_c1"]["p50_us"],
            d[f"{proto}_c1"]["p50_us"], "us",
            bs.ratio(r[f"{proto}_c1"]["p50_us"], d[f"{proto}_c1"]["p50_us"]), "(info)")
        added_0 = added(r0, proto)
        row(f"{tool} c1 p50 added, --busy-poll 0: router / nginx", added_0, added_n, "us",
            bs.ratio(added_0, added_n), "(info)")
        row(f"{tool} c16 rps: router / nginx", r[f"{proto}_c16"]["rps"],
            n[f"{proto}_c16"]["rps"], "rps",
            bs.ratio(r[f"{proto}_c16"]["rps"], n[f"{proto}_c16"]["rps"]), ">= 1.0")
        row(f"{tool} c16 rps, --busy-poll 0: router / nginx", r0[f"{proto}_c16"]["rps"],
            n[f"{proto}_c16"]["rps"], "rps",
            bs.ratio(r0[f"{proto}_c16"]["rps"], n[f"{proto}_c16"]["rps"]), "(info)")
        row(f"{tool} c16 rps: router / direct", r[f"{proto}_c16"]["rps"],
            d[f"{proto}_c16"]["rps"], "rps",
            bs.ratio(r[f"{proto}_c16"]["rps"], d[f"{proto}_c16"]["rps"]), "(info)")
    if idle:
        delta = (idle[1] - idle[0]) / 1024.0
        row(f"router RSS for {idle[2]:,} idle conns / 64 MiB", delta, 64.0, "MiB",
            bs.ratio(delta, 64.0), "<= 1.0")

    elapsed = time.monotonic() - t_start
    lines = [f"seldon-router benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')}, {bs.CORES} cores, "
             f"load average {load_start:.2f} at start, {bs.load_average():.2f} at end, "
             f"{elapsed:.0f} s",
             f"{args.seconds} s per measurement ({args.warmup} s warm-up), c1 in {args.rounds} "
             f"interleaved rounds (median); router --io-threads "
             f"{args.router_threads or 'default'}, nginx worker_processes {args.nginx_workers}; "
             f"one seldon-server upstream (defaults), identity model, small = FP32 x{bs.SMALL}"
             + ("; SMOKE RUN: figures not meaningful" if args.smoke else ""), ""]
    header = ("case", "ours", "reference", "ratio", "target")
    widths = [max(len(x[i]) for x in rows + [header]) for i in range(5)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    for x in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(x, widths))).rstrip())
    lines.append("")
    lines.append("measurements: rps; latency p50 / p99 in us; cpu = that process's CPU per request")
    for m in bench.raw:
        err = f"  ERRORS {m['errors']}" if m["errors"] else ""
        lines.append(f"  {m['label']:<36} {m['rps']:>9,.0f} rps  p50 {m['p50_us']:>6,.0f}  "
                     f"p99 {m['p99_us']:>7,.0f}  cpu {m['cpu_us_per_req']:>5.1f}{err}")
    text = "\n".join(lines) + "\n"
    print(text, end="", flush=True)
    outdir = os.path.join(args.build_dir, "benchmarks", "router")
    os.makedirs(outdir, exist_ok=True)
    name = "bench_router_smoke" if args.smoke else "bench_router"
    with open(os.path.join(outdir, name + ".txt"), "w") as f:
        f.write(text)
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump({"raw": bench.raw, "table": rows, "idle": idle}, f, indent=1)
    log(f"saved {os.path.join(outdir, name + '.txt')}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    empty = [m["label"] for m in bench.raw if m["requests"] == 0 or m["errors"]]
    if empty:
        log(f"measurements without requests, or with errors: {', '.join(empty)}")
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", default=os.path.join(SOURCE, "build"))
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--quick", action="store_true", help="3 s per measurement")
    p.add_argument("--smoke", action="store_true", help="1 s per measurement: checks the harness")
    p.add_argument("--seconds", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--threads", type=int, default=1, help="wrk/h2load threads (default 1)")
    p.add_argument("--router-threads", type=int, default=0,
                   help="seldon-router --io-threads (default: the router's own default)")
    p.add_argument("--nginx-workers", default="auto", help="nginx worker_processes")
    p.add_argument("--rounds", type=int, default=5,
                   help="rounds of the one-connection cases, the three paths in turn "
                        "(default 5; the rows take the median)")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    preset = (1, 0) if args.smoke else (3, 1) if args.quick else (8, 1)
    if args.smoke:
        args.rounds = 1
    args.seconds = args.seconds or preset[0]
    args.warmup = preset[1] if args.warmup is None else args.warmup
    args.build_dir = os.path.abspath(args.build_dir)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
