"""The sandbox's fingerprint, on which every "changes nothing" test rests:
it must see every file and folder the formula may touch, wherever the
sandbox lives, and refuse to return an empty snapshot."""

import os

import pytest

from rig.sandbox import Sandbox


@pytest.fixture
def below_run(tmp_path):
    """A sandbox whose own path holds every skipped name, as under
    /run/user/0/... or a CI runner's /var/log/... work folder."""
    root = tmp_path / "run" / "var" / "log" / "var" / "backups" / "markers" / "box"
    return Sandbox(str(root)).create()


def test_fingerprint_sees_the_managed_files_wherever_the_sandbox_is(below_run):
    box = below_run
    found = box.fingerprint()
    for path in (box.conf_file, box.odoo_conf, box.compose_file):
        assert isinstance(found[path][0], bytes), path
    default_link = os.path.join(box.nginx_dir, "sites-enabled/default")
    assert found[default_link][0] == "link"
    assert found[os.path.join(box.nginx_dir, "conf.d")][0] == "folder"


def test_fingerprint_sees_file_and_folder_changes(below_run):
    box = below_run
    before = box.fingerprint()
    box.write(box.map_file, "map $http_upgrade $x { default upgrade; }\n")
    assert box.fingerprint() != before
    os.unlink(box.map_file)
    assert box.fingerprint() == before
    os.chmod(os.path.join(box.nginx_dir, "sites-enabled"), 0o777)
    assert box.fingerprint() != before  # a folder's mode counts too
    os.chmod(os.path.join(box.nginx_dir, "sites-enabled"), 0o755)
    os.makedirs(os.path.join(box.root, "etc/nginx/modules-enabled"))
    assert box.fingerprint() != before  # and a new, empty folder


def test_fingerprint_skips_what_runs_write_by_design(below_run):
    box = below_run
    before = box.fingerprint()
    for path in ("run/nginx.pid", "var/log/nginx/error.log", "markers/odoo-restarted",
                 "var/backups/odoo_websocket/lock"):  # fmt: skip
        box.write(os.path.join(box.root, path), "x")
    assert box.fingerprint() == before
    # The skipped folders themselves keep their mode and owner.
    os.chmod(os.path.join(box.root, "var/backups"), 0o777)
    assert box.fingerprint() != before


def test_fingerprint_of_nothing_is_an_error(tmp_path):
    with pytest.raises(AssertionError, match="no file to fingerprint"):
        Sandbox(str(tmp_path / "never-created")).fingerprint()
    (tmp_path / "empty" / "etc").mkdir(parents=True)
    with pytest.raises(AssertionError, match="no file to fingerprint"):
        Sandbox(str(tmp_path / "empty")).fingerprint()
