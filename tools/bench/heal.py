#!/usr/bin/env python3
"""
Time from a hand edit that breaks a host's websocket to the browser host
seeing it work again, healed by the odoo_websocket beacon and the formula's
reactor (rig/fleet.py: a salt-master on the rig bridge, a salt-minion per
namespace host, the beacon every 2 s). Run as root, under the test lock:

    flock /tmp/ows-test.lock tools/bench/heal [ROUNDS] [HOSTS]

Prints each round (broken event, heal job, healthy event, working from the
outside host, in seconds after nginx took the edit) and the medians.
"""

import statistics
import sys
import tempfile

from rig import fleet
from rig.field import broken_docker_host
from rig.hosts import Rig

KEYS = ("broken_event_s", "heal_job_s", "healthy_event_s", "working_outside_s")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    names = [f"fleet-{chr(ord('a') + index)}" for index in range(count)]
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        rig = Rig(f"{workdir}/rig").create()
        try:
            master, hosts, outside, minions = fleet.up(rig, workdir, names, broken_docker_host)
            try:
                for index in range(rounds):
                    heal = fleet.heal_round(master, outside, hosts[0])
                    results.append(heal)
                    print(f"round {index + 1}: " + ", ".join(f"{k} {heal[k]:.2f}" for k in KEYS))
            finally:
                fleet.down(master, minions)
        finally:
            rig.destroy()
    print(f"{rounds} rounds, {count} hosts, beacon interval 2 s; medians:")
    for key in KEYS:
        values = [r[key] for r in results]
        low, high, median = min(values), max(values), statistics.median(values)
        print(f"  {key:18} {median:5.2f} s  (min {low:.2f}, max {high:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
