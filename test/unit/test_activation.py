"""Which restarts a change set calls for (pure logic)."""

import pytest
from salt.exceptions import CommandExecutionError

import odoo_websocket_activation

activation = odoo_websocket_activation
ODOO = {"concern": "odoo_conf", "what": "restart Odoo", "cmd": "true", "unless": "compose"}
RECREATE = {"concern": "compose", "what": "recreate odoo", "cmd": "true"}


def due(changes, restarts=(ODOO, RECREATE)):
    return [r["what"] for r in activation.due_restarts({"restarts": list(restarts)}, changes)]


def test_a_restart_follows_its_concern_and_a_recreate_covers_odoo_conf():
    assert due([{"concern": "odoo_conf"}]) == ["restart Odoo"]
    assert due([{"concern": "compose"}]) == ["recreate odoo"]
    assert due([{"concern": "odoo_conf"}, {"concern": "compose"}]) == ["recreate odoo"]
    assert due([{"concern": "nginx"}]) == []


def test_a_restore_set_with_nginx_files_still_restarts_odoo():
    """A restore's nginx files carry no concern; a restart without 'unless'
    must not be skipped because of them."""
    restart = {"concern": "/etc/odoo/odoo.conf", "what": "restart Odoo", "cmd": "true"}
    changes = [{"path": "/etc/nginx/conf.d/x.conf"}, {"concern": "/etc/odoo/odoo.conf"}]
    assert due(changes, [restart]) == ["restart Odoo"]


def test_a_killed_runs_restarts_are_redone_for_their_own_instances_only():
    """Recovery restarts again what the dead run had restarted: the instance
    whose files it changed, not every instance of that concern."""
    plan = {"restarts": [dict(ODOO, instance=name) for name in ("erp", "shop", "blog")]}
    journal = [{"concern": "odoo_conf", "instance": "shop"}]
    assert [r["instance"] for r in activation.restarted_again(plan, journal)] == ["shop"]
    assert activation.restarted_again(plan, []) == []
    assert activation.restarted_again(plan, [{"concern": "compose", "instance": "shop"}]) == []
    # A journal of an earlier version names the concern only: every instance.
    assert len(activation.restarted_again(plan, ["odoo_conf"])) == 3
    assert activation.restarts_named(journal + [{"concern": "compose", "instance": "default"}]) == (
        "odoo_conf of shop, compose"
    )


def test_a_restart_command_runs_in_a_shell_and_its_failure_is_the_runs(tmp_path, monkeypatch):
    """As Salt's cmd.run_all ran it: a shell line, in the restart's folder,
    without the minion's systemd notify socket; any failure (an exit code,
    output that is not UTF-8, a folder that is gone) fails the run with a
    CommandExecutionError, the error the transaction rolls back on."""
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    seen = tmp_path / "seen"
    cmd = f'pwd > {seen} && echo "${{NOTIFY_SOCKET:-none}}" >> {seen}'
    note = activation.restart({"what": "restart Odoo", "cmd": cmd, "cwd": str(tmp_path)})
    assert note == "restart Odoo: done."
    assert seen.read_text().split() == [str(tmp_path), "none"]
    bad = {"what": "restart Odoo", "cmd": "printf 'bad \\377 bytes' >&2; exit 3"}
    with pytest.raises(CommandExecutionError, match=r"restart Odoo failed \(exit 3\): bad"):
        activation.restart(bad)
    gone = {"what": "recreate odoo", "cmd": "true", "cwd": str(tmp_path / "gone")}
    with pytest.raises(CommandExecutionError, match="recreate odoo failed: .*gone"):
        activation.restart(gone)
