#!/usr/bin/env python3
"""
A self-healing fleet on the rig: a salt-master on the rig's bridge running
the formula's reactor, and a salt-minion inside each Odoo host running the
odoo_websocket beacon. Used by test/integration/test_self_healing.py and
bench/heal.py.

The master is a plain salt-master daemon (no pytest-salt-factories), so that
the benchmark can run it too; its event bus is read in a thread.

CLI, inside the outside host (what a browser sees, as times):
    python -m rig.fleet watch --address 10.231.7.10
prints one JSON line each time the websocket through nginx turns broken or
working, with time.monotonic() (one clock for every namespace).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import yaml

from rig.sandbox import TOOLS, formula_roots

BIN = os.path.dirname(sys.executable)
SERVER_NAME = "odoo.example.com"
SITE = "/etc/nginx/sites-available/odoo"  # rig.field.SITE, adopted by the formula

# The pillar every fleet host gets besides the odoo_websocket settings (the
# docs/operations.md's "Self-healing" section quotes it).
BEACON_PILLAR = """\
beacons:
  odoo_websocket:
    - interval: 2          # seconds between checks
    - attempts: 3          # heal requests before giving up
    - timeout: 3           # seconds per connection of the check
    - backoff: 60          # seconds before the 2nd request, doubled each time (default)
    - healthy_after: 3     # healthy checks in a row that end an episode (default)
"""

# The master's reactor (docs/operations.md quotes it).
REACTOR_CONFIG = """\
reactor:
  - 'salt/beacon/*/odoo_websocket/broken':
      - salt://odoo_websocket/reactor/heal.sls
  - 'salt/beacon/*/odoo_websocket/still_broken':
      - salt://odoo_websocket/reactor/heal.sls
  - 'salt/beacon/*/odoo_websocket/giving_up':
      - salt://odoo_websocket/reactor/give_up.sls
"""


def _free_port(address):
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


class Master:
    """A salt-master daemon on ADDRESS (the rig's bridge), auto-accepting,
    serving this repository, with the pillar given per minion id glob."""

    def __init__(self, workdir, address, pillars):
        self.workdir, self.address, self.pillars = workdir, address, pillars
        self.proc, self.events, self._stop = None, [], threading.Event()
        self._thread, self._lock = None, threading.Lock()
        # Salt's Unix sockets need a short path: root_dir and sock_dir here.
        self.root_dir = tempfile.mkdtemp(prefix="owsm-", dir="/tmp")
        self.sock_dir = os.path.join(self.root_dir, "sock")
        self.config_dir = os.path.join(workdir, "master-config")
        self.opts = None

    def _write_config(self):
        pillar_dir, top_dir = (os.path.join(self.workdir, d) for d in ("pillar", "top"))
        for folder in (self.config_dir, pillar_dir, top_dir):
            os.makedirs(folder, exist_ok=True)
        top = "base:\n"
        for index, (target, data) in enumerate(self.pillars.items()):
            top += f"  '{target}':\n    - host{index}\n"
            with open(os.path.join(pillar_dir, f"host{index}.sls"), "w", encoding="utf-8") as out:
                out.write(data if isinstance(data, str) else yaml.safe_dump(data))
        with open(os.path.join(pillar_dir, "top.sls"), "w", encoding="utf-8") as out:
            out.write(top)
        with open(os.path.join(top_dir, "top.sls"), "w", encoding="utf-8") as out:
            out.write("base:\n  'fleet-*':\n    - odoo_websocket\n")
        config = {
            "id": "fleet-master",
            "interface": self.address,
            "publish_port": _free_port(self.address),
            "ret_port": _free_port(self.address),
            "root_dir": self.root_dir,
            "sock_dir": self.sock_dir,
            "user": "root",
            "auto_accept": True,
            "file_roots": {"base": [formula_roots(os.path.join(self.workdir, "formula")), top_dir]},
            "pillar_roots": {"base": [pillar_dir]},
            "log_level": "info",  # to master.out
            "worker_threads": 6,
        }
        config.update(yaml.safe_load(REACTOR_CONFIG))
        with open(os.path.join(self.config_dir, "master"), "w", encoding="utf-8") as out:
            yaml.safe_dump(config, out)
        return config

    def start(self, timeout=60):
        import salt.config
        import salt.utils.event

        self.config = self._write_config()
        self.opts = salt.config.master_config(os.path.join(self.config_dir, "master"))
        log = open(os.path.join(self.workdir, "master.out"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "salt-master"), "-c", self.config_dir],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not os.path.exists(os.path.join(self.sock_dir, "master_event_pub.ipc")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"salt-master did not start: {self.log()}")
            time.sleep(0.1)
        bus = salt.utils.event.get_master_event(self.opts, self.sock_dir, listen=True)
        self._thread = threading.Thread(target=self._listen, args=(bus,), daemon=True)
        self._thread.start()
        return self

    def _listen(self, bus):
        while not self._stop.is_set():
            event = bus.get_event(wait=0.2, full=True)
            if event:
                with self._lock:
                    self.events.append((time.monotonic(), event["tag"], event["data"]))
        bus.destroy()

    def log(self, lines=60):
        try:
            with open(os.path.join(self.workdir, "master.out"), encoding="utf-8") as handle:
                return "\n".join(handle.read().splitlines()[-lines:])
        except FileNotFoundError:
            return "(no master log)"

    def seen(self, match, after=0.0):
        """(time, tag, data) of the events whose tag MATCH(tag, data) accepts."""
        with self._lock:
            return [e for e in self.events if e[0] >= after and match(e[1], e[2])]

    def wait_for(self, match, after=0.0, timeout=60, what="event"):
        deadline = time.monotonic() + timeout
        while True:
            found = self.seen(match, after)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                tags = [tag for _, tag, _ in self.seen(lambda t, d: True, after)][-40:]
                raise TimeoutError(f"no {what} within {timeout} s; events: {tags}")
            time.sleep(0.05)

    def salt(self, *args, timeout=180):
        """The salt CLI against this master, JSON out."""
        proc = subprocess.run(
            [os.path.join(BIN, "salt"), "-c", self.config_dir, "--out=json", "--static",
             f"--timeout={timeout}", *args],
            capture_output=True, text=True, timeout=timeout + 30, check=False,
        )  # fmt: skip
        try:
            return json.loads(proc.stdout)
        except ValueError:
            return {"_error": proc.stdout + proc.stderr}

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.root_dir, ignore_errors=True)


def start_minion(host, master):
    """A salt-minion daemon inside HOST (id: the host's name) for MASTER."""
    config_dir = os.path.join(host.root, "salt-minion")
    os.makedirs(config_dir, exist_ok=True)
    config = {
        "id": host.name,
        "master": master.address,
        "master_port": master.config["ret_port"],
        "publish_port": master.config["publish_port"],
        # Unix sockets need a short path: the host's private /run.
        "root_dir": "/run/saltroot",
        "acceptance_wait_time": 1,
        "log_level": "info",  # to salt-minion.out
    }
    with open(os.path.join(config_dir, "minion"), "w", encoding="utf-8") as handle:
        json.dump(config, handle)
    output = open(os.path.join(host.root, "salt-minion.out"), "wb")  # noqa: SIM115
    return host.popen(os.path.join(BIN, "salt-minion"), "-c", config_dir,
                      stdout=output, stderr=output)  # fmt: skip


def stop_minion(host, proc):
    """SIGKILL the minion by the PID it wrote (nsenter passes no signal on);
    its children go with the host's init."""
    found = host.exec("cat", "/run/saltroot/var/run/salt-minion.pid")
    pid = found.stdout.strip()
    if pid.isdigit():
        host.exec("kill", "-KILL", pid)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def nginx_workers(host):
    """PIDs of nginx's workers inside HOST: a reload replaces them all."""
    return set(host.exec("pgrep", "-f", "nginx: worker").stdout.split())


def hand_edit_break(host):
    """What a colleague does: drops the Upgrade header from the site and
    reloads nginx. Returns when nginx's workers were replaced."""
    path = host.root + SITE
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    edited = "".join(
        line for line in text.splitlines(True) if "proxy_set_header Upgrade" not in line
    )
    assert edited != text, "no Upgrade header in the site"
    before = nginx_workers(host)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(edited)
    reloaded = host.exec("nginx", "-s", "reload")
    assert reloaded.returncode == 0, reloaded.stderr
    deadline = time.monotonic() + 10
    while nginx_workers(host) & before or not nginx_workers(host):
        assert time.monotonic() < deadline, "nginx never reloaded"
        time.sleep(0.02)
    return time.monotonic()


BEACON = "salt/beacon/{}/odoo_websocket/{}"


def beacon_event(minion, kind):
    """A matcher for Master.seen/wait_for: MINION's beacon event KIND."""
    return lambda tag, data: tag == BEACON.format(minion, kind)


def heal_job(minion):
    """A matcher: the reactor's state.apply published to MINION."""
    return lambda tag, data: (
        tag.startswith("salt/job/")
        and tag.endswith("/new")
        and data.get("fun") == "state.apply"
        and minion in data.get("minions", [])
    )


def up(rig, workdir, names, prepare):
    """Odoo hosts NAMES (each PREPARE'd), an outside host, a master running
    the reactor and a minion per host running the beacon, synced, every
    host healthy (its first broken event healed). Returns (master, hosts,
    outside, minions); the caller stops the minions and the master."""
    hosts = [rig.odoo_host(name=name, prepare=prepare) for name in names]
    outside = rig.outside_host()
    pillar = hosts[0].sandbox.pillar()  # the hosts' own paths: pillar.example's
    pillar.update(yaml.safe_load(BEACON_PILLAR))
    master, minions = Master(workdir, rig.gateway, {"fleet-*": pillar}), []
    try:
        master.start()
        minions.extend((host, start_minion(host, master)) for host in hosts)
        for _ in range(120):
            ping = master.salt("fleet-*", "test.ping", "-t", "5")
            if sorted(k for k, v in ping.items() if v is True) == sorted(names):
                break
        else:
            raise RuntimeError(f"minions never answered: {ping}\n{master.log()}")
        synced = master.salt("fleet-*", "saltutil.sync_all")
        assert all(synced.get(name) for name in names), synced
        for name in names:
            master.wait_for(beacon_event(name, "healthy"), timeout=120, what=f"{name} healthy")
    except BaseException:
        down(master, minions)
        raise
    return master, hosts, outside, minions


def down(master, minions):
    for host, proc in minions:
        stop_minion(host, proc)
    master.stop()


def heal_round(master, outside, host):
    """Break HOST by hand, wait until the outside host sees it work again.
    Returns seconds after the break: broken event, heal job, healthy event,
    working from outside; and the events' data."""
    watch = start_watch(outside, host)
    try:
        seen = [json.loads(watch.stdout.readline())]  # the watcher is up: working
        at_break = hand_edit_break(host)
        broken_at, _, broken = master.wait_for(beacon_event(host.name, "broken"), after=at_break)
        job_at, _, job = master.wait_for(heal_job(host.name), after=at_break, timeout=30)
        healed_at, _, healed = master.wait_for(
            beacon_event(host.name, "healthy"), after=at_break, timeout=90
        )
        for line in watch.stdout:
            seen.append(json.loads(line))
            if seen[-1]["working"]:
                break
    finally:
        watch.kill()
        watch.wait(10)
    return {
        "at_break": at_break,
        "broken_event_s": broken_at - at_break,
        "heal_job_s": job_at - at_break,
        "healthy_event_s": healed_at - at_break,
        "working_outside_s": seen[-1]["at"] - at_break,
        "seen": seen,
        "broken": broken,
        "job": job,
        "healthy": healed,
    }


def start_watch(outside, target):
    """The outside host's view, as times (see the CLI)."""
    return outside.popen(
        sys.executable, "-m", "rig.fleet", "watch", "--address", target.address,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=TOOLS,
    )  # fmt: skip


def watch(address, every=0.1, timeout=120):
    from rig.probe import websocket_session

    last, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            working = websocket_session(address, 80, SERVER_NAME, timeout=2)["status"] == 101
        except OSError:
            working = False
        if working != last:
            print(json.dumps({"working": working, "at": time.monotonic()}), flush=True)
            last = working
        time.sleep(every)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Self-healing fleet helpers.")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("watch")
    cmd.add_argument("--address", required=True)
    cmd.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    watch(args.address, timeout=args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
