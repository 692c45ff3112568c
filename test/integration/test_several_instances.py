"""Several Odoo instances on one host (issue 13, item 1), on the rig: one
namespace host runs nginx, the host's docker-style Odoo 17 in prefork mode
(erp) and native threaded Odoos (shop: 17.0, blog: 16.0) each with its own
odoo.conf. The formula, applied with salt-call inside the host, serves each
one under its own server name through one nginx; the outside host gets a 101
from each, and each handshake reaches its own Odoo. Adding an instance
leaves the others' files byte for byte and their Odoos unrestarted; removing
one removes its site and link and nothing else; a bad instance fails the
whole run with nothing changed."""

import hashlib
import os
import subprocess
import time

import yaml

from rig.hosts import PYTHON, REPO, TOOLS
from rig.probe import _run_in

# The pillar docs/guide.md's "Several Odoo instances on one host" section shows,
# verbatim. The restart commands are the rig's (its stand-in Odoos restart
# on SIGHUP); a real host names its own.
TWO_INSTANCES = """\
odoo_websocket:
  odoo:
    config:
      restart_cmd: kill -HUP $(cat /run/odoo.pid) && sleep 0.3
  compose:
    recreate_cmd: kill -HUP $(cat /run/odoo.pid) && sleep 0.3
  instances:
    erp:
      nginx:
        server_name:
          - erp.example.com
    shop:
      deployment: native
      odoo:
        workers: 0
        http_port: 8169
        gevent_port: 8172
        config:
          file: /etc/odoo/shop.conf
          restart_cmd: kill -HUP $(cat /run/odoo-shop.pid) && sleep 0.3
      nginx:
        server_name:
          - shop.example.com
"""
# Added under instances: in docs/guide.md too.
BLOG = """\
    blog:
      deployment: native
      odoo:
        version: '16.0'
        workers: 0
        http_port: 8269
        gevent_port: 8272
        config:
          file: /etc/odoo/blog.conf
          restart_cmd: kill -HUP $(cat /run/odoo-blog.pid) && sleep 0.3
      nginx:
        server_name:
          - blog.example.com
"""
TRANSACTION = "odoo_websocket-host-transaction-applied"
NATIVE = {"shop": ("17.0", 8169), "blog": ("16.0", 8269)}
ODOO_PORTS = ("8069", "8072", "8169", "8172", "8269", "8272")


def pillar(text):
    return yaml.safe_load(text)


def start_native_odoo(host, name):
    """A stand-in Odoo of its own inside HOST: /etc/odoo/NAME.conf (threaded,
    on loopback), its PID file and log; gone with the host's PID namespace."""
    version, port = NATIVE[name]
    conf = os.path.join(host.root, f"etc/odoo/{name}.conf")
    host.sandbox.write(conf, f"[options]\nadmin_passwd = {name}%secret\nhttp_port = {port}\n"
                       "http_interface = 127.0.0.1\n", mode=0o640)  # fmt: skip
    log = os.path.join(host.root, f"var/log/odoo/{name}.log")
    host.popen(
        PYTHON, os.path.join(TOOLS, "rig/standin_odoo.py"), "--config", f"/etc/odoo/{name}.conf",
        "--odoo-version", version, "--pidfile", f"/run/odoo-{name}.pid",
        "--log", f"/var/log/odoo/{name}.log",
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while "listening on" not in (open(log).read() if os.path.exists(log) else ""):
        assert time.monotonic() < deadline, f"{name}'s Odoo did not start:\n{host.logs()}"
        time.sleep(0.05)


def log_of(host, name):
    path = "odoo.log" if name == "erp" else f"{name}.log"
    with open(os.path.join(host.root, "var/log/odoo", path), encoding="utf-8") as handle:
        return handle.read()


def apply(host, data):
    code, result = host.apply_formula(pillar(data) if isinstance(data, str) else data)
    assert isinstance(result, dict), result
    failed = {s["__id__"]: s["comment"] for s in result.values() if not s["result"]}
    assert code == 0 and not failed, failed
    return {s["__id__"]: s for s in result.values()}


def files_of(host, *names):
    """sha256 (or link target) of every file the formula manages for NAMES."""
    paths = ["etc/nginx/conf.d/odoo_websocket_map.conf", "etc/nginx/nginx.conf"]
    for name in names:
        paths += [f"etc/nginx/sites-available/odoo_websocket_{name}.conf",
                  f"etc/nginx/sites-enabled/odoo_websocket_{name}.conf"]  # fmt: skip
        paths += ["etc/odoo/odoo.conf", "opt/odoo/docker-compose.yml"] if name == "erp" else [
            f"etc/odoo/{name}.conf"]  # fmt: skip
    found = {}
    for path in paths:
        full = os.path.join(host.root, path)
        if os.path.islink(full):  # absolute, as the host sees it
            found[path] = "-> " + os.readlink(full)
        else:
            with open(full, "rb") as handle:
                found[path] = hashlib.sha256(handle.read()).hexdigest()
    return found


def tree(host):
    """Everything under the host's nginx, Odoo and compose folders, and its
    backup sets: what a failed run must leave as it was."""
    found = {}
    for top in ("etc/nginx", "etc/odoo", "opt/odoo", "var/backups/odoo_websocket"):
        for folder, _, files in os.walk(os.path.join(host.root, top)):
            for name in files:
                path = os.path.join(folder, name)
                found[path] = os.readlink(path) if os.path.islink(path) else open(path, "rb").read()
    return found


def bus_from(outside, host, name):
    """The bus of NAME's site through nginx, from OUTSIDE; Odoo's ports direct."""
    args = ["check", "--address", host.address, "--server-name", f"{name}.example.com"]
    for port in ODOO_PORTS:
        args += ["--direct", port]
    return _run_in(outside, *args)


def assert_served(outside, host, *names):
    """Each NAME's websocket through nginx reaches NAME's own Odoo."""
    for name in names:
        opened = {other: log_of(host, other).count("websocket opened") for other in names}
        seen = bus_from(outside, host, name)
        assert seen["through_nginx"]["status"] == 101, (name, seen)
        assert seen["through_nginx"]["subscribed"], (name, seen)
        assert not any(seen["direct"].values()), (name, seen)
        after = {other: log_of(host, other).count("websocket opened") for other in names}
        assert after == {o: n + (o == name) for o, n in opened.items()}, (name, opened, after)


def test_several_instances_on_one_host(rig):
    host = rig.odoo_host(name="multi")
    outside = rig.outside_host()
    start_native_odoo(host, "shop")
    readme = open(os.path.join(REPO, "docs/guide.md"), encoding="utf-8").read()
    assert TWO_INSTANCES in readme and BLOG in readme

    # Two instances: one transaction, each its site, link and upstreams.
    first = apply(host, TWO_INSTANCES)
    changed = set(first[TRANSACTION]["changes"])
    for name in ("erp", "shop"):
        assert f"/etc/nginx/sites-enabled/odoo_websocket_{name}.conf" in changed, changed
    assert "/etc/nginx/sites-available/odoo_websocket.conf" not in changed
    assert {"/etc/odoo/odoo.conf", "/etc/odoo/shop.conf", "backup"} <= changed
    assert_served(outside, host, "erp", "shop")
    second = apply(host, TWO_INSTANCES)
    assert all(not state["changes"] for state in second.values()), second

    # A third instance: erp's and shop's files unchanged, their Odoos not restarted.
    start_native_odoo(host, "blog")
    before = files_of(host, "erp", "shop")
    restarts = {name: log_of(host, name).count("restarting") for name in ("erp", "shop")}
    third = apply(host, TWO_INSTANCES + BLOG)
    assert files_of(host, "erp", "shop") == before
    assert {name: log_of(host, name).count("restarting") for name in restarts} == restarts
    assert "/etc/odoo/blog.conf" in third[TRANSACTION]["changes"]
    assert_served(outside, host, "erp", "shop", "blog")

    # A run killed after it restarted shop's Odoo (only shop's odoo.conf
    # changed): the next run restores the file and restarts shop again, and
    # only shop; then it applies the change anew.
    before = files_of(host, "erp", "shop", "blog")
    restarts = {name: log_of(host, name).count("restarting") for name in ("erp", "shop", "blog")}
    changed_shop = pillar(TWO_INSTANCES + BLOG)
    shop_config = changed_shop["odoo_websocket"]["instances"]["shop"]["odoo"]["config"]
    shop_config["extra_options"] = {"limit_time_real": 1234}
    # The crash: once shop's Odoo has restarted, its restart command kills
    # the run (salt-call, its parent); once only, so the next run is whole.
    shop_config["restart_cmd"] += (
        " && if rm /etc/odoo/kill-once 2>/dev/null; then kill -KILL $PPID; fi"
    )
    host.sandbox.write(f"{host.root}/etc/odoo/kill-once", "")
    code, _ = host.apply_formula(changed_shop)
    assert not os.path.exists(f"{host.root}/etc/odoo/kill-once")
    assert code != 0 and os.path.exists(f"{host.root}/var/backups/odoo_websocket/journal.json")
    assert log_of(host, "shop").count("restarting") == restarts["shop"] + 1
    recovered = apply(host, changed_shop)
    assert "was rolled back from backup" in recovered[TRANSACTION]["comment"]
    after = {name: log_of(host, name).count("restarting") for name in restarts}
    assert after == {**restarts, "shop": restarts["shop"] + 3}, (restarts, after)
    assert files_of(host, "erp", "blog") == {k: v for k, v in before.items() if "shop" not in k}
    with open(f"{host.root}/etc/odoo/shop.conf", encoding="utf-8") as handle:
        assert "limit_time_real = 1234" in handle.read()

    # shop removed: its site and link go; erp's and blog's files stay as they
    # are, and so does shop's odoo.conf (Odoo's own file).
    before = files_of(host, "erp", "blog")
    shop_conf = files_of(host, "shop")["etc/odoo/shop.conf"]
    without_shop = pillar(TWO_INSTANCES + BLOG)
    del without_shop["odoo_websocket"]["instances"]["shop"]
    fourth = apply(host, without_shop)
    removed = {path for path, change in fourth[TRANSACTION]["changes"].items()
               if isinstance(change, dict) and "removed" in change}  # fmt: skip
    shop_files = [f"/etc/nginx/{folder}/odoo_websocket_shop.conf"
                  for folder in ("sites-available", "sites-enabled")]  # fmt: skip
    assert removed == set(shop_files), fourth[TRANSACTION]["changes"]
    assert not any(os.path.lexists(host.root + path) for path in shop_files)
    assert files_of(host, "erp", "blog") == before
    with open(f"{host.root}/etc/odoo/shop.conf", "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == shop_conf
    assert bus_from(outside, host, "shop")["through_nginx"]["status"] != 101
    assert_served(outside, host, "erp", "blog")

    # A bad instance (erp's server name again) fails the whole run: nothing changed.
    before = tree(host)
    bad = pillar(TWO_INSTANCES + BLOG)
    bad["odoo_websocket"]["instances"]["shop"]["nginx"]["server_name"] = ["ERP.example.com"]
    code, result = host.apply_formula(bad)
    assert code != 0
    assert "erp and shop both use server name and port" in str(result), result
    assert "erp.example.com on port 80" in str(result), result
    assert tree(host) == before
    assert_served(outside, host, "erp", "blog")
