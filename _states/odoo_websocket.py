"""
States of the odoo_websocket formula: the nginx change set, odoo.conf options
and compose port bindings.

Each state computes the wanted bytes first and touches nothing when they
equal the live ones. nginx files are written as one change set: if the whole
tree then fails ``nginx -t``, every file of the set is put back byte for byte
(mode and owner too) and the state fails with nginx's own error lines.
"""

import os

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


def _plan_file(path, wanted):
    """Return the change for one regular file, or None when it is as wanted."""
    if os.path.islink(path):
        current = None
    else:
        current = _read_text(path)
    if current == wanted:
        return None
    return {"path": path, "kind": "file", "data": wanted, "old": current or ""}


def _plan_link(path, target):
    if os.path.islink(path) and os.readlink(path) == target:
        return None
    old = os.readlink(path) if os.path.islink(path) else None
    return {"path": path, "kind": "link", "target": target, "old": old}


def _plan_absent(path):
    if not os.path.lexists(path):
        return None
    return {"path": path, "kind": "absent", "old": _read_text(path) or ""}


def _describe(step):
    if step["kind"] == "link":
        return {"old": step["old"], "new": step["target"]}
    if step["kind"] == "absent":
        return {"removed": "duplicate $connection_upgrade map"}
    return {
        "diff": __salt__["odoo_websocket.unified_diff"](step["old"], step["data"], step["path"])
    }


def _apply_step(step):
    path = step["path"]
    if step["kind"] == "file":
        # A file being replaced keeps its mode and owner; a new one is 0644.
        mode, uid, gid = 0o644, None, None
        if os.path.isfile(path) and not os.path.islink(path):
            stat = os.stat(path)
            mode, uid, gid = stat.st_mode & 0o7777, stat.st_uid, stat.st_gid
        __salt__["odoo_websocket.replace_file"](path, step["data"], mode, uid, gid)
    elif step["kind"] == "link":
        if os.path.lexists(path) and not os.path.islink(path):
            os.unlink(path)
        __salt__["odoo_websocket.replace_symlink"](path, step["target"])
    else:
        __salt__["odoo_websocket.remove"](path)


def nginx_managed(
    name,
    site_source,
    map_source,
    map_file,
    context,
    site_link="",
    conf_file="/etc/nginx/nginx.conf",
    binary="/usr/sbin/nginx",
    reload=True,
    saltenv="base",
):
    """
    Manage the Odoo site (NAME), its sites-enabled link and the
    ``$connection_upgrade`` map drop-in as one change set.

    The map is written only when no other file of the live tree already
    defines ``$connection_upgrade`` (nginx -t would accept a duplicate and
    silently use the last one); otherwise the existing map is reused.

    name
        Path of the site file.
    site_source, map_source
        salt:// Jinja templates for the site and the map, rendered with CONTEXT.
    map_file
        Drop-in file in nginx's http context (conf.d).
    site_link
        Symlink in sites-enabled pointing at NAME; empty where conf.d is used.
    conf_file, binary
        nginx's main file (the whole tree is validated from there) and binary.
    reload
        Reload nginx gracefully after a change when it is running.
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
    plan = [_plan_file(name, site)]
    if site_link:
        plan.append(_plan_link(site_link, name))
    if others:
        where = ", ".join(f"{o['file']}:{o['line']}" for o in others)
        notes.append(f"Reusing the $connection_upgrade map already defined at {where}.")
        plan.append(_plan_absent(map_file))
    else:
        plan.append(_plan_file(map_file, map_text))
    plan = [step for step in plan if step]

    if not plan:
        ret["comment"] = " ".join(["nginx configuration is already as wanted."] + notes)
        return ret
    ret["changes"] = {step["path"]: _describe(step) for step in plan}
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = " ".join(["nginx configuration would change."] + notes)
        return ret

    if not os.access(binary, os.X_OK):
        ret["changes"] = {}
        ret["result"] = False
        ret["comment"] = f"nginx binary {binary} not found; nothing was touched."
        return ret
    before = __salt__["odoo_websocket.nginx_test"](conf_file, binary)
    if not before["ok"]:
        ret["changes"] = {}
        ret["result"] = False
        ret["comment"] = (
            "The nginx configuration was already invalid before this change; "
            "nothing was touched. Fix it first:\n"
            + __salt__["odoo_websocket.format_nginx_errors"](before["errors"])
        )
        return ret

    snapshots = [__salt__["odoo_websocket.snapshot"](step["path"]) for step in plan]
    try:
        for step in plan:
            _apply_step(step)
        after = __salt__["odoo_websocket.nginx_test"](conf_file, binary)
    except Exception as exc:  # pylint: disable=broad-except
        after = {"ok": False, "errors": [{"message": str(exc), "file": None}]}
    if not after["ok"]:
        for snap in reversed(snapshots):
            __salt__["odoo_websocket.restore_snapshot"](snap)
        ret["changes"] = {}
        ret["result"] = False
        ret["comment"] = (
            "nginx rejected the new configuration; every file was restored as it was:\n"
            + __salt__["odoo_websocket.format_nginx_errors"](after["errors"])
        )
        return ret

    if reload:
        notes.append(__salt__["odoo_websocket.nginx_reload"](conf_file, binary) + ".")
    ret["comment"] = " ".join(["nginx configuration updated and valid."] + notes)
    return ret


def odoo_conf_managed(name, options, renames=None, secret_keys=None):
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
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = " ".join([f"{name} would be updated."] + notes)
        return ret

    stat = os.stat(name)
    __salt__["odoo_websocket.replace_file"](
        name, wanted, stat.st_mode & 0o7777, stat.st_uid, stat.st_gid
    )
    ret["comment"] = " ".join([f"{name} updated."] + notes)
    return ret


def compose_ports_managed(name, service, ports, bind_address="127.0.0.1"):
    """
    Publish SERVICE's PORTS only on BIND_ADDRESS in the compose file NAME,
    keeping comments, anchors, order, owner, mode and every other service.

    name
        Path of the compose file.
    service
        The Odoo service's name.
    ports
        Container ports to bind (Odoo's HTTP and evented ports).
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
    ret["changes"] = {"diff": __salt__["odoo_websocket.unified_diff"](current, wanted, name)}
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"{name} would bind {service}'s ports {ports} to {bind_address}."
        return ret
    stat = os.stat(name)
    __salt__["odoo_websocket.replace_file"](
        name, wanted, stat.st_mode & 0o7777, stat.st_uid, stat.st_gid
    )
    ret["comment"] = f"{name}: {service}'s ports {ports} now bound to {bind_address}."
    return ret
