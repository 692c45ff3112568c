#!/usr/bin/env python3
"""
Self-heal policy figures: the odoo_websocket beacon's own verdict machine
(_beacons/odoo_websocket.py, loaded as a minion loads it) driven on a virtual
clock, a check every INTERVAL seconds, with the verdicts a host gives:

- flapping: 4 broken checks, 1 healthy, over and over, for two hours: heal
  requests and give-ups per hour;
- broken, healed by the first request (the heal takes HEAL seconds, what
  tools/bench/heal measures on the rig): time to the first healthy check and
  to the "healthy" event;
- broken, the first heal fails and the second works: the same times.

Each with the formula's policy (backoff, healthy_after: the defaults) and
with the one it replaced (a request every check, one healthy check ends an
episode). No rig, no root: a few seconds.

    tools/bench/selfheal [--interval 60] [--heal 20]
"""

import argparse
import importlib.util
import os
import sys
import tempfile

import salt.utils.minion

from rig.sandbox import REPO

OK = {"ok": True, "latency_ms": 1, "checks": [{"name": "websocket handshake", "ok": True,
                                               "detail": "101"}]}  # fmt: skip
BROKEN = {"ok": False, "latency_ms": 1, "checks": [{"name": "websocket handshake", "ok": False,
                                                    "detail": "400"}]}  # fmt: skip
POLICIES = {
    "formula (backoff, hysteresis)": [{"attempts": 3}],
    "replaced (every check, no hysteresis)": [
        {"attempts": 3},
        {"backoff": 0},
        {"healthy_after": 1},
    ],  # fmt: skip
}


def load_beacon(cachedir):
    spec = importlib.util.spec_from_file_location(
        "odoo_websocket_beacon", os.path.join(REPO, "_beacons", "odoo_websocket.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.__opts__ = {"cachedir": cachedir, "id": "bench", "pillar": {}}
    module.log.disabled = True  # its give-ups are counted here, not logged
    module.__context__ = {"odoo_websocket_beacon": {"key": None, "verify": {}}}
    return module


def simulate(config, verdict_at, interval, duration, heal_s=None, heals_needed=1):
    """Run the beacon every INTERVAL s for DURATION s; VERDICT_AT(t, healed)
    gives the host's verdict. A heal request fixes the host HEAL_S later
    once HEALS_NEEDED requests were made (None: heals never fix it)."""
    with tempfile.TemporaryDirectory() as cachedir:
        beacon = load_beacon(cachedir)
        clock, requests, fixed_at, events = [0.0], [], None, []
        beacon.time.time = lambda: clock[0]
        # The settings, as check_target gives them: read already (no thread).
        beacon._settings = lambda options: {"enabled": True}
        salt.utils.minion.running = lambda opts: []

        def verify(target, timeout):
            healed = fixed_at is not None and clock[0] >= fixed_at
            verdict = dict(verdict_at(clock[0], healed))
            return dict(verdict, summary="ok" if verdict["ok"] else "broken")

        beacon.__salt__ = {"odoo_websocket.verify": verify}
        t = 0.0
        while t <= duration:
            clock[0] = t
            for event in beacon.beacon(config):
                events.append((t, event["tag"]))
                if event["tag"] in ("broken", "still_broken"):
                    requests.append(t)
                    if heal_s is not None and len(requests) == heals_needed:
                        fixed_at = t + heal_s
            t += interval
    return events, requests, fixed_at


def first(events, tag):
    return next((t for t, seen in events if seen == tag), None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=60)
    parser.add_argument("--heal", type=float, default=20, help="seconds a heal takes")
    args = parser.parse_args(argv)
    interval, hours = args.interval, 2

    def flapping(t, healed):
        return OK if int(t // interval) % 5 == 4 else BROKEN

    def broken_until_healed(t, healed):
        return OK if healed else BROKEN

    print(f"beacon every {interval:g} s, a heal takes {args.heal:g} s")
    for name, config in POLICIES.items():
        events, requests, _ = simulate(config, flapping, interval, hours * 3600)
        gave_up = sum(1 for _, tag in events if tag == "giving_up")
        print(f"\n{name}:")
        print(f"  flapping 4 broken / 1 healthy, {hours} h: {len(requests) / hours:g} heal "
              f"requests per hour, {gave_up / hours:g} give-ups per hour")  # fmt: skip
        for label, needed in (("healed by the first request", 1), ("the second heal works", 2)):
            events, requests, fixed = simulate(
                config, broken_until_healed, interval, 4 * 3600, args.heal, needed
            )
            healthy_check = next(
                (t for t in (n * interval for n in range(10**6)) if fixed is not None
                 and t >= fixed), None,
            )  # fmt: skip
            event = first(events, "healthy")
            shown = "never" if healthy_check is None else f"{healthy_check:g} s"
            print(f"  broken, {label}: healthy at the check of {shown}, 'healthy' event at "
                  f"{'never' if event is None else f'{event:g} s'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
