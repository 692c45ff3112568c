"""
States of the odoo_websocket formula.

Three planning states, one per concern, show what their files need (a diff
with ``test=True``) and contribute their concern to the host's transaction;
``host_applied`` then runs all contributed concerns as one transaction
(the library's ``odoo_websocket_changes.apply``): validated together, one backup set,
Odoo restarted only when its files changed, nginx reloaded, the websocket
verified, and every file restored when any step fails. The pattern is
Salt's ``file.accumulated`` feeding ``file.managed``.

The states take no settings: each reads this minion's settings at run time
(the library's ``odoo_websocket_settings.current``, once per run), so no pillar value, and
no secret, travels as a state argument; ``settings_valid`` checks them once,
before any concern is planned. Their names are the concerns; their comments
name the files. So the SLS files need no settings when they render, and most
of them no Jinja at all: rendering is the main cost of a run that changes
nothing (docs/benchmarks.md).
"""

import functools

from salt.exceptions import CommandExecutionError, SaltInvocationError

# The formula's library (_utils/), synced with this module by saltutil.sync_all.
try:
    import odoo_websocket_minion as _seam

    # A running minion keeps what it once imported: drop a library that a
    # sync has replaced since, so this module runs the one it came with.
    _seam.fresh()

    import odoo_websocket_changes
    import odoo_websocket_concerns
    import odoo_websocket_files
    import odoo_websocket_minion
    import odoo_websocket_plan
    import odoo_websocket_settings

    odoo_websocket_minion.stamp()
    _LIBRARY_MISSING = None
except ImportError as exc:
    _LIBRARY_MISSING = f"odoo_websocket: the formula's library is not here ({exc}): "
    _LIBRARY_MISSING += "saltutil.sync_all (sync_modules alone leaves out _utils/)"

__virtualname__ = "odoo_websocket"

_PARTS = "odoo_websocket.parts"
_PLANS = "odoo_websocket.plans"  # what each planning state planned: a no-op is not planned again
_INPUTS = "odoo_websocket.inputs"  # what the planner read, before the first plan
_TRANSACTION_ID = "odoo_websocket-host-transaction-applied"


def __virtual__():
    missing = _LIBRARY_MISSING or odoo_websocket_minion.missing_message()
    return (False, missing) if missing else __virtualname__


def _minion(function):
    """Run FUNCTION with what Salt's loader gave this module bound for the
    library. Defined here, not in the library: Salt injects the per-call
    globals (``__env__``...) into the globals of the function it calls."""

    @functools.wraps(function)  # the name, docstring and signature Salt reads
    def call(*args, **kwargs):
        with odoo_websocket_minion.bound(__salt__, __pillar__, __grains__, __context__):
            return function(*args, **kwargs)

    return call


def _planned(name, concern, part, saltenv):
    """Plan one concern, report it, and contribute it to the transaction."""
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    saltenv = saltenv or __env__
    try:
        settings = odoo_websocket_settings.current(saltenv)
        if not odoo_websocket_concerns.enabled(concern, settings):
            ret["comment"] = f"{name}: not managed with these settings."
            return ret
        name = ", ".join(odoo_websocket_concerns.files(concern, settings)) or name
        if _INPUTS not in __context__:  # before this run's first plan reads anything
            __context__[_INPUTS] = odoo_websocket_plan.inputs(settings)
        plan = odoo_websocket_plan.build(settings, {concern: part}, saltenv)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret.update(result=False, comment=f"Could not plan {concern}: {exc}")
        return ret
    if plan["errors"]:
        ret.update(result=False, comment="\n".join(plan["errors"] + ["Nothing was changed."]))
        return ret
    __context__.setdefault(_PARTS, {})[concern] = part
    __context__.setdefault(_PLANS, {})[concern] = plan
    diffs = {path: shown for path, shown in plan["diffs"].items() if _differs(plan, path)}
    notes = plan["notes"]
    if not diffs:
        ret["comment"] = " ".join(notes + [f"{name}: nothing to change."])
    elif __opts__["test"]:
        ret.update(result=None, changes=diffs)
        ret["comment"] = " ".join(notes + [f"Would change {', '.join(diffs)}."])
    else:
        ret["comment"] = " ".join(
            notes + [f"To change: {', '.join(diffs)}; {_TRANSACTION_ID} applies it."]
        )
    return ret


def _differs(plan, path):
    change = next(c for c in plan["changes"] if c["path"] == path)
    return odoo_websocket_files.differs(change)


@_minion
def settings_valid(name, saltenv=None):
    """
    This minion's settings (defaults.yaml < osfamilymap.yaml < pillar
    ``odoo_websocket``) are valid: the first thing a run checks, so that a bad
    pillar fails here, with every bad key, before anything is planned.
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": "The settings are valid."}
    try:
        odoo_websocket_settings.current(saltenv or __env__)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret.update(result=False, comment=str(exc))
    return ret


@_minion
def compose_ports_planned(name, saltenv=None):
    """
    Plan the Odoo service's published ports in the compose file: bound to
    ``compose:bind_address`` only, every other byte kept, checked with
    ``docker-compose config`` when installed.
    """
    return _planned(name, "compose", {}, saltenv)


@_minion
def odoo_conf_planned(name, saltenv=None):
    """
    Plan odoo.conf's ``[options]``: proxy_mode, workers, the evented port
    (and http_interface for native deployments), extra options; comments,
    order, mode and owner kept, secrets masked in the diff.
    """
    return _planned(name, "odoo_conf", {}, saltenv)


@_minion
def nginx_site_planned(name, site_source, map_source, saltenv=None):
    """
    Plan the nginx site (or the existing site it adopts), its
    sites-enabled link and the formula's map drop-in. SITE_SOURCE and
    MAP_SOURCE are salt:// templates (lists: the first that exists wins, TOFS).
    """
    part = {"site_source": site_source, "map_source": map_source}
    return _planned(name, "nginx", part, saltenv)


@_minion
def host_applied(name, saltenv=None):
    """
    Apply every concern the planning states contributed, as one transaction,
    and verify the websocket. With ``test=True``: the staged verdict and the
    live check, nothing changed.
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    parts = __context__.get(_PARTS, {})
    if not parts:
        ret["comment"] = "No concern was planned in this run: nothing to apply."
        return ret
    saltenv = saltenv or __env__
    try:
        settings = odoo_websocket_settings.current(saltenv)
        result = odoo_websocket_changes.apply(
            settings, parts, saltenv=saltenv, test=__opts__["test"],
            planned=(__context__[_PLANS], __context__[_INPUTS]) if _PLANS in __context__ else None,
        )  # fmt: skip
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret.update(result=False, comment=f"{exc}; nothing was touched.")
        return ret
    ret["result"] = result["result"]
    ret["comment"] = result["comment"]
    if result["changed"]:
        ret["changes"] = result["diffs"]
        if result["backup"]:
            ret["changes"]["backup"] = result["backup"]
    return ret
