"""
Settings of the odoo_websocket formula: the pillar schema, its validation and
the values derived from it (routes, odoo.conf options, upstream ports).

Pure: no file or network I/O. map.jinja calls :py:func:`settings` while it
renders, so a bad pillar stops the run before any state touches a file.
"""

import copy
import difflib
import ipaddress
import re
import shlex

from salt.exceptions import CommandExecutionError

__virtualname__ = "odoo_websocket_settings"


def __virtual__():
    return __virtualname__


# Settings: validation of the merged pillar and derived values
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
        "existing_site": _choice("adopt", "fail", "keep"),
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
    "verify": {
        "enabled": _boolean,
        "timeout": _count(1),
        "rollback": _boolean,
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

        salt '*' odoo_websocket_settings.validate "$(salt-call --out=json \\
            pillar.get odoo_websocket)"
    """
    errors = []
    _check(SCHEMA, data, "odoo_websocket", errors)
    if not errors:
        _cross_checks(data, errors)
    return errors


def settings(data):
    """
    Validate the merged settings (defaults, OS family, pillar) and return them
    with the derived values the SLS files and templates use. Raises an error
    that lists every bad key when the pillar is invalid, so the render stops
    before any state touches a file.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_settings.settings "{...}"
    """
    errors = validate(data)
    if errors:
        raise CommandExecutionError(
            "Invalid pillar, nothing was changed:\n  " + "\n  ".join(errors)
        )
    result = copy.deepcopy(data)
    _derive_odoo(result)
    _derive_options(result)
    _derive_commands(result)
    _derive_upstream_ports(result)
    _derive_verify(result)
    return result


def _derive_odoo(result):
    """What the Odoo version and worker count decide: the bus path, the evented
    port option and the upstream that serves the bus."""
    odoo, nginx = result["odoo"], result["nginx"]
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


def _derive_options(result):
    """The odoo.conf options the formula writes, and the keys masked in diffs."""
    odoo = result["odoo"]
    config = odoo["config"]
    options = [
        ["proxy_mode", "True"],
        ["workers", str(odoo["workers"])],
        [odoo["evented_option"], str(odoo["gevent_port"])],
    ]
    if result["deployment"] == "native":
        # In a container Odoo must listen on all of its interfaces; the compose
        # port binding keeps it off the host's public ones instead.
        options.append(["http_interface", odoo["http_interface"]])
    config["options"] = options
    # Only the names travel in the settings (state arguments, show_sls,
    # _mapdata): values may be secrets, the planner reads them from the pillar.
    config["secret_keys"] = sorted(
        set(DEFAULT_SECRET_KEYS) | set(config["secret_keys"]) | set(config["extra_options"])
    )
    config["extra_options"] = sorted(config["extra_options"])
    config["renames"] = {"longpolling_port": "gevent_port"} if odoo["major"] >= 16 else {}


def _derive_commands(result):
    """Default restart and recreate commands for the deployment, when left empty."""
    config, compose = result["odoo"]["config"], result["compose"]
    compose_cmd = f"docker compose -f {shlex.quote(compose['file'])}"
    if not config["restart_cmd"]:
        config["restart_cmd"] = (
            f"{compose_cmd} restart {compose['service']}"
            if result["deployment"] == "docker"
            else "service odoo restart"
        )
    if not compose["recreate_cmd"]:
        compose["recreate_cmd"] = f"{compose_cmd} up -d {compose['service']}"
    compose["enabled"] = compose["enabled"] and result["deployment"] == "docker"


def _derive_upstream_ports(result):
    """Where nginx reaches Odoo: the host ports the container is published on
    (docker), or Odoo's own ports (native)."""
    odoo, nginx, compose = result["odoo"], result["nginx"], result["compose"]
    published_http = compose["published_http_port"] or odoo["http_port"]
    published_gevent = compose["published_gevent_port"] or odoo["gevent_port"]
    compose["ports"] = [
        [odoo["http_port"], published_http],
        [odoo["gevent_port"], published_gevent],
    ]
    docker = result["deployment"] == "docker"
    nginx["upstream_http_port"] = published_http if docker else odoo["http_port"]
    nginx["upstream_evented_port"] = published_gevent if docker else odoo["gevent_port"]


def _derive_verify(result):
    """Where the post-change check knocks: nginx's own listen address and port,
    with the first server name as Host, as a browser on that site would."""
    nginx, verify = result["nginx"], result["verify"]
    tls = nginx["tls"]["enabled"]
    address = (nginx["listen_addresses"] or ["127.0.0.1"])[0].strip("[]")
    if address in ("0.0.0.0", "::"):
        address = "127.0.0.1" if address == "0.0.0.0" else "::1"
    verify["address"] = address
    verify["port"] = nginx["tls"]["port"] if tls else nginx["http_port"]
    verify["tls"] = tls
    verify["server_name"] = nginx["server_name"][0]
    verify["realtime_path"] = result["odoo"]["realtime_path"]
    verify["odoo_ports"] = sorted({nginx["upstream_http_port"], nginx["upstream_evented_port"]})
