#!/usr/bin/env python3
"""
A fleet on the rig, as a salt-master operator runs the formula: one
salt-master on the rig's bridge and N salt-minions, each inside its own
namespace host with its own nginx and stand-in Odoo (rig/hosts.py), a pillar
top file giving each host its own server name and, by turns, Odoo 15, 16 or
17, prefork or threaded, docker or native, Odoo's default or other ports.

With --broken (the default) the last host has a neighbour site that passes
`nginx -t` but listens on a port Odoo holds: nginx's reload fails there, so
its run must fail, every file it touched come back byte for byte, its nginx
keep serving, and the other hosts be unaffected. After the first highstate
the neighbour is "fixed" (removed), a repair highstate converges that host,
and every later highstate must change nothing anywhere.

Each minion (with everything it spawns) and the master run in cgroups of
their own (cgroup v1 cpuacct and memory): CPU seconds and peak memory are
the kernel's counts, exited processes included.

    tools/bench/fleet --hosts 20 --rounds 5 --json /tmp/fleet20.json

Each round also runs Salt's own floor on every minion right after the no-op
highstate, an SLS of one test.succeed_without_changes state (as
tools/bench/noop), twice: as a highstate (the top file naming only it) and
as `state.apply floor`. The target is a no-op highstate's CPU seconds per
minion within 1.5x of the floor's highstate (the median of the rounds'
ratios): every highstate first syncs the minion's dynamic modules
(autoload_dynamic_modules, Salt's default), about 2 s of CPU per minion here
whatever the top file names, which `state.apply` never does.

Round 1 is cold (minions just synced); rounds 2.. put every host back in its
field state (files restored from a snapshot, nginx reloaded, Odoo re-read
its files) and run the first highstate again. Run as root, under the
machine-wide lock: flock /tmp/ows-test.lock tools/bench/fleet ...
"""

import argparse
import json
import os
import statistics
import sys
import time

from rig.highstate import (
    Fleet,
    check_first,
    check_noop,
    check_noop_after_fix,
    check_probes,
)

# Salt's floor: the cheapest state run there is.
FLOOR_SLS = "odoo_websocket-bench-floor:\n  test.succeed_without_changes: []\n"
TARGET = 1.5  # a no-op highstate's CPU per minion / the floor's (issue 25)


def summary(run, cores, hosts):
    """One line of figures for a measured run."""
    host_cpu = [run["cpu"][name] for name in hosts if run["cpu"].get(name) is not None]
    mib = 1 << 20
    peaks = [run["peak"][name] / mib for name in hosts if run["peak"].get(name)]
    master_cpu, master_peak = run["cpu"].get("master"), run["peak"].get("master")
    row = {"label": run["label"], "wall": run["wall"]}
    if host_cpu:
        row.update(
            host_cpu_sum=sum(host_cpu),
            host_cpu_median=statistics.median(host_cpu),
            host_cpu_max=max(host_cpu),
            master_cpu=master_cpu,
            cpu_bound=(sum(host_cpu) + (master_cpu or 0)) / cores,
            minion_peak_mib_median=statistics.median(peaks) if peaks else None,
            minion_peak_mib_max=max(peaks) if peaks else None,
            master_peak_mib=master_peak / mib if master_peak else None,
            master_mib_per_minion=master_peak / mib / len(hosts) if master_peak else None,
        )
    return row


def check_floor(fleet, run):
    """Problems of a floor run: every minion ran its one state, unchanged."""
    problems = []
    for host in fleet.hosts:
        states = run["data"].get(host.name) if isinstance(run["data"], dict) else None
        if not isinstance(states, dict) or not all(
            isinstance(s, dict) and s.get("result") and not s.get("changes")
            for s in states.values()
        ):
            problems.append(f"{host.name}: floor failed: {str(states)[:300]}")
    return problems


def highstate_floor(fleet, label):
    """A highstate of every minion with the top file naming only the floor."""
    top = os.path.join(fleet.top_dir, "top.sls")
    with open(top, encoding="utf-8") as handle:
        kept = handle.read()
    with open(top, "w", encoding="utf-8") as handle:
        handle.write("base:\n  'fleet*':\n    - floor\n")
    try:
        return fleet.highstate(label)
    finally:
        with open(top, "w", encoding="utf-8") as handle:
            handle.write(kept)


def floor_ratio(rows, floor="highstate floor"):
    """The median over rounds of (no-op highstate CPU per minion / FLOOR's CPU
    per minion), medians over the minions; None without both."""
    by_label = {row["label"]: row for row in rows}
    ratios = []
    for label, row in by_label.items():
        if not label.startswith("no-op highstate r"):
            continue
        floor_row = by_label.get(label.replace("no-op highstate", floor))
        if floor_row and floor_row.get("host_cpu_median") and row.get("host_cpu_median"):
            ratios.append(row["host_cpu_median"] / floor_row["host_cpu_median"])
    return statistics.median(ratios) if ratios else None


def _fmt(row):
    parts = [f"{row['label']:34} wall {row['wall']:6.2f} s"]
    if "host_cpu_sum" in row:
        parts.append(
            f"host CPU sum {row['host_cpu_sum']:6.1f} s (median {row['host_cpu_median']:.2f}, "
            f"max {row['host_cpu_max']:.2f}), master CPU {row['master_cpu']:5.1f} s, "
            f"CPU bound {row['cpu_bound']:5.1f} s, minion peak {row['minion_peak_mib_median']:.0f}"
            f" MiB (max {row['minion_peak_mib_max']:.0f}), master peak "
            f"{row['master_peak_mib']:.0f} MiB ({row['master_mib_per_minion']:.1f}/minion)"
        )
    return "; ".join(parts)


def as_a_service_runs():
    """Measure Salt as a service manager starts it. This machine's shell sets
    PYTHONDONTWRITEBYTECODE=1: inherited by the daemons and salt-call, it
    makes every job compile the formula's modules from source (Salt's
    extension modules get no __pycache__), about 0.03 s a run that no real
    minion pays."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def main(argv=None):
    as_a_service_runs()
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1, help="first + no-op highstates")
    parser.add_argument("--batch", type=int, default=5, help="salt -b size (0: skip)")
    parser.add_argument("--no-broken", dest="broken", action="store_false")
    parser.add_argument("--formula", help="file_roots for the formula (default: a copy of it)")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args(argv)
    report = {"hosts": args.hosts, "cores": os.cpu_count(), "runs": [], "problems": [],
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
    started = time.perf_counter()
    with Fleet(args.hosts, broken=args.broken, formula=args.formula) as fleet:
        names = [host.name for host in fleet.hosts]
        report["setup_s"] = time.perf_counter() - started
        report["variants"] = {name: fleet.spec[name]["variant"] for name in names}
        print(f"{args.hosts} hosts up, minions answering, in {report['setup_s']:.1f} s", flush=True)

        def record(run, checker=None):
            row = summary(run, fleet.cores, names)
            row["host_cpu"] = {name: run["cpu"][name] for name in names}
            row["problems"] = checker(fleet, run) if checker else []
            report["runs"].append(row)
            report["problems"] += [f"{run['label']}: {p}" for p in row["problems"]]
            print(_fmt(row), flush=True)
            for problem in row["problems"]:
                print(f"   PROBLEM {problem}", flush=True)

        with open(os.path.join(fleet.top_dir, "floor.sls"), "w", encoding="utf-8") as handle:
            handle.write(FLOOR_SLS)
        record(fleet.measure("test.ping", "fleet*", "test.ping"))
        record(fleet.measure("saltutil.sync_all", "fleet*", "saltutil.sync_all"))
        for index in range(args.rounds):
            if index:
                fleet.reset()
            record(fleet.highstate(f"first highstate r{index + 1}"), check_first)
            if fleet.broken and index == 0:
                fleet.fix_neighbour()
                record(fleet.highstate("repair highstate (neighbour fixed)"), check_noop_after_fix)
            record(fleet.highstate(f"no-op highstate r{index + 1}"), check_noop)
            record(highstate_floor(fleet, f"highstate floor r{index + 1}"), check_floor)
            record(fleet.measure(f"floor r{index + 1}", "-t", "300", "fleet*", "state.apply",
                                 "floor"), check_floor)  # fmt: skip
            record(fleet.measure(f"test.ping r{index + 1}", "fleet*", "test.ping"))
        report["problems"] += check_probes(fleet)
        if args.batch:
            record(fleet.highstate(f"no-op highstate -b {args.batch}", args.batch), check_noop)
            fleet.reset()
            record(fleet.highstate(f"first highstate -b {args.batch}", args.batch), check_first)
        report["total_s"] = time.perf_counter() - started
    rows = {}
    for row in report["runs"]:
        rows.setdefault(row["label"].split(" r")[0], []).append(row["wall"])
    print("medians:", json.dumps({k: round(statistics.median(v), 2) for k, v in rows.items()}))
    report["floor_ratio"] = floor_ratio(report["runs"])
    report["apply_floor_ratio"] = floor_ratio(report["runs"], "floor")
    if report["floor_ratio"] is not None:
        verdict = "met" if report["floor_ratio"] <= TARGET else "NOT met"
        print(f"no-op highstate / the floor's highstate, CPU per minion: "
              f"{report['floor_ratio']:.2f}x (median of the rounds' ratios; target {TARGET}x: "
              f"{verdict}); / state.apply floor: {report['apply_floor_ratio']:.2f}x")  # fmt: skip
    print("problems:", json.dumps(report["problems"], indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1)
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
