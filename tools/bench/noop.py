#!/usr/bin/env python3
"""
The cost of a no-op run on one converged rig host, paired with Salt's own
floor on the same host, interleaved round by round (target: the formula's
no-op within 1.2x of the floor, the median of the rounds' ratios, both ways):

- `salt-call --local test.ping` vs `salt-call --local state.apply odoo_websocket`
  (inside the host);
- `salt HOST test.ping` vs `salt HOST state.apply odoo_websocket` through
  the running minion (from the master on the rig's bridge);
- Salt's own floor for a state run: `state.apply floor`, one
  test.succeed_without_changes state (both ways): what any state.apply costs
  (fresh pillar from the master, authentication, loaders) before a formula.

    tools/bench/noop --rounds 15

Run as root, under the machine-wide lock: flock /tmp/ows-test.lock tools/bench/noop
"""

import argparse
import json
import os
import statistics
import sys
import time

from bench.fleet import FLOOR_SLS, as_a_service_runs
from rig.highstate import Fleet, changed, planned_every_concern, run_states, succeeded
from rig.hosts import SALT_CALL

TARGET = 1.2  # the formula's no-op / the floor (issue 25)


def local_config(host, formula, pillar):
    """A salt-call --local configuration inside HOST serving FORMULA (the
    fleet's copy of the formula, as a master would) with PILLAR."""
    config_dir = os.path.join(host.root, "salt-local")
    pillar_dir = os.path.join(host.root, "pillar-local")
    os.makedirs(config_dir)
    os.makedirs(pillar_dir)
    with open(os.path.join(pillar_dir, "top.sls"), "w", encoding="utf-8") as handle:
        handle.write("base:\n  '*':\n    - odoo_websocket\n")
    with open(os.path.join(pillar_dir, "odoo_websocket.sls"), "w", encoding="utf-8") as handle:
        json.dump(pillar, handle)
    config = {
        "id": host.name,
        "root_dir": "/run/saltlocal",
        "file_client": "local",
        "file_roots": {"base": [formula]},
        "pillar_roots": {"base": [pillar_dir]},
    }
    with open(os.path.join(config_dir, "minion"), "w", encoding="utf-8") as handle:
        json.dump(config, handle)
    return config_dir


def salt_call(host, config_dir, *args):
    """(wall seconds, return) of salt-call --local ARGS inside HOST."""
    start = time.perf_counter()
    proc = host.exec(
        SALT_CALL, "--local", "-c", config_dir, "--out=json", "--log-level=quiet", *args
    )
    wall = time.perf_counter() - start
    try:
        return wall, json.loads(proc.stdout)["local"]
    except (ValueError, KeyError):
        return wall, proc.stdout + proc.stderr


def noop_problem(label, ret, floor=False):
    """None when RET is a no-op state run that succeeded (the formula's:
    having planned every concern)."""
    if not isinstance(ret, dict) or not all(
        isinstance(s, dict) and s.get("result") for s in ret.values()
    ):
        return f"{label}: failed: {str(ret)[:500]}"
    if changed(ret):
        return f"{label}: changed {changed(ret)}"
    if not floor and planned_every_concern(ret):
        return f"{label}: skipped {planned_every_concern(ret)}"
    return None


def main(argv=None):
    as_a_service_runs()
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args(argv)
    keys = ("local ping", "local floor", "local apply",
            "minion ping", "minion floor", "minion apply")  # fmt: skip
    timings = {key: [] for key in keys}
    problems = []
    with Fleet(1, broken=False) as fleet:
        host = fleet.hosts[0]
        name = host.name
        pillar = fleet.spec[name]["pillar"]
        # Converge once through the minion; salt-call --local sees the same
        # pillar and the same copy of the formula.
        first = fleet.highstate("first")
        if not succeeded(run_states(first["data"], name)):
            raise SystemExit(f"first highstate failed: {first['data']}")
        config = local_config(host, fleet.formula, pillar)
        for folder in (fleet.formula, fleet.top_dir):  # the local and the master's file_roots
            with open(os.path.join(folder, "floor.sls"), "w", encoding="utf-8") as handle:
                handle.write(FLOOR_SLS)
        salt_call(host, config, "saltutil.sync_all")
        problem = noop_problem(
            "local warm-up", salt_call(host, config, "state.apply", "odoo_websocket")[1]
        )
        if problem:
            raise SystemExit(problem)
        for index in range(args.rounds):
            wall, ret = salt_call(host, config, "test.ping")
            timings["local ping"].append(wall)
            wall, ret = salt_call(host, config, "state.apply", "floor")
            timings["local floor"].append(wall)
            problems.append(noop_problem(f"local floor r{index + 1}", ret, floor=True))
            wall, ret = salt_call(host, config, "state.apply", "odoo_websocket")
            timings["local apply"].append(wall)
            problems.append(noop_problem(f"local apply r{index + 1}", ret))
            wall, _, data = fleet.salt(name, "test.ping")
            timings["minion ping"].append(wall)
            wall, _, data = fleet.salt("-t", "120", name, "state.apply", "floor")
            timings["minion floor"].append(wall)
            problems.append(
                noop_problem(f"minion floor r{index + 1}", run_states(data, name), floor=True)
            )
            wall, _, data = fleet.salt("-t", "120", name, "state.apply", "odoo_websocket")
            timings["minion apply"].append(wall)
            problems.append(noop_problem(f"minion apply r{index + 1}", run_states(data, name)))
    problems = [p for p in problems if p]
    medians = {key: statistics.median(values) for key, values in timings.items()}
    for key, values in timings.items():
        print(
            f"{key:13} median {medians[key]:5.2f} s   min {min(values):5.2f}   "
            f"max {max(values):5.2f}   ({len(values)} runs)"
        )
    print(f"local apply - local ping:   {medians['local apply'] - medians['local ping']:.2f} s")
    print(f"minion apply - minion ping: {medians['minion apply'] - medians['minion ping']:.2f} s")
    print(f"local apply - local floor:  {medians['local apply'] - medians['local floor']:.2f} s")
    print(f"minion apply - minion floor: {medians['minion apply'] - medians['minion floor']:.2f} s")
    ratios = {}
    for way in ("local", "minion"):
        pairs = zip(timings[f"{way} apply"], timings[f"{way} floor"], strict=True)
        ratios[way] = statistics.median(apply / floor for apply, floor in pairs)
        verdict = "met" if ratios[way] <= TARGET else "NOT met"
        print(f"{way} apply / {way} floor: {ratios[way]:.3f}x (median of the rounds' ratios; "
              f"target {TARGET}x: {verdict})")  # fmt: skip
    print("problems:", json.dumps(problems, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"timings": timings, "medians": medians, "ratios": ratios,
                       "problems": problems}, handle)  # fmt: skip
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
