#!/usr/bin/env python3
"""
The websocket path a browser uses, on a rig host the formula converged
(Odoo 17, prefork, docker):

- latency: the handshake (TCP connect to 101) and a message round trip
  (subscribe -> reply) through the formula's site (127.0.0.1:80), through
  the least nginx site that carries a websocket on the same nginx (nginx's
  bare proxy, 127.0.0.1:81) and straight to Odoo's evented port
  (127.0.0.1:8072, for reference), by the same client inside the host,
  interleaved; with --relays also through socat. Target: the formula's
  round trip within 1.05x of the bare site's (the median of the runs'
  ratios);
- hold: a stream of HTTP requests through nginx from another host, SESSIONS
  websockets opened from there and held while an apply changes nginx's
  files (the map file, touched) and nginx reloads: sessions refused, dropped,
  failed requests, and the private memory of nginx's workers per session.
  nginx.conf is sized by the formula for MAX_SESSIONS (nginx:max_sessions);
  0 keeps Debian's stock nginx.conf.

    tools/bench/websocket latency --runs 15
    tools/bench/websocket latency --runs 15 --relays     # + socat
    tools/bench/websocket hold --runs 5 --sessions 200
    tools/bench/websocket hold --runs 5 --sessions 2000 --max-sessions 0      # stock nginx.conf
    tools/bench/websocket hold --runs 5 --sessions 2000 --max-sessions 2000
    tools/bench/websocket hold --runs 3 --sessions 10000 --max-sessions 10000

Run as root, under the machine-wide lock: flock /tmp/ows-test.lock tools/bench/websocket ...
"""

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from rig.field import broken_docker_host
from rig.hosts import PYTHON, REPO, Rig

SERVER_NAME = "odoo.example.com"
PROBE = os.path.join(REPO, "tools/rig/probe.py")
TARGET = 1.05  # the formula's site's round trip / nginx's bare site's (issue 25)
SUBSCRIBE = json.dumps({"event_name": "subscribe", "data": {"channels": [], "last": 0}})


def client(port, handshakes, messages):
    """Inside the host: (handshake seconds, round-trip seconds) lists for PORT."""
    from websockets.sync.client import connect

    def open_one():
        start = time.perf_counter()
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        websocket = connect(
            f"ws://{SERVER_NAME}/websocket?version=17.0-1",
            sock=sock,
            origin=f"http://{SERVER_NAME}",
            open_timeout=5,
        )
        return websocket, time.perf_counter() - start

    shakes = []
    for _ in range(handshakes):
        websocket, seconds = open_one()
        shakes.append(seconds)
        websocket.close()
    trips = []
    websocket, _ = open_one()
    with websocket:
        for _ in range(messages):
            start = time.perf_counter()
            websocket.send(SUBSCRIBE)
            websocket.recv(timeout=5)
            trips.append(time.perf_counter() - start)
    return shakes, trips


def converged_host(rig, workdir, max_sessions=None):
    host = rig.odoo_host(prepare=broken_docker_host)
    pillar = host.sandbox.pillar()
    if max_sessions is not None:
        pillar["odoo_websocket"]["nginx"]["max_sessions"] = max_sessions
    code, ret = host.apply_formula(pillar)
    if code != 0:
        raise SystemExit(f"apply failed: {ret}")
    return host, pillar


# nginx's own floor for an upgraded connection: the least site that carries
# a websocket (the headers Odoo needs, nothing else), on the same nginx.
BARE_SITE = """server {
    listen 127.0.0.1:81;
    location / {
        proxy_pass http://127.0.0.1:8072;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_set_header Host $host;
        proxy_set_header Origin $http_origin;
    }
}
"""
BARE_FILE = "/etc/nginx/conf.d/bench-bare-websocket.conf"


def relays(host, socat=False):
    """The paths measured besides nginx and direct: nginx's bare site, and
    with SOCAT socat (any user-space relay's floor) when it is installed.
    Starts what they need inside HOST; returns ([(label, port)], processes
    to stop)."""
    paths, started = [("nginx, bare site", 81)], []
    host.exec("sh", "-c", f"cat > {BARE_FILE} <<'EOF'\n{BARE_SITE}EOF", check=True)
    host.exec("nginx", "-s", "reload", check=True)
    time.sleep(1)  # the new workers
    if socat and host.exec("sh", "-c", "command -v socat").returncode == 0:
        started.append(host.popen(
            "socat", "TCP-LISTEN:82,bind=127.0.0.1,fork,reuseaddr,nodelay",
            "TCP:127.0.0.1:8072,nodelay", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        paths.append(("socat", 82))
        time.sleep(0.5)
    return paths, started


def latency(args):
    """Interleaved: per run, a batch through each path, the order turned every
    run; medians per run, then the median of runs."""
    per_run = []
    with tempfile.TemporaryDirectory(prefix="owsws") as workdir:
        rig = Rig(workdir).create()
        started = []
        try:
            host, _ = converged_host(rig, workdir)
            more, started = relays(host, socat=args.relays)
            paths = [("nginx", 80), ("direct", 8072), *more]
            for index in range(args.runs):
                shift = index % len(paths)
                order = paths[shift:] + paths[:shift]
                row = {}
                for label, port in order:
                    # Entering the host's mount namespace resets the working
                    # folder to its root: the repository comes by PYTHONPATH.
                    proc = host.exec(
                        "env", f"PYTHONPATH={REPO}/tools", PYTHON, "-m", "bench.websocket",
                        "client", "--port", str(port),
                        "--handshakes", str(args.handshakes), "--messages", str(args.messages),
                        check=True,
                    )  # fmt: skip
                    shakes, trips = json.loads(proc.stdout)
                    row[label] = {
                        "handshake_ms": statistics.median(shakes) * 1000,
                        "round_trip_ms": statistics.median(trips) * 1000,
                        "round_trip_p95_ms": sorted(trips)[int(0.95 * len(trips))] * 1000,
                    }
                per_run.append(row)
                print(json.dumps(row), flush=True)
        finally:
            for proc in started:
                proc.kill()
                proc.wait()
            rig.destroy()
    result = {}
    for label in per_run[0]:
        result[label] = {
            key: statistics.median(run[label][key] for run in per_run) for key in per_run[0][label]
        }
    direct = result["direct"]
    for label, figures in result.items():
        if label != "direct":
            trip, shake = figures["round_trip_ms"], figures["handshake_ms"]
            figures["ratio_round_trip"] = trip / direct["round_trip_ms"]
            figures["added_round_trip_us"] = 1000 * (trip - direct["round_trip_ms"])
            figures["ratio_handshake"] = shake / direct["handshake_ms"]
    # The target: paired per run, then the median of the runs' ratios.
    bare = "nginx, bare site"
    ratio = statistics.median(
        run["nginx"]["round_trip_ms"] / run[bare]["round_trip_ms"] for run in per_run
    )
    verdict = "met" if ratio <= TARGET else "NOT met"
    result["target"] = {"nginx_vs_bare_round_trip": ratio, "target": TARGET, "verdict": verdict}
    print(f"the formula's site / nginx's bare site, round trip: {ratio:.3f}x (median of the "
          f"runs' ratios; target {TARGET}x: {verdict})", flush=True)  # fmt: skip
    return {"runs": per_run, "medians": result}


# The private memory (KiB) of the host's nginx workers: what sessions cost.
WORKERS_MEMORY = (
    "for p in $(pgrep -P $(cat /run/nginx.pid)); do "
    "awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s}' /proc/$p/smaps_rollup; done"
)


def workers_kib(host):
    proc = host.exec("sh", "-c", WORKERS_MEMORY, check=True)
    return sum(int(line) for line in proc.stdout.split())


def hold(args):
    """Per run: SESSIONS websockets and an HTTP stream from the outside host,
    an apply that changes the site, then every session asked again."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="owsws") as workdir:
        rig = Rig(workdir).create()
        try:
            host, pillar = converged_host(rig, workdir, args.max_sessions)
            map_file = pillar["odoo_websocket"]["nginx"]["map_file"]
            outside = rig.outside_host()
            for index in range(args.runs):
                ready = os.path.join(workdir, f"ready{index}")
                stop = os.path.join(workdir, f"stop{index}")
                idle_kib = workers_kib(host)
                holder = outside.popen(
                    PYTHON, PROBE, "hold", "--address", host.address,
                    "--sessions", str(args.sessions), "--ready-file", ready, "--stop-file", stop,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                )  # fmt: skip
                deadline = time.monotonic() + 120 + args.sessions / 20
                while not os.path.exists(ready):
                    if holder.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"hold did not start: {holder.communicate()}")
                    time.sleep(0.05)
                held_kib = workers_kib(host)
                time.sleep(1)  # a second of the HTTP stream before the change
                # A change every apply makes: the formula's map file, touched
                # on disk (nginx keeps serving what it loaded), is written
                # back, checked with nginx -t and reloaded. (A pillar value
                # would not do: an adopted site keeps the host's timeouts.)
                host.exec("sh", "-c", f"echo '# touched by the benchmark' >> {map_file}",
                          check=True)  # fmt: skip
                start = time.perf_counter()
                code, ret = host.apply_formula(pillar)
                apply_s = time.perf_counter() - start
                tx = next(
                    (s for s in ret.values() if s.get("__id__").endswith("transaction-applied")),
                    {},
                ) if isinstance(ret, dict) else {}  # fmt: skip
                time.sleep(1)  # and a second after it
                with open(stop, "w", encoding="ascii") as handle:
                    handle.write("stop")
                out, err = holder.communicate(timeout=180)
                seen = json.loads(out)
                seen["http_errors"] = sorted(set(seen["http_errors"]))[:5]
                held = re.search(r"nginx holds [^(]*", tx.get("comment", ""))
                row = {
                    "apply_ok": code == 0 and bool(tx.get("result")),
                    "changed": bool(tx.get("changes")),
                    "reloaded": "nginx reloaded" in tx.get("comment", ""),
                    "apply_s": apply_s,
                    "capacity": held.group(0).strip() if held else None,
                    "nginx_workers_mib": [round(idle_kib / 1024, 1), round(held_kib / 1024, 1)],
                    **seen,
                }
                if seen["opened"]:
                    row["nginx_kib_per_session"] = round((held_kib - idle_kib) / seen["opened"], 2)
                if not row["apply_ok"]:
                    row["apply_comment"] = tx.get("comment", str(ret))[-600:]
                runs.append(row)
                print(json.dumps(row), flush=True)
        finally:
            rig.destroy()
    return {"runs": runs}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--runs", type=int, default=5)
    lat.add_argument("--handshakes", type=int, default=200)
    lat.add_argument("--messages", type=int, default=1000)
    lat.add_argument(
        "--relays",
        action="store_true",
        help="also socat (if installed): a user-space relay's floor",
    )
    keep = sub.add_parser("hold")
    keep.add_argument("--runs", type=int, default=5)
    keep.add_argument("--sessions", type=int, default=200)
    keep.add_argument(
        "--max-sessions",
        type=int,
        default=None,
        help="nginx:max_sessions (default: pillar.example's; 0: stock nginx.conf)",
    )
    one = sub.add_parser("client")  # used inside the host by `latency`
    one.add_argument("--port", type=int, required=True)
    one.add_argument("--handshakes", type=int, default=200)
    one.add_argument("--messages", type=int, default=1000)
    for command in (lat, keep):
        command.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args(argv)
    if args.command == "client":
        json.dump(client(args.port, args.handshakes, args.messages), sys.stdout)
        return 0
    result = latency(args) if args.command == "latency" else hold(args)
    print(json.dumps(result.get("medians", result), indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=1)
    if args.command == "hold":
        bad = [
            r
            for r in result["runs"]
            if r["open_failed"]
            or r["dropped"]
            or r["http_failed"]
            or not r["apply_ok"]
            or not r["changed"]
            or not r["reloaded"]
            or r.get("timed_out")
        ]
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
