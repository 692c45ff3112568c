"""
The operator's commands of the odoo_websocket formula: the only functions
Salt publishes for it (``salt-call sys.doc odoo_websocket`` lists them).

Each command is a thin door into the formula's private library (``_utils/``,
plain Python modules, one per concern: see docs/architecture.md), which
Salt syncs to minions with the rest of the formula but never loads as
execution modules.
"""

import functools
import os

import salt.utils.data

# The formula's library (_utils/), synced with this module by saltutil.sync_all.
try:
    import odoo_websocket_minion as _seam

    # A running minion keeps what it once imported: drop a library that a
    # sync has replaced since, so this module runs the one it came with.
    _seam.fresh()

    import odoo_websocket_activation
    import odoo_websocket_audit
    import odoo_websocket_backups
    import odoo_websocket_concerns
    import odoo_websocket_journal
    import odoo_websocket_minion
    import odoo_websocket_nginx
    import odoo_websocket_nginx_candidate
    import odoo_websocket_plan_nginx
    import odoo_websocket_restore
    import odoo_websocket_settings
    import odoo_websocket_verify

    odoo_websocket_minion.stamp()
    _LIBRARY_MISSING = None
except ImportError as exc:
    _LIBRARY_MISSING = f"odoo_websocket: the formula's library is not here ({exc}): "
    _LIBRARY_MISSING += "saltutil.sync_all (sync_modules alone leaves out _utils/)"

__virtualname__ = "odoo_websocket"
# The CLI prints audit findings as a table (_output/odoo_websocket_audit.py,
# on a master after `salt-run saltutil.sync_output`); --out=json gives the list.
__outputter__ = {"audit": "odoo_websocket_audit"}


def __virtual__():
    missing = _LIBRARY_MISSING or odoo_websocket_minion.missing_message()
    return (False, missing) if missing else __virtualname__


def _minion(function):
    """Run FUNCTION with what Salt's loader gave this module bound for the
    library. Defined here, not in the library: Salt injects the per-call
    globals (``__env__``...) into the globals of the function it calls."""

    @functools.wraps(function)  # the name, docstring and signature Salt reads
    def call(*args, **kwargs):
        with odoo_websocket_minion.bound(__salt__, __pillar__, __grains__, __context__):
            return function(*args, **kwargs)

    return call


def _settings(saltenv="base"):
    """The settings map.jinja gives: defaults.yaml < osfamilymap.yaml < pillar."""
    return odoo_websocket_settings.current(saltenv)


def _pillar(key, default):
    """A pillar value as stored: pillar.get outside a template masks values
    ("**********") since Salt 3008."""
    return salt.utils.data.traverse_dict_and_list(__pillar__, key, default)


def _backup_dir(backup_dir):
    return backup_dir or _pillar(
        "odoo_websocket:backup:dir", odoo_websocket_backups.DEFAULT_BACKUP_DIR
    )


@_minion
def settings(saltenv="base"):
    """
    This minion's settings, as the formula's states read them:
    ``defaults.yaml`` < ``osfamilymap.yaml`` < the pillar's ``odoo_websocket``,
    validated (a bad pillar raises, naming every bad key) and with the values
    derived from them. They hold no secret: odoo.conf's extra options appear
    by name only. ``map.jinja`` serves them to SLS files.

    CLI Example:

    .. code-block:: bash

        salt 'odoo*' odoo_websocket.settings
    """
    return _settings(saltenv)


@_minion
def check_target(saltenv="base"):
    """
    Where ``verify`` knocks: the settings' ``verify`` part, each instance's
    check pointed where the live site serving its names listens (an adopted
    site's https port, say), and ``hold_file``: the mark an operator's
    restore or clean leaves, which keeps the self-heal beacon from undoing
    it until the next apply. Reads the live nginx tree; changes nothing.

    CLI Example:

    .. code-block:: bash

        salt 'odoo*' odoo_websocket.check_target
    """
    settings = _settings(saltenv)
    target = odoo_websocket_plan_nginx.live_verify(settings)
    # The beacon reads it: an operator's restore or clean holds healing off.
    hold = os.path.join(settings["backup"]["dir"], odoo_websocket_journal.HOLD)
    return dict(target, hold_file=hold)


@_minion
def verify(saltenv="base", target=None, timeout=5):
    """
    Prove, from this host, that a browser can use Odoo's real-time channel as
    the pillar configures it: a websocket handshake through nginx (Host: the
    first server name, Origin as a browser sends it) and a subscribe, or a long
    poll before 16.0, at every address where nginx may hand the site to
    another server block; and Odoo's ports refused on non-loopback addresses.
    TARGET: where to knock, as ``check_target`` returns it (the beacon passes
    the one it read); ``check_target``'s by default. TIMEOUT: seconds per
    step. Changes nothing.

    CLI Example:

    .. code-block:: bash

        salt 'odoo*' odoo_websocket.verify
    """
    target = target or odoo_websocket_plan_nginx.live_verify(_settings(saltenv))
    # Every Odoo instance's site (verify:targets), or the one the target names.
    verdict = odoo_websocket_verify.check_all(target.get("targets") or [target], timeout=timeout)
    verdict["summary"] = odoo_websocket_verify.summary(verdict)
    return verdict


@_minion
def audit(saltenv="base"):
    """
    Why the websocket fails (or Odoo is exposed), before changing anything:
    the live nginx tree (every include), odoo.conf, the compose file and the
    sockets listening on every interface, read against the pillar. Returns
    the findings, errors first, each with ``id``, ``severity`` (error,
    warning, info), ``file``, ``line``, ``why`` and ``fix`` (the pillar key
    or formula state that fixes it); an empty list on a clean host. Changes
    nothing.

    CLI Example:

    .. code-block:: bash

        salt 'odoo*' odoo_websocket.audit
        salt 'odoo*' odoo_websocket.audit --out=json
    """
    return odoo_websocket_audit.audit(_settings(saltenv))


@_minion
def backups(backup_dir=None):
    """
    The backup sets, newest first: id, created, label and paths.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.backups
    """
    return odoo_websocket_backups.BackupStore(_backup_dir(backup_dir)).listing()


@_minion
def backup_diff(backup_id, backup_dir=None):
    """
    What restoring BACKUP_ID would undo, as unified diffs (secrets masked).

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.backup_diff 20261126T140000123456-1234-abcdef
    """
    return odoo_websocket_backups.BackupStore(_backup_dir(backup_dir)).diff(backup_id)


def _put_back_args(settings, backup_dir, conf_file, binary, start, clean=False):
    """What restore and clean give the engine, from SETTINGS unless given: the
    backup folder, nginx, the restarts of the files they may put back and the
    paths the formula manages."""
    nginx = settings["nginx"]
    return {
        "backup_dir": backup_dir or settings["backup"]["dir"],
        "conf_file": conf_file or (nginx["conf_file"] if nginx["enabled"] else None),
        "binary": binary or nginx["binary"],
        "start": start,
        "restarts": odoo_websocket_concerns.restarts_by_path(settings, covered=clean),
        "managed": odoo_websocket_concerns.managed_paths(settings),
    }


@_minion
def restore(backup_id, backup_dir=None, conf_file=None, binary=None, start=True, saltenv="base"):
    """
    Put a backup set back: validated like any change (nginx's whole tree, from
    the pillar's nginx:conf_file unless CONF_FILE is given), Odoo restarted
    when odoo.conf or the compose file comes back, nginx reloaded, and a
    backup of what it replaces, so it can be undone.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.restore 20261126T140000123456-1234-abcdef
    """
    args = _put_back_args(_settings(saltenv), backup_dir, conf_file, binary, start)
    return odoo_websocket_restore.restore(backup_id, **args)


@_minion
def clean(backup_dir=None, conf_file=None, binary=None, start=True, saltenv="base"):
    """
    Take the formula off this host: its map drop-in, site and link removed,
    and what it adopted or changed (a host's own site, odoo.conf, the compose
    file) put back as its oldest kept backup set found them. One transaction,
    as a restore: validated (nginx's whole tree), Odoo restarted when its
    files come back, nginx reloaded, a backup set of what it replaces (so
    ``restore`` undoes it). The websocket is checked afterwards and reported
    in ``verdict``; it does not fail the clean (the host is back to what it
    was, which may be what broke it). A second run changes nothing.

    CLI Example:

    .. code-block:: bash

        salt 'odoo1' odoo_websocket.clean
    """
    settings = _settings(saltenv)
    args = _put_back_args(settings, backup_dir, conf_file, binary, start, clean=True)
    ret = odoo_websocket_restore.clean(**args)
    if ret["result"] and settings["verify"]["enabled"]:
        plan = {"verify": odoo_websocket_plan_nginx.live_verify(settings)}
        verdict = odoo_websocket_activation.verify(plan, wait=bool(ret["changed"]), timeout=10)
        ret["verdict"] = verdict
        ret["comment"] += " Now: " + odoo_websocket_activation.summary(verdict)
    return ret


@_minion
def recover(backup_dir=None, force=False, saltenv="base"):
    """
    Roll back a run that was killed mid-change (real runs do it first anyway).
    A file changed since that run is reported and left as it is, unless
    FORCE=True.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.recover
        salt '*' odoo_websocket.recover force=True
    """
    settings = _settings(saltenv)
    nginx = settings["nginx"]
    return odoo_websocket_restore.recover(
        backup_dir or settings["backup"]["dir"],
        conf_file=nginx["conf_file"] if nginx["enabled"] else None,
        binary=nginx["binary"],
        force=force,
        managed=odoo_websocket_concerns.managed_paths(settings),
    )


@_minion
def nginx_test(conf_file="/etc/nginx/nginx.conf", binary="/usr/sbin/nginx"):
    """
    ``nginx -t`` on the whole tree: ok, errors (file, line, message), output.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.nginx_test
    """
    return odoo_websocket_nginx.configtest(conf_file, binary)


@_minion
def stage_check(path, contents, conf_file="/etc/nginx/nginx.conf", binary="/usr/sbin/nginx"):
    """
    Would nginx accept the whole tree if PATH held CONTENTS? Checked on a
    private copy; nothing live is touched. ``ok`` is None when no private
    mount namespace can be made here.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket.stage_check /etc/nginx/sites-available/odoo "$(cat candidate.conf)"
    """
    change = {"path": os.path.abspath(path), "kind": "file", "data": contents}
    verdict = odoo_websocket_nginx_candidate.staged_check([change], conf_file, binary)
    verdict.pop("payload", None)
    return verdict
