"""
The formula's concerns in one table: for each, the SLS and planning state
that manage it, whether an instance's settings manage it, the files it
writes, how its change is checked before anything live is touched, and what
goes live after it changes (Odoo's restart, the container's recreation, or
nginx's reload). The planner, the engine's restore, clean and recovery (the
paths they may write, the restarts they run), the audit's fixes, the states
and the benchmarks read it, with the one way to walk the Odoo instances of a
host's settings.
"""

import os
from collections.abc import Callable
from typing import NamedTuple

import odoo_websocket_compose_project
import odoo_websocket_nginx


class Concern(NamedTuple):
    sls: str  # what an operator applies for this concern alone
    state_id: str  # its planning state in that SLS
    enabled: Callable  # instance settings -> whether they manage it
    file: Callable  # instance settings -> the file it plans (the state's name)
    paths: Callable  # instance settings -> every path it may write
    check: str  # how a change is checked before anything live is touched
    restart: Callable | None  # instance settings -> {what, cmd, cwd}: what goes live
    unless: str | None  # the concern whose restart makes this one's unnecessary


def _and_target(path):
    # Edited through a link (a compose project's config/ mounted in the
    # container): the link's target is written (odoo_websocket_plan._target).
    return [path, os.path.realpath(path)]


def _compose_paths(settings):
    # The project's other files (its override) are rebound too.
    compose_file = settings["compose"]["file"]
    listed = odoo_websocket_compose_project.project_files(compose_file)
    return [path for each in dict.fromkeys([compose_file, *listed]) for path in _and_target(each)]


def _odoo_unless(settings):
    # Recreating the container reads odoo.conf too: no second restart.
    return "compose" if settings["deployment"] == "docker" else None


CONCERNS = {
    "compose": Concern(
        sls="odoo_websocket.compose",
        state_id="odoo_websocket-compose-ports-planned",
        enabled=lambda s: s["compose"]["enabled"],
        file=lambda s: s["compose"]["file"],
        paths=_compose_paths,
        check="docker-compose config on the edited file (the YAML parser without it)",
        restart=lambda s: {
            "what": f"recreate {s['compose']['service']}",
            "cmd": s["compose"]["recreate_cmd"],
            "cwd": os.path.dirname(s["compose"]["file"]),
        },
        unless=None,
    ),
    "odoo_conf": Concern(
        sls="odoo_websocket.odoo",
        state_id="odoo_websocket-odoo-config-planned",
        enabled=lambda s: s["odoo"]["config"]["enabled"],
        file=lambda s: s["odoo"]["config"]["file"],
        paths=lambda s: _and_target(s["odoo"]["config"]["file"]),
        check="parsed as Odoo's configparser reads it, before and after the edit",
        restart=lambda s: {"what": "restart Odoo", "cmd": s["odoo"]["config"]["restart_cmd"]},
        unless="compose",
    ),
    "nginx": Concern(
        sls="odoo_websocket.nginx",
        state_id="odoo_websocket-nginx-site-planned",
        enabled=lambda s: s["nginx"]["enabled"],
        file=lambda s: s["nginx"]["site_file"],
        paths=lambda s: [s["nginx"]["site_file"], s["nginx"]["site_link"], s["nginx"]["map_file"]],
        check="nginx -t of the whole tree on a private copy, then live before the reload",
        restart=None,  # nginx is reloaded (odoo_websocket_activation.reload), never restarted
        unless=None,
    ),
}


def instances(settings):
    """{name: settings} of each Odoo instance (odoo_websocket_instances): the
    settings themselves, as ``default``, for a single-instance pillar."""
    return settings.get("instances") or {"default": settings}


def enabled(concern, settings):
    """Whether SETTINGS (one instance's, or the host's) manage CONCERN."""
    return CONCERNS[concern].enabled(settings)


def files(concern, settings):
    """The files CONCERN plans, each instance's that manages it, instances in
    name order, each file once."""
    found = [CONCERNS[concern].file(instance) for _, instance in
             sorted(instances(settings).items()) if enabled(concern, instance)]  # fmt: skip
    return list(dict.fromkeys(path for path in found if path))


def restart(concern, settings):
    """What goes live when CONCERN's files change for one instance's
    SETTINGS: ``{concern, what, cmd, cwd, unless}`` (None: nothing restarts)."""
    spec = CONCERNS[concern]
    if spec.restart is None:
        return None
    unless = _odoo_unless(settings) if spec.unless else None
    return dict(spec.restart(settings), concern=concern, unless=unless)


def managed_paths(settings):
    """
    The places the formula may write for SETTINGS: nginx's configuration
    folder (an adopted site, nginx.conf's capacity), every file nginx's live
    tree loads from elsewhere (a site in /srv, adoptable), and every concern's
    paths, each instance's (whether or not the concern is enabled: a backup
    set of an earlier pillar may name them). A backup set or journal naming
    anything else is not trusted.
    """
    nginx = settings["nginx"]
    paths = [os.path.dirname(os.path.abspath(nginx["conf_file"])) + "/"]
    # Every file the live tree loads, wherever it lives: adoption may edit it.
    paths += odoo_websocket_nginx.tree_files(nginx["conf_file"])
    for instance in instances(settings).values():
        for concern in CONCERNS.values():
            paths.extend(path for path in concern.paths(instance) if path)
    return sorted(set(paths))


def restarts_by_path(settings, covered=False):
    """
    The restarts a restore or clean runs, each instance's, keyed by the real
    path of the file that needs it (a backup set names paths, not concerns):
    ``[{"path", "what", "cmd", "cwd"}]``, whether or not the concern is
    enabled now (as :py:func:`managed_paths`: a set of an earlier pillar may
    name its file). COVERED: a restart another one makes unnecessary (Odoo's,
    when its container is recreated) names that one's paths as ``unless``.
    """
    found = []
    for instance in instances(settings).values():
        for name, concern in CONCERNS.items():
            entry = restart(name, instance)
            if entry is None or not concern.file(instance):
                continue
            unless = entry.pop("unless")
            del entry["concern"]
            if covered and unless:  # any of its files (a compose file's override too)
                paths = filter(None, CONCERNS[unless].paths(instance))
                entry["unless"] = list(dict.fromkeys(map(os.path.realpath, paths)))
            # Each file of the concern (a compose project's override too).
            for path in dict.fromkeys(map(os.path.realpath, filter(None, concern.paths(instance)))):
                found.append(dict(entry, path=path))
    return found
