"""
The change engine of the odoo_websocket formula: one host, one transaction.

Modelled on certbot's reverter: :py:class:`Transaction` takes the host's
lock, rolls back what a killed run left (its journal), plans every change
(compose ports, odoo.conf, nginx map and site, an adopted site), validates
all of them, saves what they replace in one backup set, writes a journal
naming it, swaps the files in, restarts Odoo only when its files changed,
reloads nginx, and proves the websocket works. A failure at any step puts
every file of the set back and restarts and reloads again, so the host
serves its old configuration.

Every function that writes a live file is here: states reach it through
:py:func:`apply`, operators' restore, clean and recover through
``odoo_websocket_restore``. The backup sets live in ``odoo_websocket_backups`` (the
store), the journal in ``odoo_websocket_journal``, the lock in
``odoo_websocket_lock``; how a change goes live (checks, restarts, reload,
the websocket check) in ``odoo_websocket_activation``.
"""

import functools
import os

from salt.exceptions import CommandExecutionError

import odoo_websocket_activation
import odoo_websocket_concerns
import odoo_websocket_files
import odoo_websocket_journal
import odoo_websocket_lock
import odoo_websocket_nginx_service
import odoo_websocket_plan
import odoo_websocket_recovery
from odoo_websocket_backups import BackupStore


class Transaction:
    """
    One run's changes as a unit, in the spirit of certbot's Reverter: under
    the host's lock, a killed run's journal rolled back first (recovery on
    start-up), then the plan (PLAN_OF's: ``odoo_websocket_plan.build``'s, or
    a restore's) checked, backed up in one set of STORE, journaled, written,
    made live (restarts, nginx reload) and verified; then committed (journal
    dropped, old sets pruned to KEEP; None: none pruned), or rolled back whole
    (every file restored, restarts run again, nginx reloaded onto the old
    files). NGINX (the caller's settings, never a journal's) is what recovery
    reloads; MANAGED the paths recovery may write (None: any; a callable:
    asked only when there is something to recover). TEST: nothing
    written, no recovery, the lock not created. PLANNED: ``(plan, holds)``,
    a plan this run made before it took the lock that changes nothing, and
    a callable saying whether what it read is unchanged: it serves when
    recovery put nothing back and it still holds (a no-op is not planned
    twice; anything else is planned again under the lock).
    """

    def __init__(self, store, plan_of, keep, test=False, label="", nginx=None, managed=None,
                 lock_timeout=60, planned=None):  # fmt: skip
        self.store, self.plan_of, self.keep = store, plan_of, keep
        self.planned = planned
        self.test, self.label, self.nginx, self.managed = test, label, nginx, managed
        self.lock_timeout = lock_timeout
        self.journal = odoo_websocket_journal.Journal(store)
        self.plan = None
        self.notes = []
        self.ret = {"result": True, "comment": "", "changed": [], "backup": None, "verdict": None}
        self.staged = None  # the staged nginx -t verdict (None: not possible here)
        self.nginx_changed = False  # whether the changes touch nginx's files
        self.pending = None  # an earlier run's nginx configuration not yet live
        self.set_id = None  # this run's backup set (or the pending run's)
        self.entry = None  # this run's journal entry
        self.written = []  # the paths written so far: restored on a rollback
        self.wrote = {}  # what each holds once written: a rollback replaces only that
        self.restarted = []  # the restarts run so far: run again on a rollback
        self.nginx_touched = False  # nginx reloaded or started: again on a rollback
        self.verdict = None
        # The tests' seam: called with the name of each step of the critical
        # section (backup, journal, write-<n>, validated, restarted,
        # activated), where a test crashes or freezes the run. None in use.
        self.fault_seam = None

    def _locked(self):
        return odoo_websocket_lock.held(self.store.folder, self.lock_timeout, dry=self.test)

    def run(self):
        """
        Recover, plan, validate, back up, write, activate and verify, as one
        unit. Returns ``{result, comment, changed, backup, verdict}``.
        """
        with self._locked():
            if self.test:
                note, restarted = odoo_websocket_journal.left_notes(self.store), []
            else:
                note, restarted = self._recover()
            try:
                fresh = self.planned is None or note or restarted or not self.planned[1]()
                self.plan = self.plan_of() if fresh else self.planned[0]
                self.notes = list(self.plan.get("notes", []))
                # What the killed run had restarted reads the restored files once more.
                for restart in odoo_websocket_activation.restarted_again(self.plan, restarted):
                    note += " " + odoo_websocket_activation.restart(restart)
            except CommandExecutionError as exc:
                if not note:
                    raise  # nothing was touched: the caller says so
                if restarted:  # what recovery did, and what is left to do
                    named = odoo_websocket_activation.restarts_named(restarted)
                    note += f" The interrupted run had restarted {named}: restart it again."
                return dict(self.ret, result=False, comment=f"{note} {exc}")
            ret = self._run()
        ret["comment"] = f"{note} {ret['comment']}".strip()
        return ret

    def recover(self, force=False):
        """
        Only the recovery, under the lock: put back, from its backup set,
        each path a killed run left that still holds what the run wrote (or
        had not reached yet); a path changed since (an operator's hotfix) is
        reported and left, unless FORCE. Returns a note and the concerns the
        dead run had restarted (restart them again: the caller knows how).
        """
        with self._locked():
            return self._recover(force)

    def _recover(self, force=False):
        return odoo_websocket_recovery.recover(self.journal, self.nginx, self.managed, force)

    def _step(self, step):
        if self.fault_seam is not None:
            self.fault_seam(step)

    def _failed(self, message):
        self.ret["result"] = False
        self.ret["comment"] = " ".join(self.notes + [message])
        return self.ret

    def _run(self):
        """Validate, back up, write, activate and verify the plan as one unit."""
        plan, ret, test = self.plan, self.ret, self.test
        if plan.get("errors"):
            return self._failed("Nothing was changed:\n" + "\n".join(plan["errors"]))
        changes = [change for change in plan["changes"] if odoo_websocket_files.differs(change)]
        for change in changes:  # a restore's plan: its paths as they are now
            change.setdefault("expect", odoo_websocket_files.state(change["path"]))
        unsafe = [
            why for why in (odoo_websocket_files.unsafe_path(c["path"]) for c in changes) if why
        ]
        if unsafe:
            return self._failed(
                "Refused, nothing was touched: " + "; ".join(unsafe) + ": another user could "
                "have root write where they choose (chown root or chmod go-w it, or point the "
                "pillar at a path root controls)."
            )
        if plan.get("nginx"):
            self.pending = odoo_websocket_journal.activation_pending(self.store)
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
        plan, ret = self.plan, self.ret
        try:
            after = {c["path"]: odoo_websocket_files.fingerprint(c) for c in changes}
            set_id = self.store.write(
                ret["changed"], self.label, plan.get("secret_keys", ()), after=after
            )
        except OSError as exc:
            ret["changed"] = []
            return self._failed(f"Could not write the backup, nothing was touched: {exc}")
        ret["backup"] = self.set_id = set_id
        self._step("backup")
        fingerprint = odoo_websocket_files.fingerprint
        entry = {
            "backup": set_id,
            "pid": os.getpid(),
            "started": odoo_websocket_journal.now(),
            # What each path held and will hold: recovery restores only those two.
            "paths": {c["path"]: {"before": fingerprint(c["path"]), "after": fingerprint(c)}
                      for c in changes},
        }  # fmt: skip
        try:
            self.journal.write(entry)
        except OSError as exc:
            self.store.drop(set_id)
            ret["changed"], ret["backup"] = [], None
            return self._failed(f"Could not write the journal, nothing was touched: {exc}")
        self._step("journal")
        self.entry = entry
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
            self.journal.drop()
            return self._failed(f"The change failed: {problem}\n{restored}")
        if self.verdict:
            self.notes.append(odoo_websocket_activation.summary(self.verdict))
            ret["result"] = self.verdict["ok"]
        self.journal.drop()
        if self.keep is not None:
            self.store.prune(self.keep)
        self.notes.append(f"Backup: {set_id}.")
        ret["comment"] = " ".join(self.notes)
        return ret

    def _go_live(self, changes):
        """Write, check live, restart what changed, reload nginx, verify.
        Returns a problem (the caller rolls everything back) or None."""
        try:
            return self._go_live_steps(changes)
        except odoo_websocket_files.ChangedUnderRun as exc:
            return str(exc)
        except Exception as exc:  # pylint: disable=broad-except
            # Whatever broke (a timeout, a full disk), the host goes back as it was.
            return f"{type(exc).__name__}: {exc}"

    def _go_live_steps(self, changes):
        plan = self.plan
        for index, change in enumerate(changes):
            self.written.append(change["path"])  # first: a failed rename is restored too
            try:
                odoo_websocket_files.apply_change(change, change["expect"])
            except odoo_websocket_files.ChangedUnderRun:
                self.written.pop()  # refused before its rename: the edit stays
                raise
            self.wrote[change["path"]] = odoo_websocket_files.state(change["path"])
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
                self.entry["restarted"] = [
                    {"concern": r["concern"], "instance": r.get("instance")} for r in self.restarted
                ]
                self.journal.write(self.entry)
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
        if not activated["pending"]:
            odoo_websocket_journal.clear_pending(self.store)
        else:
            old = self.pending or {}
            since = (
                old["since"] if old.get("backup") == self.set_id else odoo_websocket_journal.now()
            )
            mark = {"backup": self.set_id, "since": since, "why": activated["comment"]}
            odoo_websocket_journal.mark_pending(self.store, mark)
        if not activated["live"]:
            self.notes.append(
                "Not verified: the new nginx configuration is not live"
                + (" (the next run activates it)." if activated["pending"] else ".")
            )
        return activated["live"]

    def _roll_back(self):
        """Put every file of the set back, then restart and reload onto it."""
        plan, set_id = self.plan, self.set_id
        # Only what the run wrote: a path it had not reached may hold a newer
        # edit than the backup (the reason a compare-and-swap stopped it).
        lines, kept = [f"Every file of the run was restored from backup {set_id}."], []
        for change in reversed(self.store.changes(set_id)):
            if change["path"] in self.written:
                try:
                    odoo_websocket_files.apply_change(change, self.wrote.get(change["path"]))
                except odoo_websocket_files.ChangedUnderRun as exc:
                    kept.append(str(exc))  # edited after the run wrote it: the edit wins
        if kept:
            lines[0] = f"The files of the run were restored from backup {set_id}, but: " + \
                "; ".join(kept) + "."  # fmt: skip
        for restart in self.restarted:
            try:
                odoo_websocket_activation.restart(restart)
                lines.append(f"{restart['what']} again, onto the old configuration.")
            except CommandExecutionError as exc:
                lines.append(f"{exc} (while restoring)")
        # A running nginx may have been reloaded onto the new files by someone
        # else during the run (a logrotate hook): it reloads onto the old ones.
        running = self.nginx_changed and odoo_websocket_nginx_service.pid(
            plan["nginx"]["conf_file"]
        )
        if self.nginx_touched or running:
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


def apply(settings, parts, saltenv="base", test=False, planned=None):
    """
    Bring the host to what SETTINGS say, as one transaction: the concerns in
    PARTS (``{"compose": {}, "odoo_conf": {}, "nginx": {"site_source": [...],
    "map_source": [...]}}``) are planned by ``odoo_websocket_plan.build``,
    validated together, backed up in one set, written, activated and verified;
    any failure restores the whole set. The states call this; operators run
    ``state.apply odoo_websocket``. PLANNED: ``({concern: plan}, inputs)``,
    the plans this run's planning states made and what the planner read
    before them (``odoo_websocket_plan.inputs``); when they cover PARTS,
    change nothing and the inputs are unchanged under the lock, the
    transaction does not plan again (:py:class:`Transaction`).

    Returns ``{result, comment, changed, backup, verdict, diffs}``.
    """
    backup = settings["backup"]
    reuse = None
    if planned and set(planned[0]) == set(parts) and odoo_websocket_plan.unchanged(planned[0]):
        plans, seen = planned
        reuse = (odoo_websocket_plan.combined(plans),
                 lambda: odoo_websocket_plan.inputs(settings) == seen)  # fmt: skip
    transaction = Transaction(
        BackupStore(backup["dir"]),
        functools.partial(odoo_websocket_plan.build, settings, parts, saltenv),
        backup["keep"],
        test=test,
        label="odoo_websocket: " + ", ".join(sorted(parts)),
        nginx=settings["nginx"] if settings["nginx"]["enabled"] else None,
        # Read only when a killed run left a journal (it parses nginx's tree).
        managed=functools.partial(odoo_websocket_concerns.managed_paths, settings),
        lock_timeout=backup["lock_timeout"],
        planned=reuse,
    )
    ret = transaction.run()
    if not test:  # the formula is applied again: healing may resume
        odoo_websocket_journal.release(transaction.store)
    diffs = (transaction.plan or {}).get("diffs", {})
    ret["diffs"] = {path: diffs[path] for path in ret["changed"] if path in diffs}
    return ret
