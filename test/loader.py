"""
The formula's execution modules imported straight from _modules/ and wired to
each other through ``__salt__`` as Salt's loader would (real functions, no
mocks), for tests that drive the change engine without a minion.
"""

import importlib
import inspect
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = os.path.join(REPO, "_modules")
NAMES = (
    "odoo_conf",
    "odoo_compose",
    "odoo_websocket_names",
    "odoo_websocket_schema",
    "odoo_websocket_instances",
    "odoo_websocket_settings",
    "odoo_websocket_nginx",
    "odoo_websocket_adopt",
    "odoo_websocket_nginx_service",
    "odoo_websocket_capacity",
    "odoo_websocket_masking",
    "odoo_websocket_sites",
    "odoo_websocket_plan",
    "odoo_websocket_backups",
    "odoo_websocket_activation",
    "odoo_websocket_lock",
    "odoo_websocket_changes",
    "odoo_websocket_verify",
    "odoo_websocket_audit_nginx",
    "odoo_websocket_audit",
    "odoo_websocket",
)


def load():
    """{module name: module}, every module's __salt__ holding all public functions."""
    if MODULES not in sys.path:
        sys.path.insert(0, MODULES)
    modules = {name: importlib.import_module(name) for name in NAMES}
    functions = {}
    for module in modules.values():
        virtualname = getattr(module, "__virtualname__", module.__name__)
        for name, value in vars(module).items():
            if inspect.isfunction(value) and value.__module__ == module.__name__:
                if not name.startswith("_"):
                    functions[f"{virtualname}.{name}"] = value
    for module in modules.values():
        module.__salt__ = functions
    return modules


def engine_apply(changes, nginx=None, backup_dir=None, keep=10, lock_timeout=60, test=False,
                 label="", secret_keys=(), restarts=(), verify=None):  # fmt: skip
    """The engine's transaction on a raw change set, as ``apply`` runs a plan:
    under the lock, after recovery."""
    engine = load()["odoo_websocket_changes"]
    plan = {"changes": changes, "nginx": nginx, "secret_keys": list(secret_keys),
            "restarts": list(restarts), "verify": verify}  # fmt: skip
    with engine._locked(backup_dir, lock_timeout):
        note, _ = engine._recover_locked(backup_dir)
        ret = engine._transaction(plan, {"dir": backup_dir, "keep": keep}, test=test, label=label)
    ret["comment"] = f"{note} {ret['comment']}".strip()
    return ret


_RUN = """
import json, sys
from loader import engine_apply
changes, nginx, backup_dir = json.load(sys.stdin)
print(json.dumps(engine_apply(changes, nginx=nginx, backup_dir=backup_dir)))
"""


def spawn_engine(changes, nginx, backup_dir, fault=None):
    """engine_apply in a process of its own. FAULT: the step where it gets
    SIGKILL, or ``stop:<step>`` where it gets SIGSTOP (the test sends
    SIGCONT). Returns (Popen, the payload to write to its stdin)."""
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "test"))
    if fault:
        env["ODOO_WEBSOCKET_FAULT"] = fault if ":" in fault else f"kill:{fault}"
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    return proc, json.dumps([changes, nginx, backup_dir])
