"""Pillar validation and derived settings (pure logic, no Salt daemons)."""

import copy
import os

import pytest
import yaml

import odoo_websocket as mod
from sandbox import REPO, load_pillar_example, merge


def defaults():
    with open(os.path.join(REPO, "odoo_websocket/defaults.yaml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)["odoo_websocket"]


def settings_with(**overrides):
    return merge(copy.deepcopy(defaults()), overrides)


def test_defaults_and_pillar_example_are_valid():
    assert mod.validate(defaults()) == []
    assert mod.validate(merge(defaults(), load_pillar_example()["odoo_websocket"])) == []


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
        (2, "17.0", "/websocket", "odoochat", "gevent_port"),
        (0, "17.0", "/websocket", "odoo", "gevent_port"),
        (4, 16, "/websocket", "odoochat", "gevent_port"),
        (2, "15.0", "/longpolling", "odoochat", "longpolling_port"),
        (0, "14.0", "/longpolling", "odoo", "longpolling_port"),
    ],
)
def test_routing_follows_workers_and_version(workers, version, path, upstream, option):
    result = mod.settings(settings_with(odoo={"workers": workers, "version": version}))
    assert result["odoo"]["realtime_path"] == path
    assert result["nginx"]["realtime_upstream"] == upstream
    assert [option, "8072"] in result["odoo"]["config"]["options"]
    renames = result["odoo"]["config"]["renames"]
    assert renames == ({"longpolling_port": "gevent_port"} if option == "gevent_port" else {})


def test_native_writes_http_interface_docker_does_not():
    native = mod.settings(settings_with(deployment="native"))
    docker = mod.settings(settings_with(deployment="docker"))
    assert ["http_interface", "127.0.0.1"] in native["odoo"]["config"]["options"]
    assert not any(k == "http_interface" for k, _ in docker["odoo"]["config"]["options"])
    assert native["compose"]["enabled"] is False
    assert native["odoo"]["config"]["restart_cmd"] == "service odoo restart"
    assert docker["odoo"]["config"]["restart_cmd"] == (
        "docker compose -f /opt/odoo/docker-compose.yml restart odoo"
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
    options = result["odoo"]["config"]["options"]
    assert ["db_password", "a%b"] in options
    assert ["list_db", "False"] in options
    assert ["limit", "5"] in options
    assert result["odoo"]["config"]["secret_keys"] == [
        "admin_passwd",
        "db_password",
        "smtp_password",
    ]


BAD = [
    ({"nginx": {"http_port": 0}}, "odoo_websocket:nginx:http_port: must be an integer from 1 to 65535"),
    ({"nginx": {"http_port": "80"}}, "odoo_websocket:nginx:http_port: must be an integer"),
    ({"odoo": {"gevent_port": 70000}}, "odoo_websocket:odoo:gevent_port: must be an integer from 1"),
    ({"odoo": {"workers": -1}}, "odoo_websocket:odoo:workers: must be an integer >= 0"),
    ({"nginx": {"server_name": ["odoo.example.com; return 200"]}}, "odoo_websocket:nginx:server_name: every entry must not contain whitespace"),
    ({"nginx": {"server_name": []}}, "odoo_websocket:nginx:server_name: must list at least one entry"),
    ({"nginx": {"site_file": "relative/odoo.conf"}}, "odoo_websocket:nginx:site_file: must be an absolute path"),
    ({"nginx": {"map_file": "/etc/nginx/conf.d/a{b}.conf"}}, "odoo_websocket:nginx:map_file: must not contain"),
    ({"nginx": {"server_nme": ["x"]}}, "odoo_websocket:nginx:server_nme: unknown key (did you mean 'server_name'?)"),
    ({"deployment": "kubernetes"}, "odoo_websocket:deployment: must be one of: docker, native"),
    ({"odoo": {"version": "seventeen"}}, "odoo_websocket:odoo:version: must be an Odoo version"),
    ({"nginx": {"proxy_timeout": 30}}, "odoo_websocket:nginx:proxy_timeout: must be an integer >= 60"),
    ({"nginx": {"tls": {"enabled": True}}}, "odoo_websocket:nginx:tls:certificate: required when tls:enabled"),
    ({"odoo": {"config": {"extra_options": {"proxy_mode": False}}}}, "option 'proxy_mode' is set by the formula itself"),
    ({"odoo": {"config": {"extra_options": {"admin_passwd": "x\ny = 1"}}}}, "value of 'admin_passwd' must be on one line"),
    ({"compose": {"bind_address": "localhost"}}, "odoo_websocket:compose:bind_address: must be an IP address"),
    ({"nginx": {"upstream_evented": "odoo"}}, "odoo_websocket:nginx:upstream_evented: must differ from upstream_http"),
    ({"odoo": {"workers": 2, "gevent_port": 8069}}, "odoo_websocket:odoo:gevent_port: must differ from http_port"),
    ({"nginx": {"listen_addresses": ["::"]}}, "odoo_websocket:nginx:listen_addresses: every entry must be an IPv4 address or a bracketed IPv6"),
    ({"nginx": "yes"}, "odoo_websocket:nginx: must be a mapping"),
]


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
    errors = mod.validate(settings_with(nginx={"http_port": 0, "site_file": "x"}))
    assert len(errors) == 2
