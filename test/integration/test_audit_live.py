"""odoo_websocket.audit as operators run it: inside a namespace test host in a
field state (salt-call, the table and --out=json), where what it reports is
what a browser on another host gets; and through a real salt-master, whose
`salt` command prints the table once the outputter is synced."""

import json
import os
import subprocess

import pytest

from rig.field import ODOO_SAMPLE, broken_docker_host, odoo_conf, site
from rig.hosts import SALT_CALL
from rig.probe import check_from


def audit(host, pillar, table=False):
    """odoo_websocket.audit inside HOST with PILLAR (as on a master):
    (exit code, the findings or the table)."""
    host.salt_call("test.ping")  # writes the host's salt configuration on first use
    with open(os.path.join(host.root, "pillar/odoo_websocket.sls"), "w", encoding="utf-8") as f:
        json.dump(pillar, f)
    if not table:
        return host.salt_call("odoo_websocket.audit")
    config = os.path.join(host.root, "salt")
    proc = host.exec(
        SALT_CALL, "--local", "-c", config, "--log-level=quiet", "odoo_websocket.audit"
    )
    return proc.returncode, proc.stdout


def sample_without_proxy_mode(box):
    site(box, ODOO_SAMPLE)
    odoo_conf(box, workers=2, gevent_port=8072)


def threaded_with_bus_on_8072(box):
    site(box, ODOO_SAMPLE)
    odoo_conf(box, proxy_mode=True, workers=0)


@pytest.mark.parametrize(
    "prepare, errors, status",
    [
        (broken_docker_host, {"realtime-wrong-port", "compose-port-public"}, 500),
        (sample_without_proxy_mode, {"http-version-1.0", "compose-port-public"}, None),
        (
            threaded_with_bus_on_8072,
            {"http-version-1.0", "realtime-wrong-port", "compose-port-public"},
            502,
        ),  # fmt: skip
    ],
    ids=["hardcoded", "odoo-sample", "threaded-8072"],
)
def test_audit_names_what_the_browser_host_sees_failing(rig, prepare, errors, status):
    host = rig.odoo_host(prepare=prepare)
    seen = check_from(rig.outside_host(), host)
    code, found = audit(host, host.sandbox.pillar())
    assert code == 0, found
    assert {f["id"] for f in found if f["severity"] == "error"} == errors, found
    if status:  # the route to a port that does not serve the bus in this worker mode
        assert seen["through_nginx"]["status"] == status, seen
    # Docker publishes Odoo's HTTP port on every interface: the browser host gets in.
    assert seen["direct"]["8069"] is True, seen


def test_broken_host_table_then_no_finding_once_the_formula_ran(rig):
    host = rig.odoo_host(prepare=broken_docker_host)
    code, table = audit(host, host.sandbox.pillar(), table=True)
    assert code == 0, table
    lines = table.splitlines()
    assert lines[0] == "local: 6 findings (3 errors, 3 warnings)", table
    assert lines[1].split() == ["severity", "id", "where"]
    assert lines[2].split() == ["error", "realtime-wrong-port", "/etc/nginx/sites-enabled/odoo:6"]
    code, result = host.apply_formula(host.sandbox.pillar())
    assert code == 0, result
    assert audit(host, host.sandbox.pillar()) == (0, [])
    code, table = audit(host, host.sandbox.pillar(), table=True)
    assert table.strip() == "local: no findings"


@pytest.mark.core
def test_salt_prints_the_table_and_json_gives_the_findings(formula, salt_master, sandbox):
    """Through the master: the outputter synced with saltutil.sync_output."""
    pillar = sandbox.pillar()
    formula.set_pillar(pillar)
    config = ["-c", salt_master.config_dir]
    run = [os.path.join(os.path.dirname(SALT_CALL), name) for name in ("salt-run", "salt")]
    sync = subprocess.run([run[0], *config, "saltutil.sync_output"], capture_output=True, text=True)
    assert "output.odoo_websocket_audit" in sync.stdout, sync
    target = formula.minion.id
    proc = subprocess.run([run[1], *config, target, "odoo_websocket.audit"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    # The sandbox's compose file publishes 8069 and 8072 everywhere; no site yet.
    assert proc.stdout.startswith(f"{target}: 4 findings (3 errors, 1 warning)"), proc.stdout
    assert "compose-port-public" in proc.stdout and "no-site" in proc.stdout
    found = formula.cli.run("odoo_websocket.audit", minion_tgt=target).data
    assert sorted(f["id"] for f in found) == ["compose-port-public"] * 2 + [
        "no-site",
        "proxy-mode-off",
    ]
    assert formula.apply(pillar).returncode == 0
    assert formula.cli.run("odoo_websocket.audit", minion_tgt=target).data == []
