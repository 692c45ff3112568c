"""Adoption keeps the host's site (issue 21): for each shape of Odoo site
the field has (rig.field.SHAPES), a rig host starts broken with that site
in sites-enabled, and pillar.example with only the names changed fixes it.
Seen from a second host as a browser would: the bus opens and subscribes
(wss:// where the site serves https), the page loads, Odoo's own ports are
refused. Seen in nginx -T, parsed: nothing differs but what the formula
owns (rig.nginx_dump). What the site served besides Odoo still answers, a
second run changes nothing, and a clean puts the file back byte for byte."""

import json

import pytest

from rig import nginx_dump
from rig.field import CERT, KEY, LINK, SHAPES, odoo_conf, site
from rig.probe import check_from
from rig.tls import make_ca_and_certificate

TX_ID = "odoo_websocket-host-transaction-applied"

GET = """
import json, sys
from rig.probe import http_get
address, ca, name, port, path = sys.argv[1:6]
status, headers, body = http_get(address, int(port), path, name, ca=ca or None)
json.dump({"status": status, "headers": headers, "body": body[:200]}, sys.stdout)
"""


def get_from(outside, host, name, path, port=80, ca=None):
    """One GET from OUTSIDE through the host's nginx, Host NAME."""
    proc = outside.python("-c", GET, host.address, ca or "", name, str(port), path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def bus_ok(seen, longpolling):
    through = seen["through_nginx"]
    return (
        through.get("polled")
        if longpolling
        else (through.get("status") == 101 and through.get("subscribed"))
    )


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_adopted_shape(rig, tmp_path, name):
    text, names, browser_name, tls, version = SHAPES[name]
    address = str(rig.subnet.network_address + 10 + len(rig.hosts))  # the next host's
    text = text.replace("{address}", address)
    names = [n.replace("{address}", address) for n in names]
    ca, longpolling = None, version == "14.0"

    def prepare(box):
        nonlocal ca
        if name == "two-names-in-one-block":  # sites-available, linked
            site(box, text)
            odoo_conf(box, workers=2, gevent_port=8072)
        else:  # a plain file in sites-enabled, as many hosts have it
            box.write(box.root + LINK, text)
            odoo_conf(box)
        if tls:
            ca, _ = make_ca_and_certificate(
                str(tmp_path), box.root + CERT, box.root + KEY, browser_name
            )

    host = rig.odoo_host(prepare=prepare, odoo_version=version)
    outside = rig.outside_host()
    port = 443 if tls else 80
    before = check_from(outside, host, longpolling, ca, browser_name)
    assert not bus_ok(before, longpolling), before  # the bus is broken to begin with
    dump_before = host.exec("nginx", "-T").stdout

    # pillar.example with the names changed (and the version for Odoo 15 and
    # earlier, whose bus is long polling: Odoo 16's route is 17.0's).
    odoo = {"version": version} if longpolling else {}
    pillar = host.sandbox.pillar(odoo=odoo, nginx={"server_name": names})
    code, result = host.apply_formula(pillar)
    assert isinstance(result, dict), result
    failed = {s["__id__"]: s["comment"] for s in result.values() if not s["result"]}
    assert code == 0 and not failed, failed
    comment = next(s for s in result.values() if s["__id__"] == TX_ID)["comment"]
    assert "Adopting the existing site" in comment and "; kept " in comment, comment

    seen = check_from(outside, host, longpolling, ca, browser_name)
    assert bus_ok(seen, longpolling), seen
    assert seen["page"] == 200, seen
    assert seen["direct"] == {"8069": False, "8072": False}, seen
    # Nothing of nginx differs but what the formula owns.
    dump_after = host.exec("nginx", "-T").stdout
    assert nginx_dump.normalized(dump_after) == nginx_dump.normalized(dump_before)
    assert "conflicting server name" not in host.exec("nginx", "-t").stderr
    # What the site served besides Odoo still answers.
    if tls:
        moved = get_from(outside, host, browser_name, "/web/login")
        assert moved["status"] == 301, moved
        assert moved["headers"]["Location"].startswith(f"https://{browser_name}/"), moved
    if tls and not longpolling:  # a check told port 80 follows the site's redirect to https
        code, target = host.salt_call("odoo_websocket.check_target")
        assert code == 0 and target["port"] == 443 and target["tls"], target
        told = {key: target[key] for key in ("server_name", "address", "realtime_path",
                                             "odoo_ports")}  # fmt: skip
        told.update(server_name=browser_name, port=80, tls=False)
        code, verdict = host.salt_call("odoo_websocket.verify", f"target={json.dumps(told)}")
        assert code == 0 and verdict["ok"], verdict
        assert any(c["name"] == "redirect" for c in verdict["checks"]), verdict
    if name == "www-redirect-block":
        moved = get_from(outside, host, "www.example.com", "/web/login")
        assert moved["status"] == 301, moved
        assert moved["headers"]["Location"] == "http://example.com/web/login", moved
    if name == "second-site-in-the-file":
        assert get_from(outside, host, "blog.example.com", "/")["body"] == "the blog"
    if name == "extras-kept":
        static = get_from(outside, host, browser_name, "/web/static/x.js", port)
        assert "max-age=864000" in static["headers"].get("Cache-Control", ""), static
    if name == "two-names-in-one-block":  # the pillar's name, the address, works too
        assert bus_ok(check_from(outside, host, longpolling, ca, address), longpolling)

    code, again = host.apply_formula(pillar)
    assert code == 0 and [s["__id__"] for s in again.values() if s["changes"]] == []

    if name == "odoo-17-sample":  # clean puts the host's file back, byte for byte
        code, cleaned = host.salt_call("odoo_websocket.clean")
        assert code == 0 and cleaned["result"], cleaned
        with open(host.sandbox.root + LINK, encoding="utf-8") as handle:
            assert handle.read() == text
