"""
The nginx half of ``odoo_websocket.audit``: read-only rules over the live tree
as crossplane parses it (every include followed), each finding saying why it
breaks Odoo's websocket and what fixes it.

Pure: the caller parses the tree (``odoo_websocket_nginx.tree``) and passes
what it knows of Odoo (version, worker mode, ports, server names, proxy_mode)
and of nginx (its version).
"""

import odoo_websocket_concerns
import odoo_websocket_nginx
from odoo_websocket_nginx_effective import (
    arg,
    effective,
    expand,
    header_set,
    location_for,
    own,
    proxy_ports,
    seconds,
    upstream_blocks,
    walk,
)

# nginx speaks HTTP/1.0 to upstreams unless told otherwise before this release.
HTTP11_DEFAULT_SINCE = (1, 29, 7)
# The fixes name the concern's SLS (odoo_websocket_concerns).
_NGINX = "state " + odoo_websocket_concerns.CONCERNS["nginx"].sls
_ODOO = odoo_websocket_concerns.CONCERNS["odoo_conf"].sls
SITE_FIX = (
    f"{_NGINX}: the formula's site, or the host's own site's websocket "
    "path set in place (nginx:existing_site: adopt)"
)
MAP_FIX = (
    f"{_NGINX}: its nginx:map_file maps $http_upgrade to "
    "$odoo_websocket_connection in the http context"
)
ROUTE_FIX = f"{_NGINX}: the route follows odoo:workers (set it to odoo.conf's)"
TIMEOUT_FIX = f"{_NGINX} (nginx:proxy_timeout, default 720)"
TREE_FIX = "edit it by hand: the formula changes nothing while the live tree fails nginx -t"


def finding(ident, severity, file, line, why, fix):
    """One finding, as ``odoo_websocket.audit`` returns them."""
    return {"id": ident, "severity": severity, "file": file, "line": line, "why": why, "fix": fix}


def _at(directive):
    return directive.get("file"), directive.get("line")


def _map_findings(tree):
    """maps outside http (nginx -t fails) and variables mapped twice (it does not)."""
    found, by_variable = [], {}
    for directive, parents in walk(tree):
        if directive["directive"] != "map" or len(directive["args"]) < 2:
            continue
        if parents not in (("http",), ("stream",)):
            inside = parents[-1] if parents else "main"
            why = (
                f'a map in the {inside} context: nginx -t fails ("map" directive is not '
                "allowed here), so every reload is refused and nginx keeps its old setup"
            )
            found.append(finding("map-outside-http", "error", *_at(directive), why, TREE_FIX))
        elif parents == ("http",):
            by_variable.setdefault(directive["args"][1].lower(), []).append(directive)
    for variable, maps in by_variable.items():
        last = maps[-1]
        for directive in maps[:-1]:
            why = (
                f"{variable} is mapped again at {last['file']}:{last['line']}: nginx -t "
                "accepts it and the last map silently wins, so this one has no effect"
            )
            fix = f"delete one of the two maps of {variable}; {MAP_FIX}"
            found.append(finding("duplicate-map", "warning", *_at(directive), why, fix))
    return found


def _upstream_findings(upstreams):
    found = []
    for name, blocks in upstreams.items():
        for directive in blocks[1:]:
            why = (
                f"upstream {name} is defined twice (first at {blocks[0]['file']}:"
                f"{blocks[0]['line']}): nginx -t fails, every reload is refused"
            )
            found.append(finding("duplicate-upstream", "error", *_at(directive), why, TREE_FIX))
    return found


def _sites(payload, tree, context):
    """The server blocks nginx uses for the pillar's names, and findings on
    names no block answers or that two blocks answer."""
    answering = odoo_websocket_nginx.answering
    servers = {
        _at(d): d
        for d, parents in walk(tree)
        if d["directive"] == "server" and parents and parents[-1] == "http"
    }
    used, found = [], []
    for name in context["names"]:
        blocks = answering(payload, [name], context["ports"])
        if not blocks:
            why = (
                f"no server block answers {name} on port {context['ports'][0]}: nginx "
                "serves it from its default server, not from Odoo"
            )
            fix = f"nginx:server_name, then {SITE_FIX}"
            found.append(finding("no-site", "error", context["conf_file"], None, why, fix))
            continue
        first = blocks[0]
        for block in blocks[1:]:
            why = (
                f"{first['file']}:{first['line']} answers {name} on port "
                f"{context['ports'][0]} first: nginx ignores this block for it (only a "
                "'conflicting server name' warning)"
            )
            fix = f"remove one of the two sites, or {SITE_FIX}"
            found.append(finding("duplicate-site", "warning", *_at(block), why, fix))
        server = servers.get((first["file"], first["line"]))
        if server is not None and server not in used:
            used.append(server)
    return used, found


def _location_findings(location, server, http):
    """A hard-coded Connection, and server-level headers the location's own drop."""
    found = []
    connection = header_set((location, server, http)).get("connection")
    if connection is not None and arg(connection, 1).lower() == "upgrade":
        why = (
            "Connection: upgrade is hard-coded, so every request of this location, plain page "
            "loads included, goes out as an upgrade; a map of $http_upgrade sends 'close' to "
            "requests that are not websockets"
        )
        found.append(finding("hardcoded-connection", "warning", *_at(connection), why, MAP_FIX))
    mine = {arg(d, 0).lower() for d in own(location, "proxy_set_header")}
    outer = next((level for level in (server, http) if own(level, "proxy_set_header")), None)
    lost = [d for d in own(outer or {}, "proxy_set_header") if arg(d, 0).lower() not in mine]
    if own and lost:
        names = ", ".join(f"{arg(d, 0)} ({d['file']}:{d['line']})" for d in lost)
        why = (
            f"this location sets proxy_set_header of its own, so nginx drops the "
            f"{outer['directive']} level's {names} here"
        )
        fix = f"{SITE_FIX}: every location carries the complete header set"
        found.append(finding("headers-shadowed", "warning", *_at(location), why, fix))
    return found


def _stale_route(location, context):
    """A route for the other generation of Odoo's bus."""
    uri, major = " ".join(location["args"]), context["major"]
    if major >= 16 and "/longpolling" in uri:
        why = f"Odoo {major} has no /longpolling: its web client opens /websocket instead"
    elif major < 16 and "/websocket" in uri:
        why = f"Odoo {major} has no /websocket: its bus is long polling at /longpolling"
    else:
        return []
    return [finding("stale-realtime-route", "warning", *_at(location), why, SITE_FIX)]


def _route_findings(location, proxy_pass, upstreams, path, context):
    """The bus sent to a port that does not serve it in Odoo's worker mode."""
    ports = proxy_ports(proxy_pass, upstreams)
    workers = context["workers"]
    want = context["evented_port"] if workers > 0 else context["http_port"]
    if ports is None or ports == {want}:
        return []
    got = ", ".join(str(port) for port in sorted(ports))
    where = f"location {' '.join(location['args'])} sends {path} to port {got}"
    if workers > 0:
        why = (
            f"{where}, but with workers = {workers} only the evented port {want} holds it: "
            "a prefork worker answers 500 (Couldn't bind the websocket)"
        )
    else:
        why = (
            f"{where}, but with workers = 0 Odoo serves it on its HTTP port {want} and "
            "runs no evented server: nginx answers 502"
        )
    return [finding("realtime-wrong-port", "error", *_at(proxy_pass), why, ROUTE_FIX)]


def _timeout_findings(location, levels, path, context):
    """A read timeout that cuts an idle websocket (or a long poll) short."""
    directive = effective(levels, "proxy_read_timeout")
    value = seconds(arg(directive, 0)) if directive else 60
    if value is None or value >= 60:
        return []
    if context["major"] >= 16:
        beat = 40 if context["major"] >= 19 else 45
        holds = f"Odoo pings an idle websocket only every {beat} s"
    else:
        beat, holds = 50, "Odoo holds a long poll open up to 50 s"
    severity = "error" if value <= beat else "warning"
    margin = "" if severity == "error" else " (a thin margin: 60 s or more is safe)"
    why = (
        f"proxy_read_timeout {arg(directive, 0)} applies to {path}: nginx cuts it after "
        f"that long without data from Odoo, and {holds}{margin}"
    )
    return [finding("read-timeout-short", severity, *_at(directive), why, TIMEOUT_FIX)]


def _upgrade_findings(location, headers, maps):
    """Upgrade and Connection: hop-by-hop, nginx passes them only when told."""
    found, upgrade = [], headers.get("upgrade")
    if not arg(upgrade, 1):
        why = (
            "Upgrade is hop-by-hop: nginx drops it unless told (proxy_set_header Upgrade "
            "$http_upgrade), and Odoo answers 400 (Empty or missing header(s): upgrade)"
        )
        found.append(finding("missing-upgrade", "error", *_at(upgrade or location), why, SITE_FIX))
    return found + _connection_findings(location, headers.get("connection"), maps)


def _connection_findings(location, header, maps):
    """Connection must reach Odoo as 'upgrade' on a websocket request."""
    value, where = arg(header, 1).lower(), _at(header or location)
    # A literal upgrade works (hardcoded-connection says what it costs); the
    # client's own $http_connection carries the browser's "Upgrade".
    if value == "upgrade" or value.startswith("$http_") or maps.get(value) == "$http_upgrade":
        return []
    unknown = value.startswith("$") and value not in maps
    if "$http_upgrade" not in maps.values():
        why = "no map of $http_upgrade in the http context: " + (
            f"{value} is undefined, nginx -t fails (unknown variable)"
            if unknown
            else "nothing sends Connection: upgrade, Odoo answers 400 (Invalid connection header)"
        )
        return [finding("no-upgrade-map", "error", *where, why, MAP_FIX)]
    if unknown:
        why = f"{value} is not mapped in the http context: nginx -t fails (unknown variable)"
    elif value.startswith("$"):
        why = f"{value} is mapped from {maps[value]}, not $http_upgrade: Odoo answers 400"
    else:
        sent = "close (nginx's default)" if header is None else (value or "nothing")
        why = f"Odoo gets Connection: {sent} here, never upgrade: it answers 400"
    return [finding("connection-not-upgrade", "error", *where, why, MAP_FIX)]


def _host_origin_findings(location, headers, context):
    """Host and Origin as Odoo's handshake and dbfilter need them."""
    found = []
    host, origin = headers.get("host"), headers.get("origin")
    restored = "x-forwarded-host" in headers and context["proxy_mode"]
    if host is not None and not arg(host, 1):
        why = 'proxy_set_header Host "" removes Host: Odoo answers 400 (Empty or missing header(s))'
        found.append(finding("host-not-forwarded", "error", *_at(host), why, SITE_FIX))
    elif host is None and not restored:
        why = (
            "nginx sends the upstream's address as Host (no proxy_set_header Host $host), and "
            "no X-Forwarded-Host with proxy_mode restores the site's: Odoo's dbfilter and its "
            "Origin check see the wrong host"
        )
        fix = f"{SITE_FIX}; state {_ODOO} (proxy_mode = True)"
        found.append(finding("host-not-forwarded", "warning", *_at(location), why, fix))
    if origin is not None and not arg(origin, 1):
        why = (
            'proxy_set_header Origin "" removes the browser\'s Origin: Odoo answers 400 '
            "(Empty or missing header(s): origin)"
        )
        found.append(finding("origin-not-forwarded", "error", *_at(origin), why, SITE_FIX))
    return found


def _passthrough_findings(location, levels, context):
    """What keeps nginx from passing the handshake and the switch through."""
    found = []
    version, nginx = effective(levels, "proxy_http_version"), context["nginx_version"]
    old = nginx is None or tuple(nginx) < HTTP11_DEFAULT_SINCE
    if arg(version, 0) == "1.0" or (version is None and old):
        known = "nginx " + ".".join(map(str, nginx)) if nginx else "nginx (version unknown)"
        how = "proxy_http_version 1.0" if version else f"{known} speaks HTTP/1.0 to upstreams"
        why = (
            f"{how}: the websocket handshake is an HTTP/1.1 switch (RFC 6455), nginx must send 1.1"
        )
        fix = f"{SITE_FIX} (proxy_http_version 1.1)"
        found.append(finding("http-version-1.0", "error", *_at(version or location), why, fix))
    ssi = effective(levels, "ssi")
    if arg(ssi, 0) == "on":
        why = (
            "ssi on applies here: nginx's SSI filter takes Odoo's 101 Switching Protocols "
            "(sent as text/html) for a page to parse and swallows the upgrade"
        )
        found.append(finding("ssi-on", "error", *_at(ssi), why, f"ssi off here; {SITE_FIX}"))
    dropped = effective(levels, "proxy_pass_request_headers")
    if arg(dropped, 0) == "off":
        why = (
            "proxy_pass_request_headers off drops the browser's Origin, Sec-WebSocket-Key "
            "and Sec-WebSocket-Version: Odoo answers 400"
        )
        found.append(finding("request-headers-dropped", "error", *_at(dropped), why, SITE_FIX))
    return found


def _server_findings(server, http, upstreams, maps, context):
    """Findings on one server block nginx uses for the site's names."""
    found = []
    for location in own(server, "location"):
        if own(location, "proxy_pass"):
            found += _location_findings(location, server, http)
        found += _stale_route(location, context)
    # The bus's request path: /websocket, or a long poll at /longpolling/poll.
    path = "/websocket" if context["major"] >= 16 else "/longpolling/poll"
    location = location_for(server, path)
    proxy_pass = own(location, "proxy_pass") if location else []
    if not proxy_pass:
        why = f"no location here proxies {path} to Odoo: nginx serves it from disk (404)"
        return [
            *found,
            finding("no-realtime-route", "error", *_at(location or server), why, SITE_FIX),
        ]
    levels = (location, server, http)
    found += _route_findings(location, proxy_pass[-1], upstreams, path, context)
    found += _timeout_findings(location, levels, path, context)
    if context["major"] >= 16:
        headers = header_set(levels)
        found += _upgrade_findings(location, headers, maps)
        found += _host_origin_findings(location, headers, context)
        found += _passthrough_findings(location, levels, context)
    return found


def findings(payload, context):
    """
    Every nginx finding for the parsed tree PAYLOAD. CONTEXT: conf_file,
    names, ports (the site's), major (Odoo's), workers, http_port and
    evented_port (where nginx reaches Odoo), proxy_mode, nginx_version (a
    tuple, or None when unknown).
    """
    found = []
    for error in payload.get("errors", []):
        why = f"nginx cannot read this: {error.get('error')}"
        found.append(finding("nginx-unparsable", "error", *_at(error), why, TREE_FIX))
    tree = expand(payload)
    http = next((d for d in tree if d["directive"] == "http"), {"block": []})
    upstreams = upstream_blocks(http)
    found += _map_findings(tree) + _upstream_findings(upstreams)
    servers, site_findings = _sites(payload, tree, context)
    found += site_findings
    maps = {arg(d, 1).lower(): arg(d, 0).lower() for d in own(http, "map")}
    for server in servers:
        found += _server_findings(server, http, upstreams, maps, context)
    return found
