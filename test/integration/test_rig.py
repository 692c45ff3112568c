"""The namespace hosts themselves: isolated, and gone after teardown."""

import json
import os
import subprocess
import sys
import time

import pytest

from rig.field import site
from rig.hosts import Rig
from rig.sandbox import TOOLS


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
    up = subprocess.run([*cli, "up", str(state)], capture_output=True, text=True, cwd=TOOLS)
    assert up.returncode == 0, up.stderr
    data = json.loads(state.read_text())
    assert [h["name"] for h in data["hosts"]] == ["odoo", "outside"]
    down = subprocess.run([*cli, "down", str(state)], capture_output=True, text=True, cwd=TOOLS)
    assert down.returncode == 0, down.stderr
    assert data["tag"] not in links()
    assert not state.exists()


def unbindable_odoo(box):
    """Compose publishes Odoo on an address the host does not have: the
    stand-in cannot bind, as docker could not."""
    text = open(box.compose_file).read().replace('"8069:8069"', '"10.9.9.9:8069:8069"')
    box.write(box.compose_file, text)


def nginx_refusing_its_config(box):
    site(box, "server {\n    listen 80;\n    bogus_directive on;\n}\n")


@pytest.mark.parametrize(
    "prepare, reason, logged",
    [
        (unbindable_odoo, "host not ready: Odoo exited with code 1", "10.9.9.9"),
        (nginx_refusing_its_config, "host not ready: nginx exited with code 1",
         'unknown directive "bogus_directive"'),
    ],
    ids=["odoo-never-listens", "nginx-never-starts"],
)  # fmt: skip
def test_host_whose_services_do_not_come_up_fails_with_its_logs(tmp_path, prepare, reason, logged):
    rig = Rig(str(tmp_path / "rig")).create()
    try:
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="host odoo did not start") as raised:
            rig.odoo_host(prepare=prepare)
        assert time.monotonic() - started < 10  # told at once, not after a timeout
        assert reason in str(raised.value)
        assert logged in str(raised.value)
    finally:
        rig.destroy()
