#!/usr/bin/env python3
"""
The websocket path a browser uses, on a rig host the formula converged
(Odoo 17, prefork, docker):

- latency: the handshake (TCP connect to 101) and a message round trip
  (subscribe -> reply) through nginx (127.0.0.1:80) and straight to Odoo's
  evented port (127.0.0.1:8072), by the same client inside the host,
  interleaved;
- hold: a stream of HTTP requests through nginx from another host, SESSIONS
  websockets opened from there and held while an apply changes the site
  (the proxy timeout flips) and nginx reloads: sessions refused, dropped,
  failed requests. nginx.conf is sized by the formula for MAX_SESSIONS
  (nginx:max_sessions); 0 keeps Debian's stock nginx.conf.

    bench/websocket latency --runs 5
    bench/websocket hold --runs 5 --sessions 200
    bench/websocket hold --runs 5 --sessions 2000 --max-sessions 0      # stock nginx.conf
    bench/websocket hold --runs 5 --sessions 2000 --max-sessions 2000

Run as root, under the machine-wide lock: flock /tmp/ows-test.lock bench/websocket ...
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
PROBE = os.path.join(REPO, "rig/probe.py")
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


def latency(args):
    """Interleaved: per run, a batch through nginx then a batch direct, the
    order flipped every run; medians per run, then the median of runs."""
    per_run = []
    with tempfile.TemporaryDirectory(prefix="owsws") as workdir:
        rig = Rig(workdir).create()
        try:
            host, _ = converged_host(rig, workdir)
            for index in range(args.runs):
                order = [("nginx", 80), ("direct", 8072)]
                if index % 2:
                    order.reverse()
                row = {}
                for label, port in order:
                    # Entering the host's mount namespace resets the working
                    # folder to its root: the repository comes by PYTHONPATH.
                    proc = host.exec(
                        "env", f"PYTHONPATH={REPO}", PYTHON, "-m", "bench.websocket",
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
            rig.destroy()
    result = {}
    for label in ("nginx", "direct"):
        result[label] = {
            key: statistics.median(run[label][key] for run in per_run) for key in per_run[0][label]
        }
    result["ratio_round_trip"] = (
        result["nginx"]["round_trip_ms"] / result["direct"]["round_trip_ms"]
    )
    result["ratio_handshake"] = result["nginx"]["handshake_ms"] / result["direct"]["handshake_ms"]
    return {"runs": per_run, "medians": result}


def hold(args):
    """Per run: SESSIONS websockets and an HTTP stream from the outside host,
    an apply that changes the site, then every session asked again."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="owsws") as workdir:
        rig = Rig(workdir).create()
        try:
            host, pillar = converged_host(rig, workdir, args.max_sessions)
            outside = rig.outside_host()
            for index in range(args.runs):
                ready = os.path.join(workdir, f"ready{index}")
                stop = os.path.join(workdir, f"stop{index}")
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
                time.sleep(1)  # a second of the HTTP stream before the change
                pillar["odoo_websocket"]["nginx"]["proxy_timeout"] = 720 - 120 * (index % 2 == 0)
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
                    "site_changed": bool(tx.get("changes")),
                    "reloaded": "nginx reloaded" in tx.get("comment", ""),
                    "apply_s": apply_s,
                    "capacity": held.group(0).strip() if held else None,
                    **seen,
                }
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
            if r["open_failed"] or r["dropped"] or r["http_failed"] or not r["apply_ok"]
        ]
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
