"""A fleet: one salt-master (pytest-salt-factories) on the rig's bridge, a
salt-minion inside each of two namespace hosts, per-host pillar, one
highstate across both, each host then checked from a browser host."""

import json
import os
import sys
import time

from conftest import parse_site

from rig.field import ODOO_SAMPLE, SITE, broken_docker_host, site
from rig.probe import check_from
from rig.sandbox import REPO

TX_ID = "odoo_websocket-host-transaction-applied"
SALT_MINION = os.path.join(os.path.dirname(sys.executable), "salt-minion")
MAP = "/etc/nginx/conf.d/odoo_websocket_map.conf"  # pillar.example's


def threaded_sample_host(box):
    """Odoo threaded (the docker image's default: odoo.conf leaves workers
    commented out) behind Odoo's documented sample, which sends /websocket to
    8072, where nothing listens: 502. Only the nginx change fixes this host;
    odoo.conf's workers are already what the pillar asks."""
    site(box, ODOO_SAMPLE)


def nginx_workers(host):
    """PIDs of nginx's workers inside HOST: a reload replaces them all."""
    return set(host.exec("pgrep", "-f", "nginx: worker").stdout.split())


def start_minion(host, master):
    """A real salt-minion daemon inside HOST, talking to MASTER over the bridge."""
    config_dir = os.path.join(host.root, "salt-minion")
    os.makedirs(config_dir)
    config = {
        "id": host.name,
        "master": master.config["interface"],
        "master_port": master.config["ret_port"],
        "publish_port": master.config["publish_port"],
        # Salt puts its Unix sockets under root_dir, and they need a short
        # path: the host's private /run (gone with the host).
        "root_dir": "/run/saltroot",
        "acceptance_wait_time": 1,
    }
    with open(os.path.join(config_dir, "minion"), "w", encoding="utf-8") as handle:
        json.dump(config, handle)
    output = open(os.path.join(host.root, "salt-minion.out"), "wb")  # noqa: SIM115
    return host.popen(SALT_MINION, "-c", config_dir, stdout=output, stderr=output)


def test_highstate_across_a_fleet_with_per_host_pillar(rig, salt_factories, tmp_path):
    hosts = [
        rig.odoo_host(name="fleet-a", prepare=broken_docker_host),
        rig.odoo_host(name="fleet-b", prepare=threaded_sample_host),
    ]
    outside = rig.outside_host()
    # Both broken before, each in the way only its nginx change fixes: fleet-a
    # reaches a prefork worker (500), fleet-b's /websocket goes to an evented
    # port that threaded Odoo does not open (502).
    before = {host.name: check_from(outside, host)["through_nginx"] for host in hosts}
    assert {name: probe["status"] for name, probe in before.items()} == {
        "fleet-a": 500,
        "fleet-b": 502,
    }, before
    workers = {host.name: nginx_workers(host) for host in hosts}
    assert all(workers.values()), workers
    # Per-host pillar: fleet-b runs Odoo threaded, so its route differs.
    pillars = {
        "fleet-a": hosts[0].sandbox.pillar(),
        "fleet-b": hosts[1].sandbox.pillar(odoo={"workers": 0}),
    }
    pillar_dir, top_dir = tmp_path / "pillar", tmp_path / "top"
    pillar_dir.mkdir()
    top_dir.mkdir()
    top = "base:\n"
    for minion_id, data in pillars.items():
        name = minion_id.replace("-", "_")
        top += f"  '{minion_id}':\n    - {name}\n"
        (pillar_dir / f"{name}.sls").write_text(json.dumps(data))  # JSON is YAML
    (pillar_dir / "top.sls").write_text(top)
    (top_dir / "top.sls").write_text("base:\n  'fleet-*':\n    - odoo_websocket\n")

    master = salt_factories.salt_master_daemon(
        "fleet-master",
        overrides={
            "interface": rig.gateway,  # reachable from the hosts, over the bridge only
            "auto_accept": True,
            "file_roots": {"base": [REPO, str(top_dir)]},
            "pillar_roots": {"base": [str(pillar_dir)]},
        },
    )
    with master.started():
        minions = [start_minion(host, master) for host in hosts]
        try:
            cli = master.salt_cli(timeout=180)
            deadline = time.monotonic() + 120
            while True:
                ping = cli.run("-t", "5", "test.ping", minion_tgt="fleet-*")
                if isinstance(ping.data, dict) and list(ping.data.values()) == [True, True]:
                    break
                assert time.monotonic() < deadline, f"minions never answered: {ping.stdout}"
                time.sleep(1)
            assert cli.run("saltutil.sync_all", minion_tgt="fleet-*").returncode == 0

            result = cli.run("state.highstate", minion_tgt="fleet-*")
            assert result.returncode == 0, result.stdout
            assert set(result.data) == {"fleet-a", "fleet-b"}
            for name, states in result.data.items():
                assert all(s["result"] for s in states.values()), (name, states)
                tx = next(s for s in states.values() if s["__id__"] == TX_ID)
                # Each minion's nginx concern changed: its own site adopted
                # (SITE), the map drop-in written, and nginx reloaded.
                concerns = {p: tx["changes"].get(p, {}).get("concern") for p in (SITE, MAP)}
                assert concerns == {SITE: "nginx", MAP: "nginx"}, (name, tx["changes"])
                assert "nginx reloaded gracefully" in tx["comment"], (name, tx["comment"])
                assert "websocket verified" in tx["comment"], (name, tx["comment"])
        finally:
            # nsenter does not pass signals on: end the daemons inside. SIGKILL,
            # since a salt-minion may take longer than any timeout to shut down
            # (its host is removed right after anyway).
            for host, minion in zip(hosts, minions, strict=True):
                host.exec("pkill", "-KILL", "-f", "salt-minion")
                minion.wait(30)

    for host in hosts:
        after = check_from(outside, host)
        assert after["through_nginx"]["status"] == 101 and after["through_nginx"]["subscribed"]
        assert after["direct"] == {"8069": False, "8072": False}
        # The running nginx took the change: its workers were all replaced.
        assert not nginx_workers(host) & workers[host.name], host.name
    sites = {host.name: parse_site(host.sandbox.root + SITE) for host in hosts}
    routes = {
        name: {d["args"][0]: d["block"] for d in servers[0] if d["directive"] == "location"}
        for name, (_, servers) in sites.items()
    }
    proxied = {
        name: [d["args"] for d in r["/websocket"] if d["directive"] == "proxy_pass"]
        for name, r in routes.items()
    }
    assert proxied == {
        "fleet-a": [["http://odoo_websocket_evented"]],  # prefork: the evented port
        "fleet-b": [["http://odoo_websocket_http"]],  # threaded: the HTTP port
    }
    # fleet-b's sample upstreams (odoo, odoochat on 8072) are gone: its HTTP
    # upstream is the only one, on Odoo's HTTP port.
    assert sites["fleet-b"][0] == {"odoo_websocket_http": ["127.0.0.1:8069"]}
