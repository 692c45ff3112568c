"""
Putting back, for the operator's commands: a backup set (:py:func:`restore`),
the host as the formula found it (:py:func:`clean`), and what a killed run
left (:py:func:`recover`). Each runs through the change engine's
transaction (``odoo_websocket_changes.Transaction``): under the host's lock,
validated, backed up, activated, rolled back whole on a failure.
"""

import functools

import odoo_websocket_activation
import odoo_websocket_journal
from odoo_websocket_backups import DEFAULT_BACKUP_DIR, BackupStore
from odoo_websocket_changes import Transaction


def _nginx(conf_file, binary, start=True):
    return {"conf_file": conf_file, "binary": binary, "start": start} if conf_file else None


def recover(backup_dir=DEFAULT_BACKUP_DIR, lock_timeout=60, conf_file=None,
            binary="/usr/sbin/nginx", force=False, managed=None):  # fmt: skip
    """
    Roll back a change that a killed run left half done (its journal names the
    backup set): each path that still holds what that run wrote is put back;
    a path changed since is reported and left, unless FORCE. nginx
    (CONF_FILE, BINARY) is reloaded when running; a path outside MANAGED
    (``odoo_websocket_concerns.managed_paths``) is never written. Real runs do
    this first, under the lock. Returns what it did.
    """
    store = BackupStore(backup_dir)
    if odoo_websocket_journal.Journal(store).read() is None:
        return ""
    transaction = Transaction(store, None, None, nginx=_nginx(conf_file, binary),
                              managed=managed, lock_timeout=lock_timeout)  # fmt: skip
    note, restarted = transaction.recover(force=force)
    if restarted:
        note += (
            f" The interrupted run had restarted "
            f"{odoo_websocket_activation.restarts_named(restarted)}: restart it "
            "again (a state.apply does) so that it reads the restored files."
        )
    return note


def _put_back(store, nginx, managed, label, keep, lock_timeout, plan_of):
    """restore and clean: PLAN_OF's plan (the store's) through the transaction."""

    def plan():
        return dict(plan_of(), nginx=nginx)

    transaction = Transaction(store, plan, keep, label=label, nginx=nginx, managed=managed,
                              lock_timeout=lock_timeout)  # fmt: skip
    ret = transaction.run()
    if ret["result"]:  # the operator's word stands until the next apply
        odoo_websocket_journal.hold(store, label)
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
    store = BackupStore(backup_dir)
    plan_of = functools.partial(store.restore_plan, backup_id, restarts, managed)
    return _put_back(store, _nginx(conf_file, binary, start), managed, f"restore of {backup_id}",
                     keep, lock_timeout, plan_of)  # fmt: skip


def clean(backup_dir=DEFAULT_BACKUP_DIR, conf_file=None, binary="/usr/sbin/nginx", lock_timeout=60,
          start=True, restarts=None, managed=None):  # fmt: skip
    """
    Put the host back as the formula found it, through the same transaction
    as :py:func:`restore`: each path the formula's runs changed gets what the
    oldest kept set saved (``BackupStore.original_plan``), so its map, site
    and link go and an adopted site, odoo.conf and the compose file come
    back. Paths outside MANAGED are refused; no set is pruned (the old ones
    are what a later clean puts back); a second run changes nothing.
    """
    store = BackupStore(backup_dir)
    plan_of = functools.partial(store.original_plan, restarts, managed)
    return _put_back(store, _nginx(conf_file, binary, start), managed, "odoo_websocket.clean",
                     None, lock_timeout, plan_of)  # fmt: skip
