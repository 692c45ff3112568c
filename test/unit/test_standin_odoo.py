"""The stand-in Odoo must reject what Odoo rejects and route the bus by
workers exactly as Odoo does (facts file, sections 1-4), or tests that pass
against it mean nothing. Real sockets on loopback, a real websocket client."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from rig import probe
from rig.sandbox import REPO
from rig.standin_odoo import BIND_ERROR, handshake_problem

STANDIN = os.path.join(REPO, "tools", "rig", "standin_odoo.py")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Odoo:
    def __init__(self, tmp_path, version="17.0", ping_interval=45.0, **options):
        self.http_port, self.evented_port = free_port(), free_port()
        evented_key = "gevent_port" if int(version.split(".")[0]) >= 16 else "longpolling_port"
        options = {
            "http_interface": "127.0.0.1",
            "http_port": self.http_port,
            evented_key: self.evented_port,
            **options,
        }
        self.conf = tmp_path / "odoo.conf"
        self.write(options)
        self.log = tmp_path / "odoo.log"
        self.proc = subprocess.Popen(
            [sys.executable, STANDIN, "--config", str(self.conf), "--odoo-version", version,
             "--log", str(self.log), "--ping-interval", str(ping_interval)]
        )  # fmt: skip
        # Both ports: the stand-in opens them one after the other.
        ports = [self.http_port] + ([self.evented_port] if int(options.get("workers", 0)) else [])
        for port in ports:
            wait_for(lambda port=port: probe.port_answers("127.0.0.1", port))

    def write(self, options):
        text = "[options]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())
        self.conf.write_text(text)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def odoo(tmp_path, request):
    marker = request.node.get_closest_marker("odoo")
    server = Odoo(tmp_path, **(marker.kwargs if marker else {}))
    yield server
    server.stop()


def headers(**changes):
    sent = probe.browser_headers("odoo.example.com")
    for name, value in changes.items():
        wanted = name.replace("_", "-").lower()
        name = next((key for key in sent if key.lower() == wanted), wanted)
        if value is None:
            sent.pop(name, None)
        else:
            sent[name] = value
    return sent


@pytest.mark.odoo(workers=2)
def test_prefork_websocket_on_evented_port_subscribes(odoo):
    session = probe.websocket_session("127.0.0.1", odoo.evented_port, "odoo.example.com")
    assert session["status"] == 101
    assert session["subscribed"]


@pytest.mark.odoo(workers=2)
def test_prefork_websocket_on_http_port_is_500_with_odoo_log_line(odoo):
    session = probe.websocket_session("127.0.0.1", odoo.http_port, "odoo.example.com")
    assert session["status"] == 500
    assert BIND_ERROR in odoo.log.read_text()


@pytest.mark.odoo(workers=0)
def test_threaded_mode_serves_websocket_on_http_port_and_no_evented_port(odoo):
    session = probe.websocket_session("127.0.0.1", odoo.http_port, "odoo.example.com")
    assert session["status"] == 101 and session["subscribed"]
    assert not probe.port_answers("127.0.0.1", odoo.evented_port)


@pytest.mark.odoo(workers=2)
@pytest.mark.parametrize(
    "changes, status, text",
    [
        ({"origin": None}, 400, "Empty or missing header(s): origin"),
        ({"origin": ""}, 400, "Empty or missing header(s): origin"),
        ({"host": None, "origin": None}, 400, "Empty or missing header(s): host, origin"),
        ({"upgrade": None}, 400, "Empty or missing header(s): upgrade"),
        ({"upgrade": "h2c"}, 400, "Invalid upgrade header"),
        ({"connection": "keep-alive"}, 400, "Invalid connection header"),
        ({"connection": "close"}, 400, "Invalid connection header"),
        ({"sec_websocket_version": "8"}, 426, ""),
        ({"sec_websocket_key": "not base64!"}, 400, "Sec-WebSocket-Key should be b64 encoded"),
        ({"sec_websocket_key": "c2hvcnQ="}, 400, "Sec-WebSocket-Key should be of length 16"),
        ({"connection": "keep-alive, Upgrade"}, 101, ""),
        ({"upgrade": "WebSocket"}, 101, ""),
    ],
)
def test_handshake_rules_match_odoo(odoo, changes, status, text):
    got, found, body = probe.raw_handshake(
        "127.0.0.1", odoo.evented_port, "/websocket", headers(**changes)
    )
    assert got == status
    assert text in body
    if status == 426:
        assert found["sec-websocket-version"] == "13"
    if status == 101:
        assert found["upgrade"] == "websocket"


def test_handshake_rules_are_pure_functions_too():
    assert handshake_problem({k.lower(): v for k, v in headers().items()}) is None
    assert b"Empty or missing header(s): origin" in handshake_problem(
        {k.lower(): v for k, v in headers(origin=None).items()}
    )


@pytest.mark.odoo(workers=2, ping_interval=0.3)
def test_idle_websocket_gets_pinged(odoo):
    with socket.create_connection(("127.0.0.1", odoo.evented_port), timeout=5) as sock:
        lines = ["GET /websocket HTTP/1.1"] + [f"{k}: {v}" for k, v in headers().items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        started = time.monotonic()
        while len(rest) < 2:
            rest += sock.recv(2)
        # An unmasked, final ping frame with no payload, after the idle delay.
        assert rest[:2] == b"\x89\x00"
        assert time.monotonic() - started >= 0.2


@pytest.mark.odoo(proxy_mode="True")
def test_proxy_mode_applies_forwarded_headers_only_with_forwarded_host(odoo):
    forwarded = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7", "X-Forwarded-Proto": "https"}
    _, _, body = probe.http_get(
        "127.0.0.1", odoo.http_port, "/web/whoami", "backend",
        {**forwarded, "X-Forwarded-Host": "erp.example.org"},
    )  # fmt: skip
    assert '"remote_addr": "198.51.100.7"' in body  # the last entry is trusted
    assert '"scheme": "https"' in body and '"host": "erp.example.org"' in body
    _, _, body = probe.http_get("127.0.0.1", odoo.http_port, "/web/whoami", "backend", forwarded)
    assert '"remote_addr": "127.0.0.1"' in body and '"scheme": "http"' in body


@pytest.mark.odoo(proxy_mode="False")
def test_without_proxy_mode_forwarded_headers_are_ignored(odoo):
    _, _, body = probe.http_get(
        "127.0.0.1", odoo.http_port, "/web/whoami", "backend",
        {"X-Forwarded-Host": "erp.example.org", "X-Forwarded-For": "203.0.113.9"},
    )  # fmt: skip
    assert '"remote_addr": "127.0.0.1"' in body and '"host": "backend"' in body


@pytest.mark.odoo(version="15.0", workers=2)
def test_odoo_15_long_polling_on_evented_port_only(odoo):
    assert probe.long_polling("127.0.0.1", odoo.evented_port, "x")["polled"]
    assert probe.long_polling("127.0.0.1", odoo.http_port, "x")["status"] == 500
    assert probe.websocket_session("127.0.0.1", odoo.evented_port, "x")["status"] == 404


@pytest.mark.odoo(version="17.0", workers=2)
def test_page_opens_websocket_on_page_origin(odoo):
    status, _, body = probe.http_get("127.0.0.1", odoo.http_port, "/web", "odoo.example.com")
    assert status == 200
    assert 'location.host\n    + "/websocket?version=17.0-1"' in body


@pytest.mark.odoo(workers=0)
def test_sighup_rereads_config_and_rebinds(odoo):
    assert not probe.port_answers("127.0.0.1", odoo.evented_port)
    odoo.write(
        {"http_interface": "127.0.0.1", "http_port": odoo.http_port,
         "gevent_port": odoo.evented_port, "workers": 2}
    )  # fmt: skip
    odoo.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: probe.port_answers("127.0.0.1", odoo.evented_port))


def test_compose_publishing_follows_host_ip(tmp_path):
    from rig.standin_odoo import published_addresses

    compose = tmp_path / "compose.yml"
    compose.write_text(
        "services:\n  odoo:\n    ports:\n"
        '      - "8069:8069"\n      - "127.0.0.1:8072:8072"\n      - "[::1]:18069:8069"\n'
        "      - target: 8072\n        published: 9072\n        host_ip: 127.0.0.2\n"
    )
    assert published_addresses(str(compose), "odoo", 8069) == [("0.0.0.0", 8069), ("::1", 18069)]
    assert published_addresses(str(compose), "odoo", 8072) == [
        ("127.0.0.1", 8072),
        ("127.0.0.2", 9072),
    ]


@pytest.mark.parametrize(
    "entry",
    [
        '"8069:8069:"',  # a stray colon
        '"127.0.0.1::8069"',  # docker would pick a random host port
        '"8069-8070:8069-8070"',  # a range
        '"localhost:8069:8069"',  # docker wants an address
        '"8069:8069/http"',
        '"odoo:8069"',
        '"99999:8069"',
        "{published: 8069}",  # long syntax without a target
    ],
)
def test_compose_port_entries_it_cannot_read_are_errors(tmp_path, entry):
    """Skipping them would publish nothing: "port refused" would pass."""
    from rig.standin_odoo import published_addresses

    compose = tmp_path / "compose.yml"
    compose.write_text(f'services:\n  odoo:\n    ports:\n      - "8072:8072"\n      - {entry}\n')
    with pytest.raises(ValueError, match="port entry|port out of range|not an IP address"):
        published_addresses(str(compose), "odoo", 8069)


def test_restart_onto_an_unreadable_compose_file_stops_odoo_loudly(tmp_path):
    port = free_port()
    conf, compose, log = tmp_path / "odoo.conf", tmp_path / "compose.yml", tmp_path / "odoo.log"
    conf.write_text("[options]\nworkers = 0\n")
    compose.write_text(f'services:\n  odoo:\n    ports:\n      - "127.0.0.1:{port}:8069"\n')
    proc = subprocess.Popen(
        [sys.executable, STANDIN, "--config", str(conf), "--compose", str(compose),
         "--log", str(log), "--pidfile", str(tmp_path / "odoo.pid")],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: probe.port_answers("127.0.0.1", port))
        compose.write_text(f'services:\n  odoo:\n    ports:\n      - "127.0.0.1::{port}:8069"\n')
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(10) != 0  # not an Odoo that runs and publishes nothing
    finally:
        proc.kill()
        stderr = proc.communicate()[1]
    assert "cannot read port entry '127.0.0.1::" in stderr
    assert "restart failed" in log.read_text()
    assert not (tmp_path / "odoo.pid").exists()
    # At start, the same entry stops it at once.
    started = subprocess.run(
        [sys.executable, STANDIN, "--config", str(conf), "--compose", str(compose)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert started.returncode != 0 and "cannot read port entry" in started.stderr
