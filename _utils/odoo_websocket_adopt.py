"""
Adopting a host's own Odoo site: the file is edited in place, and only what
the websocket path needs changes. In every server block that serves the
pillar's names, the locations the formula owns (the bus route, ``/``, and
the static and database-manager locations when the pillar asks for them)
get the formula's proxying: upstream, headers, HTTP/1.1, timeouts. Every
other line stays as the host wrote it: other names, listens, TLS, logs,
other locations, other server blocks, http-level directives, comments.

Why in place and not a re-rendered site: what a host's site carries is
open-ended (certificates, auth, caching, rate limits, a second site in the
same file); a template can only carry over what it knows. The edit works on
crossplane's parse of the file and writes back only the blocks it changed,
at their own lines, so the diff an operator reviews is the websocket part.

Pure: reads and writes no live file (crossplane parses from a private
temporary folder).

:depends: crossplane (nginx config parser)
"""

import copy
import re

try:
    import crossplane
except ImportError:  # odoo_websocket_minion.missing_message says so
    pass

import odoo_websocket_nginx_text as nginx_text
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


def _formula_parts(site):
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


def _same_location(host, formula):
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


def _seconds(value):
    """An nginx time (720s, 1h30m, 60) in seconds; None when unreadable."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000,
             "y": 31536000, "": 1}  # fmt: skip
    parts = re.fullmatch(r"((\d+)(ms|s|m|h|d|w|M|y)?)+", value or "")
    if not parts:
        return None
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|M|y)?", value))


def _merged(host, formula, server, timeouts, included=None):
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
    before = _expanded(host, included or {})["block"] if host else []
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
            and not (bus and d["directive"] in _TIMEOUTS and (_seconds(d["args"][0]) or 0) < 60)
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


def edit(text, names, site, included=None):
    """
    TEXT (a host's site file) with the websocket path of every server block
    serving NAMES set as SITE (the formula's rendered site) sets it, the rest
    kept. INCLUDED: ``{line of an include directive in TEXT: the directives
    it brings}`` (from the live tree; an include is never edited). Returns
    ``{"text", "changed": [...], "kept": [...]}`` (short phrases for the
    run's comment); raises AdoptError when it cannot be adopted, saying why.
    """
    formula, included = _formula_parts(site), included or {}
    newline = "\r\n" if "\r\n" in text else "\n"
    parsed, lines = nginx_text.parse(text), text.split(newline)
    blocks, spans = list(nginx_text.blocks(parsed)), nginx_text.spans(text)
    if len(blocks) != len(spans):  # a lexer extension (lua blocks, say) crossplane reads apart
        raise AdoptError("its blocks could not be matched to their lines")
    span = dict(zip(map(id, blocks), spans, strict=True))
    unit = nginx_text.indent_unit(lines, parsed)
    wanted = {name.lower() for name in names}
    servers = [d for d in parsed if d["directive"] == "server" and d.get("block") is not None]
    serving = [
        s
        for s in servers
        if wanted & nginx_text.server_names(s) and not nginx_text.redirect_only(s)
    ]
    if not serving:
        raise AdoptError(f"no server block in it serves {', '.join(names)} (only redirects)")
    edits, whole_file, changed = [], False, []
    rebuilt = copy.deepcopy(parsed)  # for a file whose blocks share lines
    for server in serving:
        twin = rebuilt[parsed.index(server)]
        view = _expanded(server, included)  # what nginx sees of the block
        server_edits, rebuild_server = [], False
        for location in formula["locations"]:
            host = next((d for d in server["block"] if d["directive"] == "location"
                         and _same_location(d, location)), None)  # fmt: skip
            if host is None:
                _not_in_an_include(view, location, server)
            merged = _merged(host, location, view, formula["timeouts"], included)
            where = " ".join(merged["args"])
            if host is not None:
                twin["block"][server["block"].index(host)] = merged
                if _without_lines(merged) == _without_lines(host):
                    continue
                changed.append(f"location {where} (proxying set)")
                place = span[id(host)]
                if not place["whole"]:
                    rebuild_server = True
                    continue
                built = nginx_text.build(
                    merged, nginx_text.margin(lines[place["start"] - 1]), unit, place["tail"]
                )
                server_edits.append((place["start"], place["end"], built))
            else:
                twin["block"].append(merged)
                changed.append(f"location {where} (added)")
                place = span[id(server)]
                if not (place["whole"] and place["end"] > place["start"]):
                    rebuild_server = True
                    continue
                first = [d for d in server["block"] if d["directive"] != "#"]
                margin = (nginx_text.margin(lines[first[0]["line"] - 1]) if first
                          else nginx_text.margin(lines[place["end"] - 1]) + unit)  # fmt: skip
                end = place["end"]
                server_edits.append((end, end - 1, [""] + nginx_text.build(merged, margin, unit)))
        place = span[id(server)]
        if rebuild_server and place["whole"]:
            built = nginx_text.build(
                twin, nginx_text.margin(lines[place["start"] - 1]), unit, place["tail"]
            )
            edits.append((place["start"], place["end"], built))
        elif rebuild_server:
            whole_file = True
        else:
            edits.extend(server_edits)
    upstream_edits, upstream_changes = _upstreams(parsed, rebuilt, formula, span, lines, unit)
    changed += upstream_changes
    if upstream_edits is None:
        whole_file = True
    else:
        edits.extend(upstream_edits)
    if whole_file:
        result = crossplane.build(rebuilt, indent=4).replace("\n", newline) + newline
    else:
        result = nginx_text.apply_edits(lines, edits, newline)
    nginx_text.parse(result)  # the edit itself must leave a file nginx's grammar accepts
    kept = _kept(parsed, serving, wanted, formula["locations"])
    return {"text": result, "changed": changed, "kept": kept}


# What an include inside a location the formula owns may not set: the edit
# cannot change an include, and these are what the websocket needs exactly
# (what else an include sets there stays, and the formula adds no second one).
_CRITICAL = {"proxy_pass", "proxy_http_version", ("proxy_set_header", "upgrade"),
             ("proxy_set_header", "connection")}  # fmt: skip


def _expanded(block_directive, included):
    """BLOCK_DIRECTIVE with its includes' directives in place of the
    include lines (each marked as coming from one): what nginx sees."""
    block = []
    for d in block_directive["block"]:
        if d["directive"] == "include" and d.get("line") in included:
            block += [dict(x, included_by=d) for x in included[d["line"]]]
        else:
            block.append(d)
    return dict(block_directive, block=block)


def _not_in_an_include(view, location, server):
    """A location the formula would add must not come from an include
    already: nginx would refuse the duplicate."""
    for d in view["block"]:
        if "included_by" in d and d["directive"] == "location" and _same_location(d, location):
            path = " ".join(d["included_by"]["args"])
            raise AdoptError(
                f"its server block at line {server['line']} takes location "
                f"{' '.join(d['args'])} from an include ({path}), which the formula does not "
                "edit: put that location in the site file in place of the include"
            )


def _without_lines(directive):
    """A directive for comparison: no line numbers."""
    out = {"directive": directive["directive"], "args": directive["args"]}
    if directive["directive"] == "#":
        out["comment"] = directive.get("comment")
    if directive.get("block") is not None:
        out["block"] = [_without_lines(d) for d in directive["block"]]
    return out


def _upstreams(parsed, rebuilt, formula, span, lines, unit):
    """The formula's upstreams: replaced where the file has them, else put
    before its first server block. Returns (edits or None: rebuild the file,
    what changed)."""
    edits, changed, missing = [], [], []
    by_name = {tuple(d["args"]): d for d in parsed if d["directive"] == "upstream" and "block" in d}
    for upstream in formula["upstreams"]:
        host = by_name.get(tuple(upstream["args"]))
        if host is None:
            missing.append(upstream)
            continue
        rebuilt[parsed.index(host)] = copy.deepcopy(upstream)
        if _without_lines(host) == _without_lines(upstream):
            continue
        changed.append(f"upstream {upstream['args'][0]} (set)")
        place = span[id(host)]
        if not place["whole"]:
            return None, changed
        edits.append(
            (place["start"], place["end"], nginx_text.build(copy.deepcopy(upstream), "", unit))
        )
    if missing:
        # After the file's own upstreams, else before its first server block
        # (and the comment lines heading it).
        hosts = [d for d in parsed if d["directive"] == "upstream" and "block" in d]
        anchor = hosts[-1] if hosts else next(d for d in parsed if d["directive"] == "server")
        index = parsed.index(anchor) + (1 if hosts else 0)
        rebuilt[index:index] = copy.deepcopy(missing)
        changed.append("upstreams " + ", ".join(u["args"][0] for u in missing) + " (added)")
        place = span[id(anchor)]
        if not place["whole"]:
            return None, changed
        text = [
            line for u in missing for line in [""] + nginx_text.build(copy.deepcopy(u), "", unit)
        ]
        if hosts:
            edits.append((place["end"] + 1, place["end"], text))
        else:
            start = place["start"]
            while start > 1 and lines[start - 2].lstrip().startswith("#"):
                start -= 1
            edits.append((start, start - 1, text[1:] + [""]))
    return edits, changed


def _kept(parsed, serving, wanted, owned):
    """Short phrases: what of the host's site the edit left as it was."""
    kept = []
    other_names = sorted({n for s in serving for n in nginx_text.server_names(s)} - wanted)
    if other_names:
        kept.append("names " + " ".join(other_names))
    listens = sorted({listen for s in serving for listen in nginx_text.listen_args(s)})
    kept.append("listen " + ", ".join(listens))
    others = [
        d for s in serving for d in s["block"] if d["directive"] == "location"
        and not any(_same_location(d, location) for location in owned)
    ]  # fmt: skip
    if others:
        kept.append(f"{len(others)} other location(s)")
    servers = [d for d in parsed if d["directive"] == "server"]
    if len(servers) > len(serving):
        kept.append(f"{len(servers) - len(serving)} other server block(s)")
    return kept
