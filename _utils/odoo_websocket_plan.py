"""
The planner of the odoo_websocket formula: from the settings, the bytes every
managed file should hold (compose ports, odoo.conf, nginx map and site), the
site it takes over, the restarts a change needs, and masked diffs.

Read only: the change engine (``odoo_websocket_changes.apply``) runs the plan.
"""

import json
import os

import salt.utils.data
import salt.utils.stringutils
from salt.exceptions import CommandExecutionError, SaltInvocationError

import odoo_websocket_adopt
import odoo_websocket_capacity
import odoo_websocket_compose
import odoo_websocket_concerns
import odoo_websocket_masking
import odoo_websocket_minion
import odoo_websocket_nginx
import odoo_websocket_odoo_conf
import odoo_websocket_sites


def masked(text, secret_keys=()):
    """
    TEXT with every secret value replaced by ``********``
    (``odoo_websocket_masking.masked``: odoo.conf secrets, compose
    environment values, nginx credential headers, passwords in URLs).
    """
    return odoo_websocket_masking.masked(text, secret_keys)


def diff(old, new, path):
    """
    A unified diff between two texts, labelled with PATH.
    """
    return salt.utils.stringutils.get_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=path, tofile=path
    )


def differs(change):
    """
    Whether CHANGE (``{path, kind, data|target}``) would change its path.
    Read only.
    """
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
    data = change["data"]
    with open(path, "rb") as handle:
        return handle.read() != (data.encode("utf-8") if isinstance(data, str) else data)


def _read(path):
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def managed_paths(settings):
    """
    The places the formula may write for SETTINGS: nginx's configuration
    folder (the map, the site, its link, an adopted site), odoo.conf and the
    compose file (and the targets of their links). A backup set or journal
    naming anything else is not trusted.
    """
    nginx = settings["nginx"]
    paths = [os.path.dirname(os.path.abspath(nginx["conf_file"])) + "/", nginx["map_file"]]
    for instance in odoo_websocket_concerns.instances(settings).values():
        for key in ("site_file", "site_link"):
            if instance["nginx"][key]:
                paths.append(instance["nginx"][key])
        for path in (instance["odoo"]["config"]["file"], instance["compose"]["file"]):
            paths.extend([path, os.path.realpath(path)])
    return sorted(set(paths))


def live_verify(settings):
    """
    SETTINGS' verify part with each instance's check pointed where the live
    site serving its names listens, when that site is a host's own the
    formula adopted (its https port, say): what ``odoo_websocket.verify``,
    clean and the beacon check, as the apply does. Reads the live tree.
    """
    plan, nginx = {"verify": settings["verify"]}, settings["nginx"]
    if not (nginx["enabled"] and settings["verify"]["enabled"]):
        return plan["verify"]
    try:
        payload = odoo_websocket_nginx.tree(nginx["conf_file"])
    except (OSError, ValueError, KeyError):  # the check itself will say what is wrong
        return plan["verify"]
    blocks = odoo_websocket_nginx.server_blocks(payload)
    for name, instance in odoo_websocket_concerns.instances(settings).items():
        names = {n.lower() for n in instance["nginx"]["server_name"]}
        files = {b["real"] for b in blocks if names & set(b["names"]) and not b["redirect"]}
        text = _read(next(iter(files))) if len(files) == 1 else None
        if text and not _own_site(next(iter(files))) and odoo_websocket_adopt.adopted(text):
            _verify_where(plan, odoo_websocket_adopt.listens(text, sorted(names)), name)
    return plan["verify"]


def outside(paths, managed):
    """
    The PATHS that are none of MANAGED (files, or folders ending in /), as
    :py:func:`managed_paths` gives them.
    """

    def inside(path):
        return any(path == m or (m.endswith("/") and path.startswith(m)) for m in managed)

    return [path for path in paths if not inside(os.path.abspath(path))]


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
        _nginx(settings, parts["nginx"] or {}, plan, saltenv)
    return plan


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


# Where a linked odoo.conf or compose file may never lead: system files the
# formula has no business rewriting as root.
_SYSTEM = ("/proc", "/sys", "/dev", "/boot", "/usr", "/bin", "/sbin", "/lib", "/lib64",
           "/root/.ssh", "/etc/ssh", "/etc/pam.d", "/etc/sudoers", "/etc/sudoers.d",
           "/etc/cron.d", "/etc/crontab", "/etc/passwd", "/etc/shadow", "/etc/group",
           "/etc/systemd")  # fmt: skip


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
    elif any(real == place or real.startswith(place + "/") for place in _SYSTEM):
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


def _planned(plan, path):
    """What PATH holds once the plan's earlier changes are made: an earlier
    instance's edit of a shared file is where the next one starts, so edits
    of one file chain (its disk content when the plan does not change it)."""
    real = os.path.realpath(path)
    for change in plan["changes"]:
        if change["kind"] == "file" and os.path.realpath(change["path"]) == real:
            return change["data"]
    return _read(path)


def _add(plan, concern, path, data, shown):
    """One change per path: a path the plan already changes gets the new
    DATA (planned from the earlier one), SHOWN being from the disk's content."""
    real = os.path.realpath(path)
    for change in plan["changes"]:
        if change["kind"] == "file" and os.path.realpath(change["path"]) == real:
            change["data"] = data
            path = change["path"]
            break
    else:
        plan["changes"].append({"concern": concern, "path": path, "kind": "file", "data": data})
    plan["diffs"][path] = dict(shown, concern=concern)


def _compose(settings, part, plan, saltenv):
    compose = settings["compose"]
    path, service = _target(compose["file"], "compose:file", plan), compose["service"]
    if path is None:
        return
    disk, current = _read(path), _planned(plan, path)
    if current is None:
        plan["errors"].append(f"{path} does not exist: point compose:file at the Odoo compose file")
        return
    try:
        wanted = odoo_websocket_compose.bind_ports(
            current, service, compose["ports"], compose["bind_address"]
        )
    except CommandExecutionError as exc:
        plan["errors"].append(f"{path} left unchanged: {exc}")
        return
    plan["restarts"].append(
        {
            "concern": "compose",
            "what": f"recreate {service}",
            "cmd": compose["recreate_cmd"],
            "cwd": os.path.dirname(path),
        }
    )
    if wanted == current:
        return
    checked = odoo_websocket_compose.validate(wanted, path)
    if not checked["ok"]:
        plan["errors"].append(
            f"{path}: {checked['by']} refuses the edited file: {checked['message']}"
        )
        return
    _add(plan, "compose", path, wanted, {"diff": diff(masked(disk), masked(wanted), path)})


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
    disk, current = _read(path), _planned(plan, path)
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
    docker = settings["deployment"] == "docker"
    plan["restarts"].append(
        {
            "concern": "odoo_conf",
            "what": "restart Odoo",
            "cmd": config["restart_cmd"],
            "unless": "compose" if docker else None,
        }
    )
    if wanted == current:
        return
    read, keys = odoo_websocket_odoo_conf.get_options, config["secret_keys"]
    shown = {
        "options": _masked_options(read(disk), read(wanted), keys),
        "diff": diff(masked(disk, keys), masked(wanted, keys), path),
    }
    _add(plan, "odoo_conf", path, wanted, shown)


def _render(sources, context, saltenv):
    """The first of SOURCES (salt:// URLs, TOFS order) that exists, rendered."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    minion = odoo_websocket_minion.current()
    salt = minion.functions
    try:  # as file.managed picks its source: no error logged for the others
        source = salt["file.source_list"](sources, "", saltenv)[0]
    except (CommandExecutionError, SaltInvocationError) as exc:
        raise CommandExecutionError(
            f"none of these templates exists: {', '.join(sources)}"
        ) from exc
    # The planning state and the transaction render the same template with
    # the same settings in one run: rendered once (Salt's __context__).
    key = json.dumps([source, saltenv, context], sort_keys=True, default=str)
    rendered = minion.context.setdefault("odoo_websocket_plan.rendered", {})
    if key not in rendered:
        template = salt["cp.get_file_str"](source, saltenv=saltenv)
        rendered[key] = salt["file.apply_template_on_contents"](
            template, template="jinja", context=context, defaults={}, saltenv=saltenv
        )
    return rendered[key]


def _stale_sites(payload, targets, folders, plan):
    """Remove the formula's earlier sites that no instance uses now, with the
    links that load them (odoo_websocket_sites.stale)."""
    for path in odoo_websocket_sites.stale(payload, targets, folders):
        plan["changes"].append({"concern": "nginx", "path": path, "kind": "absent"})
        plan["diffs"][path] = {"concern": "nginx", "removed": "an earlier formula site"}


def _own_site(path):
    """Whether PATH is (or will be) one of the formula's own site files: not
    there yet, marked as the formula's (by a mark naming its path, or the
    mark without one that earlier versions wrote on their own site files),
    or holding no site of the host's to keep (empty, unreadable, half
    written by a killed run): written whole, backed up."""
    real = os.path.realpath(path)
    if not os.path.isfile(path) or odoo_websocket_sites.ours(real, [path], {os.path.dirname(real)}):
        return True
    return not odoo_websocket_adopt.has_site(_read(path) or "")


def _sites(instances, texts, payload, plan):
    """Each instance's site (TEXTS) in its own file with its link, or the
    host's site it adopts, edited in place: ``[{site_file, names, ports,
    existing_site, adopted}]``, or None when one of them must stop (every
    instance's problem is in the plan)."""
    owned = {
        os.path.realpath(i["nginx"]["site_file"])
        for i in instances.values()
        if _own_site(i["nginx"]["site_file"])
    }
    loaded = odoo_websocket_nginx.loaded_files(payload)
    sites, taken, stop = [], {}, False
    for name, instance in instances.items():
        nginx = instance["nginx"]
        names = nginx["server_name"]
        ports = [nginx["http_port"]] + ([nginx["tls"]["port"]] if nginx["tls"]["enabled"] else [])
        placed = odoo_websocket_sites.target(nginx, names, ports, payload, owned)
        plan["notes"].extend(placed["notes"])
        plan["errors"].extend(placed["errors"])
        target = placed["target"]
        other = taken.setdefault(os.path.realpath(target), name) if target else name
        if other != name:
            plan["errors"].append(f"Instances {other} and {name} would both take over {target}.")
        if target is None or other != name:
            stop = True
            continue
        if placed["adopt"]:
            if not _adopted(plan, target, names, texts[name], name, payload):
                stop = True
                continue
            if nginx["tls"]["enabled"]:
                plan["notes"].append(
                    f"nginx:tls is not applied to the adopted site {target}: its own listens "
                    "and certificates are kept (HSTS and the cookie flags go in the locations "
                    "the formula sets)."
                )
        else:
            _add_nginx_file(plan, target, odoo_websocket_sites.stamped(texts[name], target))
        linked = not placed["adopt"] or os.path.realpath(target) not in loaded
        if target == nginx["site_file"] and nginx["site_link"] and linked:
            _add_link(plan, nginx["site_link"], nginx["site_file"])
        sites.append({"site_file": target, "names": names, "ports": ports,
                      "adopted": placed["adopt"],
                      "existing_site": nginx["existing_site"]})  # fmt: skip
    return None if stop else sites


def _left_adopted(payload, sites, instances, plan):
    """A host's site an earlier run adopted that no instance adopts now
    (server_name changed): it still defines the formula's upstreams (and
    carries its mark in the locations it set), which the formula's own site
    would define again (nginx: duplicate upstream).
    Returns whether there is one (the error is in the plan)."""
    left = False
    upstreams = {
        i["nginx"][key] for i in instances.values() for key in ("upstream_http", "upstream_evented")
    }
    targets = {os.path.realpath(site["site_file"]) for site in sites}
    for config in payload["config"]:
        real = config.get("real") or os.path.realpath(config["file"])
        top = config["parsed"] + [d for c in config["parsed"] if c["directive"] == "http"
                                  for d in c.get("block", [])]  # fmt: skip
        found = sorted({d["args"][0] for d in top if d["directive"] == "upstream"} & upstreams)
        if not found or real in targets:
            continue
        ours = odoo_websocket_sites.ours(real, [config["file"]], {os.path.dirname(real)})
        if not ours and odoo_websocket_adopt.adopted(_read(real) or ""):
            plan["errors"].append(
                f"{config['file']} carries the formula's websocket proxying (upstream "
                f"{', '.join(found)}) from an earlier run that adopted it, for names "
                "nginx:server_name no longer lists: add its names back to nginx:server_name, "
                "or put it back as it was first (salt-call odoo_websocket.clean), then apply."
            )
            left = True
    return left


def _includes(payload, path):
    """{line of an include directive in the file PATH: the directives it
    brings}, from the parsed live tree PAYLOAD."""
    real, configs, found = os.path.realpath(path), payload["config"], {}

    def walk(directives):
        for d in directives:
            if d["directive"] == "include" and d.get("includes"):
                found[d["line"]] = [x for i in d["includes"] for x in configs[i]["parsed"]]
            walk(d.get("block") or [])

    for config in configs:
        if (config.get("real") or os.path.realpath(config["file"])) == real:
            walk(config["parsed"])
    return found


def _adopted(plan, path, names, site, instance, payload):
    """Plan the host's site at PATH edited in place (odoo_websocket_adopt):
    the websocket proxying of the blocks serving NAMES set as SITE (the
    formula's rendered site) sets it, the rest kept. The verify check goes
    where those blocks listen. False when it cannot be adopted (the error
    is in the plan)."""
    current = _planned(plan, path)
    if current is None:
        plan["errors"].append(f"{path} cannot be read: nothing was touched.")
        return False
    try:
        edited = odoo_websocket_adopt.edit(current, names, site, _includes(payload, path))
    except ValueError as exc:  # odoo_websocket_adopt.AdoptError
        plan["errors"].append(
            f"{path} cannot be adopted: {exc}. Set nginx:site_file to a new file for the "
            "formula's own site, or nginx:existing_site to keep."
        )
        return False
    _add_nginx_file(plan, path, edited["text"])
    kept, listed = "; ".join(edited["kept"]), ", ".join(names)
    if edited["changed"]:
        plan["notes"].append(
            f"Adopting the existing site {path} for {listed}: changed "
            f"{', '.join(edited['changed'])}; kept {kept} and every other line."
        )
    else:
        plan["notes"].append(f"Adopted site {path} ({listed}): its websocket path is as set.")
    _verify_where(plan, odoo_websocket_adopt.listens(edited["text"], names), instance)
    return True


def _verify_where(plan, listens, instance):
    """Point the instance's websocket check where an adopted site's serving
    blocks listen (LISTENS: ``[{port, ssl, address}]``): its own port in
    plain http when they listen there, else their first plain port, else
    their first TLS one."""
    if not listens:
        return
    verify = plan["verify"] = json.loads(json.dumps(plan["verify"]))  # the plan's own copy
    targets = verify.get("targets") or [verify]
    target = next((t for t in targets if t.get("instance") == instance), targets[0])
    plain = [listen for listen in listens if not listen["ssl"]]
    same = [listen for listen in plain if listen["port"] == target["port"] and not target["tls"]]
    chosen = (same or plain or listens)[0]
    target["port"], target["tls"] = chosen["port"], chosen["ssl"]
    if chosen["address"]:
        target["address"] = chosen["address"]


def _nginx(settings, part, plan, saltenv):
    nginx, instances = settings["nginx"], odoo_websocket_concerns.instances(settings)
    try:
        texts = {
            name: _render(part["site_source"], {"settings": instance}, saltenv)
            for name, instance in instances.items()
        }
        map_text = _render(part["map_source"], {"settings": settings}, saltenv)
    except CommandExecutionError as exc:
        plan["errors"].append(f"Could not render the nginx templates: {exc}")
        return
    payload = odoo_websocket_nginx.tree(nginx["conf_file"])
    sites = _sites(instances, texts, payload, plan)
    if sites is None:
        return
    folders = {
        os.path.dirname(os.path.realpath(i["nginx"]["site_file"])) for i in instances.values()
    }
    _stale_sites(payload, [site["site_file"] for site in sites], folders, plan)
    if _left_adopted(payload, sites, instances, plan):
        return
    if _hosts_own_map(nginx["map_file"], map_text, plan):
        return
    _add_nginx_file(plan, nginx["map_file"], map_text)
    capacity = odoo_websocket_capacity.plan(nginx, payload)
    if capacity["note"]:
        plan["notes"].append(capacity["note"])
    if capacity["error"]:
        plan["errors"].append(capacity["error"])
    elif capacity["text"] is not None:  # worker_connections, worker_rlimit_nofile
        _add_nginx_file(plan, nginx["conf_file"], capacity["text"])
    keys = ("conf_file", "binary", "reload", "restart", "start", "map_file", "existing_site")
    first = sites[0]  # and every instance's site under "sites"
    plan["nginx"] = dict(
        {key: nginx[key] for key in keys},
        site_file=first["site_file"],
        names=first["names"],
        ports=first["ports"],
        sites=sites,
    )


def _add_nginx_file(plan, path, text):
    current = "" if os.path.islink(path) else (_read(path) or "")
    _add(plan, "nginx", path, text, {"diff": diff(masked(current), masked(text), path)})


def _hosts_own_map(path, wanted, plan):
    """Whether PATH, the map drop-in the formula writes whole (to hold
    WANTED), is a file of the host's own: never overwritten (the error says
    so)."""
    text = None if os.path.islink(path) else _read(path)
    if text is None or not text.strip() or text == wanted or odoo_websocket_sites.marked(text):
        return False
    plan["errors"].append(
        f"nginx:map_file names {path}, a file of the host's own (the formula writes that file "
        "whole): point nginx:map_file at a new file, e.g. "
        "/etc/nginx/conf.d/odoo_websocket_map.conf."
    )
    return True


def _add_link(plan, path, target):
    if os.path.lexists(path) and not os.path.islink(path):
        plan["errors"].append(
            f"nginx:site_link names {path}, a file of the host's own, not a link: point "
            "nginx:site_link at a new path in sites-enabled (or leave it empty)."
        )
        return
    plan["changes"].append({"concern": "nginx", "path": path, "kind": "link", "target": target})
    old = os.readlink(path) if os.path.islink(path) else None
    plan["diffs"][path] = {"concern": "nginx", "old": old, "new": target}
