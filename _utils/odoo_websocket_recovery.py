"""
Recovery on start-up (certbot's reverter): what a killed run left half done
is put back from its backup set, each path only while it holds what that
run wrote (an operator's hotfix made since is kept), and never into a tree
nginx would refuse: where a hotfix was made on top of the run's files, the
run's versions of nginx's other files stay with it.
"""

import os

import odoo_websocket_activation
import odoo_websocket_files
import odoo_websocket_journal
import odoo_websocket_nginx
import odoo_websocket_nginx_service


def recover(journal, nginx, managed, force=False):
    """
    Roll back what JOURNAL's killed run left (``Journal.recovery``: paths
    outside MANAGED never written, a path edited since kept unless FORCE),
    then reload NGINX (its settings; None: no nginx) onto the result when it
    runs. MANAGED may be a callable, asked only when there is a journal (it
    parses nginx's tree). Returns a note for a person and the restarts the
    dead run had done.
    """
    if journal.read() is None:  # the common case: nothing to recover
        return "", []
    managed = managed() if callable(managed) else managed
    found = journal.recovery(force=force, managed=managed)
    if found is None:
        return "", []
    if "unusable" in found:
        return journal.set_aside(found["unusable"]), []
    accepted = bool(nginx) and _accepts(nginx)  # before anything is put back
    nginx_file = _nginx_file_test(nginx)
    replaced = []  # nginx's files put back: (what each held, what it holds now)
    for change in found["changes"]:
        before = odoo_websocket_files.snapshot(change["path"])
        try:
            odoo_websocket_files.apply_change(change, change["expect"])
        except odoo_websocket_files.ChangedUnderRun:  # edited since it was judged
            found["kept"].append(change["path"])
            continue
        if nginx_file(change["path"]):
            replaced.append((before, odoo_websocket_files.state(change["path"])))
    if found["kept"] and accepted and not _accepts(nginx):
        # An edit kept on top of the run's files needs the rest of them.
        _undo(replaced, found, nginx)
    if nginx and odoo_websocket_nginx_service.pid(nginx["conf_file"]) is not None:
        odoo_websocket_activation.reload(nginx, old=True)
    journal.drop()
    return odoo_websocket_journal.recovered(found), found["journal"].get("restarted", [])


def _accepts(nginx):
    return odoo_websocket_nginx.configtest(nginx["conf_file"], nginx["binary"])["ok"]


def _nginx_file_test(nginx):
    """Whether a path is NGINX's: in its folder, or loaded by its live tree
    (as read now)."""
    if not nginx:
        return lambda path: False
    conf_file = nginx["conf_file"]
    folder = os.path.dirname(os.path.abspath(conf_file)) + os.sep
    loaded = set(odoo_websocket_nginx.tree_files(conf_file))
    return lambda path: path.startswith(folder) or path in loaded


def _undo(replaced, found, nginx):
    """Leave the killed run's versions of nginx's files where putting back
    all but the edited ones (FOUND's kept) makes nginx refuse its tree: each
    put-back path gets what it held before, while it holds what recovery
    wrote."""
    for before, wrote in reversed(replaced):
        try:
            odoo_websocket_files.apply_change(before, wrote)
        except odoo_websocket_files.ChangedUnderRun:
            continue
        found["left"].append(before["path"])
    if not _accepts(nginx):
        found["refused"] = True
