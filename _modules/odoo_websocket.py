"""
Settings, nginx inspection and safe file primitives for the odoo_websocket formula.

The formula's map.jinja calls :py:func:`settings` to validate the merged
pillar before any state runs; the states in ``_states/odoo_websocket.py`` call
the nginx and file functions through ``__salt__``.

:depends: crossplane (nginx config parser)
"""

import contextlib
import copy
import difflib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

try:
    import crossplane

    HAS_CROSSPLANE = True
except ImportError:
    HAS_CROSSPLANE = False

try:
    from salt.exceptions import CommandExecutionError
except ImportError:  # the pure functions are also used without Salt installed

    class CommandExecutionError(Exception):
        pass


__virtualname__ = "odoo_websocket"


def __virtual__():
    if not HAS_CROSSPLANE:
        return (
            False,
            "odoo_websocket: the Python package 'crossplane' is missing from "
            "Salt's Python (salt-pip install crossplane==0.5.8)",
        )
    return __virtualname__


# --------------------------------------------------------------------------
# Settings: validation of the merged pillar and derived values
# --------------------------------------------------------------------------

# Characters that would let a value inject nginx directives or break a path.
_UNSAFE = re.compile(r"""[\s;{}'"$\\`]""")
_OPTION_KEY = re.compile(r"^[a-z_][a-z0-9_]*$")
_UPSTREAM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")
_VERSION = re.compile(r"^([0-9]+)(\.[0-9]+)?$")

# Options the formula itself writes to odoo.conf: extra_options may not set them.
MANAGED_OPTIONS = (
    "proxy_mode",
    "workers",
    "gevent_port",
    "longpolling_port",
    "http_interface",
)
# Always masked in diffs and comments, whatever the pillar says.
DEFAULT_SECRET_KEYS = ("admin_passwd", "db_password")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _port(value):
    if not _is_int(value) or not 1 <= value <= 65535:
        return "must be an integer from 1 to 65535"


def _count(minimum):
    def rule(value):
        if not _is_int(value) or value < minimum:
            return f"must be an integer >= {minimum}"

    return rule


def _boolean(value):
    if not isinstance(value, bool):
        return "must be true or false"


def _token(value):
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if _UNSAFE.search(value):
        return "must not contain whitespace, ';', '{', '}', quotes, '$', '\\' or '`'"


def _path(value):
    problem = _token(value)
    if problem:
        return problem.replace("non-empty string", "non-empty absolute path")
    if not value.startswith("/"):
        return "must be an absolute path"


def _optional_port(value):
    if value is None:
        return None
    return _port(value)


def _optional_path(value):
    if value == "":
        return None
    return _path(value)


def _ip(value):
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return "must be an IP address"


def _listen_address(value):
    # nginx wants IPv6 listen addresses in brackets: [::1]
    text = str(value)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        try:
            ipaddress.IPv6Address(text)
            return None
        except ValueError:
            return "must be an IPv4 address or a bracketed IPv6 address like '[::]'"
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return "must be an IPv4 address or a bracketed IPv6 address like '[::]'"


def _upstream(value):
    if not isinstance(value, str) or not _UPSTREAM_NAME.match(value):
        return "must be a name of letters, digits, '_', '.' or '-'"


def _size(value):
    if not _SIZE.match(str(value)) or isinstance(value, bool):
        return "must be a size like 64m, 512k or 1g"


def _version(value):
    if isinstance(value, bool) or not _VERSION.match(str(value)):
        return "must be an Odoo version like '17.0'"
    if int(_VERSION.match(str(value)).group(1)) < 8:
        return "must be Odoo 8.0 or later"


def _command(value):
    if not isinstance(value, str) or "\n" in value:
        return "must be a one-line shell command (empty for the default)"


def _choice(*choices):
    def rule(value):
        if value not in choices:
            return "must be one of: " + ", ".join(choices)

    return rule


def _list_of(rule, allow_empty=True):
    def check(value):
        if not isinstance(value, list):
            return "must be a list"
        if not value and not allow_empty:
            return "must list at least one entry"
        for item in value:
            problem = rule(item)
            if problem:
                return f"every entry {problem} (bad entry: {item!r})"

    return check


def _extra_options(value):
    if not isinstance(value, dict):
        return "must be a mapping of odoo.conf option to value"
    for key, item in value.items():
        if not isinstance(key, str) or not _OPTION_KEY.match(key):
            return f"option name {key!r} must be lower-case letters, digits and '_'"
        if key in MANAGED_OPTIONS:
            return (
                f"option {key!r} is set by the formula itself; use its own key "
                "(odoo_websocket:odoo:...)"
            )
        # Values are never echoed: they may be passwords.
        if item is None or isinstance(item, (dict, list)):
            return f"value of {key!r} must be a string, number or boolean"
        if "\n" in str(item) or "\r" in str(item):
            return f"value of {key!r} must be on one line"


def _option_name(value):
    if not isinstance(value, str) or not _OPTION_KEY.match(value):
        return "must be an odoo.conf option name"


SCHEMA = {
    "deployment": _choice("docker", "native"),
    "odoo": {
        "version": _version,
        "host": _token,
        "http_port": _port,
        "gevent_port": _port,
        "workers": _count(0),
        "http_interface": _ip,
        "config": {
            "enabled": _boolean,
            "file": _path,
            "restart_cmd": _command,
            "extra_options": _extra_options,
            "secret_keys": _list_of(_option_name),
        },
    },
    "nginx": {
        "enabled": _boolean,
        "binary": _path,
        "conf_file": _path,
        "map_file": _path,
        "site_file": _path,
        "site_link": _optional_path,
        "reload": _boolean,
        "restart": _boolean,
        "start": _boolean,
        "server_name": _list_of(_token, allow_empty=False),
        "http_port": _port,
        "listen_addresses": _list_of(_listen_address),
        "upstream_http": _upstream,
        "upstream_evented": _upstream,
        "proxy_timeout": _count(60),
        "client_max_body_size": _size,
        "tls": {
            "enabled": _boolean,
            "port": _port,
            "certificate": _optional_path,
            "certificate_key": _optional_path,
            "hsts": _boolean,
        },
    },
    "backup": {
        "dir": _path,
        "keep": _count(1),
        "lock_timeout": _count(1),
    },
    "compose": {
        "enabled": _boolean,
        "file": _path,
        "service": _upstream,
        "bind_address": _ip,
        "published_http_port": _optional_port,
        "published_gevent_port": _optional_port,
        "recreate_cmd": _command,
    },
}

# Values never repeated in an error message.
_QUIET_KEYS = ("extra_options",)


def _check(schema, data, path, errors):
    if not isinstance(data, dict):
        errors.append(f"{path}: must be a mapping")
        return
    for key, value in data.items():
        where = f"{path}:{key}"
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            errors.append(f"{where}: unknown key{hint}")
        elif isinstance(schema[key], dict):
            _check(schema[key], value, where, errors)
        else:
            problem = schema[key](value)
            if problem:
                shown = "" if key in _QUIET_KEYS else f", got {value!r}"
                errors.append(f"{where}: {problem}{shown}")
    for key in schema:
        if key not in data:
            errors.append(f"{path}:{key}: missing (defaults.yaml should provide it)")


def _cross_checks(data, errors):
    odoo, nginx = data["odoo"], data["nginx"]
    if odoo["workers"] > 0 and odoo["http_port"] == odoo["gevent_port"]:
        errors.append(
            "odoo_websocket:odoo:gevent_port: must differ from http_port "
            "when workers > 0 (both ports are bound)"
        )
    if nginx["upstream_http"] == nginx["upstream_evented"]:
        errors.append("odoo_websocket:nginx:upstream_evented: must differ from upstream_http")
    tls = nginx["tls"]
    if tls["enabled"]:
        for key in ("certificate", "certificate_key"):
            if not tls[key]:
                errors.append(f"odoo_websocket:nginx:tls:{key}: required when tls:enabled is true")
        if tls["port"] == nginx["http_port"]:
            errors.append("odoo_websocket:nginx:tls:port: must differ from http_port")
    if nginx["site_link"] and nginx["site_link"] == nginx["site_file"]:
        errors.append("odoo_websocket:nginx:site_link: must differ from site_file")
    if nginx["map_file"] in (nginx["site_file"], nginx["site_link"]):
        errors.append("odoo_websocket:nginx:map_file: must differ from the site files")


def validate(data):
    """
    Check merged odoo_websocket settings against the schema and return the list
    of problems, each naming the pillar key and the rule it breaks.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.validate "$(salt-call --out=json pillar.get odoo_websocket)"
    """
    errors = []
    _check(SCHEMA, data, "odoo_websocket", errors)
    if not errors:
        _cross_checks(data, errors)
    return errors


def _option_value(value):
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def settings(data):
    """
    Validate the merged settings (defaults, OS family, pillar) and return them
    with the derived values the SLS files and templates use. Raises an error
    that lists every bad key when the pillar is invalid, so the render stops
    before any state touches a file.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.settings "{...}"
    """
    errors = validate(data)
    if errors:
        raise CommandExecutionError(
            "Invalid pillar, nothing was changed:\n  " + "\n  ".join(errors)
        )
    result = copy.deepcopy(data)
    odoo, nginx, compose = result["odoo"], result["nginx"], result["compose"]
    config = odoo["config"]

    major = int(_VERSION.match(str(odoo["version"])).group(1))
    odoo["major"] = major
    # Odoo 16 moved the bus from long polling to a websocket, and renamed the
    # evented port option (longpolling_port stays a deprecated alias).
    odoo["realtime_path"] = "/websocket" if major >= 16 else "/longpolling"
    evented_option = "gevent_port" if major >= 16 else "longpolling_port"
    odoo["evented_option"] = evented_option
    # workers = 0: the HTTP port serves the bus; workers > 0: only the evented one.
    nginx["realtime_upstream"] = (
        nginx["upstream_evented"] if odoo["workers"] > 0 else nginx["upstream_http"]
    )

    options = [
        ["proxy_mode", "True"],
        ["workers", str(odoo["workers"])],
        [evented_option, str(odoo["gevent_port"])],
    ]
    if result["deployment"] == "native":
        # In a container Odoo must listen on all of its interfaces; the compose
        # port binding keeps it off the host's public ones instead.
        options.append(["http_interface", odoo["http_interface"]])
    for key, value in config["extra_options"].items():
        options.append([key, _option_value(value)])
    config["options"] = options
    config["renames"] = {"longpolling_port": "gevent_port"} if major >= 16 else {}
    config["secret_keys"] = sorted(set(DEFAULT_SECRET_KEYS) | set(config["secret_keys"]))
    compose_cmd = f"docker compose -f {compose['file']}"
    if not config["restart_cmd"]:
        config["restart_cmd"] = (
            f"{compose_cmd} restart {compose['service']}"
            if result["deployment"] == "docker"
            else "service odoo restart"
        )
    if not compose["recreate_cmd"]:
        compose["recreate_cmd"] = f"{compose_cmd} up -d {compose['service']}"
    compose["enabled"] = compose["enabled"] and result["deployment"] == "docker"
    # Where nginx reaches Odoo: the host ports the container is published on
    # (docker), or Odoo's own ports (native).
    published_http = compose["published_http_port"] or odoo["http_port"]
    published_gevent = compose["published_gevent_port"] or odoo["gevent_port"]
    compose["ports"] = [
        [odoo["http_port"], published_http],
        [odoo["gevent_port"], published_gevent],
    ]
    docker = result["deployment"] == "docker"
    nginx["upstream_http_port"] = published_http if docker else odoo["http_port"]
    nginx["upstream_evented_port"] = published_gevent if docker else odoo["gevent_port"]
    # A run killed mid-change is rolled back before this one plans anything.
    recover(result["backup"]["dir"], result["backup"]["lock_timeout"])
    return result


# --------------------------------------------------------------------------
# nginx
# --------------------------------------------------------------------------

# "nginx: [emerg] MSG in FILE:LINE" before the error_log directive is read,
# "2026/11/26 13:24:27 [emerg] 123#123: MSG in FILE:LINE" after it.
_NGINX_MESSAGE = re.compile(
    r"^(?:nginx: |[0-9/]+ [0-9:]+ )\[(?P<level>emerg|alert|crit|error|warn|notice)\] "
    r"(?:[0-9]+#[0-9]+: )?(?P<message>.*?)(?: in (?P<file>/\S+):(?P<line>[0-9]+))?$"
)


def parse_nginx_messages(output):
    """
    Turn ``nginx -t`` output into a list of dicts with level, message, file and
    line (file and line are None when nginx names none).

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.parse_nginx_messages "$(nginx -t 2>&1)"
    """
    messages = []
    for line in output.splitlines():
        match = _NGINX_MESSAGE.match(line.strip())
        if match and match.group("level") in ("emerg", "alert", "crit", "error"):
            found = match.groupdict()
            found["line"] = int(found["line"]) if found["line"] else None
            messages.append(found)
    return messages


def nginx_test(conf_file="/etc/nginx/nginx.conf", binary="/usr/sbin/nginx"):
    """
    Run ``nginx -t`` on the whole configuration tree that CONF_FILE starts and
    return ``{"ok": bool, "errors": [{level, message, file, line}], "output": str}``.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.nginx_test
        salt '*' odoo_websocket.nginx_test conf_file=/srv/sandbox/nginx.conf
    """
    try:
        proc = subprocess.run(
            [binary, "-t", "-c", conf_file],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        message = f"nginx binary not found: {binary}"
        return {
            "ok": False,
            "errors": [{"level": "emerg", "message": message, "file": None, "line": None}],
            "output": message,
        }
    output = (proc.stderr + proc.stdout).strip()
    errors = parse_nginx_messages(output)
    if proc.returncode != 0 and not errors:
        errors = [{"level": "emerg", "message": output, "file": None, "line": None}]
    return {"ok": proc.returncode == 0, "errors": errors, "output": output}


def format_nginx_errors(errors):
    """
    One line per nginx error: ``FILE:LINE: MESSAGE``.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.format_nginx_errors '[{"file": "/x", "line": 3, "message": "m"}]'
    """
    lines = []
    for error in errors:
        where = f"{error['file']}:{error['line']}: " if error.get("file") else ""
        lines.append(f"{where}{error['message']}")
    return "\n".join(lines)


def connection_upgrade_maps(conf_file="/etc/nginx/nginx.conf", exclude=None):
    """
    Find every ``map ... $connection_upgrade`` in the nginx tree that CONF_FILE
    starts (includes followed), except in the files listed in EXCLUDE (the
    formula's own, which it is about to replace). Returns a list of
    ``{"file": ..., "line": ...}``.

    nginx -t accepts a second definition and silently uses the last one, so the
    formula looks before adding its own.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.connection_upgrade_maps
    """
    payload = crossplane.parse(
        conf_file,
        catch_errors=True,
        check_ctx=False,
        check_args=False,
        comments=False,
    )
    found = []

    def walk(directives, filename):
        for directive in directives:
            args = directive.get("args", [])
            if (
                directive["directive"] == "map"
                and len(args) >= 2
                and args[1] == "$connection_upgrade"
            ):
                found.append({"file": filename, "line": directive["line"]})
            walk(directive.get("block", []), filename)

    if isinstance(exclude, str):
        exclude = [exclude]
    # Compare real paths: sites-enabled links name the sites-available files.
    skipped = {os.path.realpath(path) for path in exclude or []}
    for config in payload["config"]:
        if os.path.realpath(config["file"]) in skipped:
            continue
        walk(config.get("parsed", []), config["file"])
    return found


def nginx_pid(conf_file="/etc/nginx/nginx.conf"):
    """
    Return the PID of the nginx master that CONF_FILE's ``pid`` file names, or
    None when nginx is not running.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.nginx_pid
    """
    pid_file = "/run/nginx.pid"
    try:
        payload = crossplane.parse(
            conf_file, catch_errors=True, check_ctx=False, check_args=False, single=True
        )
        for directive in payload["config"][0]["parsed"]:
            if directive["directive"] == "pid" and directive["args"]:
                pid_file = directive["args"][0]
    except (IndexError, KeyError, OSError):
        pass
    if not os.path.isabs(pid_file):
        pid_file = os.path.join(os.path.dirname(conf_file), pid_file)
    try:
        with open(pid_file, encoding="ascii") as handle:
            pid = int(handle.read().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def nginx_reload(conf_file="/etc/nginx/nginx.conf", binary="/usr/sbin/nginx"):
    """
    Gracefully reload nginx (``nginx -s reload``): old workers finish their open
    connections, websockets included. Returns a comment; does nothing when
    nginx is not running.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.nginx_reload
    """
    if nginx_pid(conf_file) is None:
        return "nginx is not running: not reloaded"
    proc = subprocess.run(
        [binary, "-s", "reload", "-c", conf_file],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise CommandExecutionError(f"nginx reload failed: {proc.stderr.strip()}")
    return "nginx reloaded gracefully"


# --------------------------------------------------------------------------
# Files: snapshots, atomic replacement, diffs
# --------------------------------------------------------------------------


def snapshot(path):
    """
    Record what PATH is now (absent, a symlink and its target, or a file with
    its bytes, mode, owner and group) so that :py:func:`restore_snapshot` can
    put it back exactly.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.snapshot /etc/nginx/sites-enabled/odoo_websocket.conf
    """
    if os.path.islink(path):
        return {"path": path, "kind": "link", "target": os.readlink(path)}
    if not os.path.exists(path):
        return {"path": path, "kind": "absent"}
    stat = os.stat(path)
    with open(path, "rb") as handle:
        data = handle.read()
    return {
        "path": path,
        "kind": "file",
        "data": data,
        "mode": stat.st_mode & 0o7777,
        "uid": stat.st_uid,
        "gid": stat.st_gid,
    }


def _fsync_dir(path):
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path, data, mode=0o644, uid=None, gid=None):
    """
    Write DATA (bytes or str) to PATH atomically: a temporary file in the same
    folder, fsynced, given MODE and owner, then renamed over PATH. A crash
    leaves either the old file or the new one, never half of one.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.replace_file /tmp/example "text" mode=0o600
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".odoo_websocket.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if uid is not None or gid is not None:
            os.chown(tmp, -1 if uid is None else uid, -1 if gid is None else gid)
        os.rename(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path)


def replace_symlink(path, target):
    """
    Point the symlink PATH at TARGET atomically (a new link renamed over it).

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.replace_symlink \\
            /etc/nginx/sites-enabled/odoo /etc/nginx/sites-available/odoo
    """
    tmp = os.path.join(
        os.path.dirname(path), f".odoo_websocket.{os.getpid()}.{os.path.basename(path)}"
    )
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    _fsync_dir(path)


def remove(path):
    """
    Remove the file or symlink PATH if it exists.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.remove /etc/nginx/conf.d/odoo_websocket_map.conf
    """
    if os.path.lexists(path):
        os.unlink(path)
        _fsync_dir(path)


def restore_snapshot(snap):
    """
    Put a path back as :py:func:`snapshot` recorded it, byte for byte, with its
    mode and owner.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.restore_snapshot "{...}"
    """
    # A snapshot has the shape of a change that recreates it exactly.
    _apply_change(snap)


def unified_diff(old, new, path):
    """
    A unified diff between two texts, labelled with PATH.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.unified_diff "a" "b" /etc/example
    """
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=path,
            tofile=path,
        )
    )


# --------------------------------------------------------------------------
# Change engine: one lock, a journal, backup sets, staged validation
# --------------------------------------------------------------------------
# Modelled on certbot's reverter: every change first saves what it replaces
# (a backup set), writes a journal naming that set, then touches live files.
# A run that dies mid-change leaves the journal behind; the next run, or any
# call that takes the lock, puts the backup set back before anything else.

DEFAULT_BACKUP_DIR = "/var/backups/odoo_websocket"
_JOURNAL = "journal.json"
_LOCK = "lock"
# Fault injection for the crash tests: ODOO_WEBSOCKET_FAULT=kill:<step>.
_FAULT_ENV = "ODOO_WEBSOCKET_FAULT"


def _fault(step):
    if os.environ.get(_FAULT_ENV) == f"kill:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def _private_dir(path):
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def _write_private(path, data):
    """A new 0600 file, fsynced (backups may hold odoo.conf secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def _locked(backup_dir, timeout):
    try:
        _private_dir(backup_dir)
        fd = os.open(os.path.join(backup_dir, _LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise CommandExecutionError(f"cannot use backup folder {backup_dir}: {exc}") from exc
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    raise CommandExecutionError(
                        f"another odoo_websocket run holds {os.path.join(backup_dir, _LOCK)} "
                        f"(pid {holder}); gave up after {timeout} s"
                    ) from None
                time.sleep(0.1)
        try:  # who holds the lock, for the next run's message; best effort
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _set_dir(backup_dir, set_id):
    if not re.fullmatch(r"[0-9T]+-[0-9]+-[0-9a-f]+", str(set_id)):
        raise CommandExecutionError(f"no backup set named {set_id!r}")
    return os.path.join(backup_dir, set_id)


def _read_manifest(backup_dir, set_id):
    try:
        with open(os.path.join(_set_dir(backup_dir, set_id), "manifest.json"), "rb") as handle:
            return json.loads(handle.read())
    except FileNotFoundError:
        raise CommandExecutionError(f"no backup set {set_id!r} in {backup_dir}") from None


def _write_backup(backup_dir, paths, label, secret_keys=()):
    """Save what PATHS are now; return the new set's id. Nothing live is touched."""
    # Sortable by creation time, to the microsecond.
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now)) + f"{int(now % 1 * 1e6):06d}"
    set_id = f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    folder = _set_dir(backup_dir, set_id)
    os.mkdir(folder, 0o700)
    try:
        entries = []
        for index, path in enumerate(paths):
            snap = snapshot(path)
            entry = {key: value for key, value in snap.items() if key != "data"}
            if snap["kind"] == "file":
                entry["blob"] = f"{index}.data"
                entry["sha256"] = hashlib.sha256(snap["data"]).hexdigest()
                _write_private(os.path.join(folder, entry["blob"]), snap["data"])
            entries.append(entry)
        manifest = {
            "id": set_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "label": label,
            "secret_keys": sorted(set(secret_keys)),
            "files": entries,
        }
        _write_private(os.path.join(folder, "manifest.json"), json.dumps(manifest).encode())
        _fsync_dir(os.path.join(folder, "manifest.json"))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return set_id


def _restore_set(backup_dir, set_id):
    manifest = _read_manifest(backup_dir, set_id)
    for entry in reversed(manifest["files"]):
        snap = dict(entry)
        if entry["kind"] == "file":
            with open(os.path.join(_set_dir(backup_dir, set_id), entry["blob"]), "rb") as handle:
                snap["data"] = handle.read()
            if hashlib.sha256(snap["data"]).hexdigest() != entry["sha256"]:
                raise CommandExecutionError(f"backup {set_id}: {entry['path']} is corrupt")
        restore_snapshot(snap)
    return manifest


def _journal(backup_dir):
    return os.path.join(backup_dir, _JOURNAL)


def _recover_locked(backup_dir):
    """Finish what a dead run left: put its backup set back. Returns a note."""
    try:
        with open(_journal(backup_dir), encoding="utf-8") as handle:
            journal = json.load(handle)
    except FileNotFoundError:
        return ""
    except ValueError:
        # A journal is written atomically: a torn one means it never existed.
        os.unlink(_journal(backup_dir))
        return ""
    _restore_set(backup_dir, journal["backup"])
    note = (
        f"An interrupted run (pid {journal.get('pid')}, {journal.get('started')}) was rolled "
        f"back from backup {journal['backup']}."
    )
    nginx = journal.get("nginx")
    if nginx and nginx_test(nginx["conf_file"], nginx["binary"])["ok"]:
        if nginx_pid(nginx["conf_file"]) is not None:
            nginx_reload(nginx["conf_file"], nginx["binary"])
    os.unlink(_journal(backup_dir))
    _fsync_dir(_journal(backup_dir))
    return note


def recover(backup_dir=DEFAULT_BACKUP_DIR, lock_timeout=60):
    """
    Roll back a change that a killed run left half done (its journal names the
    backup set to restore). Every change function runs this first; calling it
    alone is safe. Returns what it did, or an empty string.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.recover
    """
    if not os.path.exists(_journal(backup_dir)):
        return ""
    with _locked(backup_dir, lock_timeout):
        return _recover_locked(backup_dir)


def _prune(backup_dir, keep):
    sets = sorted(
        name for name in os.listdir(backup_dir) if os.path.isdir(os.path.join(backup_dir, name))
    )
    for name in sets[: max(0, len(sets) - keep)]:
        shutil.rmtree(os.path.join(backup_dir, name), ignore_errors=True)


def _differs(change):
    path = change["path"]
    if change["kind"] == "absent":
        return os.path.lexists(path)
    if change["kind"] == "link":
        return not (os.path.islink(path) and os.readlink(path) == change["target"])
    if os.path.islink(path) or not os.path.isfile(path):
        return True
    stat = os.stat(path)
    wanted = [change.get(k) for k in ("mode", "uid", "gid")]
    actual = [stat.st_mode & 0o7777, stat.st_uid, stat.st_gid]
    if any(w is not None and w != a for w, a in zip(wanted, actual, strict=True)):
        return True
    with open(path, "rb") as handle:
        return handle.read() != change["data"].encode("utf-8")


def _apply_change(change, path=None):
    """Make PATH (default: the change's own path) what CHANGE says."""
    path = path or change["path"]
    if change["kind"] == "absent":
        remove(path)
    elif change["kind"] == "link":
        if os.path.lexists(path) and not os.path.islink(path):
            os.unlink(path)
        replace_symlink(path, change["target"])
    else:
        # A replaced file keeps its mode and owner, a new one gets 0644,
        # unless the change names them (a restore does).
        mode, uid, gid = 0o644, None, None
        if os.path.isfile(path) and not os.path.islink(path):
            stat = os.stat(path)
            mode, uid, gid = stat.st_mode & 0o7777, stat.st_uid, stat.st_gid
        replace_file(
            path,
            change["data"],
            change.get("mode", mode),
            change.get("uid", uid),
            change.get("gid", gid),
        )


def _within(path, folder):
    return os.path.commonpath([os.path.abspath(path), folder]) == folder


def _staged_test(plan, conf_file, binary):
    """nginx -t on a copy of the whole tree with PLAN applied, bound over the
    live folder in a private mount namespace so absolute includes resolve in
    the copy. Returns nginx_test's dict, with ok None when staging is
    impossible here (the caller then relies on live validation and rollback)."""
    conf_dir = os.path.dirname(os.path.abspath(conf_file))
    outside = [c["path"] for c in plan if not _within(c["path"], conf_dir)]
    if outside:
        return {"ok": None, "errors": [], "output": f"outside {conf_dir}: {', '.join(outside)}"}
    stage = tempfile.mkdtemp(prefix="odoo_websocket-stage.")
    try:
        tree = os.path.join(stage, "tree")
        shutil.copytree(conf_dir, tree, symlinks=True)
        for change in plan:
            _apply_change(change, os.path.join(tree, os.path.relpath(change["path"], conf_dir)))
        script = 'mount --bind "$1" "$2" || exit 97; exec "$3" -t -c "$4"'
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private",
             "sh", "-c", script, "stage", tree, conf_dir, binary, conf_file],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        return {"ok": None, "errors": [], "output": "unshare is not installed"}
    except OSError as exc:
        return {"ok": False, "errors": [], "output": f"could not stage the candidate: {exc}"}
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    output = (proc.stderr + proc.stdout).strip()
    if proc.returncode == 97 or output.startswith("unshare:"):
        return {"ok": None, "errors": [], "output": f"no private mount namespace here: {output}"}
    errors = parse_nginx_messages(output)
    if proc.returncode != 0 and not errors:
        errors = [{"level": "emerg", "message": output, "file": None, "line": None}]
    return {"ok": proc.returncode == 0, "errors": errors, "output": output}


def _activate_nginx(nginx):
    """Reload (or start, or restart when asked) nginx after a validated change."""
    conf_file, binary = nginx["conf_file"], nginx["binary"]
    running = nginx_pid(conf_file) is not None
    if running and nginx.get("restart"):
        subprocess.run([binary, "-s", "quit", "-c", conf_file], check=False, timeout=60)
        deadline = time.monotonic() + 30
        while nginx_pid(conf_file) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        running = False
        verb = "restarted"
    else:
        verb = "started"
    if not running:
        if not nginx.get("start", True) and verb == "started":
            return "nginx is not running: not started (nginx:start is false)"
        proc = subprocess.run(
            [binary, "-c", conf_file], capture_output=True, text=True, timeout=60, check=False
        )
        if proc.returncode != 0:
            raise CommandExecutionError(f"nginx did not start: {proc.stderr.strip()}")
        return f"nginx {verb}"
    if not nginx.get("reload", True):
        return "nginx not reloaded (nginx:reload is false)"
    return nginx_reload(conf_file, binary)


def apply_changes(
    changes,
    nginx=None,
    backup_dir=DEFAULT_BACKUP_DIR,
    keep=10,
    lock_timeout=60,
    test=False,
    label="",
    secret_keys=(),
):
    """
    Apply CHANGES as one change set: all of them live (and nginx validated and
    reloaded), or none of them, with the previous bytes, mode and owner back.

    changes
        ``[{"path": ..., "kind": "file", "data": text}, {"path": ..., "kind":
        "link", "target": ...}, {"path": ..., "kind": "absent"}]``
    nginx
        ``{"conf_file", "binary", "reload", "restart", "start"}`` when the
        files belong to nginx: the candidate tree is validated in a staged copy
        before anything live is touched, the live tree after; nginx is then
        reloaded gracefully (started if it was not running).
    backup_dir, keep
        Where backup sets go (0700, files 0600) and how many are kept.
    test
        Only report what would change and the staged verdict.

    Returns ``{"result": True|False|None, "comment": str, "changed": [paths],
    "backup": set id or None}``.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.apply_changes '[{"path": "/etc/x", "kind": "file", "data": "y"}]'
    """
    ret = {"result": True, "comment": "", "changed": [], "backup": None}
    notes = []
    with _locked(backup_dir, lock_timeout):
        recovered = _recover_locked(backup_dir)
        if recovered:
            notes.append(recovered)
        plan = [change for change in changes if _differs(change)]
        if not plan:
            ret["comment"] = " ".join(notes + ["Nothing to change."])
            return ret

        if nginx:
            if not os.access(nginx["binary"], os.X_OK):
                missing = f"nginx binary {nginx['binary']} not found; nothing was touched."
                return _failed(ret, notes, missing)
            before = nginx_test(nginx["conf_file"], nginx["binary"])
            if not before["ok"]:
                return _failed(
                    ret,
                    notes,
                    "The nginx configuration was already invalid before this change; nothing "
                    "was touched. Fix it first:\n" + format_nginx_errors(before["errors"]),
                )
            staged = _staged_test(plan, nginx["conf_file"], nginx["binary"])
            if staged["ok"] is False:
                return _failed(
                    ret,
                    notes,
                    "nginx would reject the new configuration (staged check on a copy of the "
                    "whole tree); nothing was touched:\n" + format_nginx_errors(staged["errors"]),
                )
            if staged["ok"]:
                notes.append("Staged check: nginx accepts the new configuration.")
            else:
                notes.append(f"Staged check not possible ({staged['output']}).")

        ret["changed"] = [change["path"] for change in plan]
        if test:
            ret["result"] = None
            ret["comment"] = " ".join(notes)
            return ret

        try:
            set_id = _write_backup(backup_dir, ret["changed"], label, secret_keys)
        except OSError as exc:
            ret["changed"] = []
            return _failed(ret, notes, f"Could not write the backup, nothing was touched: {exc}")
        ret["backup"] = set_id
        _fault("backup")
        journal = {
            "backup": set_id,
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "nginx": nginx,
        }
        try:
            replace_file(_journal(backup_dir), json.dumps(journal), 0o600)
        except OSError as exc:
            shutil.rmtree(_set_dir(backup_dir, set_id), ignore_errors=True)
            ret["changed"], ret["backup"] = [], None
            return _failed(ret, notes, f"Could not write the journal, nothing was touched: {exc}")
        _fault("journal")
        try:
            for index, change in enumerate(plan):
                _apply_change(change)
                _fault(f"write-{index}")
            after = nginx_test(nginx["conf_file"], nginx["binary"]) if nginx else {"ok": True}
            problem = None if after["ok"] else format_nginx_errors(after["errors"])
        except OSError as exc:
            problem = str(exc)
        if problem:
            _restore_set(backup_dir, set_id)
            os.unlink(_journal(backup_dir))
            ret["changed"] = []
            return _failed(
                ret, notes, "The change failed; every file was restored as it was:\n" + problem
            )
        _fault("validated")
        if nginx:
            # e.g. 'conflicting server name "odoo.example.com" on 0.0.0.0:80,
            # ignored': another site already serves this name and wins.
            for line in after.get("output", "").splitlines():
                if "[warn]" in line:
                    notes.append("nginx warns: " + line.split("[warn]", 1)[1].strip() + ".")
            try:
                notes.append(_activate_nginx(nginx) + ".")
            except CommandExecutionError as exc:
                notes.append(f"{exc}.")
                ret["result"] = False
        _fault("activated")
        os.unlink(_journal(backup_dir))
        _fsync_dir(_journal(backup_dir))
        _prune(backup_dir, keep)
        notes.append(f"Backup: {set_id}.")
        ret["comment"] = " ".join(notes)
        return ret


def _failed(ret, notes, message):
    ret["result"] = False
    ret["comment"] = " ".join(notes + [message])
    return ret


def stage_check(path, contents, conf_file="/etc/nginx/nginx.conf", binary="/usr/sbin/nginx"):
    """
    Would nginx accept the whole tree if PATH held CONTENTS? Checked on a
    staged copy; nothing live is touched. Returns nginx_test's dict (``ok``
    None when no private mount namespace can be made here).

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.stage_check /etc/nginx/sites-available/odoo "$(cat candidate.conf)"
    """
    return _staged_test([{"path": path, "kind": "file", "data": contents}], conf_file, binary)


def backups(backup_dir=DEFAULT_BACKUP_DIR):
    """
    List the backup sets, newest first: id, created, label and the paths each
    holds.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.backups
    """
    recover(backup_dir)
    if not os.path.isdir(backup_dir):
        return []
    result = []
    for name in sorted(os.listdir(backup_dir), reverse=True):
        if os.path.isdir(os.path.join(backup_dir, name)):
            manifest = _read_manifest(backup_dir, name)
            result.append(
                {
                    "id": name,
                    "created": manifest["created"],
                    "label": manifest["label"],
                    "paths": [entry["path"] for entry in manifest["files"]],
                }
            )
    return result


def _backup_text(backup_dir, set_id, entry):
    if entry["kind"] == "file":
        with open(os.path.join(_set_dir(backup_dir, set_id), entry["blob"]), "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    if entry["kind"] == "link":
        return f"-> {entry['target']}\n"
    return ""


def backup_diff(backup_id, backup_dir=DEFAULT_BACKUP_DIR):
    """
    Unified diff from a backup set to the live files (what restoring it would
    undo), secrets masked.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.backup_diff 20261126T140000-1234-abcdef
    """
    recover(backup_dir)
    manifest = _read_manifest(backup_dir, backup_id)
    mask = __salt__["odoo_conf.mask"]
    diffs = {}
    for entry in manifest["files"]:
        path = entry["path"]
        if os.path.islink(path):
            live = f"-> {os.readlink(path)}\n"
        else:
            live = _read_text(path)
        old = mask(_backup_text(backup_dir, backup_id, entry), manifest["secret_keys"])
        new = mask(live, manifest["secret_keys"])
        diff = unified_diff(old, new, path)
        if diff:
            diffs[path] = diff
    return diffs


def _read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except (FileNotFoundError, IsADirectoryError):
        return ""


def restore(
    backup_id,
    backup_dir=DEFAULT_BACKUP_DIR,
    conf_file=None,
    binary="/usr/sbin/nginx",
    keep=10,
    lock_timeout=60,
    start=True,
):
    """
    Put a backup set back through the change engine: staged and live nginx
    validation when CONF_FILE is given, a graceful reload, and a new backup
    set of what it replaces, so a restore can itself be undone.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.restore 20261126T140000-1234-abcdef conf_file=/etc/nginx/nginx.conf
    """
    recover(backup_dir)
    manifest = _read_manifest(backup_dir, backup_id)
    changes = []
    for entry in manifest["files"]:
        change = {"path": entry["path"], "kind": entry["kind"]}
        if entry["kind"] == "file":
            with open(os.path.join(_set_dir(backup_dir, backup_id), entry["blob"]), "rb") as handle:
                change["data"] = handle.read().decode("utf-8")
            change.update(mode=entry["mode"], uid=entry["uid"], gid=entry["gid"])
        elif entry["kind"] == "link":
            change["target"] = entry["target"]
        changes.append(change)
    nginx = {"conf_file": conf_file, "binary": binary, "start": start} if conf_file else None
    return apply_changes(
        changes,
        nginx=nginx,
        backup_dir=backup_dir,
        keep=keep,
        lock_timeout=lock_timeout,
        label=f"restore of {backup_id}",
        secret_keys=manifest["secret_keys"],
    )
