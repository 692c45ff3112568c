"""
The read side of the formula's backup sets: naming, listing, reading (each
saved file checked against its sha256) and diffing against the live files.

A backup set is a folder named like ``20261127T093000123456-1234-abcdef``
(UTC time, pid, random) holding ``manifest.json`` and one ``N.data`` per
saved file. Nothing else in the backup folder is ever listed or trusted.
Only the change engine (``odoo_websocket_changes``) writes sets.
"""

import hashlib
import json
import os
import re
import time
import uuid

from salt.exceptions import CommandExecutionError

__virtualname__ = "odoo_websocket_backups"

DEFAULT_BACKUP_DIR = "/var/backups/odoo_websocket"
_SET_NAME = re.compile(r"[0-9]{8}T[0-9]{12}-[0-9]+-[0-9a-f]{6}")


def __virtual__():
    return __virtualname__


def new_id():
    """
    A new set id: UTC time to the microsecond (sorts by creation, whatever the
    DST), pid and a random part.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_backups.new_id
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

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_backups.sets
    """
    # Only a folder the formula marked as its own, only names it gives sets.
    if not os.path.isfile(os.path.join(backup_dir, ".odoo_websocket")):
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

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_backups.manifest 20261127T093000123456-1234-abcdef
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

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_backups.changes 20261127T093000123456-1234-abcdef
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


def listing(backup_dir=DEFAULT_BACKUP_DIR):
    """
    The sets, newest first: id, created, label and paths.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_backups.listing
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

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_backups.diff 20261127T093000123456-1234-abcdef
    """
    secret_keys = manifest(backup_id, backup_dir)["secret_keys"]
    mask = __salt__["odoo_websocket_plan.masked"]
    diffs = {}
    for change in changes(backup_id, backup_dir):
        path = change["path"]
        old, new = mask(_text(change), secret_keys), mask(_live(path), secret_keys)
        shown = __salt__["odoo_websocket_plan.diff"](old, new, path)
        if shown:
            diffs[path] = shown
    return diffs
