"""
The change engine of the odoo_websocket formula: one host, one transaction.

Modelled on certbot's reverter. A run takes the host's lock, rolls back what a
killed run left (its journal), plans every change (compose ports, odoo.conf,
nginx map and site, an adopted site), validates all of them, saves what they
replace in one backup set, writes a journal naming it, swaps the files in,
restarts Odoo only when its files changed, reloads nginx, and proves the
websocket works. A failure at any step puts every file of the set back and
restarts and reloads again, so the host serves its old configuration.

Every function that writes a file is private: operators reach backups and
restore through ``odoo_websocket.*``, states through :py:func:`apply`.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import tempfile
import time

from salt.exceptions import CommandExecutionError

__virtualname__ = "odoo_websocket_changes"

DEFAULT_BACKUP_DIR = "/var/backups/odoo_websocket"
_JOURNAL = "journal.json"
_LOCK = "lock"
_MARK = ".odoo_websocket"
# Fault injection for the crash tests: ODOO_WEBSOCKET_FAULT=kill:<step>.
_FAULT_ENV = "ODOO_WEBSOCKET_FAULT"


def __virtual__():
    return __virtualname__


def _nginx(function):
    """An odoo_websocket_nginx function (nginx inspection and control)."""
    return __salt__[f"odoo_websocket_nginx.{function}"]


def _fault(step):
    if os.environ.get(_FAULT_ENV) == f"kill:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


# -- files: snapshots and atomic writes (private) ---------------------------


def _snapshot(path):
    """What PATH is now: absent, a link and its target, or a file with its
    bytes, mode and owner."""
    if os.path.islink(path):
        return {"path": path, "kind": "link", "target": os.readlink(path)}
    if not os.path.exists(path):
        return {"path": path, "kind": "absent"}
    stat = os.stat(path)
    with open(path, "rb") as handle:
        data = handle.read()
    return {
        "path": path,
        "kind": "file",
        "data": data,
        "mode": stat.st_mode & 0o7777,
        "uid": stat.st_uid,
        "gid": stat.st_gid,
    }


def _fsync_dir(path):
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_file(path, data, mode, uid, gid):
    """A temporary file in the same folder, fsynced, given its mode and owner
    on the descriptor, then renamed over PATH: the old file or the new one,
    never half of one."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=".odoo_websocket.", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if uid is not None or gid is not None:
                os.fchown(handle.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path)


def _replace_symlink(path, target):
    tmp = os.path.join(os.path.dirname(path), f".odoo_websocket.{os.getpid()}.link")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    _fsync_dir(path)


def _apply_change(change):
    """Make the change's path what it says. A replaced file keeps its mode and
    owner, a new one gets 0644, unless the change names them (a restore does)."""
    path = change["path"]
    if change["kind"] == "absent":
        if os.path.lexists(path):
            os.unlink(path)
            _fsync_dir(path)
    elif change["kind"] == "link":
        if os.path.lexists(path) and not os.path.islink(path):
            os.unlink(path)
        _replace_symlink(path, change["target"])
    else:
        mode, uid, gid = 0o644, None, None
        if os.path.isfile(path) and not os.path.islink(path):
            stat = os.stat(path)
            mode, uid, gid = stat.st_mode & 0o7777, stat.st_uid, stat.st_gid
        _replace_file(
            path,
            change["data"],
            change.get("mode", mode),
            change.get("uid", uid),
            change.get("gid", gid),
        )


# -- backup sets, lock and journal -------------------------------------------


def _write_private(path, data):
    """A new 0600 file, fsynced (backups may hold odoo.conf secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _unsafe_folder(backup_dir):
    """Why BACKUP_DIR cannot hold the lock, journal and backups, or None: it
    and every parent must be owned by root (or this user) and writable by no
    one else (a sticky parent like /tmp is fine), and it may not be a link."""
    path = os.path.abspath(backup_dir)
    if os.path.islink(path):
        return f"{path} is a symbolic link"
    while True:
        stat = os.lstat(path)
        if stat.st_uid not in (0, os.geteuid()):
            return f"{path} is owned by uid {stat.st_uid}, not root"
        sticky_parent = path != os.path.abspath(backup_dir) and stat.st_mode & 0o1000
        if stat.st_mode & 0o022 and not sticky_parent:
            return f"{path} is writable by group or others (mode {stat.st_mode & 0o7777:o})"
        if path == os.path.dirname(path):
            return None
        path = os.path.dirname(path)


@contextlib.contextmanager
def _locked(backup_dir, timeout, dry=False):
    """The host's lock. DRY (test=True): never create the folder or the lock,
    nor write the pid, just wait for a real run to finish."""
    if dry and not os.path.isdir(backup_dir):
        yield
        return
    try:
        # A new folder is private; an existing one keeps its mode. exist_ok:
        # two first runs may race to create it.
        os.makedirs(backup_dir, mode=0o700, exist_ok=True)
        unsafe = _unsafe_folder(backup_dir)
        if unsafe:
            raise OSError(f"{unsafe}: another user could plant or swap files there")
        # O_NOFOLLOW: a planted "lock" symlink must not lead us to another file.
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
        if not dry:  # the mark that the formula's sets live here
            os.close(os.open(os.path.join(backup_dir, _MARK), flags, 0o600))
        fd = os.open(os.path.join(backup_dir, _LOCK), os.O_RDONLY if dry else flags, 0o600)
    except OSError as exc:
        raise CommandExecutionError(f"cannot use backup folder {backup_dir}: {exc}") from exc
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    raise CommandExecutionError(
                        f"another odoo_websocket run holds {os.path.join(backup_dir, _LOCK)} "
                        f"(pid {holder}); gave up after {timeout} s"
                    ) from None
                time.sleep(0.1)
        with contextlib.suppress(OSError):  # who holds it, for the next run's message
            if dry:
                raise OSError
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_backup(backup_dir, paths, label, secret_keys=()):
    """Save what PATHS are now; return the new set's id. Nothing live is touched."""
    set_id = __salt__["odoo_websocket_backups.new_id"]()
    folder = os.path.join(backup_dir, set_id)
    os.mkdir(folder, 0o700)
    try:
        entries = []
        for index, path in enumerate(paths):
            snap = _snapshot(path)
            entry = {key: value for key, value in snap.items() if key != "data"}
            if snap["kind"] == "file":
                entry["blob"] = f"{index}.data"
                entry["sha256"] = hashlib.sha256(snap["data"]).hexdigest()
                _write_private(os.path.join(folder, entry["blob"]), snap["data"])
            entries.append(entry)
        manifest = {
            "id": set_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "label": label,
            "secret_keys": sorted(set(secret_keys)),
            "files": entries,
        }
        _write_private(os.path.join(folder, "manifest.json"), json.dumps(manifest).encode())
        _fsync_dir(os.path.join(folder, "manifest.json"))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return set_id


def _restore_set(backup_dir, set_id):
    for change in reversed(__salt__["odoo_websocket_backups.changes"](set_id, backup_dir)):
        _apply_change(change)


def _journal(backup_dir):
    return os.path.join(backup_dir, _JOURNAL)


def _write_journal(backup_dir, journal):
    _replace_file(_journal(backup_dir), json.dumps(journal), 0o600, None, None)


def _drop_journal(backup_dir):
    os.unlink(_journal(backup_dir))
    _fsync_dir(_journal(backup_dir))


def _pending(backup_dir):
    """The journal a killed run left, or None."""
    try:
        with open(_journal(backup_dir), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except ValueError:
        return {"torn": True}


def _fingerprint(change_or_path):
    """What a path holds (or a change would make it hold), in a few bytes:
    absent, a link and its target, or the sha256 of a file's bytes."""
    if isinstance(change_or_path, str):
        change_or_path = _snapshot(change_or_path)
    kind = change_or_path["kind"]
    if kind == "file":
        data = change_or_path["data"]
        data = data.encode("utf-8") if isinstance(data, str) else data
        return "sha256:" + hashlib.sha256(data).hexdigest()
    return f"link:{change_or_path['target']}" if kind == "link" else "absent"


def _set_aside(backup_dir, why):
    """A journal recovery cannot trust: kept for a person, out of the way."""
    aside = _journal(backup_dir) + time.strftime(".%Y%m%dT%H%M%SZ.aside", time.gmtime())
    os.rename(_journal(backup_dir), aside)
    return f"WARNING: the journal of an interrupted run was {why}: moved aside to {aside}; " \
        "check the files it names by hand."  # fmt: skip


def _outside(paths, managed):
    """The PATHS that are none of MANAGED (files, or folders ending in /)."""

    def inside(path):
        return any(path == m or (m.endswith("/") and path.startswith(m)) for m in managed)

    return [path for path in paths if not inside(os.path.abspath(path))]


def _recover_locked(backup_dir, nginx=None, force=False, managed=None):
    """Finish what a dead run left: put back, from its backup set, each path
    that still holds what the run wrote (or had not reached yet); a path
    changed since (an operator's hotfix) is reported and left, unless FORCE.
    NGINX (the caller's settings, never the journal's) is reloaded. Returns a
    note and the concerns the dead run had restarted (the caller restarts
    them again: it knows their commands from the pillar)."""
    journal = _pending(backup_dir)
    if journal is None:
        return "", []
    if journal.get("torn"):
        return _set_aside(backup_dir, "unreadable"), []
    try:
        changes = __salt__["odoo_websocket_backups.changes"](journal["backup"], backup_dir)
    except (CommandExecutionError, KeyError, OSError) as exc:
        return _set_aside(backup_dir, f"unusable ({exc})"), []
    planned, kept = journal.get("paths", {}), []
    untrusted = _outside([c["path"] for c in changes], managed) if managed is not None else []
    for change in reversed(changes):
        if change["path"] in untrusted:
            continue
        expected = planned.get(change["path"], {})
        if force or _fingerprint(change["path"]) in (expected.get("before"), expected.get("after")):
            _apply_change(change)
        else:
            kept.append(change["path"])
    if nginx and _nginx("configtest")(nginx["conf_file"], nginx["binary"])["ok"]:
        if _nginx("pid")(nginx["conf_file"]) is not None:
            _nginx("activate")(nginx["conf_file"], nginx["binary"])
    _drop_journal(backup_dir)
    note = (
        f"An interrupted run (pid {journal.get('pid')}, {journal.get('started')}) was rolled "
        f"back from backup {journal['backup']}."
    )
    if untrusted:
        note += f" Not restored, not a path the formula manages: {', '.join(untrusted)}."
    if kept:
        note += (
            f" Left as they are, changed since that run: {', '.join(kept)} (recover "
            "force=True puts them back too)."
        )
    return note, journal.get("restarted", [])


def _prune(backup_dir, keep):
    sets = __salt__["odoo_websocket_backups.sets"](backup_dir)
    for name in sets[: max(0, len(sets) - keep)]:
        shutil.rmtree(os.path.join(backup_dir, name), ignore_errors=True)


# -- the transaction -----------------------------------------------------------


def _within(path, folder):
    return os.path.commonpath([os.path.abspath(path), folder]) == folder


def _failed(ret, notes, message):
    ret["result"] = False
    ret["comment"] = " ".join(notes + [message])
    return ret


def _validate(plan, changes, notes, state):
    """Everything checked before anything live is touched. Returns a problem."""
    nginx = plan.get("nginx")
    if not nginx:
        return None
    conf_dir = os.path.dirname(os.path.abspath(nginx["conf_file"]))
    # The nginx concern's files (all of them: one outside the folder makes
    # staging impossible); a restore's set has no concerns: its nginx files.
    candidate = [
        c
        for c in changes
        if c.get("concern") == "nginx" or ("concern" not in c and _within(c["path"], conf_dir))
    ]
    verdict = _nginx("candidate_check")(nginx, candidate)
    state["staged"], state["nginx_changed"] = verdict["staged"], bool(candidate)
    notes.extend(verdict["notes"])
    return verdict["problem"]


def _verify(plan, wait):
    verify = plan.get("verify")
    if not verify or not verify["enabled"]:
        return None
    args = {
        key: verify[key]
        for key in ("server_name", "address", "port", "tls", "realtime_path", "odoo_ports")
    }
    if wait:
        return __salt__["odoo_websocket_verify.wait"](deadline=verify["timeout"], **args)
    return __salt__["odoo_websocket_verify.check"](**args)


def _restart(restart):
    """Run a restart/recreate command from the pillar; its failure fails the run."""
    done = __salt__["cmd.run_all"](restart["cmd"], cwd=restart.get("cwd") or None,
                                   python_shell=True, timeout=600)  # fmt: skip
    if done["retcode"] != 0:
        last = ((done["stderr"] or done["stdout"]).strip().splitlines() or [""])[-1]
        raise CommandExecutionError(f"{restart['what']} failed (exit {done['retcode']}): {last}")
    return f"{restart['what']}: done."


def _due_restarts(plan, changes):
    concerns = {change.get("concern") for change in changes}
    return [
        r
        for r in plan.get("restarts", [])
        if r["concern"] in concerns and r.get("unless") not in concerns
    ]


def _go_live(plan, changes, notes, state):
    """Write, check live, restart what changed, reload nginx, verify. Returns
    a problem (the caller rolls everything back) or None."""
    try:
        return _go_live_steps(plan, changes, notes, state)
    except Exception as exc:  # pylint: disable=broad-except
        # Whatever broke (a timeout, a full disk), the host goes back as it was.
        return f"{type(exc).__name__}: {exc}"


def _go_live_steps(plan, changes, notes, state):
    nginx = plan.get("nginx")
    for index, change in enumerate(changes):
        _apply_change(change)
        _fault(f"write-{index}")
    if nginx:
        after = _nginx("configtest")(nginx["conf_file"], nginx["binary"])
        if not after["ok"]:
            return _nginx("format_errors")(after["errors"])
        if state["staged"] is None and "site_file" in nginx:
            problem = _nginx("site_problems")(nginx, _nginx("tree")(nginx["conf_file"]))
            if problem:
                return problem
    _fault("validated")
    try:
        for restart in _due_restarts(plan, changes):
            state["restarted"].append(restart)
            # Recorded first: a run killed mid-restart is restarted again on recovery.
            state["journal"]["restarted"] = [r["concern"] for r in state["restarted"]]
            _write_journal(state["backup_dir"], state["journal"])
            notes.append(_restart(restart))
        if nginx and state["nginx_changed"]:
            state["nginx"] = True
            activated = _nginx("activate")(**_nginx_args(nginx))
            notes.append(activated + ".")
            _fault("activated")
            if activated.startswith(("nginx not reloaded", "nginx is not running")):
                notes.append("Not verified: the new nginx configuration is not live.")
                return None
    except CommandExecutionError as exc:
        return str(exc)
    verdict = state["verdict"] = _verify(plan, wait=True)
    if verdict and not verdict["ok"] and plan["verify"]["rollback"]:
        return "The websocket check failed after the change: " + _summary(verdict)
    return None


def _nginx_args(nginx):
    keys = ("conf_file", "binary", "reload", "restart", "start")
    return {key: nginx[key] for key in keys if key in nginx}


def _summary(verdict):
    return __salt__["odoo_websocket_verify.summary"](verdict)


def _roll_back(plan, backup_dir, set_id, state):
    """Put every file of the set back, then restart and reload onto it."""
    _restore_set(backup_dir, set_id)
    lines = [f"Every file of the run was restored from backup {set_id}."]
    for restart in state["restarted"]:
        try:
            _restart(restart)
            lines.append(f"{restart['what']} again, onto the old configuration.")
        except CommandExecutionError as exc:
            lines.append(f"{exc} (while restoring)")
    nginx = plan.get("nginx")
    if nginx and state["nginx"]:
        if _nginx("configtest")(nginx["conf_file"], nginx["binary"])["ok"]:
            args = dict(_nginx_args(nginx), start=False, restart=False, reload=True)
            lines.append(_nginx("activate")(**args) + " (old configuration).")
    if state.get("verdict"):
        verify = dict(plan["verify"], timeout=min(plan["verify"]["timeout"], 10))
        after = _verify(dict(plan, verify=verify), wait=True)
        lines.append("After the restore: " + _summary(after))
    return "\n".join(lines)


def _transaction(plan, backup, test=False, label=""):
    """Validate, back up, write, activate and verify PLAN as one unit. Runs
    under the lock. Returns ``{result, comment, changed, backup, verdict}``."""
    ret = {"result": True, "comment": "", "changed": [], "backup": None, "verdict": None}
    notes = list(plan.get("notes", []))
    if plan.get("errors"):
        return _failed(ret, notes, "Nothing was changed:\n" + "\n".join(plan["errors"]))
    changes = [
        change for change in plan["changes"] if __salt__["odoo_websocket_plan.differs"](change)
    ]
    state = {"staged": None, "nginx_changed": False, "restarted": [], "nginx": False,
             "verdict": None}  # fmt: skip
    problem = _validate(plan, changes, notes, state)
    if problem:
        return _failed(ret, notes, problem)
    ret["changed"] = [change["path"] for change in changes]
    if test or not changes:
        if not changes:
            notes.append("Nothing to change.")
        verdict = ret["verdict"] = _verify(plan, wait=False)
        if verdict:
            notes.append(("Now: " if changes else "") + _summary(verdict))
        if test and changes:
            ret["result"] = None
        elif verdict and not verdict["ok"]:
            ret["result"] = False
        ret["comment"] = " ".join(notes)
        return ret
    return _commit(ret, plan, changes, backup, label, notes, state)


def _commit(ret, plan, changes, backup, label, notes, state):
    backup_dir = backup["dir"]
    try:
        set_id = _write_backup(backup_dir, ret["changed"], label, plan.get("secret_keys", ()))
    except OSError as exc:
        ret["changed"] = []
        return _failed(ret, notes, f"Could not write the backup, nothing was touched: {exc}")
    ret["backup"] = set_id
    _fault("backup")
    journal = {
        "backup": set_id,
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # What each path held and will hold: recovery restores only those two.
        "paths": {c["path"]: {"before": _fingerprint(c["path"]), "after": _fingerprint(c)}
                  for c in changes},
    }  # fmt: skip
    try:
        _write_journal(backup_dir, journal)
    except OSError as exc:
        shutil.rmtree(os.path.join(backup_dir, set_id), ignore_errors=True)
        ret["changed"], ret["backup"] = [], None
        return _failed(ret, notes, f"Could not write the journal, nothing was touched: {exc}")
    _fault("journal")
    state.update(journal=journal, backup_dir=backup_dir)
    problem = _go_live(plan, changes, notes, state)
    ret["verdict"] = state["verdict"]
    if problem:
        ret["changed"] = []
        try:
            restored = _roll_back(plan, backup_dir, set_id, state)
        except Exception as exc:  # pylint: disable=broad-except
            # The journal stays: the next run (or odoo_websocket.recover) retries.
            return _failed(ret, notes, f"The change failed: {problem}\nROLLBACK FAILED: {exc}; "
                           "the journal is kept, run odoo_websocket.recover")  # fmt: skip
        _drop_journal(backup_dir)
        return _failed(ret, notes, f"The change failed: {problem}\n{restored}")
    if state["verdict"]:
        notes.append(_summary(state["verdict"]))
        ret["result"] = state["verdict"]["ok"]
    _drop_journal(backup_dir)
    _prune(backup_dir, backup["keep"])
    notes.append(f"Backup: {set_id}.")
    ret["comment"] = " ".join(notes)
    return ret


def _pending_note(backup_dir):
    journal = _pending(backup_dir)
    if not journal:
        return ""
    return (
        f"A killed run left a journal (pid {journal.get('pid')}, backup "
        f"{journal.get('backup')}): the next real run rolls it back first."
    )


def apply(settings, parts, saltenv="base", test=False):
    """
    Bring the host to what SETTINGS say, as one transaction: the concerns in
    PARTS (``{"compose": {}, "odoo_conf": {}, "nginx": {"site_source": [...],
    "map_source": [...]}}``) are planned by ``odoo_websocket_plan.build``,
    validated together, backed up in one set, written, activated and verified;
    any failure restores the whole set. The states call this; operators run
    ``state.apply odoo_websocket``.

    Returns ``{result, comment, changed, backup, verdict, diffs}``.

    CLI Example:

    .. code-block:: bash

        salt '*' state.apply odoo_websocket
    """
    backup = settings["backup"]
    with _locked(backup["dir"], backup["lock_timeout"], dry=test):
        note, restarted = _pending_note(backup["dir"]), []
        if not test:
            nginx = settings["nginx"] if settings["nginx"]["enabled"] else None
            managed = __salt__["odoo_websocket_plan.managed_paths"](settings)
            note, restarted = _recover_locked(backup["dir"], nginx=nginx, managed=managed)
        plan = __salt__["odoo_websocket_plan.build"](settings, parts, saltenv)
        for restart in plan["restarts"]:
            if restart["concern"] in restarted:  # the dead run restarted it
                note += " " + _restart(restart)
        label = "odoo_websocket: " + ", ".join(sorted(parts))
        ret = _transaction(plan, backup, test=test, label=label)
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

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_changes.recover conf_file=/etc/nginx/nginx.conf
    """
    if not os.path.exists(_journal(backup_dir)):
        return ""
    nginx = {"conf_file": conf_file, "binary": binary} if conf_file else None
    with _locked(backup_dir, lock_timeout):
        note, restarted = _recover_locked(backup_dir, nginx=nginx, force=force, managed=managed)
    if restarted:
        note += (
            f" The interrupted run had restarted {', '.join(restarted)}: restart it again "
            "(a state.apply does) so that it reads the restored files."
        )
    return note


def pending(backup_dir=DEFAULT_BACKUP_DIR):
    """
    What a killed run left (its journal), without touching anything.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_changes.pending
    """
    return _pending_note(backup_dir)


def restore(backup_id, backup_dir=DEFAULT_BACKUP_DIR, conf_file=None, binary="/usr/sbin/nginx",
            keep=10, lock_timeout=60, start=True, restarts=None, managed=None):  # fmt: skip
    """
    Put a backup set back through the same transaction (checksums checked,
    nginx validated staged and live when CONF_FILE is given, reloaded, the
    RESTARTS run for the files they name: ``[{"path", "what", "cmd", "cwd"}]``;
    a set naming a path outside MANAGED is refused whole),
    with a backup set of what it replaces, so a restore can itself be undone.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_changes.restore 20261126T140000123456-1234-abcdef \\
            conf_file=/etc/nginx/nginx.conf
    """
    restarts = [dict(r, concern=r["path"]) for r in restarts or []]
    with _locked(backup_dir, lock_timeout):
        nginx = {"conf_file": conf_file, "binary": binary, "start": start} if conf_file else None
        note, _ = _recover_locked(backup_dir, nginx=nginx, managed=managed)
        changes = __salt__["odoo_websocket_backups.changes"](backup_id, backup_dir)
        outside = _outside([c["path"] for c in changes], managed) if managed is not None else []
        if outside:
            why = f"Backup {backup_id} names paths the formula does not manage: "
            ret = {"result": False, "changed": [], "backup": None, "verdict": None,
                   "comment": why + ", ".join(outside) + "; nothing was touched."}  # fmt: skip
            return ret
        for change in changes:  # a file a restart follows is that restart's concern
            if any(r["path"] == change["path"] for r in restarts):
                change["concern"] = change["path"]
        manifest = __salt__["odoo_websocket_backups.manifest"](backup_id, backup_dir)
        plan = {"changes": changes, "nginx": nginx, "restarts": restarts,
                "secret_keys": manifest["secret_keys"]}  # fmt: skip
        ret = _transaction(plan, {"dir": backup_dir, "keep": keep}, label=f"restore of {backup_id}")
    ret["comment"] = f"{note} {ret['comment']}".strip()
    return ret
