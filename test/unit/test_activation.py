"""Which restarts a change set calls for (pure logic)."""

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
