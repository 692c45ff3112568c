"""The shared bad pillars (test/bad_pillars.py) aim where the integration
test looks: a path they name lies in the sandbox, where its fingerprint sees
a write, or is a backup folder whose sets it lists."""

import os

from bad_pillars import BAD, SANDBOX, backup_names, in_sandbox, paths_in


def test_bad_paths_stay_inside_the_sandbox():
    outside = []
    for overrides, _ in BAD:
        for key, value in paths_in(overrides):
            if key == "dir":
                continue  # backup folders: the integration test lists their sets
            if not value.startswith((SANDBOX + "/", SANDBOX[1:] + "/")):
                outside.append(value)
    assert outside == []


def test_in_sandbox_moves_absolute_relative_and_command_paths():
    root, cwd = "/tmp/pytest-of-root/x/root", "/work/main"
    moved = in_sandbox(
        {
            "nginx": {"site_file": SANDBOX[1:] + "/etc/a.conf", "map_file": SANDBOX + "/etc/b"},
            "odoo": {"config": {"restart_cmd": "true\x00touch " + SANDBOX + "/markers/x"}},
            "server_name": ["../../etc/nginx"],
        },
        root,
        cwd,
    )
    relative = moved["nginx"]["site_file"]
    assert not os.path.isabs(relative)
    assert os.path.normpath(os.path.join(cwd, relative)) == root + "/etc/a.conf"
    assert moved["nginx"]["map_file"] == root + "/etc/b"
    assert moved["odoo"]["config"]["restart_cmd"] == f"true\x00touch {root}/markers/x"
    assert moved["server_name"] == ["../../etc/nginx"]


def test_backup_names_lists_sets_mark_and_journal_only(tmp_path):
    assert backup_names(str(tmp_path / "missing")) == []
    for name in ("20261127T120821123456-42-0a1b2c", ".odoo_websocket", "journal.json",
                 "lock", "notes.txt", "20261127-other"):  # fmt: skip
        (tmp_path / name).write_text("x")
    assert backup_names(str(tmp_path)) == [
        ".odoo_websocket", "20261127T120821123456-42-0a1b2c", "journal.json",
    ]  # fmt: skip
