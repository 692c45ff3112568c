"""Self-healing through Salt's event bus, on the rig: a salt-master on the
bridge running the formula's reactor (rig/fleet.py REACTOR_CONFIG), a
salt-minion in each of three Odoo hosts running the odoo_websocket beacon
(BEACON_PILLAR: every 2 s). The hosts start in the field's broken state and
are healed by their beacons' first events; then a person's hand edit breaks
one host, and only that one is healed, as seen from a browser host."""

import pytest

from rig import fleet
from rig.field import broken_docker_host
from rig.probe import check_from

NAMES = ["fleet-a", "fleet-b", "fleet-c"]


@pytest.mark.xfail(
    strict=False,
    reason="open defect: a beacon that fires during the minion's first saltutil.sync_all "
    "loads the module before _utils is synced and keeps the failure (KeyError "
    "'odoo_websocket.check_target'); fails in about half of fresh-clone runs",
)
def test_a_hand_edit_is_healed_on_that_host_only(rig, tmp_path):
    master, hosts, outside, minions = fleet.up(rig, str(tmp_path), NAMES, broken_docker_host)
    try:
        # Broken as found: each beacon's first check asked for a heal, the
        # reactor re-applied the formula to that host alone, the beacon saw
        # it work (fleet.up waits for that).
        for name in NAMES:
            _, _, data = master.wait_for(fleet.beacon_event(name, "broken"), timeout=1)
            assert data["failed"][0]["name"] == "websocket handshake", data
            assert [job["minions"] for _, _, job in master.seen(fleet.heal_job(name))] == [[name]]
        for host in hosts:
            probe = check_from(outside, host)["through_nginx"]
            assert probe["status"] == 101 and probe["subscribed"], (host.name, probe)

        broken, others = hosts[0], hosts[1:]
        files = {host.name: host.sandbox.fingerprint() for host in others}
        workers = {host.name: fleet.nginx_workers(host) for host in others}
        heal = fleet.heal_round(master, outside, broken)
        at_break = heal["at_break"]
        assert heal["broken"]["attempt"] == 1 and not heal["broken"]["healthy"]
        assert "Empty or missing header(s): upgrade" in heal["broken"]["summary"], heal
        assert heal["job"]["minions"] == [broken.name]
        assert heal["healthy"]["attempts"] == 1
        # The browser host saw it working, broken, then working again.
        assert [s["working"] for s in heal["seen"]] == [True, False, True], heal["seen"]
        print(
            f"\nafter the break: broken event {heal['broken_event_s']:.1f} s, heal job "
            f"{heal['heal_job_s']:.1f} s, healthy event {heal['healthy_event_s']:.1f} s, "
            f"working from outside {heal['working_outside_s']:.1f} s"
        )
        # The others: not re-applied, files as they were, nginx not reloaded,
        # no beacon event of theirs since the break.
        for host in others:
            assert not master.seen(fleet.heal_job(host.name), after=at_break), host.name
            own = f"salt/beacon/{host.name}/"
            assert not master.seen(lambda t, d, own=own: t.startswith(own), after=at_break)
            assert host.sandbox.fingerprint() == files[host.name], host.name
            assert fleet.nginx_workers(host) == workers[host.name], host.name
        assert not master.seen(lambda t, d: t.endswith(("/still_broken", "/giving_up")))
    finally:
        fleet.down(master, minions)
