"""
States of the odoo_websocket formula: the nginx change set, odoo.conf options
and compose port bindings.

Each state computes the wanted bytes and hands them to the change engine
(``odoo_websocket.apply_changes``): nothing is touched when they equal the
live ones; otherwise the previous files go to a backup set, nginx candidates
are validated on a staged copy of the whole tree first, and a failure puts
every file of the set back byte for byte (mode and owner too), with nginx's
own error lines in the comment.
"""

import os

from salt.exceptions import CommandExecutionError

__virtualname__ = "odoo_websocket"


def __virtual__():
    if "odoo_websocket.nginx_test" not in __salt__:
        return (False, "odoo_websocket execution module could not be loaded")
    return __virtualname__


def _ret(name):
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def _render(source, context, saltenv):
    template = __salt__["cp.get_file_str"](source, saltenv=saltenv)
    if template is False or template is None:
        raise ValueError(f"template {source} not found")
    return __salt__["file.apply_template_on_contents"](
        template, template="jinja", context=context, defaults={}, saltenv=saltenv
    )


def _read_text(path):
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _diff_of(change):
    """What a change will do to its path, for the state's changes dict."""
    path = change["path"]
    if change["kind"] == "link":
        old = os.readlink(path) if os.path.islink(path) else None
        return {"old": old, "new": change["target"]}
    if change["kind"] == "absent":
        return {"removed": "duplicate $connection_upgrade map"}
    old = "" if os.path.islink(path) else (_read_text(path) or "")
    return {"diff": __salt__["odoo_websocket.unified_diff"](old, change["data"], path)}


def _engine(changes, backup, label, nginx=None, secret_keys=()):
    """Run CHANGES through the change engine (lock, backup, journal, rollback)."""
    try:
        return __salt__["odoo_websocket.apply_changes"](
            changes,
            nginx=nginx,
            backup_dir=backup["dir"],
            keep=backup["keep"],
            lock_timeout=backup["lock_timeout"],
            test=__opts__["test"],
            label=label,
            secret_keys=secret_keys,
        )
    except CommandExecutionError as exc:  # lock timeout, unusable backup folder
        return {"result": False, "comment": f"{exc}; nothing was touched.", "changed": []}


def nginx_managed(
    name,
    site_source,
    map_source,
    map_file,
    context,
    backup,
    site_link="",
    conf_file="/etc/nginx/nginx.conf",
    binary="/usr/sbin/nginx",
    reload=True,
    restart=False,
    start=True,
    saltenv="base",
):
    """
    Manage the Odoo site (NAME), its sites-enabled link and the
    ``$connection_upgrade`` map drop-in as one change set: validated on a
    staged copy of the whole tree before anything live is touched, checked
    again live, rolled back byte for byte on failure, then nginx is reloaded
    gracefully (started when it was not running).

    The map is written only when no other file of the live tree already
    defines ``$connection_upgrade`` (nginx -t would accept a duplicate and
    silently use the last one); otherwise the existing map is reused.

    name
        Path of the site file.
    site_source, map_source
        salt:// Jinja templates for the site and the map, rendered with CONTEXT.
    map_file
        Drop-in file in nginx's http context (conf.d).
    backup
        ``{"dir": ..., "keep": N, "lock_timeout": seconds}``.
    site_link
        Symlink in sites-enabled pointing at NAME; empty where conf.d is used.
    conf_file, binary
        nginx's main file (the whole tree is validated from there) and binary.
    reload, restart, start
        After a change: reload gracefully; restart instead (only if asked);
        start nginx when it was not running.
    """
    ret = _ret(name)
    try:
        site = _render(site_source, context, saltenv)
        map_text = _render(map_source, context, saltenv)
    except Exception as exc:  # pylint: disable=broad-except
        ret["result"] = False
        ret["comment"] = f"Could not render the nginx templates: {exc}"
        return ret

    notes = []
    # The site file is about to be replaced: a map in it does not count.
    others = __salt__["odoo_websocket.connection_upgrade_maps"](conf_file, exclude=[map_file, name])
    changes = [{"path": name, "kind": "file", "data": site}]
    if site_link:
        changes.append({"path": site_link, "kind": "link", "target": name})
    if others:
        where = ", ".join(f"{o['file']}:{o['line']}" for o in others)
        notes.append(f"Reusing the $connection_upgrade map already defined at {where}.")
        changes.append({"path": map_file, "kind": "absent"})
    else:
        changes.append({"path": map_file, "kind": "file", "data": map_text})

    diffs = {change["path"]: _diff_of(change) for change in changes}
    nginx = {
        "conf_file": conf_file,
        "binary": binary,
        "reload": reload,
        "restart": restart,
        "start": start,
    }
    result = _engine(changes, backup, f"nginx site {name}", nginx=nginx)
    ret["result"] = result["result"]
    ret["changes"] = {path: diffs[path] for path in result["changed"]}
    ret["comment"] = " ".join(notes + [result["comment"]])
    return ret


def odoo_conf_managed(name, options, backup, renames=None, secret_keys=None):
    """
    Set OPTIONS (a list of ``[key, value]``) in the ``[options]`` section of
    the odoo.conf NAME, keeping every other line, comment, key order, owner and
    mode. Values of SECRET_KEYS are masked in diffs and comments.

    name
        Path of odoo.conf.
    options
        ``[[key, value], ...]``, values as strings.
    renames
        ``{old_key: new_key}``: an old spelling to rewrite (longpolling_port to
        gevent_port on Odoo 16+).
    secret_keys
        Keys whose values never appear in the output.
    backup
        ``{"dir": ..., "keep": N, "lock_timeout": seconds}``: the previous
        file is kept there (0600) and restored if the write fails.
    """
    ret = _ret(name)
    secret_keys = secret_keys or []
    current = _read_text(name)
    if current is None:
        ret["result"] = False
        ret["comment"] = (
            f"{name} does not exist: install Odoo (or point odoo:config:file at it) first"
        )
        return ret
    try:
        wanted = __salt__["odoo_conf.set_options"](current, options, renames or {})
    except Exception as exc:  # pylint: disable=broad-except
        ret["result"] = False
        ret["comment"] = f"{name} is not a valid odoo.conf, left unchanged: {exc}"
        return ret

    notes = []
    if any(key == "websocket_url" for key, _ in options):
        notes.append(
            "websocket_url written as asked, but no Odoo version reads it: the "
            "browser opens the websocket on the origin of the page it loaded."
        )
    if current == wanted:
        ret["comment"] = " ".join([f"{name} is already as wanted."] + notes)
        return ret

    mask = __salt__["odoo_conf.mask"]
    old_options = __salt__["odoo_conf.get_options"](current)
    new_options = __salt__["odoo_conf.get_options"](wanted)
    secrets = {key.lower() for key in secret_keys}
    changed = {}
    for key in sorted(set(old_options) | set(new_options)):
        if old_options.get(key) != new_options.get(key):
            old, new = old_options.get(key), new_options.get(key)
            if key in secrets:
                old = None if old is None else "********"
                new = None if new is None else "********"
            changed[key] = {"old": old, "new": new}
    ret["changes"] = {
        "options": changed,
        "diff": __salt__["odoo_websocket.unified_diff"](
            mask(current, secret_keys), mask(wanted, secret_keys), name
        ),
    }
    change = {"path": name, "kind": "file", "data": wanted}
    result = _engine([change], backup, f"odoo.conf {name}", secret_keys=secret_keys)
    ret["result"] = result["result"]
    if not result["changed"]:
        ret["changes"] = {}
    verb = "would be updated" if __opts__["test"] else "updated"
    if result["result"] is False:
        verb = "left unchanged"
    ret["comment"] = " ".join([f"{name} {verb}."] + notes + [result["comment"]])
    return ret


def compose_ports_managed(name, service, ports, backup, bind_address="127.0.0.1"):
    """
    Publish SERVICE's PORTS only on BIND_ADDRESS in the compose file NAME,
    keeping comments, anchors, order, owner, mode and every other service.

    name
        Path of the compose file.
    service
        The Odoo service's name.
    ports
        Container ports to bind (Odoo's HTTP and evented ports).
    backup
        ``{"dir": ..., "keep": N, "lock_timeout": seconds}``.
    bind_address
        Host address to publish them on (loopback, so only nginx reaches them).
    """
    ret = _ret(name)
    current = _read_text(name)
    if current is None:
        ret["result"] = False
        ret["comment"] = f"{name} does not exist: point compose:file at the Odoo compose file"
        return ret
    try:
        wanted = __salt__["odoo_compose.bind_ports"](current, service, ports, bind_address)
    except Exception as exc:  # pylint: disable=broad-except
        ret["result"] = False
        ret["comment"] = f"{name} left unchanged: {exc}"
        return ret
    if current == wanted:
        ret["comment"] = f"{service} already publishes {ports} on {bind_address} only."
        return ret
    diff = __salt__["odoo_websocket.unified_diff"](current, wanted, name)
    result = _engine([{"path": name, "kind": "file", "data": wanted}], backup, f"compose {name}")
    ret["result"] = result["result"]
    ret["changes"] = {"diff": diff} if result["changed"] else {}
    verb = "would bind" if __opts__["test"] else "now binds"
    if result["result"] is False:
        verb = "could not bind"
    ret["comment"] = (
        f"{name}: {verb} {service}'s ports {ports} to {bind_address}. {result['comment']}"
    )
    return ret
