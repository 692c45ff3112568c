#!/usr/bin/env python3
"""
Container-like test hosts made of Linux namespaces (iproute2, util-linux).

A Rig owns one bridge with an address on the machine's side
(10.231.N.1/24) and the hosts attached to it:

- an Odoo host: its own network namespace (10.231.N.10+), mount namespace
  (private /etc/nginx, /etc/odoo, /opt/odoo, /run, /var/log bound from its
  folder), PID namespace with a reaping init (rig/init.py), running the
  Debian nginx with a stock-style config and the stand-in Odoo;
- an outside host: a network namespace only, a browser on another machine.

A fresh network namespace has no default route, so nothing run inside one
can reach any address but the bridge's. Teardown kills each host's init
(which takes every process of its PID namespace with it), deletes the
namespaces, links and bridge, and removes the mount points it had to create.

CLI (used by the demo):
    hosts.py up STATE_FILE     create a rig with an Odoo host and an outside host
    hosts.py down STATE_FILE   tear it down
"""

import argparse
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(HERE)  # python -m rig.* runs from here
REPO = os.path.dirname(TOOLS)

from rig.sandbox import Sandbox, formula_roots  # noqa: E402

PYTHON = sys.executable
SALT_CALL = os.path.join(os.path.dirname(sys.executable), "salt-call")
# Folders a host gets its own copy of; the machine's stay untouched.
PRIVATE_DIRS = ("etc/nginx", "etc/odoo", "opt/odoo", "var/log", "var/backups")
# Mounted over the machine's only when the host's folder has them.
OPTIONAL_PRIVATE = ("etc/passwd", "etc/group", "var/lib/nginx")


def run(*args, check=True, **kwargs):
    return subprocess.run(args, check=check, capture_output=True, text=True, **kwargs)


def _free_subnet():
    """A 10.231.N.0/24 this machine neither has nor routes specially."""
    used = run("ip", "-o", "-4", "addr").stdout + run("ip", "-4", "route").stdout
    for third in range(1 + os.getpid() % 200, 255):
        if f"10.231.{third}." not in used:
            return ipaddress.ip_network(f"10.231.{third}.0/24")
    raise RuntimeError("no free 10.231.N.0/24 subnet")


class Host:
    """One namespace host. `root` holds its private folders."""

    def __init__(self, rig, name, index, root):
        self.rig, self.name, self.index, self.root = rig, name, index, root
        self.netns = f"{rig.tag}-{name}"
        self.address = str(rig.subnet.network_address + 10 + index)
        self.veth_outer = f"{rig.tag}v{index}"
        self.veth_inner = f"{rig.tag}i{index}"
        self.init = None  # Popen of `ip netns exec ... unshare ...`
        self.init_pid = None  # PID 1 of the host's PID namespace, as the machine sees it
        self.grains = {}  # set in its minion configuration (salt_call)

    def _network(self):
        run("ip", "netns", "add", self.netns)
        run("ip", "link", "add", self.veth_outer, "type", "veth", "peer", "name", self.veth_inner)
        run("ip", "link", "set", self.veth_inner, "netns", self.netns)
        run("ip", "link", "set", self.veth_outer, "master", self.rig.bridge, "up")
        prefix = self.rig.subnet.prefixlen
        run(
            "ip",
            "-n",
            self.netns,
            "addr",
            "add",
            f"{self.address}/{prefix}",
            "dev",
            self.veth_inner,
        )
        run("ip", "-n", self.netns, "link", "set", self.veth_inner, "up")
        run("ip", "-n", self.netns, "link", "set", "lo", "up")

    def start(self, services=True, odoo_version="17.0", docker=True, ping_interval=None):
        self._network()
        if not services:
            return self
        args = [
            "ip", "netns", "exec", self.netns,
            "unshare", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
            PYTHON, "-m", "rig.init", "--root", self.root,
            "--odoo-version", odoo_version,
        ]  # fmt: skip
        if docker:
            args.append("--docker")
        if ping_interval:
            args += ["--ping-interval", str(ping_interval)]
        ready = os.path.join(self.root, "run-ready")
        if os.path.exists(ready):
            os.unlink(ready)
        # The init outlives the caller's pipes (the CLI returns while it runs).
        with open(os.path.join(self.root, "init.log"), "ab") as log:
            self.init = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd=TOOLS,  # python -m rig.init
            )
        # The init waits for every configured port (rig/init.py, READY_TIMEOUT)
        # and exits with the reason when one stays closed.
        deadline = time.monotonic() + 15
        while not os.path.exists(ready):
            if self.init.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"host {self.name} did not start:\n{self.logs()}")
            time.sleep(0.01)
        # `ip netns exec` became `unshare`, whose only child is the host's init.
        children = f"/proc/{self.init.pid}/task/{self.init.pid}/children"
        with open(children, encoding="ascii") as handle:
            self.init_pid = int(handle.read().split()[0])
        return self

    def logs(self, lines=40):
        """The last LINES of the host's init, Odoo and nginx logs, each under
        its path."""
        parts = []
        for path in ("init.log", "var/log/odoo/odoo.log", "var/log/nginx/start.log",
                     "var/log/nginx/error.log"):  # fmt: skip
            try:
                with open(os.path.join(self.root, path), encoding="utf-8", errors="replace") as log:
                    tail = log.read().splitlines()[-lines:]
            except FileNotFoundError:
                tail = ["(none)"]
            parts.append(f"--- {self.root}/{path}\n" + "\n".join(tail))
        return "\n".join(parts)

    def _inside(self):
        """The command prefix that enters this host: all its namespaces when
        it runs an init, its network namespace alone otherwise."""
        if self.init_pid:
            return ["nsenter", "-t", str(self.init_pid), "-m", "-p", "-n", "--"]
        return ["ip", "netns", "exec", self.netns]

    def exec(self, *command, check=False, timeout=120):
        """Run COMMAND inside the host (its network, mounts and PIDs)."""
        return subprocess.run(
            [*self._inside(), *command],
            capture_output=True, text=True, check=check, timeout=timeout,
        )  # fmt: skip

    def popen(self, *command, **kwargs):
        """Start COMMAND inside the host without waiting for it."""
        return subprocess.Popen([*self._inside(), *command], **kwargs)

    def python(self, *args, **kwargs):
        """The .venv's Python inside the host, the rig importable (`import rig`)."""
        return self.exec("env", f"PYTHONPATH={TOOLS}", PYTHON, *args, **kwargs)

    def salt_call(self, *args):
        """salt-call --local inside the host, on this repository's state tree.
        Returns (exit code, parsed return or the raw output)."""
        config_dir = os.path.join(self.root, "salt")
        if not os.path.exists(config_dir):
            os.makedirs(os.path.join(self.root, "pillar"))
            with open(os.path.join(self.root, "pillar/top.sls"), "w", encoding="utf-8") as handle:
                handle.write("base:\n  '*':\n    - odoo_websocket\n")
            os.makedirs(config_dir)
            minion = {
                "id": self.name,
                "root_dir": os.path.join(self.root, "saltroot"),
                "file_client": "local",
                "file_roots": {"base": [formula_roots(os.path.join(self.root, "formula"))]},
                "pillar_roots": {"base": [os.path.join(self.root, "pillar")]},
                "grains": self.grains,
            }
            with open(os.path.join(config_dir, "minion"), "w", encoding="utf-8") as handle:
                json.dump(minion, handle)
            self.salt_call("saltutil.sync_all")
        proc = self.exec(
            SALT_CALL, "--local", "-c", config_dir, "--out=json", "--log-level=quiet", *args
        )
        try:
            return proc.returncode, json.loads(proc.stdout)["local"]
        except (ValueError, KeyError):
            return proc.returncode, proc.stdout + proc.stderr

    def apply_formula(self, pillar, test=False):
        """state.apply odoo_websocket with PILLAR (a pillar file, as on a master)."""
        self.salt_call("test.ping")  # writes the configuration on first use
        with open(
            os.path.join(self.root, "pillar/odoo_websocket.sls"), "w", encoding="utf-8"
        ) as handle:
            json.dump(pillar, handle)
        return self.salt_call("state.apply", "odoo_websocket", *(["test=True"] if test else []))

    def stop(self):
        if self.init and self.init.poll() is None:
            # The init's own PID is in the host's namespace: signal it there.
            if self.init_pid:
                try:
                    os.kill(self.init_pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                self.init.wait(5)
            except subprocess.TimeoutExpired:
                if self.init_pid:
                    os.kill(self.init_pid, signal.SIGKILL)
                self.init.kill()
                self.init.wait(5)
        run("ip", "netns", "del", self.netns, check=False)
        run("ip", "link", "del", self.veth_outer, check=False)


class Rig:
    """A bridge and the namespace hosts on it."""

    def __init__(self, workdir, tag=None):
        self.workdir = workdir
        self.tag = tag or f"ow{os.getpid() % 100000}"
        self.bridge = f"{self.tag}br"
        self.subnet = None
        self.hosts = []
        self.created_dirs = []
        self._guard = None

    @property
    def gateway(self):
        return str(self.subnet.network_address + 1)

    def create(self):
        self.subnet = _free_subnet()
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        # Every live rig holds a shared lock on /etc: a rig removes the mount
        # points it created only when no other rig still uses them.
        self._guard = os.open("/etc", os.O_RDONLY)
        fcntl.flock(self._guard, fcntl.LOCK_SH)
        # Mount points for the hosts' private folders must exist on the machine.
        for folder in PRIVATE_DIRS:
            path = "/" + folder
            if not os.path.isdir(path):
                os.makedirs(path)
                self.created_dirs.append(path)
        return self

    def odoo_host(
        self, name="odoo", odoo_version="17.0", docker=True, prepare=None, ping_interval=None,
        layout="debian",
    ):  # fmt: skip
        """A host running nginx and the stand-in Odoo. PREPARE(sandbox) may
        change its files (the field's broken state) before services start.
        PING_INTERVAL: seconds between the stand-in's keep-alive pings on an
        idle websocket (Odoo's 45 by default). LAYOUT "redhat": RedHat's
        nginx tree and user, and the os_family grain RedHat."""
        root = os.path.join(self.workdir, name)
        box = Sandbox(root, inside=True, layout=layout).create()
        if prepare:
            prepare(box)
        host = Host(self, name, len(self.hosts), root)
        host.sandbox = box
        if layout == "redhat":
            host.grains = {"os_family": "RedHat"}
        self.hosts.append(host)
        return host.start(odoo_version=odoo_version, docker=docker, ping_interval=ping_interval)

    def outside_host(self, name="outside"):
        host = Host(self, name, len(self.hosts), os.path.join(self.workdir, name))
        self.hosts.append(host)
        return host.start(services=False)

    def destroy(self):
        for host in reversed(self.hosts):
            host.stop()
        run("ip", "link", "del", self.bridge, check=False)
        if self._guard is None:
            return
        try:
            fcntl.flock(self._guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._guard)
            self._guard = None
            return  # another rig's hosts still mount on them
        try:
            for path in reversed(self.created_dirs):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
        finally:
            os.close(self._guard)
            self._guard = None

    def state(self):
        return {
            "workdir": self.workdir,
            "tag": self.tag,
            "subnet": str(self.subnet),
            "created_dirs": self.created_dirs,
            "hosts": [
                {"name": h.name, "index": h.index, "root": h.root, "init_pid": h.init_pid}
                for h in self.hosts
            ],
        }

    @classmethod
    def from_state(cls, state):
        rig = cls(state["workdir"], state["tag"])
        rig.subnet = ipaddress.ip_network(state["subnet"])
        rig.created_dirs = state["created_dirs"]
        rig._guard = os.open("/etc", os.O_RDONLY)
        fcntl.flock(rig._guard, fcntl.LOCK_SH)
        for item in state["hosts"]:
            host = Host(rig, item["name"], item["index"], item["root"])
            host.init_pid = item["init_pid"]
            rig.hosts.append(host)
        return rig


def main(argv=None):
    parser = argparse.ArgumentParser(description="Namespace test hosts for odoo_websocket.")
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("state_file")
    args = parser.parse_args(argv)
    if args.action == "up":
        workdir = os.path.splitext(os.path.abspath(args.state_file))[0] + ".d"
        os.makedirs(workdir, exist_ok=True)
        rig = Rig(workdir).create()
        try:
            rig.odoo_host()
            rig.outside_host()
        except BaseException:
            rig.destroy()
            raise
        with open(args.state_file, "w", encoding="utf-8") as handle:
            json.dump(rig.state(), handle)
        print(json.dumps(rig.state(), indent=2))
        return 0
    with open(args.state_file, encoding="utf-8") as handle:
        state = json.load(handle)
    rig = Rig.from_state(state)
    for host in rig.hosts:
        if host.init_pid:
            try:
                os.kill(host.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    rig.destroy()
    shutil.rmtree(state["workdir"], ignore_errors=True)
    os.unlink(args.state_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
