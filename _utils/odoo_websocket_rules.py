"""
The rules a pillar value must follow, one per kind of value (a port, a path,
a token nginx reads, a server name list, a pinned requirement...): each
takes the value and returns what is wrong with it, or None. The schema
(``odoo_websocket_schema``) names one for every key. Pure.
"""

import posixpath
import re

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


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def port(value):
    if not is_int(value) or not 1 <= value <= 65535:
        return "must be an integer from 1 to 65535"


def count(minimum):
    def rule(value):
        if not is_int(value) or value < minimum:
            return f"must be an integer >= {minimum}"

    return rule


def boolean(value):
    if not isinstance(value, bool):
        return "must be true or false"


def token(value):
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if _UNSAFE.search(value):
        return "must not contain whitespace, ';', '{', '}', quotes, '$', '\\' or '`'"


def path(value):
    problem = token(value)
    if problem:
        return problem.replace("non-empty string", "non-empty absolute path")
    if not value.startswith("/"):
        return "must be an absolute path"


def optional_port(value):
    if value is None:
        return None
    return port(value)


def optional_path(value):
    if value == "":
        return None
    return path(value)


def server_names(value):
    problem = list_of(odoo_websocket_names.server_name, allow_empty=False)(value)
    return problem or odoo_websocket_names.duplicate_server_name(value)


def backup_dir(value):
    problem = path(value)
    if problem:
        return problem
    folder = posixpath.normpath(re.sub("/+", "/", value))
    if folder in SHARED_FOLDERS:
        return (
            "must be a folder of the formula's own, e.g. /var/backups/odoo_websocket, "
            f"not the shared folder {folder}"
        )


def upstream(value):
    if not isinstance(value, str) or not _UPSTREAM_NAME.fullmatch(value):
        return "must be a name of letters, digits, '_', '.' or '-'"


def size(value):
    if not _SIZE.fullmatch(str(value)) or isinstance(value, bool):
        return "must be a size like 64m, 512k or 1g"


def expires(value):
    if value == "":
        return None
    if isinstance(value, bool) or not _EXPIRES.fullmatch(str(value)):
        return "must be an nginx time like 24h, 7d or 864000, max, or empty (no static location)"


def keepalive(value):
    if not is_int(value) or not 0 <= value <= 1024:
        return "must be an integer from 0 (off) to 1024"


def version(value):
    if isinstance(value, bool) or not _VERSION.fullmatch(str(value)):
        return "must be an Odoo version like '17.0'"
    if int(_VERSION.fullmatch(str(value)).group(1)) < 8:
        return "must be Odoo 8.0 or later"


def command(value):
    if not isinstance(value, str) or "\n" in value:
        return "must be a one-line shell command (empty for the default)"


def choice(*choices):
    def rule(value):
        if value not in choices:
            return "must be one of: " + ", ".join(choices)

    return rule


def list_of(rule, allow_empty=True):
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


def extra_options(value):
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


def mapping(value):
    if not isinstance(value, dict):
        return "must be a mapping"


def requirement(value):
    if not isinstance(value, str) or not _REQUIREMENT.fullmatch(value):
        return "must be a pinned pip requirement like crossplane==0.5.8"


def option_name(value):
    if not isinstance(value, str) or not _OPTION_KEY.fullmatch(value):
        return "must be an odoo.conf option name"
