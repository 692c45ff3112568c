"""
nginx's capacity for the sessions an Odoo host must hold, for the
odoo_websocket formula (pillar ``nginx:max_sessions``).

Every open Odoo browser holds one websocket, and nginx spends two connections
on it (the client's and the upstream's). nginx.conf is sized so that its
workers hold ``max_sessions`` websockets and the HTTP traffic around them:

- connections: ``worker_connections`` x workers >= 2 x max_sessions, plus a
  quarter of that for the pages, assets and reloads the same browsers cause,
  plus a fixed 512 for the listening sockets, a burst of requests and
  workers that take unequal shares of new connections (HEADROOM_*); plus,
  in each worker, the idle upstream connections every ``keepalive N`` of an
  upstream block in the tree lets it keep;
- open files: ``worker_rlimit_nofile`` >= a socket per connection, one file
  more for each connection that is not a websocket's (a buffered upload or
  answer on disk; an upgraded connection never opens one; all of them may
  land in one worker), and FIXED_FILES (logs, listening sockets); when
  absent, a worker has the soft limit it inherits, 1024 where systemd or a
  login starts nginx;
- nginx's master must be able to give its workers that many files: its hard
  limit (``ulimit -Hn``), unless it may raise it (CAP_SYS_RESOURCE, as root
  under systemd), up to the kernel's ``fs.nr_open``.

Only those two directives change, in place in nginx.conf: every other byte
is kept, an operator's larger value is never lowered, and nothing changes
when the events block or the main-context directives live in an included
file. The candidate goes through the change engine like any nginx file
(staged ``nginx -t`` of the whole tree, backup, reload, rollback).
:py:func:`edit` is pure; :py:func:`plan` reads the host.

:depends: crossplane (the parsed tree comes from ``odoo_websocket_nginx.tree``)
"""

import math
import os
import re

from salt.exceptions import CommandExecutionError

import odoo_websocket_nginx_service

# What the connections beyond two per session are for (module docstring).
HEADROOM_SHARE = 0.25
HEADROOM_FIXED = 512
# The open files a worker has when nginx.conf sets no worker_rlimit_nofile.
INHERITED_NOFILE = 1024
NGINX_DEFAULT_CONNECTIONS = 512  # worker_connections when events sets none
FIXED_FILES = 64  # a worker's files besides its connections: logs, listening sockets
_CAP_SYS_RESOURCE = 24
_NUMBER = re.compile(r"[0-9]{1,9}")


def connections_for(sessions):
    """Connections nginx needs in all for SESSIONS websockets and their traffic."""
    return math.ceil(2 * sessions * (1 + HEADROOM_SHARE)) + HEADROOM_FIXED


def files_for(connections, sessions, workers):
    """Open files a worker with CONNECTIONS needs while SESSIONS websockets
    are open in WORKERS (module docstring): a socket per connection, and a
    second file for as many of them as there can be connections that are
    not a websocket's in all the workers together (any one worker may take
    them all), plus FIXED_FILES."""
    others = max(0, workers * connections - 2 * sessions)
    return connections + min(connections, others) + FIXED_FILES


def keepalive(payload):
    """The idle upstream connections a worker may keep: the sum of every
    upstream block's ``keepalive N`` in the parsed tree PAYLOAD."""
    total = 0
    for config in payload["config"]:
        stack = list(config.get("parsed", []))
        while stack:
            directive = stack.pop()
            block = directive.get("block", [])
            if directive["directive"] == "upstream":
                total += sum(int(_value(d)) for d in block if d["directive"] == "keepalive")
            else:
                stack.extend(block)
    return total


def sessions_for(connections):
    """The websocket sessions that CONNECTIONS (all workers') hold with the
    headroom of :py:func:`connections_for`."""
    sessions = max(0, math.floor((connections - HEADROOM_FIXED) / (2 * (1 + HEADROOM_SHARE))))
    while sessions and connections_for(sessions) > connections:
        sessions -= 1
    return sessions


def _value(directive, pattern=_NUMBER):
    """The one argument of DIRECTIVE, unquoted, or an error naming it."""
    args = directive["args"]
    if len(args) != 1 or not pattern.fullmatch(args[0]) or args[0] in ("0", ""):
        raise CommandExecutionError(
            f"{directive['directive']} {' '.join(args)!r} at line {directive['line']} is not a "
            "number nginx accepts: nginx.conf left unchanged"
        )
    return args[0]


def _one(directives, name, where):
    found = [d for d in directives if d["directive"] == name]
    if len(found) > 1:
        raise CommandExecutionError(
            f"{name} appears {len(found)} times in {where} (lines "
            f"{', '.join(str(d['line']) for d in found)}): nginx.conf left unchanged"
        )
    return found[0] if found else None


def directives(payload):
    """
    Where the capacity directives of a parsed tree (crossplane, as
    ``odoo_websocket_nginx.tree`` gives it) are: ``{"processes", "rlimit",
    "events", "connections"}`` (directives of nginx.conf, or None when
    absent), ``"elsewhere"``: the first included file that holds one of
    them (then nginx.conf is left alone), or None, and ``"keepalive"``: the
    idle upstream connections a worker may keep (:py:func:`keepalive`).
    """
    configs = payload["config"]
    main = configs[0]["parsed"]
    names = ("worker_processes", "worker_rlimit_nofile", "events")
    found = {
        "processes": _one(main, "worker_processes", "nginx.conf"),
        "rlimit": _one(main, "worker_rlimit_nofile", "nginx.conf"),
        "events": _one(main, "events", "nginx.conf"),
        "connections": None,
        "elsewhere": None,
        "keepalive": keepalive(payload),
    }
    for include in (d for d in main if d["directive"] == "include"):
        for index in include.get("includes", []):
            if any(d["directive"] in names for d in configs[index]["parsed"]):
                found["elsewhere"] = configs[index]["file"]
    events = found["events"]
    if events is not None:
        block = events.get("block", [])
        found["connections"] = _one(block, "worker_connections", "nginx.conf's events block")
        if any(d["directive"] == "include" for d in block):
            found["elsewhere"] = found["elsewhere"] or "a file the events block includes"
    return found


def _replace(lines, directive, value):
    """The line of DIRECTIVE with its one argument replaced by VALUE."""
    number = directive["line"] - 1
    line = lines[number]
    code = line.split("#", 1)[0]
    pattern = re.compile(
        r"(?P<head>(?:^|[\s;{}])" + re.escape(directive["directive"]) + r"\s+)"
        r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s;#{}'\"]+)(?=\s*;)"
    )
    found = list(pattern.finditer(code))
    if len(found) != 1:
        raise CommandExecutionError(
            f"{directive['directive']} at line {directive['line']} is not written on one line "
            "as 'name value;': nginx.conf left unchanged (write it so, or set "
            "nginx:max_sessions to 0)"
        )
    match = found[0]
    lines[number] = line[: match.start("value")] + str(value) + line[match.end("value") :]


def _indent(line):
    return line[: len(line) - len(line.lstrip(" \t"))]


def _insert_connections(lines, events, value, unit):
    """worker_connections VALUE as the events block's first directive: in the
    events line itself when the block goes on there, else (index, line) to
    insert."""
    number = events["line"] - 1
    line = lines[number]
    match = re.search(r"(?:^|[\s;}])events\s*\{", line.split("#", 1)[0])
    if not match:
        raise CommandExecutionError(
            f"events at line {events['line']}: its '{{' is not on the same line; nginx.conf "
            "left unchanged (set nginx:max_sessions to 0 to leave capacity alone)"
        )
    rest = line[match.end() :]
    if rest.split("#", 1)[0].strip():  # events { ... } on one line
        lines[number] = f"{line[: match.end()]} worker_connections {value};{rest}"
        return None
    return number + 1, f"{_indent(line)}{unit}worker_connections {value};"


def _insert_rlimit(lines, found, value):
    """(index, line) putting worker_rlimit_nofile VALUE in the main context,
    on a line of its own: after worker_processes, or else before events."""
    for directive, after in ((found["processes"], 1), (found["events"], 0)):
        if directive is None:
            continue
        line = lines[directive["line"] - 1]
        code = line.split("#", 1)[0].strip()
        alone = code.startswith(directive["directive"]) and code.endswith(";")
        if (alone and code.count(";") == 1) if after else code.startswith("events"):
            return directive["line"] - 1 + after, f"{_indent(line)}worker_rlimit_nofile {value};"
    raise CommandExecutionError(
        "no line in nginx.conf's main context to put worker_rlimit_nofile after: "
        "nginx.conf left unchanged (set nginx:max_sessions to 0 to leave capacity alone)"
    )


def sizing(found, cpus):
    """
    What nginx.conf gives now: ``{"workers", "connections", "rlimit",
    "keepalive"}`` (rlimit None when nginx.conf sets none). FOUND: :py:func:`directives`;
    CPUS: what ``worker_processes auto`` starts. Raises on a bad value.
    """
    processes = found["processes"]
    workers = 1
    if processes is not None:
        value = _value(processes, re.compile(r"auto|[0-9]{1,4}"))
        workers = cpus if value == "auto" else int(value)
    connections = NGINX_DEFAULT_CONNECTIONS
    if found["connections"] is not None:
        connections = int(_value(found["connections"]))
    rlimit = int(_value(found["rlimit"])) if found["rlimit"] is not None else None
    return {"workers": workers, "connections": connections, "rlimit": rlimit,
            "keepalive": found["keepalive"]}  # fmt: skip


def edit(text, found, max_sessions, cpus, ceiling=None):
    """
    nginx.conf TEXT with worker_connections and worker_rlimit_nofile raised
    in place to hold MAX_SESSIONS websockets (inserted when absent), every
    other byte kept, and what nginx then holds. FOUND: :py:func:`directives`
    of TEXT; CPUS: what ``worker_processes auto`` starts; CEILING: the most
    open files nginx's master can give a worker (None: unknown). Pure.
    Returns ``{"text", "workers", "connections", "rlimit", "sessions"}``;
    raises when TEXT cannot be edited or the ceiling is too low.
    """
    now = sizing(found, cpus)
    if found["events"] is None:
        raise CommandExecutionError("nginx.conf has no events block: nginx.conf left unchanged")
    workers, idle = now["workers"], now["keepalive"]
    needed = math.ceil(connections_for(max_sessions) / workers) + idle
    least = files_for(needed, max_sessions, workers)
    if ceiling is not None and least > ceiling:
        kept = f", {idle} of them idle upstream keepalive" if idle else ""
        raise CommandExecutionError(
            f"nginx:max_sessions {max_sessions} needs worker_rlimit_nofile {least} "
            f"({workers} workers x {needed} connections{kept}), but nginx's master can give "
            f"its workers at most {ceiling} open files (its hard limit, ulimit -Hn): raise it "
            "(LimitNOFILE= in nginx's systemd unit, or ulimit -Hn where nginx starts) or "
            "lower nginx:max_sessions. nginx.conf left unchanged"
        )
    connections = max(now["connections"], needed)
    # For an operator's larger worker_connections, as many files as they may
    # need, up to what the master can give (never less than the sessions need).
    wanted = files_for(connections, max_sessions, workers)
    if ceiling is not None:
        wanted = max(min(wanted, ceiling), least)
    had = now["rlimit"] if now["rlimit"] is not None else INHERITED_NOFILE
    lines = text.split("\n")
    if connections > now["connections"] and found["connections"] is not None:
        _replace(lines, found["connections"], connections)
    if wanted > had and found["rlimit"] is not None:
        _replace(lines, found["rlimit"], wanted)
    inserts = []  # (index, line), made from the bottom up: line numbers stay true
    if connections > now["connections"] and found["connections"] is None:
        unit = "\t" if "\n\t" in text else "    "
        inserts.append(_insert_connections(lines, found["events"], connections, unit))
    if wanted > had and found["rlimit"] is None:
        inserts.append(_insert_rlimit(lines, found, wanted))
    eol = "\r" if "\r\n" in text else ""  # a CRLF file gets CRLF lines
    for index, line in sorted(filter(None, inserts), reverse=True):
        lines.insert(index, line + eol)
    sized = {"workers": workers, "connections": connections, "rlimit": max(wanted, had),
             "keepalive": idle}  # fmt: skip
    return dict(sized, text="\n".join(lines), sessions=held(sized))


def held(sized):
    """
    The websocket sessions nginx holds with SIZED (``{"workers",
    "connections", "rlimit", "keepalive"}``; rlimit None: the inherited
    1024) and the headroom of :py:func:`connections_for`.
    """
    workers, idle = sized["workers"], sized.get("keepalive", 0)
    files = sized.get("rlimit") or INHERITED_NOFILE

    def fits(sessions):
        needed = math.ceil(connections_for(sessions) / workers) + idle
        return files_for(needed, sessions, workers) <= files

    # The most sessions the connections hold whose files fit too.
    low, high = 0, sessions_for(workers * max(0, sized["connections"] - idle))
    if not fits(low):
        return 0
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def _limits(pid):
    """(hard open-file limit, may raise it) of process PID ("self": this one,
    whatever PID namespace /proc was mounted for)."""
    with open(f"/proc/{pid}/limits", encoding="ascii") as handle:
        row = next(line for line in handle if line.startswith("Max open files"))
    hard = row.split()[4]
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        caps = next(line for line in handle if line.startswith("CapEff:"))
    privileged = bool(int(caps.split()[1], 16) >> _CAP_SYS_RESOURCE & 1)
    return (None if hard == "unlimited" else int(hard)), privileged


def ceiling(pid=None):
    """
    The most open files nginx's master (PID; this process when nginx is not
    running, as it would start nginx) can give a worker: its hard limit, or
    the kernel's fs.nr_open when it may raise that (CAP_SYS_RESOURCE).
    """
    with open("/proc/sys/fs/nr_open", encoding="ascii") as handle:
        nr_open = int(handle.read())
    try:
        hard, privileged = _limits(pid or "self")
    except (FileNotFoundError, ProcessLookupError):  # nginx gone since its pid file was read
        hard, privileged = _limits("self")
    return nr_open if privileged or hard is None else min(hard, nr_open)


def cpus():
    """
    The workers ``worker_processes auto`` starts here: nginx counts the
    online CPUs (newer versions those it may run on); the smaller count, so
    each worker is sized for at least its share.
    """
    return max(1, min(os.cpu_count() or 1, len(os.sched_getaffinity(0))))


def _report(sized, max_sessions):
    return (
        f"nginx holds {held(sized)} websocket sessions: {sized['workers']} workers x "
        f"{sized['connections']} connections, "
        + (f"{sized['rlimit']} open files each" if sized["rlimit"] else
           f"open files as inherited, {INHERITED_NOFILE} assumed")
        + (f", {sized['keepalive']} idle upstream keepalive each" if sized.get("keepalive")
           else "")
        + (f" (nginx:max_sessions {max_sessions})." if max_sessions else
           " (nginx:max_sessions 0: not managed).")
    )  # fmt: skip


def plan(nginx, payload):
    """
    nginx.conf's capacity for NGINX (the settings' nginx part: conf_file,
    max_sessions) on the parsed live tree PAYLOAD: ``{"text": the edited
    nginx.conf or None (nothing to write), "note": what nginx holds, "error":
    why nginx.conf cannot be edited, or None}``. Reads the host; writes
    nothing.
    """
    conf_file, max_sessions = nginx["conf_file"], nginx["max_sessions"]
    result = {"text": None, "note": "", "error": None}
    config = payload["config"][0] if payload.get("config") else None
    if config is None or config.get("status") != "ok":
        return result  # the live check names what is wrong with the tree
    try:
        found = directives(payload)
        elsewhere = found["elsewhere"] or (os.path.islink(conf_file) and f"{conf_file} is a link")
        if elsewhere or not max_sessions:
            result["note"] = _report(sizing(found, cpus()), 0)
            if max_sessions:
                result["note"] = f"nginx's capacity left alone ({elsewhere}): {result['note']}"
            return result
        with open(conf_file, encoding="utf-8", newline="") as handle:
            text = handle.read()
        sized = edit(text, found, max_sessions, cpus(), ceiling(_master(conf_file)))
    except CommandExecutionError as exc:
        result["error"] = f"{conf_file}: {exc}"
        return result
    result["note"] = _report(sized, max_sessions)
    if sized["text"] != text:
        result["text"] = sized["text"]
    return result


def _master(conf_file):
    return odoo_websocket_nginx_service.pid(conf_file)
