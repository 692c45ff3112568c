#!/usr/bin/env python3
"""
PID 1 of a test host (started by hosts.py inside fresh mount and PID
namespaces): binds the host's private folders over the machine's, starts
nginx and the stand-in Odoo, reaps every child, and on SIGTERM stops them
all. When it exits, the kernel ends whatever is left in its PID namespace.
"""

import argparse
import os
import signal
import subprocess
import sys
import time

from rig.hosts import PRIVATE_DIRS  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def mount_private(root):
    for folder in PRIVATE_DIRS:
        subprocess.run(["mount", "--bind", os.path.join(root, folder), "/" + folder], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"], check=True)
    os.makedirs("/var/log/nginx", exist_ok=True)
    os.makedirs("/var/log/odoo", exist_ok=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--odoo-version", default="17.0")
    parser.add_argument("--docker", action="store_true")
    parser.add_argument("--ping-interval", help="the stand-in's keep-alive ping interval (s)")
    args = parser.parse_args()

    mount_private(args.root)
    odoo = [
        sys.executable, os.path.join(HERE, "standin_odoo.py"),
        "--config", "/etc/odoo/odoo.conf", "--odoo-version", args.odoo_version,
        "--pidfile", "/run/odoo.pid", "--log", "/var/log/odoo/odoo.log",
    ]  # fmt: skip
    if args.docker:
        odoo += ["--compose", "/opt/odoo/docker-compose.yml", "--service", "odoo"]
    if args.ping_interval:
        odoo += ["--ping-interval", args.ping_interval]
    children = [
        subprocess.Popen(odoo),
        subprocess.Popen(
            ["nginx", "-g", "daemon off;"], stderr=open("/var/log/nginx/start.log", "w")
        ),
    ]

    stopping = []

    def stop(*_):
        # waitpid() below resumes after a signal: ending the children wakes it.
        stopping.append(True)
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    # Ready when Odoo wrote its PID file (nginx reports its own failures).
    deadline = time.monotonic() + 10
    while not os.path.exists("/run/odoo.pid") and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(os.path.join(args.root, "run-ready"), "w", encoding="ascii") as handle:
        handle.write("ready")

    while not stopping:
        try:
            os.waitpid(-1, 0)  # reap anything: nginx workers, salt's commands...
        except ChildProcessError:
            time.sleep(0.1)
        except InterruptedError:
            pass
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                time.sleep(0.02)
        except ChildProcessError:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
