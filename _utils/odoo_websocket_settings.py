"""
Settings of the odoo_websocket formula: the merged pillar, validated against
``odoo_websocket_schema``, with the values derived from it (routes, odoo.conf
options, restart commands, upstream ports, where the check knocks).

:py:func:`settings` is pure: map.jinja calls it while it renders, so a bad
pillar stops the run before any state touches a file. :py:func:`current`
builds the same settings at run time, as the states and the operator's
commands use them (once per run: cached in ``__context__``).
"""

import copy
import json
import os
import shlex

import salt.utils.data
import salt.utils.dictupdate
import salt.utils.yaml
from salt.exceptions import CommandExecutionError

import odoo_websocket_compose_project
import odoo_websocket_instances
import odoo_websocket_minion
import odoo_websocket_names
import odoo_websocket_schema
import odoo_websocket_verify

# Always masked in diffs and backups' metadata, whatever the pillar adds.
DEFAULT_SECRET_KEYS = ("admin_passwd", "db_password")


_TREE = "salt://odoo_websocket"
_CACHE = "odoo_websocket.settings"


def current(saltenv="base"):
    """
    This minion's settings, as map.jinja merges them (defaults.yaml <
    osfamilymap.yaml < pillar ``odoo_websocket``), validated and derived by
    :py:func:`settings`. Read once per run (Salt's ``__context__``); raises
    with every bad key when the pillar is invalid.
    """
    # pillar.get outside a template masks values ("**********") since Salt
    # 3008: the pillar as stored. Keyed by it, so a changed pillar is re-read.
    minion = odoo_websocket_minion.current()
    pillar = salt.utils.data.traverse_dict_and_list(minion.pillar, "odoo_websocket", {})
    family = minion.grains.get("os_family")
    key = json.dumps([saltenv, family, pillar], sort_keys=True, default=str)
    cache = minion.context.setdefault(_CACHE, {})
    if key not in cache:
        loaded = []
        for name in ("defaults.yaml", "osfamilymap.yaml"):
            text = minion.functions["cp.get_file_str"](f"{_TREE}/{name}", saltenv=saltenv) or "{}"
            loaded.append(salt.utils.yaml.safe_load(text) or {})
        defaults, osfamilymap = loaded
        if "odoo_websocket" not in defaults:  # salt-ssh ships a bare command no salt:// file
            raise CommandExecutionError(
                f"{_TREE}/defaults.yaml cannot be read here (saltenv {saltenv}): the formula's "
                "settings need the state tree (under salt-ssh, only state.apply ships it)"
            )
        merge = salt.utils.dictupdate.merge  # what slsutil.merge (map.jinja's) calls
        merged = merge(defaults["odoo_websocket"], osfamilymap.get(family) or {}, "recurse")
        merged = merge(merged, copy.deepcopy(pillar), "recurse")
        merged.pop("tofs", None)  # read by libtofs.jinja, not a setting
        cache[key] = settings(merged)
    return copy.deepcopy(cache[key])


def settings(data):
    """
    Validate the merged settings (defaults, OS family, pillar) and return them
    with the derived values the SLS files and templates use. Raises an error
    that lists every bad key when the pillar is invalid, so the render stops
    before any state touches a file.
    """
    split = odoo_websocket_instances.split(data)
    validate = odoo_websocket_schema.validate
    errors = split["errors"] or validate(dict(data, instances={}))
    if not errors and not split["implicit"]:
        for name, merged in split["instances"].items():
            errors.extend(odoo_websocket_instances.located(name, validate(merged)))
    _refuse(errors)
    instances = {name: _derived(merged) for name, merged in split["instances"].items()}
    if split["implicit"]:
        return next(iter(instances.values()))  # exactly the single-instance settings
    _refuse(odoo_websocket_instances.cross_check(instances))
    return _several(instances)


def _refuse(errors):
    if errors:
        raise CommandExecutionError(
            "Invalid pillar, nothing was changed:\n  " + "\n  ".join(errors)
        )


def _derived(data):
    """One instance's settings with the values derived from them."""
    result = copy.deepcopy(data)
    result.pop("instances", None)
    _derive_odoo(result)
    _derive_options(result)
    _derive_commands(result)
    _derive_upstream_ports(result)
    _derive_verify(result)
    return result


def _several(instances):
    """The settings of a host with several instances: the first instance's
    (by name) at the top level, with the switches on when any instance's is,
    every instance's under ``instances`` (each knowing its name), and every
    instance's websocket check under ``verify:targets``."""
    for name, instance in instances.items():
        instance["instance"] = name
    result = copy.deepcopy(instances[min(instances)])
    result["instances"] = instances
    every = list(instances.values())
    result["compose"]["enabled"] = any(i["compose"]["enabled"] for i in every)
    result["odoo"]["config"]["enabled"] = any(i["odoo"]["config"]["enabled"] for i in every)
    result["verify"]["targets"] = [
        dict({key: i["verify"][key] for key in odoo_websocket_verify.TARGET_KEYS}, instance=name)
        for name, i in sorted(instances.items())
    ]
    return result


def _derive_odoo(result):
    """What the Odoo version and worker count decide: the bus path, the evented
    port option and the upstream that serves the bus."""
    odoo, nginx = result["odoo"], result["nginx"]
    major = int(str(odoo["version"]).split(".", 1)[0])  # validated: N or N.M
    odoo["major"] = major
    # Odoo 16 moved the bus from long polling to a websocket, and renamed the
    # evented port option (longpolling_port stays a deprecated alias).
    odoo["realtime_path"] = "/websocket" if major >= 16 else "/longpolling"
    evented_option = "gevent_port" if major >= 16 else "longpolling_port"
    odoo["evented_option"] = evented_option
    # workers = 0: the HTTP port serves the bus; workers > 0: only the evented
    # one. The bus never goes through an upstream that keeps connections
    # alive: with upstream_keepalive in threaded mode it gets the evented
    # upstream's name, pointing at the HTTP port (_derive_upstream_ports).
    own = odoo["workers"] > 0 or nginx["upstream_keepalive"] > 0
    nginx["realtime_upstream"] = nginx["upstream_evented"] if own else nginx["upstream_http"]


def _derive_options(result):
    """The odoo.conf options the formula writes, and the keys masked in diffs."""
    odoo = result["odoo"]
    config = odoo["config"]
    # The HTTP port too: nginx's upstreams use odoo:http_port, so Odoo must
    # listen there (Odoo 11 renamed xmlrpc_port to http_port).
    http_option = "http_port" if odoo["major"] >= 11 else "xmlrpc_port"
    options = [
        ["proxy_mode", "True"],
        ["workers", str(odoo["workers"])],
        [http_option, str(odoo["http_port"])],
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
    config["renames"] = {"xmlrpc_port": "http_port"} if odoo["major"] >= 11 else {}
    if odoo["major"] >= 16:
        config["renames"]["longpolling_port"] = "gevent_port"


def _derive_commands(result):
    """Default restart and recreate commands for the deployment, when left empty."""
    config, compose = result["odoo"]["config"], result["compose"]
    service = shlex.quote(compose["service"])
    if not config["restart_cmd"]:
        config["restart_cmd"] = (
            _compose_command(compose["file"], f"restart {service}")
            if result["deployment"] == "docker"
            else "service odoo restart"
        )
    if not compose["recreate_cmd"]:
        compose["recreate_cmd"] = _compose_command(compose["file"], f"up -d {service}")
    compose["enabled"] = compose["enabled"] and result["deployment"] == "docker"


def _compose_command(compose_file, arguments):
    """A shell command running compose ARGUMENTS on COMPOSE_FILE's project as
    the operator's own ``docker compose`` does there: from its folder (.env,
    the project name), naming the file only when compose would not find it
    by itself (so docker-compose.override.yml and COMPOSE_FILE still count),
    with the compose the host has: the docker CLI's plugin (`docker compose`)
    when it answers, else the standalone `docker-compose` (Debian 12's
    package). The choice is made when the command runs, on the minion."""
    folder, name = os.path.split(compose_file)
    found = name in odoo_websocket_compose_project.DISCOVERED
    tail = arguments if found else f"-f {shlex.quote(compose_file)} {arguments}"
    return (
        f"cd {shlex.quote(folder or '.')} && if docker compose version >/dev/null 2>&1; "
        f"then docker compose {tail}; else docker-compose {tail}; fi"
    )


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
    nginx["realtime_upstream_port"] = (
        nginx["upstream_evented_port"] if odoo["workers"] > 0 else nginx["upstream_http_port"]
    )


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
    # The first name a browser could send as Host (not a wildcard or regex);
    # with verify:enabled the schema makes sure there is one.
    names, usable = nginx["server_name"], odoo_websocket_names.probe_name
    verify["server_name"] = next(filter(usable, names), names[0])
    verify["realtime_path"] = result["odoo"]["realtime_path"]
    verify["odoo_ports"] = sorted({nginx["upstream_http_port"], nginx["upstream_evented_port"]})
    # The live tree the check reads for the other addresses it must knock on.
    verify["conf_file"] = nginx["conf_file"]
