"""Failures from the field, each reproduced on a namespace test host running
the Debian nginx and the stand-in Odoo, checked from a second host (a browser
on another machine) with a real WebSocket client before and after one
`state.apply` of the formula (salt-call inside the host, masterless), with
pillar.example's own site paths: the formula finds and takes over the site
the host already has."""

import json
import os
import subprocess
import sys
import time

import pytest

from rig.field import HARDCODED, LINK, ODOO_SAMPLE, SITE, odoo_conf, site
from rig.probe import check_from, whoami_from
from rig.sandbox import REPO

PROBE = os.path.join(REPO, "tools", "rig", "probe.py")
TX_ID = "odoo_websocket-host-transaction-applied"


def assert_fixed(outside, host, longpolling=False):
    result = check_from(outside, host, longpolling)
    if longpolling:
        assert result["through_nginx"]["polled"], result
    else:
        assert result["through_nginx"]["status"] == 101, result
        assert result["through_nginx"]["subscribed"], result
    assert result["direct"] == {"8069": False, "8072": False}, result


def managed_files(box):
    """Fingerprint of what the formula may touch on a host: nginx's tree,
    odoo.conf and the compose project (not the host's salt folders)."""
    kept = ("etc/nginx/", "etc/odoo/", "opt/odoo/")
    return {
        p: v for p, v in box.fingerprint().items() if os.path.relpath(p, box.root).startswith(kept)
    }


def nginx_workers(host):
    """PIDs of nginx's workers: a reload replaces them all."""
    return sorted(host.exec("pgrep", "-f", "nginx: worker").stdout.split())


def apply_ok(host, pillar):
    code, result = host.apply_formula(pillar)
    assert isinstance(result, dict), result
    failed = {s["__id__"]: s["comment"] for s in result.values() if not s["result"]}
    assert code == 0 and not failed, failed
    return result


def test_map_in_wrong_context_fails_untouched_then_applies(rig):
    host = rig.odoo_host()
    outside = rig.outside_host()
    box = host.sandbox
    default = os.path.join(box.nginx_dir, "sites-available/default")
    stock = open(default).read()
    # An earlier edit put the map inside a server block; not reloaded yet.
    broken = stock.replace(
        "\tserver_name _;",
        "\tserver_name _;\n\tmap $http_upgrade $connection_upgrade { default upgrade; }",
    )
    box.write(default, broken)
    line = broken.splitlines().index("\tserver_name _;") + 2
    before = box.fingerprint()

    code, result = host.apply_formula(box.pillar())
    state = next(s for s in result.values() if s["__id__"] == TX_ID)
    assert state["result"] is False
    assert "already invalid before this change" in state["comment"]
    assert (
        f'/etc/nginx/sites-enabled/default:{line}: "map" directive is not allowed here'
        in (state["comment"])
    )
    # Nothing of the host changed: nginx files, odoo.conf and compose file.
    assert managed_files(box) == {p: v for p, v in before.items() if p in managed_files(box)}
    assert len(managed_files(box)) > 5
    assert check_from(outside, host)["through_nginx"]["status"] == 404  # old config serves

    box.write(default, stock)
    apply_ok(host, box.pillar())
    assert_fixed(outside, host)


def test_hardcoded_connection_and_no_map(rig):
    def prepare(box):
        site(box, HARDCODED)
        odoo_conf(box, workers=2, gevent_port=8072)

    host = rig.odoo_host(prepare=prepare)
    outside = rig.outside_host()
    before = check_from(outside, host)["through_nginx"]
    assert before["status"] == 500, before  # "Couldn't bind the websocket..."
    assert whoami_from(outside, host)["connection"] == "upgrade"  # even on plain requests
    apply_ok(host, host.sandbox.pillar())
    assert_fixed(outside, host)
    assert whoami_from(outside, host)["connection"] == "close"
    text = open(host.sandbox.root + SITE).read()
    assert 'Connection "upgrade"' not in text


NO_ORIGIN = """map $http_upgrade $connection_upgrade { default upgrade; '' close; }
upstream odoochat { server 127.0.0.1:8072; }
upstream odoo { server 127.0.0.1:8069; }
server {
    listen 80;
    server_name odoo.example.com;
    location /websocket {
        proxy_pass http://odoochat;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        # "fixes" a CORS complaint, and breaks Odoo's handshake
        proxy_set_header Origin "";
    }
    location / {
        proxy_pass http://odoo;
    }
}
"""


def test_origin_not_forwarded_gives_odoo_400(rig):
    def prepare(box):
        site(box, NO_ORIGIN)
        odoo_conf(box, workers=2, gevent_port=8072)

    host = rig.odoo_host(prepare=prepare)
    outside = rig.outside_host()
    before = check_from(outside, host)["through_nginx"]
    assert before["status"] == 400
    assert "Empty or missing header(s): origin" in before["body"]
    # The operator's own check, and the dry run, tell the same from the host.
    code, verdict = host.salt_call("odoo_websocket.verify")
    assert code == 0 and verdict["ok"] is False, verdict
    assert "HTTP 400 BAD REQUEST: Empty or missing header(s): origin" in verdict["summary"]
    files, workers = managed_files(host.sandbox), nginx_workers(host)
    code, dry = host.apply_formula(host.sandbox.pillar(), test=True)
    assert "Now: websocket check FAILED: HTTP 400" in tx_comment(dry)
    # The dry run changed nothing: files, and nginx's workers (no reload).
    assert managed_files(host.sandbox) == files and nginx_workers(host) == workers
    apply_ok(host, host.sandbox.pillar())
    code, verdict = host.salt_call("odoo_websocket.verify")
    assert verdict["ok"] is True and verdict["summary"].startswith("websocket verified"), verdict
    # The site is adopted in place: its own map stays (harmless), the bus
    # location uses the formula's drop-in's variable and sends Origin again.
    assert os.path.exists(host.sandbox.map_file)
    text = open(host.sandbox.root + SITE).read()
    assert "map $http_upgrade $connection_upgrade" in text.split("server {")[0]
    bus = text[text.index("location /websocket") :].split("}")[0]
    assert "Connection $odoo_websocket_connection" in bus and 'Origin "";' not in bus
    assert_fixed(outside, host)


def test_ports_published_on_all_interfaces(rig):
    host = rig.odoo_host(prepare=lambda box: odoo_conf(box, workers=2, gevent_port=8072))
    outside = rig.outside_host()
    before = check_from(outside, host)
    assert before["direct"] == {"8069": True, "8072": True}
    apply_ok(host, host.sandbox.pillar())
    assert_fixed(outside, host)


PROXY_OK = """map $http_upgrade $connection_upgrade { default upgrade; '' close; }
upstream odoochat { server 127.0.0.1:8072; }
upstream odoo { server 127.0.0.1:8069; }
server {
    listen 80;
    server_name odoo.example.com;
    proxy_set_header X-Forwarded-Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    location / {
        proxy_pass http://odoo;
    }
}
"""


def test_proxy_mode_missing_ignores_forwarded_headers(rig):
    def prepare(box):
        site(box, PROXY_OK)
        odoo_conf(box, workers=2, gevent_port=8072)

    host = rig.odoo_host(prepare=prepare)
    outside = rig.outside_host()
    before = whoami_from(outside, host)
    assert before["proxy_mode"] is False
    assert before["remote_addr"] == "127.0.0.1"  # nginx, not the browser
    apply_ok(host, host.sandbox.pillar())
    after = whoami_from(outside, host)
    assert after["proxy_mode"] is True
    assert after["remote_addr"] == outside.address
    assert after["host"] == "odoo.example.com"
    assert_fixed(outside, host)


WEBSOCKET_TO_8072 = NO_ORIGIN.replace('        proxy_set_header Origin "";\n', "").replace(
    '        # "fixes" a CORS complaint, and breaks Odoo\'s handshake\n', ""
)


def test_threaded_odoo_with_websocket_routed_to_8072(rig):
    def prepare(box):
        site(box, WEBSOCKET_TO_8072)
        odoo_conf(box, workers=0)

    host = rig.odoo_host(prepare=prepare)
    outside = rig.outside_host()
    assert check_from(outside, host)["through_nginx"]["status"] == 502
    pillar = host.sandbox.pillar(odoo={"workers": 0})
    apply_ok(host, pillar)
    assert_fixed(outside, host)
    assert (
        "proxy_pass http://odoo_websocket_http;"
        in open(host.sandbox.root + SITE).read().split("location /websocket")[1].split("}")[0]
    )


LONGPOLLING = """upstream odoochat { server 127.0.0.1:8072; }
upstream odoo { server 127.0.0.1:8069; }
server {
    listen 80;
    server_name odoo.example.com;
    location /longpolling {
        proxy_pass http://odoochat;
    }
    location / {
        proxy_pass http://odoo;
    }
}
"""


def test_odoo_15_long_polling(rig):
    def prepare(box):
        site(box, LONGPOLLING)
        odoo_conf(box)  # threaded: nothing on 8072 yet

    host = rig.odoo_host(odoo_version="15.0", prepare=prepare)
    outside = rig.outside_host()
    assert check_from(outside, host, longpolling=True)["through_nginx"]["status"] == 502
    apply_ok(host, host.sandbox.pillar(odoo={"version": "15.0"}))
    options = open(host.sandbox.odoo_conf).read()
    assert "longpolling_port = 8072" in options and "gevent_port" not in options
    assert_fixed(outside, host, longpolling=True)


@pytest.mark.parametrize("version", ["17.0"])
def test_second_run_changes_nothing_on_a_live_host(rig, version):
    host = rig.odoo_host(odoo_version=version)
    apply_ok(host, host.sandbox.pillar())
    code, result = host.apply_formula(host.sandbox.pillar())
    assert code == 0
    assert [s["__id__"] for s in result.values() if s["changes"]] == []


def test_reload_keeps_50_websocket_sessions_and_http_stream(rig, tmp_path):
    host = rig.odoo_host(prepare=lambda box: odoo_conf(box, workers=2, gevent_port=8072))
    outside = rig.outside_host()
    apply_ok(host, host.sandbox.pillar())
    workers_before = host.exec("pgrep", "-f", "nginx: worker").stdout.split()

    ready, stop = tmp_path / "ready", tmp_path / "stop"
    load = outside.popen(
        sys.executable, PROBE, "hold", "--address", host.address, "--sessions", "50",
        "--ready-file", str(ready), "--stop-file", str(stop),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert load.poll() is None, load.stderr.read()
            assert time.monotonic() < deadline, "sessions never opened"
            time.sleep(0.05)
        # A site change while everything is open: nginx reloads gracefully.
        result = apply_ok(host, host.sandbox.pillar(nginx={"client_max_body_size": "128m"}))
        comment = next(s for s in result.values() if s["__id__"] == TX_ID)["comment"]
        assert "nginx reloaded gracefully" in comment
        time.sleep(1)  # requests keep flowing through the new workers
        workers_after = host.exec("pgrep", "-f", "nginx: worker").stdout.split()
        assert set(workers_after) - set(workers_before), "nginx never reloaded"
    finally:
        stop.touch()
        out, err = load.communicate(timeout=120)
    counts = json.loads(out)
    assert not counts["timed_out"], counts  # held until the apply was done
    assert counts["alive"] == 50 and counts["dropped"] == 0, counts
    assert counts["http_failed"] == 0, counts
    assert counts["http_ok"] > 50, counts


def tx_comment(result):
    return next(s for s in result.values() if s["__id__"] == TX_ID)["comment"]


def test_odoo_sample_site_in_sites_enabled_is_adopted(rig):
    """The documented sample as a plain file in sites-enabled, with its own
    upstream odoo and $connection_upgrade map, Odoo threaded (so its /websocket
    route to 8072 answers 502), and pillar.example's own site paths."""

    def prepare(box):
        box.write(box.root + LINK, ODOO_SAMPLE)
        odoo_conf(box)

    host = rig.odoo_host(prepare=prepare)
    outside = rig.outside_host()
    assert check_from(outside, host)["through_nginx"]["status"] == 502
    result = apply_ok(host, host.sandbox.pillar())
    comment = tx_comment(result)
    assert f"Adopting the existing site {LINK}" in comment
    assert "websocket verified: 101 Switching Protocols via 127.0.0.1:80" in comment
    assert_fixed(outside, host)
    dump = host.exec("nginx", "-T").stderr
    assert "conflicting server name" not in dump
    assert not os.path.lexists(host.sandbox.site_link)
    code, again = host.apply_formula(host.sandbox.pillar())
    assert code == 0 and [s["__id__"] for s in again.values() if s["changes"]] == []


def test_change_that_breaks_the_websocket_is_rolled_back(rig):
    """nginx accepts the change, but Odoo does not come back after its restart
    (the stand-in is stopped, as a container that hangs on start): every file
    comes back, Odoo is restarted onto the old config, and the outside host
    sees the old behaviour again."""

    def prepare(box):
        site(box, HARDCODED)
        odoo_conf(box, workers=2, gevent_port=8072)

    host = rig.odoo_host(prepare=prepare)
    outside = rig.outside_host()
    assert check_from(outside, host)["through_nginx"]["status"] == 500
    before = managed_files(host.sandbox)
    # The first recreate stops Odoo; the next one (the rollback's) resumes it
    # and makes it re-read its configuration.
    hang = (
        "p=$(cat /run/odoo.pid); if [ -e /run/odoo-stopped ]; then rm /run/odoo-stopped; "
        "kill -CONT $p; kill -HUP $p; sleep 0.3; else touch /run/odoo-stopped; kill -STOP $p; fi"
    )
    pillar = host.sandbox.pillar(compose={"recreate_cmd": hang}, verify={"timeout": 3})
    code, result = host.apply_formula(pillar)
    assert code != 0
    comment = tx_comment(result)
    assert "The websocket check failed after the change: websocket check FAILED" in comment
    assert "timed out" in comment
    assert "Every file of the run was restored from backup" in comment
    assert "recreate odoo again, onto the old configuration." in comment
    assert managed_files(host.sandbox) == before
    after = check_from(outside, host)
    assert after["through_nginx"]["status"] == 500  # the old site serves again
    assert after["direct"] == {"8069": True, "8072": True}  # and the old compose ports
