"""
The planner of the odoo_websocket formula: from the settings, the bytes every
managed file should hold (compose ports, odoo.conf, nginx map and site), the
site it takes over, the restarts a change needs, and masked diffs.

Read only: the change engine (``odoo_websocket_changes.apply``) runs the plan.
"""

import os

import salt.utils.data
import salt.utils.stringutils
from salt.exceptions import CommandExecutionError

import odoo_websocket_compose
import odoo_websocket_compose_project
import odoo_websocket_concerns
import odoo_websocket_files
import odoo_websocket_minion
import odoo_websocket_odoo_conf
import odoo_websocket_plan_nginx


def build(settings, parts, saltenv="base"):
    """
    Plan the concerns in PARTS (compose, odoo_conf, nginx) for SETTINGS: the
    change set, masked diffs, restarts, notes and the problems that stop the
    run before anything is touched. Reads files; writes nothing.
    """
    instances = odoo_websocket_concerns.instances(settings)
    secret_keys = {key for i in instances.values() for key in i["odoo"]["config"]["secret_keys"]}
    plan = {
        "changes": [],
        "diffs": {},
        "notes": [],
        "errors": [],
        "restarts": [],
        "nginx": None,
        "verify": settings["verify"],
        "secret_keys": sorted(secret_keys),
    }
    for concern, planner in (("compose", _compose), ("odoo_conf", _odoo_conf)):
        for name, instance in instances.items() if concern in parts else ():
            if odoo_websocket_concerns.enabled(concern, instance):
                _planned_for(name, planner, instance, parts[concern] or {}, plan, saltenv)
    if "nginx" in parts:
        odoo_websocket_plan_nginx.plan(settings, parts["nginx"] or {}, plan, saltenv)
    for change in plan["changes"]:  # links and removals: as they are now
        change.setdefault("expect", odoo_websocket_files.state(change["path"]))
    return plan


# build's order of the concerns, and the plan keys each concern adds to.
ORDER = ("compose", "odoo_conf", "nginx")
_LISTS = ("changes", "notes", "errors", "restarts")


def combined(plans):
    """
    What :py:func:`build` gives for all the concerns of PLANS at once
    (``{concern: the plan build gave for that concern alone}``): the
    planners are the same, in the same order, so their parts join.
    """
    result = None
    for concern in sorted(plans, key=ORDER.index):
        plan = plans[concern]
        if result is None:
            result = {key: list(v) if key in _LISTS else v for key, v in plan.items()}
            result["diffs"] = dict(plan["diffs"])
            continue
        for key in _LISTS:
            result[key] += plan[key]
        result["diffs"].update(plan["diffs"])
        result["nginx"] = result["nginx"] or plan["nginx"]
        result["verify"] = plan["verify"]  # nginx's (last) points it at an adopted site
    return result


def inputs(settings):
    """
    What the planner reads on this host for SETTINGS, as each path's
    identity and last change (inode, size, mtime and ctime in ns, mode,
    owner; a link's target): every path the formula may write (nginx's
    whole live tree among them) and each compose project's .env. A plan
    made while these were so still holds while they are (any write moves
    ctime).
    """
    paths = [p for p in odoo_websocket_concerns.managed_paths(settings) if not p.endswith("/")]
    for instance in odoo_websocket_concerns.instances(settings).values():
        compose_file = instance["compose"]["file"]
        paths.append(os.path.join(os.path.dirname(compose_file), ".env"))
    found = {}
    for path in sorted(set(paths)):
        try:
            stat = os.lstat(path)
        except OSError:
            found[path] = None
            continue
        found[path] = (stat.st_ino, stat.st_dev, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns,
                       stat.st_mode, stat.st_uid, stat.st_gid,
                       os.readlink(path) if os.path.islink(path) else None)  # fmt: skip
    return found


def unchanged(plans):
    """Whether PLANS (``{concern: plan}``) change nothing on the host now:
    no file to write, no error. Read only."""
    return all(
        not plan["errors"] and not any(odoo_websocket_files.differs(c) for c in plan["changes"])
        for plan in plans.values()
    )


def _planned_for(name, planner, instance, part, plan, saltenv):
    """PLANNER's changes and restarts for one instance, each tagged with its
    NAME: an instance's restart follows its own files only."""
    known = len(plan["changes"]), len(plan["restarts"])
    before = [change.get("data") for change in plan["changes"]]
    planner(instance, part, plan, saltenv)
    for entry in plan["changes"][known[0] :] + plan["restarts"][known[1] :]:
        entry["instance"] = name
    # An earlier instance's file this one edited further (two compose
    # services in one file): its changes restart both.
    for change, data in zip(plan["changes"], before, strict=False):
        if change.get("data") != data:
            change.setdefault("instances", [change["instance"]]).append(name)


def _target(path, key, plan):
    """The file to edit for PATH: PATH itself, or, when it is a link (a compose
    project's config/ mounted in the container), its target, the link kept.
    None, with why in the plan's errors, when that target is no place for it."""
    real = os.path.realpath(path)
    if real == os.path.abspath(path) or not os.path.lexists(path):
        return path
    why = None
    if not os.path.isfile(real):
        why = "which is not a regular file"
    elif odoo_websocket_files.system_path(real):
        why = "a system file"
    else:
        why = _link_hijack(path, real)
    if why:
        plan["errors"].append(f"{path} links to {real}, {why}: refused (point {key} at it)")
        return None
    plan["notes"].append(f"{path} is a link: its target {real} is edited, the link stays.")
    return real


def _link_hijack(path, real):
    """Why editing REAL through the link PATH could let a user get root to
    write a file that user may not write (they could repoint the link), or
    None. A link that only root controls may lead anywhere sane."""
    folder = os.stat(os.path.dirname(os.path.abspath(path)))
    if folder.st_mode & 0o002 and not folder.st_mode & 0o1000:
        return "and anyone may replace the link (its folder is world-writable)"
    controllers = {os.lstat(path).st_uid, folder.st_uid} - {0}
    owner = os.stat(real).st_uid
    if controllers and owner not in controllers:
        return (
            f"owned by uid {owner}, while uid {', '.join(map(str, sorted(controllers)))} "
            "controls the link"
        )
    return None


def _compose(settings, part, plan, saltenv):
    compose = settings["compose"]
    path, service = _target(compose["file"], "compose:file", plan), compose["service"]
    if path is None:
        return
    expect = odoo_websocket_files.state(path)  # before the read: an edit since is caught
    disk, current = odoo_websocket_files.read(path), odoo_websocket_files.planned(plan, path)
    if current is None:
        plan["errors"].append(f"{path} does not exist: point compose:file at the Odoo compose file")
        return
    variables = odoo_websocket_compose_project.project_variables(compose["file"])
    args = (service, compose["ports"], compose["bind_address"], variables)
    try:
        wanted = odoo_websocket_compose.bind_ports(current, *args)
    except CommandExecutionError as exc:
        plan["errors"].append(f"{path} left unchanged: {exc}")
        return
    overrides = _compose_overrides(compose["file"], path, args, plan)
    if overrides is None:
        return
    plan["restarts"].append(odoo_websocket_concerns.restart("compose", settings))
    edited = {p: o for p, o in overrides.items() if o["wanted"] != o["current"]}
    if wanted == current and not edited:
        return
    project = {path: wanted, **{p: o["wanted"] for p, o in overrides.items()}}
    checked = odoo_websocket_compose_project.validate(wanted, path, project)
    if not checked["ok"]:
        plan["errors"].append(
            f"{path}: {checked['by']} refuses the edited file: {checked['message']}"
        )
        return
    if wanted != current:
        shown = {"diff": odoo_websocket_files.masked_diff(disk, wanted, path)}
        odoo_websocket_files.add(plan, "compose", path, wanted, shown, expect)
    for other, override in edited.items():
        shown = {"diff": odoo_websocket_files.masked_diff(override["disk"], override["wanted"],
                                                          other)}  # fmt: skip
        odoo_websocket_files.add(plan, "compose", other, override["wanted"], shown,
                                 override["expect"])  # fmt: skip


def _compose_overrides(compose_file, path, args, plan):
    """The project's other files (docker-compose.override.yml, COMPOSE_FILE's
    list: odoo_websocket_compose_project.project_files) with the service's
    entries in them rebound too: ``{path: {expect, disk, current, wanted}}``,
    None (the plan's errors say why) when one cannot be."""
    found = {}
    for listed in odoo_websocket_compose_project.project_files(compose_file):
        if os.path.realpath(listed) == os.path.realpath(path) or not os.path.isfile(listed):
            continue  # the file itself, or one compose would miss as well
        other = _target(listed, f"the compose project's {os.path.basename(listed)}", plan)
        if other is None:
            return None
        expect = odoo_websocket_files.state(other)
        disk, current = odoo_websocket_files.read(other), odoo_websocket_files.planned(plan, other)
        if current is None:
            plan["errors"].append(f"{other} (read with {path}) cannot be read as text")
            return None
        try:
            wanted = odoo_websocket_compose.bind_ports(current, *args, override=True)
        except CommandExecutionError as exc:
            plan["errors"].append(f"{other} (read with {path}) left unchanged: {exc}")
            return None
        found[other] = {"expect": expect, "disk": disk, "current": current, "wanted": wanted}
    return found


def _masked_options(old, new, secret_keys):
    changed = {}
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            before, after = old.get(key), new.get(key)
            if odoo_websocket_odoo_conf.is_secret(key, secret_keys):
                before = None if before is None else "********"
                after = None if after is None else "********"
            changed[key] = {"old": before, "new": after}
    return changed


def _extra_options(keys, instance=None):
    """odoo:config:extra_options from the pillar: the settings carry only their
    names (values may be secrets), validated when map.jinja rendered."""
    # __pillar__ itself: pillar.get outside a template returns masked values
    # ("**********") since Salt 3008, and those must never reach odoo.conf.
    read, key = salt.utils.data.traverse_dict_and_list, "odoo:config:extra_options"
    pillar = odoo_websocket_minion.current().pillar
    values = dict(read(pillar, f"odoo_websocket:{key}", {}))
    if instance:  # the instance's own values over the top level's, as its settings merge
        values.update(read(pillar, f"odoo_websocket:instances:{instance}:{key}", {}))
    return [[key, str(values[key])] for key in keys]  # str(True) == "True", as Odoo writes it


def _odoo_conf(settings, part, plan, saltenv):
    config = settings["odoo"]["config"]
    path = _target(config["file"], "odoo:config:file", plan)
    if path is None:
        return
    expect = odoo_websocket_files.state(path)  # before the read: an edit since is caught
    disk, current = odoo_websocket_files.read(path), odoo_websocket_files.planned(plan, path)
    if current is None:
        plan["errors"].append(
            f"{config['file']} does not exist: install Odoo (or point odoo:config:file at it) first"
        )
        return
    options = config["options"] + _extra_options(config["extra_options"], settings.get("instance"))
    try:
        wanted = odoo_websocket_odoo_conf.set_options(current, options, config["renames"])
    except CommandExecutionError as exc:
        plan["errors"].append(f"{path} is not a valid odoo.conf, left unchanged: {exc}")
        return
    if "websocket_url" in config["extra_options"]:
        plan["notes"].append(
            "websocket_url written as asked, but no Odoo version reads it: the browser opens "
            "the websocket on the origin of the page it loaded."
        )
    plan["restarts"].append(odoo_websocket_concerns.restart("odoo_conf", settings))
    if wanted == current:
        return
    read, keys = odoo_websocket_odoo_conf.get_options, config["secret_keys"]
    shown = {
        "options": _masked_options(read(disk), read(wanted), keys),
        "diff": odoo_websocket_files.masked_diff(disk, wanted, path, keys),
    }
    odoo_websocket_files.add(plan, "odoo_conf", path, wanted, shown, expect)
