"""odoo_websocket_minion, the library's seam to Salt: what is bound is what
the library reads, nothing outside a Salt call, and a library module that a
sync replaced is imported again (in a process of its own: dropping modules
from sys.modules must not touch this test run's)."""

import os
import subprocess
import sys

import pytest

import odoo_websocket_minion
from rig.sandbox import REPO

SCRIPT = """
import os, sys
sys.dont_write_bytecode = True
folder = sys.argv[1]
sys.path.insert(0, folder)
path = os.path.join(folder, "odoo_websocket_probe.py")
with open(path, "w") as handle:
    handle.write("VALUE = 1\\n")
import odoo_websocket_minion, odoo_websocket_probe
odoo_websocket_minion.stamp()
odoo_websocket_minion.fresh()
kept = sys.modules["odoo_websocket_probe"] is odoo_websocket_probe
with open(path, "w") as handle:  # a sync writes the new version
    handle.write("VALUE = 2\\n")
stat = os.stat(path)
os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
odoo_websocket_minion.fresh()
dropped = "odoo_websocket_probe" not in sys.modules and "odoo_websocket_minion" not in sys.modules
import odoo_websocket_probe
print(kept, dropped, odoo_websocket_probe.VALUE)
"""


def test_a_library_a_sync_replaced_is_imported_again(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "_utils"))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.split() == ["True", "True", "2"], done.stdout + done.stderr


PACKAGE_SCRIPT = """
import importlib, os, sys
sys.dont_write_bytecode = True
folder = sys.argv[1]
sys.path.insert(0, folder)
with open(os.path.join(folder, "odoo_websocket_probe.py"), "w") as handle:
    handle.write("VALUE = 1\\n")
import odoo_websocket_minion
odoo_websocket_minion.PACKAGES = {"owfakepackage": "owfakepackage==1"}
import odoo_websocket_probe
odoo_websocket_minion.stamp()
odoo_websocket_minion.fresh()
kept = "odoo_websocket_probe" in sys.modules
with open(os.path.join(folder, "owfakepackage.py"), "w") as handle:  # pip installed it
    handle.write("")
importlib.invalidate_caches()
odoo_websocket_minion.fresh()
print(kept, "odoo_websocket_probe" not in sys.modules)
"""


def test_a_library_imported_before_a_package_was_installed_is_imported_again(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "_utils"))
    done = subprocess.run([sys.executable, "-c", PACKAGE_SCRIPT, str(tmp_path)], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.split() == ["True", "True"], done.stdout + done.stderr


def test_the_library_reads_what_the_salt_module_bound():
    functions, pillar = {"test.ping": lambda: True}, {"odoo_websocket": {"a": 1}}
    with odoo_websocket_minion.bound(functions, pillar, {"os_family": "Debian"}, {}):
        minion = odoo_websocket_minion.current()
        assert minion.functions["test.ping"]() and minion.pillar == pillar
        assert minion.grains["os_family"] == "Debian"
    with pytest.raises(RuntimeError, match="outside a Salt call"):
        odoo_websocket_minion.current()


def test_a_minion_older_than_the_tested_lines_is_refused_with_a_message():
    assert odoo_websocket_minion.unsupported_salt() is None  # the tests' own Salt
    assert odoo_websocket_minion.unsupported_salt((3006, 0)) is None
    message = odoo_websocket_minion.unsupported_salt((3005, 5))
    assert message.startswith("odoo_websocket needs Salt 3006 or newer on the minion")
    assert "this one runs 3005.5" in message
