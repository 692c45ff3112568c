"""
The formula's backup store (:py:class:`BackupStore`): one folder of backup
sets, named, written new, listed, read (each saved file checked against its
sha256), diffed against the live files, turned into the plan that puts them
back, and pruned.

A backup set is a folder named like ``20261127T093000123456-1234-abcdef``
(UTC time, pid, random) holding ``manifest.json`` and one ``N.data`` per
saved file. Nothing else in the backup folder is ever listed or trusted.
A set is only ever written new, into a folder the formula marked as its own,
and holds private (0600) copies. The same folder holds the host's lock
(``odoo_websocket_lock``) and a run's journal (``odoo_websocket_journal``).
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
MARK = ".odoo_websocket"
_SET_NAME = re.compile(r"[0-9]{8}T[0-9]{12}-[0-9]+-[0-9a-f]{6}")
# Sets written by the formula's own runs (odoo_websocket_changes.apply): what
# they saved is what the host held before the formula changed it.
APPLY_LABEL = "odoo_websocket: "


def new_id():
    """
    A new set id: UTC time to the microsecond (sorts by creation, whatever the
    DST), pid and a random part.
    """
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}"
    return f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


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


def _write_private(path, data):
    """A new 0600 file, fsynced (backups may hold odoo.conf secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


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


def _restarts_of(restarts):
    """A restore's RESTARTS (``[{"path", "what", "cmd", "cwd"}]``), each its
    path's concern: a set names paths, not concerns."""
    return [dict(r, concern=r["path"]) for r in restarts or []]


class BackupStore:
    """The backup sets in FOLDER (``backup:dir``)."""

    def __init__(self, folder=DEFAULT_BACKUP_DIR):
        self.folder = folder

    def path(self, name):
        """A file of the folder (the lock, the journal, a mark)."""
        return os.path.join(self.folder, name)

    def _set_dir(self, set_id):
        if not _SET_NAME.fullmatch(str(set_id)):
            raise CommandExecutionError(f"no backup set named {set_id!r}")
        return os.path.join(self.folder, set_id)

    def sets(self):
        """
        The formula's own set ids, oldest first: in a folder holding the
        formula's mark (``.odoo_websocket``), names of its pattern with a
        manifest.
        """
        # Only a folder the formula marked as its own, only names it gives sets.
        if not os.path.isfile(self.path(MARK)):
            return []
        return sorted(
            name
            for name in os.listdir(self.folder)
            if _SET_NAME.fullmatch(name) and os.path.isfile(self.path(f"{name}/manifest.json"))
        )

    def manifest(self, set_id):
        """A set's manifest: id, created, label, secret_keys and its files' entries."""
        try:
            with open(os.path.join(self._set_dir(set_id), "manifest.json"), "rb") as handle:
                return json.loads(handle.read())
        except FileNotFoundError:
            raise CommandExecutionError(f"no backup set {set_id!r} in {self.folder}") from None

    def changes(self, set_id):
        """
        A set as the change set that puts it back (bytes, mode, owner, link
        target or absence), every saved file checked against its sha256.
        """
        found = []
        for entry in self.manifest(set_id)["files"]:
            keys = ("path", "kind", "target", "mode", "uid", "gid")
            change = {key: entry[key] for key in keys if key in entry}
            if entry["kind"] == "file":
                with open(os.path.join(self._set_dir(set_id), entry["blob"]), "rb") as handle:
                    change["data"] = handle.read()
                if hashlib.sha256(change["data"]).hexdigest() != entry["sha256"]:
                    raise CommandExecutionError(f"backup {set_id}: {entry['path']} is corrupt")
            found.append(change)
        return found

    def write(self, paths, label, secret_keys=(), after=None):
        """
        Save what PATHS are now (bytes, mode, owner, link target or absence)
        in a new set, and return its id; AFTER: ``{path: fingerprint}`` of
        what the run will write there (clean tells the formula's own
        versions from an operator's edit by it). Only into a folder the
        formula marked as its own and nobody else can write to; nothing
        existing is touched.
        """
        unsafe = unsafe_folder(self.folder)
        if unsafe or not os.path.isfile(self.path(MARK)):
            raise CommandExecutionError(
                f"{self.folder} is not the formula's backup folder: {unsafe}"
            )
        set_id = new_id()
        folder = self.path(set_id)
        os.mkdir(folder, 0o700)
        try:
            entries = []
            for index, path in enumerate(paths):
                snap = odoo_websocket_files.snapshot(path)
                entry = {key: value for key, value in snap.items() if key != "data"}
                if snap["kind"] == "file":
                    entry["blob"] = f"{index}.data"
                    entry["sha256"] = hashlib.sha256(snap["data"]).hexdigest()
                    _write_private(os.path.join(folder, entry["blob"]), snap["data"])
                entries.append(entry)
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            manifest = {"id": set_id, "created": created, "label": label,
                        "secret_keys": sorted(set(secret_keys)), "files": entries,
                        "after": dict(after or {})}  # fmt: skip
            _write_private(os.path.join(folder, "manifest.json"), json.dumps(manifest).encode())
            odoo_websocket_files.fsync_dir(os.path.join(folder, "manifest.json"))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return set_id

    def drop(self, set_id):
        """Delete one set (a run that stopped before touching anything)."""
        shutil.rmtree(self._set_dir(set_id), ignore_errors=True)

    def prune(self, keep=10):
        """
        Delete the formula's own sets but the newest KEEP (nothing else in the
        folder is ever listed). Returns the deleted ids.
        """
        found = self.sets()
        old = found[: max(0, len(found) - keep)]
        for name in old:
            self.drop(name)
        return old

    def listing(self):
        """The sets, newest first: id, created, label and paths."""
        result = []
        for name in reversed(self.sets()):
            found = self.manifest(name)
            paths = [entry["path"] for entry in found["files"]]
            result.append({"id": name, "created": found["created"], "label": found["label"],
                           "paths": paths})  # fmt: skip
        return result

    def diff(self, set_id):
        """
        Unified diffs from a set to the live files (what restoring it would
        undo), secrets masked.
        """
        secret_keys = self.manifest(set_id)["secret_keys"]
        mask = odoo_websocket_files.masked
        diffs = {}
        for change in self.changes(set_id):
            path = change["path"]
            old, new = mask(_text(change), secret_keys), mask(_live(path), secret_keys)
            shown = odoo_websocket_files.diff(old, new, path)
            if shown:
                diffs[path] = shown
        return diffs

    def restore_plan(self, set_id, restarts=None, managed=None):
        """
        A set as the engine's plan that puts it back: its files (a file one
        of RESTARTS follows, ``[{"path", "what", "cmd", "cwd"}]``, is that
        restart's concern) and its secret keys; ``errors`` when it names a
        path outside MANAGED (``odoo_websocket_concerns.managed_paths``).
        """
        restarts = _restarts_of(restarts)
        saved = self.changes(set_id)
        for change in saved:
            if any(r["path"] == change["path"] for r in restarts):
                change["concern"] = change["path"]
        plan = {"changes": saved, "restarts": restarts, "errors": [],
                "secret_keys": self.manifest(set_id)["secret_keys"]}  # fmt: skip
        _refuse_outside(plan, managed, f"Backup {set_id} names")
        return plan

    def original_plan(self, restarts=None, managed=None):
        """
        The plan that puts the host back as it was before the formula: for
        each path any of the formula's runs changed, what the oldest kept set
        of a run (label ``odoo_websocket: ...``; restores' and cleans' sets
        are skipped) saved, so a path the formula created (its map, site,
        link) is removed and one it adopted or edited comes back. As
        :py:meth:`restore_plan` otherwise.
        """
        restarts = _restarts_of(restarts)
        plan = {"changes": [], "restarts": restarts, "errors": [], "secret_keys": [], "notes": []}
        used = []
        for set_id in self.sets():  # oldest first
            found = self.manifest(set_id)
            if not str(found.get("label", "")).startswith(APPLY_LABEL):
                continue
            fresh = [c for c in self.changes(set_id)
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
        for change in plan["changes"]:
            if self._edited_since(change["path"]):
                plan["errors"].append(_edited(change, plan["secret_keys"]))
        if used:
            plan["notes"].append(
                f"Putting back what the formula found, from backup {', '.join(used)}."
            )
        else:
            plan["notes"].append(
                f"No backup set of a formula run in {self.folder}: nothing to put back."
            )
        _refuse_outside(plan, managed, "The backup sets name")
        return plan

    def _edited_since(self, path):
        """Whether PATH holds, or held between two of the formula's runs,
        something none of them wrote (an operator's edit, which putting the
        oldest copy back would revert). Unknown (a set of a formula before
        0.2.0 records no "after"): False, as clean always did."""
        known = None  # what the formula's runs left PATH holding, so far
        for set_id in self.sets():
            found = self.manifest(set_id)
            entry = next((e for e in found["files"] if e["path"] == path), None)
            if entry is None:
                continue
            if path not in found.get("after", {}):
                return False
            before = _fingerprint(entry)
            if known is not None and before not in known:
                return True
            known = {before, found["after"][path]}  # a rolled-back run left "before"
        return known is not None and odoo_websocket_files.fingerprint(path) not in known


def _fingerprint(entry):
    """A manifest entry's fingerprint, as odoo_websocket_files.fingerprint
    gives a path's (a file by the sha256 the manifest recorded)."""
    if entry["kind"] == "file":
        return "sha256:" + entry["sha256"]
    return odoo_websocket_files.fingerprint(entry)


def _edited(change, secret_keys):
    """Why clean refuses CHANGE's path, with what it would undo (masked)."""
    path = change["path"]
    shown = odoo_websocket_files.masked_diff(_text(change), _live(path), path, secret_keys)
    return (
        f"{path} changed since the formula wrote it (an operator's edit?): putting back what "
        f"the formula found would revert that too, so clean refuses. It would undo:\n{shown}"
        "Take the formula's parts out by hand, or odoo_websocket.restore the set you choose."
    )


def _refuse_outside(plan, managed, subject):
    """The PLAN's errors name its paths outside MANAGED (None: all trusted)."""
    paths = [change["path"] for change in plan["changes"]]
    outside = [] if managed is None else odoo_websocket_files.outside(paths, managed)
    if outside:
        plan["errors"].append(f"{subject} paths the formula does not manage: "
                              + ", ".join(outside) + _REMOVED)  # fmt: skip
