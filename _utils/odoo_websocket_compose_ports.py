"""
The port entries of a compose file: the short syntax (``"127.0.0.1:8069:8069"``,
ranges, ``${VAR}`` parts, IPv6 in brackets) read as docker reads it, which
entries cover which container ports, and one entry rebound to an address;
the file loaded (ruamel.yaml's round trip), its services and one service's
published ports. Pure; odoo_websocket_compose edits the file with it.

:depends: ruamel.yaml
"""

import re

from salt.exceptions import CommandExecutionError

try:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
except ImportError:  # odoo_websocket_minion.missing_message says so
    pass


class ComposeError(CommandExecutionError):
    """The compose file cannot be read or has no such service."""


def split_colons(text):
    """Split on ':' outside ${...} variables and [...] IPv6 brackets."""
    parts, current, depth = [], "", 0
    for char in text:
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        if char == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def parse_short_port(entry):
    """
    Split a short-syntax port ``[[IP:]PUBLISHED:]TARGET[/PROTOCOL]`` into a
    dict with host_ip, published, target and protocol (None where absent).
    """
    text = str(entry)
    protocol = None
    if "/" in text and not text.endswith("}"):
        text, protocol = text.rsplit("/", 1)
    parts = split_colons(text)
    if len(parts) == 1:
        host_ip, published, target = None, None, parts[0]
    elif len(parts) == 2:
        host_ip, (published, target) = None, parts
    elif len(parts) == 3:
        host_ip, published, target = parts
    else:
        raise ComposeError(f"port {entry!r}: not [[IP:]PUBLISHED:]TARGET[/PROTOCOL]")
    if host_ip is not None and host_ip.startswith("[") and host_ip.endswith("]"):
        host_ip = host_ip[1:-1]
    return {
        "host_ip": host_ip or None,
        "published": published or None,
        "target": target,
        "protocol": protocol,
    }


def format_ip(address):
    return f"[{address}]" if ":" in address else address


def port_range(text):
    match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", str(text).strip())
    if not match:
        return None
    low = int(match.group(1))
    return low, int(match.group(2) or low)


def covered_ports(target, wanted, protocol=None):
    """The WANTED container ports that an entry's TARGET (port or range)
    publishes over TCP (PROTOCOL: the entry's; udp or sctp publish no TCP port)."""
    span = port_range(target)
    if str(protocol or "tcp").lower() != "tcp":
        return set()
    return {port for port in wanted if span and span[0] <= port <= span[1]}


def ipv4_targets(entries):
    """The (target, protocol) pairs that an entry not bound to an IPv6 address
    publishes, among ENTRIES (parsed: host_ip, target, protocol)."""
    return {(str(e["target"]), str(e["protocol"] or "tcp").lower()) for e in entries
            if ":" not in str(e["host_ip"] or "")}  # fmt: skip


def entry_address(entry, bind_address, ipv4):
    """The address ENTRY (parsed) is bound to: BIND_ADDRESS, but an IPv6
    entry beside an IPv4 one for the same port (``[::]:8069`` and
    ``0.0.0.0:8069``, dual stack; IPV4 from :py:func:`ipv4_targets`) gets
    IPv6's loopback when BIND_ADDRESS is IPv4's: two distinct local entries,
    not one twice (docker refuses that)."""
    pair = (str(entry["target"]), str(entry["protocol"] or "tcp").lower())
    if ":" in str(entry["host_ip"] or "") and pair in ipv4 and bind_address.startswith("127."):
        return "::1"
    return bind_address


def wanted_ports(ports):
    """{container port: host port} from ints (same number) or [target, published]."""
    wanted = {}
    for port in ports:
        target, published = (port, port) if isinstance(port, int) else port
        wanted[int(target)] = int(published)
    return wanted


def interpolated(text, variables):
    """TEXT with its ${VAR}, ${VAR:-default}, ${VAR-default} and $VAR as
    compose substitutes them from VARIABLES (the project's .env under the
    environment)."""

    def value(match):
        name, op, default = match.group(1) or match.group(4), match.group(2), match.group(3)
        found = variables.get(name)
        if op == ":-" and not found or op == "-" and found is None:
            return default or ""
        return found or ""

    return re.sub(r"\$\{(\w+)(?:(:?-)([^}]*))?\}|\$(\w+)", value, str(text))


def published_for(target, published, wanted, variables=None):
    """The host port an entry must publish on: the wanted one for a single
    port (nginx's upstream points there; "8072" alone would even pick a random
    one), the entry's own for ranges, and a ${VARIABLE} kept as written when
    compose resolves it to the wanted port (VARIABLES: the project's .env
    and environment), the wanted port itself otherwise."""
    span = port_range(target)
    single = span[0] == span[1] and span[0] in wanted
    if single and "$" in str(published or ""):
        resolved = interpolated(published, variables or {})
        return str(published) if resolved == str(wanted[span[0]]) else str(wanted[span[0]])
    if single:
        return str(wanted[span[0]])
    return str(published) if published not in (None, "") else str(target)


def rebind_short(entry, wanted, bind_address, ipv4=frozenset(), variables=None):
    """Return the rebound entry, or None when it is not one of the WANTED
    ports (IPV4: :py:func:`entry_address`'s)."""
    parsed = parse_short_port(entry)
    if not covered_ports(parsed["target"], wanted):
        return None
    published = published_for(parsed["target"], parsed["published"], wanted, variables)
    address = entry_address(parsed, bind_address, ipv4)
    text = f"{format_ip(address)}:{published}:{parsed['target']}"
    if parsed["protocol"]:
        text += f"/{parsed['protocol']}"
    return text


def load(text):
    yaml = YAML()  # round-trip mode: keeps line and column of every node
    try:
        return yaml.load(text)
    except YAMLError as exc:
        raise ComposeError(f"not valid YAML: {exc}") from exc


def service_of(document, service):
    """SERVICE's definition in a loaded compose DOCUMENT; ComposeError when
    it has none."""
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        raise ComposeError("no 'services' mapping: not a compose file")
    definition = document["services"].get(service)
    if definition is None:
        known = ", ".join(str(name) for name in document["services"]) or "none"
        raise ComposeError(f"no service {service!r} (services: {known})")
    if not isinstance(definition, dict) or not definition:
        raise ComposeError(f"service {service!r} is not a mapping")
    return definition


def published_ports(text, service):
    """
    Return SERVICE's port entries as dicts with host_ip, published, target and
    protocol, for checks and reports.
    """
    entries = service_of(load(text), service).get("ports") or []
    result = []
    for entry in entries:
        if isinstance(entry, dict):
            result.append(
                {
                    "host_ip": entry.get("host_ip"),
                    "published": None
                    if entry.get("published") is None
                    else str(entry["published"]),
                    "target": str(entry.get("target")),
                    "protocol": entry.get("protocol"),
                }
            )
        else:
            result.append(parse_short_port(entry))
    return result
