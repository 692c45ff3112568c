"""Which restarts a change set calls for (pure logic)."""

from loader import load

activation = load()["odoo_websocket_activation"]
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
