"""
nginx inspection and control for the odoo_websocket formula: ``nginx -t`` with
its messages parsed, the parsed tree (crossplane, every include followed),
which server blocks answer which names and where they listen, and where
nginx's master writes its pid. A candidate tree's staged check:
``odoo_websocket_nginx_candidate``; starting, reloading and restarting nginx:
``odoo_websocket_nginx_service``. Nothing here writes a file.

:depends: crossplane (nginx config parser)
"""

import glob
import json
import os
import re
import subprocess
import time

import odoo_websocket_nginx_text

try:
    import crossplane
except ImportError:  # odoo_websocket_minion.missing_message says so
    pass


# "nginx: [emerg] MSG in FILE:LINE" before the error_log directive is read,
# "2026/11/26 13:24:27 [emerg] 123#123: MSG in FILE:LINE" after it.
_MESSAGE = re.compile(
    r"^(?:nginx: |[0-9/]+ [0-9:]+ )\[(?P<level>emerg|alert|crit|error|warn|notice)\] "
    r"(?:[0-9]+#[0-9]+: )?(?P<message>.*?)(?: in (?P<file>/\S+):(?P<line>[0-9]+))?$"
)
# Blocks whose "server" children are not virtual servers.
_NOT_HTTP = ("upstream", "stream", "mail")
_PARSE_OPTIONS = {"catch_errors": True, "check_ctx": False, "check_args": False, "comments": False}


def parse_messages(output):
    """
    Turn nginx output into a list of ``{level, message, file, line}`` for its
    errors (file and line are None when nginx names none).
    """
    messages = []
    for line in output.splitlines():
        match = _MESSAGE.match(line.strip())
        if match and match.group("level") in ("emerg", "alert", "crit", "error"):
            found = match.groupdict()
            found["line"] = int(found["line"]) if found["line"] else None
            messages.append(found)
    return messages


def warnings(output):
    """nginx's [warn] lines, e.g. 'conflicting server name ... ignored'."""
    found = [line.split("[warn]", 1)[1] for line in output.splitlines() if "[warn]" in line]
    return [re.sub(r"^\s*[0-9]+#[0-9]+: ", "", text).strip() for text in found]


def verdict(returncode, output):
    errors = parse_messages(output)
    if returncode != 0 and not errors:
        # nginx overflows its stack on an include that includes itself.
        crash = f"nginx -t died (exit {returncode}) without a message: an include loop?"
        message = output or crash
        errors = [{"level": "emerg", "message": message, "file": None, "line": None}]
    return {"ok": returncode == 0, "errors": errors, "output": output}


def configtest(conf_file="/etc/nginx/nginx.conf", binary="/usr/sbin/nginx"):
    """
    Run ``nginx -t`` on the whole tree that CONF_FILE starts. Returns
    ``{"ok": bool, "errors": [{level, message, file, line}], "output": str}``.
    """
    try:
        proc = subprocess.run(
            [binary, "-t", "-c", conf_file], capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        return verdict(1, f"nginx binary not found: {binary}")
    return verdict(proc.returncode, (proc.stderr + proc.stdout).strip())


def format_errors(errors):
    """
    One line per nginx error: ``FILE:LINE: MESSAGE``.
    """
    lines = []
    for error in errors:
        where = f"{error['file']}:{error['line']}: " if error.get("file") else ""
        lines.append(f"{where}{error['message']}")
    return "\n".join(lines)


# Parsed trees by nginx.conf: (the paths that say whether it changed, their
# state then, the tree as JSON). One run reads the same tree for its plan,
# its checks and its verdict.
_TREES = {}
# A file changed this close to (or after) the parse's start may have changed
# within the same tick of the filesystem's coarse clock: never remembered.
_SETTLED_NS = 100_000_000


def tree(conf_file="/etc/nginx/nginx.conf"):
    """
    The whole live tree parsed by crossplane, every include followed. A
    tree parsed before is given again (a copy) while every file it holds and
    every folder they and its includes name are as they were then.
    """
    known = _TREES.get(conf_file)
    if known is not None and known[1] == _signature(known[0]):
        return json.loads(known[2])  # a copy of its own (JSON: what crossplane gives)
    started = time.time_ns()
    payload = crossplane.parse(conf_file, **_PARSE_OPTIONS)
    for config in payload["config"]:
        config["real"] = os.path.realpath(config["file"])
    watched = _watched(conf_file, payload["config"])
    signature = _signature(watched)
    if all(changed < started - _SETTLED_NS for _, changed in signature.values()):
        _TREES[conf_file] = (watched, signature, json.dumps(payload))
    else:
        _TREES.pop(conf_file, None)
    return payload


def _watched(conf_file, configs):
    """The files of CONFIGS (a parsed tree's) and the folders that hold them
    or that their includes read (a file added there)."""
    prefix = os.path.dirname(conf_file)
    paths = {conf_file}
    for config in configs:
        paths.update((config["file"], config["real"]))
        for directive in _includes(config.get("parsed", [])):
            pattern = os.path.join(prefix, directive["args"][0]) if directive["args"] else prefix
            paths.add(re.split(r"[*?\[]", pattern, maxsplit=1)[0])
            folder = os.path.dirname(pattern)
            if re.search(r"[*?\[]", folder):  # conf.d/*/site.conf: each folder it reads
                paths.update(glob.glob(folder))
    return sorted(paths | {os.path.dirname(path) for path in paths})


def _signature(paths):
    """{path: (identity, last change in ns)} of PATHS."""
    signature = {}
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            signature[path] = (None, 0)
            continue
        identity = (stat.st_ino, stat.st_dev, stat.st_size, stat.st_mtime_ns, stat.st_mode)
        signature[path] = (identity, max(stat.st_mtime_ns, stat.st_ctime_ns))
    return signature


def _includes(directives):
    for directive in directives:
        if directive["directive"] == "include":
            yield directive
        yield from _includes(directive.get("block", []))


def tree_files(conf_file="/etc/nginx/nginx.conf"):
    """Every file the live tree includes (as named and as resolved), from
    anywhere: a site nginx loads from /srv may be adopted. [] when the tree
    cannot be read."""
    try:
        configs = tree(conf_file)["config"]
    except (OSError, ValueError, KeyError, NameError):  # NameError: no crossplane yet
        return []
    return sorted({path for c in configs for path in (c["file"], c["real"])})


def _listen_port(args):
    """The port of a listen directive (80 when it names only an address)."""
    if not args or args[0].startswith("unix:"):
        return None
    value = args[0].rsplit("]", 1)[-1]
    value = value.rsplit(":", 1)[-1] if ":" in value else value
    return int(value) if value.isdigit() else 80


def _listen_socket(args):
    """(address, port) of a listen directive: address "*" for IPv4's
    wildcard ("80", "*:80", "0.0.0.0:80"), "[::]" for IPv6's; None for a
    unix socket."""
    port = _listen_port(args)
    if port is None:
        return None
    value = args[0]
    address = value.rsplit(":", 1)[0] if ":" in value.rsplit("]", 1)[-1] else None
    if address is None and not value.isdigit():
        address = value  # an address alone: port 80
    address = (address or "*").lower()
    return ("*" if address in ("*", "0.0.0.0") else address), port


def _server(directive, filename, real):
    block = directive["block"]
    listens = [d["args"] for d in block if d["directive"] == "listen"]
    ports = {_listen_port(args) for args in listens} - {None} if listens else {80}
    sockets = {_listen_socket(args) for args in listens} - {None} if listens else {("*", 80)}
    names = [a.lower() for d in block if d["directive"] == "server_name" for a in d["args"]]
    return {
        "file": filename,
        "real": real,
        "line": directive["line"],
        "names": names or [""],
        "ports": ports,
        "sockets": sockets,
        # Only sends browsers elsewhere (http -> https, www): never adopted.
        "redirect": odoo_websocket_nginx_text.redirect_only(directive),
    }


def server_blocks(payload):
    """
    Every virtual server of a parsed tree, following includes in nginx's order
    and skipping upstream/stream/mail blocks: ``[{file, real, line, names,
    ports, redirect}]``.
    """
    configs = payload["config"]
    found, seen = [], set()

    def walk(directives, config):
        for directive in directives:
            name = directive["directive"]
            if name == "include":
                for index in directive.get("includes", []):
                    if index not in seen:
                        seen.add(index)
                        walk(configs[index]["parsed"], configs[index])
            elif name == "server" and "block" in directive:
                real = config.get("real") or os.path.realpath(config["file"])
                found.append(_server(directive, config["file"], real))
            elif "block" in directive and name not in _NOT_HTTP:
                walk(directive["block"], config)

    if configs:
        seen.add(0)
        walk(configs[0]["parsed"], configs[0])
    return found


def answering(payload, names, ports):
    """
    The server blocks that answer for one of NAMES (exact, case-insensitive)
    on one of PORTS: where nginx would say "conflicting server name".
    """
    wanted = {name.lower() for name in names}
    return [
        block
        for block in server_blocks(payload)
        if wanted & set(block["names"]) and set(ports) & block["ports"]
    ]


def listeners(payload, name, port):
    """
    The listen addresses on PORT (``"*"``, ``"[::]"``, ``"10.0.0.5"``,
    ``"[::1]"``) of the server blocks serving NAME, and of the others: nginx
    hands a connection to the blocks listening on its exact address first,
    then to those on its family's wildcard. ``(own, others)``, two sets.
    """
    own, others = set(), set()
    for block in server_blocks(payload):
        found = {address for address, listened in block["sockets"] if listened == port}
        (own if name.lower() in block["names"] else others).update(found)
    return own, others


def loaded_files(payload):
    """Real paths of every file the tree loads."""
    return {config.get("real") or os.path.realpath(config["file"]) for config in payload["config"]}


def _main_arguments(conf_file, name):
    """The first argument of each NAME directive in CONF_FILE's main context."""
    try:
        payload = crossplane.parse(conf_file, single=True, **_PARSE_OPTIONS)
        parsed = payload["config"][0]["parsed"]
    except (IndexError, KeyError, OSError):
        return []
    return [d["args"][0] for d in parsed if d["directive"] == name and d["args"]]


def pid_file(conf_file="/etc/nginx/nginx.conf"):
    """
    The path of the pid file that CONF_FILE's ``pid`` directive names
    (``/run/nginx.pid`` when it names none).
    """
    path = (_main_arguments(conf_file, "pid") or ["/run/nginx.pid"])[-1]
    if not os.path.isabs(path):
        path = os.path.join(os.path.dirname(conf_file), path)
    return path


def error_logs(conf_file="/etc/nginx/nginx.conf"):
    """
    The files CONF_FILE's main-context ``error_log`` directives name: where
    nginx's master says why it refused a reload (not stderr, syslog or a
    relative path).
    """
    return [path for path in _main_arguments(conf_file, "error_log") if os.path.isabs(path)]
