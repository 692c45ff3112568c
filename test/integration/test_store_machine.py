"""The backup store and the transaction as a state machine (hypothesis'
rule-based testing, issue 23): the formula's runs, an operator's edits, runs
killed at any step, recover, restore, clean and prune, in any order, on
real files. Invariants after every step: no byte an operator wrote is lost
(it is live, or in a backup set), every original is recoverable (live, or
in a set), and no run leaves a half-written file (every path holds a
version someone wrote)."""

import http.client
import os
import re
import shutil
import subprocess
import tempfile
import time

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import odoo_websocket_changes
import odoo_websocket_journal
import odoo_websocket_restore
from engine import engine_apply
from helpers import NGINX, free_port, nginx_of
from odoo_websocket_backups import BackupStore
from rig.sandbox import Sandbox

STEPS = ["backup", "journal", "write-0", "write-1"]
TEXTS = st.text(alphabet="abcxyz=\n ", min_size=1, max_size=12)


class Killed(BaseException):
    """The run dies there (as by SIGKILL): nothing of it catches this."""


def run_killable(backup_dir, changes, label, seam, nginx=None):
    """A run of the formula's on CHANGES through its transaction, SEAM called
    at each step (a Killed run ends there); with NGINX, its transaction knows
    nginx (recovery reloads it), as ``apply`` makes it."""
    plan = {"changes": changes, "nginx": nginx, "secret_keys": [], "restarts": [], "verify": None}
    transaction = odoo_websocket_changes.Transaction(
        BackupStore(backup_dir), lambda: plan, 1000, label=label, nginx=nginx
    )
    transaction.fault_seam = seam
    try:
        transaction.run()
    except Killed:
        pass


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
        run_killable(self.backup_dir, self._changes(text), "odoo_websocket: odoo_conf", seam)

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


# -- with a running nginx: its tree valid, and serving what is on disk -------

NGINX_STEPS = STEPS + ["validated", "activated"]
VARIABLES = st.sampled_from(["a", "b", "c"])
WORDS = st.text(alphabet="abcxyz", min_size=1, max_size=8)
MAP = 'map $uri $marker_{var} {{ default "{text}"; }}\n'
SITE = ('server {{ listen {port}; server_name marker.test; '
        'location / {{ return 200 "$marker_{var}|{text}"; }} }}\n')  # fmt: skip
MAP_READ = re.compile(r'\$marker_(\w+) \{ default "(\w*)"; \}')
SITE_READ = re.compile(r'return 200 "\$marker_(\w+)\|(\w*)"')


class NginxMachine(RuleBasedStateMachine):
    """A map drop-in and a site that uses its variable: written half, the
    tree is invalid (the site names a variable no map defines). The
    formula's runs (some killed at a step), an operator's edits (the text
    only, then their own reload), recover, restore and clean, in any order,
    on a real running nginx. Whenever no killed run awaits recovery: nginx -t
    passes, and what nginx serves is what the files on disk say."""

    def __init__(self):
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="ow-nginx-machine.")
        self.box = Sandbox(os.path.join(self.root, "host"), http_port=free_port()).create()
        self.backup_dir = os.path.join(self.root, "backups")
        self.paths = [os.path.join(self.box.nginx_dir, "conf.d", "marker.conf"),
                      os.path.join(self.box.nginx_dir, "sites-enabled", "marker")]  # fmt: skip
        for path, data in zip(self.paths, self._texts("a", "original"), strict=True):
            self.box.write(path, data.decode())
        subprocess.run([NGINX, "-c", self.box.conf_file], check=True)
        self.nginx = nginx_of(self.box)

    def teardown(self):
        conf = self.box.conf_file
        subprocess.run([NGINX, "-c", conf, "-s", "stop"], check=False, capture_output=True)
        # Whatever became of its pid file, no nginx of this machine outlives it.
        for signal_name in ("TERM", "KILL"):
            deadline = time.monotonic() + 5
            while subprocess.run(["pgrep", "-f", conf], capture_output=True).returncode == 0:
                if time.monotonic() > deadline:
                    subprocess.run(["pkill", f"-{signal_name}", "-f", conf], check=False)
                    break
                time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)

    def _texts(self, var, text):
        return [MAP.format(var=var, text=text).encode(),
                SITE.format(port=self.box.http_port, var=var, text=text).encode()]  # fmt: skip

    def _changes(self, var, text):
        return [{"path": path, "kind": "file", "data": data, "concern": "nginx"}
                for path, data in zip(self.paths, self._texts(var, text), strict=True)]  # fmt: skip

    def _run(self, var, text, seam=None):
        """A run of the formula's, as ``apply`` makes it: its transaction
        knows nginx (recovery reloads it)."""
        run_killable(self.backup_dir, self._changes(var, text), "odoo_websocket: nginx", seam,
                     self.nginx)  # fmt: skip

    @rule(var=VARIABLES, text=WORDS)
    def formula_run(self, var, text):
        self._run(var, text)

    @rule(var=VARIABLES, text=WORDS, step=st.sampled_from(NGINX_STEPS))
    def formula_run_killed(self, var, text, step):
        def seam(at):
            if at == step:
                raise Killed

        self._run(var, text, seam)

    @rule(index=st.integers(0, 1), text=WORDS)
    def operator_edits_and_reloads(self, index, text):
        """The operator changes a file's text (keeping the variable it names)
        and reloads nginx, as operators do (refused when the tree is not valid)."""
        path = self.paths[index]
        with open(path, encoding="utf-8") as handle:
            current = handle.read()
        pattern = MAP_READ if index == 0 else SITE_READ
        var = pattern.search(current).group(1)
        self.box.write(path, self._texts(var, text)[index].decode())
        subprocess.run([NGINX, "-c", self.box.conf_file, "-s", "reload"], check=False,
                       capture_output=True)  # fmt: skip

    @rule()
    def recover(self):
        odoo_websocket_restore.recover(self.backup_dir, conf_file=self.box.conf_file,
                                       binary=NGINX)  # fmt: skip

    @rule(which=st.integers(0, 50))
    def restore(self, which):
        sets = BackupStore(self.backup_dir).sets()
        if sets:
            odoo_websocket_restore.restore(sets[which % len(sets)], self.backup_dir, keep=1000,
                                           conf_file=self.box.conf_file, binary=NGINX,
                                           start=False)  # fmt: skip

    @rule()
    def clean(self):
        odoo_websocket_restore.clean(self.backup_dir, conf_file=self.box.conf_file,
                                     binary=NGINX, start=False)  # fmt: skip

    def _settled(self):
        """No killed run awaits recovery (its journal)."""
        return odoo_websocket_journal.Journal(BackupStore(self.backup_dir)).read() is None

    def _on_disk(self):
        texts = []
        for path in self.paths:
            with open(path, encoding="utf-8") as handle:
                texts.append(handle.read())
        return MAP_READ.search(texts[0]).groups(), SITE_READ.search(texts[1]).groups()

    def _served(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.box.http_port, timeout=5)
        try:
            connection.request("GET", "/", headers={"Host": "marker.test"})
            return connection.getresponse().read().decode()
        finally:
            connection.close()

    @invariant()
    def nginx_accepts_its_tree(self):
        if self._settled():
            test = subprocess.run([NGINX, "-t", "-c", self.box.conf_file], capture_output=True,
                                  text=True, check=False)  # fmt: skip
            assert test.returncode == 0, (test.stderr, self._on_disk())

    @invariant()
    def nginx_serves_what_is_on_disk(self):
        if not self._settled():
            return
        (_, map_text), (_, site_text) = self._on_disk()
        wanted, deadline = f"{map_text}|{site_text}", time.monotonic() + 5
        while (served := self._served()) != wanted and time.monotonic() < deadline:
            time.sleep(0.05)  # a graceful reload's old workers finish first
        assert served == wanted, (served, self._on_disk())


NginxMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_nginx_machine = NginxMachine.TestCase


def test_recovery_keeps_the_run_files_an_edit_was_made_on_top_of():
    """What the machine found: a run killed after writing the map and the
    site, then the site hotfixed by the operator (it names the run's map
    variable). Putting back the map alone would make nginx refuse its tree:
    recovery leaves the run's map, keeps the edit, and says so."""
    machine = NginxMachine()
    try:
        machine.formula_run("c", "first")
        machine.formula_run_killed("a", "second", "validated")
        machine.operator_edits_and_reloads(1, "hotfix")
        note = odoo_websocket_restore.recover(machine.backup_dir, conf_file=machine.box.conf_file,
                                              binary=NGINX)  # fmt: skip
        assert machine._on_disk() == (("a", "second"), ("a", "hotfix"))
        assert f"{machine.paths[0]}." in note and "nginx refuses its configuration" in note
        machine.nginx_accepts_its_tree()
        machine.nginx_serves_what_is_on_disk()
    finally:
        machine.teardown()
