"""
The change engine of the odoo_websocket formula: one host, one transaction.

Modelled on certbot's reverter. A run takes the host's lock, rolls back what a
killed run left (its journal), plans every change (compose ports, odoo.conf,
nginx map and site, an adopted site), validates all of them, saves what they
replace in one backup set, writes a journal naming it, swaps the files in,
restarts Odoo only when its files changed, reloads nginx, and proves the
websocket works. A failure at any step puts every file of the set back and
restarts and reloads again, so the host serves its old configuration.

Every function that writes a live file is here, and private: operators
reach backups and restore through ``odoo_websocket.*``, states through
:py:func:`apply`. The backup sets themselves (written new, never over
anything; read; pruned) live in ``odoo_websocket_backups``; how a change
goes live (checks, restarts, reload, the websocket check) in
``odoo_websocket_activation``.
"""

import contextlib
import functools
import json
import os
import shutil
import time

from salt.exceptions import CommandExecutionError

import odoo_websocket_activation
import odoo_websocket_backups
import odoo_websocket_files
import odoo_websocket_lock
import odoo_websocket_nginx_service
import odoo_websocket_plan
from odoo_websocket_backups import DEFAULT_BACKUP_DIR

# -- files: atomic writes (private) -------------------------------------------


# -- lock and journal ---------------------------------------------------------


@contextlib.contextmanager
def _locked(backup_dir, timeout, dry=False):
    """The host's lock (odoo_websocket_lock), held for the block."""
    fd = odoo_websocket_lock.acquire(backup_dir, timeout, dry=dry)
    try:
        yield
    finally:
        odoo_websocket_lock.release(fd)


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _restore_set(backup_dir, set_id):
    for change in reversed(odoo_websocket_backups.changes(set_id, backup_dir)):
        odoo_websocket_files.apply_change(change)


def _journal(backup_dir):
    return os.path.join(backup_dir, "journal.json")


def _write_journal(backup_dir, journal):
    odoo_websocket_files.replace_file(_journal(backup_dir), json.dumps(journal), 0o600, None, None)


def _drop_journal(backup_dir):
    os.unlink(_journal(backup_dir))
    odoo_websocket_files.fsync_dir(_journal(backup_dir))


def _set_aside(backup_dir, why):
    """A journal recovery cannot trust: kept for a person, out of the way."""
    aside = _journal(backup_dir) + time.strftime(".%Y%m%dT%H%M%SZ.aside", time.gmtime())
    os.rename(_journal(backup_dir), aside)
    return f"WARNING: the journal of an interrupted run was {why}: moved aside to {aside}; " \
        "check the files it names by hand."  # fmt: skip


def _recover_locked(backup_dir, nginx=None, force=False, managed=None):
    """Finish what a dead run left: put back, from its backup set, each path
    that still holds what the run wrote (or had not reached yet); a path
    changed since (an operator's hotfix) is reported and left, unless FORCE.
    NGINX (the caller's settings, never the journal's) is reloaded. Returns a
    note and the concerns the dead run had restarted (the caller restarts
    them again: it knows their commands from the pillar)."""
    found = odoo_websocket_backups.recovery(backup_dir, force=force, managed=managed)
    if found is None:
        return "", []
    if "unusable" in found:
        return _set_aside(backup_dir, found["unusable"]), []
    for change in found["changes"]:
        odoo_websocket_files.apply_change(change)
    if nginx and odoo_websocket_nginx_service.pid(nginx["conf_file"]) is not None:
        odoo_websocket_activation.reload(nginx, old=True)
    _drop_journal(backup_dir)
    journal = found["journal"]
    note = (
        f"An interrupted run (pid {journal.get('pid')}, {journal.get('started')}) was rolled "
        f"back from backup {journal['backup']}."
    )
    if found["untrusted"]:
        note += f" Not restored, not a path the formula manages: {', '.join(found['untrusted'])}."
    if found["kept"]:
        note += (
            f" Left as they are, changed since that run: {', '.join(found['kept'])} (recover "
            "force=True puts them back too)."
        )
    return note, journal.get("restarted", [])


# -- the transaction -----------------------------------------------------------


class Transaction:
    """
    One run's changes as a unit, in the spirit of certbot's Reverter: the
    PLAN (``odoo_websocket_plan.build``'s, or a restore's) checked, backed up
    in one set, journaled, written, made live (restarts, nginx reload) and
    verified; then committed (journal dropped, old sets pruned to KEEP), or
    rolled back whole (every file restored, restarts run again, nginx
    reloaded onto the old files). Runs under the host's lock (``_locked``);
    a run killed midway is rolled back from its journal by the next one
    (``_recover_locked``).
    """

    def __init__(self, plan, backup_dir, keep, test=False, label=""):
        self.plan, self.backup_dir, self.keep = plan, backup_dir, keep
        self.test, self.label = test, label
        self.notes = list(plan.get("notes", []))
        self.ret = {"result": True, "comment": "", "changed": [], "backup": None, "verdict": None}
        self.staged = None  # the staged nginx -t verdict (None: not possible here)
        self.nginx_changed = False  # whether the changes touch nginx's files
        self.pending = None  # an earlier run's nginx configuration not yet live
        self.set_id = None  # this run's backup set (or the pending run's)
        self.journal = None
        self.restarted = []  # the restarts run so far: run again on a rollback
        self.nginx_touched = False  # nginx reloaded or started: again on a rollback
        self.verdict = None
        # The tests' seam: called with the name of each step of the critical
        # section (backup, journal, write-<n>, validated, restarted,
        # activated), where a test crashes or freezes the run. None in use.
        self.fault_seam = None

    def _step(self, step):
        if self.fault_seam is not None:
            self.fault_seam(step)

    def _failed(self, message):
        self.ret["result"] = False
        self.ret["comment"] = " ".join(self.notes + [message])
        return self.ret

    def run(self):
        """Validate, back up, write, activate and verify the plan as one unit.
        Returns ``{result, comment, changed, backup, verdict}``."""
        plan, ret, test = self.plan, self.ret, self.test
        if plan.get("errors"):
            return self._failed("Nothing was changed:\n" + "\n".join(plan["errors"]))
        changes = [change for change in plan["changes"] if odoo_websocket_files.differs(change)]
        if plan.get("nginx"):
            self.pending = odoo_websocket_backups.activation_pending(self.backup_dir)
        checked = odoo_websocket_activation.precheck(plan, changes)
        self.notes.extend(checked["notes"])
        if checked["problem"]:
            return self._failed(checked["problem"])
        self.staged, self.nginx_changed = checked["staged"], checked["nginx_changed"]
        self.set_id = (self.pending or {}).get("backup")
        ret["changed"] = [change["path"] for change in changes]
        if changes and not test:
            return self._commit(changes)
        pending = self.pending
        if pending and not test:  # nothing to write, but an earlier run's nginx is not live
            since = f"(since {pending['since']}: {pending['why']})"
            self.notes.append(f"nginx had not loaded the configuration of backup "
                              f"{pending['backup']} {since}.")  # fmt: skip
            try:
                self._activate_nginx()
            except CommandExecutionError as exc:
                return self._failed(str(exc))
        elif not changes:
            self.notes.append("Nothing to change.")
        verdict = ret["verdict"] = odoo_websocket_activation.verify(
            plan, wait=bool(pending) and not test
        )
        if verdict:
            self.notes.append(
                ("Now: " if changes else "") + odoo_websocket_activation.summary(verdict)
            )
        if test and changes:
            ret["result"] = None
        elif verdict and not verdict["ok"]:
            ret["result"] = False
        ret["comment"] = " ".join(self.notes)
        return ret

    def _commit(self, changes):
        plan, ret, backup_dir = self.plan, self.ret, self.backup_dir
        try:
            set_id = odoo_websocket_backups.write(
                backup_dir, ret["changed"], self.label, plan.get("secret_keys", ())
            )
        except OSError as exc:
            ret["changed"] = []
            return self._failed(f"Could not write the backup, nothing was touched: {exc}")
        ret["backup"] = self.set_id = set_id
        self._step("backup")
        fingerprint = odoo_websocket_backups.fingerprint
        journal = {
            "backup": set_id,
            "pid": os.getpid(),
            "started": _now(),
            # What each path held and will hold: recovery restores only those two.
            "paths": {c["path"]: {"before": fingerprint(c["path"]), "after": fingerprint(c)}
                      for c in changes},
        }  # fmt: skip
        try:
            _write_journal(backup_dir, journal)
        except OSError as exc:
            shutil.rmtree(os.path.join(backup_dir, set_id), ignore_errors=True)
            ret["changed"], ret["backup"] = [], None
            return self._failed(f"Could not write the journal, nothing was touched: {exc}")
        self._step("journal")
        self.journal = journal
        problem = self._go_live(changes)
        ret["verdict"] = self.verdict
        if problem:
            ret["changed"] = []
            try:
                restored = self._roll_back()
            except Exception as exc:  # pylint: disable=broad-except
                # The journal stays: the next run (or odoo_websocket.recover) retries.
                return self._failed(f"The change failed: {problem}\nROLLBACK FAILED: {exc}; "
                                    "the journal is kept, run odoo_websocket.recover")  # fmt: skip
            _drop_journal(backup_dir)
            return self._failed(f"The change failed: {problem}\n{restored}")
        if self.verdict:
            self.notes.append(odoo_websocket_activation.summary(self.verdict))
            ret["result"] = self.verdict["ok"]
        _drop_journal(backup_dir)
        odoo_websocket_backups.prune(backup_dir, self.keep)
        self.notes.append(f"Backup: {set_id}.")
        ret["comment"] = " ".join(self.notes)
        return ret

    def _go_live(self, changes):
        """Write, check live, restart what changed, reload nginx, verify.
        Returns a problem (the caller rolls everything back) or None."""
        try:
            return self._go_live_steps(changes)
        except Exception as exc:  # pylint: disable=broad-except
            # Whatever broke (a timeout, a full disk), the host goes back as it was.
            return f"{type(exc).__name__}: {exc}"

    def _go_live_steps(self, changes):
        plan = self.plan
        for index, change in enumerate(changes):
            odoo_websocket_files.apply_change(change)
            self._step(f"write-{index}")
        problem = odoo_websocket_activation.live_check(plan, self.staged)
        if problem:
            return problem
        self._step("validated")
        try:
            for restart in odoo_websocket_activation.due_restarts(plan, changes):
                self.restarted.append(restart)
                # Recorded first: a run killed mid-restart is restarted again on
                # recovery, that instance's only.
                self.journal["restarted"] = [
                    {"concern": r["concern"], "instance": r.get("instance")} for r in self.restarted
                ]
                _write_journal(self.backup_dir, self.journal)
                self.notes.append(odoo_websocket_activation.restart(restart))
            self._step("restarted")
            if plan.get("nginx") and (self.nginx_changed or self.pending):
                self.nginx_touched = True
                live = self._activate_nginx()
                self._step("activated")
                if not live:
                    return None
        except CommandExecutionError as exc:
            return str(exc)
        verdict = self.verdict = odoo_websocket_activation.verify(plan, wait=True)
        if verdict and not verdict["ok"] and plan["verify"]["rollback"]:
            summary = odoo_websocket_activation.summary(verdict)
            return "The websocket check failed after the change: " + summary
        return None

    def _activate_nginx(self):
        """Reload (or start) nginx onto the files now live. False when the
        settings keep it from going live; a running nginx left on the old
        files is marked pending, so that the next run activates it instead
        of finding nothing to do."""
        activated = odoo_websocket_activation.reload(self.plan["nginx"])
        self.notes.append(activated["comment"])
        path = os.path.join(self.backup_dir, odoo_websocket_backups.ACTIVATION_PENDING)
        if not activated["pending"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        else:
            old = self.pending or {}
            since = old["since"] if old.get("backup") == self.set_id else _now()
            mark = {"backup": self.set_id, "since": since, "why": activated["comment"]}
            odoo_websocket_files.replace_file(path, json.dumps(mark), 0o600, None, None)
        if not activated["live"]:
            self.notes.append(
                "Not verified: the new nginx configuration is not live"
                + (" (the next run activates it)." if activated["pending"] else ".")
            )
        return activated["live"]

    def _roll_back(self):
        """Put every file of the set back, then restart and reload onto it."""
        plan, set_id = self.plan, self.set_id
        _restore_set(self.backup_dir, set_id)
        lines = [f"Every file of the run was restored from backup {set_id}."]
        for restart in self.restarted:
            try:
                odoo_websocket_activation.restart(restart)
                lines.append(f"{restart['what']} again, onto the old configuration.")
            except CommandExecutionError as exc:
                lines.append(f"{exc} (while restoring)")
        if self.nginx_touched:
            try:
                lines.append(odoo_websocket_activation.reload(plan["nginx"], old=True)["comment"])
            except CommandExecutionError as exc:
                # The restored files are what nginx refused before this run too
                # (e.g. a neighbour's site holding a port): it keeps serving what
                # it served; the files are back, so no journal is kept.
                lines.append(f"{exc} (the restored configuration; nginx keeps serving what it "
                             "served before this run).")  # fmt: skip
        if self.verdict:
            after = odoo_websocket_activation.verify(plan, wait=True, timeout=10)
            lines.append("After the restore: " + odoo_websocket_activation.summary(after))
        return "\n".join(lines)


def apply(settings, parts, saltenv="base", test=False):
    """
    Bring the host to what SETTINGS say, as one transaction: the concerns in
    PARTS (``{"compose": {}, "odoo_conf": {}, "nginx": {"site_source": [...],
    "map_source": [...]}}``) are planned by ``odoo_websocket_plan.build``,
    validated together, backed up in one set, written, activated and verified;
    any failure restores the whole set. The states call this; operators run
    ``state.apply odoo_websocket``.

    Returns ``{result, comment, changed, backup, verdict, diffs}``.
    """
    backup = settings["backup"]
    with _locked(backup["dir"], backup["lock_timeout"], dry=test):
        note, restarted = odoo_websocket_backups.pending(backup["dir"]), []
        if not test:
            nginx = settings["nginx"] if settings["nginx"]["enabled"] else None
            managed = odoo_websocket_plan.managed_paths(settings)
            note, restarted = _recover_locked(backup["dir"], nginx=nginx, managed=managed)
        plan = odoo_websocket_plan.build(settings, parts, saltenv)
        for restart in odoo_websocket_activation.restarted_again(plan, restarted):  # the dead run's
            note += " " + odoo_websocket_activation.restart(restart)
        label = "odoo_websocket: " + ", ".join(sorted(parts))
        ret = Transaction(plan, backup["dir"], backup["keep"], test=test, label=label).run()
    if note:
        ret["comment"] = f"{note} {ret['comment']}"
    ret["diffs"] = {path: plan["diffs"][path] for path in ret["changed"] if path in plan["diffs"]}
    return ret


def recover(backup_dir=DEFAULT_BACKUP_DIR, lock_timeout=60, conf_file=None,
            binary="/usr/sbin/nginx", force=False, managed=None):  # fmt: skip
    """
    Roll back a change that a killed run left half done (its journal names the
    backup set): each path that still holds what that run wrote is put back;
    a path changed since is reported and left, unless FORCE. nginx
    (CONF_FILE, BINARY) is reloaded when running; a path outside MANAGED
    (``odoo_websocket_plan.managed_paths``) is never written. Real runs do
    this first, under the lock. Returns what it did.
    """
    if not os.path.exists(_journal(backup_dir)):
        return ""
    nginx = {"conf_file": conf_file, "binary": binary} if conf_file else None
    with _locked(backup_dir, lock_timeout):
        note, restarted = _recover_locked(backup_dir, nginx=nginx, force=force, managed=managed)
    if restarted:
        note += (
            f" The interrupted run had restarted "
            f"{odoo_websocket_activation.restarts_named(restarted)}: restart it "
            "again (a state.apply does) so that it reads the restored files."
        )
    return note


def _put_back(backup_dir, lock_timeout, nginx, managed, label, keep, plan_of):
    """restore and clean: under the lock, finish a dead run, then put back
    what PLAN_OF plans through the transaction. KEEP None prunes nothing."""
    with _locked(backup_dir, lock_timeout):
        note, _ = _recover_locked(backup_dir, nginx=nginx, managed=managed)
        plan = plan_of()
        plan["nginx"] = nginx
        if keep is None:
            keep = len(odoo_websocket_backups.sets(backup_dir)) + 1
        ret = Transaction(plan, backup_dir, keep, label=label).run()
    ret["comment"] = f"{note} {ret['comment']}".strip()
    return ret


def restore(backup_id, backup_dir=DEFAULT_BACKUP_DIR, conf_file=None, binary="/usr/sbin/nginx",
            keep=10, lock_timeout=60, start=True, restarts=None, managed=None):  # fmt: skip
    """
    Put a backup set back through the same transaction (checksums checked,
    nginx validated staged and live when CONF_FILE is given, reloaded, the
    RESTARTS run for the files they name: ``[{"path", "what", "cmd", "cwd"}]``;
    a set naming a path outside MANAGED is refused whole),
    with a backup set of what it replaces, so a restore can itself be undone.
    """
    nginx = {"conf_file": conf_file, "binary": binary, "start": start} if conf_file else None
    plan = functools.partial(
        odoo_websocket_backups.restore_plan, backup_id, backup_dir, restarts, managed
    )
    label = f"restore of {backup_id}"
    return _put_back(backup_dir, lock_timeout, nginx, managed, label, keep, plan)


def clean(backup_dir=DEFAULT_BACKUP_DIR, conf_file=None, binary="/usr/sbin/nginx", lock_timeout=60,
          start=True, restarts=None, managed=None):  # fmt: skip
    """
    Put the host back as the formula found it, through the same transaction
    as :py:func:`restore`: each path the formula's runs changed gets what the
    oldest kept set saved (``odoo_websocket_backups.original_plan``), so its
    map, site and link go and an adopted site, odoo.conf and the compose file
    come back. Paths outside MANAGED are refused; no set is pruned (the old
    ones are what a later clean puts back); a second run changes nothing.
    """
    nginx = {"conf_file": conf_file, "binary": binary, "start": start} if conf_file else None
    # keep=None: no set is pruned (the old ones are what a later clean puts back).
    plan = functools.partial(odoo_websocket_backups.original_plan, backup_dir, restarts, managed)
    return _put_back(backup_dir, lock_timeout, nginx, managed, "odoo_websocket.clean", None, plan)
