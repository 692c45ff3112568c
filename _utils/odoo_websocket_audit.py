"""
``odoo_websocket.audit``: what on this host breaks Odoo's websocket or lets a
browser reach Odoo without nginx, read from the live host and changing
nothing. It reads the whole nginx tree (every include, parsed by crossplane),
odoo.conf, the compose file and the sockets listening on every interface;
the settings (the merged pillar) say what the site should be: its names and
ports, Odoo's version, worker count, deployment and paths.

Each finding: ``id``, ``severity`` (error, warning, info), ``file``, ``line``
(None when the fault is an absence), ``why`` (what it breaks) and ``fix``
(the pillar key or formula state that fixes it). The nginx rules are in
``odoo_websocket_audit_nginx``; the rules on odoo.conf, the compose file and
the listening sockets are here.
"""

import os
import re
import subprocess

from salt.exceptions import CommandExecutionError

import odoo_websocket_audit_nginx
import odoo_websocket_compose
import odoo_websocket_compose_project
import odoo_websocket_concerns
import odoo_websocket_nginx
import odoo_websocket_odoo_conf

SEVERITIES = ("error", "warning", "info")
# The fixes name the concern's SLS (odoo_websocket_concerns).
_ODOO, _COMPOSE = (odoo_websocket_concerns.CONCERNS[c].sls for c in ("odoo_conf", "compose"))
ODOO_FIX = f"state {_ODOO} (writes proxy_mode = True)"
COMPOSE_FIX = f"state {_COMPOSE} (publishes on compose:bind_address, 127.0.0.1)"
INTERFACE_FIX = f"state {_ODOO} (writes http_interface = odoo:http_interface)"
# Addresses that mean "every interface" in odoo.conf, compose files and /proc.
_ANYWHERE = ("", "0.0.0.0", "::", "[::]")


_finding = odoo_websocket_audit_nginx.finding  # one shape for every finding


def _read(path):
    """A host file as the audit reads it: whatever it can (undecodable bytes
    replaced, an unreadable file None), since it reports and never writes
    (``odoo_websocket_files.read`` keeps bytes exact for the planner)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def nginx_version(binary="/usr/sbin/nginx"):
    """
    nginx's version as a tuple of ints (``nginx -v``), or None when it cannot
    be run.
    """
    try:
        proc = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"/([0-9]+)\.([0-9]+)\.([0-9]+)", proc.stderr + proc.stdout)
    return tuple(int(part) for part in match.groups()) if match else None


def listening(proc_net="/proc/net"):
    """
    TCP ports with a socket listening on every interface (0.0.0.0 or ::), as
    this host's network namespace sees them.
    """
    ports = set()
    for name, anywhere in (("tcp", "0" * 8), ("tcp6", "0" * 32)):
        text = _read(os.path.join(proc_net, name)) or ""
        for row in text.splitlines()[1:]:
            fields = row.split()
            address, _, port = fields[1].partition(":")
            if fields[3] == "0A" and address == anywhere:  # 0A: LISTEN
                ports.add(int(port, 16))
    return sorted(ports)


def read_host(settings):
    """
    What the audit reads of the live host: the parsed nginx tree (None when
    nginx.conf is missing), nginx's version, odoo.conf's and the compose
    file's text (None when unreadable), the ports listening on every interface.
    """
    nginx, deployment = settings["nginx"], settings["deployment"]
    exists = os.path.exists(nginx["conf_file"])
    return {
        "nginx": odoo_websocket_nginx.tree(nginx["conf_file"]) if exists else None,
        "nginx_version": nginx_version(nginx["binary"]),
        "odoo_conf": _read(settings["odoo"]["config"]["file"]),
        "compose": _read(settings["compose"]["file"]) if deployment == "docker" else None,
        "compose_overrides": _compose_overrides(settings) if deployment == "docker" else {},
        "listening": listening(),
    }


def _odoo_options(text):
    """odoo.conf's [options] as {key: (value, line)}, or None when unreadable."""
    if text is None:
        return None
    try:
        records = odoo_websocket_odoo_conf.parse(text)
    except CommandExecutionError:
        return None
    return {
        record["key"]: (record["value"], record["index"] + 1)
        for record in records
        if record["kind"] == "option" and record["section"] == "options"
    }


def _workers(settings, options):
    """The worker count Odoo runs with: odoo.conf's (0 when absent, Odoo's
    default), the pillar's when odoo.conf cannot be read."""
    if options is None:
        return settings["odoo"]["workers"]
    value = options.get("workers", ("0", None))[0].strip()
    return int(value) if value.isdigit() else settings["odoo"]["workers"]


def _proxy_mode(options):
    # Odoo reads "True"/"true" as True and "False"/"false" as False; other
    # non-empty text stays a (true) string.
    value = (options or {}).get("proxy_mode", ("", None))[0].strip()
    return value.lower() not in ("", "false")


def context(settings, options, version):
    """
    What the nginx rules need to know: the site's names and port, Odoo's
    major version and worker mode, the ports nginx reaches Odoo on,
    proxy_mode, nginx's VERSION.
    """
    nginx, tls = settings["nginx"], settings["nginx"]["tls"]
    # Wildcards and regexes never clash with an exact name: nothing to look up.
    names = [n for n in nginx["server_name"] if n not in ("_", "") and n[0] not in "~*."]
    return {
        "conf_file": nginx["conf_file"],
        "names": [name for name in names if "*" not in name],
        "ports": [tls["port"] if tls["enabled"] else nginx["http_port"]],
        "major": settings["odoo"]["major"],
        "workers": _workers(settings, options),
        "http_port": nginx["upstream_http_port"],
        "evented_port": nginx["upstream_evented_port"],
        "proxy_mode": _proxy_mode(options),
        "nginx_version": version,
    }


def _odoo_conf_findings(settings, options):
    path = settings["odoo"]["config"]["file"]
    if options is None:
        why = (
            "odoo.conf cannot be read or parsed as Odoo would: proxy_mode and workers are "
            "unchecked, and the route check assumes the pillar's odoo:workers"
        )
        return [_finding("odoo-conf-unreadable", "warning", path, None, why, "odoo:config:file")]
    found = []
    if not _proxy_mode(options):
        line = options.get("proxy_mode", (None, None))[1]
        why = (
            "proxy_mode is off: Odoo ignores X-Forwarded-Host, -Proto and -For, so it sees "
            "nginx's address as every client's and the wrong scheme and host behind TLS"
        )
        found.append(_finding("proxy-mode-off", "warning", path, line, why, ODOO_FIX))
    if "websocket_url" in options:
        why = (
            "no Odoo version reads websocket_url: the browser opens the websocket on the "
            "origin of the page it loaded"
        )
        fix = "nothing to fix; drop it from odoo.conf and odoo:config:extra_options"
        found.append(
            _finding("websocket-url-set", "info", path, options["websocket_url"][1], why, fix)
        )
    return found


def _interface_findings(settings, options):
    """Native Odoo listening on every interface (http_interface)."""
    value, line = (options or {}).get("http_interface", ("", None))
    if options is None or value.strip() not in _ANYWHERE:
        return [], set()
    ports = {settings["nginx"]["upstream_http_port"], settings["nginx"]["upstream_evented_port"]}
    why = (
        f"http_interface is {value.strip() or 'not set'}: Odoo listens on every interface "
        f"(ports {', '.join(map(str, sorted(ports)))}), so a browser can load it without "
        "nginx and opens the websocket there too"
    )
    path = settings["odoo"]["config"]["file"]
    return [_finding("http-interface-open", "error", path, line, why, INTERFACE_FIX)], ports


def _port_range(text):
    match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", str(text).strip())
    return (int(match.group(1)), int(match.group(2) or match.group(1))) if match else None


def _entry_line(text, port):
    """The first line after a ``ports:`` key that names PORT (for the report)."""
    lines, inside = text.splitlines(), False
    for number, line in enumerate(lines, 1):
        inside = inside or re.match(r"\s*ports:", line) is not None
        if inside and re.search(rf"(?<![0-9]){port}(?![0-9])", line):
            return number
    return None


def _compose_overrides(settings):
    """{path: text} of the compose project's other files (its override), which
    compose adds ports from."""
    compose_file = settings["compose"]["file"]
    listed = odoo_websocket_compose_project.project_files(compose_file)
    return {path: _read(path) for path in listed
            if os.path.realpath(path) != os.path.realpath(compose_file)}  # fmt: skip


def _compose_findings(settings, text, path=None):
    """The Odoo service's HTTP and evented ports published on every interface
    by the compose file (or PATH, another file of its project, TEXT)."""
    compose = settings["compose"]
    override, path = path is not None, path or compose["file"]
    try:
        if text is None:
            raise CommandExecutionError("cannot be read")
        if override and not odoo_websocket_compose.publishes(text, compose["service"]):
            return [], set()
        entries = odoo_websocket_compose.published_ports(text, compose["service"])
    except CommandExecutionError as exc:
        why = f"the compose file {exc}: the ports docker publishes are unchecked"
        fix = "compose:file, compose:service"
        return [_finding("compose-unreadable", "warning", path, None, why, fix)], set()
    # Container port -> the host port nginx's upstream uses (settings derive both).
    wanted = {target: published for target, published in compose["ports"]}
    found, covered = [], set()
    for entry in entries:
        span = _port_range(entry["target"])
        if not span or (entry["host_ip"] or "") not in _ANYWHERE or entry["protocol"] == "udp":
            continue
        for target in sorted(port for port in wanted if span[0] <= port <= span[1]):
            published = entry["published"] or "a random port"
            why = (
                f"docker publishes Odoo's port {target} on every interface of the host "
                f"(as {published}): anyone who reaches the host opens Odoo without nginx"
            )
            line = _entry_line(text, target)
            found.append(_finding("compose-port-public", "error", path, line, why, COMPOSE_FIX))
            covered.add(wanted[target])
    return found, covered


def _exposure_findings(settings, host, options):
    """Odoo reachable without nginx: by its configuration, or by a socket."""
    if settings["deployment"] == "docker":
        found, covered = _compose_findings(settings, host["compose"])
        for path, text in host.get("compose_overrides", {}).items():
            more, also = _compose_findings(settings, text, path)
            found, covered = found + more, covered | also
    else:
        found, covered = _interface_findings(settings, options)
    nginx = settings["nginx"]
    for port in sorted({nginx["upstream_http_port"], nginx["upstream_evented_port"]}):
        if port in host["listening"] and port not in covered:
            why = (
                f"a process listens on port {port} on every interface: a browser reaches "
                "Odoo there without nginx"
            )
            fix = f"{COMPOSE_FIX}, or {INTERFACE_FIX} (deployment: native)"
            found.append(
                _finding("port-listening-publicly", "error", "/proc/net/tcp", None, why, fix)
            )
    return found


def _ordered(found):
    """Each finding once, errors first, then by file and line."""
    unique = {(f["id"], f["file"], f["line"]): f for f in found}
    return sorted(
        unique.values(),
        key=lambda f: (SEVERITIES.index(f["severity"]), f["file"] or "", f["line"] or 0, f["id"]),
    )


def findings(settings, host):
    """
    The findings for HOST (what ``read_host`` returns) against SETTINGS.
    Pure: reads nothing itself.
    """
    options = _odoo_options(host["odoo_conf"])
    found = _odoo_conf_findings(settings, options)
    if host["nginx"] is None:
        why = "nginx.conf is missing: nothing proxies the websocket"
        fix = "nginx:conf_file (install nginx)"
        found.append(
            _finding("nginx-missing", "error", settings["nginx"]["conf_file"], None, why, fix)
        )
    else:
        facts = context(settings, options, host["nginx_version"])
        found += odoo_websocket_audit_nginx.findings(host["nginx"], facts)
    found += _exposure_findings(settings, host, options)
    return _ordered(found)


def audit(settings):
    """
    Read the live host and return its findings (see the module's doc);
    empty when nothing on the host breaks the websocket or exposes Odoo.
    With several instances (``settings["instances"]``) every instance is
    audited, each finding once, its ``why`` naming the instances it concerns.
    """
    instances = settings.get("instances") or {}
    if len(instances) < 2:
        return findings(settings, read_host(settings))
    found, names = {}, {}
    for name, instance in sorted(instances.items()):
        for finding in findings(instance, read_host(instance)):
            key = (finding["id"], finding["file"], finding["line"])
            found.setdefault(key, finding)
            names.setdefault(key, []).append(name)
    return _ordered(
        [dict(f, why=f"{', '.join(names[key])}: {f['why']}") for key, f in found.items()]
    )
