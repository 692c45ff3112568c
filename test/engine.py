"""
Drive the formula's change engine (the library's odoo_websocket_changes)
without a minion: a raw change set through the transaction, in this process
or in a process of its own that a test can kill at a chosen step.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys

import odoo_websocket_changes
from odoo_websocket_backups import BackupStore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def engine_apply(changes, nginx=None, backup_dir=None, keep=10, lock_timeout=60, test=False,
                 label="", secret_keys=(), restarts=(), verify=None, fault=None):  # fmt: skip
    """The engine's transaction on a raw change set, as ``apply`` runs a plan:
    under the lock, after recovery. FAULT: ``kill:<step>`` (SIGKILL there, a
    crash) or ``stop:<step>`` (SIGSTOP: frozen there until SIGCONT), set on
    the transaction's fault seam."""
    plan = {"changes": changes, "nginx": nginx, "secret_keys": list(secret_keys),
            "restarts": list(restarts), "verify": verify}  # fmt: skip
    transaction = odoo_websocket_changes.Transaction(
        BackupStore(backup_dir), lambda: plan, keep, test, label, lock_timeout=lock_timeout
    )
    transaction.fault_seam = _seam(fault)
    return transaction.run()


def _seam(fault):
    if not fault:
        return None
    action, _, wanted = fault.partition(":")
    sent = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP}[action]

    def seam(step):
        if step == wanted:
            os.kill(os.getpid(), sent)

    return seam


_RUN = """
import json, sys
import engine
changes, nginx, backup_dir, fault = json.load(sys.stdin)
print(json.dumps(engine.engine_apply(changes, nginx=nginx, backup_dir=backup_dir, fault=fault)))
"""


def spawn_engine(changes, nginx, backup_dir, fault=None):
    """engine_apply in a process of its own. FAULT: the step where it gets
    SIGKILL, or ``stop:<step>`` where it gets SIGSTOP (the test sends
    SIGCONT). Returns (Popen, the payload to write to its stdin)."""
    paths = [os.path.join(REPO, "test"), os.path.join(REPO, "_utils")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    fault = fault if not fault or ":" in fault else f"kill:{fault}"
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    return proc, json.dumps([changes, nginx, backup_dir, fault])


def commands(functions=None, pillar=None):
    """The operator's commands (_modules/odoo_websocket.py), loaded from the
    file as Salt's loader would, with FUNCTIONS as ``__salt__`` and PILLAR
    as ``__pillar__``."""
    path = os.path.join(REPO, "_modules", "odoo_websocket.py")
    spec = importlib.util.spec_from_file_location("odoo_websocket_commands", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.__salt__, module.__pillar__ = functions or {}, pillar or {}
    module.__grains__, module.__context__ = {"os_family": "Debian"}, {}
    return module
