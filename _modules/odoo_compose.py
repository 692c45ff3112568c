"""
Bind the Odoo service's published ports to one host address in a compose file.

A compose file that publishes ``"8069:8069"`` listens on every interface of the
host, so browsers can reach Odoo without nginx. This module rewrites just the
port entries of one service, through ruamel.yaml's round-trip mode: comments,
anchors, key order, quoting and every other service stay as they were.

:depends: ruamel.yaml
"""

import os
import re
import shutil
import subprocess
import tempfile

try:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    HAS_RUAMEL = True
except ImportError:
    HAS_RUAMEL = False

from salt.exceptions import CommandExecutionError

__virtualname__ = "odoo_compose"


class ComposeError(CommandExecutionError):
    """The compose file cannot be read or has no such service."""


def __virtual__():
    if not HAS_RUAMEL:
        return (
            False,
            "odoo_compose: the Python package 'ruamel.yaml' is missing from "
            "Salt's Python (salt-pip install ruamel.yaml==0.19.1)",
        )
    return __virtualname__


def _split_colons(text):
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

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_compose.parse_short_port "0.0.0.0:8069:8069/tcp"
    """
    text = str(entry)
    protocol = None
    if "/" in text and not text.endswith("}"):
        text, protocol = text.rsplit("/", 1)
    parts = _split_colons(text)
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


def _format_ip(address):
    return f"[{address}]" if ":" in address else address


def _port_range(text):
    match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", str(text).strip())
    if not match:
        return None
    low = int(match.group(1))
    return low, int(match.group(2) or low)


def _covers(target, ports):
    span = _port_range(target)
    return span is not None and any(span[0] <= port <= span[1] for port in ports)


def _wanted_ports(ports):
    """{container port: host port} from ints (same number) or [target, published]."""
    wanted = {}
    for port in ports:
        target, published = (port, port) if isinstance(port, int) else port
        wanted[int(target)] = int(published)
    return wanted


def _published_for(target, published, wanted):
    """The host port an entry must publish on: the wanted one for a single
    port (nginx's upstream points there; "8072" alone would even pick a random
    one), the entry's own for ranges and ${VARIABLES}."""
    span = _port_range(target)
    if span[0] == span[1] and span[0] in wanted and "$" not in str(published or ""):
        return str(wanted[span[0]])
    return str(published) if published not in (None, "") else str(target)


def _rebind_short(entry, wanted, bind_address):
    """Return the rebound entry, or None when it is not one of the WANTED ports."""
    parsed = parse_short_port(entry)
    if not _covers(parsed["target"], wanted):
        return None
    published = _published_for(parsed["target"], parsed["published"], wanted)
    text = f"{_format_ip(bind_address)}:{published}:{parsed['target']}"
    if parsed["protocol"]:
        text += f"/{parsed['protocol']}"
    return text


def _load(text):
    yaml = YAML()  # round-trip mode: keeps line and column of every node
    try:
        return yaml.load(text)
    except YAMLError as exc:
        raise ComposeError(f"not valid YAML: {exc}") from exc


def _token_end(line, col):
    """End column of the scalar that starts at COL (quoted or plain)."""
    quote = line[col] if col < len(line) else ""
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
                return end + 1
            end += 1
        raise ComposeError(f"unterminated quoted scalar: {line.strip()}")
    comment = line.find(" #", col)
    end = len(line) if comment < 0 else comment
    return len(line[:end].rstrip())


def _quoted_like(old, text):
    """TEXT quoted the way OLD was (double quotes when OLD was plain)."""
    return f"'{text}'" if old.startswith("'") else f'"{text}"'


def _service(document, service):
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        raise ComposeError("no 'services' mapping: not a compose file")
    definition = document["services"].get(service)
    if definition is None:
        known = ", ".join(str(name) for name in document["services"]) or "none"
        raise ComposeError(f"no service {service!r} (services: {known})")
    if not isinstance(definition, dict) or not definition:
        raise ComposeError(f"service {service!r} is not a mapping")
    return definition


def _covered_ports(target, wanted):
    """The WANTED container ports that an entry's TARGET (port or range) publishes."""
    span = _port_range(target)
    return {port for port in wanted if span[0] <= port <= span[1]}


def _bind_long(entry, service, wanted, bind_address, lines, edits, inserts):
    """Queue the edits that bind one long-syntax entry; return the ports it covers."""
    target = entry.get("target")
    if target is None:
        raise ComposeError(f"service {service!r}: a long port entry has no target")
    if not _covers(target, wanted):
        return set()
    key_line, key_col = entry.lc.key("target")
    published = _published_for(target, entry.get("published"), wanted)
    for key, value in (("host_ip", bind_address), ("published", published)):
        if key in entry and entry[key] not in (None, ""):
            if str(entry[key]) == value:
                continue
            line, col = entry.lc.value(key)
            end = _token_end(lines[line].rstrip("\r\n"), col)
            old = lines[line][col:end]
            # A plain number stays a plain number.
            new = value if old.isdigit() else _quoted_like(old, value)
            edits.append((line, col, end, new))
        elif key not in entry:
            inserts.append((key_line + 1, [" " * key_col + f'{key}: "{value}"\n']))
        else:
            raise ComposeError(f"service {service!r}: empty {key} for port {target}")
    return _covered_ports(target, wanted)


def _bind_short(entries, index, wanted, bind_address, lines, edits):
    """Queue the edit that rebinds one short-syntax entry; return the ports it covers."""
    entry = entries[index]
    rebound = _rebind_short(entry, wanted, bind_address)
    if rebound is None:
        return set()
    if rebound != str(entry):
        line, col = entries.lc.item(index)
        end = _token_end(lines[line].rstrip("\r\n"), col)
        edits.append((line, col, end, _quoted_like(lines[line][col:end], rebound)))
    return _covered_ports(parse_short_port(entry)["target"], wanted)


def _eol(line):
    return "\r\n" if line.endswith("\r\n") else "\n"


def _add_missing(definition, service, missing, wanted, bind_address, lines, inserts):
    """Queue new entries for the MISSING ports, creating the 'ports' list if absent."""
    entries = definition.get("ports")
    bound = _format_ip(bind_address)
    if entries:
        # New entries go above the first one, with its indentation.
        line, col = entries.lc.item(0)
        prefix, eol = lines[line][:col], _eol(lines[line])
        if not prefix.strip() == "-":
            raise ComposeError(f"service {service!r}: add ports {missing} by hand")
        inserts.append(
            (line, [f'{prefix}"{bound}:{wanted[port]}:{port}"{eol}' for port in missing])
        )
    elif "ports" in definition:
        raise ComposeError(f"service {service!r}: 'ports' is empty; add {missing} by hand")
    else:
        first = next(iter(definition))
        line, col = definition.lc.key(first)
        eol = _eol(lines[line])  # a CRLF file stays CRLF
        inserts.append(
            (
                line,
                [" " * col + "ports:" + eol]
                + [" " * col + f'  - "{bound}:{wanted[port]}:{port}"{eol}' for port in missing],
            )
        )


def _apply(lines, edits, inserts):
    """Join LINES after the queued edits, inserting bottom-up so indexes stay valid."""
    for line, start, end, replacement in edits:
        lines[line] = lines[line][:start] + replacement + lines[line][end:]
    for before, new in sorted(inserts, key=lambda item: item[0], reverse=True):
        if before > 0 and not lines[before - 1].endswith("\n"):
            lines[before - 1] += "\n"
        lines[before:before] = new
    return "".join(lines)


def bind_ports(text, service, ports, bind_address="127.0.0.1"):
    """
    Return compose file TEXT with SERVICE's PORTS published on BIND_ADDRESS
    only. PORTS lists container ports (published on the same number) or
    ``[container port, host port]`` pairs: nginx's upstreams point at the host
    ports, so a single-port entry is made to publish exactly there. Short
    (``"8069:8069"``, ``"0.0.0.0:8072:8072"``, ``"8072"``) and long
    (``target``/``published``/``host_ip``) entries are both handled; ports
    that SERVICE does not publish yet are added. Only the port
    scalars change: every other byte of the file (comments, anchors, order,
    quoting, indentation, other services) stays as it was.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_compose.bind_ports "$(cat docker-compose.yml)" odoo '[8069, 8072]'
    """
    wanted = _wanted_ports(ports)
    definition = _service(_load(text), service)
    entries = definition.get("ports")
    if entries is not None and not isinstance(entries, list):
        raise ComposeError(f"service {service!r}: 'ports' is not a list")
    lines = text.splitlines(keepends=True)
    edits = []  # (line, start, end, replacement)
    inserts = []  # (before line, [new lines])
    covered = set()

    for index, entry in enumerate(entries or []):
        if isinstance(entry, dict):
            covered |= _bind_long(entry, service, wanted, bind_address, lines, edits, inserts)
        elif isinstance(entry, (str, int)):
            covered |= _bind_short(entries, index, wanted, bind_address, lines, edits)
        else:
            raise ComposeError(f"service {service!r}: port entry {entry!r} not understood")

    missing = [port for port in wanted if port not in covered]
    if missing:
        _add_missing(definition, service, missing, wanted, bind_address, lines, inserts)

    if not edits and not inserts:
        return text
    result = _apply(lines, edits, inserts)
    _check_bound(result, service, wanted, bind_address)
    return result


def _check_bound(text, service, wanted, bind_address):
    """Re-read the edited file: a bug here must fail loudly, not publish ports."""
    for entry in published_ports(text, service):
        if not _covers(entry["target"], wanted):
            continue
        expected = _published_for(entry["target"], entry["published"], wanted)
        if entry["host_ip"] != bind_address or entry["published"] != expected:
            raise ComposeError(f"internal error: port {entry} left unbound")


def validate(text, compose_file):
    """
    Check compose TEXT as the compose file at COMPOSE_FILE would be read:
    with ``docker-compose config`` (Debian's docker-compose validates offline)
    when it is installed, otherwise by parsing it. Returns
    ``{"ok": bool, "by": ..., "message": ...}``.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_compose.validate "$(cat docker-compose.yml)" /opt/odoo/docker-compose.yml
    """
    try:
        _load(text)
    except ComposeError as exc:
        return {"ok": False, "by": "parser", "message": str(exc)}
    tool = shutil.which("docker-compose")
    if not tool:
        return {"ok": True, "by": "parser", "message": ""}
    # A sibling file, so relative paths in it resolve as in the real one.
    folder = os.path.dirname(os.path.abspath(compose_file))
    fd, candidate = tempfile.mkstemp(prefix=".odoo_websocket.", suffix=".yml", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        proc = subprocess.run(
            [tool, "-f", candidate, "config", "-q"],
            capture_output=True, text=True, timeout=60, check=False, cwd=folder,
        )  # fmt: skip
    finally:
        os.unlink(candidate)
    message = (proc.stderr + proc.stdout).strip().replace(candidate, compose_file)
    return {"ok": proc.returncode == 0, "by": "docker-compose config", "message": message}


def published_ports(text, service):
    """
    Return SERVICE's port entries as dicts with host_ip, published, target and
    protocol, for checks and reports.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_compose.published_ports "$(cat docker-compose.yml)" odoo
    """
    entries = _service(_load(text), service).get("ports") or []
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
