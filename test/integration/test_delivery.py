"""The formula delivered the ways masters get formulas (issue 24): served by
gitfs from a git repository (GitPython), and installed with `spm build` and
`spm local install` from the files FORMULA ships. Each time a master of its
own (pytest-salt-factories) serves it and a minion applies it to a sandbox
host, syncing the modules itself."""

import os
import shutil
import subprocess
import sys

import yaml

from conftest import minion_options
from helpers import Formula, states
from rig.sandbox import REPO

TRANSACTION_ID = "odoo_websocket-host-transaction-applied"


def shipped():
    """The paths FORMULA's `files` names (what spm ships)."""
    with open(os.path.join(REPO, "FORMULA"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)["files"]


def copy_shipped(folder):
    """FORMULA and the files it ships, copied to FOLDER (no caches)."""
    os.makedirs(folder)
    for name in shipped():
        source = os.path.join(REPO, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(folder, name),
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        else:
            shutil.copy(source, folder)
    return folder


def apply_through(salt_factories, master_id, overrides, pillar_dir, sandbox):
    """A master of its own with OVERRIDES and a minion of its own: the
    formula applied to SANDBOX through them, its states' results."""
    overrides = dict(overrides, pillar_roots={"base": [str(pillar_dir)]})
    master = salt_factories.salt_master_daemon(master_id, overrides=overrides)
    with master.started():
        minion = master.salt_minion_daemon(f"{master_id}-minion", **minion_options())
        with minion.started():
            result = Formula(master, minion, pillar_dir).apply(sandbox.pillar())
    assert result.returncode == 0, result.stdout
    return states(result)


def test_a_master_serving_the_formula_by_gitfs_applies_it(salt_factories, pillar_dir, sandbox,
                                                          tmp_path):  # fmt: skip
    """The formula's files in a git repository (a bare one, as a git server
    holds it), served by gitfs with GitPython: state.apply syncs the
    modules from it and fixes the host."""
    work = copy_shipped(str(tmp_path / "work"))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "formula"]):
        subprocess.run([*git, *command], cwd=work, check=True)
    bare = str(tmp_path / "formula.git")
    subprocess.run(["git", "clone", "-q", "--bare", work, bare], check=True)
    overrides = {
        "fileserver_backend": ["gitfs"],
        "gitfs_provider": "gitpython",
        "gitfs_remotes": [f"file://{bare}"],
        "gitfs_base": "main",
    }
    ran = apply_through(salt_factories, "odoo-ws-gitfs", overrides, pillar_dir, sandbox)
    assert ran[TRANSACTION_ID]["result"] is True, ran[TRANSACTION_ID]["comment"]
    assert os.path.exists(sandbox.site_file)


def test_a_master_with_the_formula_installed_by_spm_applies_it(salt_factories, pillar_dir,
                                                               sandbox, tmp_path):  # fmt: skip
    """`spm build` from the files FORMULA ships, `spm local install` into the
    master's file_roots: the state tree, the modules and the library land
    there, no test, rig or benchmark, and state.apply fixes the host."""
    source = copy_shipped(str(tmp_path / "source"))
    roots, config = tmp_path / "srv", tmp_path / "spm-config"
    config.mkdir()
    (config / "spm").write_text(yaml.safe_dump({
        "formula_path": str(roots / "salt"),
        "pillar_path": str(roots / "pillar"),
        "reactor_path": str(roots / "reactor"),
        "spm_build_dir": str(tmp_path / "built"),
        "spm_cache_dir": str(tmp_path / "spm-cache"),
        "spm_db": str(tmp_path / "spm-cache" / "packages.db"),
        "spm_logfile": str(tmp_path / "spm.log"),
        "spm_repos_config": str(config / "spm.repos"),
    }))  # fmt: skip
    spm = [os.path.join(os.path.dirname(sys.executable), "spm"), "-c", str(config), "-y"]
    subprocess.run([*spm, "build", source], cwd=source, check=True, capture_output=True)
    (package,) = os.listdir(tmp_path / "built")
    done = subprocess.run([*spm, "local", "install", str(tmp_path / "built" / package)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    installed = sorted(os.listdir(roots / "salt"))
    assert {"odoo_websocket", "_modules", "_states", "_utils", "_beacons"} <= set(installed)
    assert not {"test", "tools", "docs"} & set(installed), installed
    overrides = {"file_roots": {"base": [str(roots / "salt")]}}
    ran = apply_through(salt_factories, "odoo-ws-spm", overrides, pillar_dir, sandbox)
    assert ran[TRANSACTION_ID]["result"] is True, ran[TRANSACTION_ID]["comment"]
    assert os.path.exists(sandbox.site_file)
