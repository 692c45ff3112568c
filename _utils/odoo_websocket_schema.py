"""
The pillar schema of the odoo_websocket formula: every key's rule (the
rules themselves in ``odoo_websocket_rules``), the cross-key rules, and
:py:func:`validate`, which names each bad key and the rule it breaks. Pure:
no file or network I/O.

``odoo_websocket_settings.settings`` validates with it while map.jinja
renders, so a bad pillar stops the run before any state touches a file.
"""

import difflib
import ipaddress
import unicodedata

import odoo_websocket_names
import odoo_websocket_rules as rules

# Longest string any key accepts: long values never reach a regex or nginx.
MAX_LENGTH = 4096
# Unicode categories refused in every string: control (NUL, newlines, escape),
# format (bidi overrides, zero-width, BOM) and line/paragraph separators.
_CONTROL_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


SCHEMA = {
    "deployment": rules.choice("docker", "native"),
    "odoo": {
        "version": rules.version,
        "host": odoo_websocket_names.host,
        "http_port": rules.port,
        "gevent_port": rules.port,
        "workers": rules.count(0),
        "http_interface": odoo_websocket_names.ip,
        "config": {
            "enabled": rules.boolean,
            "file": rules.path,
            "restart_cmd": rules.command,
            "extra_options": rules.extra_options,
            "secret_keys": rules.list_of(rules.option_name),
        },
    },
    "nginx": {
        "enabled": rules.boolean,
        "binary": rules.path,
        "conf_file": rules.path,
        "map_file": rules.path,
        "site_file": rules.path,
        "site_link": rules.optional_path,
        "reload": rules.boolean,
        "restart": rules.boolean,
        "start": rules.boolean,
        "server_name": rules.server_names,
        "http_port": rules.port,
        "listen_addresses": rules.list_of(odoo_websocket_names.listen_address),
        "existing_site": rules.choice("adopt", "fail", "keep"),
        "upstream_http": rules.upstream,
        "upstream_evented": rules.upstream,
        "proxy_timeout": rules.count(60),
        "client_max_body_size": rules.size,
        "static_expires": rules.expires,
        "upstream_keepalive": rules.keepalive,
        "max_sessions": rules.count(0),
        "database_manager_allow": rules.list_of(odoo_websocket_names.allowed_client),
        "tls": {
            "enabled": rules.boolean,
            "port": rules.port,
            "certificate": rules.optional_path,
            "certificate_key": rules.optional_path,
            "hsts": rules.boolean,
        },
    },
    "backup": {
        "dir": rules.backup_dir,
        "keep": rules.count(1),
        "lock_timeout": rules.count(1),
    },
    "verify": {
        "enabled": rules.boolean,
        "timeout": rules.count(1),
        "rollback": rules.boolean,
    },
    "compose": {
        "enabled": rules.boolean,
        "file": rules.path,
        "service": rules.upstream,
        "bind_address": odoo_websocket_names.ip,
        "published_http_port": rules.optional_port,
        "published_gevent_port": rules.optional_port,
        "recreate_cmd": rules.command,
    },
    "dependencies": {
        "pip_packages": rules.list_of(rules.requirement),
        "pip_bin_env": rules.optional_path,
    },
    # Each instance's keys: odoo_websocket_instances, then this schema again.
    "instances": rules.mapping,
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
