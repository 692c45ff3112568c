"""
Where the formula's nginx sites go: each instance's own site file, or the
host's own site that already serves its names (adopted: edited in place by
odoo_websocket_adopt, as ``nginx:existing_site`` says); the mark on a site's first line, naming the
path the formula wrote it to; and the formula's earlier sites that no
instance uses any more. Reads the parsed tree and the sites' first lines;
writes nothing (the plan adds the changes).
"""

import os
import re

import odoo_websocket_nginx

MARK = "Managed by Salt (odoo_websocket formula)"


def _read(path):
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except (FileNotFoundError, IsADirectoryError):
        return None


# The first line of a site the formula writes names where it was written:
# a copy of it elsewhere (an operator's staging site) is not the formula's.
_MARKED = re.compile(rf"^# {re.escape(MARK)}: (/.*?)(?: \(local changes are overwritten\))?$")
# Site files the formula named itself before its mark named the path.
_DEFAULT_SITE = re.compile(r"odoo_websocket(?:_[a-z0-9_-]{1,32})?\.conf")


def marked(text):
    """
    Whether TEXT (a file's content) starts with the formula's mark: a file
    the formula wrote whole.
    """
    return MARK in text.split("\n", 1)[0]


def stamped(text, path):
    """
    TEXT (a rendered site) with the mark naming PATH as its first line, in
    place of the template's mark (added when a TOFS template dropped it).
    """
    lines = text.splitlines(keepends=True)
    if lines and MARK in lines[0]:
        lines = lines[1:]
    return f"# {MARK}: {path} (local changes are overwritten)\n" + "".join(lines)


def ours(path, names=(), folders=()):
    """
    Whether the site file PATH (a real path; NAMES: the paths nginx loads
    it by) is one the formula wrote: its mark names PATH or one of NAMES. A
    mark without a path (written before marks named one) counts only on a
    site file name of the formula's own (odoo_websocket.conf,
    odoo_websocket_<instance>.conf) in one of the site FOLDERS.
    """
    text = _read(path) if os.path.isfile(path) else None
    head = (text or "").splitlines()[:3]
    for line in head:
        named = _MARKED.match(line)
        if named:
            return named.group(1) in set(names) | {path} or os.path.realpath(named.group(1)) == path
    return any(MARK in line for line in head) and (
        os.path.dirname(path) in folders and bool(_DEFAULT_SITE.fullmatch(os.path.basename(path)))
    )


def _where(blocks):
    return ", ".join(f"{block['file']}:{block['line']}" for block in blocks)


def target(nginx, names, ports, payload, owned=()):
    """
    Where one instance's site goes (NGINX: its nginx settings; NAMES, PORTS:
    what it serves; PAYLOAD: the parsed tree): its own site_file, or the
    host's own site that already serves its names, adopted (edited in place,
    as ``nginx:existing_site`` says). OWNED: the real paths of the formula's
    own site files (rewritten whole, never adopted). Returns ``{"target":
    path or None (it must stop), "adopt": bool, "notes": [...], "errors":
    [...]}``.
    """
    plan = {"notes": [], "errors": [], "adopt": False}
    plan["target"] = _target(nginx, names, ports, payload, plan, owned)
    if plan["target"] and nginx["existing_site"] != "keep":
        shadow = _wildcard_shadow(names, [] if plan["adopt"] else ports, payload)
        if shadow:
            plan["errors"].append(shadow)
            plan["target"] = None
    return plan


def _wildcard(pattern, name):
    """Whether nginx's wildcard server name PATTERN (*.example.com,
    .example.com, www.example.*) matches NAME."""
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    if pattern.startswith("."):
        return name == pattern[1:] or name.endswith(pattern)
    if pattern.endswith(".*"):
        return name.startswith(pattern[:-1])
    return False


def _wildcard_shadow(names, ports, payload):
    """A server block that serves one of NAMES through a wildcard name on a
    port where no block names it exactly (PORTS: the formula's own site's):
    browsers on that port reach that block, and the formula's route is not
    theirs. Returns why, with the step, or None."""
    wanted = {name.lower() for name in names}
    blocks = odoo_websocket_nginx.server_blocks(payload)
    covered = set(ports) | {p for b in blocks if wanted & set(b["names"]) for p in b["ports"]}
    for block in blocks:
        if block["redirect"] or wanted & set(block["names"]):
            continue
        hits = [(p, n) for p in block["names"] for n in sorted(wanted) if _wildcard(p, n)]
        open_ports = sorted(block["ports"] - covered)
        if hits and open_ports:
            pattern, name = hits[0]
            return (
                f"{_where([block])} serves {name} through its server_name {pattern} on port "
                f"{', '.join(map(str, open_ports))}: browsers there reach that block, not the "
                f"websocket route the formula sets. Add {name} to that block's server_name "
                "(the formula then adopts it), or set nginx:existing_site to keep."
            )
    return None


def _target(nginx, names, ports, payload, plan, owned):
    site_file = nginx["site_file"]
    if os.path.realpath(site_file) not in owned and os.path.isfile(site_file):
        # nginx:site_file names a site of the host's own: edited in place (at
        # its target when it is a link, which stays).
        plan["adopt"] = True
        return os.path.realpath(site_file)
    wanted = {name.lower() for name in names}
    blocks = [
        block
        for block in odoo_websocket_nginx.server_blocks(payload)
        if block["real"] not in owned and wanted & set(block["names"])
    ]
    found = [block for block in blocks if set(ports) & block["ports"]]
    serving = [block for block in blocks if not block["redirect"]]
    if not found and not serving:
        return site_file
    mode, listed = nginx["existing_site"], ", ".join(names)
    if mode == "keep":
        plan["notes"].append(
            f"Kept, as nginx:existing_site asks: {_where(found or serving)} also answer(s) for "
            f"{listed}, and nginx ignores the formula's site for those names."
        )
        return site_file
    if mode == "fail":
        plan["errors"].append(
            f"{_where(found or serving)} already answer(s) for {listed}. Set "
            "nginx:existing_site to adopt (the formula edits that site's websocket proxying "
            "in place, backed up) or keep."
        )
        return None
    files = sorted({block["real"] for block in serving})
    if not files:
        plan["errors"].append(
            f"{_where(found)} answer(s) for {listed} with a redirect only, and no server block "
            f"serves {listed} on any port: set nginx:server_name to the names the redirect "
            "sends browsers to."
        )
        return None
    if len(files) > 1:
        plan["errors"].append(
            f"nginx serves {listed} from server blocks in {len(files)} files "
            f"({_where(serving)}): the formula adopts one site file. Set nginx:site_file to "
            "the one that should serve Odoo and disable the other (remove its link from "
            "sites-enabled), or merge them."
        )
        return None
    if files[0] == os.path.realpath(nginx["conf_file"]):
        plan["errors"].append(
            f"{_where(serving)} serve(s) {listed} from nginx.conf itself: the formula edits "
            "site files only. Set nginx:site_file to a new file (e.g. "
            "/etc/nginx/conf.d/odoo.conf) and move that server block there, or set "
            "nginx:existing_site to keep."
        )
        return None
    plan["adopt"] = True
    return files[0]


def stale(payload, targets, folders=()):
    """
    Sites the formula wrote earlier that no longer answer for its names
    (server_name changed, an instance removed from the pillar): loaded by
    nginx (PAYLOAD), marked as the formula's at their own path (see
    :py:func:`ours`; FOLDERS: the site folders) and none of this run's
    TARGETS. Returns their paths and the links that load them: the plan
    removes them, so their upstreams do not clash with the new sites'.
    """
    keep = {os.path.realpath(target) for target in targets}
    loaded, found = {}, []
    for block in odoo_websocket_nginx.server_blocks(payload):
        loaded.setdefault(block["real"], set()).add(block["file"])
    for real, paths in sorted(loaded.items()):
        if real in keep or not ours(real, paths, folders):
            continue
        found.extend(p for p in sorted(paths | {real}) if p == real or os.path.islink(p))
    return found
