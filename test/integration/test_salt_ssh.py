"""salt-ssh (issue 13, item 6): the formula applied through salt-ssh to a rig
host running sshd on the test bridge (rig/ssh.py), no minion anywhere, with
the same end result and checks as through a minion: the outside host gets
its websocket through nginx and never Odoo's ports, the files are the
formula's, and a second run changes nothing."""

import os

from rig.probe import check_from
from rig.ssh import SaltSSH, prepare_target, start_sshd

TRANSACTION = "odoo_websocket-host-transaction-applied"


def states(code, result):
    assert isinstance(result, dict), "\n".join(result) if isinstance(result, list) else result
    failed = {s["__id__"]: s["comment"] for s in result.values() if not s["result"]}
    assert code == 0 and not failed, failed
    return {s["__id__"]: s for s in result.values()}


def test_formula_through_salt_ssh(rig, tmp_path):
    host = rig.odoo_host(name="sshtarget", prepare=prepare_target)
    outside = rig.outside_host()
    folder = str(tmp_path / "ssh")
    start_sshd(host, folder)
    pillar = host.sandbox.pillar()
    salt_ssh = SaltSSH(host, folder, pillar)

    code, first = salt_ssh.run("state.apply", "odoo_websocket")
    ran = states(code, first)
    changed = ran[TRANSACTION]["changes"]
    assert host.sandbox.site_file.replace(host.root, "") in changed, changed
    # salt-ssh shipped the modules and state modules itself (nothing to sync),
    # and the target's python3 imports the libraries (nothing to install).
    assert sorted(ran) == [
        "odoo_websocket-compose-ports-planned",
        "odoo_websocket-dependencies-ready",
        TRANSACTION,
        "odoo_websocket-nginx-site-planned",
        "odoo_websocket-odoo-config-planned",
        "odoo_websocket-settings-validated",
    ], sorted(ran)

    seen = check_from(outside, host)
    assert seen["through_nginx"]["status"] == 101, seen
    assert seen["through_nginx"]["subscribed"], seen
    assert seen["direct"] == {"8069": False, "8072": False}, seen
    assert os.path.islink(host.sandbox.site_link)

    # The operator's commands run there too, on the library salt-ssh shipped
    # (_utils/), which is not itself reachable as a command; a command that
    # needs the settings says why it cannot have them (no salt:// file is
    # shipped with a bare command).
    conf_file = host.sandbox.conf_file.replace(host.root, "")
    code, tested = salt_ssh.run("odoo_websocket.nginx_test", f"conf_file={conf_file}")
    assert code == 0 and tested["ok"] is True, tested
    code, listed = salt_ssh.run("sys.list_functions", "odoo_websocket*")
    assert code == 0 and listed and all(f.startswith("odoo_websocket.") for f in listed), listed
    code, target = salt_ssh.run("odoo_websocket.check_target")
    assert code != 0 and "only state.apply ships it" in str(target), target

    code, second = salt_ssh.run("state.apply", "odoo_websocket")
    again = states(code, second)
    assert all(not state["changes"] for state in again.values()), again
