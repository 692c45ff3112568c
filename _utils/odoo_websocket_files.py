"""
The formula's files: read (their text, or a snapshot and fingerprint of
what a path is), compared with a change, shown as a masked diff,
and replaced atomically (a temporary file in the same folder, fsynced, given
its mode and owner, renamed over the old one: the old file or the new one,
never half of one). Writers are called by the change engine only.
"""

import hashlib
import os
import stat as stat_mode
import tempfile

import salt.utils.stringutils
from salt.exceptions import CommandExecutionError

import odoo_websocket_masking


def read(path):
    """PATH's text as it is (line endings kept), or None when it does not exist."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def snapshot(path):
    """
    What PATH is now: absent, a link and its target, or a file with its
    bytes, mode and owner.
    """
    if os.path.islink(path):
        return {"path": path, "kind": "link", "target": os.readlink(path)}
    if not os.path.exists(path):
        return {"path": path, "kind": "absent"}
    stat = os.stat(path)
    with open(path, "rb") as handle:
        data = handle.read()
    return {"path": path, "kind": "file", "data": data, "mode": stat.st_mode & 0o7777,
            "uid": stat.st_uid, "gid": stat.st_gid}  # fmt: skip


def fingerprint(change_or_path):
    """
    What a path holds (or a change would make it hold), in a few bytes:
    absent, a link and its target, or the sha256 of a file's bytes.
    """
    if isinstance(change_or_path, str):
        change_or_path = snapshot(change_or_path)
    kind = change_or_path["kind"]
    if kind == "file":
        data = change_or_path["data"]
        data = data.encode("utf-8") if isinstance(data, str) else data
        return "sha256:" + hashlib.sha256(data).hexdigest()
    return f"link:{change_or_path['target']}" if kind == "link" else "absent"


def state(path):
    """
    What PATH is, in a few bytes, to tell whether it changed: absent, a link
    and its target, a folder, or a file's sha256, mode and owner.
    """
    try:
        stat = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    if os.path.islink(path):
        return f"link:{os.readlink(path)}"
    if not os.path.isfile(path):
        return "not a file"
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    return f"sha256:{digest} mode:{stat.st_mode & 0o7777:o} owner:{stat.st_uid}:{stat.st_gid}"


# Where the formula never writes as root (a linked odoo.conf or compose
# file, a journal's path no longer in the pillar): system files it has no
# business rewriting.
_SYSTEM = ("/proc", "/sys", "/dev", "/boot", "/usr", "/bin", "/sbin", "/lib", "/lib64",
           "/root/.ssh", "/etc/ssh", "/etc/pam.d", "/etc/sudoers", "/etc/sudoers.d",
           "/etc/cron.d", "/etc/crontab", "/etc/passwd", "/etc/shadow", "/etc/group",
           "/etc/systemd")  # fmt: skip


def system_path(path):
    """Whether PATH is (or is under) a system file the formula never writes."""
    path = os.path.abspath(path)
    return any(path == place or path.startswith(place + "/") for place in _SYSTEM)


def unsafe_path(path):
    """
    Why root should not write PATH, or None. Every folder on the way to it,
    and every link met there (followed, as the kernel would), must be owned
    by root or by PATH's own owner and writable by nobody else (a folder
    like /tmp, root's and sticky, excepted): otherwise its user could swap a
    folder for a link between the plan and the write, and have root write
    where they choose.
    """
    path = os.path.abspath(path)
    try:
        owner = os.stat(path).st_uid
    except OSError:
        owner = 0  # a new file: root's
    trusted = {0, os.geteuid(), owner}
    todo, current, hops = path.strip("/").split("/"), "/", 0
    while todo:
        name = todo.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        step = os.path.join(current, name)
        try:
            found = os.lstat(step)
        except OSError:
            # Not there yet: made by root, unless anyone may make it first
            # (a link planted in a world-writable folder like /tmp).
            if os.stat(current).st_mode & 0o002:
                return f"{step} does not exist yet in {current}, where anyone may create it"
            return None
        if stat_mode.S_ISLNK(found.st_mode):
            if found.st_uid not in trusted:
                return f"{step} is a link owned by uid {found.st_uid}"
            hops += 1
            if hops > 40:
                return f"{step}: too many levels of links"
            target = os.readlink(step)
            todo = target.split("/") + todo
            current = "/" if target.startswith("/") else current
            continue
        if todo:  # a folder on the way
            if found.st_uid not in trusted:
                return f"{step} is owned by uid {found.st_uid}, not root or the file's owner"
            others = found.st_mode & 0o002 or (found.st_mode & 0o020 and found.st_gid != 0)
            if others and not (found.st_mode & 0o1000 and found.st_uid == 0):
                return f"{step} is writable by others (mode {found.st_mode & 0o7777:o})"
        current = step
    return None


class ChangedUnderRun(CommandExecutionError):
    """A path is no longer what the run planned from: it is never overwritten."""


def _unchanged(path, expect):
    """Compare-and-swap: PATH must still be EXPECT (:py:func:`state`) right
    before it is replaced; None expects nothing."""
    if expect is not None and state(path) != expect:
        raise ChangedUnderRun(
            f"{path} changed under the run (an operator's edit, another tool?): it is left "
            "as it is now"
        )


def masked(text, secret_keys=()):
    """
    TEXT with every secret value replaced by ``********``
    (``odoo_websocket_masking.masked``: odoo.conf secrets, compose
    environment values, nginx credential headers, passwords in URLs).
    """
    return odoo_websocket_masking.masked(text, secret_keys)


def diff(old, new, path):
    """
    A unified diff between two texts, labelled with PATH.
    """
    return salt.utils.stringutils.get_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=path, tofile=path
    )


def masked_diff(old, new, path, secret_keys=()):
    """The diff of OLD and NEW with every secret masked on both sides."""
    return diff(masked(old, secret_keys), masked(new, secret_keys), path)


def outside(paths, managed):
    """
    The PATHS that are none of MANAGED (files, or folders ending in /), as
    ``odoo_websocket_concerns.managed_paths`` gives them.
    """

    def inside(path):
        return any(path == m or (m.endswith("/") and path.startswith(m)) for m in managed)

    return [path for path in paths if not inside(os.path.abspath(path))]


# -- a plan's changes: one per path, edits of one file chained ---------------


def planned(plan, path):
    """What PATH holds once the plan's earlier changes are made: an earlier
    instance's edit of a shared file is where the next one starts, so edits
    of one file chain (its disk content when the plan does not change it)."""
    real = os.path.realpath(path)
    for change in plan["changes"]:
        if change["kind"] == "file" and os.path.realpath(change["path"]) == real:
            return change["data"]
    return read(path)


def add(plan, concern, path, data, shown, expect=None):
    """One change per path: a path the plan already changes gets the new
    DATA (planned from the earlier one), SHOWN being from the disk's content.
    EXPECT: what the path was (:py:func:`state`) when the planner read the
    text DATA was made from; now by default."""
    real = os.path.realpath(path)
    for change in plan["changes"]:
        if change["kind"] == "file" and os.path.realpath(change["path"]) == real:
            change["data"] = data
            path = change["path"]
            break
    else:
        # What the path is as the plan read it: the engine replaces only that.
        plan["changes"].append({"concern": concern, "path": path, "kind": "file", "data": data,
                                "expect": expect or state(path)})  # fmt: skip
    plan["diffs"][path] = dict(shown, concern=concern)


def differs(change):
    """
    Whether CHANGE (``{path, kind, data|target}``) would change its path.
    Read only.
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


def fsync_dir(path):
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_xattrs(path, fd):
    """PATH's extended attributes (POSIX ACLs, an SELinux label, user.*)
    onto the new file: a replaced file keeps everything but its bytes."""
    if not os.path.isfile(path) or os.path.islink(path):
        return
    try:
        names = os.listxattr(path)
    except OSError:  # a file system without them
        return
    for name in names:
        try:
            os.setxattr(fd, name, os.getxattr(path, name))
        except OSError:
            continue  # one the file system here refuses: the others still count


def replace_file(path, data, mode, uid, gid, expect=None):
    """A temporary file in the same folder, fsynced, given its mode and owner
    on the descriptor, then renamed over PATH: the old file or the new one,
    never half of one; only while PATH is still EXPECT (:py:func:`state`)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=".odoo_websocket.", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            _copy_xattrs(path, handle.fileno())
            if uid is not None or gid is not None:
                os.fchown(handle.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
            os.fsync(handle.fileno())
        _unchanged(path, expect)
        os.rename(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path)


def replace_symlink(path, target, expect=None):
    tmp = os.path.join(os.path.dirname(path), f".odoo_websocket.{os.getpid()}.link")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    try:
        _unchanged(path, expect)
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    fsync_dir(path)


def apply_change(change, expect=None):
    """Make the change's path what it says, only while it is still EXPECT
    (:py:func:`state`; None: whatever it is). A replaced file keeps its mode and
    owner, a new one gets 0644, unless the change names them (a restore does)."""
    path = change["path"]
    if change["kind"] == "absent":
        if os.path.lexists(path):
            _unchanged(path, expect)
            os.unlink(path)
            fsync_dir(path)
    elif change["kind"] == "link":
        if os.path.lexists(path) and not os.path.islink(path):
            _unchanged(path, expect)
            os.unlink(path)
            expect = "absent" if expect is not None else None
        replace_symlink(path, change["target"], expect)
    else:
        mode, uid, gid = 0o644, None, None
        if os.path.isfile(path) and not os.path.islink(path):
            stat = os.stat(path)
            mode, uid, gid = stat.st_mode & 0o7777, stat.st_uid, stat.st_gid
        owner = change.get("uid", uid), change.get("gid", gid)
        replace_file(path, change["data"], change.get("mode", mode), *owner, expect=expect)
