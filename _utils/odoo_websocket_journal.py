"""
What a run leaves in the backup folder for the next one: its journal, the
mark of an nginx configuration not yet live, and an operator's hold.

The journal (:py:class:`Journal`) names the run's backup set and, for each
path, what it held and will hold; it is written before the first live file
changes and dropped once the run committed or rolled back. A journal found
at the start of a run is a killed run's: :py:meth:`Journal.recovery` says
what putting it back means (the engine, ``odoo_websocket_changes``, does
it). The mark (:py:func:`activation_pending`) is left when a running nginx
was kept on the old files (``nginx:reload: false``): the next run activates.
"""

import contextlib
import json
import os
import time

from salt.exceptions import CommandExecutionError

import odoo_websocket_files

JOURNAL = "journal.json"
ACTIVATION_PENDING = "activation-pending.json"
# An operator's restore or clean, which the self-heal beacon must not undo
# until the formula is applied again (the beacon reads it: HOLD's name).
HOLD = "operator-hold.json"


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _read_json(path, torn):
    """PATH's JSON, None when absent, TORN when unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:
        return torn


def _write_json(path, data):
    odoo_websocket_files.replace_file(path, json.dumps(data), 0o600, None, None)


class Journal:
    """The journal of the runs on STORE (an ``odoo_websocket_backups.BackupStore``)."""

    def __init__(self, store):
        self.store = store
        self.path = store.path(JOURNAL)

    def read(self):
        """The journal a killed run left, ``{"torn": True}`` when unreadable, or None."""
        return _read_json(self.path, torn={"torn": True})

    def write(self, entry):
        _write_json(self.path, entry)

    def drop(self):
        os.unlink(self.path)
        odoo_websocket_files.fsync_dir(self.path)

    def set_aside(self, why):
        """A journal recovery cannot trust: kept for a person, out of the way."""
        aside = self.path + time.strftime(".%Y%m%dT%H%M%SZ.aside", time.gmtime())
        os.rename(self.path, aside)
        return f"WARNING: the journal of an interrupted run was {why}: moved aside to {aside}; " \
            "check the files it names by hand."  # fmt: skip

    def recovery(self, force=False, managed=None):
        """
        What recovering from a killed run's journal would put back, without
        touching anything: ``{"journal", "changes"}`` (to apply, in order),
        the paths ``kept`` (changed since that run: an operator's hotfix;
        FORCE puts them back too), ``unmanaged`` (outside MANAGED, the pillar
        no longer names them, but holding exactly what the run wrote: put
        back) and ``untrusted`` (outside MANAGED otherwise, or a system
        file: never written), or ``{"unusable": why}``. None without a
        journal.
        """
        left = self.read()
        if left is None:
            return None
        if left.get("torn"):
            return {"unusable": "unreadable"}
        try:
            saved = self.store.changes(left["backup"])
        except (CommandExecutionError, KeyError, OSError) as exc:
            return {"unusable": f"unusable ({exc})"}
        paths = [change["path"] for change in saved]
        outside = [] if managed is None else odoo_websocket_files.outside(paths, managed)
        found = {"journal": left, "changes": [], "kept": [], "untrusted": [], "unmanaged": [],
             "left": []}  # fmt: skip
        planned = left.get("paths", {})
        for change in reversed(saved):
            path, expected = change["path"], planned.get(change["path"], {})
            if odoo_websocket_files.unsafe_path(path):  # another user could redirect it now
                found["untrusted"].append(path)
                continue
            held = odoo_websocket_files.fingerprint(path)
            if path in outside:
                # No longer in the pillar (or a foreign journal): put back only
                # what holds exactly what the killed run wrote, never a system file.
                if odoo_websocket_files.system_path(path) or held not in (
                    expected.get("after"),
                    expected.get("before"),
                ):
                    found["untrusted"].append(path)
                    continue
                if held == expected.get("before"):
                    continue  # not reached by the run: nothing to put back
                found["unmanaged"].append(path)
            elif not (force or held in (expected.get("before"), expected.get("after"))):
                found["kept"].append(path)
                continue
            # Put back only while it is what was judged here.
            found["changes"].append(dict(change, expect=odoo_websocket_files.state(path)))
        return found


def recovered(found):
    """What a recovery of FOUND (:py:meth:`Journal.recovery`'s) did, for a person."""
    journal = found["journal"]
    note = (
        f"An interrupted run (pid {journal.get('pid')}, {journal.get('started')}) was rolled "
        f"back from backup {journal['backup']}."
    )
    if found["unmanaged"]:
        note += (
            f" Put back though the pillar no longer names them (they held what that run "
            f"wrote): {', '.join(found['unmanaged'])}."
        )
    if found["untrusted"]:
        note += f" Not restored, not a path the formula manages: {', '.join(found['untrusted'])}."
    if found["kept"]:
        # The journal is gone after this: the set is the way back for these.
        note += (
            f" Left as they are, changed since that run: {', '.join(found['kept'])} (their "
            f"versions from before it are in backup {journal['backup']}: odoo_websocket.restore "
            f"{journal['backup']} puts the whole set back)."
        )
    if found.get("left"):
        note += (
            f" Also left as that run wrote them, because the edits above were made on top of "
            f"them and nginx refuses its configuration without them: {', '.join(found['left'])}."
        )
    if found.get("refused"):
        note += " nginx still refuses its configuration (nginx -t): fix it, or restore that set."
    return note


def activation_pending(store):
    """
    The mark a run leaves when its nginx configuration could not go live
    (a running nginx kept on the old files: nginx:reload false), or None:
    ``{backup, since, why}``.
    """
    torn = {"backup": "?", "since": "?", "why": "the mark is unreadable"}
    return _read_json(store.path(ACTIVATION_PENDING), torn=torn)


def mark_pending(store, mark):
    """Leave MARK (``{backup, since, why}``) for the next run."""
    _write_json(store.path(ACTIVATION_PENDING), mark)


def clear_pending(store):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(store.path(ACTIVATION_PENDING))


def left_notes(store):
    """
    What the last runs left for the next one (a killed run's journal, an
    nginx configuration not live yet), without touching anything.
    """
    notes = []
    left = Journal(store).read()
    if left:
        notes.append(f"A killed run left a journal (pid {left.get('pid')}, backup "
                     f"{left.get('backup')}): the next real run rolls it back first.")  # fmt: skip
    mark = activation_pending(store)
    if mark:
        notes.append(f"nginx has not loaded the configuration of backup {mark['backup']} "
                     f"({mark['why']}): the next real run activates it.")  # fmt: skip
    return " ".join(notes)


def hold(store, command):
    """An operator's COMMAND (a restore, a clean) put the host as it is: the
    self-heal beacon asks for no heal until the next apply releases it."""
    _write_json(store.path(HOLD), {"command": command, "since": now()})


def release(store):
    """The formula applied again: healing may undo what a person did before."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(store.path(HOLD))
