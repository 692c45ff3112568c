"""
Bind the Odoo service's published ports to one host address in a compose file.

A compose file that publishes ``"8069:8069"`` listens on every interface of the
host, so browsers can reach Odoo without nginx. This module rewrites just the
port entries of one service, through ruamel.yaml's round-trip mode: comments,
anchors, key order, quoting and every other service stay as they were. Ports
that come from an anchor are copied into the service, or refused when other
services hold them too: rebinding them would rebind those services.

:depends: ruamel.yaml
"""

import json
import math
import re

import odoo_websocket_compose_ports as port_entries
from odoo_websocket_compose_ports import ComposeError, load, published_ports, service_of

# What to do when the ports are not the service's own text.
_OWN = "write its ports out in its own 'ports:' list (no alias, no merge key)"


def _scalar_span(line, col, flow=False):
    """Start and end columns of the scalar written at COL, past an anchor
    (&web) or tag before it, which stay; in a flow collection a plain scalar
    also ends at ',', ']' or '}'."""
    line = line.rstrip("\r\n")
    col = re.compile(r"(?:[&!][^\s,\[\]{}]*[ \t]+)*").match(line, col).end()
    quote = line[col] if col < len(line) else "?"
    if quote in "'\"":
        end = col + 1
        while end < len(line):
            if line[end] == "\\" and quote == '"':
                end += 2
                continue
            if line[end] == quote:
                if quote == "'" and line[end + 1 : end + 2] == "'":
                    end += 2
                    continue
                return col, end + 1
            end += 1
        raise ComposeError(f"unterminated quoted scalar: {line.strip()}")
    stop = re.compile(r"\s#|[,\]}]" if flow else r"\s#").search(line, col)
    end = len(line[: len(line) if stop is None else stop.start()].rstrip())
    if end <= col:
        raise ComposeError(f"a port is not on the line of its anchor or tag: {line.strip()}")
    return col, end


def _quoted_like(old, text):
    """TEXT quoted the way OLD was (double quotes when OLD was plain)."""
    return f"'{text}'" if old.startswith("'") else f'"{text}"'


def _bind_long(entry, service, wanted, bind_address, lines, edits, inserts, ipv4, variables):
    """Queue the edits that bind one long-syntax entry; return the ports it covers."""
    target = entry.get("target")
    if target is None:
        raise ComposeError(f"service {service!r}: a long port entry has no target")
    if not port_entries.covered_ports(target, wanted):
        return set()
    flow = entry.fa.flow_style()
    published = port_entries.published_for(target, entry.get("published"), wanted, variables)
    parsed = {"host_ip": entry.get("host_ip"), "target": target, "protocol": entry.get("protocol")}
    address = port_entries.entry_address(parsed, bind_address, ipv4)
    added = []
    for key, value in (("host_ip", address), ("published", published)):
        if key not in entry:
            added.append(f'{key}: "{value}"')
        elif entry[key] in (None, ""):
            raise ComposeError(f"service {service!r}: empty {key} for port {target}")
        elif str(entry[key]) != value:
            line, col = entry.lc.value(key)
            start, end = _scalar_span(lines[line], col, flow)
            old = lines[line][start:end]
            # A plain number stays a plain number.
            edits.append((line, start, end, value if old.isdigit() else _quoted_like(old, value)))
    if added and flow:  # {target: 8069} -> {target: 8069, host_ip: "..."}
        line, col = entry.lc.value("target")
        end = _scalar_span(lines[line], col, flow)[1]
        edits.append((line, end, end, "".join(f", {text}" for text in added)))
    elif added:
        line, col = entry.lc.key("target")
        inserts.append((line + 1, [" " * col + text + _eol(lines, line) for text in added]))
    return port_entries.covered_ports(target, wanted, entry.get("protocol"))


def _bind_short(entries, index, wanted, bind_address, lines, edits, ipv4, variables):
    """Queue the edit that rebinds one short-syntax entry; return the ports it covers."""
    entry = entries[index]
    rebound = port_entries.rebind_short(entry, wanted, bind_address, ipv4, variables)
    if rebound is None:
        return set()
    if rebound != str(entry):
        line, col = entries.lc.item(index)
        start, end = _scalar_span(lines[line], col, entries.fa.flow_style())
        edits.append((line, start, end, _quoted_like(lines[line][start:end], rebound)))
    parsed = port_entries.parse_short_port(entry)
    return port_entries.covered_ports(parsed["target"], wanted, parsed["protocol"])


def _eol(lines, index):
    """Line INDEX's break, else the nearest above's: a CRLF file stays CRLF."""
    line = next((line for line in reversed(lines[: index + 1]) if line.endswith("\n")), "")
    return "\r\n" if line.endswith("\r\n") else "\n"


def _new_ports_key(services, service, items, lines):
    """The insert that gives SERVICE a block 'ports:' list of ITEMS: above its
    first own key, else below a one-line merge key (<<: *x has no position)."""
    definition = services[service]
    if definition.fa.flow_style():
        raise ComposeError(f"service {service!r} is a flow mapping ({{...}}): add 'ports:' by hand")
    own = [key for key, _ in definition.non_merged_items()]
    line, col = definition.lc.key(own[0]) if own else services.lc.value(service)
    merge = r"<<\s*:\s*\*[^\s,\[\]{}]+\s*(#.*)?"
    if not own and re.fullmatch(merge, lines[line][col:].rstrip("\r\n")):
        line += 1
    pad, eol = " " * col, _eol(lines, line)
    return line, [f"{pad}ports:{eol}"] + [f"{pad}  - {item}{eol}" for item in items]


def _add_missing(services, service, new, lines, edits, inserts):
    """Queue the NEW entries (quoted texts), creating the 'ports' list if absent."""
    entries = services[service].get("ports")
    if entries:
        # New entries go before the first one: on its line in a flow list,
        # as lines with its indentation in a block list.
        line, col = entries.lc.item(0)
        if entries.fa.flow_style():
            edits.append((line, col, col, "".join(f"{item}, " for item in new)))
            return
        prefix, eol = lines[line][:col], _eol(lines, line)
        if not prefix.strip() == "-":
            raise ComposeError(f"service {service!r}: add {', '.join(new)} to 'ports' by hand")
        inserts.append((line, [prefix + item + eol for item in new]))
    elif "ports" in services[service]:
        raise ComposeError(f"service {service!r}: 'ports' is empty; add {', '.join(new)} by hand")
    else:
        inserts.append(_new_ports_key(services, service, new, lines))


def _apply(lines, edits, inserts):
    """Join LINES after the queued edits, right to left on a line (a flow list
    holds several) and inserting bottom-up, so that positions stay valid."""
    lines = list(lines)
    # An entry aliased in its own list (- *web) queues its anchor's edit twice.
    for line, start, end, replacement in sorted(set(edits), reverse=True):
        lines[line] = lines[line][:start] + replacement + lines[line][end:]
    inserts = dict.fromkeys((before, tuple(new)) for before, new in inserts)
    for before, new in sorted(inserts, key=lambda item: item[0], reverse=True):
        if before > 0 and not lines[before - 1].endswith("\n"):
            lines[before - 1] += _eol(new, len(new) - 1)
        lines[before:before] = new
    return "".join(lines)


def _written_in(mapping, key):
    """Whether MAPPING's KEY is its own and its value written under it: a
    merged key (<<: *x) or an alias (*x) has the anchor's text and position."""
    own = {name for name, _ in mapping.non_merged_items()}
    return key in own and tuple(mapping.lc.value(key)) > tuple(mapping.lc.key(key))


def _reach(node, found):
    """FOUND plus the ids of what under NODE can be reached twice: collections
    and anchored scalars (plain ones are copies, small ints shared by Python)."""
    anchored = getattr(getattr(node, "anchor", None), "value", None)
    if (anchored or isinstance(node, (dict, list))) and id(node) not in found:
        found.add(id(node))
        if isinstance(node, (dict, list)):
            for child in node.values() if isinstance(node, dict) else node:
                _reach(child, found)
    return found


def _refuse_shared(services, service):
    """Through anchors another service may hold SERVICE's very ports (its
    mapping merged whole, an entry aliased): rebinding them rebinds it too."""
    mine = _reach(services[service].get("ports"), set())
    for name, other in services.items():
        if name != service and mine & _reach(other, set()):
            raise ComposeError(
                f"service {service!r}: service {name!r} holds the same port entries through "
                f"a YAML anchor, and would be rebound too: give {name!r} its own 'ports:'"
            )


def _check_span(document, service, places):
    """Refuse to edit outside SERVICE's own 'ports' text (its key to the next
    key): an alias (*web) has its anchor's position, used by others too."""
    definition = document["services"][service]
    if "ports" not in definition:
        return
    start = tuple(definition.lc.key("ports"))
    maps = (definition, document["services"], document)
    keys = [tuple(m.lc.key(key)) for m in maps for key, _ in m.non_merged_items()]
    end = min((key for key in keys if key > start), default=(math.inf, 0))
    outside = [line for line, col in places if not start < (line, col) < end]
    if outside:
        raise ComposeError(
            f"service {service!r}: a port entry is an alias of line {min(outside) + 1}, where "
            f"rebinding it would change every user of that anchor: {_OWN}"
        )


def _flow(entry):
    """ENTRY as flow YAML on one line; JSON's quoting is YAML's too."""
    if not isinstance(entry, dict):
        return json.dumps(entry)
    return "{" + ", ".join(f"{key}: {json.dumps(value)}" for key, value in entry.items()) + "}"


def _own_ports(services, service, lines):
    """The file with SERVICE's ports, merged in (<<: *x) or an alias (ports:
    *x) of an anchor other services may share, copied into SERVICE as its own
    list: rebinding those leaves the anchor and its other users alone."""
    definition = services[service]
    try:
        items = [_flow(entry) for entry in definition["ports"]]
    except (TypeError, ValueError):
        items = []
    own = "ports" in {key for key, _ in definition.non_merged_items()}
    line, col = definition.lc.key("ports") if own else (0, 0)
    alias = re.compile(r"[^:#]*:[ \t]*(\*[^\s,\[\]{}]+)").match(lines[line], col) if own else None
    if not items or own and alias is None:
        raise ComposeError(f"service {service!r}: its 'ports' come from a YAML anchor: {_OWN}")
    if not own:  # merged: a key of the service's own overrides the anchor's
        return _apply(lines, [], [_new_ports_key(services, service, items, lines)])
    return _apply(lines, [(line, alias.start(1), alias.end(1), f"[{', '.join(items)}]")], [])


def _publishes(document, service):
    """Whether an override DOCUMENT gives SERVICE ports (or host networking)."""
    found = document.get("services") if isinstance(document, dict) else None
    definition = found.get(service) if isinstance(found, dict) else None
    return isinstance(definition, dict) and ("ports" in definition or "network_mode" in definition)


def publishes(text, service):
    """Whether compose file TEXT (another file of the project, an override)
    gives SERVICE ports or host networking: one that does not is left alone."""
    return _publishes(load(text), service)


def _queue(document, service, wanted, bind_address, lines, variables, add_missing=True):
    """The (line, start, end, text) edits and (before line, [lines]) inserts
    that bind SERVICE's WANTED ports (and, with ADD_MISSING, publish those
    it does not publish yet)."""
    services = document["services"]
    entries = services[service].get("ports") or []
    _check_span(document, service, [entries.lc.item(index) for index in range(len(entries))])
    edits, inserts, covered = [], [], set()
    ipv4 = port_entries.ipv4_targets(published_ports("".join(lines), service))
    for index, entry in enumerate(entries):
        if isinstance(entry, dict):
            covered |= _bind_long(
                entry, service, wanted, bind_address, lines, edits, inserts, ipv4, variables
            )
        elif isinstance(entry, (str, int)):
            covered |= _bind_short(
                entries, index, wanted, bind_address, lines, edits, ipv4, variables
            )
        else:
            raise ComposeError(f"service {service!r}: port entry {entry!r} not understood")
    bound = port_entries.format_ip(bind_address)
    missing = [f'"{bound}:{wanted[port]}:{port}"' for port in wanted if port not in covered]
    if missing and add_missing:
        _add_missing(services, service, missing, lines, edits, inserts)
    # An insert before line N is text after the end of line N - 1.
    places = [(line, start) for line, start, _, _ in edits]
    _check_span(document, service, places + [(before - 1, math.inf) for before, _ in inserts])
    return edits, inserts


def bind_ports(text, service, ports, bind_address="127.0.0.1", variables=None, override=False):
    """
    Return compose file TEXT with SERVICE's PORTS published on BIND_ADDRESS
    only. PORTS lists container ports (published on the same number) or
    ``[container port, host port]`` pairs: nginx's upstreams point at the host
    ports, so a single-port entry is made to publish exactly there. Short
    (``"8069:8069"``, ``"0.0.0.0:8072:8072"``, ``"8072"``) and long
    (``target``/``published``/``host_ip``) entries, block or flow style, are
    handled; ports that SERVICE does not publish yet are added. Only the port
    scalars change: every other byte of the file (comments, anchors, order,
    quoting, indentation, other services) stays as it was. Ports merged in
    (``<<: *x``) or aliased (``ports: *x``) become SERVICE's own list.
    VARIABLES: what compose substitutes in ``${VAR}`` (the project's .env
    under the environment). OVERRIDE: TEXT is another file of the project
    (docker-compose.override.yml), whose entries compose adds to the main
    file's: only its entries are rebound, nothing is added, and a file
    without SERVICE is left as it is.
    """
    wanted = port_entries.wanted_ports(ports)
    document = load(text)
    if override and not _publishes(document, service):
        return text
    definition = service_of(document, service)
    if str(definition.get("network_mode", "")) == "host":
        raise ComposeError(
            f"service {service!r} uses network_mode: host: docker publishes no port then, "
            "and Odoo answers on every interface whatever 'ports' says. Set odoo_websocket "
            "deployment: native (the formula then writes odoo.conf's http_interface = "
            "odoo:http_interface, 127.0.0.1, and needs odoo:config:restart_cmd), or remove "
            "network_mode: host"
        )
    if not _written_in(document["services"], service):
        raise ComposeError(f"service {service!r} is a YAML alias: write it out in 'services:'")
    entries = definition.get("ports")
    if entries is not None and not isinstance(entries, list):
        raise ComposeError(f"service {service!r}: 'ports' is not a list")
    if entries is not None and not _written_in(definition, "ports"):
        if not _unbound(text, service, wanted, bind_address, variables, override):
            return text
        text = _own_ports(document["services"], service, text.splitlines(keepends=True))
        document = load(text)
    _refuse_shared(document["services"], service)
    lines = text.splitlines(keepends=True)
    edits, inserts = _queue(document, service, wanted, bind_address, lines, variables,
                            add_missing=not override)  # fmt: skip
    if not edits and not inserts:
        return text
    result = _apply(lines, edits, inserts)
    _refuse_twins(text, result, service, bind_address)
    unbound = _unbound(result, service, wanted, bind_address, variables, override)
    if unbound:  # a bug here must fail loudly, not publish ports
        raise ComposeError(f"internal error: ports {unbound} left unbound")
    return result


def _refuse_twins(original, text, service, bind_address):
    """Refuse two entries the rebinding made one (``[::]:8069`` beside
    ``0.0.0.0:8069``, a bind address with no IPv6 twin): docker would."""
    families = {}
    for entry in published_ports(original, service):
        family = 6 if ":" in str(entry["host_ip"] or "") else 4
        families.setdefault((entry["target"], entry["protocol"] or "tcp"), set()).add(family)
    seen = set()
    for entry in published_ports(text, service):
        pair = (entry["target"], entry["protocol"] or "tcp")
        key = (entry["host_ip"], entry["published"], *pair)
        if key in seen and families.get(pair) == {4, 6}:
            raise ComposeError(
                f"service {service!r} publishes port {entry['target']} on IPv4 and IPv6 (dual "
                f"stack): bound to {bind_address} both would be the same entry, which docker "
                "refuses. Remove the [::] entry, or set compose:bind_address to 127.0.0.1 "
                "(the IPv6 one then gets [::1])"
            )
        seen.add(key)


def _unbound(text, service, wanted, bind_address, variables=None, override=False):
    """SERVICE's entries for WANTED ports not on BIND_ADDRESS at the wanted
    host port, then (unless TEXT is an OVERRIDE file, whose main file
    publishes them) the WANTED ports it does not publish at all."""
    wrong, covered, entries = [], set(), published_ports(text, service)
    ipv4 = port_entries.ipv4_targets(entries)
    for entry in entries:
        if port_entries.covered_ports(entry["target"], wanted):  # any protocol: bound too
            covered |= port_entries.covered_ports(entry["target"], wanted, entry["protocol"])
            expected = port_entries.published_for(
                entry["target"], entry["published"], wanted, variables
            )
            address = port_entries.entry_address(entry, bind_address, ipv4)
            if entry["host_ip"] != address or entry["published"] != expected:
                wrong.append(entry)
    return wrong + ([] if override else [port for port in wanted if port not in covered])
