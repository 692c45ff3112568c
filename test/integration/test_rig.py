"""The namespace hosts themselves: isolated, and gone after teardown."""

import json
import os
import subprocess
import sys

from rig.hosts import Rig
from rig.sandbox import REPO


def links():
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def test_hosts_are_isolated_and_teardown_leaves_nothing(tmp_path):
    rig = Rig(str(tmp_path / "rig")).create()
    try:
        host = rig.odoo_host()
        outside = rig.outside_host()
        # Private folders: the host's /etc/odoo is its own, the machine's is not touched.
        assert host.exec("cat", "/etc/odoo/odoo.conf").stdout == open(host.sandbox.odoo_conf).read()
        # Own PID namespace: init is PID 1 and only the host's services run there.
        ps = host.exec("ps", "-eo", "pid=,comm=").stdout.split("\n")
        assert ps[0].split()[0] == "1" and ps[0].split()[1].startswith("python")
        assert any("nginx" in line for line in ps)
        # No default route: nothing inside can reach past the bridge.
        assert "default" not in outside.exec("ip", "route").stdout
        pids = [host.init_pid]
    finally:
        rig.destroy()
    assert rig.tag not in links()
    assert rig.tag not in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}")


def test_cli_up_and_down(tmp_path):
    state = tmp_path / "rig.json"
    cli = [sys.executable, "-m", "rig.hosts"]  # as an operator runs it from the repository
    up = subprocess.run([*cli, "up", str(state)], capture_output=True, text=True, cwd=REPO)
    assert up.returncode == 0, up.stderr
    data = json.loads(state.read_text())
    assert [h["name"] for h in data["hosts"]] == ["odoo", "outside"]
    down = subprocess.run([*cli, "down", str(state)], capture_output=True, text=True, cwd=REPO)
    assert down.returncode == 0, down.stderr
    assert data["tag"] not in links()
    assert not state.exists()
