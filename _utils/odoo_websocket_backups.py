"""
The formula's backup sets: naming, writing new ones, listing, reading (each
saved file checked against its sha256), diffing against the live files and
pruning old ones.

A backup set is a folder named like ``20261127T093000123456-1234-abcdef``
(UTC time, pid, random) holding ``manifest.json`` and one ``N.data`` per
saved file. Nothing else in the backup folder is ever listed or trusted.
A set is only ever written new, into a folder the formula marked as its own,
and holds private (0600) copies. The change engine (``odoo_websocket_changes``)
writes the lock and the journal; this module also holds what the engine
reads: snapshots and fingerprints of live paths, the folder check and a
killed run's journal.
"""

import hashlib
import json
import os
import re
import shutil
import time
import uuid

from salt.exceptions import CommandExecutionError

import odoo_websocket_files

# Why a path of a formula's set may no longer be managed, and the remedy.
_REMOVED = (
    " (an instance since removed from the pillar? put it back in the pillar to restore or "
    "clean its files); nothing was touched."
)

DEFAULT_BACKUP_DIR = "/var/backups/odoo_websocket"
JOURNAL = "journal.json"
MARK = ".odoo_websocket"
ACTIVATION_PENDING = "activation-pending.json"
_SET_NAME = re.compile(r"[0-9]{8}T[0-9]{12}-[0-9]+-[0-9a-f]{6}")


def new_id():
    """
    A new set id: UTC time to the microsecond (sorts by creation, whatever the
    DST), pid and a random part.
    """
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}"
    return f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _set_dir(backup_dir, set_id):
    if not _SET_NAME.fullmatch(str(set_id)):
        raise CommandExecutionError(f"no backup set named {set_id!r}")
    return os.path.join(backup_dir, set_id)


def sets(backup_dir=DEFAULT_BACKUP_DIR):
    """
    The formula's own set ids, oldest first: in a folder holding the formula's
    mark (``.odoo_websocket``), names of its pattern with a manifest.
    """
    # Only a folder the formula marked as its own, only names it gives sets.
    if not os.path.isfile(os.path.join(backup_dir, MARK)):
        return []
    return sorted(
        name
        for name in os.listdir(backup_dir)
        if _SET_NAME.fullmatch(name)
        and os.path.isfile(os.path.join(backup_dir, name, "manifest.json"))
    )


def manifest(backup_id, backup_dir=DEFAULT_BACKUP_DIR):
    """
    A set's manifest: id, created, label, secret_keys and its files' entries.
    """
    try:
        with open(os.path.join(_set_dir(backup_dir, backup_id), "manifest.json"), "rb") as handle:
            return json.loads(handle.read())
    except FileNotFoundError:
        raise CommandExecutionError(f"no backup set {backup_id!r} in {backup_dir}") from None


def changes(backup_id, backup_dir=DEFAULT_BACKUP_DIR):
    """
    A set as the change set that puts it back (bytes, mode, owner, link target
    or absence), every saved file checked against its sha256.
    """
    found = []
    for entry in manifest(backup_id, backup_dir)["files"]:
        keys = ("path", "kind", "target", "mode", "uid", "gid")
        change = {key: entry[key] for key in keys if key in entry}
        if entry["kind"] == "file":
            with open(os.path.join(_set_dir(backup_dir, backup_id), entry["blob"]), "rb") as handle:
                change["data"] = handle.read()
            if hashlib.sha256(change["data"]).hexdigest() != entry["sha256"]:
                raise CommandExecutionError(f"backup {backup_id}: {entry['path']} is corrupt")
        found.append(change)
    return found


def _write_private(path, data):
    """A new 0600 file, fsynced (backups may hold odoo.conf secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write(backup_dir, paths, label, secret_keys=()):
    """
    Save what PATHS are now (bytes, mode, owner, link target or absence) in a
    new set, and return its id. Only into a folder the formula marked as its
    own and nobody else can write to; nothing existing is touched.
    """
    unsafe = unsafe_folder(backup_dir)
    if unsafe or not os.path.isfile(os.path.join(backup_dir, MARK)):
        raise CommandExecutionError(f"{backup_dir} is not the formula's backup folder: {unsafe}")
    set_id = new_id()
    folder = os.path.join(backup_dir, set_id)
    os.mkdir(folder, 0o700)
    try:
        entries = []
        for index, path in enumerate(paths):
            snap = snapshot(path)
            entry = {key: value for key, value in snap.items() if key != "data"}
            if snap["kind"] == "file":
                entry["blob"] = f"{index}.data"
                entry["sha256"] = hashlib.sha256(snap["data"]).hexdigest()
                _write_private(os.path.join(folder, entry["blob"]), snap["data"])
            entries.append(entry)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest = {"id": set_id, "created": created, "label": label,
                    "secret_keys": sorted(set(secret_keys)), "files": entries}  # fmt: skip
        _write_private(os.path.join(folder, "manifest.json"), json.dumps(manifest).encode())
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return set_id


def prune(backup_dir=DEFAULT_BACKUP_DIR, keep=10):
    """
    Delete the formula's own sets but the newest KEEP (nothing else in the
    folder is ever listed). Returns the deleted ids.
    """
    found = sets(backup_dir)
    old = found[: max(0, len(found) - keep)]
    for name in old:
        shutil.rmtree(os.path.join(backup_dir, name), ignore_errors=True)
    return old


def restore_plan(backup_id, backup_dir=DEFAULT_BACKUP_DIR, restarts=None, managed=None):
    """
    A set as the engine's plan that puts it back: its files (a file one of
    RESTARTS follows, ``[{"path", "what", "cmd", "cwd"}]``, is that
    restart's concern) and its secret keys; ``errors`` when it names a path
    outside MANAGED (``odoo_websocket_plan.managed_paths``).
    """
    restarts = [dict(r, concern=r["path"]) for r in restarts or []]
    saved = changes(backup_id, backup_dir)
    for change in saved:
        if any(r["path"] == change["path"] for r in restarts):
            change["concern"] = change["path"]
    plan = {"changes": saved, "restarts": restarts, "errors": [],
            "secret_keys": manifest(backup_id, backup_dir)["secret_keys"]}  # fmt: skip
    paths = [change["path"] for change in saved]
    outside = [] if managed is None else odoo_websocket_files.outside(paths, managed)
    if outside:
        plan["errors"].append(f"Backup {backup_id} names paths the formula does not manage: "
                              + ", ".join(outside) + _REMOVED)  # fmt: skip
    return plan


# Sets written by the formula's own runs (odoo_websocket_changes.apply): what
# they saved is what the host held before the formula changed it.
APPLY_LABEL = "odoo_websocket: "


def original_plan(backup_dir=DEFAULT_BACKUP_DIR, restarts=None, managed=None):
    """
    The plan that puts the host back as it was before the formula: for each
    path any of the formula's runs changed, what the oldest kept set of a run
    (label ``odoo_websocket: ...``; restores' and cleans' sets are skipped)
    saved, so a path the formula created (its map, site, link) is removed and
    one it adopted or edited comes back. As :py:func:`restore_plan` otherwise.
    """
    restarts = [dict(r, concern=r["path"]) for r in restarts or []]
    plan = {"changes": [], "restarts": restarts, "errors": [], "secret_keys": [], "notes": []}
    used = []
    for set_id in sets(backup_dir):  # oldest first
        found = manifest(set_id, backup_dir)
        if not str(found.get("label", "")).startswith(APPLY_LABEL):
            continue
        fresh = [c for c in changes(set_id, backup_dir)
                 if c["path"] not in {done["path"] for done in plan["changes"]}]  # fmt: skip
        if fresh:
            used.append(set_id)
            plan["changes"].extend(fresh)
            plan["secret_keys"] = sorted(set(plan["secret_keys"]) | set(found["secret_keys"]))
    for change in plan["changes"]:
        # Every change names a concern: due_restarts skips a restart whose
        # "unless" (None when unset) is among the changes' concerns.
        follows = any(r["path"] == change["path"] for r in restarts)
        change["concern"] = change["path"] if follows else "nginx"
    if used:
        plan["notes"].append(f"Putting back what the formula found, from backup {', '.join(used)}.")
    else:
        plan["notes"].append(
            f"No backup set of a formula run in {backup_dir}: nothing to put back."
        )
    paths = [change["path"] for change in plan["changes"]]
    outside = [] if managed is None else odoo_websocket_files.outside(paths, managed)
    if outside:
        plan["errors"].append("The backup sets name paths the formula does not manage: "
                              + ", ".join(outside) + _REMOVED)  # fmt: skip
    return plan


def listing(backup_dir=DEFAULT_BACKUP_DIR):
    """
    The sets, newest first: id, created, label and paths.
    """
    result = []
    for name in reversed(sets(backup_dir)):
        found = manifest(name, backup_dir)
        paths = [entry["path"] for entry in found["files"]]
        result.append({"id": name, "created": found["created"], "label": found["label"],
                       "paths": paths})  # fmt: skip
    return result


def _text(change):
    if change["kind"] == "file":
        return change["data"].decode("utf-8", "replace")
    return f"-> {change['target']}\n" if change["kind"] == "link" else ""


def _live(path):
    if os.path.islink(path):
        return f"-> {os.readlink(path)}\n"
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except (FileNotFoundError, IsADirectoryError):
        return ""


def diff(backup_id, backup_dir=DEFAULT_BACKUP_DIR):
    """
    Unified diffs from a set to the live files (what restoring it would undo),
    secrets masked.
    """
    secret_keys = manifest(backup_id, backup_dir)["secret_keys"]
    mask = odoo_websocket_files.masked
    diffs = {}
    for change in changes(backup_id, backup_dir):
        path = change["path"]
        old, new = mask(_text(change), secret_keys), mask(_live(path), secret_keys)
        shown = odoo_websocket_files.diff(old, new, path)
        if shown:
            diffs[path] = shown
    return diffs


def snapshot(path):
    """
    What PATH is now: absent, a link and its target, or a file with its
    bytes, mode and owner.
    """
    if os.path.islink(path):
        return {"path": path, "kind": "link", "target": os.readlink(path)}
    if not os.path.exists(path):
        return {"path": path, "kind": "absent"}
    stat = os.stat(path)
    with open(path, "rb") as handle:
        data = handle.read()
    return {"path": path, "kind": "file", "data": data, "mode": stat.st_mode & 0o7777,
            "uid": stat.st_uid, "gid": stat.st_gid}  # fmt: skip


def fingerprint(change_or_path):
    """
    What a path holds (or a change would make it hold), in a few bytes:
    absent, a link and its target, or the sha256 of a file's bytes.
    """
    if isinstance(change_or_path, str):
        change_or_path = snapshot(change_or_path)
    kind = change_or_path["kind"]
    if kind == "file":
        data = change_or_path["data"]
        data = data.encode("utf-8") if isinstance(data, str) else data
        return "sha256:" + hashlib.sha256(data).hexdigest()
    return f"link:{change_or_path['target']}" if kind == "link" else "absent"


def unsafe_folder(backup_dir=DEFAULT_BACKUP_DIR):
    """
    Why BACKUP_DIR cannot hold the lock, journal and backups, or None: it and
    every parent must be owned by root (or this user) and writable by no one
    else (a sticky parent like /tmp is fine), and it may not be a link.
    """
    path = os.path.abspath(backup_dir)
    if os.path.islink(path):
        return f"{path} is a symbolic link"
    while True:
        stat = os.lstat(path)
        if stat.st_uid not in (0, os.geteuid()):
            return f"{path} is owned by uid {stat.st_uid}, not root"
        sticky_parent = path != os.path.abspath(backup_dir) and stat.st_mode & 0o1000
        if stat.st_mode & 0o022 and not sticky_parent:
            return f"{path} is writable by group or others (mode {stat.st_mode & 0o7777:o})"
        if path == os.path.dirname(path):
            return None
        path = os.path.dirname(path)


def _read_json(path, torn):
    """PATH's JSON, None when absent, TORN when unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:
        return torn


def journal(backup_dir=DEFAULT_BACKUP_DIR):
    """
    The journal a killed run left, ``{"torn": True}`` when unreadable, or None.
    """
    return _read_json(os.path.join(backup_dir, JOURNAL), torn={"torn": True})


def activation_pending(backup_dir=DEFAULT_BACKUP_DIR):
    """
    The mark a run leaves when its nginx configuration could not go live
    (a running nginx kept on the old files: nginx:reload false), or None:
    ``{backup, since, why}``.
    """
    torn = {"backup": "?", "since": "?", "why": "the mark is unreadable"}
    return _read_json(os.path.join(backup_dir, ACTIVATION_PENDING), torn=torn)


def pending(backup_dir=DEFAULT_BACKUP_DIR):
    """
    What the last runs left for the next one (a killed run's journal, an
    nginx configuration not live yet), without touching anything.
    """
    notes = []
    left = journal(backup_dir)
    if left:
        notes.append(f"A killed run left a journal (pid {left.get('pid')}, backup "
                     f"{left.get('backup')}): the next real run rolls it back first.")  # fmt: skip
    mark = activation_pending(backup_dir)
    if mark:
        notes.append(f"nginx has not loaded the configuration of backup {mark['backup']} "
                     f"({mark['why']}): the next real run activates it.")  # fmt: skip
    return " ".join(notes)


def recovery(backup_dir=DEFAULT_BACKUP_DIR, force=False, managed=None):
    """
    What recovering from a killed run's journal would put back, without
    touching anything: ``{"journal", "changes"}`` (to apply, in order), the
    paths ``kept`` (changed since that run: an operator's hotfix; FORCE puts
    them back too) and ``untrusted`` (outside MANAGED), or ``{"unusable":
    why}``. None without a journal.
    """
    left = journal(backup_dir)
    if left is None:
        return None
    if left.get("torn"):
        return {"unusable": "unreadable"}
    try:
        saved = changes(left["backup"], backup_dir)
    except (CommandExecutionError, KeyError, OSError) as exc:
        return {"unusable": f"unusable ({exc})"}
    paths = [change["path"] for change in saved]
    outside = odoo_websocket_files.outside
    found = {"journal": left, "changes": [], "kept": [],
             "untrusted": [] if managed is None else outside(paths, managed)}  # fmt: skip
    planned = left.get("paths", {})
    for change in reversed(saved):
        if change["path"] in found["untrusted"]:
            continue
        expected = planned.get(change["path"], {})
        if force or fingerprint(change["path"]) in (expected.get("before"), expected.get("after")):
            found["changes"].append(change)
        else:
            found["kept"].append(change["path"])
    return found
