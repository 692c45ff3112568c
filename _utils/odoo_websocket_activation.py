"""
How a change goes live and is proven, for the change engine: what is checked
before anything live is touched, Odoo's restart or recreate commands, nginx's
reload, and the websocket check.

Nothing here writes a file. The engine (``odoo_websocket_changes``) writes,
journals and rolls back, and calls these between its steps. PLAN is the
planner's (``odoo_websocket_plan.build``): its ``nginx``, ``restarts`` and
``verify`` parts.
"""

import os
import subprocess

from salt.exceptions import CommandExecutionError

import odoo_websocket_nginx
import odoo_websocket_nginx_candidate
import odoo_websocket_nginx_service
import odoo_websocket_verify

# activate() answers starting with these when the operator's settings keep
# the new nginx configuration from going live (nginx:reload or nginx:start).
# Not reloaded: the running nginx still serves the old files (pending); not
# running: nginx reads the new ones whenever it starts.
NOT_RELOADED, NOT_RUNNING = "nginx not reloaded", "nginx is not running"


def _within(path, folder):
    return os.path.commonpath([os.path.abspath(path), folder]) == folder


def precheck(plan, changes):
    """
    Everything checked before anything live is touched: nginx's staged check
    of the whole candidate tree with the nginx files among CHANGES (all of
    them: one outside nginx's folder makes staging impossible; a restore's
    set has no concerns, so its files under nginx's folder count). Returns
    ``{"problem", "notes", "staged", "nginx_changed"}``.
    """
    verdict = {"problem": None, "notes": [], "staged": None, "nginx_changed": False}
    nginx = plan.get("nginx")
    if not nginx or not changes:  # a no-op runs no nginx -t and parses no tree
        return verdict
    conf_dir = os.path.dirname(os.path.abspath(nginx["conf_file"]))
    candidate = [
        c
        for c in changes
        if c.get("concern") == "nginx" or ("concern" not in c and _within(c["path"], conf_dir))
    ]
    verdict.update(
        odoo_websocket_nginx_candidate.candidate_check(nginx, candidate),
        nginx_changed=bool(candidate),
    )
    return verdict


def live_check(plan, staged):
    """
    nginx's verdict on the written files, before any reload: ``nginx -t`` on
    the live tree, and, when the staged check was not possible (STAGED is
    None), the site checks on the live tree. Returns a problem or None.
    """
    nginx = plan.get("nginx")
    if not nginx:
        return None
    after = odoo_websocket_nginx.configtest(nginx["conf_file"], nginx["binary"])
    if not after["ok"]:
        return odoo_websocket_nginx.format_errors(after["errors"])
    if staged is None and "site_file" in nginx:
        payload = odoo_websocket_nginx.tree(nginx["conf_file"])
        return odoo_websocket_nginx_candidate.site_problems(nginx, payload) or None
    return None


def due_restarts(plan, changes):
    """
    The plan's restarts whose concern CHANGES touch (a recreate that also
    restarts Odoo makes Odoo's own restart unnecessary: ``unless``).
    """
    # Per Odoo instance: one instance's changed files restart that one only.
    # A file two instances share (two compose services) touches both.
    touched = {
        (change.get("concern"), instance)
        for change in changes
        for instance in change.get("instances") or [change.get("instance")]
    }

    def covered(restart):  # UNLESS: a concern, or a restore's list of paths
        unless = restart.get("unless") or []
        return any((u, restart.get("instance")) in touched
                   for u in ([unless] if isinstance(unless, str) else unless))  # fmt: skip

    due = [r for r in plan.get("restarts", [])
           if (r["concern"], r.get("instance")) in touched and not covered(r)]  # fmt: skip
    # One command once: a restore that puts back a compose file and its
    # override recreates the container once.
    once = {(r.get("cmd"), r.get("cwd"), r.get("instance")): r for r in reversed(due)}
    return [r for r in due if once[(r.get("cmd"), r.get("cwd"), r.get("instance"))] is r]


def restarted_again(plan, restarted):
    """
    The plan's restarts that a killed run had done (RESTARTED: its journal's
    list), to be done again once its files are restored: each instance's own.
    A journal written before instances were recorded names the concern only,
    and then every instance of that concern is restarted.
    """
    done = {
        (entry, None) if isinstance(entry, str) else (entry.get("concern"), entry.get("instance"))
        for entry in restarted
    }
    return [
        r
        for r in plan.get("restarts", [])
        if (r["concern"], r.get("instance")) in done or (r["concern"], None) in done
    ]


def restarts_named(restarted):
    """
    A journal's RESTARTED list for a person: ``odoo_conf of shop, compose``.
    """
    names = []
    for entry in restarted:
        if isinstance(entry, str):
            names.append(entry)
        elif entry.get("instance") in (None, "default"):
            names.append(entry["concern"])
        else:
            names.append(f"{entry['concern']} of {entry['instance']}")
    return ", ".join(names)


def restart(restart):
    """
    Run a restart or recreate command from the pillar
    (``{"what", "cmd", "cwd"}``); its failure raises, so the run fails and
    rolls back. Returns a note.
    """
    # A shell command line, as the pillar writes it, run as Salt's cmd.run_all
    # would: from the home folder unless the restart names one, without the
    # minion's systemd notify socket, any output bytes accepted.
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    home = os.path.expanduser("~")
    cwd = restart.get("cwd") or (home if os.path.isdir(home) else "/")
    try:
        done = subprocess.run(restart["cmd"], shell=True, cwd=cwd, env=env,
                              capture_output=True, text=True, errors="replace",
                              timeout=600, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise CommandExecutionError(f"{restart['what']} failed: still running after 600 s") from exc
    except OSError as exc:  # no shell, or its folder is gone
        raise CommandExecutionError(f"{restart['what']} failed: {exc}") from exc
    if done.returncode != 0:
        last = ((done.stderr or done.stdout).strip().splitlines() or [""])[-1]
        raise CommandExecutionError(f"{restart['what']} failed (exit {done.returncode}): {last}")
    return f"{restart['what']}: done."


def reload(nginx, old=False):
    """
    Make nginx serve what its files hold now, as the plan's NGINX part says
    (reload, restart, start). OLD (after a rollback): reload only, and only
    when the restored tree passes ``nginx -t``. Returns ``{"live", "pending",
    "comment"}``: not live when the settings keep nginx from reloading or
    starting, pending when a running nginx still serves the old files.
    Raises when nginx refuses the new configuration.
    """
    args = {key: nginx[key] for key in ("conf_file", "binary", "reload", "restart", "start")
            if key in nginx}  # fmt: skip
    if old:
        if not odoo_websocket_nginx.configtest(nginx["conf_file"], nginx["binary"])["ok"]:
            return {"live": False, "pending": False, "comment": "nginx not reloaded: the "
                    "restored configuration fails nginx -t."}  # fmt: skip
        args.update(start=False, restart=False, reload=True)
    comment = odoo_websocket_nginx_service.activate(**args)
    return {"live": not comment.startswith((NOT_RELOADED, NOT_RUNNING)),
            "pending": comment.startswith(NOT_RELOADED),
            "comment": comment + (" (old configuration)." if old else ".")}  # fmt: skip


def verify(plan, wait=False, timeout=None):
    """
    The websocket check the plan's ``verify`` part asks for, or None when it
    is disabled. WAIT: retry until it passes or the pillar's timeout (or
    TIMEOUT) runs out, as after a change.
    """
    settings = plan.get("verify")
    if not settings or not settings["enabled"]:
        return None
    # Every Odoo instance's site (verify:targets), or the one the settings name.
    targets = settings.get("targets") or [settings]
    if wait:
        deadline = min(settings["timeout"], timeout or settings["timeout"])
        return odoo_websocket_verify.wait_all(targets, deadline=deadline)
    return odoo_websocket_verify.check_all(targets)


def summary(verdict):
    """
    One line for a verdict of :py:func:`verify`.
    """
    return odoo_websocket_verify.summary(verdict)
