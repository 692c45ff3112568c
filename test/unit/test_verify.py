"""odoo_websocket_verify against real servers on loopback: the stand-in Odoo
(rig/standin_odoo.py) run as a subprocess, a websockets server for close
codes, and a one-request recorder that shows exactly what was sent. No network
mocks; only Salt's network interfaces are faked, to test address choice."""

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
from websockets.sync.server import serve

import odoo_websocket_check_addresses
import odoo_websocket_exposure
import odoo_websocket_verify as verify
from rig.sandbox import REPO

STANDIN = os.path.join(REPO, "tools", "rig", "standin_odoo.py")
SITE = "odoo.example.com"
WERKZEUG_400 = (
    "<!doctype html>\n<html lang=en>\n<title>400 Bad Request</title>\n"
    "<h1>Bad Request</h1>\n<p>Empty or missing header(s): origin</p>\n"
)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port):
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Standin:
    """The stand-in Odoo on loopback ports, as test_standin_odoo.py runs it."""

    def __init__(self, folder, version="17.0", workers=0, http_port=None):
        self.http_port, self.evented_port = http_port or free_port(), free_port()
        self.workers = workers
        evented_key = "gevent_port" if int(version.split(".")[0]) >= 16 else "longpolling_port"
        self.log = folder / "odoo.log"
        conf = folder / "odoo.conf"
        conf.write_text(
            "[options]\nhttp_interface = 127.0.0.1\n"
            f"http_port = {self.http_port}\n{evented_key} = {self.evented_port}\n"
            f"workers = {workers}\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, STANDIN, "--config", str(conf), "--odoo-version", version,
             "--log", str(self.log)]
        )  # fmt: skip

    def ready(self, timeout=10):
        deadline = time.monotonic() + timeout
        # Both ports: the stand-in opens them one after the other.
        ports = [self.http_port] + ([self.evented_port] if self.workers else [])
        while not all(map(listening, ports)):
            assert time.monotonic() < deadline, "stand-in Odoo did not start"
            time.sleep(0.05)
        return self

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def odoo(tmp_path):
    """start(version=..., workers=...) -> a listening stand-in; all stop at teardown."""
    started = []

    def start(**options):
        folder = tmp_path / f"odoo{len(started)}"
        folder.mkdir()
        started.append(Standin(folder, **options))
        return started[-1].ready()

    yield start
    for server in started:
        server.stop()


class Recorder:
    """A one-request HTTP server on loopback: keeps the request it gets and
    answers REPLY, or holds the connection open when REPLY is None."""

    def __init__(self, reply=None, tls=None):
        self.reply, self.tls, self.sni = reply, tls, None
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.request, self.release = None, threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.server.accept()
        if self.tls:
            self.tls.sni_callback = lambda _sock, name, _ctx: setattr(self, "sni", name)
            conn = self.tls.wrap_socket(conn, server_side=True)
        with conn:
            data = b""
            while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            line, *lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)
            }
            while len(body) < int(headers.get("content-length", 0)):
                body += conn.recv(65536)
            self.request = (line, headers, body)
            if self.reply is None:
                self.release.wait(10)
            else:
                conn.sendall(self.reply)

    def close(self):
        self.release.set()
        self.server.close()
        self.thread.join(10)


@pytest.fixture
def recorder():
    made = []

    def make(reply=None, tls=None):
        made.append(Recorder(reply, tls))
        return made[-1]

    yield make
    for item in made:
        item.close()


def http_reply(status, body="", headers=""):
    body = body.encode()
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}Connection: close\r\n"
    return head.encode() + b"\r\n" + body


@pytest.fixture(scope="module")
def tls_server_context(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=other"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def websocket_server():
    """start(handler) -> port of a websockets server on loopback."""
    servers = []

    def start(handler):
        server = serve(handler, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.socket.getsockname()[1]

    yield start
    for server in servers:
        server.shutdown()


# -- the websocket handshake (Odoo 16+) ------------------------------------


def test_threaded_odoo_serves_websocket_on_http_port(odoo):
    server = odoo(workers=0)
    result = verify.handshake(SITE, "127.0.0.1", server.http_port)
    assert result["ok"] is True and result["status"] == 101
    assert result["check"] == "websocket handshake"
    host = f"{SITE}:{server.http_port}"
    assert (
        result["detail"]
        == f"101 Switching Protocols via 127.0.0.1:{server.http_port} (Host {host})"
    )
    assert 0 < result["latency_ms"] < 1000


def test_prefork_http_port_answers_500_with_first_body_line(odoo):
    server = odoo(workers=2)
    result = verify.handshake(SITE, "127.0.0.1", server.http_port)
    assert result["ok"] is False and result["status"] == 500
    assert result["detail"] == "HTTP 500 INTERNAL SERVER ERROR: Internal Server Error"
    assert "Couldn't bind the websocket" in server.log.read_text()
    assert verify.handshake(SITE, "127.0.0.1", server.evented_port)["status"] == 101


def test_nothing_listening_is_connection_refused():
    port = free_port()
    result = verify.handshake(SITE, "127.0.0.1", port)
    assert result == dict(
        result, ok=False, status=None, detail=f"connection refused by 127.0.0.1:{port}"
    )


def test_silent_server_is_a_timeout_not_an_exception(recorder):
    server = recorder(reply=None)  # accepts, reads the request, never answers
    result = verify.handshake(SITE, "127.0.0.1", server.port, timeout=1)
    assert result["ok"] is False and result["status"] is None
    assert result["detail"] == f"timed out talking to 127.0.0.1:{server.port}"


def test_sends_host_and_origin_of_the_site_and_reports_odoo_400_text(recorder):
    server = recorder(http_reply("400 BAD REQUEST", WERKZEUG_400))
    result = verify.handshake(SITE, "127.0.0.1", server.port, timeout=3)
    line, headers, _ = server.request
    assert line == "GET /websocket?version=odoo_websocket-verify HTTP/1.1"
    assert headers["host"] == f"{SITE}:{server.port}"
    assert headers["origin"] == f"http://{SITE}:{server.port}"
    assert headers["upgrade"] == "websocket" and headers["sec-websocket-version"] == "13"
    assert result["ok"] is False and result["status"] == 400
    assert result["detail"] == "HTTP 400 BAD REQUEST: Empty or missing header(s): origin"


def test_host_and_origin_omit_the_default_port():
    assert verify._site(SITE, 80, False) == (SITE, f"http://{SITE}")
    assert verify._site(SITE, 443, True) == (SITE, f"https://{SITE}")
    assert verify._site(SITE, 443, False) == (f"{SITE}:443", f"http://{SITE}:443")


@pytest.mark.parametrize("path", ["/websocket", "/longpolling"])
def test_tls_sends_site_as_sni_and_ignores_the_certificate(recorder, tls_server_context, path):
    server = recorder(http_reply("400 BAD REQUEST", WERKZEUG_400), tls=tls_server_context)
    result = verify.handshake(SITE, "127.0.0.1", server.port, tls=True, realtime_path=path)
    _, headers, _ = server.request
    assert server.sni == SITE
    assert headers["origin"] == f"https://{SITE}:{server.port}"
    assert result["status"] == 400 and result["ok"] is False


@pytest.mark.parametrize("target", [f"https://{SITE}/websocket", "/web/login"])
def test_redirect_is_reported_with_its_target(recorder, target):
    # websockets fails differently on each (InvalidURI, ValueError): same report.
    server = recorder(http_reply("301 Moved Permanently", "", f"Location: {target}\r\n"))
    result = verify.handshake(SITE, "127.0.0.1", server.port)
    assert result["ok"] is False and result["status"] == 301
    assert result["detail"] == f"HTTP 301 Moved Permanently: redirects to {target}"


def test_close_after_subscribe_is_a_failure_with_code_and_reason(websocket_server):
    def handler(websocket):
        websocket.recv()
        websocket.close(1011, "boom")

    result = verify.handshake(SITE, "127.0.0.1", websocket_server(handler))
    assert result["ok"] is False and result["status"] == 101
    assert result["detail"] == "closed with 1011 boom after subscribe"


def test_silence_after_subscribe_and_odoo_outdated_version_close_are_ok(websocket_server):
    subscribed = []

    def silent(websocket):
        subscribed.append(json.loads(websocket.recv()))
        for _ in websocket:  # until the client closes
            pass

    def outdated(websocket):
        websocket.close(1000, "OUTDATED_VERSION")

    started = time.monotonic()
    assert verify.handshake(SITE, "127.0.0.1", websocket_server(silent))["ok"] is True
    assert time.monotonic() - started >= verify.SUBSCRIBE_WAIT
    assert subscribed == [{"event_name": "subscribe", "data": {"channels": [], "last": 0}}]
    assert verify.handshake(SITE, "127.0.0.1", websocket_server(outdated))["ok"] is True


# -- long polling (Odoo 15 and earlier) ------------------------------------


def test_long_polling_on_odoo_15(odoo):
    server = odoo(version="15.0", workers=0)
    result = verify.handshake(SITE, "127.0.0.1", server.http_port, realtime_path="/longpolling")
    assert result["ok"] is True and result["status"] == 200
    assert result["check"] == "long polling"
    closed = verify.handshake(SITE, "127.0.0.1", free_port(), realtime_path="/longpolling")
    assert closed["ok"] is False and "connection refused" in closed["detail"]


def test_long_polling_on_odoo_17_is_404(odoo):
    server = odoo(version="17.0")
    result = verify.handshake(SITE, "127.0.0.1", server.http_port, realtime_path="/longpolling")
    assert result["ok"] is False and result["status"] == 404
    assert result["detail"].endswith(": The requested URL was not found on the server.")


def test_long_polling_request_and_a_held_poll(recorder):
    server = recorder(reply=None)  # holds the poll open, as Odoo does
    started = time.monotonic()
    result = verify.handshake(SITE, "127.0.0.1", server.port, realtime_path="/longpolling")
    assert result["ok"] is True and result["status"] is None
    assert time.monotonic() - started >= verify.POLL_HOLD
    line, headers, body = server.request
    assert line == "POST /longpolling/poll HTTP/1.1"
    assert headers["host"] == f"{SITE}:{server.port}"
    assert headers["origin"] == f"http://{SITE}:{server.port}"
    assert json.loads(body) == {
        "jsonrpc": "2.0", "method": "call", "params": {"channels": [], "last": 0}
    }  # fmt: skip


def test_unknown_realtime_path_is_refused():
    with pytest.raises(verify.SaltInvocationError):
        verify.handshake(SITE, realtime_path="/bus")


# -- Odoo's own ports ------------------------------------------------------


def test_exposed_ports_finds_only_listening_ports():
    with socket.create_server(("127.0.0.1", 0)) as server:
        open_port, closed_port = server.getsockname()[1], free_port()
        found = odoo_websocket_exposure.exposed_ports(
            [open_port, closed_port], addresses=["127.0.0.1"]
        )
    assert found == [{"address": "127.0.0.1", "port": open_port}]


def test_exposed_ports_over_ipv6():
    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server:
        port = server.getsockname()[1]
        assert odoo_websocket_exposure.exposed_ports([port], addresses="::1") == [
            {"address": "::1", "port": port}
        ]


def _interfaces(inet, inet6):
    """network.interfaces' shape: one address per entry."""
    return lambda: {
        "lo": {"inet": [{"address": a} for a in inet if a.startswith("127.")]},
        "eth0": {
            "inet": [{"address": a} for a in inet if not a.startswith("127.")],
            "inet6": [{"address": a} for a in inet6],
        },
    }


def test_default_addresses_skip_loopback_and_link_local(monkeypatch):
    found = _interfaces(["10.1.2.3", "127.0.0.1"], ["::1", "fe80::1", "2001:db8::5"])
    monkeypatch.setattr(odoo_websocket_exposure.salt.utils.network, "interfaces", lambda: found())
    assert odoo_websocket_exposure.host_addresses() == ["10.1.2.3", "2001:db8::5"]
    # Only loopback: nothing to try, even with a port listening there.
    found = _interfaces(["127.0.0.1"], ["::1"])
    with socket.create_server(("127.0.0.1", 0)) as server:
        assert odoo_websocket_exposure.exposed_ports([server.getsockname()[1]]) == []


# -- verdicts --------------------------------------------------------------


def test_check_passes_and_summarises(odoo):
    server = odoo(workers=0)
    port = server.http_port
    verdict = verify.check(SITE, port=port, odoo_ports=[free_port()], addresses=["127.0.0.1"])
    assert verdict["ok"] is True
    names = [item["name"] for item in verdict["checks"]]
    assert names == ["websocket handshake", "page", "Odoo ports"]
    line = verify.summary(verdict)
    assert line.startswith(
        f"websocket verified: 101 Switching Protocols via 127.0.0.1:{port} (Host {SITE}:{port}) in "
    )
    assert line.endswith(" ms; /web/login: 200 OK; Odoo ports not reachable on 127.0.0.1")


def test_check_fails_when_an_odoo_port_answers(odoo):
    server = odoo(workers=0)
    port = server.http_port
    verdict = verify.check(SITE, port=port, odoo_ports=(port,), addresses=["127.0.0.1"])
    assert verdict["ok"] is False
    assert verdict["checks"][0]["ok"] is True and verdict["checks"][1]["ok"] is True
    bypass = f"Odoo port {port} answers on 127.0.0.1: browsers can bypass nginx"
    assert verdict["checks"][2] == {"name": f"Odoo port {port}", "ok": False, "detail": bypass}
    assert verify.summary(verdict) == f"websocket check FAILED: {bypass}"


def test_check_fails_when_only_the_websocket_works(websocket_server):
    """A route that holds websockets but no page (say the HTTP upstream points
    at the evented port): pages would fail in the browser, so the check does."""

    def bus(websocket):
        for _ in websocket:
            websocket.send("[]")

    port = websocket_server(bus)
    verdict = verify.check(SITE, port=port, odoo_ports=[free_port()], addresses=["127.0.0.1"])
    assert verdict["checks"][0]["ok"] is True
    page = verdict["checks"][1]
    assert page["name"] == "page" and page["ok"] is False
    assert page["detail"].startswith("/web/login: HTTP 426")
    assert verdict["ok"] is False
    assert verify.summary(verdict).startswith("websocket check FAILED: /web/login: HTTP 426")


def test_summary_of_a_refused_handshake():
    verdict = {
        "ok": False,
        "latency_ms": 3.0,
        "checks": [
            {"name": "websocket handshake", "ok": False,
             "detail": "HTTP 400 Bad Request: Empty or missing header(s): origin"},
            {"name": "Odoo ports", "ok": True, "detail": "Odoo ports not reachable on 10.1.2.3"},
        ],
    }  # fmt: skip
    assert verify.summary(verdict) == (
        "websocket check FAILED: HTTP 400 Bad Request: Empty or missing header(s): origin"
    )


def test_wait_returns_once_odoo_listens(tmp_path):
    port = free_port()
    late = []
    thread = threading.Timer(1.0, lambda: late.append(Standin(tmp_path, http_port=port)))
    thread.start()
    try:
        verdict = verify.wait(SITE, port=port, odoo_ports=[], addresses=[], deadline=10)
    finally:
        thread.join()
        for server in late:
            server.stop()
    assert verdict["ok"] is True and verdict["checks"][0]["detail"].startswith("101 ")
    assert 1.0 <= verdict["waited_s"] < 8


def test_wait_gives_up_at_the_deadline():
    port = free_port()
    verdict = verify.wait(SITE, port=port, odoo_ports=[], addresses=[], deadline=3)
    assert verdict["ok"] is False
    assert verdict["checks"][0]["detail"] == f"connection refused by 127.0.0.1:{port}"
    assert 3 <= verdict["waited_s"] <= 4


# -- every address nginx may hand the site to another block (issue 23, 11) --

PROXIED = """server {{
    listen {port}; listen [::]:{port};
    server_name odoo.example.com;
    location / {{
        proxy_pass http://127.0.0.1:{odoo};
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_set_header Host $host;
    }}
}}
"""


@pytest.fixture
def nginx_site(odoo, tmp_path):
    """A real nginx (the sandbox's Debian tree) proxying odoo.example.com on
    every address to the stand-in Odoo: (sandbox, port)."""
    from rig.sandbox import Sandbox

    box = Sandbox(str(tmp_path / "box"), http_port=free_port()).create()
    site = PROXIED.format(port=box.http_port, odoo=odoo(workers=0).http_port)
    box.write(os.path.join(box.nginx_dir, "sites-enabled", "odoo"), site)
    yield box
    subprocess.run(["nginx", "-c", box.conf_file, "-s", "stop"], capture_output=True, check=False)


def test_check_knocks_at_each_wildcard_the_site_listens_on(nginx_site):
    """The site listens on IPv4's and IPv6's wildcards: the check proves the
    handshake at a loopback address of each (a namespace host proves one on
    its own address: test_real_hosts.py). Without the tree, IPv4's alone."""
    box, port = nginx_site, nginx_site.http_port
    subprocess.run(["nginx", "-c", box.conf_file], check=True)
    args = {"port": port, "odoo_ports": [free_port()], "addresses": ["127.0.0.1"], "timeout": 2}
    names = [item["name"] for item in verify.check(SITE, **args)["checks"]]
    assert not [name for name in names if " at " in name]
    verdict = verify.check(SITE, conf_file=box.conf_file, **args)
    assert verdict["ok"] is True, verify.summary(verdict)
    knocked = [item for item in verdict["checks"] if item["name"].startswith("websocket handshake")]
    ipv6 = odoo_websocket_exposure.local(["::1"])
    wanted = ["websocket handshake"] + [f"websocket handshake at {a}" for a in ipv6]
    assert [item["name"] for item in knocked] == wanted
    assert all(item["detail"].startswith("101 Switching Protocols") for item in knocked)


def test_check_never_knocks_on_an_address_the_host_does_not_have(nginx_site):
    """An address nginx may listen on without having it (ip_nonlocal_bind),
    or a host name: a connection there would leave the machine (or go where
    a resolver says), so it is never made."""
    box = nginx_site
    box.write(os.path.join(box.nginx_dir, "sites-enabled", "elsewhere"),
              f"server {{ listen 192.0.2.77:{box.http_port}; listen localhost:{box.http_port}; "
              "return 204; }\n")  # fmt: skip
    tree = odoo_websocket_check_addresses.Tree(box.conf_file)
    # Only IPv6's loopback (for the [::] listen) is knocked on besides 127.0.0.1.
    assert tree.knock(SITE, "127.0.0.1", box.http_port) == (
        "127.0.0.1",
        odoo_websocket_exposure.local(["::1"]),
    )


def test_a_status_page_on_the_loopback_address_is_no_shadow(nginx_site):
    """A status page on 127.0.0.1 (and [::1]) takes local connections only:
    the check knocks at another loopback address, where nginx answers as
    for a browser, and passes."""
    box, port = nginx_site, nginx_site.http_port
    status = f"server {{ listen 127.0.0.1:{port}; listen [::1]:{port}; return 204; }}\n"
    box.write(os.path.join(box.nginx_dir, "sites-enabled", "status"), status)
    subprocess.run(["nginx", "-c", box.conf_file], check=True)
    args = {"port": port, "odoo_ports": [free_port()], "addresses": ["127.0.0.1"], "timeout": 2}
    assert verify.check(SITE, **args)["ok"] is False  # 127.0.0.1 is the status page's
    verdict = verify.check(SITE, conf_file=box.conf_file, **args)
    assert verdict["ok"] is True, verify.summary(verdict)
    assert "via 127.0.0.2:" in verdict["checks"][0]["detail"]


def test_a_tree_that_cannot_be_read_is_said(tmp_path, nginx_site):
    box = nginx_site
    subprocess.run(["nginx", "-c", box.conf_file], check=True)
    args = {"port": box.http_port, "odoo_ports": [free_port()], "addresses": ["127.0.0.1"]}
    verdict = verify.check(SITE, conf_file=str(tmp_path / "missing.conf"), **args)
    said = {item["name"]: item for item in verdict["checks"]}["other addresses"]
    assert said["detail"].startswith("other addresses not checked: nginx's tree"), said


@pytest.mark.parametrize(
    "own, others, address, main, more",
    [
        # Every address: each wildcard once, and another site's own address.
        ({"*", "[::]"}, {"10.9.9.9"}, "127.0.0.1", "127.0.0.1", ["::1", "10.9.9.9"]),
        # Status pages on both loopback addresses: another IPv4 one, no IPv6 one.
        ({"*", "[::]"}, {"127.0.0.1", "[::1]"}, "127.0.0.1", "127.0.0.2", []),
        # The site on IPv4 only: IPv6 addresses never reached it.
        ({"*"}, {"[::1]", "[fd00::9]"}, "127.0.0.1", "127.0.0.1", []),
        # The site on one address only: another address never served it.
        ({"127.0.0.1"}, {"10.9.9.9", "*"}, "127.0.0.1", "127.0.0.1", []),
        ({"10.0.0.5", "[::]"}, {"*"}, "10.0.0.5", "10.0.0.5", ["::1"]),
        # A host name: kept here, never knocked at (Tree.knock keeps local ones).
        ({"*"}, {"localhost"}, "127.0.0.1", "127.0.0.1", ["localhost"]),
    ],
)
def test_where_the_check_knocks(own, others, address, main, more):
    assert odoo_websocket_check_addresses.where(own, others, address) == (main, more)
    assert odoo_websocket_exposure.local(["localhost", "127.0.0.2"]) == ["127.0.0.2"]
