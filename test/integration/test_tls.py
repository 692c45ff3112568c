"""TLS end to end on the rig (issue 13, item 3): the test makes a throwaway CA
and a certificate for odoo.example.com with openssl, applies the formula with
nginx:tls on to a namespace host running nginx and the stand-in Odoo, and
looks from the outside host, trusting only that CA: the bus over wss://
through nginx, port 80 redirecting to https, HSTS and the session cookie's
Secure and SameSite flags (Odoo's deployment guide), X-Forwarded-Proto https
reaching Odoo in proxy_mode, and a browser loading the page over https and
seeing its websocket subscribe. One host setup shared by every test."""

import json
import os

import pytest

from rig.probe import check_from
from rig.sandbox import REPO
from rig.tls import make_ca_and_certificate

SERVER = "odoo.example.com"
# The pillar docs/guide.md shows, verbatim (plus pillar.example's: sandbox.pillar).
# The paths are the host's own: its /etc/nginx is the rig folder the test
# writes the certificate and key to.
TLS = {
    "enabled": True,
    "port": 443,
    "certificate": "/etc/nginx/ssl/odoo.example.com.crt",
    "certificate_key": "/etc/nginx/ssl/odoo.example.com.key",
    "hsts": True,
}
HSTS = "max-age=31536000; includeSubDomains"
BROWSER = os.path.join(REPO, "tools", "rig", "browser.py")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(host, outside host, CA file, SPKI hash, the bus before the run), the
    formula applied once with TLS."""
    from rig.hosts import Rig

    folder = tmp_path_factory.mktemp("tls")
    rig = Rig(str(folder / "rig")).create()
    try:
        host = rig.odoo_host()
        nginx_dir = host.sandbox.nginx_dir
        ca, spki = make_ca_and_certificate(
            str(folder),
            os.path.join(nginx_dir, "ssl/odoo.example.com.crt"),
            os.path.join(nginx_dir, "ssl/odoo.example.com.key"),
        )
        outside = rig.outside_host()
        before = check_from(outside, host, ca=ca)
        code, result = host.apply_formula(host.sandbox.pillar(nginx={"tls": TLS}))
        assert isinstance(result, dict), result
        failed = {s["__id__"]: s["comment"] for s in result.values() if not s["result"]}
        assert code == 0 and not failed, failed
        yield host, outside, ca, spki, before
    finally:
        rig.destroy()


GET = """
import json, sys
from rig.probe import http_get
address, ca = sys.argv[1], sys.argv[2]
out = {}
for url in sys.argv[3:]:
    scheme, path = url.split(" ")
    tls = scheme == "https"
    status, headers, body = http_get(
        address, 443 if tls else 80, path, "odoo.example.com", ca=ca if tls else None
    )
    out[url] = {"status": status, "headers": headers, "body": body[:300]}
json.dump(out, sys.stdout)
"""


def get_from(outside, host, ca, *urls):
    """GET each of URLS ('http /path' or 'https /path') from OUTSIDE through
    nginx, https trusting CA only."""
    proc = outside.python("-c", GET, host.address, ca, *urls)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_bus_over_wss_through_nginx_from_outside(lab):
    host, outside, ca, _, before = lab
    # Before the run nothing served https: the formula made it.
    assert before["through_nginx"]["status"] == 0, before
    seen = check_from(outside, host, ca=ca)
    assert seen["through_nginx"]["status"] == 101, seen
    assert seen["through_nginx"]["subscribed"], seen
    # Odoo (proxy_mode) derived the browser's scheme and address for the socket.
    client = seen["through_nginx"]["reply"][0]["message"]["payload"]
    assert (client["scheme"], client["host"]) == ("https", SERVER), client
    assert client["remote_addr"] == outside.address, client
    assert seen["direct"] == {"8069": False, "8072": False}, seen


def test_redirect_hsts_secure_cookie_and_forwarded_proto(lab):
    host, outside, ca, _, _ = lab
    seen = get_from(
        outside, host, ca,
        "http /web?db=prod", "http /websocket", "https /web", "https /web/whoami", "https /nope",
    )  # fmt: skip
    # Port 80 only redirects, path and query kept (the port 443 is implied).
    for path in ("/web?db=prod", "/websocket"):
        plain = seen[f"http {path}"]
        assert plain["status"] == 301, plain
        assert plain["headers"]["Location"] == f"https://{SERVER}{path}", plain
    # https: HSTS as the guide writes it, on every answer (errors too), and
    # Odoo's session cookie made Secure and SameSite=Lax by nginx.
    for url in ("https /web", "https /web/whoami", "https /nope"):
        assert seen[url]["headers"].get("Strict-Transport-Security") == HSTS, seen[url]
    assert seen["https /nope"]["status"] == 404
    for url in ("https /web", "https /web/whoami"):
        assert seen[url]["status"] == 200, seen[url]
        cookie = seen[url]["headers"]["Set-Cookie"]
        assert cookie.startswith("session_id=standin0session;"), cookie
        flags = [part.strip().lower() for part in cookie.split(";")[1:]]
        assert "secure" in flags and "samesite=lax" in flags and "httponly" in flags, cookie
    # X-Forwarded-Proto https reached Odoo, which uses it (proxy_mode on).
    whoami = json.loads(seen["https /web/whoami"]["body"])
    assert whoami["forwarded_proto"] == "https", whoami
    assert whoami["proxy_mode"] is True and whoami["scheme"] == "https", whoami
    assert (whoami["host"], whoami["remote_addr"]) == (SERVER, outside.address), whoami


def test_site_carries_the_guides_tls_parameters(lab):
    host = lab[0]
    site = open(host.sandbox.site_file, encoding="utf-8").read()
    for line in (
        f"ssl_certificate {TLS['certificate']};",
        f"ssl_certificate_key {TLS['certificate_key']};",
        "ssl_session_timeout 30m;",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_prefer_server_ciphers off;",
    ):
        assert f"\n    {line}\n" in site, line
    key = os.path.join(host.sandbox.nginx_dir, "ssl/odoo.example.com.key")
    assert os.stat(key).st_mode & 0o777 == 0o600


def test_browser_loads_the_page_over_https_and_subscribes(lab):
    host, outside, _, spki, _ = lab
    proc = outside.python(
        BROWSER, f"https://{SERVER}/web",
        "--resolve", f"{SERVER}={host.address}",
        "--spki", spki,
        "--timeout", "20",
        timeout=120,
    )  # fmt: skip
    assert proc.stdout, proc.stderr
    page = json.loads(proc.stdout)
    assert page["subscribed"] is True, page
    assert page["events"][0] == f"websocket open: wss://{SERVER}/websocket?version=17.0-1", page
    assert page["status"].startswith("subscribed"), page
