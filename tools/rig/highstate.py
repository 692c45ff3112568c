"""
A fleet on the rig, as a salt-master operator runs the formula: one
salt-master on the rig's bridge and N salt-minions, each inside its own
namespace host with its own nginx and stand-in Odoo (rig/hosts.py), a pillar
top file giving each host its own server name and, by turns, Odoo 15, 16 or
17, prefork or threaded, docker or native, Odoo's default or other ports.
Each minion (with everything it spawns) and the master run in cgroups of
their own, so a run's CPU seconds and peak memory are the kernel's counts.
With broken=True the last host has a neighbour site nginx's reload refuses.

The harness of test/integration/test_fleet.py and of tools/bench/fleet.py
(the figures): the checks of each highstate's outcome live here, with it.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from odoo_websocket_concerns import CONCERNS
from rig.field import HARDCODED, ODOO_SAMPLE, site
from rig.fleet import stop_minion
from rig.hosts import Rig
from rig.probe import _run_in
from rig.sandbox import FORMULA_DIRS, REPO, _entry

BIN = os.path.dirname(sys.executable)


CGROUP_ROOT = "/sys/fs/cgroup"


# The folders of a host the formula manages (snapshots, byte-for-byte checks).
MANAGED_DIRS = ("etc/nginx", "etc/odoo", "opt/odoo")


NEIGHBOUR = "/etc/nginx/sites-enabled/shop"


NEIGHBOUR_NAME = "shop.internal"


# The broken host's neighbour site: served from the start (nginx loads it),
# then a colleague's edit, never reloaded, adds a port Odoo already holds:
# `nginx -t` accepts it (it does not bind), nginx's master cannot load it, so
# every reload fails and nginx keeps serving what it loaded.
NEIGHBOUR_SITE = """server {
    listen 80;
    server_name shop.internal;
    return 200 "shop\\n";
}
"""


NEIGHBOUR_BROKEN = NEIGHBOUR_SITE.replace("listen 80;", "listen 80;\n    listen 8069;")


TX_ID = "odoo_websocket-host-transaction-applied"


def _odoo_conf_options(box, **options):
    with open(box.odoo_conf, "a", encoding="utf-8") as handle:
        handle.write("".join(f"{key} = {value}\n" for key, value in options.items()))


def _prepare(text, server_name, neighbour=False, **odoo_options):
    """The host's field state: its own site (TEXT, for SERVER_NAME),
    odoo.conf lines, and with NEIGHBOUR the neighbour site."""

    def prepare(box):
        site(box, text.replace("odoo.example.com", server_name))
        _odoo_conf_options(box, **odoo_options)
        if neighbour:
            box.write(box.root + NEIGHBOUR, NEIGHBOUR_SITE)

    return prepare


NATIVE = {"deployment": "native", "compose": {"enabled": False}}


# (label, Odoo version, docker, field site, odoo.conf lines, pillar overrides)
VARIANTS = (
    ("docker 17 prefork", "17.0", True, HARDCODED, {"workers": 2}, {}),
    (
        "native 15 prefork, ports 8169/8172",
        "15.0",
        False,
        HARDCODED,
        # The host's Odoo already serves HTTP on 8169 (the formula writes the
        # evented port, never http_port); the pillar says so.
        {"workers": 2, "http_port": 8169},
        {**NATIVE, "odoo": {"version": "15.0", "http_port": 8169, "gevent_port": 8172}},
    ),
    ("docker 17 threaded", "17.0", True, ODOO_SAMPLE, {}, {"odoo": {"workers": 0}}),
    (
        "native 16 threaded",
        "16.0",
        False,
        HARDCODED,
        {},
        {**NATIVE, "odoo": {"version": "16.0", "workers": 0}},
    ),  # fmt: skip
)


class Cgroup:
    """One cgroup in the v1 cpuacct and memory hierarchies (None values when
    the machine has neither)."""

    def __init__(self, name):
        self.paths = [os.path.join(CGROUP_ROOT, c, name) for c in ("cpuacct", "memory")]
        self.ok = all(os.path.isdir(os.path.dirname(p)) for p in self.paths)
        if self.ok:
            for path in self.paths:
                os.makedirs(path, exist_ok=True)

    def join(self):
        """Move the calling process in (a Popen preexec_fn: all it starts follows)."""
        if self.ok:
            for path in self.paths:
                with open(os.path.join(path, "cgroup.procs"), "w", encoding="ascii") as handle:
                    handle.write(str(os.getpid()))

    def _read(self, index, name):
        with open(os.path.join(self.paths[index], name), encoding="ascii") as handle:
            return int(handle.read().split()[0])

    def cpu(self):
        """CPU seconds of every process that ever ran in it."""
        return self._read(0, "cpuacct.usage") / 1e9 if self.ok else None

    def reset_peak(self):
        if self.ok:
            with open(os.path.join(self.paths[1], "memory.max_usage_in_bytes"), "w") as handle:
                handle.write("0")

    def peak(self):
        """Peak charged memory (bytes) since the last reset_peak."""
        return self._read(1, "memory.max_usage_in_bytes") if self.ok else None

    def pids(self):
        if not self.ok:
            return []
        with open(os.path.join(self.paths[0], "cgroup.procs"), encoding="ascii") as handle:
            return [int(line) for line in handle.read().split()]

    def remove(self):
        """Kill what is left in it and remove it."""
        if not self.ok:
            return
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        for path in self.paths:
            try:
                os.rmdir(path)
            except OSError:
                pass


def formula_tree(dest):
    """A copy of the formula's folders of the working tree under DEST."""
    os.makedirs(dest, exist_ok=True)
    for folder in FORMULA_DIRS:
        shutil.copytree(os.path.join(REPO, folder), os.path.join(dest, folder))
    return dest


def _free_port(address):
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def snapshot(root):
    """Bytes, mode, owner and link target of everything the formula manages
    on a host (by path under ROOT)."""
    result = {}
    for folder in MANAGED_DIRS:
        for current, folders, files in os.walk(os.path.join(root, folder)):
            for name in folders + files:
                path = os.path.join(current, name)
                result[path] = _entry(path)
    return result


def restore_snapshot(root, saved):
    """Put ROOT's managed files back as SAVED holds them."""
    now = snapshot(root)
    for path in sorted(set(now) - set(saved), reverse=True):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
    for path, entry in sorted(saved.items()):
        if now.get(path) == entry:
            continue
        if os.path.lexists(path) and not (os.path.isdir(path) and entry[0] == "folder"):
            os.unlink(path)
        if entry[0] == "link":
            os.symlink(entry[1], path)
        elif entry[0] == "folder":
            os.makedirs(path, exist_ok=True)
            os.chmod(path, entry[1] & 0o7777)
            os.chown(path, entry[2], entry[3])
        else:
            with open(path, "wb") as handle:
                handle.write(entry[0])
            os.chmod(path, entry[1] & 0o7777)
            os.chown(path, entry[2], entry[3])


class Fleet:
    """The rig, the master and the minions; `with Fleet(...) as fleet:`."""

    def __init__(self, count=20, broken=True, formula=None, workdir=None, cores=None):
        """FORMULA: the master's file_roots for the formula (default: a copy
        of its folders, formula_tree)."""
        self.count, self.broken, self.formula = count, broken, formula
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="owsfleet")
        self.workdir = workdir or self._tmp.name
        self.cores = cores or os.cpu_count()
        self.rig = None
        self.hosts, self.spec, self.minions, self.cgroups = [], {}, {}, {}
        self.master = None
        self.master_dir = os.path.join(self.workdir, "master")
        self.outside = None
        self.saved = {}
        self.neighbour = False  # the broken host's neighbour site in place

    # -- set-up -------------------------------------------------------------

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        if not self.formula:
            self.formula = formula_tree(os.path.join(self.workdir, "formula"))
        self.rig = Rig(self.workdir).create()
        tag = self.rig.tag
        for index in range(self.count):
            name = f"fleet{index + 1:02d}"
            label, version, docker, text, options, overrides = VARIANTS[index % len(VARIANTS)]
            server_name = f"{name}.example.com"
            neighbour = self.broken and index == self.count - 1
            host = self.rig.odoo_host(
                name=name,
                odoo_version=version,
                docker=docker,
                prepare=_prepare(text, server_name, neighbour, **options),
            )
            pillar = host.sandbox.pillar(**overrides)
            pillar["odoo_websocket"]["nginx"]["server_name"] = [server_name]
            self.spec[name] = {"variant": label, "server_name": server_name, "pillar": pillar,
                               "version": version, "broken": False}  # fmt: skip
            self.hosts.append(host)
        if self.broken:
            host = self.hosts[-1]
            host.sandbox.write(host.root + NEIGHBOUR, NEIGHBOUR_BROKEN)
            self.spec[host.name]["broken"] = self.neighbour = True
        self.outside = self.rig.outside_host()
        for host in self.hosts:
            self.saved[host.name] = snapshot(host.root)
        self._write_trees()
        self.cgroups["master"] = Cgroup(f"{tag}-master")
        self._start_master()
        for host in self.hosts:
            self.cgroups[host.name] = Cgroup(f"{tag}-{host.name}")
            self._start_minion(host)
        self._wait_for_minions()
        return self

    def _write_trees(self):
        pillar_dir = os.path.join(self.workdir, "pillar")
        top_dir = os.path.join(self.workdir, "top")
        os.makedirs(pillar_dir)
        os.makedirs(top_dir)
        top = "base:\n"
        for name, spec in self.spec.items():
            top += f"  '{name}':\n    - {name}\n"
            with open(os.path.join(pillar_dir, f"{name}.sls"), "w", encoding="utf-8") as handle:
                json.dump(spec["pillar"], handle)  # JSON is YAML
        with open(os.path.join(pillar_dir, "top.sls"), "w", encoding="utf-8") as handle:
            handle.write(top)
        with open(os.path.join(top_dir, "top.sls"), "w", encoding="utf-8") as handle:
            handle.write("base:\n  'fleet*':\n    - odoo_websocket\n")
        self.pillar_dir, self.top_dir = pillar_dir, top_dir

    def _start_master(self):
        os.makedirs(self.master_dir)
        gateway = self.rig.gateway
        self.ports = {"publish_port": _free_port(gateway), "ret_port": _free_port(gateway)}
        config = {
            "id": "fleet-master",
            "interface": gateway,  # reachable from the hosts, over the bridge only
            **self.ports,
            "root_dir": self.master_dir,
            "conf_file": os.path.join(self.master_dir, "master"),
            "pki_dir": os.path.join(self.master_dir, "pki"),
            "cachedir": os.path.join(self.master_dir, "cache"),
            "sock_dir": os.path.join(self.master_dir, "sock"),
            "log_file": os.path.join(self.master_dir, "master.log"),
            "log_level_logfile": "warning",
            "auto_accept": True,
            "file_roots": {"base": [self.formula, self.top_dir]},
            "pillar_roots": {"base": [self.pillar_dir]},
            "user": "root",
            # The default wait for minions of `salt` and of LocalClient (what
            # testinfra's salt backend uses): a busy host may need more than 5 s.
            "timeout": 30,
        }
        with open(config["conf_file"], "w", encoding="utf-8") as handle:
            json.dump(config, handle)
        log = open(os.path.join(self.master_dir, "master.out"), "wb")  # noqa: SIM115
        self.master = subprocess.Popen(
            [os.path.join(BIN, "salt-master"), "-c", self.master_dir, "-l", "quiet"],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=self.cgroups["master"].join,
        )

    def _start_minion(self, host):
        config_dir = os.path.join(host.root, "salt-minion")
        os.makedirs(config_dir)
        config = {
            "id": host.name,
            "master": self.rig.gateway,
            "master_port": self.ports["ret_port"],
            "publish_port": self.ports["publish_port"],
            # Unix sockets need a short path: the host's private /run.
            "root_dir": "/run/saltroot",
            "acceptance_wait_time": 1,
            "log_level_logfile": "warning",
        }
        with open(os.path.join(config_dir, "minion"), "w", encoding="utf-8") as handle:
            json.dump(config, handle)
        output = open(os.path.join(host.root, "salt-minion.out"), "wb")  # noqa: SIM115
        self.minions[host.name] = host.popen(
            os.path.join(BIN, "salt-minion"), "-c", config_dir, "-l", "quiet",
            stdout=output, stderr=output, stdin=subprocess.DEVNULL,
            preexec_fn=self.cgroups[host.name].join,
        )  # fmt: skip

    def _wait_for_minions(self, timeout=180):
        deadline = time.monotonic() + timeout
        while True:
            _, _, data = self.salt("-t", "10", "fleet*", "test.ping")
            if isinstance(data, dict) and sum(v is True for v in data.values()) == self.count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"minions never all answered: {data}")
            time.sleep(1)

    def stop(self):
        for host in self.hosts:
            minion = self.minions.get(host.name)
            if minion and minion.poll() is None:
                # Killed inside its host: left there, it holds up the host's
                # init on the way down (2 s a host).
                stop_minion(host, minion)
        if self.master and self.master.poll() is None:
            try:
                os.killpg(self.master.pid, signal.SIGTERM)
                self.master.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.master.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.master.wait(5)
        if self.rig:
            self.rig.destroy()
        for minion in self.minions.values():
            try:
                minion.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for cgroup in self.cgroups.values():
            cgroup.remove()
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None

    # -- running ------------------------------------------------------------

    def salt(self, *args, timeout=900):
        """(wall seconds, exit code, parsed JSON) of `salt ARGS` on the master."""
        command = [os.path.join(BIN, "salt"), "-c", self.master_dir, "--out=json", "--static",
                   "--log-level=quiet", *args]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - start
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            data = proc.stdout + proc.stderr
        return wall, proc.returncode, data

    def measure(self, label, *args):
        """Run `salt ARGS`: wall time, each minion's and the master's CPU
        seconds and peak memory over the run."""
        before = {name: group.cpu() for name, group in self.cgroups.items()}
        for group in self.cgroups.values():
            group.reset_peak()
        wall, code, data = self.salt(*args)
        cpu = {name: _delta(group.cpu(), before[name]) for name, group in self.cgroups.items()}
        peak = {name: group.peak() for name, group in self.cgroups.items()}
        return {"label": label, "args": list(args), "wall": wall, "code": code, "data": data,
                "cpu": cpu, "peak": peak}  # fmt: skip

    def highstate(self, label, batch=None):
        # -t: the CLI waits this long before asking whether a silent minion
        # still runs the job (10 s of busy CPU may hide a running job).
        args = ["-t", "300", *(["-b", str(batch)] if batch else [])]
        return self.measure(label, *args, "fleet*", "state.highstate")

    def reset(self):
        """Every host back in its field state: files from the snapshot, nginx
        reloaded, Odoo re-reading its files."""
        for host in self.hosts:
            restore_snapshot(host.root, self.saved[host.name])
            if self.spec[host.name]["broken"]:  # later rounds converge every host
                host.sandbox.write(host.root + NEIGHBOUR, NEIGHBOUR_SITE)
            host.exec("sh", "-c", "kill -HUP $(cat /run/odoo.pid); nginx -s reload", check=True)
        self.neighbour = False
        time.sleep(1.5)

    def fix_neighbour(self):
        """The operator fixes the broken host's neighbour site (as it was
        when nginx loaded it)."""
        for host in self.hosts:
            if self.spec[host.name]["broken"]:
                host.sandbox.write(host.root + NEIGHBOUR, NEIGHBOUR_SITE)
        self.neighbour = False

    def probe(self, host):
        """What a browser elsewhere gets from HOST (rig/probe.py check)."""
        spec = self.spec[host.name]
        pillar = spec["pillar"]["odoo_websocket"]["odoo"]
        ports = {8069, 8072, pillar.get("http_port", 8069), pillar.get("gevent_port", 8072)}
        args = ["check", "--address", host.address, "--server-name", spec["server_name"]]
        for port in sorted(ports):
            args += ["--direct", str(port)]
        if spec["version"].startswith("15"):
            args.append("--longpolling")
        return _run_in(self.outside, *args)


def http_get(outside, address, server_name):
    """(status, body's first line) of GET / through ADDRESS's nginx, asked
    from OUTSIDE ((0, "") when nothing answers)."""
    code = (
        "import http.client, sys\n"
        "c = http.client.HTTPConnection(sys.argv[1], 80, timeout=5)\n"
        "try:\n"
        "    c.request('GET', '/', headers={'Host': sys.argv[2]})\n"
        "    r = c.getresponse()\n"
        "    print(r.status, r.read(200).decode('latin-1').split('\\n')[0])\n"
        "except OSError:\n"
        "    print(0)\n"
    )
    status, _, body = outside.python("-c", code, address, server_name).stdout.strip().partition(" ")
    return int(status or 0), body


def http_status(outside, address, server_name):
    """The status of GET / through ADDRESS's nginx, asked from OUTSIDE (0:
    no answer)."""
    return http_get(outside, address, server_name)[0]


def _failures(run, name):
    states = run_states(run["data"], name)
    if not states:
        return run["data"].get(name) if isinstance(run["data"], dict) else run["data"]
    return {k: v.get("comment") for k, v in states.items() if not v.get("result")}


def _delta(after, before):
    return None if after is None or before is None else after - before


def run_states(data, name):
    """The state returns of minion NAME in a highstate's data ({} when it
    returned something else, e.g. render errors)."""
    states = data.get(name) if isinstance(data, dict) else None
    return states if isinstance(states, dict) else {}


def changed(states):
    return [s["__id__"] for s in states.values() if isinstance(s, dict) and s.get("changes")]


def succeeded(states):
    return bool(states) and all(isinstance(s, dict) and s.get("result") for s in states.values())


def check_first(fleet, run):
    """Problems with a first highstate: healthy hosts converged and verified,
    the broken host failed with its files back byte for byte and its nginx
    serving."""
    problems = []
    for host in fleet.hosts:
        states = run_states(run["data"], host.name)
        if fleet.spec[host.name]["broken"] and fleet.neighbour:
            if succeeded(states):
                problems.append(f"{host.name}: the broken host's run succeeded")
            fleet.broken_verdict = _failures(run, host.name)
            print(f"   broken host {host.name}: {fleet.broken_verdict}", flush=True)
            now = snapshot(host.root)
            if now != fleet.saved[host.name]:
                differ = sorted(
                    p for p in set(now) | set(fleet.saved[host.name])
                    if now.get(p) != fleet.saved[host.name].get(p)
                )  # fmt: skip
                problems.append(f"{host.name}: files differ after the failed run: {differ}")
            if not http_status(fleet.outside, host.address, fleet.spec[host.name]["server_name"]):
                problems.append(f"{host.name}: nginx does not answer after the failed run")
            shop = http_get(fleet.outside, host.address, NEIGHBOUR_NAME)
            if shop != (200, "shop"):
                problems.append(f"{host.name}: the neighbour site answers {shop} after the run")
            continue
        if not succeeded(states):
            problems.append(f"{host.name}: failed {_failures(run, host.name)}")
            continue
        tx = next((s for s in states.values() if s.get("__id__") == TX_ID), {})
        if " verified: " not in tx.get("comment", ""):
            problems.append(f"{host.name}: no websocket verified in {tx.get('comment')!r}")
    return problems


def planned_every_concern(states):
    """The concerns' planning states (odoo_websocket_concerns) that did not
    run in STATES: a fast no-op that skipped one proves nothing."""
    ran = {s.get("__id__") for s in states.values() if isinstance(s, dict)}
    return [c.state_id for c in CONCERNS.values() if c.state_id not in ran]


def check_noop(fleet, run, may_change=lambda host: False, what="no-op run"):
    """Problems with a run that should change nothing (on the hosts
    MAY_CHANGE does not name): every host succeeded, every concern planned."""
    problems = []
    for host in fleet.hosts:
        states = run_states(run["data"], host.name)
        if not succeeded(states):
            problems.append(f"{host.name}: {what} failed: {_failures(run, host.name)}")
        elif planned_every_concern(states):
            problems.append(f"{host.name}: {what} skipped {planned_every_concern(states)}")
        elif changed(states) and not may_change(host):
            problems.append(f"{host.name}: {what} changed {changed(states)}")
    return problems


def check_probes(fleet):
    problems = []
    for host in fleet.hosts:
        seen = fleet.probe(host)
        through = seen["through_nginx"]
        ok = through.get("subscribed") or through.get("polled")
        # The web client's pages too (location /, Odoo's HTTP port).
        page = http_status(fleet.outside, host.address, fleet.spec[host.name]["server_name"])
        seen["page"] = page
        if not ok or page != 200 or any(seen["direct"].values()):
            problems.append(f"{host.name}: browser sees {seen}")
    return problems


def check_noop_after_fix(fleet, run):
    """The repair run: the fixed host converges, the others change nothing."""
    return check_noop(fleet, run, lambda host: fleet.spec[host.name]["broken"], "repair run")
