#!/usr/bin/env python3
"""
PID 1 of a test host (started by hosts.py inside fresh mount and PID
namespaces): binds the host's private folders over the machine's, starts
nginx and the stand-in Odoo, reaps every child, and on SIGTERM stops them
all. When it exits, the kernel ends whatever is left in its PID namespace.
"""

import argparse
import glob
import os
import signal
import socket
import subprocess
import sys
import time

from rig.hosts import OPTIONAL_PRIVATE, PRIVATE_DIRS  # noqa: E402
from rig.standin_odoo import listen_plan, read_config  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def mount_private(root):
    for folder in PRIVATE_DIRS:
        subprocess.run(["mount", "--bind", os.path.join(root, folder), "/" + folder], check=True)
    # A RedHat host's (rig/sandbox.py, create_redhat), a salt-ssh target's (rig/ssh.py).
    site = glob.glob("usr/local/lib/python3*/dist-packages", root_dir=root)
    for path in (*OPTIONAL_PRIVATE, *site):
        if os.path.exists(os.path.join(root, path)):
            subprocess.run(["mount", "--bind", os.path.join(root, path), "/" + path], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"], check=True)
    os.makedirs("/var/log/nginx", exist_ok=True)
    os.makedirs("/var/log/odoo", exist_ok=True)


READY_TIMEOUT = 10  # seconds; rig/hosts.py waits a little longer for this verdict
ODOO_CONF = "/etc/odoo/odoo.conf"
COMPOSE_FILE = "/opt/odoo/docker-compose.yml"


def odoo_ports(version, docker, conf=ODOO_CONF, compose=COMPOSE_FILE):
    """(address, port) pairs the stand-in Odoo is configured to listen on:
    odoo.conf's ports, published as the compose file says when DOCKER."""
    plan = listen_plan(read_config(conf, version), compose if docker else None, "odoo")
    return [(address, port) for address, port, _ in plan]


def nginx_ports(conf="/etc/nginx/nginx.conf"):
    """(address, port) pairs nginx's configuration tells it to listen on."""
    import crossplane  # in the rig's Python environment, as the formula needs it

    payload = crossplane.parse(conf, check_ctx=False, check_args=False, comments=False)
    if payload["status"] != "ok":
        errors = "; ".join(f"{e['file']}:{e['line']}: {e['error']}" for e in payload["errors"])
        raise ValueError(f"cannot read nginx's configuration: {errors}")
    found = set()

    def walk(block):
        for directive in block:
            if directive["directive"] == "server" and "block" in directive:
                listens = [d["args"][0] for d in directive["block"] if d["directive"] == "listen"]
                found.update(_listen_address(arg) for arg in listens or ["80"])
            elif "block" in directive:
                walk(directive["block"])

    for config in payload["config"]:
        walk(config["parsed"])
    return sorted(pair for pair in found if pair)


def _listen_address(arg):
    """(address, port) of an nginx `listen` argument; None for a unix socket."""
    if arg.startswith("unix:"):
        return None
    if arg.startswith("["):
        host, _, port = arg[1:].partition("]")
        port = port.lstrip(":") or "80"
    elif ":" in arg:
        host, port = arg.rsplit(":", 1)
    elif arg.isdigit():
        host, port = "*", arg
    else:
        host, port = arg, "80"
    return host, int(port)


def answers(address, port):
    """Whether something accepts connections on ADDRESS:PORT (a wildcard
    address is tried on loopback)."""
    address = {"*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
        address, address
    )
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_ready(children, args, deadline):
    """None once every child runs and every configured port answers before
    DEADLINE; otherwise what is wrong."""
    try:
        expected = {"Odoo": odoo_ports(args.odoo_version, args.docker), "nginx": nginx_ports()}
    except Exception as error:  # a configuration the host cannot run
        return f"{type(error).__name__}: {error}"
    waiting = []
    while time.monotonic() < deadline:
        for name, child in children.items():
            if child.poll() is not None:
                return f"{name} exited with code {child.returncode}"
        waiting = [
            f"{name} on {address}:{port}"
            for name, pairs in expected.items()
            for address, port in pairs
            if not answers(address, port)
        ]
        if not waiting and os.path.exists("/run/odoo.pid"):
            return None
        time.sleep(0.05)
    return "no answer from " + (", ".join(waiting) or "Odoo (no PID file)")


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
        "--config", ODOO_CONF, "--odoo-version", args.odoo_version,
        "--pidfile", "/run/odoo.pid", "--log", "/var/log/odoo/odoo.log",
    ]  # fmt: skip
    if args.docker:
        odoo += ["--compose", COMPOSE_FILE, "--service", "odoo"]
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

    # Ready when both services run and answer on every port they are
    # configured for; otherwise the host fails to start, and says why.
    problem = wait_ready(
        dict(zip(("Odoo", "nginx"), children, strict=True)), args, time.monotonic() + READY_TIMEOUT
    )
    if problem:
        print(f"host not ready: {problem}", file=sys.stderr, flush=True)
        stop()
        for child in children:
            child.wait()
        return 1
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
