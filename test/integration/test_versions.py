"""Odoo 14 to 19 on the rig (issue 13, item 2): the version decides the bus
route (/longpolling up to 15.0, /websocket from 16.0) and the odoo.conf option
(longpolling_port, gevent_port). One namespace host per major version, each
running nginx and the stand-in Odoo in that version's mode (long polling or
websocket, threaded or prefork), starts in the field's state (compose
publishing on every interface, no proxy_mode, no Odoo site); the formula is
applied to all of them at once (salt-call inside each host, one thread each)
with that version's pillar; then the outside host reaches each one's bus
through nginx, and never Odoo's ports directly."""

import concurrent.futures
import os
import re

import pytest

from rig.probe import check_from

# Both worker modes are covered for each route: prefork routes the bus to the
# evented port, threaded to the HTTP port.
VERSIONS = {"14.0": 2, "15.0": 0, "16.0": 0, "17.0": 2, "18.0": 0, "19.0": 2}


def pillar(host, version):
    """The pillar each test applies: pillar.example's, with this version and
    worker count (the rig's own restart commands, see rig/sandbox.py)."""
    return host.sandbox.pillar(odoo={"version": version, "workers": VERSIONS[version]})


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """{version: (host, exit code, state results)} and the outside host, on one
    rig: hosts start one after the other, the formula runs on all at once."""
    from rig.hosts import Rig

    lab = Rig(str(tmp_path_factory.mktemp("versions") / "rig")).create()
    try:
        hosts = {
            version: lab.odoo_host(name=f"odoo{version.split('.')[0]}", odoo_version=version)
            for version in VERSIONS
        }
        outside = lab.outside_host()
        with concurrent.futures.ThreadPoolExecutor(len(hosts)) as pool:
            runs = {v: pool.submit(h.apply_formula, pillar(h, v)) for v, h in hosts.items()}
            applied = {v: (hosts[v], *run.result()) for v, run in runs.items()}
        yield applied, outside
    finally:
        lab.destroy()


@pytest.mark.parametrize("version", list(VERSIONS))
def test_each_odoo_version_gets_its_bus_through_nginx(fleet, version):
    applied, outside = fleet
    host, code, result = applied[version]
    assert isinstance(result, dict), result
    failed = {s["__id__"]: s["comment"] for s in result.values() if not s["result"]}
    assert code == 0 and not failed, failed
    major, workers = int(version.split(".")[0]), VERSIONS[version]
    websocket = major >= 16

    # The stand-in runs this version's mode, re-read after the formula's restart.
    mode = f"prefork, {workers} workers" if workers else "threaded"
    bus = "websocket" if websocket else "long polling"
    ping = 40 if major >= 19 else 45
    log = open(os.path.join(host.root, "var/log/odoo/odoo.log"), encoding="utf-8").read()
    assert f"Odoo {version} ({mode}), bus: {bus}, ping after {ping} s idle" in log, log

    # odoo.conf carries the version's option name only.
    options = open(host.sandbox.odoo_conf, encoding="utf-8").read()
    option, other = ("gevent_port", "longpolling_port")[:: 1 if websocket else -1]
    assert f"\n{option} = 8072\n" in options and other not in options, options
    assert f"\nworkers = {workers}\n" in options and "\nproxy_mode = True\n" in options

    # The site routes the version's path to the port that serves it.
    site = open(host.sandbox.site_file, encoding="utf-8").read()
    path = "/websocket" if websocket else "/longpolling"
    upstream = "odoo_websocket_evented" if workers else "odoo_websocket_http"
    route = re.search(rf"location {path} \{{\s*proxy_pass http://(\S+);", site)
    assert route and route.group(1) == upstream, site
    stale = "/longpolling" if websocket else "/websocket"
    assert f"location {stale}" not in site

    # From another machine: the bus answers through nginx, Odoo's ports do not.
    seen = check_from(outside, host, longpolling=not websocket)
    if websocket:
        assert seen["through_nginx"]["status"] == 101, seen
        assert seen["through_nginx"]["subscribed"], seen
    else:
        assert seen["through_nginx"]["status"] == 200, seen
        assert seen["through_nginx"]["polled"], seen
    assert seen["direct"] == {"8069": False, "8072": False}, seen
