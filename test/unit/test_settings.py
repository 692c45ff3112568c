"""Pillar validation and derived settings (pure logic, no Salt daemons)."""

import copy
import importlib.util
import os

import pytest

import engine
import odoo_websocket_nginx as nginx_mod
import odoo_websocket_schema
import odoo_websocket_settings
from bad_pillars import BAD
from helpers import defaults, settings_with
from rig.sandbox import REPO, load_pillar_example, merge

mod = odoo_websocket_settings
schema = odoo_websocket_schema


def test_defaults_and_pillar_example_are_valid():
    assert schema.validate(defaults()) == []
    assert schema.validate(merge(defaults(), load_pillar_example()["odoo_websocket"])) == []


def test_pillar_example_documents_every_default_key():
    def keys(data, prefix=""):
        for key, value in data.items():
            yield prefix + key
            if isinstance(value, dict) and key != "extra_options":
                yield from keys(value, prefix + key + ":")

    assert set(keys(load_pillar_example()["odoo_websocket"])) == set(keys(defaults()))


@pytest.mark.parametrize(
    "workers, version, path, upstream, option",
    [
        (2, "17.0", "/websocket", "odoo_websocket_evented", "gevent_port"),
        (0, "17.0", "/websocket", "odoo_websocket_http", "gevent_port"),
        (4, 16, "/websocket", "odoo_websocket_evented", "gevent_port"),
        (2, "15.0", "/longpolling", "odoo_websocket_evented", "longpolling_port"),
        (0, "14.0", "/longpolling", "odoo_websocket_http", "longpolling_port"),
        (2, "18.0", "/websocket", "odoo_websocket_evented", "gevent_port"),
        (0, "19.0", "/websocket", "odoo_websocket_http", "gevent_port"),
    ],
)
def test_routing_follows_workers_and_version(workers, version, path, upstream, option):
    result = mod.settings(settings_with(odoo={"workers": workers, "version": version}))
    assert result["odoo"]["realtime_path"] == path
    assert result["nginx"]["realtime_upstream"] == upstream
    assert [option, "8072"] in result["odoo"]["config"]["options"]
    # Odoo must listen where nginx's upstreams point (xmlrpc_port before 11.0).
    assert ["http_port", "8069"] in result["odoo"]["config"]["options"]
    renames = result["odoo"]["config"]["renames"]
    evented = {"longpolling_port": "gevent_port"} if option == "gevent_port" else {}
    assert renames == {"xmlrpc_port": "http_port", **evented}


def test_keepalive_never_reaches_the_bus_route():
    """With upstream_keepalive in threaded mode the bus gets an upstream of its
    own on the HTTP port; without keepalive it shares the HTTP one."""
    threaded = settings_with(odoo={"workers": 0}, nginx={"upstream_keepalive": 16})
    result = mod.settings(threaded)
    assert result["nginx"]["realtime_upstream"] == "odoo_websocket_evented"
    assert result["nginx"]["realtime_upstream_port"] == 8069
    result = mod.settings(settings_with(odoo={"workers": 2}, nginx={"upstream_keepalive": 16}))
    assert result["nginx"]["realtime_upstream_port"] == 8072


def test_native_writes_http_interface_docker_does_not():
    native = mod.settings(settings_with(deployment="native"))
    docker = mod.settings(settings_with(deployment="docker"))
    assert ["http_interface", "127.0.0.1"] in native["odoo"]["config"]["options"]
    assert not any(k == "http_interface" for k, _ in docker["odoo"]["config"]["options"])
    assert native["compose"]["enabled"] is False
    assert native["odoo"]["config"]["restart_cmd"] == "service odoo restart"
    assert docker["odoo"]["config"]["restart_cmd"] == (
        "cd /opt/odoo && if docker compose version >/dev/null 2>&1; then docker compose"
        " restart odoo; else docker-compose restart odoo; fi"
    )


def test_extra_options_and_secret_keys():
    result = mod.settings(
        settings_with(
            odoo={
                "config": {
                    "extra_options": {"db_password": "a%b", "list_db": False, "limit": 5},
                    "secret_keys": ["smtp_password"],
                }
            }
        )
    )
    config = result["odoo"]["config"]
    # Values never travel in the settings (state arguments, show_sls): the
    # planner reads them from the pillar; the names are all masked in diffs.
    assert config["extra_options"] == ["db_password", "limit", "list_db"]
    assert "a%b" not in str(result)
    assert [key for key, _ in config["options"]] == [
        "proxy_mode",
        "workers",
        "http_port",
        "gevent_port",
    ]
    assert config["secret_keys"] == [
        "admin_passwd", "db_password", "limit", "list_db", "smtp_password",
    ]  # fmt: skip


@pytest.mark.parametrize("overrides, message", BAD)
def test_bad_settings_name_the_key_and_rule(overrides, message):
    with pytest.raises(mod.CommandExecutionError) as raised:
        mod.settings(settings_with(**overrides))
    assert message in str(raised.value)
    assert str(raised.value).startswith("Invalid pillar, nothing was changed:")


def test_secret_values_never_appear_in_errors():
    data = settings_with(odoo={"config": {"extra_options": {"db_password": ["s3cr3t"]}}})
    with pytest.raises(mod.CommandExecutionError) as raised:
        mod.settings(data)
    assert "s3cr3t" not in str(raised.value)


def test_every_error_is_reported_at_once():
    errors = schema.validate(settings_with(nginx={"http_port": 0, "site_file": "x"}))
    assert sorted(errors) == [
        "odoo_websocket:nginx:http_port: must be an integer from 1 to 65535, got 0",
        "odoo_websocket:nginx:site_file: must be an absolute path, got 'x'",
    ]


@pytest.mark.parametrize(
    "output",
    [
        'nginx: [emerg] "map" directive is not allowed here in /etc/nginx/sites-enabled/x:3',
        '2026/11/26 13:24:27 [emerg] 10701#10701: "map" directive is not allowed here'
        " in /etc/nginx/sites-enabled/x:3",
    ],
)
def test_nginx_messages_are_parsed_in_both_formats(output):
    text = output + "\nnginx: configuration file /etc/nginx/nginx.conf test failed\n"
    assert nginx_mod.parse_messages(text) == [
        {
            "level": "emerg",
            "message": '"map" directive is not allowed here',
            "file": "/etc/nginx/sites-enabled/x",
            "line": 3,
        }
    ]


def test_salt_modules_name_the_missing_library(monkeypatch):
    """Without a package the library needs, the formula's Salt modules do not
    load, and say which package and how to install it."""
    commands = engine.commands()
    assert commands.__virtual__() == "odoo_websocket"
    real = importlib.util.find_spec
    for package in ("crossplane", "ruamel.yaml", "websockets"):
        monkeypatch.setattr(
            importlib.util,
            "find_spec",  # fmt: skip
            lambda name, *a, p=package: None if name == p else real(name, *a),
        )
        loaded, why = commands.__virtual__()
        assert loaded is False and f"salt-pip install {package}==" in why


def test_nginx_upstreams_follow_published_ports_in_docker_only():
    data = settings_with(compose={"published_http_port": 18069, "published_gevent_port": 18072})
    docker = mod.settings(copy.deepcopy(data))
    assert docker["compose"]["ports"] == [[8069, 18069], [8072, 18072]]
    assert (docker["nginx"]["upstream_http_port"], docker["nginx"]["upstream_evented_port"]) == (
        18069,
        18072,
    )
    native = mod.settings(merge(data, {"deployment": "native"}))
    assert (native["nginx"]["upstream_http_port"], native["nginx"]["upstream_evented_port"]) == (
        8069,
        8072,
    )


def test_dependencies_pin_what_requirements_txt_pins():
    """The libraries the formula installs on minions are the ones it is tested with."""
    with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as handle:
        pinned = dict(line.split("==") for line in handle.read().split() if "==" in line)
    for requirement in defaults()["dependencies"]["pip_packages"]:
        name, version = requirement.split("==")
        assert pinned[name] == version, requirement
    bad = schema.validate(settings_with(dependencies={"pip_packages": ["crossplane>=0.5"]}))
    assert bad == [
        "odoo_websocket:dependencies:pip_packages: every entry must be a pinned pip requirement "
        "like crossplane==0.5.8 (bad entry: 'crossplane>=0.5'), got ['crossplane>=0.5']"
    ]


@pytest.mark.parametrize("version, option", [("10.0", "xmlrpc_port"), ("11.0", "http_port")])
def test_odoo_listens_on_the_http_port_nginx_uses(version, option):
    """A native Odoo moved to 8169: odoo.conf must say so, or nginx's / points
    at a port nothing serves while the websocket check passes."""
    result = mod.settings(settings_with(deployment="native", odoo={"version": version,
                                                                   "http_port": 8169}))  # fmt: skip
    assert [option, "8169"] in result["odoo"]["config"]["options"]
    assert result["nginx"]["upstream_http_port"] == 8169
    assert schema.validate(settings_with(odoo={"config": {"extra_options": {option: 1}}}))
