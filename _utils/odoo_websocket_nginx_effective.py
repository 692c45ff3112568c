"""
nginx's configuration as it applies, read from crossplane's parse (pure):
every include spliced in where nginx reads it, the value of a directive a
level inherits, the header set a location gets, which location takes a path,
the ports a proxy_pass reaches, nginx's times. The audit's nginx rules
(``odoo_websocket_audit_nginx``) stand on these.
"""

import re

_TIME = re.compile(r"([0-9]+)(ms|s|m|h|d|w|M|y)?")
_UNITS = dict(ms=0.001, s=1, m=60, h=3600, d=86400, w=604800, M=2592000, y=31536000)


def expand(payload):
    """
    The main file's directives with every include spliced in where nginx
    reads it, each directive tagged with its ``file``.
    """
    configs = payload["config"]

    def splice(directives, path, chain):
        result = []
        for directive in directives:
            if directive["directive"] == "include":
                for index in directive.get("includes", []):
                    if index not in chain:  # an include loop: nginx -t dies on it
                        config = configs[index]
                        result.extend(splice(config["parsed"], config["file"], chain | {index}))
                continue
            directive = dict(directive, file=path)
            if "block" in directive:
                directive["block"] = splice(directive["block"], path, chain)
            result.append(directive)
        return result

    return splice(configs[0]["parsed"], configs[0]["file"], frozenset({0})) if configs else []


def walk(directives, parents=()):
    for directive in directives:
        yield directive, parents
        if "block" in directive:
            yield from walk(directive["block"], parents + (directive["directive"],))


def own(block, name):
    return [d for d in block.get("block", []) if d["directive"] == name]


def arg(directive, index, default=""):
    args = directive["args"] if directive else []
    return args[index] if len(args) > index else default


def effective(levels, name):
    """NAME as nginx applies it: the last one of the innermost of LEVELS setting it."""
    for level in levels:
        found = own(level, name)
        if found:
            return found[-1]
    return None


def header_set(levels):
    """proxy_set_header as nginx applies it: the innermost level that has any
    gives the whole set (a location with one inherits none from its server)."""
    for level in levels:
        found = own(level, "proxy_set_header")
        if found:
            return {arg(d, 0).lower(): d for d in found}
    return {}


def seconds(value):
    """An nginx time (``30``, ``90s``, ``1m30s``, ``500ms``) in seconds, or None."""
    parts = _TIME.findall(value or "")
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(int(number) * _UNITS[unit or "s"] for number, unit in parts)


def upstream_blocks(http):
    found = {}
    for directive in own(http, "upstream"):
        found.setdefault(arg(directive, 0), []).append(directive)
    return found


def address_port(address, default=80):
    """The port of ADDRESS (host, host:port, [v6]:port); None for unix sockets."""
    if address.startswith("unix:"):
        return None
    tail = address.rsplit("]", 1)[-1]
    if ":" not in tail:
        return default
    port = tail.rsplit(":", 1)[1]
    return int(port) if port.isdigit() else None


def proxy_ports(proxy_pass, upstreams):
    """The ports PROXY_PASS reaches; None when nginx only knows at run time."""
    match = re.match(r"^(https?)://([^/]+)", arg(proxy_pass, 0))
    if not match or "$" in match.group(2):
        return None
    default = 443 if match.group(1) == "https" else 80
    authority = match.group(2)
    if authority in upstreams:
        servers = [arg(s, 0) for u in upstreams[authority] for s in own(u, "server")]
    else:
        servers = [authority]
    ports = {address_port(server, default) for server in servers} - {None}
    return ports or None


def location_for(server, path):
    """The top-level location nginx picks for PATH: exact, else the longest
    prefix when it is ^~, else the first regex that matches, else that prefix."""
    prefixes, regexes = [], []
    for location in own(server, "location"):
        modifier, uri = (
            (arg(location, 0), arg(location, 1))
            if len(location["args"]) > 1
            else ("", arg(location, 0))
        )
        if modifier == "=" and uri == path:
            return location
        if modifier in ("~", "~*"):
            try:
                regexes.append((location, re.compile(uri, re.I if modifier == "~*" else 0)))
            except re.error:  # PCRE only: nginx decides, not us
                continue
        elif modifier in ("", "^~") and path.startswith(uri):
            prefixes.append((len(uri), modifier, location))
    best = max(prefixes, key=lambda prefix: prefix[0], default=None)
    if best and best[1] == "^~":
        return best[2]
    return next((loc for loc, regex in regexes if regex.search(path)), best[2] if best else None)
