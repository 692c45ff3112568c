"""
A location the formula owns in an adopted site (odoo_websocket_adopt): the
host's location merged with the formula's (the formula's proxying: upstream,
headers, HTTP/1.1, timeouts; the host's other lines kept, its values where it
chose them), and how to tell the formula's locations from the host's.

Pure, on crossplane's parse of a site.
"""

import copy
import re

import odoo_websocket_nginx_text as nginx_text
from odoo_websocket_nginx_effective import seconds
from odoo_websocket_nginx_text import AdoptError

# The first line of every location the formula owns in an adopted site.
MARKER = " odoo_websocket (Salt) sets this location's proxying; its other lines are kept."
# The formula's site sets these at server level; in an adopted site every
# location the formula owns carries them, and the host's server level stays.
_TIMEOUTS = ("proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout")
# What the host decides in its own site: compression and upload size.
_LEFT_TO_HOST = {"gzip", "gzip_types", "client_max_body_size"}
# Directives that repeat with a key: owned per (name, first argument).
_KEYED = {"proxy_set_header", "add_header", "proxy_cookie_flags"}
# Owned in every location the formula owns, whatever its template sets.
_ALWAYS_OWNED = {
    "proxy_pass",
    "proxy_http_version",
    "return",  # a location the formula owns proxies to Odoo
    *_TIMEOUTS,
    *(
        ("proxy_set_header", header)
        for header in ("upgrade", "connection", "host", "origin", "x-forwarded-host",
                       "x-forwarded-for", "x-forwarded-proto", "x-real-ip")
    ),
}  # fmt: skip
# Where the host already sets these, its value stays (a TLS-terminating
# balancer in front sends "X-Forwarded-Proto https", a long report needs a
# longer read timeout); the formula's only fill a gap.
_HOST_VALUE = {
    "proxy_redirect",
    *_TIMEOUTS,
    *(("proxy_set_header", header) for header in ("x-forwarded-host", "x-forwarded-for",
                                                   "x-forwarded-proto", "x-real-ip")),
}  # fmt: skip
# A location that sets one of these inherits none of its server's: the
# server's lines are copied in, so the host's own headers still reach Odoo.
_INHERITED_ARRAYS = ("proxy_set_header", "add_header")
# Who may open the site: a bus location the formula adds gets "/"'s lines.
_ACCESS = {"allow", "deny", "satisfy", "auth_basic", "auth_basic_user_file", "auth_request",
           "auth_request_set", "limit_req", "limit_conn"}  # fmt: skip
_BUS_PATHS = ("/websocket", "/longpolling")


def adopted(text):
    """
    Whether TEXT (a site file) holds a location the formula set when it
    adopted the file.
    """
    return MARKER.strip() in text


def _key(directive):
    name = directive["directive"]
    if name in _KEYED and directive["args"]:
        return (name, directive["args"][0].lower())
    return name


def _marker(directive):
    return directive["directive"] == "#" and directive.get("comment", "").rstrip("\r") == MARKER


def formula_parts(site):
    """From the formula's rendered site: its upstreams, the locations of its
    serving block, and that block's timeouts."""
    parsed = [d for d in nginx_text.parse(site) if d["directive"] != "#"]
    servers = [d for d in parsed if d["directive"] == "server" and not nginx_text.redirect_only(d)]
    if not servers:
        raise AdoptError("the formula's site template has no server block with locations")
    strip = lambda directives: [_clean(d) for d in directives if d["directive"] != "#"]  # noqa: E731
    return {
        "upstreams": strip(d for d in parsed if d["directive"] == "upstream"),
        "locations": strip(d for d in servers[-1]["block"] if d["directive"] == "location"),
        "timeouts": strip(d for d in servers[-1]["block"] if d["directive"] in _TIMEOUTS),
    }


def _clean(directive):
    """A directive of the formula's, without the template's line numbers."""
    out = {"directive": directive["directive"], "args": list(directive["args"])}
    if directive.get("block") is not None:
        out["block"] = [_clean(d) for d in directive["block"] if d["directive"] != "#"]
    return out


def same_location(host, formula):
    """Whether the host's location is the one FORMULA owns: the same
    arguments; or the same path as a prefix ("" and "^~" alike); or for the
    bus route, its path with a trailing slash or an exact match."""
    if host["args"] == formula["args"]:
        return True
    (hm, hp), (fm, fp) = (
        nginx_text.location_path(host["args"]),
        nginx_text.location_path(formula["args"]),
    )
    if fp in _BUS_PATHS:
        return hm in ("", "^~", "=") and hp.rstrip("/") == fp
    return hm in ("", "^~") and fm in ("", "^~") and hp == fp


def _captured(server, path):
    """Whether a regex location of SERVER matches PATH: it would win over a
    plain prefix location (an unreadable pattern counts as matching)."""
    for d in server["block"]:
        modifier, pattern = (
            nginx_text.location_path(d["args"]) if d["directive"] == "location" else ("?", "")
        )
        if modifier in ("~", "~*"):
            try:
                flags = re.IGNORECASE if modifier == "~*" else 0
                if re.search(pattern, path, flags):
                    return True
            except re.error:
                return True
    return False


def merged(host, formula, server, timeouts, included=None):
    """The location the formula owns: the marker, the host's own lines kept
    (in their order, includes too), "/"'s access lines for a bus location it
    adds, copies of the server's header lines the location would stop
    inheriting, then the formula's proxying, but where the host sets one of
    _HOST_VALUE (or an include of the location sets it) the host's stays.
    The same shape on every pass, so a second one changes nothing. SERVER:
    the server block as nginx sees it (includes expanded)."""
    bus = nginx_text.location_path(formula["args"])[1] in _BUS_PATHS
    new = [copy.deepcopy(d) for d in formula["block"] if d["directive"] not in _LEFT_TO_HOST]
    new += [copy.deepcopy(t) for t in timeouts if t["directive"] not in {_key(d) for d in new}]
    owned = {_key(d) for d in new} | _ALWAYS_OWNED
    before = expanded(host, included or {})["block"] if host else []
    for d in before:
        if "included_by" in d and _key(d) in _CRITICAL:
            raise AdoptError(
                f"location {' '.join(host['args'])} includes "
                f"{' '.join(d['included_by']['args'])}, which sets {d['directive']} "
                f"{' '.join(d['args'])}: the formula does not edit an include; move that line "
                "into the location, or out of the include"
            )
    brought = {_key(d) for d in before if "included_by" in d}
    inherited = [_plain(d) for d in server["block"] if d["directive"] in _INHERITED_ARRAYS]
    effective = list(before)  # what the location sets, and what it inherits today
    for name in _INHERITED_ARRAYS:
        if not any(d["directive"] == name for d in before):
            effective += [d for d in inherited if d["directive"] == name]
    chosen = []
    for directive in new:
        if _key(directive) in brought:
            continue  # the location's include sets it
        theirs = [
            d for d in effective if _key(d) == _key(directive) and _key(d) in _HOST_VALUE
            and not (bus and d["directive"] in _TIMEOUTS and (seconds(d["args"][0]) or 0) < 60)
        ]  # fmt: skip
        chosen += [_plain(d) for d in theirs] or [directive]
    kept = [d for d in (host["block"] if host else []) if _key(d) not in owned and not _marker(d)]
    copies = []
    for name in _INHERITED_ARRAYS:
        if any(d["directive"] == name for d in chosen) and not any(
            d["directive"] == name for d in before
        ):
            copies += [d for d in inherited if d["directive"] == name and _key(d) not in owned]
    access = []
    if host is None and bus:
        root = [d for d in server["block"] if d["directive"] == "location"
                and nginx_text.location_path(d["args"]) in nginx_text.ROOTS]  # fmt: skip
        access = [_plain(d) for r in root for d in r["block"] if d["directive"] in _ACCESS]
    marker = {"directive": "#", "args": [], "comment": MARKER}
    block = [marker] + kept + access + copies + chosen
    return {"directive": "location", "args": _location_args(host, formula, server), "block": block}


def _plain(directive):
    """A copy of DIRECTIVE as a line of the site's own (not an include's)."""
    out = copy.deepcopy(directive)
    out.pop("included_by", None)
    return out


def _location_args(host, formula, server):
    """The owned location's arguments: the host's; for the bus route its
    exact path (a trailing slash would not match it), made "^~" where a
    regex location of the block would capture it."""
    if host is None:
        args = list(formula["args"])
    else:
        args = list(host["args"])
    modifier, path = nginx_text.location_path(args)
    if path.rstrip("/") in _BUS_PATHS:
        path = path.rstrip("/")
        if modifier != "=" and _captured(server, path):
            modifier = "^~"
        args = [modifier, path] if modifier else [path]
    return args


# What an include inside a location the formula owns may not set: the edit
# cannot change an include, and these are what the websocket needs exactly
# (what else an include sets there stays, and the formula adds no second one).
_CRITICAL = {"proxy_pass", "proxy_http_version", ("proxy_set_header", "upgrade"),
             ("proxy_set_header", "connection")}  # fmt: skip


def expanded(block_directive, included):
    """BLOCK_DIRECTIVE with its includes' directives in place of the
    include lines (each marked as coming from one): what nginx sees."""
    block = []
    for d in block_directive["block"]:
        if d["directive"] == "include" and d.get("line") in included:
            block += [dict(x, included_by=d) for x in included[d["line"]]]
        else:
            block.append(d)
    return dict(block_directive, block=block)
