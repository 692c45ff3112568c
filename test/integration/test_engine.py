"""The change engine (odoo_websocket_changes: the transaction and friends) against the
real nginx and real files: every failure leaves the old bytes, modes and
owners in place, and nginx accepting its configuration."""

import fcntl
import http.client
import json
import os
import signal
import subprocess
import time

import pytest
from salt.exceptions import CommandExecutionError

import odoo_websocket_journal
import odoo_websocket_nginx_service
import odoo_websocket_restore
from engine import commands, engine_apply, spawn_engine
from helpers import (
    NGINX,
    PROXY_SITE,
    nginx_of,
    returning_site,
    served_soon,
    served_status,
    site_change,
)
from odoo_websocket_backups import BackupStore

engine = odoo_websocket_restore
cli = commands()


def apply(box, changes, **kwargs):
    kwargs.setdefault("nginx", nginx_of(box))
    return engine_apply(changes, backup_dir=box.backup_dir, **kwargs)


def nginx_accepts(box):
    return cli.nginx_test(box.conf_file, NGINX)["ok"]


def test_change_set_applies_backs_up_and_second_run_does_nothing(sandbox):
    first = apply(sandbox, site_change(sandbox))
    assert first["result"] is True, first
    assert "Staged check: nginx accepts the new configuration." in first["comment"]
    assert sorted(first["changed"]) == sorted(
        [sandbox.site_file, sandbox.site_link, sandbox.map_file]
    )
    assert nginx_accepts(sandbox)
    sets = BackupStore(sandbox.backup_dir).listing()
    assert [s["id"] for s in sets] == [first["backup"]]
    second = apply(sandbox, site_change(sandbox))
    assert second == {
        "result": True,
        "comment": "Nothing to change.",
        "changed": [],
        "backup": None,
        "verdict": None,
    }
    assert len(BackupStore(sandbox.backup_dir).listing()) == 1


@pytest.mark.parametrize(
    "text, error",
    [
        ("server { listen 80 }\n", 'unexpected "}"'),
        ("upstream odoo { server 127.0.0.1:1; }\nupstream odoo { server 127.0.0.1:2; }\n",
         'duplicate upstream "odoo"'),
        ("map $http_upgrade $x { default a; }\nserver { location / { map $a $b {} } }\n",
         '"map" directive is not allowed here'),
    ],
)  # fmt: skip
def test_rejected_candidates_touch_nothing(sandbox, text, error):
    before = sandbox.fingerprint()
    result = apply(sandbox, site_change(sandbox, text=text))
    assert result["result"] is False
    assert "nginx would reject the new configuration" in result["comment"]
    assert error in result["comment"]
    assert sandbox.fingerprint() == before
    assert BackupStore(sandbox.backup_dir).listing() == []


def test_test_mode_gives_the_staged_verdict_and_touches_nothing(sandbox):
    before = sandbox.fingerprint()
    good = apply(sandbox, site_change(sandbox), test=True)
    assert good["result"] is None
    assert "Staged check: nginx accepts the new configuration." in good["comment"]
    bad = apply(sandbox, site_change(sandbox, text="server {\n"), test=True)
    assert bad["result"] is False and "nginx would reject" in bad["comment"]
    assert sandbox.fingerprint() == before
    assert BackupStore(sandbox.backup_dir).listing() == []


def test_missing_nginx_binary(sandbox):
    before = sandbox.fingerprint()
    result = apply(sandbox, site_change(sandbox), nginx=nginx_of(sandbox, binary="/nope/nginx"))
    assert result["result"] is False
    assert "nginx binary /nope/nginx not found; nothing was touched." in result["comment"]
    assert sandbox.fingerprint() == before


def test_unusable_backup_dir(sandbox, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    before = sandbox.fingerprint()
    with pytest.raises(CommandExecutionError, match="cannot use backup folder"):
        engine_apply(site_change(sandbox), nginx=nginx_of(sandbox), backup_dir=str(blocker / "b"))
    assert sandbox.fingerprint() == before


def test_another_tools_folder_is_never_used_for_backups(sandbox, tmp_path):
    """A folder holding other files and no mark of the formula's is refused
    whole: its own 'lock' is not truncated, nothing is added."""
    other = tmp_path / "other-tool"
    other.mkdir(mode=0o700)
    (other / "lock").write_text("other tool data")
    before = sandbox.fingerprint()
    with pytest.raises(CommandExecutionError, match="not its folder"):
        engine_apply(site_change(sandbox), nginx=nginx_of(sandbox), backup_dir=str(other))
    assert sorted(os.listdir(other)) == ["lock"]
    assert (other / "lock").read_text() == "other tool data"
    assert sandbox.fingerprint() == before


def test_full_disk_for_backups(sandbox, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)
    try:
        backup_dir = disk / "backups"
        backup_dir.mkdir()
        with open(disk / "filler", "wb") as handle:
            try:
                handle.write(b"x" * 128 * 1024)
            except OSError:
                pass
        # A large live file to back up: the full disk refuses its copy.
        sandbox.write(sandbox.site_file, "# old\n" * 5000)
        before = sandbox.fingerprint()
        result = engine_apply(
            site_change(sandbox), nginx=nginx_of(sandbox), backup_dir=str(backup_dir)
        )
        assert result["result"] is False
        assert "Could not write the backup, nothing was touched" in result["comment"]
        assert "No space left on device" in result["comment"]
        assert sandbox.fingerprint() == before
        assert not os.path.exists(backup_dir / "journal.json")
        assert [p for p in os.listdir(backup_dir) if p not in ("lock", ".odoo_websocket")] == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def nginx_workers(master):
    found = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return set(found.stdout.split())


def test_nginx_not_running_is_started_after_validation(live_sandbox):
    box = live_sandbox
    assert odoo_websocket_nginx_service.pid(box.conf_file) is None
    result = apply(box, site_change(box), nginx=nginx_of(box, start=True))
    assert result["result"] is True, result
    assert "nginx started." in result["comment"]
    master = odoo_websocket_nginx_service.pid(box.conf_file)
    assert master is not None
    workers = nginx_workers(master)
    again = apply(box, site_change(box, size="20m"), nginx=nginx_of(box, start=True))
    assert "nginx reloaded gracefully (new workers running)." in again["comment"]
    # Reloaded for real: the same master, and workers it started after the change.
    assert odoo_websocket_nginx_service.pid(box.conf_file) == master
    assert nginx_workers(master) - workers

    # A rejected candidate: the running nginx keeps serving the old site.
    def status():
        connection = http.client.HTTPConnection("127.0.0.1", box.http_port, timeout=5)
        connection.request("GET", "/", headers={"Host": "odoo.example.com"})
        return connection.getresponse().status

    assert status() == 502  # proxied to 8069, where nothing listens
    before = box.fingerprint()
    broken = apply(box, site_change(box, text="server {\n"), nginx=nginx_of(box, start=True))
    assert broken["result"] is False
    assert box.fingerprint() == before
    assert status() == 502


def test_activation_left_pending_is_done_by_the_next_run(live_sandbox):
    """nginx:reload false: the files change, the running nginx keeps serving
    the old ones. The next run must not find "nothing to do": it reloads."""
    box = live_sandbox

    assert apply(box, returning_site(box, 204), nginx=nginx_of(box, start=True))["result"] is True
    assert served_status(box) == 204
    mark = os.path.join(box.backup_dir, "activation-pending.json")
    held = apply(box, returning_site(box, 418), nginx=nginx_of(box, reload=False))
    assert held["result"] is True, held
    assert "the next run activates it" in held["comment"]
    assert served_status(box) == 204 and os.path.exists(mark)
    still = apply(box, returning_site(box, 418), nginx=nginx_of(box, reload=False))
    assert "nginx had not loaded the configuration of backup " + held["backup"] in still["comment"]
    assert served_status(box) == 204 and os.path.exists(mark)
    caught_up = apply(box, returning_site(box, 418), nginx=nginx_of(box))
    assert caught_up["result"] is True and caught_up["changed"] == [], caught_up
    assert "nginx reloaded gracefully" in caught_up["comment"]
    assert served_soon(box, 418) and not os.path.exists(mark)
    assert (
        "Nothing to change." in apply(box, returning_site(box, 418), nginx=nginx_of(box))["comment"]
    )


STEPS = ["backup", "journal", "write-0", "write-1", "validated", "activated"]


def run_apply(box, changes, fault=None):
    return spawn_engine(changes, nginx_of(box), box.backup_dir, fault)


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_at_each_step_is_rolled_back_by_the_next_call(sandbox, step):
    apply(sandbox, site_change(sandbox, size="1m"))  # a live site to change
    before = sandbox.fingerprint()
    proc, payload = run_apply(sandbox, site_change(sandbox, size="2m"), fault=step)
    proc.communicate(payload, timeout=60)
    assert proc.returncode == -9  # killed, as by the OOM killer or a power cut
    journal = os.path.join(sandbox.backup_dir, "journal.json")
    assert os.path.exists(journal) == (step != "backup")
    # Reading never recovers: the journal stays until recovery runs.
    left = odoo_websocket_journal.left_notes(BackupStore(sandbox.backup_dir))
    assert ("rolls it back first" in left) == (step != "backup")
    assert os.path.exists(journal) == (step != "backup")
    # Recovery (a real run's first step, or the CLI) puts the old files back.
    engine.recover(sandbox.backup_dir)
    listed = BackupStore(sandbox.backup_dir).listing()
    assert not os.path.exists(journal)
    assert sandbox.fingerprint() == before
    assert nginx_accepts(sandbox)
    assert listed  # the interrupted run's backup set stays for inspection
    # And the same change then goes through.
    assert apply(sandbox, site_change(sandbox, size="2m"))["result"] is True
    assert "client_max_body_size 2m" in open(sandbox.site_file).read()


LIVE_STEPS = ["validated", "activated"]


@pytest.mark.parametrize("step", LIVE_STEPS)
def test_sigkill_with_nginx_running_is_rolled_back_and_reloaded(live_sandbox, step):
    """Killed after the new files are written (and, at "activated", after nginx
    reloaded onto them): recovery puts the files back and reloads the running
    nginx, which then serves the old site again."""
    box = live_sandbox

    assert apply(box, returning_site(box, 204), nginx=nginx_of(box, start=True))["result"] is True
    assert served_status(box) == 204
    before = box.fingerprint()
    proc, payload = spawn_engine(returning_site(box, 418), nginx_of(box), box.backup_dir, step)
    proc.communicate(payload, timeout=60)
    assert proc.returncode == -9
    assert box.fingerprint() != before
    if step == "activated":
        assert served_soon(box, 418)  # the killed run's configuration was live
    engine.recover(box.backup_dir, conf_file=box.conf_file, binary=NGINX)
    assert box.fingerprint() == before
    assert served_soon(box, 204)
    assert odoo_websocket_nginx_service.pid(box.conf_file) is not None


def test_lock_timeout_names_the_holder_and_touches_nothing(sandbox):
    os.makedirs(sandbox.backup_dir, exist_ok=True)
    open(os.path.join(sandbox.backup_dir, ".odoo_websocket"), "w").close()  # a run's folder
    before = sandbox.fingerprint()
    with open(os.path.join(sandbox.backup_dir, "lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write("4242")
        handle.flush()
        with pytest.raises(CommandExecutionError) as raised:
            engine_apply(
                site_change(sandbox), nginx=nginx_of(sandbox),
                backup_dir=sandbox.backup_dir, lock_timeout=1,
            )  # fmt: skip
    assert "another odoo_websocket run holds" in str(raised.value)
    assert "(pid 4242); gave up after 1 s" in str(raised.value)
    assert sandbox.fingerprint() == before


def stopped(proc, seconds=30):
    """Wait until PROC sits at its stop:<step> fault (state T)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/stat", encoding="ascii") as handle:
            if handle.read().rsplit(")", 1)[1].split()[0] == "T":
                return True
        time.sleep(0.05)
    return False


def test_concurrent_runs_never_interleave(sandbox):
    """The first run is frozen inside its critical section (after its journal,
    before any write); the second must wait for the lock the whole time."""
    first, first_payload = run_apply(sandbox, site_change(sandbox, size="3m"), fault="stop:journal")
    first.stdin.write(first_payload)
    first.stdin.close()
    try:
        assert stopped(first), "the first run never reached its journal"
        sets_while_frozen = BackupStore(sandbox.backup_dir).sets()
        second, second_payload = run_apply(sandbox, site_change(sandbox, size="4m"))
        second.stdin.write(second_payload)
        second.stdin.close()
        time.sleep(2)  # ample time for an unlocked second run to back up and write
        assert second.poll() is None
        assert BackupStore(sandbox.backup_dir).sets() == sets_while_frozen
    finally:
        os.kill(first.pid, signal.SIGCONT)
    results = [json.loads(proc.stdout.read()) for proc in (first, second)]
    for proc in (first, second):
        proc.wait(60)
    assert all(r["result"] is True for r in results), results
    sets = BackupStore(sandbox.backup_dir).listing()
    assert len(sets) == 2
    # The second run backed up exactly what the first one wrote, and won.
    assert open(sandbox.site_file).read() == PROXY_SITE.format(port=80, size="4m")
    newest = BackupStore(sandbox.backup_dir).manifest(sets[0]["id"])
    site_entry = next(e for e in newest["files"] if e["path"] == sandbox.site_file)
    blob = open(os.path.join(sandbox.backup_dir, sets[0]["id"], site_entry["blob"])).read()
    assert blob == PROXY_SITE.format(port=80, size="3m")


def test_restore_round_trip_and_undo(sandbox):
    original = sandbox.fingerprint()
    first = apply(sandbox, site_change(sandbox, size="5m"))
    after_first = sandbox.fingerprint()
    apply(sandbox, site_change(sandbox, size="6m"))
    after_second = sandbox.fingerprint()

    diff = BackupStore(sandbox.backup_dir).diff(first["backup"])
    assert (
        "+    location / { proxy_pass http://odoo; client_max_body_size 6m; }"
        in diff[sandbox.site_file]
    )

    undo = engine.restore(
        first["backup"], sandbox.backup_dir, conf_file=sandbox.conf_file, binary=NGINX, start=False
    )
    assert undo["result"] is True, undo
    assert sandbox.fingerprint() == original
    assert after_first != original
    redo = engine.restore(
        undo["backup"], sandbox.backup_dir, conf_file=sandbox.conf_file, binary=NGINX, start=False
    )
    assert redo["result"] is True
    assert sandbox.fingerprint() == after_second


def test_restore_brings_back_mode_and_owner(sandbox):
    os.chown(sandbox.odoo_conf, 65534, 65534)
    os.chmod(sandbox.odoo_conf, 0o640)
    before = sandbox.fingerprint()
    change = [{"path": sandbox.odoo_conf, "kind": "file", "data": "[options]\nworkers = 9\n"}]
    result = engine_apply(change, backup_dir=sandbox.backup_dir)
    os.chown(sandbox.odoo_conf, 0, 0)
    os.chmod(sandbox.odoo_conf, 0o666)
    engine.restore(result["backup"], sandbox.backup_dir)
    assert sandbox.fingerprint() == before


def test_retention_keeps_the_newest_sets_and_nothing_else_is_touched(sandbox):
    # A folder that also holds other data: only the formula's own sets count.
    os.makedirs(sandbox.backup_dir, mode=0o700)
    foreign = [".git", "2024-01-01_dbdump", "odoo-db", "20240101T000000000000-1-abcdef"]
    for name in foreign:
        os.makedirs(os.path.join(sandbox.backup_dir, name))
    ids = [
        apply(sandbox, site_change(sandbox, size=f"{n}m"), keep=3)["backup"] for n in range(1, 6)
    ]
    assert [s["id"] for s in BackupStore(sandbox.backup_dir).listing()] == ids[:1:-1]
    assert set(foreign) <= set(os.listdir(sandbox.backup_dir))


@pytest.mark.parametrize("problem", ["world-writable", "foreign owner", "symlink"])
def test_backup_folder_others_could_write_is_refused(sandbox, tmp_path, problem):
    folder = tmp_path / "backups"
    if problem == "symlink":
        (tmp_path / "real").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / "real")
    else:
        folder.mkdir(mode=0o700)
        if problem == "world-writable":
            folder.chmod(0o777)
        else:
            os.chown(folder, 65534, 65534)
    before = sandbox.fingerprint()
    with pytest.raises(CommandExecutionError) as raised:
        engine_apply(site_change(sandbox), nginx=nginx_of(sandbox), backup_dir=str(folder))
    why = {"world-writable": "writable by group or others", "foreign owner": "owned by uid 65534",
           "symlink": "is a symbolic link"}[problem]  # fmt: skip
    assert why in str(raised.value)
    assert sandbox.fingerprint() == before


def crash_after_first_write(sandbox):
    """A run killed after writing the first of three files."""
    apply(sandbox, site_change(sandbox, size="1m"))
    before = sandbox.fingerprint()
    proc, payload = run_apply(sandbox, site_change(sandbox, size="2m"), fault="write-0")
    proc.communicate(payload, timeout=60)
    assert proc.returncode == -9
    return before


@pytest.mark.parametrize("force", [False, True])
def test_recovery_leaves_a_file_changed_since_the_crash(sandbox, force):
    before = crash_after_first_write(sandbox)
    hotfix = "# an operator's hotfix after the crash\n"
    sandbox.write(sandbox.site_file, hotfix)
    note = engine.recover(sandbox.backup_dir, force=force)
    after = sandbox.fingerprint()
    if force:
        assert after == before
        return
    assert f"Left as they are, changed since that run: {sandbox.site_file}" in note
    assert open(sandbox.site_file).read() == hotfix
    assert {p: v for p, v in after.items() if p != sandbox.site_file} == {
        p: v for p, v in before.items() if p != sandbox.site_file
    }


def test_unreadable_journal_is_moved_aside_loudly(sandbox):
    crash_after_first_write(sandbox)
    journal = os.path.join(sandbox.backup_dir, "journal.json")
    with open(journal, "w") as handle:
        handle.write('{"backup": "20260101T000000000000-1-abc')  # torn
    note = engine.recover(sandbox.backup_dir)
    assert note.startswith("WARNING: the journal of an interrupted run was unreadable")
    assert not os.path.exists(journal)
    assert [n for n in os.listdir(sandbox.backup_dir) if n.endswith(".aside")]


def test_backups_are_private_and_diffs_masked(sandbox):
    secret = "Sup3r%Secret%%admin"
    change = [
        {"path": sandbox.odoo_conf, "kind": "file", "data": "[options]\nadmin_passwd = new\n"}
    ]
    result = engine_apply(
        change, backup_dir=sandbox.backup_dir, secret_keys=["admin_passwd", "db_password"]
    )
    folder = os.path.join(sandbox.backup_dir, result["backup"])
    assert os.stat(sandbox.backup_dir).st_mode & 0o777 == 0o700
    assert os.stat(folder).st_mode & 0o777 == 0o700
    for name in os.listdir(folder):
        assert os.stat(os.path.join(folder, name)).st_mode & 0o777 == 0o600
    diff = BackupStore(sandbox.backup_dir).diff(result["backup"])[sandbox.odoo_conf]
    assert secret not in diff and "new" not in diff
    assert "admin_passwd = ********" in diff
    assert "-db_password = ********" in diff


def test_stage_check_judges_one_candidate_without_touching_anything(sandbox):
    before = sandbox.fingerprint()
    good = cli.stage_check(
        sandbox.site_file, PROXY_SITE.format(port=80, size="1m"), sandbox.conf_file, NGINX
    )
    assert good["ok"] is True and good["errors"] == []
    # The stock default site is enabled: a broken candidate for it is caught,
    # and nginx names the file as the live tree includes it.
    default = os.path.join(sandbox.nginx_dir, "sites-available/default")
    bad = cli.stage_check(default, "server {\n", sandbox.conf_file, NGINX)
    assert bad["ok"] is False
    assert bad["errors"][0]["file"] == os.path.join(sandbox.nginx_dir, "sites-enabled/default")
    assert sandbox.fingerprint() == before


def test_restore_and_recovery_write_only_managed_paths(sandbox):
    """A backup folder is data: a set naming a path outside what the formula
    manages is not followed, nor a journal's path outside it unless it holds
    exactly what the killed run wrote (test_real_hosts: item 10)."""
    change = [{"path": sandbox.odoo_conf, "kind": "file", "data": "[options]\nworkers = 9\n"}]
    set_id = engine_apply(change, backup_dir=sandbox.backup_dir)["backup"]
    nginx_only = [sandbox.nginx_dir + "/"]
    before = sandbox.fingerprint()
    refused = engine.restore(set_id, sandbox.backup_dir, managed=nginx_only)
    assert refused["result"] is False
    assert f"names paths the formula does not manage: {sandbox.odoo_conf}" in refused["comment"]
    assert sandbox.fingerprint() == before

    # A journal's path outside MANAGED that holds something else than what
    # the killed run wrote (a foreign journal, an edit since) is never written.
    crashed = crash_after_first_write(sandbox)
    sandbox.write(sandbox.site_file, "# not what the killed run wrote\n")
    half_done = sandbox.fingerprint()
    note = engine.recover(sandbox.backup_dir, managed=[sandbox.odoo_conf])
    assert f"Not restored, not a path the formula manages: {sandbox.site_file}" in note
    assert sandbox.fingerprint() == half_done != crashed
