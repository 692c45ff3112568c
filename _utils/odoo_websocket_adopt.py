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

try:
    import crossplane
except ImportError:  # odoo_websocket_minion.missing_message says so
    pass

import odoo_websocket_nginx_text as nginx_text
from odoo_websocket_adopt_location import expanded, formula_parts, merged, same_location
from odoo_websocket_nginx_text import AdoptError


def edit(text, names, site, included=None):
    """
    TEXT (a host's site file) with the websocket path of every server block
    serving NAMES set as SITE (the formula's rendered site) sets it, the rest
    kept. INCLUDED: ``{line of an include directive in TEXT: the directives
    it brings}`` (from the live tree; an include is never edited). Returns
    ``{"text", "changed": [...], "kept": [...]}`` (short phrases for the
    run's comment); raises AdoptError when it cannot be adopted, saying why.
    """
    formula, included = formula_parts(site), included or {}
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
        view = expanded(server, included)  # what nginx sees of the block
        server_edits, rebuild_server = [], False
        for location in formula["locations"]:
            host = next((d for d in server["block"] if d["directive"] == "location"
                         and same_location(d, location)), None)  # fmt: skip
            if host is None:
                _not_in_an_include(view, location, server)
            owned = merged(host, location, view, formula["timeouts"], included)
            where = " ".join(owned["args"])
            if host is not None:
                twin["block"][server["block"].index(host)] = owned
                if _without_lines(owned) == _without_lines(host):
                    continue
                changed.append(f"location {where} (proxying set)")
                place = span[id(host)]
                if not place["whole"]:
                    rebuild_server = True
                    continue
                built = nginx_text.build(
                    owned, nginx_text.margin(lines[place["start"] - 1]), unit, place["tail"]
                )
                server_edits.append((place["start"], place["end"], built))
            else:
                twin["block"].append(owned)
                changed.append(f"location {where} (added)")
                place = span[id(server)]
                if not (place["whole"] and place["end"] > place["start"]):
                    rebuild_server = True
                    continue
                first = [d for d in server["block"] if d["directive"] != "#"]
                margin = (nginx_text.margin(lines[first[0]["line"] - 1]) if first
                          else nginx_text.margin(lines[place["end"] - 1]) + unit)  # fmt: skip
                end = place["end"]
                server_edits.append((end, end - 1, [""] + nginx_text.build(owned, margin, unit)))
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


def _not_in_an_include(view, location, server):
    """A location the formula would add must not come from an include
    already: nginx would refuse the duplicate."""
    for d in view["block"]:
        if "included_by" in d and d["directive"] == "location" and same_location(d, location):
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
        and not any(same_location(d, location) for location in owned)
    ]  # fmt: skip
    if others:
        kept.append(f"{len(others)} other location(s)")
    servers = [d for d in parsed if d["directive"] == "server"]
    if len(servers) > len(serving):
        kept.append(f"{len(servers) - len(serving)} other server block(s)")
    return kept
