"""
Several Odoo instances on one host: ``odoo_websocket:instances``, a mapping
of instance name to that instance's settings. Pure but for one read: file
paths are compared with their links followed.

- The keys at the top level are the defaults every instance inherits
  (merged recursively; lists replace). No ``instances`` (or an empty one):
  one instance, ``default``, made of the top level alone, with today's file
  and upstream names.
- In the ``instances`` form an instance's nginx ``site_file``, ``site_link``,
  ``upstream_http`` and ``upstream_evented`` default to the top level's with
  ``_<name>`` added (before a file's extension): ``odoo_websocket_erp.conf``,
  ``odoo_websocket_http_erp``.
- Host-wide keys (nginx's binary, nginx.conf, the map, reload/start, backup,
  verify, dependencies) belong to the top level only: refused in an instance.
- No two instances may share a site file or link, an upstream name, a
  server name on a port, an odoo.conf, or a compose service in one file.

``odoo_websocket_settings.settings`` validates and derives each instance.
"""

import os
import posixpath
import re

# Used in file and upstream names: a short safe token.
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
IMPLICIT = "default"
# Shared by every instance of a host: the top level's value only (None: the
# whole section).
HOST_WIDE = {
    "nginx": ("enabled", "binary", "conf_file", "map_file", "reload", "restart", "start",
              "max_sessions"),
    "backup": None,
    "verify": None,
    "dependencies": None,
    "instances": None,
}  # fmt: skip
# Named after the instance unless it names them itself.
_NAMED_FILES = ("site_file", "site_link")
_NAMED_UPSTREAMS = ("upstream_http", "upstream_evented")
_WHERE = "odoo_websocket:instances"


def merge(base, overrides):
    """BASE with OVERRIDES merged in, recursively (mappings merge, anything
    else replaces), as map.jinja's slsutil.merge(strategy='recurse'). New
    objects: neither argument is changed."""
    result = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def _host_wide(name, values):
    """One error per host-wide key the instance NAME sets."""
    errors = []
    for section, keys in HOST_WIDE.items():
        if section not in values:
            continue
        given = values[section] if isinstance(values[section], dict) else {}
        found = [k for k in given if keys is None or k in keys]
        if keys is None and not found:
            found = [None]  # the section itself, empty or not a mapping
        for key in found:
            path = section if key is None else f"{section}:{key}"
            errors.append(
                f"{_WHERE}:{name}:{path}: host-wide, set it once at odoo_websocket:{path} "
                "(every instance of a host shares nginx, the backups, the check and the "
                "dependencies)"
            )
    return errors


def _suffixed(path, name):
    stem, ext = posixpath.splitext(path)
    return f"{stem}_{name}{ext}"


def _named(top, name, values):
    """The instance's settings: TOP merged with VALUES, its files and
    upstreams named after NAME unless VALUES name them."""
    nginx = dict(top["nginx"]) if isinstance(top.get("nginx"), dict) else {}
    given = values.get("nginx") if isinstance(values.get("nginx"), dict) else {}
    for key in _NAMED_FILES:
        if key not in given and isinstance(nginx.get(key), str) and nginx[key]:
            nginx[key] = _suffixed(nginx[key], name)
    for key in _NAMED_UPSTREAMS:
        if key not in given and isinstance(nginx.get(key), str):
            nginx[key] = f"{nginx[key]}_{name}"
    return merge(dict(top, nginx=nginx), values)


def split(data):
    """
    DATA (the merged settings) as one settings mapping per instance, each to
    validate as the top level is: ``{"instances": {name: data}, "implicit":
    bool, "errors": [...]}``. ``instances`` of each is empty.
    """
    given = data.get("instances")
    top = dict(data, instances={})
    if given is None or given == {}:  # the single-instance pillar
        return {"instances": {IMPLICIT: top}, "implicit": True, "errors": []}
    if not isinstance(given, dict):
        error = f"{_WHERE}: must be a mapping of instance name to settings"
        return {"instances": {}, "implicit": False, "errors": [error]}
    found, errors = {}, []
    for name, values in given.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            errors.append(
                f"{_WHERE}: instance name {str(name)[:40]!r} must be 1 to 32 of a-z, 0-9, '_' "
                "and '-', starting with a letter or digit (it names files and upstreams)"
            )
            continue
        values = {} if values is None else values
        if not isinstance(values, dict):
            errors.append(f"{_WHERE}:{name}: must be a mapping of settings (or empty)")
            continue
        problems = _host_wide(name, values)
        errors.extend(problems)
        if not problems:
            found[name] = _named(top, name, values)
    return {"instances": found, "implicit": False, "errors": errors}


def located(name, errors):
    """ERRORS of validating instance NAME's settings, each naming its key under
    ``odoo_websocket:instances:NAME``."""
    prefix = "odoo_websocket:"
    return [
        f"{_WHERE}:{name}:{error[len(prefix) :]}" if error.startswith(prefix) else error
        for error in errors
    ]


def _real(path):
    """PATH with its links followed (read only): two instances must not reach
    one odoo.conf, compose file or site through a link (odoo.conf links are
    common on real hosts)."""
    return os.path.realpath(path)


def _uses(settings):
    """What one instance holds that no other may: {label: [values]}."""
    nginx, odoo, compose = settings["nginx"], settings["odoo"], settings["compose"]
    ports = [nginx["http_port"]] + ([nginx["tls"]["port"]] if nginx["tls"]["enabled"] else [])
    uses = {
        "nginx:site_file or site_link": [_real(nginx[key]) for key in _NAMED_FILES if nginx[key]],
        "upstream name (nginx:upstream_http, upstream_evented)": [
            nginx[key] for key in _NAMED_UPSTREAMS
        ],
        "server name and port (nginx:server_name, http_port, tls:port)": [
            f"{name.lower()} on port {port}" for name in nginx["server_name"] for port in ports
        ],
        "odoo.conf (odoo:config:file)": [],
        "compose service (compose:file, compose:service)": [],
    }
    if odoo["config"]["enabled"]:
        uses["odoo.conf (odoo:config:file)"].append(_real(odoo["config"]["file"]))
    if compose["enabled"]:
        uses["compose service (compose:file, compose:service)"].append(
            f"{compose['service']} in {_real(compose['file'])}"
        )
    return uses


def cross_check(instances):
    """
    What two of INSTANCES (``{name: settings}``, validated and derived)
    share that each needs for itself, one error per clash, naming both.
    """
    errors, owners = [], {}
    for name in sorted(instances):
        for label, values in _uses(instances[name]).items():
            for value in dict.fromkeys(values):
                other = owners.setdefault((label, value), name)
                if other != name:
                    errors.append(
                        f"{_WHERE}: {other} and {name} both use {label} {value}: "
                        "each instance needs its own"
                    )
    return errors
