"""The formula applied by a real salt-master to a real salt-minion, against a
sandbox of real files, checked with the real nginx (-t on the whole tree),
crossplane (the rendered config parsed, not grepped) and testinfra."""

import configparser
import datetime
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import salt.version
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bad_pillars import BAD, backup_names, in_sandbox, paths_in
from engine import spawn_engine
from helpers import changed, load_yaml, parse_site, states
from rig.field import ODOO_SAMPLE

NGINX_ID = "odoo_websocket-nginx-site-planned"
ODOO_ID = "odoo_websocket-odoo-config-planned"
COMPOSE_ID = "odoo_websocket-compose-ports-planned"
TX_ID = "odoo_websocket-host-transaction-applied"
# What `salt-call sys.doc odoo_websocket` must list: the operator's commands.
OPERATOR_COMMANDS = [f"odoo_websocket.{name}" for name in (
    "audit", "backup_diff", "backups", "check_target", "clean", "nginx_test", "recover",
    "restore", "settings", "stage_check", "verify")]  # fmt: skip

FULL_HEADERS = {
    "Upgrade": "$http_upgrade",
    "Connection": "$odoo_websocket_connection",
    "Host": "$host",
    "Origin": "$http_origin",
    "X-Forwarded-Host": "$http_host",
    "X-Forwarded-For": "$proxy_add_x_forwarded_for",
    "X-Forwarded-Proto": "$scheme",
    "X-Real-IP": "$remote_addr",
}


def self_signed(folder):
    """A certificate and key for odoo.example.com, made with openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=odoo.example.com", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def odoo_options(path):
    """odoo.conf's [options] as Odoo reads them (configparser.RawConfigParser:
    no interpolation, a duplicate option is an error), not with the formula's
    own parser, whose bugs would cancel out."""
    parser = configparser.RawConfigParser()
    with open(path, encoding="utf-8") as handle:
        parser.read_file(handle, source=path)
    return dict(parser.items("options"))


def nginx_ok(host, sandbox):
    return host.run(f"nginx -t -c {sandbox.conf_file}")


def directives(block, name):
    return [d["args"] for d in block if d["directive"] == name]


def locations(server):
    return {d["args"][0]: d["block"] for d in server if d["directive"] == "location"}


def headers(location):
    return {args[0]: args[1] for args in directives(location, "proxy_set_header")}


@pytest.mark.core
def test_pillar_example_applies_validates_and_is_idempotent(formula, sandbox, host):
    first = formula.apply(sandbox.pillar())
    assert first.returncode == 0, first.stdout
    assert all(state["result"] is True for state in states(first).values())
    # One transaction applies every concern; the planning states only plan.
    assert changed(first) == {TX_ID}
    assert set(states(first)[TX_ID]["changes"]) == {
        sandbox.site_file, sandbox.site_link, sandbox.map_file, sandbox.odoo_conf,
        sandbox.compose_file, sandbox.conf_file, "backup",
    }  # fmt: skip
    # nginx.conf sized for nginx:max_sessions (2000), the capacity in the comment.
    held = r"nginx holds [0-9]+ websocket sessions: [0-9]+ workers x [0-9]+ connections"
    assert re.search(held, states(first)[TX_ID]["comment"]), states(first)[TX_ID]["comment"]
    # Recreating the container picks up odoo.conf too: no second restart.
    assert os.path.exists(sandbox.marker("compose-recreated"))
    assert not os.path.exists(sandbox.marker("odoo-restarted"))
    check = nginx_ok(host, sandbox)
    assert check.rc == 0, check.stderr
    assert host.file(sandbox.site_link).linked_to == sandbox.site_file
    assert host.file(sandbox.map_file).contains(r"map \$http_upgrade \$odoo_websocket_connection")
    os.unlink(sandbox.marker("compose-recreated"))

    second = formula.apply(sandbox.pillar())
    assert second.returncode == 0, second.stdout
    assert changed(second) == set()
    assert not os.path.exists(sandbox.marker("odoo-restarted"))
    assert not os.path.exists(sandbox.marker("compose-recreated"))


@pytest.mark.core
def test_test_mode_reports_and_changes_nothing(formula, sandbox):
    before = sandbox.fingerprint()
    result = formula.apply(sandbox.pillar(), test=True)
    assert sandbox.fingerprint() == before
    assert not os.listdir(sandbox.marker_dir)
    found = states(result)
    for sid in (NGINX_ID, ODOO_ID, COMPOSE_ID):
        assert found[sid]["result"] is None
    assert "+proxy_mode = True" in found[ODOO_ID]["changes"][sandbox.odoo_conf]["diff"]
    assert "127.0.0.1:8072:8072" in found[COMPOSE_ID]["changes"][sandbox.compose_file]["diff"]
    assert "location /websocket" in found[NGINX_ID]["changes"][sandbox.site_file]["diff"]
    assert found[TX_ID]["result"] is None
    assert "Staged check: nginx accepts the new configuration." in found[TX_ID]["comment"]
    # A dry run does not even create the backup folder or its lock.
    assert not os.path.exists(sandbox.backup_dir)


@pytest.mark.parametrize(
    "version, workers, path, upstream, option",
    [
        ("17.0", 2, "/websocket", "odoo_websocket_evented", "gevent_port"),
        ("17.0", 0, "/websocket", "odoo_websocket_http", "gevent_port"),
        ("16.0", 4, "/websocket", "odoo_websocket_evented", "gevent_port"),
        ("15.0", 2, "/longpolling", "odoo_websocket_evented", "longpolling_port"),
        ("14.0", 0, "/longpolling", "odoo_websocket_http", "longpolling_port"),
    ],
)
def test_realtime_route_follows_version_and_workers(
    formula, sandbox, host, version, workers, path, upstream, option
):
    result = formula.apply(sandbox.pillar(odoo={"version": version, "workers": workers}))
    assert result.returncode == 0, result.stdout
    assert nginx_ok(host, sandbox).rc == 0
    upstreams, servers = parse_site(sandbox.site_file)
    expected_upstreams = {"odoo_websocket_http": ["127.0.0.1:8069"]}
    if workers:
        expected_upstreams["odoo_websocket_evented"] = ["127.0.0.1:8072"]
    assert upstreams == expected_upstreams
    routes = locations(servers[0])
    assert set(routes) == {path, "/"}
    assert directives(routes[path], "proxy_pass") == [[f"http://{upstream}"]]
    options = odoo_options(sandbox.odoo_conf)
    assert options[option] == "8072"
    assert options["workers"] == str(workers)
    assert options["proxy_mode"] == "True"
    other = {"gevent_port", "longpolling_port"} - {option}
    assert not other & set(options)


def test_every_location_carries_the_complete_header_set(formula, sandbox):
    assert formula.apply(sandbox.pillar()).returncode == 0
    _, servers = parse_site(sandbox.site_file)
    for path, block in locations(servers[0]).items():
        assert headers(block) == FULL_HEADERS, path
        assert directives(block, "proxy_http_version") == [["1.1"]], path
        assert directives(block, "proxy_read_timeout") == [], path  # inherited
    assert directives(servers[0], "proxy_read_timeout") == [["720s"]]
    slash = locations(servers[0])["/"]
    assert directives(slash, "proxy_redirect") == [["off"]]
    assert directives(slash, "gzip") == [["on"]]


def test_nginx_pillar_keys_reach_the_site(formula, sandbox, host):
    result = formula.apply(
        sandbox.pillar(
            odoo={"host": "127.0.0.2", "http_port": 9069, "gevent_port": 9072},
            compose={"bind_address": "127.0.0.2"},  # where nginx's upstreams reach Odoo
            nginx={
                "server_name": ["erp.example.org", "www.erp.example.org"],
                "http_port": 8080,
                "listen_addresses": ["127.0.0.1", "[::1]"],
                "upstream_http": "erp_http",
                "upstream_evented": "erp_bus",
                "proxy_timeout": 90,
                "client_max_body_size": "200m",
            },
        )
    )
    assert result.returncode == 0, result.stdout
    assert nginx_ok(host, sandbox).rc == 0
    upstreams, servers = parse_site(sandbox.site_file)
    assert upstreams == {"erp_http": ["127.0.0.2:9069"], "erp_bus": ["127.0.0.2:9072"]}
    server = servers[0]
    assert directives(server, "listen") == [["127.0.0.1:8080"], ["[::1]:8080"]]
    assert directives(server, "server_name") == [["erp.example.org", "www.erp.example.org"]]
    assert directives(server, "client_max_body_size") == [["200m"]]
    for name in ("proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout"):
        assert directives(server, name) == [["90s"]]
    routes = locations(server)
    assert directives(routes["/websocket"], "proxy_pass") == [["http://erp_bus"]]
    assert directives(routes["/"], "proxy_pass") == [["http://erp_http"]]
    compose = load_yaml(sandbox.compose_file)["services"]["odoo"]["ports"]
    assert "127.0.0.2:9069:9069" in compose and "127.0.0.2:9072:9072" in compose


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_test_ca(folder, name="odoo.example.com"):
    """A CA of the test's own and a certificate it signed for NAME:
    (CA certificate, certificate, key) as PEM files in FOLDER."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odoo_websocket test CA")])

    def signed(subject, public_key, *extensions):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(ca_key, hashes.SHA256())

    signs_certificates = x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    ca = signed(
        ca_name,
        ca_key.public_key(),
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (signs_certificates, True),
    )
    cert = signed(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]),
        key.public_key(),
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.SubjectAlternativeName([x509.DNSName(name)]), False),
        (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False),
    )
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
def odoo_http():
    """Odoo's HTTP port as nginx reaches it, on loopback: every GET is
    answered 200 with the request headers nginx sent, as JSON."""

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(10)


def http_get(port, path, server_name="odoo.example.com"):
    """(status, Location) of a plain http GET to 127.0.0.1:PORT."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": server_name})
        reply = connection.getresponse()
        return reply.status, reply.getheader("Location")
    finally:
        connection.close()


def https_get(port, ca, path, server_name="odoo.example.com"):
    """(status, headers, body) of a GET over https to 127.0.0.1:PORT, the
    server's certificate checked against CA for SERVER_NAME, as a browser does."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            request = f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n"
            tls.sendall(request.encode("ascii"))
            reply = http.client.HTTPResponse(tls)
            reply.begin()
            return reply.status, dict(reply.getheaders()), reply.read()


@pytest.mark.parametrize("hsts", [True, False])
def test_tls_serves_https_and_redirects_http(formula, running_nginx, odoo_http, tmp_path, hsts):
    box = running_nginx
    ca, cert, key = make_test_ca(tmp_path)
    port = free_port()
    tls = {
        "enabled": True,
        "port": port,
        "certificate": str(cert),
        "certificate_key": str(key),
        "hsts": hsts,
    }
    pillar = box.pillar(
        nginx={"tls": tls, "listen_addresses": ["127.0.0.1"]},
        odoo={"config": {"enabled": False}, "http_port": odoo_http, "workers": 0},
        compose={"enabled": False},
    )
    result = formula.apply(pillar)
    assert result.returncode == 0, result.stdout
    assert "nginx reloaded gracefully" in states(result)[TX_ID]["comment"]
    # http answers with a redirect to the https site, path and query kept
    # (once the old workers, which may still accept for a moment, are gone).
    deadline = time.monotonic() + 10
    while (redirect := http_get(box.http_port, "/web?db=prod"))[0] == 404:
        assert time.monotonic() < deadline, "the new site never answered"
        time.sleep(0.1)
    assert redirect == (301, f"https://odoo.example.com:{port}/web?db=prod")
    # https: the test CA's certificate for the name, and Odoo reached through
    # nginx with the scheme it needs (proxy_mode).
    status, headers, body = https_get(port, ca, "/web?db=prod")
    assert status == 200, body
    seen = json.loads(body)
    assert (seen["host"], seen["x-forwarded-proto"]) == ("odoo.example.com", "https"), seen
    assert ("Strict-Transport-Security" in headers) is hsts, headers
    _, servers = parse_site(box.site_file)
    main = servers[1]
    for block in locations(main).values():
        assert directives(block, "proxy_cookie_flags") == [["session_id", "samesite=lax", "secure"]]


def test_parts_can_be_switched_off(formula, sandbox):
    before = sandbox.fingerprint()
    result = formula.apply(
        sandbox.pillar(
            nginx={"enabled": False},
            compose={"enabled": False},
            odoo={"config": {"enabled": False}},
        )
    )
    assert result.returncode == 0, result.stdout
    # The minion is ready: of odoo_websocket.dependencies only its no-op
    # state and the settings check; each concern says it is not managed.
    ran = states(result)
    ready = ("odoo_websocket-dependencies-ready", "odoo_websocket-settings-validated")
    assert set(ran) == {TX_ID, NGINX_ID, ODOO_ID, COMPOSE_ID, *ready}
    for planner in (NGINX_ID, ODOO_ID, COMPOSE_ID):
        assert ran[planner]["result"] is True and not ran[planner]["changes"]
        assert ran[planner]["comment"].endswith(": not managed with these settings.")
    assert "No concern was planned" in ran[TX_ID]["comment"]
    assert sandbox.fingerprint() == before


def test_native_deployment_skips_compose_and_sets_http_interface(formula, sandbox):
    compose_before = open(sandbox.compose_file, "rb").read()
    result = formula.apply(
        sandbox.pillar(deployment="native", odoo={"http_interface": "127.0.0.2"})
    )
    assert result.returncode == 0, result.stdout
    compose = states(result)[COMPOSE_ID]
    assert compose["comment"] == "compose ports: not managed with these settings."
    assert open(sandbox.compose_file, "rb").read() == compose_before
    options = odoo_options(sandbox.odoo_conf)
    assert options["http_interface"] == "127.0.0.2"


def test_site_link_empty_for_conf_d_layouts(formula, sandbox, host):
    site = os.path.join(sandbox.nginx_dir, "conf.d/odoo_websocket.conf")
    result = formula.apply(sandbox.pillar(nginx={"site_file": site, "site_link": ""}))
    assert result.returncode == 0, result.stdout
    assert os.path.isfile(site)
    assert not os.path.lexists(sandbox.site_link)
    assert nginx_ok(host, sandbox).rc == 0


def test_odoo_conf_keeps_comments_percent_order_owner_and_mode(formula, sandbox, host):
    os.chown(sandbox.odoo_conf, 65534, 65534)
    os.chmod(sandbox.odoo_conf, 0o640)
    original = open(sandbox.odoo_conf).read()
    result = formula.apply(
        sandbox.pillar(odoo={"config": {"extra_options": {"websocket_url": "wss://x/websocket"}}})
    )
    assert result.returncode == 0, result.stdout
    text = open(sandbox.odoo_conf).read()
    # Every original line stays, in order; the new keys follow the last option.
    lines = original.splitlines()
    assert lines[7] == "db_password = p%ss;word"
    assert (
        text.splitlines()
        == lines[:8]
        + [
            "proxy_mode = True",
            "workers = 2",
            "http_port = 8069",
            "gevent_port = 8072",
            "websocket_url = wss://x/websocket",
        ]
        + lines[8:]
    )
    read = odoo_options(sandbox.odoo_conf)
    assert read["admin_passwd"] == "Sup3r%Secret%%admin"
    assert read["db_password"] == "p%ss;word"
    conf = host.file(sandbox.odoo_conf)
    assert (conf.uid, conf.gid, conf.mode) == (65534, 65534, 0o640)
    assert "no Odoo version reads it" in states(result)[ODOO_ID]["comment"]


def test_secrets_never_appear_in_output_or_logs(formula, sandbox, salt_minion):
    new_secret = "N3w%Secret-Value"
    # Secrets the pillar never names: a module's smtp_password in odoo.conf, and
    # compose environment values, sitting next to the lines the formula edits.
    with open(sandbox.odoo_conf, "a") as handle:
        handle.write("smtp_password = Smtp%Ctx\n")
    compose = open(sandbox.compose_file).read()
    compose = compose.replace("POSTGRES_PASSWORD=odoo", "POSTGRES_PASSWORD=Pg%Secret")
    compose = compose.replace(
        "    volumes:", "    environment:\n      HOST_KEY: Key%Secret\n    volumes:"
    )
    sandbox.write(sandbox.compose_file, compose)
    pillar = sandbox.pillar(
        odoo={"config": {"extra_options": {"admin_passwd": new_secret, "smtp_password": "Smtp%Pw",
                                           "mail_token": "Tok%Pw"}}}
    )  # fmt: skip
    secrets = (new_secret, "Smtp%Pw", "Tok%Pw", "Sup3r%Secret%%admin", "p%ss;word",
               "Smtp%Ctx", "Pg%Secret", "Key%Secret")  # fmt: skip
    shown = formula.cli.run("state.show_sls", "odoo_websocket", minion_tgt=formula.minion.id)
    assert shown.returncode == 0 and TX_ID in shown.data
    assert not [s for s in secrets if s in shown.stdout + str(shown.data)]
    for test in (True, False):
        result = formula.apply(pillar, test=test)
        assert result.returncode == 0, result.stdout
        output = result.stdout + result.stderr + str(result.data)
        assert not [s for s in secrets if s in output]
        # The change is reported, masked: planned in test mode, applied otherwise.
        found = states(result)[ODOO_ID if test else TX_ID]["changes"]
        reported = found[sandbox.odoo_conf]["options"]
        assert reported["admin_passwd"] == {"old": "********", "new": "********"}
        assert reported["smtp_password"] == {"old": "********", "new": "********"}
        assert reported["mail_token"] == {"old": None, "new": "********"}
        composed = states(result)[COMPOSE_ID if test else TX_ID]["changes"]
        assert "HOST_KEY: ********" in composed[sandbox.compose_file]["diff"]
    text = open(sandbox.odoo_conf).read()  # the real values did reach the file
    assert f"admin_passwd = {new_secret}" in text and "mail_token = Tok%Pw" in text
    with open(salt_minion.config["log_file"], encoding="utf-8", errors="replace") as handle:
        log = handle.read()
    assert TX_ID in log  # the log holds the runs' returns: the check below is not vacuous
    assert not [s for s in secrets if s in log]


def test_compose_ports_bound_to_loopback_only(formula, sandbox):
    original = open(sandbox.compose_file).read()
    result = formula.apply(sandbox.pillar())
    assert result.returncode == 0, result.stdout
    text = open(sandbox.compose_file).read()
    assert text == original.replace('"8069:8069"', '"127.0.0.1:8069:8069"').replace(
        '"8072:8072"', '"127.0.0.1:8072:8072"'
    )
    assert load_yaml(sandbox.compose_file)["services"]["db"]["ports"] == ["5432:5432"]


def test_published_ports_from_pillar_reach_compose_and_upstreams(formula, sandbox, host):
    pillar = sandbox.pillar(compose={"published_http_port": 18069, "published_gevent_port": 18072})
    result = formula.apply(pillar)
    assert result.returncode == 0, result.stdout
    assert nginx_ok(host, sandbox).rc == 0
    upstreams, _ = parse_site(sandbox.site_file)
    assert upstreams == {
        "odoo_websocket_http": ["127.0.0.1:18069"],
        "odoo_websocket_evented": ["127.0.0.1:18072"],
    }
    ports = load_yaml(sandbox.compose_file)["services"]["odoo"]["ports"]
    assert ports == ["127.0.0.1:18069:8069", "127.0.0.1:18072:8072"]
    # odoo.conf keeps the container's own port.
    assert odoo_options(sandbox.odoo_conf)["gevent_port"] == "8072"


def test_compose_service_and_bind_address_from_pillar(formula, sandbox):
    sandbox.write(
        sandbox.compose_file,
        "services:\n  erp:\n    image: odoo:17\n    ports:\n      - 8069:8069\n",
    )
    pillar = sandbox.pillar(
        odoo={"host": "127.0.0.2"}, compose={"service": "erp", "bind_address": "127.0.0.2"}
    )
    result = formula.apply(pillar)
    assert result.returncode == 0, result.stdout
    ports = load_yaml(sandbox.compose_file)["services"]["erp"]["ports"]
    assert sorted(ports) == ["127.0.0.2:8069:8069", "127.0.0.2:8072:8072"]


def test_missing_nginx_binary_fails_and_touches_nothing(formula, sandbox):
    before = sandbox.fingerprint()
    result = formula.apply(
        sandbox.pillar(
            nginx={"binary": "/nonexistent/nginx"},
            odoo={"config": {"enabled": False}},
            compose={"enabled": False},
        )
    )
    state = states(result)[TX_ID]
    assert state["result"] is False
    assert "nginx binary /nonexistent/nginx not found; nothing was touched" in state["comment"]
    assert sandbox.fingerprint() == before


def status_of(port, path, host_header="odoo.example.com"):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host_header})
        return connection.getresponse().status
    finally:
        connection.close()


def nginx_workers(box):
    """PIDs of the sandbox nginx's workers: a reload replaces them all."""
    with open(os.path.join(box.root, "run/nginx.pid"), encoding="ascii") as handle:
        master = handle.read().strip()
    found = subprocess.run(["pgrep", "-P", master], capture_output=True, text=True, check=False)
    return set(found.stdout.split())


@pytest.mark.parametrize("reload", [True, False])
def test_running_nginx_is_reloaded_only_when_asked(formula, running_nginx, reload):
    box = running_nginx
    assert status_of(box.http_port, "/websocket") == 404  # the stock default site
    workers = nginx_workers(box)
    assert workers
    pillar = box.pillar(
        nginx={"reload": reload},
        odoo={"config": {"enabled": False}, "gevent_port": 1, "workers": 2},
        compose={"enabled": False},
    )
    result = formula.apply(pillar)
    assert result.returncode == 0, result.stdout
    comment = states(result)[TX_ID]["comment"]
    # Nothing listens on port 1: once the new site is live, nginx answers 502.
    deadline = time.monotonic() + 10
    while reload and status_of(box.http_port, "/websocket") != 502:
        assert time.monotonic() < deadline, "the reloaded site never answered"
        time.sleep(0.1)
    if reload:
        assert "nginx reloaded gracefully" in comment
        assert nginx_workers(box) - workers, "no new nginx worker: nginx never reloaded"
    else:
        assert "nginx not reloaded (nginx:reload is false)" in comment
        time.sleep(1)  # a reload signalled anyway would have new workers by now
        assert nginx_workers(box) == workers  # the same workers: no reload at all
        assert status_of(box.http_port, "/websocket") == 404  # the old site serves


def assert_rolled_back(result, box, before, why):
    """The transaction failed for WHY after writing, and put every file back."""
    tx = states(result)[TX_ID]
    assert tx["result"] is False
    assert why in tx["comment"]
    assert "Every file of the run was restored from backup" in tx["comment"]
    assert box.fingerprint() == before


@pytest.mark.core
def test_the_minion_runs_the_salt_of_its_line(formula):
    """The matrix's sessions name the release their minion must run (the
    mixed pair's is older than its master's); by default the tests' own."""
    wanted = os.environ.get("ODOO_WEBSOCKET_MINION_SALT", salt.version.__version__)
    ret = formula.cli.run("test.version", minion_tgt=formula.minion.id)
    assert ret.data == wanted, ret.stdout


@pytest.mark.core
def test_a_failing_websocket_check_rolls_the_run_back(formula, running_nginx):
    """No Odoo answers behind the running nginx: the websocket check after
    the reload fails, and the run puts every file back and says why."""
    box = running_nginx
    before = box.fingerprint()
    pillar = box.pillar(verify={"enabled": True, "timeout": 2},
                        nginx={"listen_addresses": ["127.0.0.1"]})  # fmt: skip
    result = formula.apply(pillar)
    assert_rolled_back(result, box, before, "websocket check FAILED")
    assert status_of(box.http_port, "/websocket") == 404  # the old site still serves


def test_reload_that_nginx_refuses_is_rolled_back(formula, running_nginx):
    """nginx -t does not bind: a port held by another process passes it, and
    the reload then fails in the master. The run must see that, not report
    the signal as success."""
    box = running_nginx
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        before = box.fingerprint()
        pillar = box.pillar(nginx={"http_port": port, "listen_addresses": ["127.0.0.1"]})
        result = formula.apply(pillar)
        assert_rolled_back(result, box, before, "nginx did not take the new configuration")
    # Why, from nginx's error log (read at once, not after the whole wait).
    assert f"{port} failed (98: Address already in use)" in states(result)[TX_ID]["comment"]
    assert status_of(box.http_port, "/websocket") == 404  # the old site still serves


def test_host_connection_upgrade_maps_never_clash_with_the_formulas(formula, sandbox, host):
    # A host map (twice: nginx -t accepts that, the last one wins) stays as it
    # is; the formula's own variable is always defined by its own drop-in.
    for name in ("00-upgrade.conf", "websocket.conf"):
        sandbox.write(
            os.path.join(sandbox.nginx_dir, "conf.d", name),
            "map $http_upgrade $connection_upgrade {\n  default close;\n}\n",
        )
    result = formula.apply(sandbox.pillar())
    assert result.returncode == 0, result.stdout
    assert host.file(sandbox.map_file).contains(r"map \$http_upgrade \$odoo_websocket_connection")
    assert nginx_ok(host, sandbox).rc == 0
    _, servers = parse_site(sandbox.site_file)
    for block in locations(servers[0]).values():
        assert headers(block)["Connection"] == "$odoo_websocket_connection"


def test_tree_broken_before_the_run_is_left_untouched(formula, sandbox):
    default = os.path.join(sandbox.nginx_dir, "sites-available/default")
    broken = (
        open(default)
        .read()
        .replace(
            "\tlocation / {",
            "\tmap $http_upgrade $connection_upgrade { default upgrade; }\n\tlocation / {",
        )
    )
    sandbox.write(default, broken)
    line = (
        broken.splitlines().index("\tmap $http_upgrade $connection_upgrade { default upgrade; }")
        + 1
    )
    before = sandbox.fingerprint()
    result = formula.apply(sandbox.pillar())
    state = states(result)[TX_ID]
    assert state["result"] is False
    assert "already invalid before this change" in state["comment"]
    enabled = os.path.join(sandbox.nginx_dir, "sites-enabled/default")
    assert f'{enabled}:{line}: "map" directive is not allowed here' in state["comment"]
    # The whole host is left as found: compose file and odoo.conf included,
    # and Odoo was not restarted.
    assert sandbox.fingerprint() == before
    assert not os.listdir(sandbox.marker_dir)


def test_candidate_rejected_by_nginx_is_rolled_back(formula, sandbox, host):
    # Another file already defines the formula's upstream name: the new site
    # is valid alone but breaks the tree.
    other = os.path.join(sandbox.nginx_dir, "conf.d/legacy.conf")
    sandbox.write(other, "upstream odoo_websocket_http {\n    server 127.0.0.1:9999;\n}\n")
    before = sandbox.fingerprint()
    result = formula.apply(sandbox.pillar())
    state = states(result)[TX_ID]
    assert state["result"] is False
    assert "nginx would reject the new configuration (staged check" in state["comment"]
    assert "nothing was touched" in state["comment"]
    assert 'duplicate upstream "odoo_websocket_http"' in state["comment"]
    assert state["changes"] == {}
    assert sandbox.fingerprint() == before  # odoo.conf and compose file too
    assert not os.listdir(sandbox.marker_dir)
    assert nginx_ok(host, sandbox).rc == 0
    assert not os.path.exists(os.path.join(sandbox.backup_dir, "journal.json"))


def test_change_rejected_live_is_rolled_back(formula, sandbox, host):
    # A map drop-in in a folder holding nginx's own (etc/) cannot be staged
    # (a private copy of etc/ is no copy of nginx's folder), and nginx.conf
    # does not include it: only the live check can catch the unknown variable.
    # (A folder beside nginx's is staged: test_real_hosts.py.)
    outside_map = os.path.join(sandbox.root, "etc", "odoo_websocket_map.conf")
    before = sandbox.fingerprint()
    pillar = sandbox.pillar(
        nginx={"map_file": outside_map},
        odoo={"config": {"enabled": False}},
        compose={"enabled": False},
    )
    state = states(formula.apply(pillar))[TX_ID]
    assert state["result"] is False
    assert "Staged check not possible" in state["comment"]
    assert "Every file of the run was restored from backup" in state["comment"]
    assert 'unknown "odoo_websocket_connection" variable' in state["comment"]
    assert sandbox.fingerprint() == before
    assert not os.path.exists(outside_map)
    assert nginx_ok(host, sandbox).rc == 0


@pytest.mark.parametrize(
    "overrides, message",
    BAD,
    ids=[m.split(":")[-2] if m.count(":") > 1 else m[:30] for _, m in BAD],
)
def test_bad_pillar_fails_the_run_and_changes_nothing(formula, sandbox, overrides, message):
    # Its paths in the sandbox (a relative one from the minion's own folder).
    overrides = in_sandbox(overrides, sandbox.root, os.readlink(f"/proc/{formula.minion.pid}/cwd"))
    folders = {sandbox.backup_dir, *(path for key, path in paths_in(overrides) if key == "dir")}
    sets = {folder: backup_names(folder) for folder in folders}
    before = sandbox.fingerprint()
    result = formula.apply(sandbox.pillar(**overrides))
    assert result.returncode != 0
    assert message in result.stdout + str(result.data)
    # Refused once, by the settings check, before any concern is planned.
    ran = states(result)
    assert ran["odoo_websocket-settings-validated"]["result"] is False
    for later in (NGINX_ID, ODOO_ID, COMPOSE_ID, TX_ID):
        assert "requisite failed" in ran[later]["comment"], ran[later]
    assert "Invalid pillar, nothing was changed" in result.stdout + str(result.data)
    assert sandbox.fingerprint() == before
    assert not os.listdir(sandbox.marker_dir)
    assert {folder: backup_names(folder) for folder in folders} == sets  # no new backup set


def test_malformed_odoo_conf_fails_its_state_and_is_left_as_is(formula, sandbox):
    sandbox.write(sandbox.odoo_conf, "[options]\nworkers = 1\nworkers = 2\n", mode=0o640)
    before = open(sandbox.odoo_conf, "rb").read()
    result = formula.apply(sandbox.pillar())
    state = states(result)[ODOO_ID]
    assert state["result"] is False
    assert (
        "not a valid odoo.conf, left unchanged: line 3: option 'workers' appears twice"
        in (state["comment"])
    )
    assert open(sandbox.odoo_conf, "rb").read() == before
    assert not os.path.exists(sandbox.marker("odoo-restarted"))


def test_malformed_compose_file_fails_its_state_and_is_left_as_is(formula, sandbox):
    sandbox.write(sandbox.compose_file, "services:\n  web:\n    image: nginx\n")
    before = open(sandbox.compose_file, "rb").read()
    result = formula.apply(sandbox.pillar())
    state = states(result)[COMPOSE_ID]
    assert state["result"] is False
    assert "no service 'odoo' (services: web)" in state["comment"]
    assert open(sandbox.compose_file, "rb").read() == before
    assert not os.path.exists(sandbox.marker("compose-recreated"))


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="needs docker-compose")
def test_compose_candidate_docker_compose_rejects_fails_and_touches_nothing(formula, sandbox):
    """The formula's own parser accepts the file and plans its port change;
    `docker-compose config` refuses the candidate (a typo in the Odoo
    service): the run fails naming the problem, and nothing at all is written,
    odoo.conf and nginx included."""
    text = open(sandbox.compose_file).read()
    sandbox.write(
        sandbox.compose_file,
        text.replace("    image: odoo:17.0\n", "    image: odoo:17.0\n    restrat: always\n"),
    )
    before = sandbox.fingerprint()
    assert len(before) > 5
    result = formula.apply(sandbox.pillar())
    assert result.returncode != 0
    planned = states(result)[COMPOSE_ID]
    assert planned["result"] is False
    assert (
        f"{sandbox.compose_file}: docker-compose config refuses the edited file"
        in planned["comment"]
    )
    assert "Unsupported config option for services.odoo: 'restrat'" in planned["comment"]
    assert "Nothing was changed" in planned["comment"]
    tx = states(result)[TX_ID]
    assert tx["result"] is False and tx["changes"] == {}
    # Every file as found (no candidate left beside the compose file either),
    # no backup set, Odoo neither restarted nor recreated.
    assert sandbox.fingerprint() == before
    assert not os.path.exists(sandbox.backup_dir) or not os.listdir(sandbox.backup_dir)
    assert not os.listdir(sandbox.marker_dir)


def test_execution_module_from_the_cli(formula, sandbox):
    """backups, backup_diff, restore and nginx_test as an operator calls them."""
    original = sandbox.fingerprint()
    assert formula.apply(sandbox.pillar()).returncode == 0
    changed = sandbox.fingerprint()
    cli, target = formula.cli, formula.minion.id
    where = f"backup_dir={sandbox.backup_dir}"

    listed = cli.run("odoo_websocket.backups", where, minion_tgt=target).data
    assert len(listed) == 1  # one transaction: compose, odoo.conf and nginx
    nginx_set = odoo_set = listed[0]
    assert sandbox.site_file in nginx_set["paths"] and sandbox.odoo_conf in odoo_set["paths"]

    diff = cli.run("odoo_websocket.backup_diff", odoo_set["id"], where, minion_tgt=target).data
    assert "+proxy_mode = True" in diff[sandbox.odoo_conf]
    assert "p%ss;word" not in str(diff) and "db_password = ********" in diff[sandbox.odoo_conf]

    for backup in listed:
        extra = [f"conf_file={sandbox.conf_file}", "start=False"] if backup is nginx_set else []
        ret = cli.run("odoo_websocket.restore", backup["id"], where, *extra, minion_tgt=target)
        assert ret.data["result"] is True, ret.data
    assert sandbox.fingerprint() == original
    assert changed != original

    test = cli.run("odoo_websocket.nginx_test", f"conf_file={sandbox.conf_file}", minion_tgt=target)
    assert test.data["ok"] is True and test.data["errors"] == []


def test_salt_publishes_the_operator_commands_and_nothing_else(formula):
    """After saltutil.sync_all, Salt lists the operator's commands, each with
    its documentation; the library they call is not reachable as a command."""
    cli, target = formula.cli, formula.minion.id
    assert cli.run("saltutil.sync_all", minion_tgt=target).returncode == 0
    docs = cli.run("sys.doc", "odoo_websocket", minion_tgt=target).data
    assert set(docs) == set(OPERATOR_COMMANDS), sorted(docs)
    assert all("CLI Example" in text for text in docs.values()), docs
    listed = cli.run("sys.list_functions", "odoo_websocket*", minion_tgt=target).data
    assert set(listed) == set(OPERATOR_COMMANDS), listed
    internal = cli.run("odoo_websocket_plan.build", "{}", minion_tgt=target)
    assert "is not available" in str(internal.data) + internal.stdout, internal


def test_unusable_backup_folder_fails_the_transaction_cleanly(formula, sandbox, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    before = sandbox.fingerprint()
    result = formula.apply(sandbox.pillar(backup={"dir": str(blocker / "backups")}))
    found = states(result)[TX_ID]
    assert found["result"] is False
    assert "cannot use backup folder" in found["comment"]
    assert "nothing was touched" in found["comment"]
    assert found["changes"] == {}
    assert sandbox.fingerprint() == before
    assert not os.listdir(sandbox.marker_dir)


# -- an existing site for the same names (the field's usual state) ------------


def existing_site(box, text, name="odoo"):
    """A plain file in sites-enabled, as many hosts have it (no link)."""
    path = os.path.join(box.nginx_dir, "sites-enabled", name)
    box.write(path, text.replace("listen 80;", f"listen {box.http_port};"))
    return path


def test_existing_sample_site_is_adopted_and_second_run_changes_nothing(formula, sandbox, host):
    path = existing_site(sandbox, ODOO_SAMPLE)
    sample = open(path, "rb").read()
    result = formula.apply(sandbox.pillar())
    assert result.returncode == 0, result.stdout
    tx = states(result)[TX_ID]
    assert f"Adopting the existing site {path}" in tx["comment"]
    # The host's own file is edited in place: its upstreams, map and comments
    # stay, its websocket route goes to the formula's evented upstream; no
    # second site.
    text = open(path).read()
    assert "Managed by Salt" not in text
    assert "map $http_upgrade $connection_upgrade {" in text
    assert not os.path.lexists(sandbox.site_file) and not os.path.lexists(sandbox.site_link)
    check = nginx_ok(host, sandbox)
    assert check.rc == 0 and "conflicting server name" not in check.stderr, check.stderr
    upstreams, servers = parse_site(path)
    assert set(upstreams) == {"odoo", "odoochat", "odoo_websocket_http", "odoo_websocket_evented"}
    routes = locations(servers[0])
    assert directives(routes["/websocket"], "proxy_pass") == [["http://odoo_websocket_evented"]]
    assert directives(routes["/"], "proxy_pass") == [["http://odoo_websocket_http"]]
    assert directives(servers[0], "gzip") == [["on"]]  # the host's server level, as it was
    # The sample is in the run's backup set, byte for byte.
    backup = tx["changes"]["backup"]
    manifest = json.load(open(os.path.join(sandbox.backup_dir, backup, "manifest.json")))
    entry = next(e for e in manifest["files"] if e["path"] == path)
    assert open(os.path.join(sandbox.backup_dir, backup, entry["blob"]), "rb").read() == sample

    # The no-op run starts no nginx at all (no nginx -t, no tree parsed): its
    # binary is a wrapper that logs every call.
    calls = os.path.join(sandbox.root, "nginx-calls")
    wrapper = os.path.join(sandbox.root, "nginx-wrapper")
    real = sandbox.pillar()["odoo_websocket"]["nginx"]["binary"]
    with open(wrapper, "w") as handle:
        handle.write(f'#!/bin/sh\necho "$*" >> {calls}\nexec {real} "$@"\n')
    os.chmod(wrapper, 0o755)
    second = formula.apply(sandbox.pillar(nginx={"binary": wrapper}))
    assert second.returncode == 0, second.stdout
    assert changed(second) == set()
    assert not os.path.exists(calls), open(calls).read()


def assert_planning_refuses(formula, sandbox, message):
    """The nginx plan fails with MESSAGE, the transaction never runs, and the
    host is as it was: files, backups, and no restart."""
    before = sandbox.fingerprint()
    result = formula.apply(sandbox.pillar())
    planned = states(result)[NGINX_ID]
    assert planned["result"] is False
    assert message in planned["comment"]
    assert "Nothing was changed" in planned["comment"]
    assert "requisite failed" in states(result)[TX_ID]["comment"]
    assert sandbox.fingerprint() == before and len(before) > 5
    assert not os.listdir(sandbox.marker_dir)  # Odoo was not restarted
    assert not os.path.exists(sandbox.backup_dir) or not os.listdir(sandbox.backup_dir)


def test_site_also_serving_other_names_is_adopted_and_the_other_kept(formula, sandbox, host):
    """A second, unrelated site in the same file stays byte for byte; the
    Odoo block's other name is kept and reported."""
    shop = "server {" + ODOO_SAMPLE.split("server {")[1].replace(
        "server_name odoo.example.com;", "server_name shop.example.com;"
    )
    sample = ODOO_SAMPLE.replace(
        "server_name odoo.example.com;", "server_name odoo.example.com erp.example.com;"
    )
    path = existing_site(sandbox, sample + shop)
    shop_text = open(path).read().split("server {")[-1]
    result = formula.apply(sandbox.pillar())
    tx = states(result)[TX_ID]
    assert tx["result"] is True, tx["comment"]
    assert "kept names erp.example.com" in tx["comment"]
    assert "1 other server block(s)" in tx["comment"]
    assert open(path).read().endswith(shop_text)
    _, servers = parse_site(path)
    assert directives(servers[0], "server_name") == [["odoo.example.com", "erp.example.com"]]
    assert directives(locations(servers[1])["/"], "proxy_pass") == [["http://odoo"]]
    assert nginx_ok(host, sandbox).rc == 0


@pytest.mark.parametrize("mode", ["fail", "keep"])
def test_existing_site_fail_and_keep(formula, sandbox, host, mode):
    path = existing_site(sandbox, ODOO_SAMPLE)
    line = ODOO_SAMPLE.splitlines().index("server {") + 1
    before = sandbox.fingerprint()
    result = formula.apply(sandbox.pillar(nginx={"existing_site": mode}))
    tx = states(result)[TX_ID]
    if mode == "fail":
        planned = states(result)[NGINX_ID]
        assert planned["result"] is False and tx["result"] is False
        assert f"{path}:{line} already answer(s) for odoo.example.com" in planned["comment"]
        assert "nginx:existing_site" in planned["comment"]
        assert sandbox.fingerprint() == before
        return
    assert tx["result"] is True, tx["comment"]
    assert f"Kept, as nginx:existing_site asks: {path}:{line}" in tx["comment"]
    assert "nginx warns: conflicting server name" in tx["comment"]
    assert open(path).read() == ODOO_SAMPLE.replace("listen 80;", f"listen {sandbox.http_port};")
    assert os.path.isfile(sandbox.site_file)


def test_site_that_nginx_would_not_load_is_an_error(formula, sandbox):
    # nginx.org's packages include conf.d/*.conf only: a sites-enabled link
    # would be silently ignored.
    conf = open(sandbox.conf_file).read()
    include = next(line for line in conf.splitlines() if "sites-enabled" in line)
    sandbox.write(sandbox.conf_file, conf.replace(include, ""))
    before = sandbox.fingerprint()
    result = formula.apply(sandbox.pillar())
    tx = states(result)[TX_ID]
    assert tx["result"] is False
    assert f"{sandbox.site_file} is not loaded by {sandbox.conf_file}" in tx["comment"]
    assert sandbox.fingerprint() == before
    assert not os.listdir(sandbox.marker_dir)


def test_dry_runs_and_rendering_never_recover_or_change(formula, sandbox):
    assert formula.apply(sandbox.pillar()).returncode == 0
    # A run killed right after writing its journal leaves the host half done.
    nginx = {"conf_file": sandbox.conf_file, "binary": "/usr/sbin/nginx", "start": False}
    proc, payload = spawn_engine(
        [{"path": sandbox.site_file, "kind": "file", "data": "# half\n"}],
        nginx, sandbox.backup_dir, fault="write-0",
    )  # fmt: skip
    proc.communicate(payload, timeout=60)
    assert proc.returncode == -9
    journal = os.path.join(sandbox.backup_dir, "journal.json")
    before = sandbox.fingerprint()
    assert open(sandbox.site_file).read() == "# half\n" and os.path.exists(journal)

    dry = formula.apply(sandbox.pillar(), test=True)
    assert "A killed run left a journal" in states(dry)[TX_ID]["comment"]
    shown = formula.cli.run("state.show_sls", "odoo_websocket", minion_tgt=formula.minion.id)
    assert shown.returncode == 0 and TX_ID in shown.data
    listed = formula.cli.run(
        "odoo_websocket.backups", f"backup_dir={sandbox.backup_dir}", minion_tgt=formula.minion.id
    )
    assert len(listed.data) == 2
    assert sandbox.fingerprint() == before and os.path.exists(journal)

    real = formula.apply(sandbox.pillar())  # recovers first, then finds nothing to do
    assert "was rolled back from backup" in states(real)[TX_ID]["comment"]
    assert not os.path.exists(journal)
    assert open(sandbox.site_file).read().startswith("# Managed by Salt")


def test_site_template_overridden_from_file_roots(formula, sandbox, tofs_root):
    custom = "site-custom.conf.jinja"
    pillar = sandbox.pillar()
    pillar["odoo_websocket"]["tofs"] = {
        "source_files": {"odoo_websocket-nginx-site-planned": [custom]}
    }
    result = formula.apply(pillar)
    assert result.returncode == 0, result.stdout
    text = open(sandbox.site_file).read()
    assert "# operator's own template" in text
    assert "server_name odoo.example.com;" in text


def test_adopting_a_site_with_an_https_block_keeps_it(formula, sandbox, host, tmp_path):
    """The sample's usual shape: an https block beside the plain one. With
    nginx:tls off the formula still keeps its listen, certificate and key,
    and sets its websocket route too."""
    cert, key = self_signed(tmp_path)
    https = (
        "server {\n  listen 8443 ssl;\n  server_name odoo.example.com;\n"
        f"  ssl_certificate {cert};\n  ssl_certificate_key {key};\n"
        "  client_max_body_size 200m;\n"
        "  location / { proxy_pass http://odoo; proxy_buffers 16 64k; }\n}\n"
    )
    path = existing_site(sandbox, ODOO_SAMPLE + https)
    result = formula.apply(sandbox.pillar())
    tx = states(result)[TX_ID]
    assert tx["result"] is True, tx["comment"]
    _, servers = parse_site(path)
    assert directives(servers[1], "listen") == [["8443", "ssl"]]
    assert directives(servers[1], "ssl_certificate") == [[str(cert)]]
    assert directives(servers[1], "ssl_certificate_key") == [[str(key)]]
    routes = locations(servers[1])
    assert directives(routes["/websocket"], "proxy_pass") == [["http://odoo_websocket_evented"]]
    assert directives(routes["/"], "proxy_buffers") == [["16", "64k"]]  # the host's, kept
    assert directives(servers[1], "client_max_body_size") == [["200m"]]
    assert nginx_ok(host, sandbox).rc == 0


def test_server_name_change_after_adoption_names_the_step(formula, sandbox, host):
    """A site adopted for one name, then the pillar names another: the
    adopted file still carries the formula's upstreams, so the formula's own
    site would clash with it; the run refuses and says how to go on."""
    path = existing_site(sandbox, ODOO_SAMPLE)
    assert formula.apply(sandbox.pillar()).returncode == 0  # adopted
    before = sandbox.fingerprint()
    result = formula.apply(sandbox.pillar(nginx={"server_name": ["erp.example.com"]}))
    planned = states(result)[NGINX_ID]
    assert planned["result"] is False
    assert f"{path} carries the formula's websocket proxying" in planned["comment"]
    assert "odoo_websocket.clean" in planned["comment"]
    assert sandbox.fingerprint() == before


def test_formula_site_server_name_change_removes_the_earlier_site(formula, sandbox, host):
    assert formula.apply(sandbox.pillar()).returncode == 0  # the formula's own site
    result = formula.apply(sandbox.pillar(nginx={"server_name": ["erp.example.com"]}))
    assert result.returncode == 0, result.stdout
    _, servers = parse_site(sandbox.site_file)
    assert directives(servers[0], "server_name") == [["erp.example.com"]]
    assert nginx_ok(host, sandbox).rc == 0


def test_failing_restart_command_rolls_everything_back(formula, sandbox):
    before = sandbox.fingerprint()
    pillar = sandbox.pillar(compose={"recreate_cmd": "echo cannot pull image >&2; exit 3"})
    why = "recreate odoo failed (exit 3): cannot pull image"
    assert_rolled_back(formula.apply(pillar), sandbox, before, why)


def test_linked_odoo_conf_is_edited_at_its_target(formula, sandbox):
    """Docker hosts link /etc/odoo/odoo.conf to the compose project's config/
    (what the container mounts): the target is edited with its mode and owner,
    the link stays, and no world-readable copy appears."""
    target = os.path.join(os.path.dirname(sandbox.compose_file), "config", "odoo.conf")
    os.makedirs(os.path.dirname(target))
    os.rename(sandbox.odoo_conf, target)
    os.chown(target, 101, 101)
    os.chmod(target, 0o640)
    os.symlink(target, sandbox.odoo_conf)
    result = formula.apply(sandbox.pillar())
    assert result.returncode == 0, result.stdout
    assert os.readlink(sandbox.odoo_conf) == target
    assert "proxy_mode = True" in open(target).read()
    stat = os.stat(target)
    assert (stat.st_uid, stat.st_gid, stat.st_mode & 0o777) == (101, 101, 0o640)
    assert f"its target {target} is edited, the link stays" in states(result)[ODOO_ID]["comment"]


def test_linked_odoo_conf_leading_to_a_system_file_is_refused(formula, sandbox):
    os.unlink(sandbox.odoo_conf)
    os.symlink("/usr/share/common-licenses/Apache-2.0", sandbox.odoo_conf)
    before = sandbox.fingerprint()
    result = formula.apply(sandbox.pillar())
    planned = states(result)[ODOO_ID]
    assert planned["result"] is False
    assert (
        "links to /usr/share/common-licenses/Apache-2.0, a system file: refused"
        in (planned["comment"])
    )
    assert sandbox.fingerprint() == before
    assert not os.listdir(sandbox.marker_dir)


def test_link_a_deploy_user_controls_may_not_lead_to_roots_files(formula, sandbox):
    """A deploy user who owns the compose project could repoint its links:
    the formula (root) then edits only files that user owns anyway."""
    project = os.path.dirname(sandbox.compose_file)
    root_owned = os.path.join(sandbox.root, "etc/odoo/root-only.conf")
    sandbox.write(root_owned, open(sandbox.odoo_conf).read(), mode=0o600)
    link = os.path.join(project, "odoo.conf")
    os.symlink(root_owned, link)
    os.lchown(link, 1000, 1000)
    os.chown(project, 1000, 1000)
    before = sandbox.fingerprint()
    result = formula.apply(sandbox.pillar(odoo={"config": {"file": link}}))
    planned = states(result)[ODOO_ID]
    assert planned["result"] is False
    assert "owned by uid 0, while uid 1000 controls the link" in planned["comment"]
    assert sandbox.fingerprint() == before
