"""The planner on a sandbox where instances share files or the host holds
copies of the formula's files: edits of one file chain, an operator's copy of
a formula site is not the formula's, and the diffs it shows hide credentials."""

import os

from test_instances import (
    PARTS,
    Sandbox,
    defaults,
    merge,
    planner,  # noqa: F401 (fixture)
    settings_mod,
)


def test_an_adopted_sites_credentials_are_masked_in_its_diff(planner, tmp_path):  # noqa: F811
    box = Sandbox(str(tmp_path / "box")).create()
    settings = settings_mod.settings(merge(defaults(), box.pillar()["odoo_websocket"]))
    old = os.path.join(box.nginx_dir, "sites-enabled/odoo")
    name = settings["nginx"]["server_name"][0]
    box.write(old, f"server {{\n    listen 80;\n    server_name {name};\n    location / {{\n"
              "        proxy_set_header Authorization \"Basic b2RvbzpTM2NyM3Q=\";\n"
              "        proxy_pass http://127.0.0.1:8069;\n    }\n}\n")  # fmt: skip
    plan = planner.build(settings, {"nginx": PARTS["nginx"]})
    assert plan["errors"] == []
    shown = plan["diffs"][old]["diff"]
    assert "b2RvbzpTM2NyM3Q=" not in shown
    assert '-        proxy_set_header Authorization ********";' in shown
    # The formula's own site has nothing to hide: shown as it is written.
    new = "".join(line[1:] for line in shown.splitlines(keepends=True)[2:]
                  if line[:1] in "+ ")  # fmt: skip
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in new
    assert [c["data"] for c in plan["changes"] if c["path"] == old][0].count("\n") >= 20
