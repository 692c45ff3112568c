#!/usr/bin/env python3
"""
Client-side checks of Odoo's real-time channel, as a browser on another
machine would see it: the WebSocket handshake through nginx with a real
client (websockets), a subscribe round trip, and whether Odoo's own ports
answer directly. Run as a library or, inside a test host's namespace, as a
CLI that prints JSON:

    probe.py check --address 10.231.7.2 --server-name odoo.example.com \
        --direct 8069 --direct 8072
"""

import argparse
import base64
import http.client
import json
import os
import socket
import ssl
import sys

from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect


def tls_context(ca):
    """A client context trusting only the CA file CA, as a browser that has it."""
    return ssl.create_default_context(cafile=ca)


def http_get(address, port, path, host_header, headers=None, timeout=5, ca=None):
    """(status, headers, body text) of one GET; over https when CA is given
    (the certificate checked against CA for the site's name, sent as SNI)."""
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        if ca:
            raw = socket.create_connection((address, port), timeout=timeout)
            name = host_header.split(":")[0]
            connection.sock = tls_context(ca).wrap_socket(raw, server_hostname=name)
        connection.request("GET", path, headers={"Host": host_header, **(headers or {})})
        reply = connection.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read().decode("utf-8", "replace")
    finally:
        connection.close()


def raw_handshake(address, port, path, headers, timeout=5):
    """Send a handshake with exactly HEADERS; return (status, headers, body)."""
    with socket.create_connection((address, port), timeout=timeout) as sock:
        lines = [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1]) if status_line else 0
        found = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            found[name.strip().lower()] = value.strip()
        length = int(found.get("content-length", "0") or 0)
        while status != 101 and len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, found, body.decode("utf-8", "replace")


def browser_headers(server_name, scheme="http"):
    """What a browser sends to open the bus websocket."""
    return {
        "Host": server_name,
        "Origin": f"{scheme}://{server_name}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }


def websocket_session(address, port, server_name, path="/websocket", timeout=5, ca=None):
    """Open the bus websocket as the web client does and subscribe; wss://
    trusting the CA file CA when given.

    Returns {"status": 101, "subscribed": bool, "reply": ...} or, when the
    handshake is refused, {"status": N, "body": text}."""
    # The URL names the site, as in the browser; the socket goes to ADDRESS.
    scheme = "https" if ca else "http"
    url = f"{'wss' if ca else 'ws'}://{server_name}{path}?version=17.0-1"
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
        with connect(
            url,
            sock=sock,
            ssl=tls_context(ca) if ca else None,
            origin=f"{scheme}://{server_name}",
            open_timeout=timeout,
            close_timeout=timeout,
        ) as websocket:
            websocket.send(
                json.dumps({"event_name": "subscribe", "data": {"channels": [], "last": 0}})
            )
            reply = json.loads(websocket.recv(timeout=timeout))
            types = [item["message"]["type"] for item in reply]
            return {"status": 101, "subscribed": "standin/subscribed" in types, "reply": reply}
    except InvalidStatus as exc:
        body = exc.response.body.decode("utf-8", "replace") if exc.response.body else ""
        return {"status": exc.response.status_code, "body": body}
    except (OSError, TimeoutError) as exc:
        return {"status": 0, "error": f"{type(exc).__name__}: {exc}"}


def long_polling(address, port, server_name, timeout=5, ca=None):
    """One long poll of the bus (Odoo 15 and earlier), over https trusting
    the CA file CA when given."""
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        if ca:
            raw = socket.create_connection((address, port), timeout=timeout)
            connection.sock = tls_context(ca).wrap_socket(raw, server_hostname=server_name)
        body = json.dumps({"params": {"channels": [], "last": 0}})
        connection.request(
            "POST",
            "/longpolling/poll",
            body=body,
            headers={"Host": server_name, "Content-Type": "application/json"},
        )
        reply = connection.getresponse()
        text = reply.read().decode("utf-8", "replace")
        polled = reply.status == 200 and "standin/polled" in text
        return {"status": reply.status, "polled": polled, "body": text[:300]}
    except OSError as exc:
        return {"status": 0, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        connection.close()


def port_answers(address, port, timeout=2):
    """True when something accepts a TCP connection on ADDRESS:PORT."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def check(address, server_name, port=80, direct=(), longpolling=False, ca=None):
    """Everything a browser elsewhere would run into, as one dict."""
    result = {"through_nginx": {}, "direct": {}}
    if longpolling:
        result["through_nginx"] = long_polling(address, port, server_name, ca=ca)
    else:
        result["through_nginx"] = websocket_session(address, port, server_name, ca=ca)
    try:
        result["page"] = http_get(address, port, "/web/login", server_name, ca=ca)[0]
    except OSError as exc:
        result["page"] = f"{type(exc).__name__}: {exc}"
    for other in direct:
        result["direct"][str(other)] = port_answers(address, other)
    return result


def _open_files(wanted):
    """Raise this process's open-file limit to WANTED (up to its hard limit):
    each session is a socket of the client's too."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < ceiling:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))


def hold(address, server_name, sessions, ready_file, stop_file, timeout=120):
    """A stream of HTTP requests through nginx from the start, SESSIONS bus
    websockets opened (those nginx refuses are counted, not retried) and kept
    open until STOP_FILE appears; then every open session must still answer.
    Returns counts of what opened, survived and failed. The sessions live on
    one asyncio loop (a thread each would not hold 10,000 of them); the HTTP
    stream runs in a thread of its own, so a busy loop cannot slow it."""
    import asyncio
    import threading
    import time

    from websockets.asyncio.client import connect as open_websocket

    _open_files(sessions + 256)
    counts = {"http_ok": 0, "http_failed": 0, "http_errors": []}
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            try:
                status = http_get(address, 80, "/web/whoami", server_name)[0]
                counts["http_ok" if status == 200 else "http_failed"] += 1
            except OSError as exc:
                counts["http_failed"] += 1
                counts["http_errors"].append(str(exc))
            time.sleep(0.01)

    def subscribe(last):
        return json.dumps({"event_name": "subscribe", "data": {"channels": [], "last": last}})

    async def sessions_held():
        opened, refused = [], []
        for _ in range(sessions):
            websocket = None
            try:
                sock = socket.create_connection((address, 80), timeout=10)
                sock.setblocking(False)
                websocket = await asyncio.wait_for(open_websocket(
                    f"ws://{server_name}/websocket", sock=sock, origin=f"http://{server_name}",
                    ping_interval=None,  # the bus pings; the stand-in ignores a client's
                ), 10)  # fmt: skip
                await websocket.send(subscribe(0))
                await asyncio.wait_for(websocket.recv(), 10)
                opened.append(websocket)
            except Exception as exc:  # noqa: BLE001 - a session nginx or Odoo would not open
                refused.append(f"{type(exc).__name__}: {exc}")
                if websocket is not None:  # opened, never answered: not held either
                    websocket.transport.abort()
        with open(ready_file, "w", encoding="utf-8") as handle:
            handle.write("ready")
        deadline = time.monotonic() + timeout
        while not os.path.exists(stop_file) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        counts["timed_out"] = not os.path.exists(stop_file)  # never told the apply was done
        stop.set()
        alive = 0
        for index, websocket in enumerate(opened):
            try:
                await websocket.send(subscribe(index))
                reply = json.loads(await asyncio.wait_for(websocket.recv(), 10))
                alive += reply[0]["message"]["type"] == "standin/subscribed"
                await websocket.close()
            except Exception:  # noqa: BLE001 - any failure means the session was dropped
                pass
        return opened, refused, alive

    worker = threading.Thread(target=stream)
    worker.start()
    try:
        opened, refused, alive = asyncio.run(sessions_held())
    finally:
        stop.set()
        worker.join()
    return {"sessions": sessions, "opened": len(opened), "open_failed": len(refused),
            "open_errors": sorted(set(refused))[:5], "alive": alive,
            "dropped": len(opened) - alive, **counts}  # fmt: skip


def _run_in(outside, *args):
    proc = outside.python(os.path.abspath(__file__), *args)
    if proc.returncode != 0:
        raise RuntimeError(f"probe failed in {outside.name}: {proc.stderr}")
    return json.loads(proc.stdout)


def check_from(outside, target, longpolling=False, ca=None, server_name="odoo.example.com"):
    """check() run on the host OUTSIDE against the Odoo host TARGET for the
    site SERVER_NAME: through nginx on port 80 (443 over TLS, trusting the CA
    file CA, when given), and Odoo's own ports 8069 and 8072 directly."""
    args = ["check", "--address", target.address, "--direct", "8069", "--direct", "8072"]
    args += ["--server-name", server_name]
    if ca:
        args += ["--port", "443", "--ca", ca]
    return _run_in(outside, *args, *(["--longpolling"] if longpolling else []))


def whoami_from(outside, target):
    """What Odoo derives for a client on OUTSIDE, asked through nginx."""
    return _run_in(outside, "whoami", "--address", target.address)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("check")
    run.add_argument("--port", type=int, default=80)
    run.add_argument("--direct", type=int, action="append", default=[])
    run.add_argument("--longpolling", action="store_true")
    run.add_argument("--ca", help="CA file: the bus over wss://, trusting it")
    who = sub.add_parser("whoami")
    keep = sub.add_parser("hold")
    keep.add_argument("--sessions", type=int, default=50)
    keep.add_argument("--ready-file", required=True)
    keep.add_argument("--stop-file", required=True)
    for command in (run, who, keep):
        command.add_argument("--address", required=True)
        command.add_argument("--server-name", default="odoo.example.com")
    args = parser.parse_args(argv)
    if args.command == "hold":
        result = hold(
            args.address, args.server_name, args.sessions, args.ready_file, args.stop_file
        )
    elif args.command == "whoami":
        result = json.loads(http_get(args.address, 80, "/web/whoami", args.server_name)[2])
    else:
        result = check(
            args.address, args.server_name, args.port, args.direct, args.longpolling, args.ca
        )
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
