#!/usr/bin/env python3
"""
A stand-in for Odoo at the points the formula touches (see
../shared/odoo-websocket-facts.md, sections 1-4). Standard library only, so it
runs in any test host.

It reads odoo.conf like Odoo (RawConfigParser, [options]) and honours
`workers`, `http_port`, `gevent_port` / `longpolling_port`, `http_interface`
and `proxy_mode`:

- HTTP port: a page whose script opens ws(s)://<page origin>/websocket
  (16+) or polls /longpolling/poll (<= 15), like Odoo's web client. With
  workers > 0 a websocket request there gets HTTP 500 and the log line
  "Couldn't bind the websocket. Is the connection opened on the evented port
  (8072)?"; with workers = 0 it serves the websocket itself and nothing
  listens on the evented port.
- Evented port (workers > 0 only): Odoo's handshake rules (required headers,
  400 texts, 426 for a bad version), then `subscribe` answered and pings sent
  like the bus does.
- /web/whoami reports the client address, scheme and host Odoo derived,
  applying X-Forwarded-* only with proxy_mode and X-Forwarded-Host present,
  and the X-Forwarded-Proto it received. It and the page set a session_id
  cookie as Odoo does (no Secure flag of its own).

With --compose FILE, it plays a container: its ports are published on the
host addresses the compose file's Odoo service gives (all interfaces when
none), as docker would. SIGHUP re-reads both files and re-binds (the
formula's restart and recreate commands send it).
"""

import argparse
import asyncio
import base64
import configparser
import hashlib
import ipaddress
import json
import logging
import os
import re
import signal
import struct
import sys

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
REQUIRED_HANDSHAKE_HEADERS = (
    "connection",
    "host",
    "sec-websocket-key",
    "sec-websocket-version",
    "upgrade",
    "origin",
)
MAX_MESSAGE = 1 << 20  # Odoo closes with 1009 above 1 MiB
BIND_ERROR = "Couldn't bind the websocket. Is the connection opened on the evented port (8072)?"


def ping_interval(version):
    """Seconds of idle time after which Odoo's bus pings a websocket:
    TimeoutManager.INACTIVITY_TIMEOUT in addons/bus/websocket.py, 60 - 15 up
    to 18.0, 60 - 20 from 19.0 on."""
    return 40.0 if int(str(version).split(".")[0]) >= 19 else 45.0


log = logging.getLogger("odoo.standin")
STATIC_TYPES = {"js": "application/javascript", "css": "text/css", "png": "image/png"}
# Odoo sets its session cookie on pages like this, without Secure or SameSite
# (odoo/http.py): behind TLS, nginx's proxy_cookie_flags adds them.
SESSION_COOKIE = {"Set-Cookie": "session_id=standin0session; Max-Age=604800; HttpOnly; Path=/"}


# --------------------------------------------------------------------------
# Configuration, as Odoo reads it
# --------------------------------------------------------------------------


def read_config(path, version):
    parser = configparser.RawConfigParser()
    parser.read(path)
    options = dict(parser.items("options")) if parser.has_section("options") else {}
    major = int(str(version).split(".")[0])

    def integer(key, default):
        value = options.get(key, "")
        return int(value) if value.strip() not in ("", "False") else default

    if major >= 16:
        evented = integer("gevent_port", 8072)
        alias = integer("longpolling_port", 0)
        if alias:
            log.warning("longpolling_port is a deprecated alias to gevent_port")
            evented = alias
    else:
        evented = integer("longpolling_port", 8072)
    interface = options.get("http_interface", "").strip()
    return {
        "major": major,
        "version": str(version),
        "workers": integer("workers", 0),
        "http_port": integer("http_port", 8069),
        "evented_port": evented,
        "http_interface": "" if interface in ("", "False") else interface,
        "proxy_mode": options.get("proxy_mode", "False").strip().lower() in ("true", "1"),
    }


class ComposeError(ValueError):
    """A compose port entry the stand-in cannot publish as docker would."""


def published_addresses(compose_file, service, port):
    """Host (address, port) pairs docker would publish container PORT on.
    Raises ComposeError on a port entry it cannot read: a garbled entry that
    publishes nothing would make "port refused" checks pass for it."""
    # A deliberately small reader of short and long port syntax: enough for
    # the compose files the tests write; the formula's own module is not used
    # so that the stand-in cannot agree with a bug in it.
    import yaml  # only needed in docker mode

    with open(compose_file, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    entries = document["services"][service].get("ports") or []
    result = []
    for entry in entries:
        host_ip, published, target = _port_entry(entry, f"{compose_file}: service {service}")
        if target == port:
            result.append((host_ip, published))
    return result


def _port_entry(entry, where):
    """(host address, host port, container port) of one compose port entry."""
    if isinstance(entry, dict):
        host_ip, published, target = (
            entry.get("host_ip"),
            entry.get("published"),
            entry.get("target"),
        )
    else:
        text, slash, protocol = str(entry).partition("/")
        match = re.fullmatch(r"(?:(\[[^\]]+\]|[^:\[\]]+):)?(?:([0-9]*):)?([0-9]+)", text)
        if not match or slash and protocol not in ("tcp", "udp", "sctp"):
            raise ComposeError(f"{where}: cannot read port entry {entry!r}")
        host_ip, published, target = match.groups()
        if host_ip is not None and published is None:
            host_ip, published = None, host_ip  # "HOST_PORT:CONTAINER_PORT"
    try:
        target = int(str(target))
        published = int(str(target if published is None else published))
    except ValueError:
        raise ComposeError(f"{where}: cannot read port entry {entry!r}") from None
    if not (0 < target < 65536 and 0 < published < 65536):
        raise ComposeError(f"{where}: port out of range in {entry!r}")
    host_ip = (host_ip or "0.0.0.0").strip("[]")
    try:
        ipaddress.ip_address(host_ip)
    except ValueError:
        raise ComposeError(f"{where}: host address is not an IP address in {entry!r}") from None
    return host_ip, published, target


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------


class Request:
    def __init__(self, method, path, version, headers, body, peer):
        self.method, self.path, self.version = method, path, version
        self.headers, self.body, self.peer = headers, body, peer


async def read_request(reader, peer):
    line = await reader.readline()
    if not line:
        return None
    try:
        method, path, version = line.decode("latin-1").split()
    except ValueError:
        return None
    headers = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return Request(method, path, version, headers, body, peer)


REASONS = {
    101: "Switching Protocols",
    200: "OK",
    400: "BAD REQUEST",
    404: "NOT FOUND",
    426: "UPGRADE REQUIRED",
    500: "INTERNAL SERVER ERROR",
}


def response(status, body=b"", content_type="text/html; charset=utf-8", headers=None):
    if isinstance(body, str):
        body = body.encode("utf-8")
    lines = [f"HTTP/1.1 {status} {REASONS[status]}"]
    all_headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    all_headers.update(headers or {})
    all_headers.setdefault("Connection", "close")
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def werkzeug_error(status, description):
    """The HTML body werkzeug's HTTPException renders (what Odoo answers)."""
    title = REASONS[status].title()
    return response(
        status,
        f"<!doctype html>\n<html lang=en>\n<title>{status} {title}</title>\n"
        f"<h1>{title}</h1>\n<p>{description}</p>\n",
    )


def derived_client(request, config):
    """What Odoo sees: werkzeug ProxyFix(x_for=1, x_proto=1, x_host=1) applies
    only with proxy_mode and an X-Forwarded-Host header."""
    headers = request.headers
    if config["proxy_mode"] and headers.get("x-forwarded-host"):
        forwarded_for = headers.get("x-forwarded-for", "")
        remote = forwarded_for.split(",")[-1].strip() if forwarded_for else request.peer
        return {
            "remote_addr": remote,
            "scheme": headers.get("x-forwarded-proto", "http").split(",")[-1].strip(),
            "host": headers["x-forwarded-host"].split(",")[-1].strip(),
        }
    return {"remote_addr": request.peer, "scheme": "http", "host": headers.get("host", "")}


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Odoo</title>
<style>body{{font-family:sans-serif;margin:2em}} .ok{{color:#080}} .bad{{color:#b00}}</style>
</head><body>
<h1>Odoo {version} (stand-in)</h1>
<p>Real-time channel: <b id="status" class="bad">connecting...</b></p>
<pre id="log"></pre>
<script>
const statusEl = document.getElementById("status");
const logEl = document.getElementById("log");
window.busEvents = [];
function note(text, ok) {{
  window.busEvents.push(text);
  logEl.textContent += text + "\\n";
  if (ok !== undefined) {{ statusEl.textContent = text; statusEl.className = ok ? "ok" : "bad"; }}
}}
const major = {major};
if (major >= 16) {{
  // As Odoo's web client: the websocket URL is the page's own origin.
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host
    + "/websocket?version={version}-1";
  const ws = new WebSocket(url);
  ws.onopen = () => {{
    note("websocket open: " + url);
    ws.send(JSON.stringify({{event_name: "subscribe", data: {{channels: [], last: 0}}}}));
  }};
  ws.onmessage = (event) => {{
    const notifications = JSON.parse(event.data);
    for (const n of notifications) {{
      if (n.message.type === "standin/subscribed") {{ window.busSubscribed = true;
        note("subscribed (notification " + n.id + ")", true); }}
    }}
  }};
  ws.onclose = (event) => note("Websocket connection lost. Trying to reconnect... (code "
    + event.code + ")", false);
}} else {{
  fetch("/longpolling/poll", {{method: "POST", headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{params: {{channels: [], last: 0}}}})}})
    .then((r) => r.json())
    .then((data) => {{ window.busSubscribed = true; note("long polling answered", true); }})
    .catch((e) => note("long polling failed: " + e, false));
}}
</script></body></html>
"""


# --------------------------------------------------------------------------
# WebSocket (RFC 6455, as much as the bus uses)
# --------------------------------------------------------------------------


def handshake_problem(headers):
    """Odoo's _assert_handshake_validity: an error response, or None."""
    missing = sorted(h for h in REQUIRED_HANDSHAKE_HEADERS if not headers.get(h))
    if missing:
        return werkzeug_error(400, f"Empty or missing header(s): {', '.join(missing)}")
    if headers["upgrade"].lower() != "websocket":
        return werkzeug_error(400, "Invalid upgrade header")
    if "upgrade" not in headers["connection"].lower():
        return werkzeug_error(400, "Invalid connection header")
    if headers["sec-websocket-version"] != "13":
        return response(
            426,
            "<!doctype html>\n<html lang=en>\n<title>426 Upgrade Required</title>\n",
            headers={"Sec-WebSocket-Version": "13"},
        )
    try:
        key = base64.b64decode(headers["sec-websocket-key"], validate=True)
    except ValueError:
        return werkzeug_error(400, "Sec-WebSocket-Key should be b64 encoded")
    if len(key) != 16:
        return werkzeug_error(400, "Sec-WebSocket-Key should be of length 16 once decoded")
    return None


def accept_key(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def frame(opcode, payload=b""):
    header = bytes([0x80 | opcode])
    size = len(payload)
    if size < 126:
        header += bytes([size])
    elif size < 1 << 16:
        header += bytes([126]) + struct.pack("!H", size)
    else:
        header += bytes([127]) + struct.pack("!Q", size)
    return header + payload


async def read_frame(reader):
    first, second = await reader.readexactly(2)
    opcode, masked, size = first & 0x0F, second & 0x80, second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    if size > MAX_MESSAGE:
        raise OverflowError(size)
    mask = await reader.readexactly(4) if masked else b"\0\0\0\0"
    data = bytearray(await reader.readexactly(size))
    for index in range(size):
        data[index] ^= mask[index % 4]
    return opcode, bytes(data)


def close_frame(code, reason=""):
    return frame(0x8, struct.pack("!H", code) + reason.encode())


async def serve_websocket(reader, writer, request, config, ping_interval):
    writer.write(
        response(
            101,
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Accept": accept_key(request.headers["sec-websocket-key"]),
            },
        ).replace(b"Content-Type: text/html; charset=utf-8\r\nContent-Length: 0\r\n", b"")
    )
    await writer.drain()
    client = derived_client(request, config)
    log.info("websocket opened from %s", client["remote_addr"])
    last_id = 0
    while True:
        try:
            opcode, payload = await asyncio.wait_for(read_frame(reader), ping_interval)
        except TimeoutError:
            writer.write(frame(0x9))  # keep-alive ping, as the bus does when idle
            await writer.drain()
            continue
        except OverflowError:
            writer.write(close_frame(1009, "Message too big"))
            await writer.drain()
            return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        if opcode == 0x8:
            writer.write(close_frame(1000))
            await writer.drain()
            return
        if opcode == 0x9:
            writer.write(frame(0xA, payload))
        elif opcode == 0x1:
            try:
                message = json.loads(payload)
                event, data = message["event_name"], message.get("data", {})
            except (ValueError, KeyError, TypeError):
                writer.write(close_frame(1003, "Invalid message"))
                await writer.drain()
                return
            if event == "subscribe":
                last_id = max(last_id, int(data.get("last", 0))) + 1
                reply = [
                    {
                        "id": last_id,
                        "message": {
                            "type": "standin/subscribed",
                            "payload": {"channels": data.get("channels", []), **client},
                        },
                    }
                ]
                writer.write(frame(0x1, json.dumps(reply).encode()))
        await writer.drain()


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


def listen_plan(config, compose=None, service="odoo"):
    """[(address, port, role)] Odoo listens on with CONFIG (read_config's):
    where docker publishes them when COMPOSE (SERVICE's ports) is given."""
    roles = [(config["http_port"], "http")]
    if config["workers"] > 0:
        roles.append((config["evented_port"], "evented"))
    plan = []
    for port, role in roles:
        if compose:
            for address, published in published_addresses(compose, service, port):
                plan.append((address, published, role))
        else:
            plan.append((config["http_interface"] or "0.0.0.0", port, role))
    return plan


class StandinOdoo:
    def __init__(self, args):
        self.args = args
        self.servers = []
        self.config = None
        self.restarting = asyncio.Lock()
        self.stopped = asyncio.Event()
        self.failure = None
        # Connections accepted and requests read, per port role: whether nginx
        # reuses upstream connections shows as fewer connections than requests.
        self.counts = {role: {"connections": 0, "requests": 0} for role in ("http", "evented")}

    def listen_plan(self):
        """[(address, port, role)] for the current config."""
        return listen_plan(self.config, self.args.compose, self.args.service)

    async def start(self):
        self.config = read_config(self.args.config, self.args.odoo_version)
        workers = self.config["workers"]
        mode = f"prefork, {workers} workers" if workers else "threaded"
        bus = "websocket" if self.config["major"] >= 16 else "long polling"
        log.info(
            "Odoo %s (%s), bus: %s, ping after %g s idle",
            self.config["version"], mode, bus, self.args.ping_interval,
        )  # fmt: skip
        for address, port, role in self.listen_plan():
            server = await asyncio.start_server(
                lambda r, w, role=role: self.handle(r, w, role), address, port, reuse_address=True
            )
            self.servers.append(server)
            log.info("listening on %s:%s (%s)", address, port, role)

    async def stop(self):
        for server in self.servers:
            server.close()
            await server.wait_closed()
        self.servers = []

    async def restart(self):
        # Two HUPs in a row (odoo.conf and compose both changed) restart twice,
        # one after the other.
        async with self.restarting:
            log.info("restarting (SIGHUP)")
            await self.stop()
            try:
                await self.start()
            except Exception as error:  # a config it cannot serve: stop, loudly
                log.exception("restart failed, stopping")
                await self.stop()
                self.failure = error
                self.stopped.set()

    async def handle(self, reader, writer, role):
        peer = writer.get_extra_info("peername")[0]
        self.counts[role]["connections"] += 1
        try:
            # One request per connection, answered with "Connection: close":
            # Odoo's werkzeug handler speaks HTTP/1.0 except to a websocket
            # upgrade (RequestHandler.make_environ, odoo/service/server.py).
            request = await read_request(reader, peer)
            if request is None:
                return
            self.counts[role]["requests"] += 1
            writer.write(await self.dispatch(reader, writer, request, role) or b"")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # a bug here must show in the log, not as a hang
            log.exception("request failed")
        finally:
            writer.close()

    async def dispatch(self, reader, writer, request, role):
        config = self.config
        path = request.path.split("?")[0]
        if path == "/websocket" and config["major"] >= 16:
            if role == "http" and config["workers"] > 0:
                # Prefork workers have no socket to hand over (KeyError on
                # environ['socket'] in Odoo).
                log.error(BIND_ERROR)
                return werkzeug_error(500, "Internal Server Error")
            problem = handshake_problem(request.headers)
            if problem:
                return problem
            await serve_websocket(reader, writer, request, config, self.args.ping_interval)
            return None
        if path.startswith("/longpolling/") and config["major"] < 16:
            if role == "http" and config["workers"] > 0:
                log.error("bus.Bus unavailable")
                return werkzeug_error(500, "Internal Server Error")
            client = derived_client(request, config)
            result = [{"id": 1, "message": {"type": "standin/polled", "payload": client}}]
            body = {"jsonrpc": "2.0", "id": None, "result": result}
            return response(200, json.dumps(body), "application/json")
        if path == "/web/whoami":
            body = dict(
                derived_client(request, config),
                proxy_mode=config["proxy_mode"],
                connection=request.headers.get("connection", ""),
                forwarded_proto=request.headers.get("x-forwarded-proto", ""),
                served=self.counts,
            )
            return response(200, json.dumps(body), "application/json", SESSION_COOKIE)
        if re.fullmatch(r"/[^/]+/static/.+", path):
            # A module's static file; no cache headers of its own here, so the
            # ones a client sees come from nginx.
            kind = STATIC_TYPES.get(path.rsplit(".", 1)[-1], "application/octet-stream")
            return response(200, f"/* {path} */\n", kind)
        if path.startswith("/web/database/"):
            return response(200, f"<h1>Odoo database manager: {path}</h1>")
        if path in ("/", "/web", "/odoo", "/web/login"):
            page = PAGE.format(version=config["version"], major=config["major"])
            return response(200, page, headers=SESSION_COOKIE)
        return werkzeug_error(404, "The requested URL was not found on the server.")


async def main_async(args):
    odoo = StandinOdoo(args)
    try:
        await odoo.start()
    except Exception:
        log.exception("start failed")
        raise
    if args.pidfile:
        with open(args.pidfile, "w", encoding="ascii") as handle:
            handle.write(str(os.getpid()))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(odoo.restart()))
    loop.add_signal_handler(signal.SIGTERM, odoo.stopped.set)
    loop.add_signal_handler(signal.SIGINT, odoo.stopped.set)
    try:
        await odoo.stopped.wait()
        await odoo.stop()
    finally:
        if args.pidfile:
            os.unlink(args.pidfile)
    if odoo.failure:
        # Exit with the error: the restart command's caller and the host's
        # init see Odoo gone, rather than an Odoo that publishes nothing.
        raise odoo.failure


def parse_args(argv):
    parser = argparse.ArgumentParser(description="A stand-in for Odoo's HTTP and bus ports.")
    parser.add_argument("--config", default="/etc/odoo/odoo.conf")
    parser.add_argument("--odoo-version", default="17.0")
    parser.add_argument("--compose", help="compose file: publish ports as docker would")
    parser.add_argument("--service", default="odoo")
    parser.add_argument("--pidfile")
    parser.add_argument("--log")
    parser.add_argument(
        "--ping-interval", type=float, help="default: the version's own (45 s, 40 s from 19.0)"
    )
    args = parser.parse_args(argv)
    if args.ping_interval is None:
        args.ping_interval = ping_interval(args.odoo_version)
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(
        filename=args.log,
        level=logging.INFO,
        format="%(asctime)s %(process)d %(levelname)s ? %(name)s: %(message)s",
    )
    asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
