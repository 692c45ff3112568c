"""The planner on a sandbox where instances share files or the host holds
copies of the formula's files: edits of one file chain, an operator's copy of
a formula site is not the formula's, and the diffs it shows hide credentials."""

import os

import odoo_websocket_activation as activation
import odoo_websocket_plan_nginx
import odoo_websocket_settings as settings_mod
from helpers import PARTS, defaults, sandbox_instances, sandbox_settings, write
from rig.sandbox import Sandbox, merge


def test_an_adopted_sites_credentials_are_masked_in_its_diff(planner, tmp_path):
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
    assert '-        proxy_set_header Authorization "********";' in shown
    # The formula's own site has nothing to hide: shown as it is written.
    new = "".join(line[1:] for line in shown.splitlines(keepends=True)[2:]
                  if line[:1] in "+ ")  # fmt: skip
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in new
    assert [c["data"] for c in plan["changes"] if c["path"] == old][0].count("\n") >= 20


def test_two_services_in_one_compose_file_make_one_change_binding_both(planner, tmp_path):
    """erp's and shop's services in one compose file: shop's edit starts from
    erp's, the plan changes the file once, its diff from the disk's content,
    and a change of it recreates both services."""
    box = Sandbox(str(tmp_path / "box")).create()
    box.write(box.compose_file, (
        "services:\n"
        "  odoo:\n    image: odoo:17\n    ports:\n      - \"8069:8069\"\n      - \"8072:8072\"\n"
        "  odoo2:\n    image: odoo:17\n    ports:\n      - \"8169:8069\"\n      - \"8172:8072\"\n"
    ))  # fmt: skip
    conf2 = os.path.join(box.root, "etc/odoo/odoo2.conf")
    box.write(conf2, "[options]\n")
    shop = {
        "compose": {"service": "odoo2", "published_http_port": 8169, "published_gevent_port": 8172},
        "odoo": {"config": {"file": conf2}},
        "nginx": {"server_name": ["shop.example.com"]},
    }
    settings = sandbox_settings(box, {"erp": {"nginx": {"server_name": ["erp.example.com"]}},
                                      "shop": shop})  # fmt: skip
    plan = planner.build(settings, {"compose": {}})
    assert plan["errors"] == []
    edits = [c for c in plan["changes"] if c["path"] == box.compose_file]
    assert len(edits) == 1 and edits[0]["instances"] == ["erp", "shop"]
    for entry in ("127.0.0.1:8069:8069", "127.0.0.1:8072:8072",
                  "127.0.0.1:8169:8069", "127.0.0.1:8172:8072"):  # fmt: skip
        assert f'"{entry}"' in edits[0]["data"]
        assert f'+      - "{entry}"' in plan["diffs"][box.compose_file]["diff"]
    assert '-      - "8069:8069"' in plan["diffs"][box.compose_file]["diff"]
    due = activation.due_restarts(plan, edits)
    assert sorted((r["what"], r["instance"]) for r in due) == [
        ("recreate odoo", "erp"), ("recreate odoo2", "shop")]  # fmt: skip
    write(plan)
    assert planner.build(settings, {"compose": {}})["changes"] == []


def _absent(plan):
    return {c["path"] for c in plan["changes"] if c["kind"] == "absent"}


def test_an_operators_copy_of_a_formula_site_is_kept(planner, tmp_path):
    """The formula's site copied to sites-enabled/staging (its names and
    upstreams changed): its mark names the formula's path, not its own, so it
    stays; the formula's own site of a removed instance is still removed."""
    box = Sandbox(str(tmp_path / "box")).create()
    write(planner.build(sandbox_settings(box, sandbox_instances(box, "erp", "shop")), PARTS))
    erp = f"{box.nginx_dir}/sites-available/odoo_websocket_erp.conf"
    text = open(erp).read()
    assert text.splitlines()[0] == (
        f"# Managed by Salt (odoo_websocket formula): {erp} (local changes are overwritten)"
    )
    staging = os.path.join(box.nginx_dir, "sites-enabled/staging")
    box.write(staging, text.replace("odoo_websocket_", "staging_").replace(
        "server_name erp.example.com", "server_name staging.example.com"))  # fmt: skip

    plan = planner.build(sandbox_settings(box, sandbox_instances(box, "erp")), PARTS)
    assert plan["errors"] == []
    shop = [f"{box.nginx_dir}/sites-{d}/odoo_websocket_shop.conf" for d in ("available", "enabled")]
    assert _absent(plan) == set(shop)


def test_a_site_marked_before_marks_named_a_path(planner, tmp_path):
    """A mark without a path (an earlier version): the formula's only under a
    site file name of its own in the site folder."""
    box = Sandbox(str(tmp_path / "box")).create()
    write(planner.build(sandbox_settings(box, sandbox_instances(box, "erp", "shop")), PARTS))
    legacy = "# Managed by Salt (odoo_websocket formula): local changes are overwritten.\n"
    shop = f"{box.nginx_dir}/sites-available/odoo_websocket_shop.conf"
    text = legacy + open(shop).read().split("\n", 1)[1]
    box.write(shop, text)
    copy = os.path.join(box.nginx_dir, "sites-enabled/shop-copy")
    box.write(
        copy, text.replace("odoo_websocket_", "copy_").replace("shop.example", "copy.example")
    )
    plan = planner.build(sandbox_settings(box, sandbox_instances(box, "erp")), PARTS)
    assert plan["errors"] == []
    assert _absent(plan) == {shop, f"{box.nginx_dir}/sites-enabled/odoo_websocket_shop.conf"}


def _site_for(name):
    return (f"server {{\n    listen 443 ssl;\n    server_name {name} www.{name};\n"
            "    ssl_certificate /etc/ssl/x.crt;\n    ssl_certificate_key /etc/ssl/x.key;\n"
            "    location / {\n        proxy_pass http://127.0.0.1:8069;\n    }\n}\n")  # fmt: skip


def test_site_file_naming_the_hosts_own_site_adopts_it(planner, tmp_path):
    """nginx:site_file pointed at the host's own https site: its listen,
    certificates and other name stay; it is edited, never overwritten."""
    box = Sandbox(str(tmp_path / "box")).create()
    own = os.path.join(box.nginx_dir, "sites-available/odoo")
    pillar = merge(defaults(), box.pillar(nginx={"site_file": own})["odoo_websocket"])
    settings = settings_mod.settings(pillar)
    name = settings["nginx"]["server_name"][0]
    box.write(own, _site_for(name))  # not linked: nginx does not load it yet
    plan = planner.build(settings, {"nginx": PARTS["nginx"]})
    assert plan["errors"] == []
    data = next(c["data"] for c in plan["changes"] if c["path"] == own)
    assert "Managed by Salt" not in data
    for kept in (
        "listen 443 ssl;",
        f"server_name {name} www.{name};",
        "ssl_certificate /etc/ssl/x.crt;",
        "ssl_certificate_key /etc/ssl/x.key;",
    ):
        assert kept in data, kept  # fmt: skip
    assert "proxy_pass http://odoo_websocket_evented;" in data
    assert any(n.startswith(f"Adopting the existing site {own}") for n in plan["notes"])
    # Not loaded yet: the link makes nginx load it. The check goes to 443 over TLS.
    assert any(c["kind"] == "link" and c["target"] == own for c in plan["changes"])
    assert (plan["verify"]["port"], plan["verify"]["tls"]) == (443, True)
    assert settings["verify"]["port"] != 443  # the settings themselves are untouched


def test_a_hosts_own_file_at_map_file_or_site_link_is_never_overwritten(planner, tmp_path):
    box = Sandbox(str(tmp_path / "box")).create()
    settings = settings_mod.settings(merge(defaults(), box.pillar()["odoo_websocket"]))
    nginx = settings["nginx"]
    box.write(nginx["map_file"], "map $http_upgrade $connection_upgrade { default upgrade; }\n")
    plan = planner.build(settings, {"nginx": PARTS["nginx"]})
    assert any(f"nginx:map_file names {nginx['map_file']}, a file of the host's own" in e
               for e in plan["errors"]), plan["errors"]  # fmt: skip
    os.unlink(nginx["map_file"])
    box.write(nginx["site_link"], "# the host's notes\n")
    plan = planner.build(settings, {"nginx": PARTS["nginx"]})
    assert any(f"nginx:site_link names {nginx['site_link']}, a file of the host's own" in e
               for e in plan["errors"]), plan["errors"]  # fmt: skip


def test_a_site_written_by_an_earlier_version_is_rewritten_not_adopted(planner, tmp_path):
    """0.1.0 marked its own site without naming the path: still the
    formula's own file, rewritten whole (not edited in place as a host's)."""
    box = Sandbox(str(tmp_path / "box")).create()
    settings = settings_mod.settings(merge(defaults(), box.pillar()["odoo_websocket"]))
    nginx = settings["nginx"]
    name = nginx["server_name"][0]
    old = ("# Managed by Salt (odoo_websocket formula): local changes are overwritten.\n"
           f"server {{\n    listen 80;\n    server_name {name};\n"
           "    location / {\n        proxy_pass http://127.0.0.1:8069;\n    }\n}\n")  # fmt: skip
    box.write(nginx["site_file"], old)
    os.symlink(nginx["site_file"], nginx["site_link"])
    plan = planner.build(settings, {"nginx": PARTS["nginx"]})
    assert plan["errors"] == []
    assert not any("Adopting" in note for note in plan["notes"]), plan["notes"]
    data = next(c["data"] for c in plan["changes"] if c["path"] == nginx["site_file"])
    assert data.startswith(f"# Managed by Salt (odoo_websocket formula): {nginx['site_file']}")


def test_site_file_naming_a_link_edits_its_target_and_keeps_the_link(planner, tmp_path):
    box = Sandbox(str(tmp_path / "box")).create()
    target = os.path.join(box.nginx_dir, "sites-available/odoo")
    link = os.path.join(box.nginx_dir, "sites-enabled/odoo")
    pillar = merge(defaults(), box.pillar(nginx={"site_file": link})["odoo_websocket"])
    settings = settings_mod.settings(pillar)
    box.write(target, _site_for(settings["nginx"]["server_name"][0]))
    os.symlink(target, link)
    plan = planner.build(settings, {"nginx": PARTS["nginx"]})
    assert plan["errors"] == []
    assert [c["path"] for c in plan["changes"] if c["kind"] == "file" and "odoo" in
            os.path.basename(c["path"]) and "map" not in c["path"]] == [target]  # fmt: skip
    assert not any(c["path"] == link for c in plan["changes"])


def test_the_check_outside_a_run_goes_where_an_adopted_site_listens(planner, tmp_path):
    """odoo_websocket.verify, clean and the beacon check where the apply
    did: an adopted https-only site on 443, not the pillar's port 80."""
    box = Sandbox(str(tmp_path / "box")).create()
    pillar = box.pillar(verify={"enabled": True})["odoo_websocket"]
    settings = settings_mod.settings(merge(defaults(), pillar))
    site = os.path.join(box.nginx_dir, "sites-enabled/odoo")
    box.write(site, _site_for(settings["nginx"]["server_name"][0]))
    live_verify = odoo_websocket_plan_nginx.live_verify
    assert live_verify(settings)["port"] == settings["verify"]["port"]  # not adopted yet
    plan = planner.build(settings, {"nginx": PARTS["nginx"]})
    box.write(site, next(c["data"] for c in plan["changes"] if c["path"] == site))
    live = live_verify(settings)
    assert (live["port"], live["tls"]) == (443, True) == (plan["verify"]["port"], True)


def test_a_site_file_holding_no_site_is_written_whole(planner, tmp_path):
    """Nothing of the host's to keep (a half-written file of a killed run,
    an empty one): the formula's site replaces it, backed up, as before."""
    box = Sandbox(str(tmp_path / "box")).create()
    settings = settings_mod.settings(merge(defaults(), box.pillar()["odoo_websocket"]))
    site_file = settings["nginx"]["site_file"]
    box.write(site_file, "# half\n")
    plan = planner.build(settings, {"nginx": PARTS["nginx"]})
    assert plan["errors"] == []
    data = next(c["data"] for c in plan["changes"] if c["path"] == site_file)
    assert data.startswith(f"# Managed by Salt (odoo_websocket formula): {site_file}")


def test_a_wildcard_block_serving_the_name_on_another_port_is_named(planner, tmp_path):
    """*.example.com on 443 serves odoo.example.com for browsers on https
    while the formula's site serves it on 80: a green run there would leave
    https browsers broken. The run refuses and says what to do."""
    box = Sandbox(str(tmp_path / "box")).create()
    settings = settings_mod.settings(merge(defaults(), box.pillar()["odoo_websocket"]))
    name = settings["nginx"]["server_name"][0]
    wildcard = "*." + name.split(".", 1)[1]
    site = os.path.join(box.nginx_dir, "sites-enabled/tenants")
    box.write(site, _site_for(name).replace(f"server_name {name} www.{name};",
                                            f"server_name {wildcard};"))  # fmt: skip
    plan = planner.build(settings, {"nginx": PARTS["nginx"]})
    assert any(f"serves {name} through its server_name {wildcard} on port 443" in e
               and f"Add {name} to that block's server_name" in e
               for e in plan["errors"]), plan["errors"]  # fmt: skip
    # Named there exactly, the block is adopted: its https port is the check's.
    box.write(site, _site_for(name).replace(f"server_name {name} www.{name};",
                                            f"server_name {wildcard} {name};"))  # fmt: skip
    plan = planner.build(settings, {"nginx": PARTS["nginx"]})
    assert plan["errors"] == [] and (plan["verify"]["port"], plan["verify"]["tls"]) == (443, True)
