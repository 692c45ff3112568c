"""
nginx's process for the odoo_websocket formula: its master (from the pid file
nginx.conf names), and a validated configuration made live: a graceful
reload, a start, or a restart when asked, through the service manager when
one runs nginx, else with nginx's own signals.
"""

import os
import subprocess
import time

from salt.exceptions import CommandExecutionError

import odoo_websocket_minion
import odoo_websocket_nginx

# How long a reload may take to start new workers (a refusal shows sooner).
RELOAD_WAIT = 10


def pid(conf_file="/etc/nginx/nginx.conf"):
    """
    The PID of the nginx master that CONF_FILE's ``pid`` file names, or None
    when nginx is not running.
    """
    try:
        with open(odoo_websocket_nginx.pid_file(conf_file), encoding="ascii") as handle:
            master = int(handle.read().strip())
        os.kill(master, 0)
    except (OSError, ValueError):
        return None
    return master


def _run(binary, *args):
    proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise CommandExecutionError(f"nginx {' '.join(args[:2])} failed: {proc.stderr.strip()}")


def _wait(predicate, seconds):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _workers(master):
    """PIDs of the processes whose parent is MASTER (nginx's workers)."""
    found = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.isdigit() and fields[1] == str(master):
            found.add(int(entry))
    return found


def service_managed(conf_file="/etc/nginx/nginx.conf", systemd_dir="/run/systemd/system"):
    """
    Whether a service manager runs this nginx: systemd is the init and the
    tree is the packaged one. Then nginx is started, reloaded and restarted
    through ``service.*`` (it stays in its own cgroup, its unit knows its
    state); otherwise with nginx's own signals.
    """
    return os.path.isdir(systemd_dir) and os.path.abspath(conf_file) == "/etc/nginx/nginx.conf"


def _signal(conf_file, binary, action):
    """ACTION (start, reload, restart) through the service manager when one
    runs nginx, else with nginx's own command line."""
    if service_managed(conf_file):
        if not odoo_websocket_minion.current().functions[f"service.{action}"]("nginx"):
            raise CommandExecutionError(f"service nginx {action} failed")
        return
    if action == "reload":
        _run(binary, "-s", "reload", "-c", conf_file)
        return
    if action == "restart":
        _run(binary, "-s", "quit", "-c", conf_file)
        _wait(lambda: pid(conf_file) is None, 30)
    _run(binary, "-c", conf_file)


def _start(conf_file, binary, action="start"):
    _signal(conf_file, binary, action)
    if not _wait(lambda: pid(conf_file) is not None, 10):
        raise CommandExecutionError("nginx did not start: no master running after 10 s")


def activate(
    conf_file="/etc/nginx/nginx.conf",
    binary="/usr/sbin/nginx",
    reload=True,
    restart=False,
    start=True,
):
    """
    Make a validated configuration live: a graceful reload (old workers finish
    their open connections, websockets included), a start when nginx is not
    running (START), or a restart only when RESTART asks. Returns a comment.
    """
    running = pid(conf_file) is not None
    if running and restart:
        _start(conf_file, binary, "restart")
        return "nginx restarted"
    if not running:
        if not start:
            return "nginx is not running: not started (nginx:start is false)"
        _start(conf_file, binary)
        return "nginx started"
    if not reload:
        return "nginx not reloaded (nginx:reload is false)"
    master = pid(conf_file)
    before = _workers(master)
    logs = {path: _size(path) for path in odoo_websocket_nginx.error_logs(conf_file)}
    _signal(conf_file, binary, "reload")
    # The signal only asks: the master starts new workers once it has read and
    # applied the configuration (binding its ports). No new worker: refused;
    # an [emerg] in its error log says so (and why) at once.
    _wait(lambda: _workers(master) - before or _refusal(logs), RELOAD_WAIT)
    if not _workers(master) - before:
        why = _refusal(logs) or "its error log says why, e.g. a port in use"
        raise CommandExecutionError(
            f"nginx did not take the new configuration: its master (pid {master}) started no "
            f"new workers after the reload ({why})"
        )
    return "nginx reloaded gracefully (new workers running)"


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _refusal(logs):
    """The first [emerg] line written to LOGS ({path: size before}) since,
    or None: what nginx's master says when it refuses a configuration."""
    for path, offset in logs.items():
        try:
            with open(path, "rb") as handle:
                handle.seek(offset if offset <= _size(path) else 0)
                written = handle.read(65536).decode("utf-8", "replace")
        except OSError:
            continue
        for line in written.splitlines():
            if "[emerg]" in line:
                return line.split("[emerg]", 1)[1].split(": ", 1)[-1].strip()
    return None
