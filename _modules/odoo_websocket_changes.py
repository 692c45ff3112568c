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
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

from salt.exceptions import CommandExecutionError

__virtualname__ = "odoo_websocket_changes"

DEFAULT_BACKUP_DIR = "/var/backups/odoo_websocket"
_JOURNAL = "journal.json"
_LOCK = "lock"
_SET_NAME = re.compile(r"[0-9]{8}T[0-9]{12}-[0-9]+-[0-9a-f]{6}")
# Fault injection for the crash tests: ODOO_WEBSOCKET_FAULT=kill:<step>.
_FAULT_ENV = "ODOO_WEBSOCKET_FAULT"


def __virtual__():
    return __virtualname__


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


def differs(change):
    """
    Whether CHANGE (``{path, kind, data|target}``) would change its path.
    Read only.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_changes.differs '{"path": "/etc/x", "kind": "absent"}'
    """
    path = change["path"]
    if change["kind"] == "absent":
        return os.path.lexists(path)
    if change["kind"] == "link":
        return not (os.path.islink(path) and os.readlink(path) == change["target"])
    if os.path.islink(path) or not os.path.isfile(path):
        return True
    stat = os.stat(path)
    wanted = [change.get(k) for k in ("mode", "uid", "gid")]
    actual = [stat.st_mode & 0o7777, stat.st_uid, stat.st_gid]
    if any(w is not None and w != a for w, a in zip(wanted, actual, strict=True)):
        return True
    data = change["data"]
    with open(path, "rb") as handle:
        return handle.read() != (data.encode("utf-8") if isinstance(data, str) else data)


# -- backup sets, lock and journal -------------------------------------------


def _write_private(path, data):
    """A new 0600 file, fsynced (backups may hold odoo.conf secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def _locked(backup_dir, timeout):
    try:
        os.makedirs(backup_dir, mode=0o700, exist_ok=True)
        os.chmod(backup_dir, 0o700)
        # O_NOFOLLOW: a planted "lock" symlink must not lead us to another file.
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
        fd = os.open(os.path.join(backup_dir, _LOCK), flags, 0o600)
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
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _set_dir(backup_dir, set_id):
    if not _SET_NAME.fullmatch(str(set_id)):
        raise CommandExecutionError(f"no backup set named {set_id!r}")
    return os.path.join(backup_dir, set_id)


def _sets(backup_dir):
    """The formula's own backup sets, oldest first: nothing else in the folder."""
    if not os.path.isdir(backup_dir):
        return []
    return sorted(
        name
        for name in os.listdir(backup_dir)
        if _SET_NAME.fullmatch(name)
        and os.path.isfile(os.path.join(backup_dir, name, "manifest.json"))
    )


def _read_manifest(backup_dir, set_id):
    try:
        with open(os.path.join(_set_dir(backup_dir, set_id), "manifest.json"), "rb") as handle:
            return json.loads(handle.read())
    except FileNotFoundError:
        raise CommandExecutionError(f"no backup set {set_id!r} in {backup_dir}") from None


def _read_blob(backup_dir, set_id, entry):
    """A saved file's bytes, checked against the manifest's sha256."""
    with open(os.path.join(_set_dir(backup_dir, set_id), entry["blob"]), "rb") as handle:
        data = handle.read()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CommandExecutionError(f"backup {set_id}: {entry['path']} is corrupt")
    return data


def _set_changes(backup_dir, set_id):
    """A backup set as the change set that puts it back."""
    manifest = _read_manifest(backup_dir, set_id)
    changes = []
    for entry in manifest["files"]:
        change = {
            key: entry[key]
            for key in ("path", "kind", "target", "mode", "uid", "gid")
            if key in entry
        }
        if entry["kind"] == "file":
            change["data"] = _read_blob(backup_dir, set_id, entry)
        changes.append(change)
    return manifest, changes


def _write_backup(backup_dir, paths, label, secret_keys=()):
    """Save what PATHS are now; return the new set's id. Nothing live is touched."""
    now = time.time()  # UTC ids sort by creation time, whatever the DST
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}"
    set_id = f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    folder = _set_dir(backup_dir, set_id)
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
    _, changes = _set_changes(backup_dir, set_id)
    for change in reversed(changes):
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


def _recover_locked(backup_dir):
    """Finish what a dead run left: put its backup set back. Returns a note."""
    journal = _pending(backup_dir)
    if journal is None:
        return ""
    if journal.get("torn"):  # written atomically: a torn one never existed
        _drop_journal(backup_dir)
        return ""
    _restore_set(backup_dir, journal["backup"])
    nginx = journal.get("nginx")
    if (
        nginx
        and __salt__["odoo_websocket_nginx.configtest"](nginx["conf_file"], nginx["binary"])["ok"]
    ):
        if __salt__["odoo_websocket_nginx.pid"](nginx["conf_file"]) is not None:
            __salt__["odoo_websocket_nginx.activate"](nginx["conf_file"], nginx["binary"])
    _drop_journal(backup_dir)
    return (
        f"An interrupted run (pid {journal.get('pid')}, {journal.get('started')}) was rolled "
        f"back from backup {journal['backup']}."
    )


def _prune(backup_dir, keep):
    sets = _sets(backup_dir)
    for name in sets[: max(0, len(sets) - keep)]:
        shutil.rmtree(os.path.join(backup_dir, name), ignore_errors=True)


# -- the transaction -----------------------------------------------------------


def _within(path, folder):
    return os.path.commonpath([os.path.abspath(path), folder]) == folder


def _failed(ret, notes, message):
    ret["result"] = False
    ret["comment"] = " ".join(notes + [message])
    return ret


def _site_problem(nginx, payload):
    """After the change, nginx must load the formula's map and site, and no
    other server block may answer for its names (nginx would ignore ours)."""
    loaded = __salt__["odoo_websocket_nginx.loaded_files"](payload)
    problems = [
        f"{nginx[key]} is not loaded by {nginx['conf_file']} (set nginx:{key} to a file it "
        "includes, e.g. in conf.d/ where nginx.conf includes only conf.d/*.conf)"
        for key in ("map_file", "site_file")
        if os.path.realpath(nginx[key]) not in loaded
    ]
    site = os.path.realpath(nginx["site_file"])
    if nginx.get("existing_site") == "keep":
        return "\n".join(problems)
    for block in __salt__["odoo_websocket_nginx.answering"](
        payload, nginx["names"], nginx["ports"]
    ):
        if block["real"] != site:
            problems.append(
                f"{block['file']}:{block['line']} still answers for {', '.join(block['names'])}: "
                "nginx would ignore the formula's site"
            )
    return "\n".join(problems)


def _validate(plan, changes, notes, state):
    """Everything checked before anything live is touched. Returns a problem."""
    nginx = plan.get("nginx")
    if not nginx:
        return None
    conf_file, binary = nginx["conf_file"], nginx["binary"]
    if not os.access(binary, os.X_OK):
        return f"nginx binary {binary} not found; nothing was touched."
    before = __salt__["odoo_websocket_nginx.configtest"](conf_file, binary)
    if not before["ok"]:
        return (
            "The nginx configuration was already invalid before this change; nothing was "
            "touched. Fix it first:\n"
            + __salt__["odoo_websocket_nginx.format_errors"](before["errors"])
        )
    conf_dir = os.path.dirname(os.path.abspath(conf_file))
    # The nginx concern's files (all of them: one outside the folder makes
    # staging impossible); a restore's set has no concerns: its nginx files.
    staged_changes = [
        c
        for c in changes
        if c.get("concern") == "nginx" or ("concern" not in c and _within(c["path"], conf_dir))
    ]
    if not staged_changes:
        return None
    staged = __salt__["odoo_websocket_nginx.staged_check"](staged_changes, conf_file, binary)
    state["staged"] = staged["ok"]
    if staged["ok"] is False:
        return (
            "nginx would reject the new configuration (staged check on a copy of the whole "
            "tree); nothing was touched:\n"
            + __salt__["odoo_websocket_nginx.format_errors"](staged["errors"])
        )
    if staged["ok"] is None:
        notes.append(f"Staged check not possible ({staged['output']}).")
        return None
    notes.append("Staged check: nginx accepts the new configuration.")
    notes.extend(
        f"nginx warns: {w}." for w in __salt__["odoo_websocket_nginx.warnings"](staged["output"])
    )
    if "site_file" in nginx:
        problem = _site_problem(nginx, staged["payload"])
        if problem:
            return problem + "\nNothing was touched."
    return None


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
    proc = subprocess.run(
        restart["cmd"],
        shell=True,
        cwd=restart.get("cwd") or None,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        last = ((proc.stderr or proc.stdout).strip().splitlines() or [""])[-1]
        raise CommandExecutionError(f"{restart['what']} failed (exit {proc.returncode}): {last}")
    return f"{restart['what']}: done."


def _due_restarts(plan, changes):
    concerns = {change.get("concern") for change in changes}
    return [
        r
        for r in plan.get("restarts", [])
        if r["concern"] in concerns and r.get("unless") not in concerns
    ]


def _go_live(plan, changes, notes, state):
    """Write, check live, restart what changed, reload nginx, verify."""
    nginx = plan.get("nginx")
    try:
        for index, change in enumerate(changes):
            _apply_change(change)
            _fault(f"write-{index}")
    except OSError as exc:
        return f"Writing failed: {exc}"
    if nginx:
        after = __salt__["odoo_websocket_nginx.configtest"](nginx["conf_file"], nginx["binary"])
        if not after["ok"]:
            return __salt__["odoo_websocket_nginx.format_errors"](after["errors"])
        if state.get("staged") is None and "site_file" in nginx:
            problem = _site_problem(
                nginx, __salt__["odoo_websocket_nginx.tree"](nginx["conf_file"])
            )
            if problem:
                return problem
    _fault("validated")
    try:
        for restart in _due_restarts(plan, changes):
            state["restarted"].append(restart)
            notes.append(_restart(restart))
        if nginx:
            state["nginx"] = True
            notes.append(__salt__["odoo_websocket_nginx.activate"](**_nginx_args(nginx)) + ".")
    except CommandExecutionError as exc:
        return str(exc)
    _fault("activated")
    verdict = _verify(plan, wait=True)
    state["verdict"] = verdict
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
        if __salt__["odoo_websocket_nginx.configtest"](nginx["conf_file"], nginx["binary"])["ok"]:
            args = dict(_nginx_args(nginx), start=False, restart=False, reload=True)
            lines.append(
                __salt__["odoo_websocket_nginx.activate"](**args) + " (old configuration)."
            )
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
    changes = [change for change in plan["changes"] if differs(change)]
    state = {"staged": None, "restarted": [], "nginx": False, "verdict": None}
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
    nginx = plan.get("nginx")
    journal = {
        "backup": set_id,
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nginx": {k: nginx[k] for k in ("conf_file", "binary")} if nginx else None,
    }
    try:
        _write_journal(backup_dir, journal)
    except OSError as exc:
        shutil.rmtree(_set_dir(backup_dir, set_id), ignore_errors=True)
        ret["changed"], ret["backup"] = [], None
        return _failed(ret, notes, f"Could not write the journal, nothing was touched: {exc}")
    _fault("journal")
    problem = _go_live(plan, changes, notes, state)
    ret["verdict"] = state["verdict"]
    if problem:
        restored = _roll_back(plan, backup_dir, set_id, state)
        _drop_journal(backup_dir)
        ret["changed"] = []
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
    with _locked(backup["dir"], backup["lock_timeout"]):
        note = _pending_note(backup["dir"]) if test else _recover_locked(backup["dir"])
        plan = __salt__["odoo_websocket_plan.build"](settings, parts, saltenv)
        label = "odoo_websocket: " + ", ".join(sorted(parts))
        ret = _transaction(plan, backup, test=test, label=label)
    if note:
        ret["comment"] = f"{note} {ret['comment']}"
    ret["diffs"] = {path: plan["diffs"][path] for path in ret["changed"] if path in plan["diffs"]}
    return ret


def recover(backup_dir=DEFAULT_BACKUP_DIR, lock_timeout=60):
    """
    Roll back a change that a killed run left half done (its journal names the
    backup set). Real runs do this first, under the lock. Returns what it did.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_changes.recover
    """
    if not os.path.exists(_journal(backup_dir)):
        return ""
    with _locked(backup_dir, lock_timeout):
        return _recover_locked(backup_dir)


def pending(backup_dir=DEFAULT_BACKUP_DIR):
    """
    What a killed run left (its journal), without touching anything.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_changes.pending
    """
    return _pending_note(backup_dir)


def backups(backup_dir=DEFAULT_BACKUP_DIR):
    """
    The backup sets, newest first: id, created, label and paths. Read only.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_changes.backups
    """
    result = []
    for name in reversed(_sets(backup_dir)):
        manifest = _read_manifest(backup_dir, name)
        result.append(
            {
                "id": name,
                "created": manifest["created"],
                "label": manifest["label"],
                "paths": [entry["path"] for entry in manifest["files"]],
            }
        )
    return result


def _as_text(change):
    if change["kind"] == "file":
        return change["data"].decode("utf-8", "replace")
    return f"-> {change['target']}\n" if change["kind"] == "link" else ""


def backup_diff(backup_id, backup_dir=DEFAULT_BACKUP_DIR):
    """
    Unified diff from a backup set to the live files (what restoring it would
    undo), secrets masked. Read only.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_changes.backup_diff 20261126T140000123456-1234-abcdef
    """
    manifest, changes = _set_changes(backup_dir, backup_id)
    mask = __salt__["odoo_conf.mask"]
    diffs = {}
    for change in changes:
        live = _snapshot(change["path"])
        if live["kind"] == "file":
            live["data"] = live["data"]
        old = mask(_as_text(change), manifest["secret_keys"])
        new = mask(_as_text(live), manifest["secret_keys"])
        diff = __salt__["odoo_websocket_plan.diff"](old, new, change["path"])
        if diff:
            diffs[change["path"]] = diff
    return diffs


def restore(
    backup_id,
    backup_dir=DEFAULT_BACKUP_DIR,
    conf_file=None,
    binary="/usr/sbin/nginx",
    keep=10,
    lock_timeout=60,
    start=True,
):
    """
    Put a backup set back through the same transaction (checksums checked,
    nginx validated staged and live when CONF_FILE is given, reloaded), with a
    backup set of what it replaces, so a restore can itself be undone.

    CLI Example:

    .. code-block:: bash

        salt '*' odoo_websocket_changes.restore 20261126T140000123456-1234-abcdef \\
            conf_file=/etc/nginx/nginx.conf
    """
    with _locked(backup_dir, lock_timeout):
        note = _recover_locked(backup_dir)
        manifest, changes = _set_changes(backup_dir, backup_id)
        nginx = {"conf_file": conf_file, "binary": binary, "start": start} if conf_file else None
        plan = {"changes": changes, "nginx": nginx, "secret_keys": manifest["secret_keys"]}
        backup = {"dir": backup_dir, "keep": keep}
        ret = _transaction(plan, backup, label=f"restore of {backup_id}")
    ret["comment"] = f"{note} {ret['comment']}".strip()
    return ret
