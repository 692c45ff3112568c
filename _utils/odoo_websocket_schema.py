"""
The pillar schema of the odoo_websocket formula: every key's type and rule,
the cross-key rules, and :py:func:`validate`, which names each bad key and
the rule it breaks. Pure: no file or network I/O.

``odoo_websocket_settings.settings`` validates with it while map.jinja
renders, so a bad pillar stops the run before any state touches a file.
"""

import difflib
import ipaddress
import posixpath
import re
import unicodedata

import odoo_websocket_names

# Characters that would let a value inject nginx directives or break a path.
_UNSAFE = re.compile(r"""[\s;{}'"$\\`]""")
# Used with fullmatch: a '$' anchor would accept a trailing newline.
_OPTION_KEY = re.compile(r"[a-z_][a-z0-9_]*")
_UPSTREAM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][A-Za-z0-9.+!-]*")
_SIZE = re.compile(r"[0-9]+[kKmMgG]?")
# An nginx time for "expires" (seconds when bare), or max.
_EXPIRES = re.compile(r"[1-9][0-9]{0,8}(ms|s|m|h|d|w|M|y)?|max")
_VERSION = re.compile(r"([0-9]+)(\.[0-9]+)?")
# Longest string any key accepts: long values never reach a regex or nginx.
MAX_LENGTH = 4096
# Unicode categories refused in every string: control (NUL, newlines, escape),
# format (bidi overrides, zero-width, BOM) and line/paragraph separators.
_CONTROL_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")
# Folders other tools share: never a backup:dir (its sets are pruned there).
SHARED_FOLDERS = frozenset(
    "/ /bin /boot /dev /dev/shm /etc /etc/nginx /home /lib /lib64 /media /mnt /opt "
    "/proc /root /run /run/lock /sbin /srv /sys /tmp /usr /usr/lib /usr/local "
    "/usr/share /var /var/backups /var/cache /var/lib /var/local /var/lock /var/log "
    "/var/mail /var/opt /var/run /var/spool /var/tmp".split()
)

# Options the formula itself writes to odoo.conf: extra_options may not set them.
MANAGED_OPTIONS = (
    "proxy_mode",
    "workers",
    "http_port",
    "xmlrpc_port",
    "gevent_port",
    "longpolling_port",
    "http_interface",
)


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


def _server_names(value):
    problem = _list_of(odoo_websocket_names.server_name, allow_empty=False)(value)
    return problem or odoo_websocket_names.duplicate_server_name(value)


def _backup_dir(value):
    problem = _path(value)
    if problem:
        return problem
    folder = posixpath.normpath(re.sub("/+", "/", value))
    if folder in SHARED_FOLDERS:
        return (
            "must be a folder of the formula's own, e.g. /var/backups/odoo_websocket, "
            f"not the shared folder {folder}"
        )


def _upstream(value):
    if not isinstance(value, str) or not _UPSTREAM_NAME.fullmatch(value):
        return "must be a name of letters, digits, '_', '.' or '-'"


def _size(value):
    if not _SIZE.fullmatch(str(value)) or isinstance(value, bool):
        return "must be a size like 64m, 512k or 1g"


def _expires(value):
    if value == "":
        return None
    if isinstance(value, bool) or not _EXPIRES.fullmatch(str(value)):
        return "must be an nginx time like 24h, 7d or 864000, max, or empty (no static location)"


def _keepalive(value):
    if not _is_int(value) or not 0 <= value <= 1024:
        return "must be an integer from 0 (off) to 1024"


def _version(value):
    if isinstance(value, bool) or not _VERSION.fullmatch(str(value)):
        return "must be an Odoo version like '17.0'"
    if int(_VERSION.fullmatch(str(value)).group(1)) < 8:
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
        if not isinstance(key, str) or not _OPTION_KEY.fullmatch(key):
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


def _mapping(value):
    if not isinstance(value, dict):
        return "must be a mapping"


def _requirement(value):
    if not isinstance(value, str) or not _REQUIREMENT.fullmatch(value):
        return "must be a pinned pip requirement like crossplane==0.5.8"


def _option_name(value):
    if not isinstance(value, str) or not _OPTION_KEY.fullmatch(value):
        return "must be an odoo.conf option name"


SCHEMA = {
    "deployment": _choice("docker", "native"),
    "odoo": {
        "version": _version,
        "host": odoo_websocket_names.host,
        "http_port": _port,
        "gevent_port": _port,
        "workers": _count(0),
        "http_interface": odoo_websocket_names.ip,
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
        "server_name": _server_names,
        "http_port": _port,
        "listen_addresses": _list_of(odoo_websocket_names.listen_address),
        "existing_site": _choice("adopt", "fail", "keep"),
        "upstream_http": _upstream,
        "upstream_evented": _upstream,
        "proxy_timeout": _count(60),
        "client_max_body_size": _size,
        "static_expires": _expires,
        "upstream_keepalive": _keepalive,
        "max_sessions": _count(0),
        "database_manager_allow": _list_of(odoo_websocket_names.allowed_client),
        "tls": {
            "enabled": _boolean,
            "port": _port,
            "certificate": _optional_path,
            "certificate_key": _optional_path,
            "hsts": _boolean,
        },
    },
    "backup": {
        "dir": _backup_dir,
        "keep": _count(1),
        "lock_timeout": _count(1),
    },
    "verify": {
        "enabled": _boolean,
        "timeout": _count(1),
        "rollback": _boolean,
    },
    "compose": {
        "enabled": _boolean,
        "file": _path,
        "service": _upstream,
        "bind_address": odoo_websocket_names.ip,
        "published_http_port": _optional_port,
        "published_gevent_port": _optional_port,
        "recreate_cmd": _command,
    },
    "dependencies": {
        "pip_packages": _list_of(_requirement),
        "pip_bin_env": _optional_path,
    },
    # Each instance's keys: odoo_websocket_instances, then this schema again.
    "instances": _mapping,
}

# Values never repeated in an error message.
_QUIET_KEYS = ("extra_options",)


def _short(value, limit=80):
    """repr(VALUE), cut to LIMIT characters: error messages stay readable."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _strings(value, label=""):
    """(label, string) for every string in VALUE: itself, list entries, mapping
    names and values."""
    if isinstance(value, str):
        yield label, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, "every name ")
            yield from _strings(item, f"value of {_short(key, 40)} ")
    elif isinstance(value, list):
        for number, item in enumerate(value, 1):
            yield from _strings(item, f"entry {number} ")


def _too_long(value):
    for label, text in _strings(value):
        if len(text) > MAX_LENGTH:
            return f"{label}must be at most {MAX_LENGTH} characters (got {len(text)})"


def _control(value):
    for label, text in _strings(value):
        for char in text:
            if unicodedata.category(char) in _CONTROL_CATEGORIES:
                return f"{label}must not contain control characters (found {char!r})"


def _check_value(rule, key, value):
    """The problem of one leaf VALUE: length first (a huge string never reaches
    a rule's regex), then the key's own rule, then control characters."""
    too_long = _too_long(value)
    if too_long:
        return too_long  # not echoed: the message stays one readable line
    problem = rule(value) or _control(value)
    if not problem:
        return None
    return problem if key in _QUIET_KEYS else f"{problem}, got {_short(value)}"


def _check(schema, data, path, errors):
    if not isinstance(data, dict):
        errors.append(f"{path}: must be a mapping")
        return
    for key, value in data.items():
        plain = isinstance(key, str) and len(key) <= 64 and key.isprintable()
        where = f"{path}:{key if plain else _short(key, 40)}"
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close and plain else ""
            errors.append(f"{where}: unknown key{hint}")
        elif isinstance(schema[key], dict):
            _check(schema[key], value, where, errors)
        else:
            problem = _check_value(schema[key], key, value)
            if problem:
                errors.append(f"{where}: {problem}")
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
    _docker_checks(data, errors)
    _verify_checks(data, errors)


def _docker_checks(data, errors):
    """nginx reaches a container only through the ports compose publishes: on
    bind_address, so odoo:host must be that address (any, for 0.0.0.0 and ::)."""
    compose = data["compose"]
    if data["deployment"] != "docker" or not compose["enabled"]:
        return
    bind = ipaddress.ip_address(compose["bind_address"])
    if bind.is_unspecified:
        return
    host = data["odoo"]["host"]
    try:
        same = ipaddress.ip_address(host.strip("[]")) == bind
    except ValueError:
        same = False
    if not same:
        wanted = f"[{bind}]" if bind.version == 6 else str(bind)
        errors.append(
            f"odoo_websocket:odoo:host: must be {wanted}, the compose:bind_address: in a "
            "docker deployment nginx reaches Odoo only through the ports compose "
            f"publishes there (got {host!r})"
        )


def _verify_checks(data, errors):
    """The check after a change sends a server name as its Host header."""
    if data["verify"]["enabled"] and not any(
        map(odoo_websocket_names.probe_name, data["nginx"]["server_name"])
    ):
        errors.append(
            "odoo_websocket:nginx:server_name: with verify:enabled, one entry must be a "
            "host name or an IP address (the Host the check sends): wildcards, '_' "
            "and ~regex names match no single host"
        )


def validate(data):
    """
    Check merged odoo_websocket settings against the schema and return the list
    of problems, each naming the pillar key and the rule it breaks.
    """
    errors = []
    _check(SCHEMA, data, "odoo_websocket", errors)
    if not errors:
        _cross_checks(data, errors)
    return errors
