"""The backup store and the transaction as a state machine (hypothesis'
rule-based testing, issue 23): the formula's runs, an operator's edits, runs
killed at any step, recover, restore, clean and prune, in any order, on
real files. Invariants after every step: no byte an operator wrote is lost
(it is live, or in a backup set), every original is recoverable (live, or
in a set), and no run leaves a half-written file (every path holds a
version someone wrote)."""

import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import odoo_websocket_changes
import odoo_websocket_restore
from engine import engine_apply
from odoo_websocket_backups import BackupStore

STEPS = ["backup", "journal", "write-0", "write-1"]
TEXTS = st.text(alphabet="abcxyz=\n ", min_size=1, max_size=12)


class Killed(BaseException):
    """The run dies there (as by SIGKILL): nothing of it catches this."""


class StoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="ow-machine.")
        self.backup_dir = os.path.join(self.root, "backups")
        self.paths = [os.path.join(self.root, "etc", name) for name in ("odoo.conf", "site.conf")]
        os.makedirs(os.path.join(self.root, "etc"))
        self.originals = {}
        for path in self.paths:
            self.originals[path] = f"original of {os.path.basename(path)}\n".encode()
            self._write(path, self.originals[path])
        self.operator = {path: set() for path in self.paths}  # every version they wrote
        self.written = {path: {self.originals[path]} for path in self.paths}  # anyone's

    def teardown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _write(path, data):
        with open(path, "wb") as handle:
            handle.write(data)

    def _changes(self, text):
        changes = []
        for path in self.paths:
            data = f"{os.path.basename(path)} by the formula: {text}\n".encode()
            self.written[path].add(data)
            changes.append({"path": path, "kind": "file", "data": data, "concern": "odoo_conf"})
        return changes

    @rule(text=TEXTS)
    def formula_run(self, text):
        engine_apply(self._changes(text), backup_dir=self.backup_dir, keep=1000,
                     label="odoo_websocket: odoo_conf")  # fmt: skip

    def _run_with(self, text, seam):
        plan = {"changes": self._changes(text), "nginx": None, "secret_keys": [],
                "restarts": [], "verify": None}  # fmt: skip
        store = BackupStore(self.backup_dir)
        label = "odoo_websocket: odoo_conf"
        transaction = odoo_websocket_changes.Transaction(store, lambda: plan, 1000, label=label)
        transaction.fault_seam = seam
        try:
            transaction.run()
        except Killed:
            pass

    @rule(text=TEXTS, step=st.sampled_from(STEPS))
    def formula_run_killed(self, text, step):
        def seam(at):
            if at == step:
                raise Killed

        self._run_with(text, seam)

    @rule(text=TEXTS, step=st.sampled_from(STEPS), index=st.integers(0, 1), edit=TEXTS)
    def operator_edits_during_a_run(self, text, step, index, edit):
        """The edit lands between two steps of a run (after its backup, say)."""

        def seam(at):
            if at == step:
                self.operator_edits(index, edit)

        self._run_with(text, seam)

    @rule(index=st.integers(0, 1), text=TEXTS)
    def operator_edits(self, index, text):
        path, data = self.paths[index], f"operator's {text}\n".encode()
        # What the operator overwrites is theirs to lose, not the formula's.
        live, saved = self._live(path), self._saved()[path]
        if live not in saved:
            self.operator[path].discard(live)
            if live == self.originals[path]:
                self.originals[path] = None
        self.operator[path].add(data)
        self.written[path].add(data)
        self._write(path, data)

    @rule()
    def recover(self):
        odoo_websocket_restore.recover(self.backup_dir)

    @rule(which=st.integers(0, 50))
    def restore(self, which):
        sets = BackupStore(self.backup_dir).sets()
        if sets:
            odoo_websocket_restore.restore(sets[which % len(sets)], self.backup_dir, keep=1000)

    @rule()
    def clean(self):
        odoo_websocket_restore.clean(self.backup_dir)

    def _saved(self):
        """Every version of each path that a backup set holds."""
        store, found = BackupStore(self.backup_dir), {path: set() for path in self.paths}
        for set_id in store.sets():
            for change in store.changes(set_id):
                if change["kind"] == "file" and change["path"] in found:
                    found[change["path"]].add(change["data"])
        return found

    def _live(self, path):
        with open(path, "rb") as handle:
            return handle.read()

    @invariant()
    def no_operator_byte_is_lost(self):
        saved = self._saved()
        for path, versions in self.operator.items():
            for data in versions:
                assert data == self._live(path) or data in saved[path], (path, data)

    @invariant()
    def every_original_is_recoverable(self):
        saved = self._saved()
        for path, original in self.originals.items():
            if original is not None:  # not overwritten by the operator first
                assert original == self._live(path) or original in saved[path], path

    @invariant()
    def no_file_is_half_written(self):
        for path in self.paths:
            assert self._live(path) in self.written[path], path


StoreMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_store_machine = StoreMachine.TestCase
