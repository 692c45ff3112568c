"""
The host's lock for odoo_websocket runs: one change at a time per backup
folder, whoever starts it (a state run, a restore, a clean, a recovery).

It lives in the backup folder, which must be safe first
(``odoo_websocket_backups.unsafe_folder``): nobody but root may plant or swap
files there; a "lock" file there that the formula did not make (no mark
beside it) is another tool's, and the folder is refused. The change engine's
transaction holds the lock (:py:func:`held`) for its whole run; it writes
nothing but the lock file and the folder's mark.
"""

import contextlib
import fcntl
import os
import time

from salt.exceptions import CommandExecutionError

import odoo_websocket_backups
from odoo_websocket_backups import DEFAULT_BACKUP_DIR, MARK

LOCK = "lock"


def _open(backup_dir, dry):
    """The lock's descriptor, once the folder is found safe."""
    try:
        # A new folder is private; an existing one keeps its mode. exist_ok:
        # two first runs may race to create it.
        os.makedirs(backup_dir, mode=0o700, exist_ok=True)
        unsafe = odoo_websocket_backups.unsafe_folder(backup_dir)
        if unsafe:
            raise OSError(f"{unsafe}: another user could plant or swap files there")
        # A "lock" the formula did not make (no mark beside it) is another
        # tool's: never truncated. Other files may share the folder.
        if os.path.lexists(os.path.join(backup_dir, LOCK)) and not os.path.lexists(
            os.path.join(backup_dir, MARK)
        ):
            raise OSError(f"its '{LOCK}' is not the formula's (no {MARK} mark): not its folder")
        # O_NOFOLLOW: a planted "lock" symlink must not lead us to another file.
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
        if dry:  # a folder made ahead of the formula has no lock: no run holds it
            if not os.path.lexists(os.path.join(backup_dir, LOCK)):
                return None
            return os.open(os.path.join(backup_dir, LOCK), os.O_RDONLY | os.O_NOFOLLOW)
        os.close(os.open(os.path.join(backup_dir, MARK), flags, 0o600))
        return os.open(os.path.join(backup_dir, LOCK), flags, 0o600)
    except OSError as exc:
        raise CommandExecutionError(f"cannot use backup folder {backup_dir}: {exc}") from exc


def acquire(backup_dir=DEFAULT_BACKUP_DIR, timeout=60, dry=False):
    """
    Wait up to TIMEOUT seconds for the host's lock and return its descriptor
    (None when DRY, a test run, finds no folder: it never creates the folder
    or the lock, nor writes its pid). Give it back with :py:func:`release`.

    """
    if dry and not os.path.isdir(backup_dir):
        return None
    fd = _open(backup_dir, dry)
    if fd is None:
        return None
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise CommandExecutionError(
                    f"another odoo_websocket run holds {os.path.join(backup_dir, LOCK)} "
                    f"(pid {holder}); gave up after {timeout} s"
                ) from None
            time.sleep(0.1)
    if not dry:  # who holds it, for the next run's message
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def release(fd):
    """Give back the lock that :py:func:`acquire` returned (None: nothing held)."""
    if fd is not None:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def held(backup_dir=DEFAULT_BACKUP_DIR, timeout=60, dry=False):
    """The host's lock, held for the block (:py:func:`acquire`'s arguments)."""
    fd = acquire(backup_dir, timeout, dry=dry)
    try:
        yield
    finally:
        release(fd)
