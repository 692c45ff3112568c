"""
Prove, from the Odoo host, that a browser could use Odoo's real-time channel
through nginx (a WebSocket handshake for Odoo 16+, long polling before, with
the Host and Origin a browser sends), and that Odoo's own ports do not answer
on the host's addresses, which would let browsers bypass nginx.

:depends: websockets (Salt's Python)
"""

import html
import http.client
import json
import re
import socket
import ssl
import time

try:
    import websockets.sync.client as ws_client
    from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
except ImportError:  # odoo_websocket_minion.missing_message says so
    pass

from salt.exceptions import SaltInvocationError

import odoo_websocket_check_addresses
import odoo_websocket_exposure

# Odoo does not always answer a subscribe with no channels: silence this long is OK.
SUBSCRIBE_WAIT = 1.0
# Odoo 15 holds a poll up to 50 s: still open after this long means it was accepted.
POLL_HOLD = 2.0
RETRY_EVERY = 0.5
SUBSCRIBE = {"event_name": "subscribe", "data": {"channels": [], "last": 0}}
# The page the check loads through nginx besides the real-time channel.
LOGIN_PAGE = "/web/login"
POLL = {"jsonrpc": "2.0", "method": "call", "params": {"channels": [], "last": 0}}


def _site(server_name, port, tls):
    """(Host header value, Origin) a browser on the site sends."""
    host = server_name if int(port) == (443 if tls else 80) else f"{server_name}:{port}"
    return host, f"{'https' if tls else 'http'}://{host}"


def _tls_context():
    # This checks routing, not the certificate: a self-signed one must pass.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _network_error(exc, address, port):
    """A short text for a failed connection; never raised to the caller."""
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {address}:{port}"
    if isinstance(exc, TimeoutError):
        return f"timed out talking to {address}:{port}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error with {address}:{port}: {exc.reason or exc}"
    return f"{address}:{port}: {exc.strerror or exc}"


def _first_line(body):
    """The first line of text of an error body; for werkzeug's HTML error
    pages (what Odoo answers) that is the description in <p>."""
    text = bytes(body or b"").decode("utf-8", "replace")
    described = re.search(r"<p>(.*?)</p>", text, re.S | re.I)
    text = html.unescape(re.sub(r"<[^>]*>", "", described.group(1) if described else text))
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:200]


def _status_detail(status, reason, body, headers=None):
    detail = f"HTTP {status} {reason}".rstrip()
    location = (headers or {}).get("Location")
    if 300 <= status < 400 and location:
        return f"{detail}: redirects to {location}"
    line = _first_line(body)
    return f"{detail}: {line}" if line else detail


def _result(check, ok, status, detail, started):
    latency = round((time.monotonic() - started) * 1000, 1)
    return {"ok": ok, "check": check, "status": status, "detail": detail, "latency_ms": latency}


def _rejection(exc):
    """The InvalidStatus behind EXC, if any. On a redirect websockets raises
    another error while handling it: InvalidURI for an http(s):// Location (what
    nginx's redirect to https sends), ValueError for a ws:// one on our socket."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, InvalidStatus):
            return candidate
    return None


def _subscribe(websocket):
    """None when the open socket accepts Odoo's subscribe, else why not."""
    try:
        websocket.send(json.dumps(SUBSCRIBE))
        websocket.recv(timeout=SUBSCRIBE_WAIT)
    except TimeoutError:
        return None  # no answer and no close: the bus keeps it open
    except ConnectionClosed as exc:
        if exc.rcvd is None:
            return "closed with 1006 (no close frame) after subscribe"
        if exc.rcvd.code == 1000 and exc.rcvd.reason == "OUTDATED_VERSION":
            # Odoo 17+ closes browser-like clients whose worker version differs
            # from its own: Odoo itself answered, so the route works.
            return None
        return f"closed with {exc.rcvd.code} {exc.rcvd.reason}".rstrip() + " after subscribe"
    return None


def _websocket(server_name, address, port, tls, timeout):
    host, origin = _site(server_name, port, tls)
    url = f"{'wss' if tls else 'ws'}://{host}/websocket?version=odoo_websocket-verify"
    check, started, sock = "websocket handshake", time.monotonic(), None
    try:
        # Our own socket: the TCP connection goes to ADDRESS while the URL (so
        # Host, SNI and Origin) names the site, as for a browser behind DNS.
        sock = socket.create_connection((address, int(port)), timeout=timeout)
        sock.settimeout(None)  # websockets' reader thread must not time out
        with ws_client.connect(
            url,
            sock=sock,
            ssl=_tls_context() if tls else None,
            server_hostname=server_name if tls else None,
            origin=origin,
            proxy=None,
            open_timeout=timeout,
            close_timeout=min(timeout, 2),
            ping_interval=None,
        ) as websocket:
            response = websocket.response
            result = _result(check, True, response.status_code, "", started)
            problem = _subscribe(websocket)
    except (WebSocketException, ValueError) as exc:
        rejected = _rejection(exc)
        if rejected is None:
            cause = f": {exc.__cause__}" if exc.__cause__ else ""
            return _result(check, False, None, f"{exc}{cause}", started)
        reply = rejected.response
        detail = _status_detail(reply.status_code, reply.reason_phrase, reply.body, reply.headers)
        return _result(check, False, reply.status_code, detail, started)
    except OSError as exc:
        return _result(check, False, None, _network_error(exc, address, port), started)
    finally:
        if sock is not None:
            sock.close()  # websockets closes it too, except on early argument errors
    if problem:
        return dict(result, ok=False, detail=problem)
    line = f"{response.status_code} {response.reason_phrase}"
    return dict(result, detail=f"{line} via {address}:{port} (Host {host})")


def _connection(server_name, address, port, tls, timeout):
    """An HTTP connection to ADDRESS:PORT (TLS with SNI SERVER_NAME, the
    certificate not verified), connected: raises OSError."""
    connection = http.client.HTTPConnection(address, int(port), timeout=timeout)
    try:
        sock = socket.create_connection((address, int(port)), timeout=timeout)
        if tls:
            sock = _tls_context().wrap_socket(sock, server_hostname=server_name)
    except OSError:
        connection.close()
        raise
    connection.sock = sock  # http.client then sends on our (TLS) socket
    return connection


def _page(server_name, address, port, tls, timeout):
    """Odoo's login page through nginx: the HTTP route every page load takes
    (a redirect, to the database selector say, is Odoo answering too)."""
    host, _ = _site(server_name, port, tls)
    check, started, connection = "page", time.monotonic(), None
    try:
        connection = _connection(server_name, address, port, tls, timeout)
        connection.request("GET", LOGIN_PAGE, headers={"Host": host})
        reply = connection.getresponse()
        body = reply.read(65536)
    except OSError as exc:
        return _result(check, False, None, _network_error(exc, address, port), started)
    except http.client.HTTPException as exc:
        return _result(check, False, None, f"{address}:{port}: {exc!r}", started)
    finally:
        if connection:
            connection.close()
    if reply.status >= 400:
        detail = _status_detail(reply.status, reply.reason, body, reply.headers)
        return _result(check, False, reply.status, f"{LOGIN_PAGE}: {detail}", started)
    detail = f"{LOGIN_PAGE}: {reply.status} {reply.reason}".rstrip()
    return dict(_result(check, True, reply.status, detail, started),
                location=reply.getheader("Location") or "")  # fmt: skip


def _long_polling(server_name, address, port, tls, timeout):
    host, origin = _site(server_name, port, tls)
    check, started, connection = "long polling", time.monotonic(), None
    try:
        connection = _connection(server_name, address, port, tls, timeout)
        sock = connection.sock
        headers = {"Host": host, "Origin": origin, "Content-Type": "application/json"}
        connection.request("POST", "/longpolling/poll", json.dumps(POLL), headers)
        sock.settimeout(POLL_HOLD)
        try:
            reply = connection.getresponse()
        except TimeoutError:
            detail = f"request held open via {address}:{port} (Host {host})"
            return _result(check, True, None, detail, started)
        body = reply.read(65536)
    except OSError as exc:
        return _result(check, False, None, _network_error(exc, address, port), started)
    except http.client.HTTPException as exc:  # not HTTP at all (a TLS port spoken to in clear)
        return _result(check, False, None, f"{address}:{port}: {exc!r}", started)
    finally:
        if connection:
            connection.close()
    if reply.status != 200:
        detail = _status_detail(reply.status, reply.reason, body, reply.headers)
        return _result(check, False, reply.status, detail, started)
    detail = f"{reply.status} {reply.reason} via {address}:{port} (Host {host})"
    return _result(check, True, reply.status, detail, started)


def handshake(
    server_name, address="127.0.0.1", port=80, tls=False, realtime_path="/websocket", timeout=5
):
    """
    Open Odoo's real-time channel through nginx at ADDRESS:PORT as a browser
    on ``http(s)://SERVER_NAME`` would: a WebSocket handshake then a subscribe
    (``realtime_path`` ``/websocket``, Odoo 16+) or a long-polling request
    (``/longpolling``, Odoo 15 and earlier). The certificate is not verified.

    Returns ``{"ok", "check", "status", "detail", "latency_ms"}``; network
    errors are reported in ``detail``, never raised.
    """
    if realtime_path == "/websocket":
        return _websocket(server_name, address, port, tls, timeout)
    if realtime_path == "/longpolling":
        return _long_polling(server_name, address, port, tls, timeout)
    raise SaltInvocationError(f"realtime_path must be /websocket or /longpolling: {realtime_path}")


_REDIRECT = re.compile(r"https://([^/:?#]+)(?::(\d+))?(?:[/?#]|$)", re.IGNORECASE)


def _https_port(server_name, page):
    """The https port a plain-http site's PAGE check was redirected to for
    its own name (an http -> https server block, as Odoo's sample has), or
    None."""
    moved = (
        _REDIRECT.match(page.get("location", ""))
        if page["status"] in (301, 302, 307, 308)
        else None
    )
    if not moved or moved.group(1).lower() != server_name.lower():
        return None
    return int(moved.group(2) or 443)


def _elsewhere(server_name, addresses, port, tls, realtime_path, timeout):
    """The real-time channel's check at each of ADDRESSES: a browser reaching
    the site there must get it too."""
    found = []
    for address in addresses:
        item = handshake(server_name, address, port, tls, realtime_path, timeout)
        detail = item["detail"]
        if not item["ok"]:
            detail = (f"at {address}:{port}: {detail} (nginx hands connections there to "
                      "another server block? see nginx:listen_addresses)")  # fmt: skip
        found.append({"name": f"{item['check']} at {address}", "ok": item["ok"], "detail": detail})
    return found


def check(server_name, address="127.0.0.1", port=80, tls=False, realtime_path="/websocket",
          odoo_ports=(8069, 8072), addresses=None, timeout=5, conf_file=None):  # fmt: skip
    """
    The verdict: the handshake through nginx (see ``handshake``), Odoo's
    login page through nginx (answered below 400), the handshake again at
    every other address where nginx's live tree (CONF_FILE, when given) may
    answer the site by another rule (``odoo_websocket_check_addresses``), and
    one failed check per Odoo port that answers on one of the host's
    addresses.

    Returns ``{"ok", "checks": [{"name", "ok", "detail"}, ...], "latency_ms"}``.
    """
    tree = odoo_websocket_check_addresses.Tree(conf_file)
    main, more = tree.knock(server_name, address, port)
    page = _page(server_name, main, port, tls, timeout)
    moved = None if tls else _https_port(server_name, page)
    if moved:  # the site sends browsers to https: their websocket goes there
        port, tls = moved, True
        main, more = tree.knock(server_name, address, port)
        page = _page(server_name, main, port, tls, timeout)
    shake = handshake(server_name, main, port, tls, realtime_path, timeout)
    checks = [{"name": item["check"], "ok": item["ok"], "detail": item["detail"]}
              for item in (shake, page)]  # fmt: skip
    if moved:
        detail = f"http://{server_name} redirects browsers to https on port {port}"
        checks.append({"name": "redirect", "ok": True, "detail": detail})
    checks += _elsewhere(server_name, more, port, tls, realtime_path, timeout)
    if tree.unread:
        detail = f"other addresses not checked: {tree.unread}"
        checks.append({"name": "other addresses", "ok": True, "detail": detail})
    checks += odoo_websocket_exposure.checks(odoo_ports, addresses, timeout=min(timeout, 1))
    ok = all(item["ok"] for item in checks)
    return {"ok": ok, "checks": checks, "latency_ms": shake["latency_ms"]}


def wait(server_name, address="127.0.0.1", port=80, tls=False, realtime_path="/websocket",
         odoo_ports=(8069, 8072), addresses=None, timeout=5, deadline=60,
         conf_file=None):  # fmt: skip
    """
    Repeat ``check`` every half second until it passes or DEADLINE seconds
    have passed (Odoo takes a moment to listen again after a restart). Returns
    the last verdict plus ``waited_s``.
    """
    started = time.monotonic()
    while True:
        left = deadline - (time.monotonic() - started)
        # A slow attempt must not carry the wait far past the deadline.
        attempt = max(RETRY_EVERY, min(timeout, left))
        verdict = check(server_name, address, port, tls, realtime_path, odoo_ports,
                        addresses, attempt, conf_file)  # fmt: skip
        left = deadline - (time.monotonic() - started)
        if verdict["ok"] or left <= 0:
            break
        time.sleep(min(RETRY_EVERY, left))
    verdict["waited_s"] = round(time.monotonic() - started, 1)
    return verdict


# What the check needs of each instance (settings: verify:targets).
TARGET_KEYS = ("server_name", "address", "port", "tls", "realtime_path", "odoo_ports", "conf_file")


def _arguments(target):
    # conf_file: absent from the targets a beacon read before it was added.
    return {key: target[key] for key in TARGET_KEYS if key != "conf_file" or key in target}


def _combined(targets, run):
    """RUN's verdict for each of TARGETS (one per Odoo instance: settings'
    ``verify:targets``); one target's verdict as it is, several as one:
    ok when all are, each check named after its instance, the slowest
    latency, the verdicts under ``instances``."""
    verdicts = {
        target.get("instance", str(number)): run(**_arguments(target))
        for number, target in enumerate(targets, 1)
    }
    if len(verdicts) == 1:
        return next(iter(verdicts.values()))
    combined = {
        "ok": all(v["ok"] for v in verdicts.values()),
        "checks": [dict(c, name=f"{name}: {c['name']}") for name, v in verdicts.items()
                   for c in v["checks"]],
        "latency_ms": max(v["latency_ms"] or 0 for v in verdicts.values()),
        "instances": verdicts,
    }  # fmt: skip
    if all("waited_s" in v for v in verdicts.values()):
        combined["waited_s"] = round(sum(v["waited_s"] for v in verdicts.values()), 1)
    return combined


def check_all(targets, timeout=5):
    """
    :py:func:`check` for each of TARGETS (``[{server_name, address, port,
    tls, realtime_path, odoo_ports, instance}]``, one per Odoo instance), as
    one verdict (see ``_combined``).
    """
    return _combined(targets, lambda **args: check(timeout=timeout, **args))


def wait_all(targets, timeout=5, deadline=60):
    """
    :py:func:`wait` for each of TARGETS in turn, as one verdict.
    """
    return _combined(targets, lambda **args: wait(timeout=timeout, deadline=deadline, **args))


def summary(verdict):
    """
    One line for a state comment, from a ``check`` or ``wait`` verdict.
    """
    if "instances" in verdict:  # several Odoo instances (check_all, wait_all)
        return "; ".join(f"{name}: {summary(v)}" for name, v in verdict["instances"].items())
    checks = verdict["checks"]
    kind = "websocket" if checks[0]["name"] == "websocket handshake" else checks[0]["name"]
    if verdict["ok"]:
        first = f"{checks[0]['detail']} in {verdict['latency_ms']:.0f} ms"
        line = "; ".join([first] + [item["detail"] for item in checks[1:]])
        waited = verdict.get("waited_s", 0)
        after = f" (after {waited} s)" if waited >= 1 else ""
        return f"{kind} verified: {line}{after}"
    failed = "; ".join(item["detail"] for item in checks if not item["ok"])
    return f"{kind} check FAILED: {failed}"
