"""The shapes production hosts have (issue 23's fault suite): each finding of
the adversarial review as a test on a sandbox served by real nginx, through
the change engine or the operator's commands. docs/fault-matrix.md lists
each with its outcome."""

import contextlib
import json
import os
import shutil
import subprocess
import time

import pytest

import odoo_websocket_changes
import odoo_websocket_compose_project
import odoo_websocket_concerns
import odoo_websocket_files
import odoo_websocket_journal
import odoo_websocket_plan
import odoo_websocket_restore
import odoo_websocket_settings
from engine import commands, engine_apply
from helpers import (
    NGINX,
    PARTS,
    TEMPLATE_FUNCTIONS,
    nginx_of,
    returning_site,
    sandbox_settings,
    served_soon,
    settings_with,
    site_change,
)
from odoo_websocket_backups import BackupStore

cli = commands()


def tree(folder):
    """Every path under FOLDER with its bytes (links by target)."""
    found = {}
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                found[path] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as handle:
                    found[path] = handle.read()
    return found


@contextlib.contextmanager
def read_only(folder):
    """FOLDER read-only even for root (a read-only bind mount), for the block."""
    subprocess.run(["mount", "--bind", folder, folder], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", folder], check=True)
        yield
    finally:
        subprocess.run(["umount", folder], check=True)


def linked_snippets(box, tmp_path):
    """nginx's snippets/ as an absolute link to a shared folder outside the
    tree (configs on a shared or versioned path), included in http."""
    shared = tmp_path / "shared-snippets"
    shared.mkdir()
    (shared / "existing.conf").write_text("# the shared folder's own file\n")
    os.symlink(str(shared), os.path.join(box.nginx_dir, "snippets"))
    box.write(os.path.join(box.nginx_dir, "conf.d/snippets.conf"),
              f"include {box.nginx_dir}/snippets/*.conf;\n")  # fmt: skip
    return str(shared), os.path.join(box.nginx_dir, "snippets", "odoo.conf")


# -- 1. staging never writes outside its private copy ------------------------


def test_the_staged_check_never_writes_through_a_linked_folder(sandbox, tmp_path):
    shared, candidate = linked_snippets(sandbox, tmp_path)
    before = tree(shared)
    good = cli.stage_check(candidate, "# the formula's\n", sandbox.conf_file, NGINX)
    assert good["ok"] is True, good
    assert tree(shared) == before  # nothing written into the live shared folder
    # The candidate is what nginx judged: a broken one is caught, at its path.
    bad = cli.stage_check(candidate, "server {\n", sandbox.conf_file, NGINX)
    assert bad["ok"] is False and bad["errors"][0]["file"] == candidate, bad
    assert tree(shared) == before


def test_staging_works_with_the_live_linked_folder_read_only(sandbox, tmp_path):
    shared, candidate = linked_snippets(sandbox, tmp_path)
    before = tree(shared)
    with read_only(shared):  # any write through the link fails now
        dry = engine_apply(
            [{"path": candidate, "kind": "file", "data": "# the formula's\n"}],
            nginx={"conf_file": sandbox.conf_file, "binary": NGINX, "start": False},
            backup_dir=sandbox.backup_dir,
            test=True,
        )
    assert dry["result"] is None, dry
    assert "Staged check: nginx accepts the new configuration." in dry["comment"]
    assert tree(shared) == before


def test_a_loop_of_linked_folders_is_staged_and_never_written_through(sandbox, tmp_path):
    shared, candidate = linked_snippets(sandbox, tmp_path)
    os.symlink(shared, os.path.join(shared, "again"))  # snippets/again/again/... forever
    before = tree(shared)
    for path in (candidate, os.path.join(sandbox.nginx_dir, "snippets", "again", "odoo.conf")):
        good = cli.stage_check(path, "# the formula's\n", sandbox.conf_file, NGINX)
        assert good["ok"] is True, good
        assert tree(shared) == before


def test_a_config_folder_that_is_a_link_is_judged_where_nginx_reads_it(sandbox, tmp_path, planner):
    """conf.d -> /srv/nginx/conf.d (configs on a shared path): the formula's
    map lands there, and the staged check finds it loaded, as nginx does."""
    real = tmp_path / "srv" / "nginx-conf.d"
    shutil.move(os.path.join(sandbox.nginx_dir, "conf.d"), real)
    os.symlink(real, os.path.join(sandbox.nginx_dir, "conf.d"))
    before = tree(str(real))
    dry = odoo_websocket_changes.apply(sandbox_settings(sandbox, {}), PARTS, test=True)
    assert dry["result"] is None, dry["comment"]
    assert "Staged check: nginx accepts the new configuration." in dry["comment"]
    assert tree(str(real)) == before


# -- 5. a rollback leaves nginx serving the files on disk ---------------------


def test_a_rollback_reloads_nginx_that_someone_else_reloaded_during_the_run(live_sandbox):
    """The run fails before its own reload (a restart command fails), while a
    logrotate hook or another tool reloaded nginx onto the run's new files:
    the rollback must reload too, or the host serves what disk no longer holds."""
    box = live_sandbox
    assert engine_apply(returning_site(box, 204), nginx=nginx_of(box, start=True),
                        backup_dir=box.backup_dir)["result"] is True  # fmt: skip
    assert served_soon(box, 204)
    changes = [dict(change, concern="nginx") for change in returning_site(box, 418)]
    plan = {"changes": changes, "nginx": nginx_of(box, start=True), "secret_keys": [],
            "restarts": [{"concern": "nginx", "what": "restart the cache", "cmd": "exit 3"}],
            "verify": None}  # fmt: skip

    def someone_reloads(step):
        if step == "validated":  # the new files are written, the run has not reloaded
            subprocess.run([NGINX, "-c", box.conf_file, "-s", "reload"], check=True)
            assert served_soon(box, 418)

    transaction = odoo_websocket_changes.Transaction(BackupStore(box.backup_dir), lambda: plan, 10)
    transaction.fault_seam = someone_reloads
    ret = transaction.run()
    assert ret["result"] is False and "restart the cache failed (exit 3)" in ret["comment"], ret
    assert served_soon(box, 204), "nginx serves the rolled-back files' configuration"


# -- 2. writes are compare-and-swap -------------------------------------------


def run_with_seam(box, changes, seam, restarts=()):
    """The engine's transaction on a raw change set, SEAM called at each step."""
    plan = {"changes": changes, "nginx": nginx_of(box), "secret_keys": [],
            "restarts": list(restarts), "verify": None}  # fmt: skip
    transaction = odoo_websocket_changes.Transaction(BackupStore(box.backup_dir), lambda: plan, 10)
    transaction.fault_seam = seam
    return transaction.run()


@pytest.mark.parametrize("step", ["backup", "journal", "write-0"])
def test_a_file_edited_under_the_run_is_never_overwritten(sandbox, step):
    """An operator (or another tool) edits a managed file after the run
    planned it: the run stops before renaming over it, puts back what it
    wrote, and names the file; the operator's edit stays, byte for byte."""
    before = sandbox.fingerprint()
    hotfix = "# the operator's hotfix, made while the run was planning\n"

    def operator_edits(at):
        if at == step:
            with open(sandbox.map_file, "w", encoding="utf-8") as handle:
                handle.write(hotfix)

    ret = run_with_seam(sandbox, site_change(sandbox), operator_edits)
    assert ret["result"] is False, ret
    assert f"{sandbox.map_file} changed under the run" in ret["comment"], ret["comment"]
    with open(sandbox.map_file, encoding="utf-8") as handle:
        assert handle.read() == hotfix
    after = sandbox.fingerprint()
    assert {p: v for p, v in after.items() if p != sandbox.map_file} == {
        p: v for p, v in before.items() if p != sandbox.map_file
    }


def test_a_rollback_never_reverts_an_edit_made_after_the_run_wrote(sandbox):
    """A sibling: the operator edits a file the run already wrote, then the
    run fails (a restart) and rolls back: the other files go back, that
    one keeps the operator's edit, and the comment says so."""
    hotfix = "# edited after the run wrote it\n"

    def operator_edits(at):
        if at == "validated":
            with open(sandbox.map_file, "w", encoding="utf-8") as handle:
                handle.write(hotfix)

    changes = [dict(change, concern="nginx") for change in site_change(sandbox)]
    failing = {"concern": "nginx", "what": "restart the cache", "cmd": "exit 3"}
    ret = run_with_seam(sandbox, changes, operator_edits, restarts=[failing])
    assert ret["result"] is False, ret
    assert f"{sandbox.map_file} changed under the run" in ret["comment"], ret["comment"]
    with open(sandbox.map_file, encoding="utf-8") as handle:
        assert handle.read() == hotfix
    assert not os.path.lexists(sandbox.site_link)  # the run's other files are gone again


# -- the smaller findings ------------------------------------------------------


def test_a_dry_run_with_a_backup_folder_made_ahead_of_the_formula(sandbox):
    """Configuration management often creates backup:dir first (its mode, its
    owner): a test run must report, not fail on the lock that is not there."""
    os.makedirs(sandbox.backup_dir, mode=0o700)
    before = sandbox.fingerprint()
    dry = engine_apply(site_change(sandbox), nginx=nginx_of(sandbox),
                       backup_dir=sandbox.backup_dir, test=True)  # fmt: skip
    assert dry["result"] is None, dry
    assert sandbox.fingerprint() == before and os.listdir(sandbox.backup_dir) == []


class Killed(BaseException):
    """A run dying in the middle (as by SIGKILL): nothing of it catches this."""


def test_a_failure_after_recovery_says_what_recovery_did(sandbox):
    """The next run rolls a killed run back, then fails (the killed run's
    restart, run again, fails): it must say the files were put back, never
    "nothing was touched"."""
    before = sandbox.fingerprint()
    changes = [dict(change, concern="nginx") for change in site_change(sandbox)]

    def killed(step):
        if step == "restarted":
            raise Killed

    restart = {"concern": "nginx", "what": "restart the cache", "cmd": "true"}
    with pytest.raises(Killed):
        run_with_seam(sandbox, changes, killed, restarts=[restart])
    assert sandbox.fingerprint() != before  # half done, its journal left
    failing = dict(restart, cmd="exit 3")
    ret = run_with_seam(sandbox, [dict(c) for c in changes], None, restarts=[failing])
    assert ret["result"] is False, ret
    assert "was rolled back from backup" in ret["comment"], ret["comment"]
    assert "restart the cache failed (exit 3)" in ret["comment"]
    assert "nothing was touched" not in ret["comment"]
    assert sandbox.fingerprint() == before


def planned_separately(planner, settings):
    """Each concern's plan, as the planning states make them."""
    return {concern: planner.build(settings, {concern: part}) for concern, part in PARTS.items()}


def test_a_no_op_is_planned_once_but_again_after_a_recovery_or_an_edit(
    sandbox, planner, monkeypatch
):
    """The planning states' plans serve the transaction when they change
    nothing and nothing they read changed since (a no-op is not planned
    twice); never when recovery has just put a killed run's files back, or
    when a file changed after they planned (another state of the same
    highstate republishing Odoo's port, say)."""
    settings = sandbox_settings(sandbox, {})
    separate = planned_separately(planner, settings)
    assert not planner.unchanged(separate)  # the sandbox's broken site
    assert planner.combined(separate) == planner.build(settings, PARTS)
    before = sandbox.fingerprint()
    # A run writes every planned file, then dies: its files are what the
    # planning states of the next run see.
    plan = planner.build(settings, PARTS)

    def killed(step):
        if step == "validated":
            raise Killed

    transaction = odoo_websocket_changes.Transaction(
        BackupStore(sandbox.backup_dir), lambda: plan, 10, nginx=nginx_of(sandbox)
    )
    transaction.fault_seam = killed
    with pytest.raises(Killed):
        transaction.run()
    seen = planner.inputs(settings)
    separate = planned_separately(planner, settings)
    assert planner.unchanged(separate)
    assert planner.combined(separate) == planner.build(settings, PARTS)
    ret = odoo_websocket_changes.apply(settings, PARTS, planned=(separate, seen))
    assert "was rolled back from backup" in ret["comment"], ret["comment"]
    assert ret["changed"], ret  # planned again after the recovery: the fixes written
    assert sandbox.fingerprint() != before
    # Converged. Odoo's port published again after the planning states ran.
    seen = planner.inputs(settings)
    again = planned_separately(planner, settings)
    assert planner.unchanged(again)
    with open(sandbox.compose_file, encoding="utf-8") as handle:
        text = handle.read()
    sandbox.write(sandbox.compose_file, text.replace('"127.0.0.1:8069:8069"', '"8069:8069"'))
    ret = odoo_websocket_changes.apply(settings, PARTS, planned=(again, seen))
    assert ret["changed"] == [sandbox.compose_file], ret
    # A true no-op: the planning states' plans serve, nothing planned again.
    seen = planner.inputs(settings)
    again = planned_separately(planner, settings)
    builds = []
    monkeypatch.setattr(planner, "build", lambda *args: builds.append(args))
    noop = odoo_websocket_changes.apply(settings, PARTS, planned=(again, seen))
    assert noop["result"] is not False and not noop["changed"], noop
    assert builds == []


def test_combined_plans_take_the_check_the_nginx_plan_pointed_at_an_adopted_site():
    base = {"changes": [], "diffs": {}, "notes": [], "errors": [], "restarts": [],
            "nginx": None, "verify": {"port": 80}, "secret_keys": []}  # fmt: skip
    nginx = dict(base, nginx={"conf_file": "x"}, verify={"port": 443, "scheme": "https"},
                 notes=["adopted"])  # fmt: skip
    joined = odoo_websocket_plan.combined({"nginx": nginx, "compose": base, "odoo_conf": base})
    assert joined["verify"] == {"port": 443, "scheme": "https"}
    assert joined["nginx"] == {"conf_file": "x"} and joined["notes"] == ["adopted"]


# -- 7. the beacon never undoes an operator's command -------------------------


def test_an_operators_restore_holds_healing_until_the_next_apply(sandbox, planner):
    """A restore (or a clean) leaves the hold the beacon reads
    (check_target's hold_file); the formula applied again releases it."""
    first = engine_apply(site_change(sandbox), nginx=nginx_of(sandbox),
                         backup_dir=sandbox.backup_dir)  # fmt: skip
    hold = BackupStore(sandbox.backup_dir).path(odoo_websocket_journal.HOLD)
    restored = odoo_websocket_restore.restore(first["backup"], sandbox.backup_dir,
                                              conf_file=sandbox.conf_file, start=False)  # fmt: skip
    assert restored["result"] is True, restored
    with open(hold, encoding="utf-8") as handle:
        assert json.load(handle)["command"] == f"restore of {first['backup']}"
    minion = commands(TEMPLATE_FUNCTIONS, sandbox.pillar())  # this minion's settings
    target = minion.check_target()  # what the beacon reads
    assert target["hold_file"] == hold
    dry = odoo_websocket_changes.apply(sandbox_settings(sandbox, {}), PARTS, test=True)
    assert dry["result"] is not False and os.path.exists(hold)  # a dry run releases nothing
    applied = odoo_websocket_changes.apply(sandbox_settings(sandbox, {}), PARTS)
    assert applied["result"] is True, applied
    assert not os.path.exists(hold)


# -- 6. root never writes through a folder another user controls --------------

NOBODY = 65534


def deploy_folder(tmp_path, owner, mode=0o755):
    """/home/odoo/config: a deploy user's folder holding an Odoo file."""
    folder = tmp_path / "home" / "odoo" / "config"
    folder.mkdir(parents=True)
    os.chown(folder, owner, owner)
    os.chmod(folder, mode)
    return folder


def write_odoo_conf(box, path):
    change = {"path": str(path), "kind": "file", "data": "[options]\nproxy_mode = True\n"}
    return engine_apply([change], backup_dir=box.backup_dir)


def test_a_root_file_in_a_folder_another_user_controls_is_refused(sandbox, tmp_path):
    """The user who owns the folder could swap it for a link between the plan
    and the write (to /etc/cron.d, say): root writes nothing there."""
    folder = deploy_folder(tmp_path, NOBODY)
    conf = folder / "odoo.conf"
    conf.write_text("[options]\n")
    ret = write_odoo_conf(sandbox, conf)
    assert ret["result"] is False, ret
    assert f"{folder} is owned by uid {NOBODY}" in ret["comment"], ret["comment"]
    assert conf.read_text() == "[options]\n"


def test_a_folder_writable_by_others_is_refused_and_a_users_own_file_is_not(sandbox, tmp_path):
    folder = deploy_folder(tmp_path, 0, mode=0o777)
    conf = folder / "odoo.conf"
    conf.write_text("[options]\n")
    ret = write_odoo_conf(sandbox, conf)
    assert ret["result"] is False and "writable by others" in ret["comment"], ret
    # The deploy user's own file in the deploy user's own folder: they could
    # write it anyway, and the compare-and-swap catches a swap under the run.
    mine = deploy_folder(tmp_path / "second", NOBODY) / "odoo.conf"
    mine.write_text("[options]\n")
    os.chown(mine, NOBODY, NOBODY)
    ret = write_odoo_conf(sandbox, mine)
    assert ret["result"] is True, ret
    assert os.stat(mine).st_uid == NOBODY  # it keeps its owner


def test_a_link_along_the_way_that_another_user_owns_is_refused(sandbox, tmp_path):
    real = tmp_path / "etc-odoo"
    real.mkdir()
    (real / "odoo.conf").write_text("[options]\n")
    link = tmp_path / "odoo-config"
    os.symlink(real, link)
    os.lchown(link, NOBODY, NOBODY)
    ret = write_odoo_conf(sandbox, link / "odoo.conf")
    assert ret["result"] is False and f"{link} is a link owned by uid {NOBODY}" in ret["comment"]
    assert (real / "odoo.conf").read_text() == "[options]\n"


# -- 4. recreating Odoo reads the project as the operator's compose does ------

OVERRIDE = """services:
  odoo:
    environment:
      HOST: db-from-the-override
    volumes:
      - filestore:/var/lib/odoo
volumes:
  filestore:
"""


def compose_project(tmp_path, env=""):
    folder = tmp_path / "opt" / "odoo"
    folder.mkdir(parents=True)
    (folder / "docker-compose.yml").write_text("services:\n  odoo:\n    image: odoo:17\n")
    (folder / "docker-compose.override.yml").write_text(OVERRIDE)
    (folder / "docker-compose.prod.yml").write_text(
        "services:\n  odoo:\n    environment:\n      PROD: from-compose-file\n"
    )
    (folder / ".env").write_text(env)
    return folder


def rendered_command(folder, arguments):
    """The formula's default compose command for FOLDER's compose file, with
    ARGUMENTS in place of `up -d odoo`: `config` shows what compose reads."""
    settings = odoo_websocket_settings.settings(
        settings_with(compose={"file": str(folder / "docker-compose.yml")})
    )
    return settings["compose"]["recreate_cmd"].replace("up -d odoo", arguments)


def test_the_recreate_command_reads_the_override_and_the_projects_env(tmp_path):
    """docker-compose.override.yml (volumes: the filestore; the db host) and
    .env's COMPOSE_FILE and COMPOSE_PROJECT_NAME, read by the real compose:
    a container recreated without them loses its filestore."""
    folder = compose_project(tmp_path)
    done = subprocess.run(rendered_command(folder, "config"), shell=True, cwd="/",
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "db-from-the-override" in done.stdout and "/var/lib/odoo" in done.stdout
    (folder / ".env").write_text(
        "COMPOSE_FILE=docker-compose.yml:docker-compose.prod.yml\nCOMPOSE_PROJECT_NAME=shop\n"
    )
    done = subprocess.run(rendered_command(folder, "config"), shell=True, cwd="/",
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "from-compose-file" in done.stdout  # .env read: its project name too


PUBLISHING_OVERRIDE = """# the developer's override, left on the server
services:
  odoo:
    ports:
      - "8069:8069"  # debug from the LAN
"""


def test_an_override_that_publishes_odoos_port_is_rebound_and_restored(sandbox, planner):
    """compose adds docker-compose.override.yml's ports to the file's: its
    8069 entry would keep Odoo public after the run. The run binds it as it
    binds the file's (the real docker-compose checks the project as it merges
    it); a restore through the operator's command puts both files back."""
    folder = os.path.dirname(sandbox.compose_file)
    override = os.path.join(folder, "docker-compose.override.yml")
    sandbox.write(override, PUBLISHING_OVERRIDE)
    before = sandbox.fingerprint()
    ret = odoo_websocket_changes.apply(sandbox_settings(sandbox, {}), PARTS)
    assert ret["result"] is True, ret["comment"]
    assert override in ret["changed"] and sandbox.compose_file in ret["changed"]
    with open(override, encoding="utf-8") as handle:
        assert handle.read() == PUBLISHING_OVERRIDE.replace('"8069:8069"', '"127.0.0.1:8069:8069"')
    merged = subprocess.run(["docker-compose", "config"], cwd=folder, capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    published = [line.strip() for line in merged.splitlines() if ":80" in line and "- " in line]
    assert published and all(entry.startswith("- 127.0.0.1:") for entry in published), merged
    os.unlink(sandbox.marker("compose-recreated"))
    minion = commands(TEMPLATE_FUNCTIONS, sandbox.pillar())
    restored = minion.restore(ret["backup"], conf_file=sandbox.conf_file, start=False)
    assert restored["result"] is True, restored["comment"]
    assert sandbox.fingerprint() == before
    assert os.path.exists(sandbox.marker("compose-recreated"))  # the restore recreated it


# -- 3. clean never reverts an operator's later edit ---------------------------


def formula_run(box, changes):
    """A run of the formula's own (its label is what clean looks for)."""
    ret = engine_apply(changes, backup_dir=box.backup_dir, label="odoo_websocket: odoo_conf")
    assert ret["result"] is True, ret
    return ret


def conf_change(box, text):
    return [{"path": box.odoo_conf, "kind": "file", "data": text, "concern": "odoo_conf"}]


def clean(box):
    return odoo_websocket_restore.clean(box.backup_dir)


def test_clean_refuses_to_revert_an_edit_made_after_the_formula_wrote(sandbox):
    original = open(sandbox.odoo_conf).read()
    formula_run(sandbox, conf_change(sandbox, original + "proxy_mode = True\n"))
    rotated = original + "proxy_mode = True\ndb_password = rotated-by-the-operator\n"
    sandbox.write(sandbox.odoo_conf, rotated)
    before = sandbox.fingerprint()
    ret = clean(sandbox)
    assert ret["result"] is False, ret
    assert f"{sandbox.odoo_conf} changed since the formula wrote it" in ret["comment"]
    assert "rotated-by-the-operator" not in ret["comment"]  # the diff is masked
    assert sandbox.fingerprint() == before


def test_clean_refuses_when_an_edit_came_between_two_formula_runs(sandbox):
    """The operator's edit sits between two runs: the oldest set's copy
    predates it, so putting that back would lose it too."""
    original = open(sandbox.odoo_conf).read()
    formula_run(sandbox, conf_change(sandbox, original + "proxy_mode = True\n"))
    sandbox.write(sandbox.odoo_conf, original + "proxy_mode = True\nlimit_time_real = 1200\n")
    formula_run(sandbox, conf_change(sandbox, original + "proxy_mode = True\n"
                                     "limit_time_real = 1200\nworkers = 2\n"))  # fmt: skip
    before = sandbox.fingerprint()
    ret = clean(sandbox)
    assert ret["result"] is False and "changed since the formula wrote it" in ret["comment"]
    assert sandbox.fingerprint() == before


def test_clean_puts_back_what_only_the_formula_changed(sandbox):
    original = open(sandbox.odoo_conf).read()
    formula_run(sandbox, conf_change(sandbox, original + "proxy_mode = True\n"))
    formula_run(sandbox, conf_change(sandbox, original + "proxy_mode = True\nworkers = 2\n"))
    ret = clean(sandbox)
    assert ret["result"] is True, ret
    assert open(sandbox.odoo_conf).read() == original


# -- 10. a killed run's path the new pillar no longer manages -----------------


def test_recovery_puts_back_a_path_the_pillar_no_longer_names(sandbox):
    """A run is killed after writing a file; the pillar then drops that file
    (an instance removed): recovery still puts it back, since it holds
    exactly what the killed run wrote, and says so."""
    engine_apply(site_change(sandbox, size="1m"), backup_dir=sandbox.backup_dir)
    before = sandbox.fingerprint()

    def killed(step):
        if step == "write-0":
            raise Killed

    with pytest.raises(Killed):
        run_with_seam(sandbox, site_change(sandbox, size="2m"), killed)
    assert sandbox.fingerprint() != before
    note = odoo_websocket_restore.recover(sandbox.backup_dir, managed=[sandbox.odoo_conf])
    assert f"no longer names them (they held what that run wrote): {sandbox.site_file}" in note
    assert sandbox.fingerprint() == before


def outside_site(box, tmp_path, text="# the host's own site, outside nginx's folder\n"):
    """A site nginx loads from outside its folder (/srv/nginx/sites/...)."""
    folder = tmp_path / "srv" / "nginx" / "sites"
    folder.mkdir(parents=True)
    site = folder / "odoo.conf"
    site.write_text(text)
    box.write(os.path.join(box.nginx_dir, "conf.d/srv-sites.conf"), f"include {folder}/*.conf;\n")
    return str(site)


def test_a_site_nginx_loads_from_outside_its_folder_is_a_managed_path(sandbox, tmp_path):
    """Adoption may edit it: restore, clean and recovery must trust it too."""
    site = outside_site(sandbox, tmp_path)
    managed = odoo_websocket_concerns.managed_paths(sandbox_settings(sandbox, {}))
    assert odoo_websocket_files.outside([site], managed) == []
    assert odoo_websocket_files.outside([str(tmp_path / "srv" / "other.conf")], managed)


def test_the_staged_check_judges_a_candidate_outside_nginxs_folder(sandbox, tmp_path):
    site = outside_site(sandbox, tmp_path)
    before = tree(str(tmp_path / "srv"))
    good = cli.stage_check(site, "# the formula's edit\n", sandbox.conf_file, NGINX)
    assert good["ok"] is True, good
    bad = cli.stage_check(site, "server {\n", sandbox.conf_file, NGINX)
    assert bad["ok"] is False and bad["errors"][0]["file"] == site, bad
    assert tree(str(tmp_path / "srv")) == before


# -- 11. a server block that shadows the formula's on one address -------------


def intranet_site(box, *addresses):
    """Another site of the host's, listening on ADDRESSES of the host."""
    listens = "".join(f"    listen {a}:{box.http_port} default_server;\n" for a in addresses)
    box.write(os.path.join(box.nginx_dir, "sites-enabled", "intranet"),
              f"server {{\n{listens}    server_name intranet.example.com;\n"
              "    return 204;\n}\n")  # fmt: skip


def test_a_site_listening_on_one_address_of_the_formulas_port_is_found(sandbox, planner):
    """nginx hands a connection to the server blocks listening on its exact
    address first: browsers reaching Odoo at 10.9.9.9 would get the intranet
    site, never the formula's (listen 80). The plan says so and what to do."""
    intranet_site(sandbox, "10.9.9.9")
    before = sandbox.fingerprint()
    dry = odoo_websocket_changes.apply(sandbox_settings(sandbox, {}), PARTS, test=True)
    assert dry["result"] is False, dry
    assert f"listens on 10.9.9.9:{sandbox.http_port}" in dry["comment"], dry["comment"]
    assert "nginx:listen_addresses" in dry["comment"]
    assert sandbox.fingerprint() == before
    # The formula's site listening there too (and everywhere else): no shadow.
    settings = sandbox_settings(sandbox, {})
    for name in ("0.0.0.0", "10.9.9.9"):
        settings["nginx"]["listen_addresses"].append(name)
    dry = odoo_websocket_changes.apply(settings, PARTS, test=True)
    assert f"listens on 10.9.9.9:{sandbox.http_port}" not in dry["comment"], dry["comment"]


def test_an_ipv6_listen_shadows_only_an_ipv6_wildcard(sandbox, planner):
    """The formula's site listens on both wildcards where the host has IPv6
    (listen 80 and [::]:80, as Debian's default site): a block on [fd00::9]:80
    takes that address's browsers. With listen_addresses IPv4's wildcard
    only, [fd00::9] never reached the site: no shadow."""
    intranet_site(sandbox, "[fd00::9]")
    dry = odoo_websocket_changes.apply(sandbox_settings(sandbox, {}), PARTS, test=True)
    assert f"listens on [fd00::9]:{sandbox.http_port}" in dry["comment"], dry["comment"]
    assert "(with 0.0.0.0 and [::], to go on listening on every address)" in dry["comment"]
    settings = sandbox_settings(sandbox, {})
    settings["nginx"]["listen_addresses"] = ["0.0.0.0"]
    dry = odoo_websocket_changes.apply(settings, PARTS, test=True)
    assert "listens on [fd00::9]" not in dry["comment"], dry["comment"]
    assert dry["result"] is None, dry["comment"]


def test_a_status_page_on_a_loopback_address_is_no_shadow(sandbox, planner):
    """nginx's stub_status on 127.0.0.1 and [::1]: local clients only, no
    browser reaches those addresses, so the run goes on."""
    intranet_site(sandbox, "127.0.0.1", "[::1]")
    dry = odoo_websocket_changes.apply(sandbox_settings(sandbox, {}), PARTS, test=True)
    assert "listens on" not in dry["comment"] and dry["result"] is None, dry["comment"]


def test_verify_proves_the_site_on_every_address_browsers_reach(rig):
    """On a namespace host with Debian's default site (listen 80 and [::]:80,
    default_server): the formula's site listens on IPv6 too, so the check
    proves the handshake on [::1] as on 127.0.0.1. A site the operator adds
    later on the host's own address takes that address's browsers: the
    check (what the beacon runs) fails, naming the address."""
    host = rig.odoo_host()
    code, result = host.apply_formula(host.sandbox.pillar())
    failed = {s["__id__"]: s["comment"] for s in result.values() if not s["result"]}
    assert code == 0 and not failed, failed
    code, verdict = host.salt_call("odoo_websocket.verify")
    checks = {item["name"]: item for item in verdict["checks"]}
    assert verdict["ok"] is True, verdict["summary"]
    assert checks["websocket handshake at ::1"]["ok"] is True, checks
    with open(os.path.join(host.root, "etc/nginx/sites-enabled/intranet"), "w") as handle:
        handle.write(f"server {{\n    listen {host.address}:80 default_server;\n"
                     "    server_name intranet.example.com;\n    return 204;\n}\n")  # fmt: skip
    reload = host.exec("nginx", "-s", "reload")
    assert reload.returncode == 0, reload.stderr
    deadline = time.monotonic() + 10
    while True:
        code, verdict = host.salt_call("odoo_websocket.verify")
        if verdict["ok"] is False or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # the reload's new workers
    shadowed = {item["name"]: item for item in verdict["checks"]}[
        f"websocket handshake at {host.address}"
    ]
    assert shadowed["ok"] is False and "HTTP 204" in shadowed["detail"], verdict["summary"]
    assert host.address in verdict["summary"]


def test_an_edit_while_the_plan_is_made_is_never_overwritten(sandbox, planner, monkeypatch):
    """The planner reads the compose file, then docker-compose checks the
    edited text (up to a minute): an operator's edit in between must stop
    the run, not be overwritten by text made from the older file."""
    validate = odoo_websocket_compose_project.validate
    edit = "# the operator's edit, made while compose checked the formula's\n"

    def operator_edits_meanwhile(text, path, *project):
        with open(sandbox.compose_file, "a", encoding="utf-8") as handle:
            handle.write(edit)
        return validate(text, path, *project)

    monkeypatch.setattr(odoo_websocket_compose_project, "validate", operator_edits_meanwhile)
    ret = odoo_websocket_changes.apply(sandbox_settings(sandbox, {}), PARTS)
    assert ret["result"] is False, ret
    assert f"{sandbox.compose_file} changed under the run" in ret["comment"], ret["comment"]
    with open(sandbox.compose_file, encoding="utf-8") as handle:
        assert handle.read().endswith(edit)


def test_a_new_file_in_a_folder_anyone_may_write_is_refused(sandbox, tmp_path):
    """Anyone could plant the name as a link before root writes it."""
    public = tmp_path / "public"
    public.mkdir()
    os.chmod(public, 0o1777)
    ret = write_odoo_conf(sandbox, public / "new" / "odoo.conf")
    assert ret["result"] is False and "where anyone may create it" in ret["comment"], ret


def test_a_replaced_file_keeps_its_extended_attributes(sandbox):
    """ACLs, an SELinux label, a backup tool's user.* mark: everything about
    the file but its bytes stays, through the run and through a restore."""
    conf = sandbox.odoo_conf
    try:
        os.setxattr(conf, "user.backup-tool", b"keep me")
    except OSError:
        pytest.skip("no user extended attributes on this file system")
    ret = engine_apply(conf_change(sandbox, "[options]\nproxy_mode = True\n"),
                       backup_dir=sandbox.backup_dir)  # fmt: skip
    assert ret["result"] is True, ret
    assert os.getxattr(conf, "user.backup-tool") == b"keep me"
    odoo_websocket_restore.restore(ret["backup"], sandbox.backup_dir)
    assert os.getxattr(conf, "user.backup-tool") == b"keep me"
