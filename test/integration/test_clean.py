"""odoo_websocket.clean through a real salt-master and salt-minion, on a
sandbox served by a really running nginx: what the formula added goes, what
it adopted or changed comes back as the first run found it, through the
transaction (validated, reloaded), and a second clean changes nothing."""

import http.client
import os
import socket
import subprocess
import time

import pytest

from rig.field import ODOO_SAMPLE
from rig.sandbox import Sandbox


@pytest.fixture
def live_box(tmp_path):
    """A sandbox whose nginx really runs, on a free loopback port, with
    Odoo's sample as a plain file in sites-enabled (the field's usual site)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = Sandbox(str(tmp_path / "live"), http_port=port).create()
    site = os.path.join(box.nginx_dir, "sites-enabled", "odoo")
    box.write(site, ODOO_SAMPLE.replace("listen 80;", f"listen {port};"))
    subprocess.run(["nginx", "-c", box.conf_file], check=True)
    yield box
    subprocess.run(["nginx", "-c", box.conf_file, "-s", "stop"], check=False)


def workers(box):
    with open(os.path.join(box.root, "run/nginx.pid"), encoding="ascii") as handle:
        master = handle.read().strip()
    found = subprocess.run(["pgrep", "-P", master], capture_output=True, text=True, check=False)
    return set(found.stdout.split())


def websocket_route(box):
    """Where nginx sends /websocket, by what answers: the sample's odoochat
    (8072, nothing there: 502) or the formula's evented upstream (port 1
    in this pillar: 502 too), told apart by the formula's map drop-in."""
    connection = http.client.HTTPConnection("127.0.0.1", box.http_port, timeout=10)
    try:
        connection.request("GET", "/websocket", headers={"Host": "odoo.example.com"})
        return connection.getresponse().status
    finally:
        connection.close()


def wait_new_workers(box, old):
    deadline = time.monotonic() + 10
    while not (workers(box) and not workers(box) & old):
        assert time.monotonic() < deadline, "nginx never reloaded"
        time.sleep(0.05)


def clean(formula):
    ret = formula.cli.run("odoo_websocket.clean", minion_tgt=formula.minion.id)
    assert isinstance(ret.data, dict), ret.stdout
    return ret.data


def test_clean_puts_the_host_back_and_a_second_clean_changes_nothing(formula, live_box):
    box = live_box
    original = box.fingerprint()
    site = os.path.join(box.nginx_dir, "sites-enabled", "odoo")
    before = workers(box)
    assert before
    # Two runs, two sets: the second changes odoo.conf and the site again;
    # clean must go back past it, to what the first run found.
    assert formula.apply(box.pillar(odoo={"gevent_port": 1})).returncode == 0
    wait_new_workers(box, before)
    assert formula.apply(box.pillar(odoo={"gevent_port": 2})).returncode == 0
    adopted = open(site).read()  # edited in place: the sample's own lines stay
    assert "odoo_websocket (Salt) sets this location's proxying" in adopted
    assert "upstream odoochat {" in adopted and "Managed by Salt" not in adopted
    assert os.path.exists(box.map_file)
    applied = box.fingerprint()
    assert applied != original
    for name in os.listdir(box.marker_dir):
        os.unlink(box.marker(name))

    live = workers(box)
    first = clean(formula)
    assert first["result"] is True, first["comment"]
    assert "Putting back what the formula found, from backup" in first["comment"]
    assert box.map_file in first["changed"] and site in first["changed"]
    assert box.fingerprint() == original  # every file, mode and link as found
    assert not os.path.lexists(box.map_file) and not os.path.lexists(box.site_link)
    assert open(site).read() == ODOO_SAMPLE.replace("listen 80;", f"listen {box.http_port};")
    # Through the transaction: nginx reloaded onto the sample (its own
    # upstreams again), the compose file's container recreated, a backup set
    # of what it replaced, so a restore can undo the clean.
    wait_new_workers(box, live)
    assert "nginx reloaded gracefully" in first["comment"], first["comment"]
    assert websocket_route(box) == 502
    assert os.listdir(box.marker_dir) == ["compose-recreated"], first["comment"]
    assert first["backup"]
    os.unlink(box.marker("compose-recreated"))

    live = workers(box)
    second = clean(formula)
    assert second["result"] is True and second["changed"] == [], second
    assert "Nothing to change." in second["comment"]
    assert second["backup"] is None
    assert box.fingerprint() == original
    time.sleep(0.5)  # a reload signalled anyway would have new workers by now
    assert workers(box) == live
    assert not os.listdir(box.marker_dir)

    # The clean's own set undoes it: the formula's files are back.
    undo = formula.cli.run(
        "odoo_websocket.restore", first["backup"], minion_tgt=formula.minion.id
    ).data
    assert undo["result"] is True, undo
    assert box.fingerprint() == applied


def test_clean_without_backups_changes_nothing(formula, sandbox):
    formula.set_pillar(sandbox.pillar())
    before = sandbox.fingerprint()
    ret = clean(formula)
    assert ret["result"] is True and ret["changed"] == [], ret
    assert "nothing to put back" in ret["comment"]
    assert sandbox.fingerprint() == before
