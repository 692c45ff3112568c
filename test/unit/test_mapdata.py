"""The committed _mapdata fixtures are what the formula renders for the
defaults and an empty pillar; regenerate them with
`.venv/bin/python test/mapdata.py` after changing defaults.yaml,
osfamilymap.yaml or the settings module."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from mapdata import FAMILIES, REPO, expected_mapdata, fixture_path

REGENERATE = "stale fixture: run .venv/bin/python test/mapdata.py and review the diff"


def _fixture(family):
    with open(fixture_path(family), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.mark.parametrize("family", FAMILIES)
def test_fixture_is_what_the_formula_renders(family):
    assert _fixture(family) == yaml.safe_load(expected_mapdata(family)), REGENERATE


def test_redhat_site_paths_differ_from_debian():
    debian, redhat = _fixture("Debian")["nginx"], _fixture("RedHat")["nginx"]
    assert redhat["site_file"] != debian["site_file"]
    assert redhat["site_link"] != debian["site_link"]


def test_settings_carry_extra_option_names_never_values():
    pillar = {"odoo": {"config": {"extra_options": {"admin_passwd": "S3cret", "db_host": "db"}}}}
    text = expected_mapdata("Debian", pillar)
    assert "S3cret" not in text and "db\n" not in text
    config = yaml.safe_load(text)["odoo"]["config"]
    assert config["extra_options"] == ["admin_passwd", "db_host"]
    assert {"admin_passwd", "db_host"} <= set(config["secret_keys"])
    keys = [key for key, _ in config["options"]]
    assert keys == ["proxy_mode", "workers", "http_port", "gevent_port"]


def _salt_call(config_dir, *args):
    salt_call = os.path.join(os.path.dirname(sys.executable), "salt-call")
    done = subprocess.run(
        [salt_call, "-c", str(config_dir), "--local", "--retcode-passthrough", "--out=json", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr, json.loads(done.stdout)["local"]


def test_state_shows_the_settings_without_secrets_and_writes_nothing(tmp_path):
    """The real SLS, rendered by a masterless salt-call: its comment is the
    expected text for this host's family, no secret in it, and no file the run
    leaves holds a secret."""
    secrets = {"admin_passwd": "S3cretAdmin", "db_host": "db.internal"}
    pillar = {"odoo": {"config": {"extra_options": secrets}}}
    (tmp_path / "pillar").mkdir()
    (tmp_path / "pillar" / "top.sls").write_text("base: {'*': [p]}\n")
    (tmp_path / "pillar" / "p.sls").write_text(json.dumps({"odoo_websocket": pillar}))
    root = tmp_path / "root"
    config = {
        "id": "mapdata-test",
        "file_client": "local",
        "root_dir": str(root),
        "module_dirs": [REPO],
        "file_roots": {"base": [REPO]},
        "pillar_roots": {"base": [str(tmp_path / "pillar")]},
    }
    (tmp_path / "minion").write_text(json.dumps(config))
    _, family = _salt_call(tmp_path, "grains.get", "os_family")
    if family not in FAMILIES:
        pytest.skip(f"no fixture for this host's OS family {family!r}")

    output, ret = _salt_call(tmp_path, "state.apply", "odoo_websocket._mapdata")

    (state,) = ret.values()
    assert state["result"] is True and state["changes"] == {}
    assert yaml.safe_load(state["comment"]) == yaml.safe_load(expected_mapdata(family, pillar))
    assert "S3cret" not in output
    for path in root.rglob("*"):
        if path.is_file():
            assert b"S3cret" not in path.read_bytes(), path
