"""A fleet as a salt-master operator runs the formula: rig/highstate's Fleet at
the size of a test. One salt-master on the rig's bridge, a salt-minion in
each of four namespace hosts with its own nginx and stand-in Odoo, a pillar
top file giving each host its own server name and:

    fleet01  Odoo 17, docker, prefork (workers 2), a hard-coded Upgrade site
    fleet02  Odoo 15, native, prefork, HTTP 8169 / long polling 8172
    fleet03  Odoo 17, docker, threaded (workers 0), Odoo's documented sample
    fleet04  Odoo 16, native, threaded, and a neighbour site (shop.internal)
             edited since nginx loaded it: every reload fails there

The first highstate goes out in `salt -b 2` batches: fleet04's run fails and
puts every file back byte for byte, its nginx still serving its sites; the
others converge, their bus proven from the rig's outside host. Once the
neighbour is fixed, a highstate converges fleet04 alone; the next changes
nothing anywhere. testinfra's salt backend then checks every host through
its minion."""

import hashlib
import os

import pytest
import testinfra

from helpers import parse_site
from rig.field import LINK, SITE
from rig.fleet import nginx_workers
from rig.highstate import (
    NEIGHBOUR_NAME,
    TX_ID,
    Fleet,
    changed,
    check_first,
    check_noop,
    check_noop_after_fix,
    http_get,
    run_states,
    snapshot,
)

MAP = "/etc/nginx/conf.d/odoo_websocket_map.conf"  # pillar.example's
ODOO_CONF = "/etc/odoo/odoo.conf"
COMPOSE = "/opt/odoo/docker-compose.yml"


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    with Fleet(4, broken=True, workdir=str(tmp_path)) as fleet:
        # testinfra's salt backend talks to the master through Salt's
        # LocalClient with the default configuration path, which Salt lets
        # SALT_MASTER_CONFIG replace: this fleet's master.
        monkeypatch.setenv("SALT_MASTER_CONFIG", os.path.join(fleet.master_dir, "master"))
        yield fleet


def digests(root):
    """sha256 (or link target, or folder mode and owner) of every file the
    formula manages under ROOT."""
    return {
        path: hashlib.sha256(entry[0]).hexdigest() if isinstance(entry[0], bytes) else entry
        for path, entry in snapshot(root).items()
    }


def odoo_ports(spec):
    """The ports Odoo listens on, as the host's pillar says."""
    odoo = spec["pillar"]["odoo_websocket"]["odoo"]
    http = odoo.get("http_port", 8069)
    return [http, odoo.get("gevent_port", 8072)] if odoo.get("workers", 2) else [http]


def test_four_hosts_in_batches_one_broken_then_repaired_then_no_op(fleet):
    names = [host.name for host in fleet.hosts]
    broken = fleet.hosts[-1]
    outside = fleet.outside
    assert [fleet.spec[n]["variant"] for n in names] == [
        "docker 17 prefork",
        "native 15 prefork, ports 8169/8172",
        "docker 17 threaded",
        "native 16 threaded",
    ]
    # As found: fleet01's bus reaches a prefork worker (500), fleet03's goes
    # to the evented port threaded Odoo does not open (502).
    found = [fleet.probe(fleet.hosts[i])["through_nginx"]["status"] for i in (0, 2)]
    assert found == [500, 502], found
    assert http_get(outside, broken.address, NEIGHBOUR_NAME) == (200, "shop")
    before = digests(broken.root)
    workers = {host.name: nginx_workers(host) for host in fleet.hosts}

    first = fleet.highstate("first", batch=2)
    # Healthy hosts converged and verified; the broken host failed, its files
    # as they were, its nginx answering for both its sites (bench/fleet.py).
    assert check_first(fleet, first) == []
    tx = next(s for s in run_states(first["data"], broken.name).values() if s["__id__"] == TX_ID)
    assert not tx["result"] and "nginx did not take the new configuration" in tx["comment"], tx
    assert digests(broken.root) == before
    assert nginx_workers(broken) == workers[broken.name]  # never reloaded
    for host in fleet.hosts[:-1]:
        tx = next(s for s in run_states(first["data"], host.name).values() if s["__id__"] == TX_ID)
        concerns = {path: tx["changes"].get(path, {}).get("concern") for path in (SITE, MAP)}
        assert concerns == {SITE: "nginx", MAP: "nginx"}, (host.name, tx["changes"])
        assert "nginx reloaded gracefully" in tx["comment"], (host.name, tx["comment"])
        assert not nginx_workers(host) & workers[host.name], host.name

    fleet.fix_neighbour()
    repair = fleet.highstate("repair")
    assert check_noop_after_fix(fleet, repair) == []
    assert changed(run_states(repair["data"], broken.name))
    noop = fleet.highstate("no-op")
    assert check_noop(fleet, noop) == []
    print(f"\nhighstate walls: first (-b 2) {first['wall']:.1f} s, repair {repair['wall']:.1f} s,"
          f" no-op {noop['wall']:.1f} s")  # fmt: skip

    # A browser elsewhere: the bus through nginx (a websocket, long polling
    # on 15), the pages, and none of Odoo's ports answering directly.
    for name, host in zip(names, fleet.hosts, strict=True):
        seen = fleet.probe(host)
        bus = seen["through_nginx"]
        if name == "fleet02":
            assert bus["polled"], bus
        else:
            assert bus["status"] == 101 and bus["subscribed"], (name, bus)
        assert not any(seen["direct"].values()), (name, seen["direct"])
        assert http_get(outside, host.address, fleet.spec[name]["server_name"])[0] == 200
    assert http_get(outside, broken.address, NEIGHBOUR_NAME) == (200, "shop")
    # The bus's route (/longpolling on 15) follows workers; the sample is
    # adopted in place: its upstreams stay, the formula's are added.
    proxied = {}
    for host in fleet.hosts:
        path = "/longpolling" if host.name == "fleet02" else "/websocket"
        bus = next(d for d in parse_site(host.root + SITE)[1][0] if d["args"] == [path])
        proxied[host.name] = [d["args"][0] for d in bus["block"] if d["directive"] == "proxy_pass"]
    assert proxied == {
        "fleet01": ["http://odoo_websocket_evented"],
        "fleet02": ["http://odoo_websocket_evented"],
        "fleet03": ["http://odoo_websocket_http"],
        "fleet04": ["http://odoo_websocket_http"],
    }
    assert parse_site(fleet.hosts[2].root + SITE)[0] == {
        "odoo": ["127.0.0.1:8069"],
        "odoochat": ["127.0.0.1:8072"],
        "odoo_websocket_http": ["127.0.0.1:8069"],
    }

    for name in names:
        check_with_testinfra(testinfra.get_host(f"salt://{name}"), fleet.spec[name])


def check_with_testinfra(host, spec):
    """The host as its minion reports it: the formula's files and modes,
    nginx running, Odoo's ports on loopback only, the formula's own check."""
    name = spec["server_name"]
    docker = spec["pillar"]["odoo_websocket"].get("deployment") != "native"
    for path in (SITE, MAP):
        managed = host.file(path)
        assert (managed.is_file, managed.user, managed.mode) == (True, "root", 0o644), path
    assert host.file(LINK).linked_to == SITE
    assert host.file(SITE).contains(f"server_name {name};"), name
    conf = host.file(ODOO_CONF)  # odoo.conf keeps its mode: it holds secrets
    assert (conf.user, conf.mode) == ("root", 0o640) and conf.contains("^proxy_mode = True")
    if docker:
        assert host.file(COMPOSE).contains(r"127\.0\.0\.1:8069:8069"), name
    nginx = [p.args for p in host.process.filter(comm="nginx")]
    assert any(a.startswith("nginx: master process") for a in nginx), (name, nginx)
    assert any(a.startswith("nginx: worker process") for a in nginx), (name, nginx)
    listening = host.socket.get_listening_sockets()
    assert "tcp://0.0.0.0:80" in listening, (name, listening)
    for port in odoo_ports(spec):
        assert f"tcp://127.0.0.1:{port}" in listening, (name, port, listening)
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening, (name, port)
    exposed = [s for s in listening if s.rsplit(":", 1)[1] in {"8069", "8072", "8169", "8172"}]
    assert all(s.startswith("tcp://127.0.0.1:") for s in exposed), (name, exposed)
    verdict = host.salt("odoo_websocket.verify")
    assert verdict["ok"], (name, verdict)
