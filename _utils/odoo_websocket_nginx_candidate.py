"""
A candidate nginx tree judged before anything live is touched: ``nginx -t``
on a private copy of the config folder (and of the folder of each candidate
outside it, links out of the tree copied in, so nothing live is ever
written), in a private mount namespace; then the formula's map and site
loaded, no other site answering for its names, none shadowing it on one
address. The engine (``odoo_websocket_activation``) and
``odoo_websocket.stage_check`` call it.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import odoo_websocket_nginx


def site_problems(nginx, payload):
    """
    What keeps a parsed candidate tree from serving the formula's site: its
    map or site file not loaded by nginx, or another server block answering
    for its names (nginx would ignore the formula's). NGINX: the plan's nginx
    part (conf_file, map_file, site_file, names, ports, existing_site; or
    ``sites``, one such site per Odoo instance).
    Returns one problem per line, or an empty string.
    """
    loaded = odoo_websocket_nginx.loaded_files(payload)
    sites = nginx.get("sites") or [nginx]  # one per Odoo instance
    problems = [
        f"{path} is not loaded by {nginx['conf_file']} (set nginx:{key} to a file it "
        "includes, e.g. in conf.d/ where nginx.conf includes only conf.d/*.conf)"
        for key, path in [("map_file", nginx["map_file"])]
        + [("site_file", site["site_file"]) for site in sites]
        if os.path.realpath(path) not in loaded
    ]
    for site in sites:
        if site.get("existing_site") == "keep":
            continue
        for block in odoo_websocket_nginx.answering(payload, site["names"], site["ports"]):
            if block["real"] != os.path.realpath(site["site_file"]):
                problems.append(
                    f"{block['file']}:{block['line']} still answers for "
                    f"{', '.join(block['names'])}: nginx would ignore the formula's site"
                )
        problems.extend(_shadows(payload, site))
    return "\n".join(dict.fromkeys(problems))


def _shadows(payload, site):
    """Server blocks listening on one address of a port where the formula's
    SITE listens on every address: nginx hands a connection to the blocks
    listening on its exact address (and port) first, so browsers reaching
    Odoo at that address get another site, whatever the names."""
    blocks = odoo_websocket_nginx.server_blocks(payload)
    real, names = os.path.realpath(site["site_file"]), {n.lower() for n in site["names"]}
    own = {s for b in blocks if b["real"] == real and names & set(b["names"]) for s in b["sockets"]}
    found = []
    for block in blocks:
        for address, port in sorted(block["sockets"] - own):
            if address not in ("*", "[::]") and ("*", port) in own:
                found.append(
                    f"{block['file']}:{block['line']} listens on {address}:{port}: nginx hands "
                    f"connections to {address}:{port} to the server blocks listening there, so "
                    "browsers reaching Odoo at that address get that site, not the formula's: "
                    f"add {address} to nginx:listen_addresses (with 0.0.0.0, to go on listening "
                    "on every address), or move that site off the address"
                )
    return found


def candidate_check(nginx, changes):
    """
    Everything nginx says about a candidate before anything live is touched:
    the binary exists, the live tree is valid now, the whole tree with CHANGES
    passes a staged ``nginx -t``, and the formula's map and site are loaded
    with no other site answering for its names. NGINX: the plan's nginx part.
    Returns ``{"problem": str or None, "notes": [...], "staged": True, False
    or None (staging impossible here)}``.
    """
    conf_file, binary = nginx["conf_file"], nginx["binary"]
    verdict = {"problem": None, "notes": [], "staged": None}
    if not os.access(binary, os.X_OK):
        return dict(verdict, problem=f"nginx binary {binary} not found; nothing was touched.")
    before = odoo_websocket_nginx.configtest(conf_file, binary)
    if not before["ok"]:
        problem = (
            "The nginx configuration was already invalid before this change; nothing was "
            "touched. Fix it first:\n" + odoo_websocket_nginx.format_errors(before["errors"])
        )
        return dict(verdict, problem=problem)
    if not changes:
        return verdict
    staged = staged_check(changes, conf_file, binary)
    verdict["staged"] = staged["ok"]
    if staged["ok"] is False:
        verdict["problem"] = (
            "nginx would reject the new configuration (staged check on a copy of the whole "
            "tree); nothing was touched:\n" + odoo_websocket_nginx.format_errors(staged["errors"])
        )
    elif staged["ok"] is None:
        verdict["notes"].append(f"Staged check not possible ({staged['output']}).")
    else:
        verdict["notes"].append("Staged check: nginx accepts the new configuration.")
        warned = odoo_websocket_nginx.warnings(staged["output"])
        verdict["notes"].extend(f"nginx warns: {w}." for w in warned)
        problem = site_problems(nginx, staged["payload"]) if "site_file" in nginx else ""
        if problem:
            verdict["problem"] = problem + "\nNothing was touched."
    return verdict


def _within(path, folder):
    return os.path.commonpath([os.path.abspath(path), folder]) == folder


def _copy_tree(conf_dir, copy):
    """CONF_DIR copied to COPY, links kept, except a link to a folder outside
    CONF_DIR (``snippets -> /srv/shared/snippets``): that folder is copied in
    its place, so that writing the candidate never reaches the live folder
    (the copy is bound over CONF_DIR, where links inside it stay right)."""
    shutil.copytree(conf_dir, copy, symlinks=True)
    origins = {copy: os.path.realpath(conf_dir)}  # each copied folder: where it came from
    for folder, folders, _ in os.walk(copy):
        for name in folders:  # os.walk lists links to folders among folders
            path = os.path.join(folder, name)
            real = os.path.realpath(os.path.join(conf_dir, os.path.relpath(path, copy)))
            if not os.path.islink(path) or _within(real, origins[copy]):
                continue
            above = [origin for where, origin in origins.items() if _within(path, where)]
            if any(_within(origin, real) for origin in above):
                continue  # a loop of links stays a link: _materialize never writes through it
            os.unlink(path)
            shutil.copytree(real, path, symlinks=True)  # walked next: its own links too
            origins[path] = real


def _materialize(change, path, copy):
    """Write CHANGE at PATH inside the private COPY (never through a link)."""
    if not _within(os.path.realpath(os.path.dirname(path)), os.path.realpath(copy)):
        raise OSError(f"{change['path']} would be staged outside the private copy")
    if os.path.lexists(path):
        os.unlink(path)
    if change["kind"] == "link":
        os.symlink(change["target"], path)
    elif change["kind"] == "file":
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = change["data"]
        with open(path, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)


# In a private mount namespace, each copy is bound over its live folder (the
# config folder, and the folders of candidates outside it), so the tree's
# absolute includes resolve in the copies: nginx -t, then crossplane.
_STAGE_SCRIPT = (
    'while [ "$1" != "--" ]; do mount --bind "$1" "$2" || exit 97; shift 2; done; shift; '
    '"$1" -t -c "$2" || exit $?; exec "$3" -c "$4" "$2"'
)
# Paths are resolved inside the namespace, where the candidate's links exist.
_PARSE_SCRIPT = (
    "import crossplane, json, os, sys; p = crossplane.parse(sys.argv[1], catch_errors=True, "
    "check_ctx=False, check_args=False, comments=False)\n"
    "for c in p['config']: c['real'] = os.path.realpath(c['file'])\n"
    "print(json.dumps(p))"
)


def _stage_folders(changes, conf_dir):
    """The folders to stage for CHANGES: nginx's config folder, and the folder
    of each candidate outside it (a site loaded from /srv), outermost only.
    None when one cannot be staged: the root, or a folder holding the
    config folder (/etc for /etc/odoo-site.conf)."""
    folders = [conf_dir]
    for change in changes:
        folder = os.path.dirname(os.path.abspath(change["path"]))
        if any(_within(change["path"], known) for known in folders):
            continue
        if folder == "/" or _within(conf_dir, folder):
            return None
        folders = [known for known in folders if not _within(known, folder) or known == conf_dir]
        folders.append(folder)
    return folders


def staged_check(changes, conf_file="/etc/nginx/nginx.conf", binary="/usr/sbin/nginx"):
    """
    Would nginx accept the whole tree with CHANGES applied? ``nginx -t`` runs on
    a private copy of the config folder (and of the folder of each candidate
    outside it); nothing live is touched. Returns
    configtest's dict plus ``payload`` (the candidate tree parsed, live paths),
    with ``ok`` None when no private mount namespace can be made here.
    """
    conf_dir = os.path.dirname(os.path.abspath(conf_file))
    folders = _stage_folders(changes, conf_dir)
    if folders is None:
        outside = [c["path"] for c in changes if not _within(c["path"], conf_dir)]
        return {"ok": None, "errors": [], "output": f"outside {conf_dir}: {', '.join(outside)}"}
    stage = tempfile.mkdtemp(prefix="odoo_websocket-stage.")
    try:
        copies = {folder: os.path.join(stage, str(n)) for n, folder in enumerate(folders)}
        for folder, copy in copies.items():
            _copy_tree(folder, copy)
        for change in changes:
            folder = next(f for f in folders if _within(change["path"], f))
            staged = os.path.join(copies[folder], os.path.relpath(change["path"], folder))
            _materialize(change, staged, copies[folder])
        binds = [path for folder, copy in copies.items() for path in (copy, folder)]
        args = [*binds, "--", binary, conf_file, sys.executable, _PARSE_SCRIPT]
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", _STAGE_SCRIPT, "stage"]
            + args,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        return {"ok": None, "errors": [], "output": "unshare is not installed"}
    except OSError as exc:
        return {"ok": False, "errors": [], "output": f"could not stage the candidate: {exc}"}
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if proc.returncode == 97 or proc.stderr.startswith("unshare:"):
        return {"ok": None, "errors": [], "output": f"no private mount namespace: {proc.stderr}"}
    verdict = odoo_websocket_nginx.verdict(proc.returncode, proc.stderr.strip())
    if verdict["ok"]:
        verdict["payload"] = json.loads(proc.stdout)
    return verdict
