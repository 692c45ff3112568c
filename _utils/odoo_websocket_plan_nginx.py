"""
The planner's nginx part: the formula's map drop-in, each instance's site
(its own file, or the host's site that serves its names, edited in place:
odoo_websocket_adopt) and link, the formula's earlier sites no instance
uses, and where the check goes (an adopted site's own listens).

Read only, as the planner (odoo_websocket_plan) is.
"""

import json
import os

from salt.exceptions import CommandExecutionError, SaltInvocationError

import odoo_websocket_adopt
import odoo_websocket_adopt_location
import odoo_websocket_capacity
import odoo_websocket_concerns
import odoo_websocket_exposure
import odoo_websocket_files
import odoo_websocket_minion
import odoo_websocket_nginx
import odoo_websocket_nginx_text
import odoo_websocket_sites


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
        text = odoo_websocket_files.read(next(iter(files))) if len(files) == 1 else None
        adopted = text and odoo_websocket_adopt_location.adopted(text)
        if adopted and not _own_site(next(iter(files))):
            _verify_where(plan, odoo_websocket_nginx_text.listens(text, sorted(names)), name)
    return plan["verify"]


def plan(settings, part, plan, saltenv):
    nginx, instances = settings["nginx"], odoo_websocket_concerns.instances(settings)
    try:
        ipv6 = odoo_websocket_exposure.ipv6_available()
        texts = {
            name: _render(part["site_source"], {"settings": instance, "ipv6": ipv6}, saltenv)
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
    return not odoo_websocket_nginx_text.has_site(odoo_websocket_files.read(path) or "")


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
        text = odoo_websocket_files.read(real) or ""
        if not ours and odoo_websocket_adopt_location.adopted(text):
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
    current = odoo_websocket_files.planned(plan, path)
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
    _verify_where(plan, odoo_websocket_nginx_text.listens(edited["text"], names), instance)
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


def _add_nginx_file(plan, path, text):
    current = "" if os.path.islink(path) else (odoo_websocket_files.read(path) or "")
    shown = {"diff": odoo_websocket_files.masked_diff(current, text, path)}
    odoo_websocket_files.add(plan, "nginx", path, text, shown)


def _hosts_own_map(path, wanted, plan):
    """Whether PATH, the map drop-in the formula writes whole (to hold
    WANTED), is a file of the host's own: never overwritten (the error says
    so)."""
    text = None if os.path.islink(path) else odoo_websocket_files.read(path)
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
