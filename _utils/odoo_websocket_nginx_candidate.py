"""
A candidate nginx tree judged before anything live is touched: ``nginx -t``
on a private copy of the config folder and of the real folder of each
candidate outside it (a site in /srv, or a folder a link of the tree leads
to: the link is kept, so paths resolve as nginx resolves them and nothing
live is ever written), in a private mount namespace; then the formula's map and site
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
from odoo_websocket_check_addresses import loopback


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
            wildcard = "[::]" if address.startswith("[") else "*"  # its own family's
            # A loopback address (a status page on 127.0.0.1) no browser reaches.
            if address not in ("*", "[::]") and (wildcard, port) in own and not loopback(address):
                every = " and ".join(name for wild, name in (("*", "0.0.0.0"), ("[::]", "[::]"))
                                     if (wild, port) in own)  # fmt: skip
                found.append(
                    f"{block['file']}:{block['line']} listens on {address}:{port}: nginx hands "
                    f"connections to {address}:{port} to the server blocks listening there, so "
                    "browsers reaching Odoo at that address get that site, not the formula's: "
                    f"add {address} to nginx:listen_addresses (with {every}, to go on listening "
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
# config folder, and the real folders of candidates outside it), so the
# tree's includes and links resolve in the copies: nginx -t, then crossplane.
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
    """The live folders to stage for CHANGES, each where it really is:
    nginx's config folder, and the real folder of each candidate outside it
    (a site loaded from /srv, or reached through a link such as ``snippets ->
    /srv/shared``: the link stays, the folder it leads to is staged);
    outermost only. Every other folder nginx reads, it reads live. None when
    one cannot be staged: the root, or a folder holding the config folder
    (/etc for /etc/odoo-site.conf)."""
    root = os.path.realpath(conf_dir)
    folders = [root]
    for change in changes:
        real = os.path.realpath(os.path.dirname(os.path.abspath(change["path"])))
        if any(_within(real, known) for known in folders):
            continue
        if real == "/" or _within(root, real):
            return None
        folders = [known for known in folders if not _within(known, real)]
        folders.append(real)
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
            shutil.copytree(folder, copy, symlinks=True)  # links kept: they lead where nginx goes
        for change in changes:
            real = os.path.realpath(os.path.dirname(os.path.abspath(change["path"])))
            folder = next(f for f in folders if _within(real, f))
            staged = os.path.join(copies[folder], os.path.relpath(real, folder))
            _materialize(change, os.path.join(staged, os.path.basename(change["path"])),
                         copies[folder])  # fmt: skip
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
    except OSError as exc:  # staging itself failed (a full /tmp): nginx said nothing
        return {"ok": None, "errors": [], "output": f"could not stage the candidate: {exc}"}
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if proc.returncode == 97 or proc.stderr.startswith("unshare:"):
        return {"ok": None, "errors": [], "output": f"no private mount namespace: {proc.stderr}"}
    verdict = odoo_websocket_nginx.verdict(proc.returncode, proc.stderr.strip())
    if verdict["ok"]:
        verdict["payload"] = json.loads(proc.stdout)
    return verdict
