"""A salt-minion in a real container, driven by the test's salt-master
(issue 14, item 3).

The master is rig/fleet's, on the rig's bridge. The minion runs in a
container of the test image (Debian's python3 and nginx, the stand-in Odoo;
Salt from PyPI in a cached virtual environment mounted read-only:
rig/container_minion.py) on a real engine (rootful podman) in a rig host's
network namespace, which the container shares. The container's nginx serves
the default site, its Odoo (native) listens on every interface with no
proxy_mode; a highstate from the master fixes both, the rig's outside host
proves the bus through the container's nginx, and the next highstate changes
nothing."""

import os

import pytest
import yaml

from rig.container_minion import RESTART_CMD, run_minion, salt_venv, write_minion_files
from rig.containers import Engine
from rig.fleet import Master
from rig.probe import check_from, whoami_from
from rig.sandbox import load_pillar_example, merge

MINION = "fleet-ctr01"  # rig.fleet.Master's top file applies odoo_websocket to fleet-*
TX_ID = "odoo_websocket-host-transaction-applied"
SITE = "/etc/nginx/sites-available/odoo_websocket.conf"  # pillar.example's
FIXTURE_CONF = os.path.join(os.path.dirname(__file__), "..", "fixtures/odoo.conf")


def pillar():
    """pillar.example for a native Odoo whose restart is the stand-in's."""
    data = load_pillar_example()
    merge(data["odoo_websocket"], {
        "deployment": "native",
        "compose": {"enabled": False},
        "odoo": {"config": {"restart_cmd": RESTART_CMD}},
    })  # fmt: skip
    return data


@pytest.fixture
def container_minion(rig, tmp_path):
    """(master, engine, host): the minion's container running, its key
    accepted, the formula's modules synced."""
    host = rig.outside_host(name="ctr")  # the container's network namespace
    engine = Engine(str(tmp_path / "engine"), host.netns)
    master = Master(str(tmp_path / "master"), rig.gateway, {MINION: pillar()})
    try:
        venv, built = salt_venv()
        engine.start()
        tag, rootfs_s, imported = engine.load_image()
        print(f"\nsalt venv built in {built:.1f} s, root file system in {rootfs_s:.1f} s,"
              f" image imported in {imported:.1f} s")  # fmt: skip
        master.start()
        with open(FIXTURE_CONF, encoding="utf-8") as handle:
            conf = handle.read() + "workers = 2\n"
        files = write_minion_files(str(tmp_path), MINION, master, conf)
        run_minion(engine, tag, venv, *files)
        for _ in range(60):
            if master.salt(MINION, "test.ping", "-t", "5").get(MINION) is True:
                break
        else:
            logs = engine.podman("logs", "minion", check=False)
            raise RuntimeError(
                f"minion never answered:\n{logs.stdout}{logs.stderr}\n{master.log()}"
            )
        assert master.salt(MINION, "saltutil.sync_all").get(MINION), master.log()
        yield master, engine, host
    finally:
        engine.stop()
        master.stop()


def states(result):
    assert isinstance(result.get(MINION), dict), result
    return result[MINION]


def test_master_applies_the_formula_to_a_minion_in_a_container(rig, container_minion):
    master, engine, host = container_minion
    outside = rig.outside_host()
    before = check_from(outside, host)
    # As found: no Odoo site (nginx's default answers), Odoo reachable around it.
    assert before["through_nginx"]["status"] != 101, before
    assert before["direct"] == {"8069": True, "8072": True}, before

    first = states(master.salt(MINION, "state.apply"))
    failed = {s["__id__"]: s["comment"] for s in first.values() if not s["result"]}
    assert not failed, failed
    transaction = next(s for s in first.values() if s["__id__"] == TX_ID)
    assert "websocket verified: 101 Switching Protocols" in transaction["comment"], transaction
    assert SITE in transaction["changes"], transaction["changes"]

    # From elsewhere: the bus through the container's nginx, Odoo's own
    # ports refused, Odoo aware of the proxy.
    after = check_from(outside, host)
    assert after["through_nginx"]["status"] == 101, after
    assert after["through_nginx"]["subscribed"], after
    assert after["direct"] == {"8069": False, "8072": False}, after
    seen = whoami_from(outside, host)
    assert seen["proxy_mode"] is True and seen["remote_addr"] == outside.address, seen

    # The files are the container's: its nginx serves the site the minion wrote.
    site = engine.podman("exec", "minion", "cat", SITE).stdout
    assert "server_name odoo.example.com;" in site, site
    served = engine.podman("exec", "minion", "nginx", "-T").stdout
    assert site in served

    second = states(master.salt(MINION, "state.apply"))
    assert all(s["result"] for s in second.values()), yaml.safe_dump(second)
    assert [s["__id__"] for s in second.values() if s["changes"]] == []
