"""What Odoo's deployment guide adds to the site (issue 13, item 4), measured
from the rig's outside host through nginx: static assets with browser caching
headers, the database manager refused (403) unless the client is allowed,
upstream keepalive on the HTTP route only, and the websocket still working."""

import json
import re

from rig.field import odoo_conf
from rig.probe import check_from

# The pillar docs/guide.md shows, verbatim (plus the rig's paths: sandbox.pillar).
GUIDE = {
    "static_expires": "24h",
    "upstream_keepalive": 16,
    "database_manager_allow": ["192.0.2.0/24"],
}

GET = """
import json, sys
from rig.probe import http_get
out = []
for path in sys.argv[2:]:
    status, headers, body = http_get(sys.argv[1], 80, path, "odoo.example.com")
    out.append({"path": path, "status": status, "headers": headers, "body": body[:300]})
json.dump(out, sys.stdout)
"""


def get_from(outside, host, *paths):
    """GET each of PATHS through nginx from OUTSIDE, as a browser there would."""
    proc = outside.python("-c", GET, host.address, *paths)
    assert proc.returncode == 0, proc.stderr
    return {item["path"]: item for item in json.loads(proc.stdout)}


def apply_ok(host, pillar):
    code, result = host.apply_formula(pillar)
    assert isinstance(result, dict), result
    failed = {s["__id__"]: s["comment"] for s in result.values() if not s["result"]}
    assert code == 0 and not failed, failed


def test_static_cache_database_manager_and_keepalive_from_outside(rig):
    host = rig.odoo_host(prepare=lambda box: odoo_conf(box, workers=2, gevent_port=8072))
    outside = rig.outside_host()
    apply_ok(host, host.sandbox.pillar(nginx=GUIDE))
    site = open(host.sandbox.site_file, encoding="utf-8").read()
    # keepalive on the HTTP upstream only; the bus's upstream has none.
    upstreams = dict(re.findall(r"upstream (\S+) \{(.*?)\}", site, re.S))
    assert "keepalive 16;" in upstreams["odoo_websocket_http"]
    assert "keepalive" not in upstreams["odoo_websocket_evented"]

    seen = get_from(
        outside, host,
        "/web/static/src/boot.js", "/point_of_sale/static/img/logo.png",
        "/web/database/manager", "/web/database/selector", "/web/whoami",
    )  # fmt: skip
    # Static assets: proxied to Odoo, with the guide's 24 h of browser caching.
    for path in ("/web/static/src/boot.js", "/point_of_sale/static/img/logo.png"):
        assert seen[path]["status"] == 200, seen[path]
        assert seen[path]["headers"]["Cache-Control"] == "max-age=86400", seen[path]
        assert "Expires" in seen[path]["headers"], seen[path]
    assert "Cache-Control" not in seen["/web/whoami"]["headers"]  # pages are not cached
    # The database manager: refused to a client outside the allow-list, by
    # nginx (Odoo never sees it); the selector stays open.
    assert seen["/web/database/manager"]["status"] == 403, seen["/web/database/manager"]
    assert "nginx" in seen["/web/database/manager"]["body"]
    assert seen["/web/database/selector"]["status"] == 200

    # keepalive: nginx no longer asks Odoo to close after each request.
    # Odoo's own server answers plain requests in HTTP/1.0 and closes anyway
    # (the stand-in does as it does), so each request still costs a
    # connection: measured, not assumed.
    before = json.loads(seen["/web/whoami"]["body"])
    assert before["connection"] == "", before
    burst = get_from(outside, host, *[f"/web/whoami?n={n}" for n in range(20)])
    after = json.loads(burst["/web/whoami?n=19"]["body"])["served"]["http"]
    requests = after["requests"] - before["served"]["http"]["requests"]
    connections = after["connections"] - before["served"]["http"]["connections"]
    assert requests == 20 and connections == 20, (before, after)

    # The websocket still works through nginx, and Odoo's ports stay closed.
    bus = check_from(outside, host)
    assert bus["through_nginx"]["status"] == 101 and bus["through_nginx"]["subscribed"], bus
    assert bus["direct"] == {"8069": False, "8072": False}, bus

    # The outside host on the allow-list: the manager opens for it.
    allowed = dict(GUIDE, database_manager_allow=["192.0.2.0/24", outside.address])
    apply_ok(host, host.sandbox.pillar(nginx=allowed))
    seen = get_from(outside, host, "/web/database/manager")
    assert seen["/web/database/manager"]["status"] == 200, seen
    assert "Odoo database manager" in seen["/web/database/manager"]["body"]
