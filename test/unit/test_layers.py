"""The library's imports run one way (tach.toml's layers), checked by tach,
a real import-contract tool, on the tree and on a copy with one import
turned upside down (so the check can fail)."""

import os
import shutil
import subprocess
import sys

from rig.sandbox import REPO

TACH = os.path.join(os.path.dirname(sys.executable), "tach")


def tach_check(root):
    return subprocess.run([TACH, "check"], cwd=root, capture_output=True, text=True, check=False)


def test_the_library_imports_only_downwards():
    done = tach_check(REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_upward_or_sideways_import_fails_the_check(tmp_path):
    shutil.copy(os.path.join(REPO, "tach.toml"), tmp_path)
    shutil.copytree(os.path.join(REPO, "_utils"), tmp_path / "_utils",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    adopt = tmp_path / "_utils" / "odoo_websocket_adopt.py"
    text = adopt.read_text()
    adopt.write_text(
        text.replace("import copy\n", "import copy\n\nimport odoo_websocket_plan\n", 1)
    )
    done = tach_check(tmp_path)
    assert done.returncode != 0 and "odoo_websocket_plan" in done.stdout + done.stderr
    adopt.write_text(text)  # back as it was: a sideways import, within one layer
    verify = tmp_path / "_utils" / "odoo_websocket_verify.py"
    verify.write_text(
        verify.read_text().replace(
            "import html\n", "import html\n\nimport odoo_websocket_names\n", 1
        )
    )
    done = tach_check(tmp_path)
    assert done.returncode != 0 and "odoo_websocket_names" in done.stdout + done.stderr
