"""odoo_websocket.audit on real files: a sandbox host as the formula leaves
it (its map and site rendered from the templates, odoo.conf and the compose
file edited by the formula's own editors) has no finding; each finding is
triggered by one real change to that host (the nginx tree parsed by
crossplane, every include followed) and not by a near miss."""

import copy
import importlib.util
import os
import socket

import jinja2
import pytest

import odoo_websocket_audit
import odoo_websocket_audit_nginx
import odoo_websocket_compose
import odoo_websocket_nginx
import odoo_websocket_nginx_effective
import odoo_websocket_odoo_conf
from mapdata import rendered_settings
from rig.field import HARDCODED, ODOO_SAMPLE
from rig.sandbox import REPO, Sandbox

audit = odoo_websocket_audit
audit_nginx = odoo_websocket_audit_nginx
_SPEC = importlib.util.spec_from_file_location(
    "outputter", f"{REPO}/_output/odoo_websocket_audit.py"
)
OUTPUTTER = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(OUTPUTTER)
WS_LOCATION = "location /websocket {\n"
ROOT_LOCATION = "location / {\n"
SERVER_LEVEL = "    client_max_body_size 64m;\n"


def render(name, settings):
    with open(os.path.join(REPO, "odoo_websocket/files/default", name), encoding="utf-8") as f:
        return jinja2.Template(f.read(), keep_trailing_newline=True).render(settings=settings)


class Host:
    """A sandbox host as the formula leaves it, and changes to it."""

    def __init__(self, root, **pillar):
        self.box = box = Sandbox(root).create()
        self.settings = settings = rendered_settings(
            "Debian", box.pillar(**pillar)["odoo_websocket"]
        )
        nginx, config, compose = settings["nginx"], settings["odoo"]["config"], settings["compose"]
        box.write(nginx["map_file"], render("map.conf.jinja", settings))
        box.write(nginx["site_file"], render("site.conf.jinja", settings))
        os.symlink(nginx["site_file"], nginx["site_link"])
        options = config["options"]
        self.edit(box.odoo_conf, lambda text: odoo_websocket_odoo_conf.set_options(text, options))
        if settings["deployment"] == "docker":
            bind = odoo_websocket_compose.bind_ports
            ports, address = compose["ports"], compose["bind_address"]
            self.edit(box.compose_file, lambda text: bind(text, "odoo", ports, address))

    def edit(self, path, change):
        with open(path, encoding="utf-8") as handle:
            before = handle.read()
        after = change(before)
        assert after != before, f"nothing changed in {path}"
        self.box.write(path, after)

    def site(self, old, new):
        self.edit(self.settings["nginx"]["site_file"], lambda text: text.replace(old, new))

    def drop(self, *lines):
        for line in lines:
            self.site(f"        {line}\n", "")

    def add(self, relative, text):
        self.box.write(os.path.join(self.box.nginx_dir, relative), text)

    def odoo_conf(self, old, new):
        self.edit(self.box.odoo_conf, lambda text: text.replace(old, new))

    def compose(self, old, new):
        self.edit(self.box.compose_file, lambda text: text.replace(old, new))

    @staticmethod
    def unlink(path):
        os.unlink(path)

    def findings(self):
        return audit.audit(self.settings)


@pytest.fixture
def host(tmp_path):
    return Host(str(tmp_path / "root"))


def line_of(finding):
    with open(finding["file"], encoding="utf-8") as handle:
        return handle.read().splitlines()[finding["line"] - 1]


@pytest.mark.parametrize(
    "pillar",
    [
        {},
        {"odoo": {"workers": 0}},
        {"odoo": {"version": "16.0", "workers": 4}},
        {"odoo": {"version": "15.0", "workers": 2}},
        {"odoo": {"version": "14.0", "workers": 0}},
        {"deployment": "native"},
        {"nginx": {"server_name": ["odoo.example.com", "erp.example.com"], "proxy_timeout": 60}},
        {
            "nginx": {
                "tls": {
                    "enabled": True,
                    "certificate": "/etc/ssl/c.pem",
                    "certificate_key": "/etc/ssl/k.pem",
                }
            }
        },  # fmt: skip
        {
            "nginx": {
                "static_expires": "24h",
                "upstream_keepalive": 16,
                "database_manager_allow": ["10.0.0.0/8"],
            }
        },  # fmt: skip
        {"odoo": {"workers": 0}, "nginx": {"upstream_keepalive": 16}},
    ],
    ids=[
        "17-prefork",
        "17-threaded",
        "16",
        "15-prefork",
        "14-threaded",
        "native",
        "names",
        "tls",
        "guide",
        "guide-threaded",
    ],  # fmt: skip
)
def test_the_formulas_own_host_has_no_finding(tmp_path, pillar):
    assert Host(str(tmp_path / "root"), **pillar).findings() == []


def test_every_finding_has_its_fields_and_errors_come_first(host):
    host.drop("proxy_set_header Upgrade $http_upgrade;")
    host.odoo_conf("proxy_mode = True\n", "websocket_url = wss://odoo.example.com/websocket\n")
    found = host.findings()
    assert [f["severity"] for f in found] == ["error", "warning", "info"]
    for finding in found:
        assert set(finding) == {"id", "severity", "file", "line", "why", "fix"}
        assert finding["why"] and finding["fix"]


# Each case: a change to the formula's host that triggers the finding, and
# the text of the line it names (None: an absence, named by its file alone).
TRIGGERS = {
    "no-upgrade-map": (lambda h: h.unlink(h.settings["nginx"]["map_file"]), "Connection $odoo_"),
    "duplicate-map": (
        lambda h: h.add("conf.d/copy.conf", "map $http_upgrade $odoo_websocket_connection {}\n"),
        "map $http_upgrade $odoo_websocket_connection",
    ),
    "map-outside-http": (
        lambda h: h.site(SERVER_LEVEL, SERVER_LEVEL + "    map $http_upgrade $x { default a; }\n"),
        "map $http_upgrade $x",
    ),
    "hardcoded-connection": (
        lambda h: h.site("Connection $odoo_websocket_connection", 'Connection "Upgrade"'),
        'proxy_set_header Connection "Upgrade"',
    ),
    "connection-not-upgrade": (
        lambda h: h.drop("proxy_set_header Connection $odoo_websocket_connection;"),
        "location /websocket",
    ),
    "missing-upgrade": (
        lambda h: h.drop("proxy_set_header Upgrade $http_upgrade;"),
        "location /websocket",
    ),
    "host-not-forwarded": (
        lambda h: h.drop(
            "proxy_set_header Host $host;", "proxy_set_header X-Forwarded-Host $http_host;"
        ),
        "location /websocket",
    ),
    "origin-not-forwarded": (
        lambda h: h.site("Origin $http_origin", 'Origin ""'),
        'proxy_set_header Origin ""',
    ),
    "headers-shadowed": (
        lambda h: h.site(SERVER_LEVEL, SERVER_LEVEL + "    proxy_set_header X-Site odoo;\n"),
        "location /websocket",
    ),
    "http-version-1.0": (lambda h: h.drop("proxy_http_version 1.1;"), "location /websocket"),
    "realtime-wrong-port": (
        lambda h: h.odoo_conf("workers = 2", "workers = 0"),
        "proxy_pass http://odoo_websocket_evented",
    ),
    "stale-realtime-route": (
        lambda h: h.site(ROOT_LOCATION, "location /longpolling { return 204; }\n" + ROOT_LOCATION),
        "location /longpolling",
    ),
    "read-timeout-short": (
        lambda h: h.site(WS_LOCATION, WS_LOCATION + "        proxy_read_timeout 30s;\n"),
        "proxy_read_timeout 30s",
    ),
    "ssi-on": (lambda h: h.site(SERVER_LEVEL, SERVER_LEVEL + "    ssi on;\n"), "ssi on"),
    "request-headers-dropped": (
        lambda h: h.site(WS_LOCATION, WS_LOCATION + "        proxy_pass_request_headers off;\n"),
        "proxy_pass_request_headers off",
    ),
    "duplicate-site": (
        lambda h: h.add("sites-enabled/other", "server { server_name odoo.example.com; }\n"),
        "server { server_name odoo.example.com; }",
    ),
    "duplicate-upstream": (
        lambda h: h.add("conf.d/old.conf", "upstream odoo_websocket_http { server [::1]:1; }\n"),
        "upstream odoo_websocket_http",
    ),
    "no-site": (lambda h: h.unlink(h.settings["nginx"]["site_link"]), None),
    "no-realtime-route": (
        lambda h: h.site(WS_LOCATION, "location = /websocket { return 404; }\nlocation /ws {\n"),
        "location = /websocket",
    ),
    "nginx-unparsable": (
        lambda h: h.add("sites-enabled/broken", "server { listen 81;\n"),
        "server { listen 81;",
    ),
    "nginx-missing": (lambda h: h.unlink(h.box.conf_file), None),
    "proxy-mode-off": (lambda h: h.odoo_conf("proxy_mode = True", "proxy_mode = False"), "proxy_"),
    "websocket-url-set": (
        lambda h: h.odoo_conf("proxy_mode = True\n", "proxy_mode = True\nwebsocket_url = x\n"),
        "websocket_url = x",
    ),
    "odoo-conf-unreadable": (lambda h: h.odoo_conf("[options]", "workers = 1\n[options]"), None),
    "compose-port-public": (
        lambda h: h.compose('"127.0.0.1:8072:8072"', '"0.0.0.0:8072:8072"'),
        '"0.0.0.0:8072:8072"',
    ),
    "compose-unreadable": (lambda h: h.compose("  odoo:", "  web:"), None),
}

# Each case: a change close to a trigger that must not raise the finding.
NEAR_MISSES = {
    # The host's own map, with the variable name Odoo's sample uses.
    "no-upgrade-map": lambda h: (
        h.edit(h.settings["nginx"]["map_file"], lambda t: t.replace("$odoo_websocket_", "$")),
        h.site("$odoo_websocket_connection", "$connection"),
    ),
    "duplicate-map": lambda h: h.add("conf.d/sample.conf", "map $http_upgrade $connection {}\n"),
    "map-outside-http": lambda h: h.add("conf.d/x.conf", "map $http_upgrade $x { default a; }\n"),
    # The browser's own Connection (Upgrade on a websocket request).
    "hardcoded-connection": lambda h: h.site("$odoo_websocket_connection", "$http_connection"),
    "connection-not-upgrade": lambda h: (
        h.site("$odoo_websocket_connection", "$upgrade_too"),
        h.add("conf.d/too.conf", "map $http_upgrade $upgrade_too { default upgrade; }\n"),
    ),
    "missing-upgrade": lambda h: h.site("Upgrade $http_upgrade", "Upgrade websocket"),
    # X-Forwarded-Host with proxy_mode: ProxyFix gives Odoo the site's host.
    "host-not-forwarded": lambda h: h.drop("proxy_set_header Host $host;"),
    # nginx passes the browser's Origin as it is unless told otherwise.
    "origin-not-forwarded": lambda h: h.drop("proxy_set_header Origin $http_origin;"),
    # A server-level header every location sets too.
    "headers-shadowed": lambda h: h.site(
        SERVER_LEVEL, SERVER_LEVEL + "    proxy_set_header Host $host;\n"
    ),
    # Inherited from the server level.
    "http-version-1.0": lambda h: (
        h.drop("proxy_http_version 1.1;"),
        h.site(SERVER_LEVEL, SERVER_LEVEL + "    proxy_http_version 1.1;\n"),
    ),
    "realtime-wrong-port": lambda h: h.odoo_conf("workers = 2", "workers = 8"),
    "stale-realtime-route": lambda h: h.site(
        ROOT_LOCATION, "location /web/poll { return 204; }\n" + ROOT_LOCATION
    ),
    "read-timeout-short": lambda h: h.site(
        WS_LOCATION, WS_LOCATION + "        proxy_read_timeout 1m;\n"
    ),
    "ssi-on": lambda h: h.site(ROOT_LOCATION, ROOT_LOCATION + "        ssi on;\n"),
    "request-headers-dropped": lambda h: h.site(
        ROOT_LOCATION, ROOT_LOCATION + "        proxy_pass_request_headers off;\n"
    ),
    "duplicate-site": lambda h: h.add(
        "sites-enabled/other", "server { listen 8080; server_name odoo.example.com; }\n"
    ),
    "duplicate-upstream": lambda h: h.add(
        "conf.d/old.conf", "upstream odoo { server 127.0.0.1:8069; }\n"
    ),
    # Names are case-insensitive, and may share a block with others.
    "no-site": lambda h: h.site(
        "server_name odoo.example.com;", "server_name www.example.com ODOO.example.com;"
    ),
    "no-realtime-route": lambda h: h.site(WS_LOCATION, "location ^~ /websocket {\n"),
    "nginx-unparsable": lambda h: h.add("sites-enabled/closed", "server { listen 81; }\n"),
    # nginx.conf behind a link, as some hosts keep it.
    "nginx-missing": lambda h: (
        os.rename(h.box.conf_file, h.box.conf_file + ".real"),
        os.symlink(h.box.conf_file + ".real", h.box.conf_file),
    ),
    "proxy-mode-off": lambda h: h.odoo_conf("proxy_mode = True", "proxy_mode = true"),
    "websocket-url-set": lambda h: h.odoo_conf(
        "proxy_mode = True\n", "proxy_mode = True\n; websocket_url = x\n"
    ),
    # RawConfigParser reads % literally and takes other sections.
    "odoo-conf-unreadable": lambda h: h.odoo_conf(
        "proxy_mode = True\n", "proxy_mode = True\n[queue_job]\nx = 5%\n"
    ),
    # Another service on every interface is not Odoo.
    "compose-port-public": lambda h: h.compose('"5432:5432"', '"0.0.0.0:5432:5432"'),
    "compose-unreadable": lambda h: h.compose("  db:", "  postgres:"),
}


@pytest.mark.parametrize("ident", sorted(TRIGGERS))
def test_finding_is_triggered_by_a_real_config(host, ident):
    change, text = TRIGGERS[ident]
    change(host)
    found = [f for f in host.findings() if f["id"] == ident]
    assert found, f"{ident} not found in {host.findings()}"
    if text is None:
        assert found[0]["line"] is None
    else:
        assert text in line_of(found[0]), found[0]


@pytest.mark.parametrize("ident", sorted(NEAR_MISSES))
def test_near_miss_does_not_trigger_it(host, ident):
    NEAR_MISSES[ident](host)
    assert ident not in {f["id"] for f in host.findings()}


def test_every_finding_has_a_trigger_and_a_near_miss():
    assert set(TRIGGERS) == set(NEAR_MISSES)


def test_the_field_sites_findings(tmp_path):
    """The field's two usual sites (rig/field.py) on the formula's host,
    adopted in place of its site, with Odoo in prefork mode."""
    expected = {
        HARDCODED: {"realtime-wrong-port", "hardcoded-connection", "host-not-forwarded"},
        ODOO_SAMPLE: {"http-version-1.0"},  # X-Forwarded-Host and proxy_mode give the host
    }
    for index, (text, ids) in enumerate(expected.items()):
        field = Host(str(tmp_path / str(index)))
        field.edit(field.settings["nginx"]["site_file"], lambda _, text=text: text)
        assert {f["id"] for f in field.findings()} == ids


def test_every_instance_is_audited_and_named(host):
    """Several instances: the second one's odoo.conf without proxy_mode is
    found, named after its instance; what both share is reported once."""
    shop = copy.deepcopy(host.settings)
    shop_conf = os.path.join(host.box.root, "etc/odoo/shop.conf")
    with open(host.box.odoo_conf, encoding="utf-8") as handle:
        text = handle.read()
    host.box.write(shop_conf, text.replace("proxy_mode = True", "proxy_mode = False"))
    shop["odoo"]["config"]["file"] = shop_conf
    settings = dict(host.settings, instances={"erp": host.settings, "shop": shop})
    assert audit.audit(host.settings) == []
    found = audit.audit(settings)
    assert [(f["file"], f["why"].split(":")[0]) for f in found] == [(shop_conf, "shop")], found
    # A finding of the shared nginx.conf names both instances, once.
    host.box.write(host.settings["nginx"]["conf_file"], "events {}\nhttp {\n")
    shared = [f for f in audit.audit(settings) if f["file"] == host.box.conf_file]
    assert shared and all(f["why"].startswith("erp, shop: ") for f in shared), shared


def test_headers_from_an_include_in_the_location_count(host):
    """Debian's proxy_params, included inside the location, sets Host."""
    host.add("proxy_params", "proxy_set_header Host $http_host;\n")
    host.drop("proxy_set_header Host $host;", "proxy_set_header X-Forwarded-Host $http_host;")
    assert "host-not-forwarded" in {f["id"] for f in host.findings()}
    host.site(WS_LOCATION, WS_LOCATION + f"        include {host.box.nginx_dir}/proxy_params;\n")
    assert "host-not-forwarded" not in {f["id"] for f in host.findings()}


@pytest.mark.parametrize(
    "odoo_workers, live_workers, answer",
    [(2, "0", "nginx answers 502"), (0, "4", "a prefork worker answers 500")],
)
def test_the_route_follows_the_workers_odoo_conf_runs(tmp_path, odoo_workers, live_workers, answer):
    host = Host(str(tmp_path / "root"), odoo={"workers": odoo_workers})
    host.odoo_conf(f"workers = {odoo_workers}", f"workers = {live_workers}")
    (found,) = [f for f in host.findings() if f["id"] == "realtime-wrong-port"]
    assert answer in found["why"] and found["severity"] == "error"


@pytest.mark.parametrize(
    "version, timeout, severity",
    [("17.0", "45s", "error"), ("17.0", "50", "warning"), ("19.0", "41s", "warning"),
     ("15.0", "50s", "error"), ("15.0", "55s", "warning"), ("17.0", "1m", None)],
)  # fmt: skip
def test_read_timeout_against_odoos_pings_and_long_polls(tmp_path, version, timeout, severity):
    host = Host(str(tmp_path / "root"), odoo={"version": version})
    host.site("proxy_read_timeout 720s;", f"proxy_read_timeout {timeout};")
    found = [f["severity"] for f in host.findings() if f["id"] == "read-timeout-short"]
    assert found == ([severity] if severity else [])


def test_long_polling_needs_no_upgrade_headers(tmp_path):
    host = Host(str(tmp_path / "root"), odoo={"version": "15.0"})
    host.drop("proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;")
    assert host.findings() == []
    host.site(ROOT_LOCATION, "location /websocket { return 404; }\n" + ROOT_LOCATION)
    assert [f["id"] for f in host.findings()] == ["stale-realtime-route"]


def test_http_11_is_the_default_from_nginx_1_29_7(host):
    host.drop("proxy_http_version 1.1;")
    payload = odoo_websocket_nginx.tree(host.box.conf_file)
    facts = audit.context(host.settings, {"workers": ("2", 1)}, (1, 29, 7))
    assert audit_nginx.findings(payload, facts) == []
    for version in ((1, 29, 6), None):
        found = audit_nginx.findings(payload, dict(facts, nginx_version=version))
        assert [f["id"] for f in found] == ["http-version-1.0"]
    host.site(
        "proxy_set_header Upgrade", "proxy_http_version 1.0;\n        proxy_set_header Upgrade"
    )
    payload = odoo_websocket_nginx.tree(host.box.conf_file)
    found = audit_nginx.findings(payload, facts)
    assert {f["id"] for f in found} == {"http-version-1.0"}
    assert "proxy_http_version 1.0" in found[0]["why"]


@pytest.mark.parametrize("interface", ["0.0.0.0", "", "::", None])
def test_native_odoo_on_every_interface(tmp_path, interface):
    host = Host(str(tmp_path / "root"), deployment="native")
    assert host.findings() == []  # http_interface = 127.0.0.1
    new = "" if interface is None else f"http_interface = {interface}\n"
    host.odoo_conf("http_interface = 127.0.0.1\n", new)
    assert [f["id"] for f in host.findings()] == ["http-interface-open"]


@pytest.mark.parametrize("address, found", [("0.0.0.0", True), ("127.0.0.1", False)])
def test_a_socket_listening_on_every_interface(tmp_path, address, found):
    """A real listening socket on Odoo's port (read from /proc/net/tcp)."""
    with socket.socket() as server:
        server.bind((address, 0))
        server.listen()
        port = server.getsockname()[1]
        host = Host(str(tmp_path / "root"), deployment="native", odoo={"http_port": port})
        ids = [f["id"] for f in host.findings()]
        assert port in audit.listening() if found else port not in audit.listening()
    assert ids == (["port-listening-publicly"] if found else [])


def test_compose_ranges_and_random_host_ports(host):
    host.compose('"127.0.0.1:8069:8069"', '"8060-8070:8060-8070"')
    host.compose('"127.0.0.1:8072:8072"', '"8072"')
    found = [f for f in host.findings() if f["id"] == "compose-port-public"]
    assert ["8069" in f["why"] for f in found] == [True, False]
    assert "as a random port" in found[1]["why"]


@pytest.mark.parametrize(
    "text, value",
    [("60", 60), ("90s", 90), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), ("x", None),
     ("10 s", None), ("", None)],
)  # fmt: skip
def test_nginx_times(text, value):
    assert odoo_websocket_nginx_effective.seconds(text) == value


def test_the_table_the_cli_prints(host):
    host.drop("proxy_set_header Upgrade $http_upgrade;")
    host.odoo_conf("proxy_mode = True\n", "proxy_mode = True\nwebsocket_url = x\n")
    text = OUTPUTTER.output(
        {"odoo1": host.findings(), "odoo2": [], "odoo3": "Minion did not return."}
    )
    lines = text.splitlines()
    assert lines[0] == "odoo1: 2 findings (1 error, 1 info)"
    assert lines[1].split() == ["severity", "id", "where"]
    assert lines[2].split()[:2] == ["error", "missing-upgrade"]
    assert lines[3].lstrip().startswith("why: Upgrade is hop-by-hop")
    assert all(len(line) <= 100 for line in lines if line.startswith(" " * 12))
    assert "odoo2: no findings" in lines and "    Minion did not return." in lines


def test_an_override_that_publishes_odoos_port_is_a_finding(host):
    """compose adds docker-compose.override.yml's ports to the file's: an
    override publishing 8069 on every interface is found there, by line; one
    that binds it, or names other services only, is not."""
    folder = os.path.dirname(host.box.compose_file)
    override = os.path.join(folder, "docker-compose.override.yml")
    host.box.write(override, "services:\n  odoo:\n    ports:\n      - '8069:8069'\n")
    found = [f for f in host.findings() if f["id"] == "compose-port-public"]
    assert [(f["file"], line_of(f)) for f in found] == [(override, "      - '8069:8069'")]
    host.box.write(override, "services:\n  odoo:\n    ports:\n      - '127.0.0.1:8069:8069'\n")
    assert "compose-port-public" not in [f["id"] for f in host.findings()]
    for other in ("services:\n  db:\n    ports:\n      - '5432:5432'\n", "services:\n  odoo:\n"):
        host.box.write(override, other)
        findings = host.findings()
        assert {"compose-port-public", "compose-unreadable"}.isdisjoint(f["id"] for f in findings)
