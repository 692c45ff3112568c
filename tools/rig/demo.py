#!/usr/bin/env python3
"""
make demo: the formula fixing a broken Odoo host, seen from another machine.

Builds two namespace test hosts on a private bridge: an Odoo host in the
field's broken state (its own site in sites-enabled, one server block for its
address and odoo.example.com, with upgrade headers hard-coded on "/", so the
bus reaches a prefork worker; compose publishing 8069/8072 on every
interface; odoo.conf without proxy_mode) running the Debian nginx and the
stand-in Odoo, and a browser host. It shows the failure from the browser
host, applies the formula once inside the Odoo host (salt-call --local
state.apply odoo_websocket, pillar.example with server_name set to the
host's address, as a new user's), shows what the formula changed and kept of
the host's site and the same checks passing, then that a second run changes
nothing.

The machine's own nginx and network are not touched; everything is removed
at the end (--keep leaves the hosts' files in the work folder).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rig.field import site_with_two_names  # noqa: E402
from rig.hosts import Rig  # noqa: E402
from rig.probe import check_from, whoami_from  # noqa: E402

BROWSER = os.path.join(REPO, "tools", "rig", "browser.py")


def verdict(ok):
    return "ok  " if ok else "FAIL"


def show_checks(outside, host):
    result = check_from(outside, host)
    nginx = result["through_nginx"]
    if nginx["status"] == 101:
        line = "101 Switching Protocols, subscribe answered" if nginx["subscribed"] else "101"
    else:
        detail = nginx.get("body", nginx.get("error", "")).strip().splitlines()
        line = f"HTTP {nginx['status']}" + (f" ({detail[-1][:60]})" if detail else "")
    print(f"  [{verdict(nginx.get('subscribed', False))}] websocket through nginx: {line}")
    for port, answers in result["direct"].items():
        state = "answers (bypasses nginx)" if answers else "refused"
        print(f"  [{verdict(not answers)}] Odoo port {port} from the browser host: {state}")
    who = whoami_from(outside, host)
    seen = f"client {who['remote_addr']}, proxy_mode {'on' if who['proxy_mode'] else 'off'}"
    print(f"  [{verdict(who['remote_addr'] == outside.address)}] Odoo sees: {seen}")
    browser = show_browser(outside, host)
    return nginx.get("subscribed", False) and not any(result["direct"].values()) and browser


def show_browser(outside, host):
    """What Chromium on the browser host shows; a FAIL line when it cannot
    run (the demo's claim includes the browser: no line is no proof)."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        print(
            "  [FAIL] Chromium shows: nothing, chromium is not installed (apt-get install chromium)"
        )
        return False
    proc = outside.python(
        BROWSER, "http://odoo.example.com/web",
        "--resolve", f"odoo.example.com={host.address}", "--timeout", "5", timeout=60,
    )  # fmt: skip
    status = "(no answer)"
    if proc.stdout:
        status = json.loads(proc.stdout).get("status") or "(blank)"
    print(f"  [{verdict(proc.returncode == 0)}] Chromium shows: {status}")
    return proc.returncode == 0


def report(result):
    changed = 0
    for state in sorted(result.values(), key=lambda s: s["__run_num__"]):
        mark = {True: "ok", False: "FAILED", None: "would change"}[state["result"]]
        flag = ", changed" if state["changes"] else ""
        changed += bool(state["changes"])
        print(f"  [{mark}{flag}] {state['__id__']}: {state['comment'].splitlines()[0]}")
    return changed


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the hosts' files")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("The demo builds network namespaces: run it as root.")
        return 2

    workdir = tempfile.mkdtemp(prefix="odoo_websocket-demo.")
    rig = Rig(workdir).create()
    try:
        address = str(rig.subnet.network_address + 10 + len(rig.hosts))  # the next host's
        host = rig.odoo_host(prepare=site_with_two_names(address))
        outside = rig.outside_host()
        print(f"Odoo host {host.address} (nginx + stand-in Odoo 17, docker layout),")
        print(f"browser host {outside.address}, on bridge {rig.bridge} ({rig.subnet}).")

        print("\nBefore, from the browser host:")
        show_checks(outside, host)

        print("\nsalt-call --local state.apply odoo_websocket (inside the Odoo host):")
        pillar = host.sandbox.pillar(nginx={"server_name": [host.address]})
        print(f"  (pillar.example with nginx:server_name [{host.address}])")
        code, result = host.apply_formula(pillar)
        if not isinstance(result, dict):
            print(result)
            return 1
        report(result)
        comment = next(s["comment"] for s in result.values() if s["__id__"].endswith("applied"))
        if "Adopting" in comment:  # what of the host's own site was changed and kept
            print("\n  " + comment[comment.index("Adopting") :].split(" and every other line")[0])

        print("\nAfter, from the browser host:")
        fixed = show_checks(outside, host)

        print("\nSecond run:")
        code2, again = host.apply_formula(pillar)
        changes = report(again) if isinstance(again, dict) else -1
        ok = code == 0 and code2 == 0 and fixed and changes == 0
        print(f"\nSecond run changed {changes} state(s). Demo {'succeeded' if ok else 'FAILED'}.")
        return 0 if ok else 1
    finally:
        rig.destroy()
        if args.keep:
            print(f"Hosts' files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
