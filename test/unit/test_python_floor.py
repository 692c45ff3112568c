"""Python 3.10 is the floor for the formula's code (what Salt 3006's and
3007's onedir packages bundle): ruff, with the project's target-version,
refuses newer syntax (`bin/test` runs it on the whole tree)."""

import os
import shutil
import subprocess

from rig.sandbox import REPO


def test_syntax_newer_than_python_3_10_is_refused(tmp_path):
    shutil.copy(os.path.join(REPO, "pyproject.toml"), tmp_path)
    (tmp_path / "fine.py").write_text("match = 1\nx = f'{match}'\n")
    (tmp_path / "newer.py").write_text('type Port = int\nx = f"{"a"}"\n')  # 3.12's
    ruff = os.path.join(REPO, ".venv", "bin", "ruff")
    args = [ruff, "check", "--no-cache", "--select", "E9"]
    assert subprocess.run([*args, "fine.py"], cwd=tmp_path, check=False).returncode == 0
    refused = subprocess.run([*args, "newer.py"], cwd=tmp_path, capture_output=True, text=True,
                             check=False)  # fmt: skip
    assert refused.returncode == 1 and "3.10" in refused.stdout, refused.stdout
