"""Several Odoo instances on one host (odoo_websocket:instances): the pillar's
shape, names derived from the instance, cross-instance errors, and what the
planner makes of them on a sandbox (real files, nginx's tree parsed with
crossplane, the site template rendered with Jinja)."""

import copy
import os

import pytest

import odoo_websocket_activation
import odoo_websocket_concerns
import odoo_websocket_files
import odoo_websocket_plan
import odoo_websocket_settings
import odoo_websocket_verify
from helpers import PARTS, defaults, sandbox_instances, sandbox_settings, write
from rig.sandbox import Sandbox, load_pillar_example, merge

settings_mod = odoo_websocket_settings
plan_mod = odoo_websocket_plan
activation = odoo_websocket_activation
verify_mod = odoo_websocket_verify
Invalid = settings_mod.CommandExecutionError


def with_instances(instances, base=None, **top):
    return merge(copy.deepcopy(base or defaults()), dict(top, instances=instances))


TWO = {
    "erp": {"nginx": {"server_name": ["erp.example.com"]}},
    "shop": {
        "deployment": "native",
        "odoo": {"workers": 0, "http_port": 8169, "gevent_port": 8172,
                 "config": {"file": "/etc/odoo/shop.conf"}},
        "nginx": {"server_name": ["shop.example.com"]},
    },
}  # fmt: skip

# Single-instance pillars the other tests use: defaults, pillar.example, each
# OS family, routes per version and workers, native, TLS, the deployment
# guide's keys, published ports.
SINGLE = [
    {},
    load_pillar_example()["odoo_websocket"],
    {"odoo": {"workers": 0, "version": "15.0"}},
    {"odoo": {"workers": 4, "version": 16}},
    {"odoo": {"workers": 0, "version": "19.0"}, "nginx": {"upstream_keepalive": 16}},
    {"deployment": "native", "odoo": {"config": {"extra_options": {"db_password": "x%y"}}}},
    {"nginx": {"tls": {"enabled": True, "certificate": "/c.pem", "certificate_key": "/k.pem"},
               "server_name": ["a.example.com", "*.example.com"], "listen_addresses": ["[::]"]}},
    {"nginx": {"static_expires": "24h", "database_manager_allow": ["10.0.0.0/8"]}},
    {"compose": {"published_http_port": 18069, "published_gevent_port": 18072}},
]  # fmt: skip


@pytest.mark.parametrize("family", [None, "RedHat"])
@pytest.mark.parametrize("pillar", SINGLE)
def test_single_instance_pillar_is_one_instance_with_unchanged_settings(pillar, family):
    """No instances key, an empty one, or the same keys as the instance
    'default' naming today's files: the same settings, the same names."""
    base = merge(defaults(family), copy.deepcopy(pillar))
    without = copy.deepcopy(base)
    del without["instances"]
    single = settings_mod.settings(copy.deepcopy(base))
    assert settings_mod.settings(without) == single
    assert "instances" not in single and "targets" not in single["verify"]
    nginx = single["nginx"]
    same_names = {k: nginx[k] for k in ("site_file", "site_link", "upstream_http",
                                        "upstream_evented")}  # fmt: skip
    explicit = settings_mod.settings(with_instances({"default": {"nginx": same_names}}, base))
    instance = dict(explicit["instances"]["default"])
    assert instance.pop("instance") == "default"
    assert instance == single


def test_instances_inherit_the_top_level_and_get_their_own_names():
    result = settings_mod.settings(with_instances(TWO))
    erp, shop = result["instances"]["erp"], result["instances"]["shop"]
    assert erp["nginx"]["site_file"] == "/etc/nginx/sites-available/odoo_websocket_erp.conf"
    assert erp["nginx"]["site_link"] == "/etc/nginx/sites-enabled/odoo_websocket_erp.conf"
    assert shop["nginx"]["site_file"] == "/etc/nginx/sites-available/odoo_websocket_shop.conf"
    assert (erp["nginx"]["upstream_http"], erp["nginx"]["upstream_evented"]) == (
        "odoo_websocket_http_erp", "odoo_websocket_evented_erp")  # fmt: skip
    # erp inherits the top level (docker, prefork, the default odoo.conf).
    assert erp["compose"]["enabled"] and erp["odoo"]["config"]["file"] == "/etc/odoo/odoo.conf"
    assert erp["nginx"]["realtime_upstream"] == "odoo_websocket_evented_erp"
    # shop: threaded native Odoo, the bus on its HTTP port.
    assert not shop["compose"]["enabled"]
    assert shop["nginx"]["realtime_upstream"] == "odoo_websocket_http_shop"
    assert shop["nginx"]["realtime_upstream_port"] == 8169
    # The top level is the first instance's, every check a target.
    assert result["nginx"]["site_file"] == erp["nginx"]["site_file"]
    assert [
        (t["instance"], t["server_name"], t["odoo_ports"]) for t in result["verify"]["targets"]
    ] == [("erp", "erp.example.com", [8069, 8072]), ("shop", "shop.example.com", [8169, 8172])]
    # Host-wide keys are the same for every instance.
    assert {i["nginx"]["map_file"] for i in result["instances"].values()} == {
        "/etc/nginx/conf.d/odoo_websocket_map.conf"}  # fmt: skip


def test_names_an_instance_gives_are_kept_and_a_conf_d_layout_has_no_link():
    instances = copy.deepcopy(TWO)
    instances["erp"]["nginx"].update(site_file="/etc/nginx/sites-available/erp",
                                     upstream_http="erp_http")  # fmt: skip
    result = settings_mod.settings(with_instances(instances, defaults("RedHat")))
    erp, shop = result["instances"]["erp"]["nginx"], result["instances"]["shop"]["nginx"]
    assert (erp["site_file"], erp["upstream_http"]) == (
        "/etc/nginx/sites-available/erp",
        "erp_http",
    )
    assert erp["site_link"] == shop["site_link"] == ""
    assert shop["site_file"] == "/etc/nginx/conf.d/odoo_websocket_shop.conf"


@pytest.mark.parametrize(
    "section, key",
    [("nginx", "conf_file"), ("nginx", "map_file"), ("nginx", "binary"), ("nginx", "reload"),
     ("nginx", "start"), ("nginx", "enabled"), ("backup", "dir"), ("verify", "enabled"),
     ("dependencies", "pip_packages")],
)  # fmt: skip
def test_host_wide_keys_are_refused_in_an_instance(section, key):
    instances = copy.deepcopy(TWO)
    instances["shop"].setdefault(section, {})[key] = defaults()[section][key]
    with pytest.raises(Invalid) as raised:
        settings_mod.settings(with_instances(instances))
    assert (
        f"odoo_websocket:instances:shop:{section}:{key}: host-wide, set it once at "
        f"odoo_websocket:{section}:{key}"
    ) in str(raised.value)


@pytest.mark.parametrize("name", ["Shop", "shop.two", "-shop", "", "a" * 33, "s p", "x/y", 7])
def test_instance_names_are_safe_tokens(name):
    with pytest.raises(Invalid) as raised:
        settings_mod.settings(with_instances({name: {}}))
    assert "must be 1 to 32 of a-z, 0-9, '_' and '-'" in str(raised.value)


def test_a_bad_value_in_an_instance_names_the_instance_key():
    instances = merge(copy.deepcopy(TWO), {"shop": {"odoo": {"workers": -1},
                                                    "nginx": {"sever_name": ["x"]}}})  # fmt: skip
    with pytest.raises(Invalid) as raised:
        settings_mod.settings(with_instances(instances))
    assert "odoo_websocket:instances:shop:odoo:workers: must be an integer >= 0" in str(
        raised.value
    )
    assert (
        "odoo_websocket:instances:shop:nginx:sever_name: unknown key (did you mean "
        "'server_name'?)" in str(raised.value)
    )
    with pytest.raises(Invalid, match="odoo_websocket:instances:shop: must be a mapping"):
        settings_mod.settings(with_instances({"shop": ["x"]}))


CLASHES = [
    ({"nginx": {"server_name": ["ERP.example.com", "shop.example.com"]}},
     "erp and shop both use server name and port (nginx:server_name, http_port, tls:port) "
     "erp.example.com on port 80"),
    ({"nginx": {"site_file": "/etc/nginx/sites-available/odoo_websocket_erp.conf"}},
     "erp and shop both use nginx:site_file or site_link "
     "/etc/nginx/sites-available/odoo_websocket_erp.conf"),
    ({"nginx": {"site_link": "/etc/nginx/sites-available/odoo_websocket_erp.conf"}},
     "erp and shop both use nginx:site_file or site_link"),
    ({"nginx": {"upstream_evented": "odoo_websocket_http_erp"}},
     "erp and shop both use upstream name (nginx:upstream_http, upstream_evented) "
     "odoo_websocket_http_erp"),
    ({"odoo": {"config": {"file": "/etc/odoo/../odoo/odoo.conf"}}},
     "erp and shop both use odoo.conf (odoo:config:file) /etc/odoo/odoo.conf"),
    ({"deployment": "docker", "odoo": {"host": "127.0.0.1"}},
     "erp and shop both use compose service (compose:file, compose:service) odoo in "
     "/opt/odoo/docker-compose.yml"),
]  # fmt: skip


@pytest.mark.parametrize("shop, message", CLASHES)
def test_what_two_instances_share_is_an_error_naming_both(shop, message):
    instances = merge(copy.deepcopy(TWO), {"shop": shop})
    with pytest.raises(Invalid) as raised:
        settings_mod.settings(with_instances(instances))
    assert f"odoo_websocket:instances: {message}" in str(raised.value)


def test_an_odoo_conf_reached_through_a_link_is_shared_too(tmp_path):
    """Links to odoo.conf are common: the same file through a link is a clash."""
    real = tmp_path / "odoo.conf"
    real.write_text("[options]\n")
    link = tmp_path / "shop.conf"
    link.symlink_to(real)
    instances = merge(copy.deepcopy(TWO), {
        "erp": {"odoo": {"config": {"file": str(real)}}},
        "shop": {"odoo": {"config": {"file": str(link)}}},
    })  # fmt: skip
    with pytest.raises(Invalid) as raised:
        settings_mod.settings(with_instances(instances))
    assert f"erp and shop both use odoo.conf (odoo:config:file) {real}" in str(raised.value)


@pytest.mark.parametrize("value", [False, 0, "", []])
def test_instances_that_are_no_mapping_are_refused(value):
    with pytest.raises(Invalid, match="odoo_websocket:instances: must be a mapping"):
        settings_mod.settings(with_instances(value))


def test_what_instances_may_share():
    """The same server name on another port, the same compose file with
    another service, an odoo.conf that one of them does not manage."""
    instances = merge(copy.deepcopy(TWO), {"shop": {
        "deployment": "docker",
        "compose": {"service": "shop", "published_http_port": 8169,
                    "published_gevent_port": 8172},
        "nginx": {"server_name": ["erp.example.com"], "http_port": 8080},
    }})  # fmt: skip
    result = settings_mod.settings(with_instances(instances))
    assert result["instances"]["shop"]["compose"]["enabled"]
    tls = {"enabled": True, "port": 443, "certificate": "/c", "certificate_key": "/k"}
    clash = merge(copy.deepcopy(instances), {"erp": {"nginx": {"tls": tls}},
                                             "shop": {"nginx": {"http_port": 443}}})  # fmt: skip
    with pytest.raises(Invalid, match="erp.example.com on port 443"):
        settings_mod.settings(with_instances(clash))


# -- the plan -----------------------------------------------------------------


def test_one_plan_covers_every_instance(planner, tmp_path):
    box = Sandbox(str(tmp_path / "box")).create()
    settings = sandbox_settings(box, sandbox_instances(box, "erp", "shop"))
    plan = planner.build(settings, PARTS)
    assert plan["errors"] == []
    site = {n: f"{box.nginx_dir}/sites-available/odoo_websocket_{n}.conf" for n in ("erp", "shop")}
    link = {n: f"{box.nginx_dir}/sites-enabled/odoo_websocket_{n}.conf" for n in ("erp", "shop")}
    shop_conf = os.path.join(box.root, "etc/odoo/shop.conf")
    # (nginx.conf aside: nginx:max_sessions may raise its limits, host-wide)
    assert [(c["path"], c.get("instance")) for c in plan["changes"]
            if c["path"] != box.conf_file] == [
        (box.compose_file, "erp"), (box.odoo_conf, "erp"), (shop_conf, "shop"),
        (site["erp"], None), (link["erp"], None), (site["shop"], None), (link["shop"], None),
        (box.map_file, None),
    ]  # fmt: skip
    texts = {c["path"]: c.get("data") for c in plan["changes"]}
    assert "upstream odoo_websocket_evented_erp {\n    server 127.0.0.1:8072;" in texts[site["erp"]]
    assert "server_name erp.example.com;" in texts[site["erp"]]
    shop = texts[site["shop"]]
    assert "location /websocket {\n        proxy_pass http://odoo_websocket_http_shop;" in shop
    assert "server 127.0.0.1:8169;" in shop and "server_name shop.example.com;" in shop
    assert "http_port = 8169" in texts[shop_conf] and "workers = 0" in texts[shop_conf]
    assert [(s["site_file"], s["names"]) for s in plan["nginx"]["sites"]] == [
        (site["erp"], ["erp.example.com"]), (site["shop"], ["shop.example.com"])]  # fmt: skip
    # Each instance's restart follows its own files.
    restarts = {(r["what"], r["instance"]) for r in plan["restarts"]}
    assert restarts == {("recreate odoo", "erp"), ("restart Odoo", "erp"), ("restart Odoo", "shop")}
    shop_only = [c for c in plan["changes"] if c.get("instance") == "shop"]
    assert [(r["what"], r["instance"]) for r in activation.due_restarts(plan, shop_only)] == [
        ("restart Odoo", "shop")]  # fmt: skip
    managed = odoo_websocket_concerns.managed_paths(settings)
    assert set(managed) >= {site["shop"], link["shop"], shop_conf}


def test_a_removed_instance_loses_its_site_and_link_only(planner, tmp_path):
    box = Sandbox(str(tmp_path / "box")).create()
    write(planner.build(sandbox_settings(box, sandbox_instances(box, "erp", "shop", "blog")),
                        PARTS))  # fmt: skip
    # A site of the host's own, loaded, without the formula's mark: never removed.
    own = os.path.join(box.nginx_dir, "sites-enabled/mine.conf")
    box.write(own, "server {\n    listen 80;\n    server_name mine.example.com;\n}\n")

    plan = planner.build(sandbox_settings(box, sandbox_instances(box, "erp", "blog")), PARTS)
    assert plan["errors"] == []
    changing = [
        c for c in plan["changes"] if odoo_websocket_files.differs(c) and c["path"] != box.conf_file
    ]
    shop_site = f"{box.nginx_dir}/sites-available/odoo_websocket_shop.conf"
    shop_link = f"{box.nginx_dir}/sites-enabled/odoo_websocket_shop.conf"
    assert {(c["path"], c["kind"]) for c in changing} == {
        (shop_link, "absent"), (shop_site, "absent")}  # fmt: skip
    assert plan["diffs"][shop_site] == {"concern": "nginx", "removed": "an earlier formula site"}
    assert os.path.join(box.root, "etc/odoo/shop.conf") not in {c["path"] for c in changing}


def test_one_instance_that_cannot_be_planned_stops_the_plan(planner, tmp_path):
    """A site of the host's that also answers for shop, with existing_site
    fail: the plan says so, and plans nothing for nginx."""
    box = Sandbox(str(tmp_path / "box")).create()
    box.write(os.path.join(box.nginx_dir, "sites-enabled/old"),
              "server {\n    listen 80;\n    server_name shop.example.com;\n}\n")  # fmt: skip
    instances = merge(sandbox_instances(box, "erp", "shop"),
                      {"shop": {"nginx": {"existing_site": "fail"}}})  # fmt: skip
    plan = planner.build(sandbox_settings(box, instances), {"nginx": PARTS["nginx"]})
    assert (
        len(plan["errors"]) == 1 and "already answer(s) for shop.example.com" in plan["errors"][0]
    )
    assert plan["nginx"] is None


def test_the_check_covers_every_instance():
    """Several verdicts make one: ok only when all are, each check named after
    its instance; one target's verdict stays as it is."""
    good = {
        "ok": True,
        "latency_ms": 3.0,
        "waited_s": 0.0,
        "checks": [{"name": "websocket handshake", "ok": True, "detail": "HTTP 101"}],
    }
    bad = {
        "ok": False,
        "latency_ms": 9.0,
        "waited_s": 2.0,
        "checks": [{"name": "websocket handshake", "ok": False, "detail": "HTTP 502"}],
    }
    verdicts = {"erp.example.com": good, "shop.example.com": bad}
    targets = [{key: None for key in verify_mod.TARGET_KEYS} for _ in range(2)]
    for target, (name, instance) in zip(
        targets, [("erp.example.com", "erp"), ("shop.example.com", "shop")], strict=True
    ):
        target.update(server_name=name, instance=instance)
    combined = verify_mod._combined(targets, lambda **args: verdicts[args["server_name"]])
    assert combined["ok"] is False and combined["latency_ms"] == 9.0
    assert [c["name"] for c in combined["checks"]] == [
        "erp: websocket handshake", "shop: websocket handshake"]  # fmt: skip
    assert verify_mod.summary(combined) == (
        "erp: websocket verified: HTTP 101 in 3 ms; shop: websocket check FAILED: HTTP 502"
    )
    assert verify_mod._combined(targets[:1], lambda **args: good) is good
