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
import io
import ipaddress
import os
import tempfile

try:
    import crossplane
    import crossplane.errors
    from crossplane.lexer import _lex_file_object

    HAS_CROSSPLANE = True
except ImportError:
    HAS_CROSSPLANE = False

__virtualname__ = "odoo_websocket_adopt"

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
    "return",  # a location the formula owns proxies to Odoo
    "proxy_http_version",
    "proxy_redirect",
    *_TIMEOUTS,
    *(
        ("proxy_set_header", header)
        for header in ("upgrade", "connection", "host", "origin", "x-forwarded-host",
                       "x-forwarded-for", "x-forwarded-proto", "x-real-ip")
    ),
}  # fmt: skip
# A location that sets one of these inherits none of its server's: the
# server's lines are copied in, so the host's own headers still reach Odoo.
_INHERITED_ARRAYS = ("proxy_set_header", "add_header")
_PATH_MODIFIERS = ("", "^~", "=")


def __virtual__():
    if not HAS_CROSSPLANE:
        return (False, "odoo_websocket_adopt: the Python package 'crossplane' is missing")
    return __virtualname__


class AdoptError(ValueError):
    """The site cannot be adopted as it is; the message says why and what to do."""


def _parse(text):
    """The file TEXT parsed alone (includes not followed), comments kept."""
    with tempfile.TemporaryDirectory(prefix="odoo_websocket-adopt.") as folder:
        path = os.path.join(folder, "site.conf")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            payload = crossplane.parse(
                path, single=True, comments=True, check_ctx=False, check_args=False,
                catch_errors=False,
            )  # fmt: skip
        except crossplane.errors.NgxParserBaseException as exc:
            raise AdoptError(f"nginx's grammar does not accept it: {exc.strerror}") from None
    if payload["status"] != "ok":
        why = payload["errors"][0]
        message = why["error"].split(" in /")[0]
        raise AdoptError(f"nginx's grammar does not accept it: {message} (line {why['line']})")
    return payload["config"][0]["parsed"]


def _spans(text):
    """Every block's lines, in the order of its opening brace: ``[{start,
    end, whole}]``; WHOLE: nothing else shares its first or last line, so the
    block can be replaced line for line."""
    tokens = [t for t in _lex_file_object(io.StringIO(text + "\n"))]
    by_line = {}
    for index, (token, line, quoted) in enumerate(tokens):
        if not (token.startswith("#") and not quoted):
            by_line.setdefault(line, []).append(index)
    spans, stack, statement = [], [], None
    for index, (token, line, quoted) in enumerate(tokens):
        if token.startswith("#") and not quoted:
            continue
        if statement is None:
            statement = index
        if quoted:
            continue
        if token == "{":
            spans.append({"first": statement, "start": tokens[statement][1]})
            stack.append(len(spans) - 1)
            statement = None
        elif token == "}":
            span = spans[stack.pop()]
            span["end"] = line
            span["whole"] = (
                min(by_line[span["start"]]) == span["first"]
                and max(by_line[line]) == index
                and not any(t[1] == line and t[0].startswith("#") for t in tokens)
            )
            statement = None
        elif token == ";":
            statement = None
    return spans


def _blocks(directives):
    """Every block directive in document order (the order of its brace)."""
    for directive in directives:
        if directive.get("block") is not None:
            yield directive
            yield from _blocks(directive["block"])


def _key(directive):
    name = directive["directive"]
    if name in _KEYED and directive["args"]:
        return (name, directive["args"][0].lower())
    return name


def _marker(directive):
    return directive["directive"] == "#" and directive.get("comment") == MARKER


def _names(server):
    block = server["block"]
    return {a.lower() for d in block if d["directive"] == "server_name" for a in d["args"]}


def _directive_names(block):
    for directive in block:
        yield directive["directive"]
        yield from _directive_names(directive.get("block") or [])


def redirect_only(server):
    """Whether a server block only sends browsers elsewhere: a return or
    rewrite, and no proxy_pass anywhere in it (http -> https, www)."""
    names = set(_directive_names(server["block"]))
    return "proxy_pass" not in names and bool(names & {"return", "rewrite"})


def _listens(server):
    return [" ".join(d["args"]) for d in server["block"] if d["directive"] == "listen"] or ["80"]


def _formula_parts(site):
    """From the formula's rendered site: its upstreams, the locations of its
    serving block, and that block's timeouts."""
    parsed = [d for d in _parse(site) if d["directive"] != "#"]
    servers = [d for d in parsed if d["directive"] == "server" and not redirect_only(d)]
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
    arguments, or for a one-path location (the bus route) the same path with
    a prefix or exact modifier (``/websocket/``, ``^~ /websocket``)."""
    if host["args"] == formula["args"]:
        return True
    if len(formula["args"]) != 1 or formula["args"][0] == "/" or len(host["args"]) not in (1, 2):
        return False
    modifier, value = ([""] + host["args"])[-2:]
    return modifier in _PATH_MODIFIERS and value.rstrip("/") == formula["args"][0].rstrip("/")


def _merged(host, formula, inherited, timeouts):
    """The location the formula owns: the host's own lines kept (first, in
    their order), then the marker, copies of the server's header lines the
    location would stop inheriting, and the formula's proxying."""
    new = [copy.deepcopy(d) for d in formula["block"] if d["directive"] not in _LEFT_TO_HOST]
    new += [copy.deepcopy(t) for t in timeouts if t["directive"] not in {_key(d) for d in new}]
    owned = {_key(d) for d in new} | _ALWAYS_OWNED
    before = host["block"] if host else []
    kept = [d for d in before if _key(d) not in owned and not _marker(d)]
    copies = []
    for name in _INHERITED_ARRAYS:
        if any(d["directive"] == name for d in new) and not any(
            d["directive"] == name for d in before
        ):
            copies += [copy.deepcopy(d) for d in inherited if d["directive"] == name]
    copies = [d for d in copies if _key(d) not in owned]
    marker = {"directive": "#", "args": [], "comment": MARKER}
    args = host["args"] if host else formula["args"]
    return {"directive": "location", "args": list(args), "block": [marker] + kept + copies + new}


def _indent(text, margin):
    return [margin + line if line.strip() else line for line in text.split("\n")]


def _numbered(directives, start=-1):
    """Give new directives distinct line numbers of their own, so crossplane's
    builder never joins a comment onto the line before it."""
    counter = [start]

    def walk(items):
        for item in items:
            if "line" not in item:
                item["line"] = counter[0]
                counter[0] -= 1
            if item.get("block") is not None:
                walk(item["block"])

    walk(directives)
    return directives


def _unit(lines, parsed):
    """The file's indentation step (a tab, or so many spaces): the margin a
    block's first child adds to the block's own line; four spaces when no
    block shows one."""
    for block in _blocks(parsed):
        children = [d for d in block["block"] if d["line"] > block["line"]]
        if children:
            outer = _margin(lines[block["line"] - 1])
            inner = _margin(lines[children[0]["line"] - 1])
            if len(inner) > len(outer) and inner.startswith(outer):
                return inner[len(outer) :]
    return "    "


def _build(directive, margin, unit="    "):
    tabs = unit == "\t"
    text = crossplane.build(_numbered([directive]), indent=len(unit), tabs=tabs)
    return _indent(text, margin)


def _margin(line):
    return line[: len(line) - len(line.lstrip())]


def edit(text, names, site):
    """
    TEXT (a host's site file) with the websocket path of every server block
    serving NAMES set as SITE (the formula's rendered site) sets it, the rest
    kept. Returns ``{"text", "changed": [...], "kept": [...]}`` (short phrases
    for the run's comment); raises AdoptError when no block there serves NAMES.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_adopt.edit "$(cat /etc/nginx/sites-enabled/odoo)" \\
            '[odoo.example.com]' "$(cat site.conf)"
    """
    formula = _formula_parts(site)
    parsed = _parse(text)
    lines = text.split("\n")
    blocks, spans = list(_blocks(parsed)), _spans(text)
    if len(blocks) != len(spans):  # a lexer extension (lua blocks, say) crossplane reads apart
        raise AdoptError("its blocks could not be matched to their lines")
    span = dict(zip(map(id, blocks), spans, strict=True))
    unit = _unit(lines, parsed)
    wanted = {name.lower() for name in names}
    servers = [d for d in parsed if d["directive"] == "server" and d.get("block") is not None]
    serving = [s for s in servers if wanted & _names(s) and not redirect_only(s)]
    if not serving:
        raise AdoptError(f"no server block in it serves {', '.join(names)} (only redirects)")
    edits, whole_file, changed = [], False, []
    rebuilt = copy.deepcopy(parsed)  # for a file whose blocks share lines
    rebuilt_servers = [rebuilt[parsed.index(s)] for s in serving]
    for server, twin in zip(serving, rebuilt_servers, strict=True):
        server_edits, rebuild_server = [], False
        inherited = [d for d in server["block"] if d["directive"] in _INHERITED_ARRAYS]
        for location in formula["locations"]:
            host = next(
                (d for d in server["block"] if d["directive"] == "location"
                 and _same_location(d, location)),
                None,
            )  # fmt: skip
            merged = _merged(host, location, inherited, formula["timeouts"])
            where = " ".join(merged["args"])
            if host is not None:
                twin["block"][server["block"].index(host)] = merged
                if _without_lines(merged) == _without_lines(host):
                    continue
                changed.append(f"location {where} (proxying set)")
                place = span[id(host)]
                if place["whole"]:
                    margin = _margin(lines[place["start"] - 1])
                    server_edits.append(
                        (place["start"], place["end"], _build(merged, margin, unit))
                    )
                else:
                    rebuild_server = True
            else:
                twin["block"].append(merged)
                changed.append(f"location {where} (added)")
                place = span[id(server)]
                if place["whole"] and place["end"] > place["start"]:
                    first = [d for d in server["block"] if d["directive"] != "#"]
                    margin = (
                        _margin(lines[first[0]["line"] - 1])
                        if first
                        else _margin(lines[place["end"] - 1]) + unit
                    )
                    end = place["end"]
                    server_edits.append((end, end - 1, [""] + _build(merged, margin, unit)))
                else:
                    rebuild_server = True
        if rebuild_server:
            place = span[id(server)]
            if not place["whole"]:
                whole_file = True
            else:
                margin = _margin(lines[place["start"] - 1])
                edits.append((place["start"], place["end"], _build(twin, margin, unit)))
        else:
            edits.extend(server_edits)
    upstream_edits, upstream_changes = _upstreams(parsed, rebuilt, formula, span, lines, unit)
    changed += upstream_changes
    if upstream_edits is None:
        whole_file = True
    else:
        edits.extend(upstream_edits)
    if whole_file:
        result = crossplane.build(rebuilt, indent=4) + "\n"
    else:
        result = _apply(lines, edits)
    _parse(result)  # the edit itself must leave a file nginx's grammar accepts
    kept = _kept(parsed, serving, wanted, formula["locations"])
    return {"text": result, "changed": changed, "kept": kept}


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
        edits.append((place["start"], place["end"], _build(copy.deepcopy(upstream), "", unit)))
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
        text = [line for u in missing for line in [""] + _build(copy.deepcopy(u), "", unit)]
        if hosts:
            edits.append((place["end"] + 1, place["end"], text))
        else:
            start = place["start"]
            while start > 1 and lines[start - 2].lstrip().startswith("#"):
                start -= 1
            edits.append((start, start - 1, text[1:] + [""]))
    return edits, changed


def _apply(lines, edits):
    """LINES with each (first, last, new lines) edit made, 1-based and
    inclusive (last = first - 1: insert before FIRST)."""
    out = list(lines)
    for first, last, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        out[first - 1 : last] = new
    return "\n".join(out)


def _kept(parsed, serving, wanted, owned):
    """Short phrases: what of the host's site the edit left as it was."""
    kept = []
    other_names = sorted({n for s in serving for n in _names(s)} - wanted)
    if other_names:
        kept.append("names " + " ".join(other_names))
    listens = sorted({listen for s in serving for listen in _listens(s)})
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


def _listen(args):
    """``{port, ssl, address}`` of a listen directive (address: a specific
    IP address the check can connect to, else None); None for a unix socket."""
    value = args[0] if args else "80"
    if value.startswith("unix:"):
        return None
    host, _, port = value.rpartition(":") if not value.endswith("]") else (value, "", "")
    if not port.isdigit():
        host, port = (value if not value.isdigit() else ""), (value if value.isdigit() else "80")
    address = host.strip("[]")
    try:
        specific = ipaddress.ip_address(address) and address not in ("0.0.0.0", "::")
    except ValueError:
        specific = False
    return {"port": int(port), "ssl": "ssl" in args[1:], "address": address if specific else None}


def listens(text, names):
    """
    Where the server blocks in TEXT that serve NAMES (not only redirect)
    listen: ``[{port, ssl, address}]``, in the file's order.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_adopt.listens "$(cat /etc/nginx/sites-enabled/odoo)" '[odoo]'
    """
    wanted = {name.lower() for name in names}
    found = []
    for server in _parse(text):
        if server["directive"] == "server" and wanted & _names(server):
            if redirect_only(server):
                continue
            directives = [d["args"] for d in server["block"] if d["directive"] == "listen"]
            # "ssl on" (nginx before 1.25.1) makes every listen of the block TLS.
            ssl_on = ["on"] in [d["args"] for d in server["block"] if d["directive"] == "ssl"]
            for listen in filter(None, map(_listen, directives or [["80"]])):
                found.append(dict(listen, ssl=listen["ssl"] or ssl_on))
    return found
