"""Hostile pillar values (issue 9, item 7): each is refused by the schema,
before any state touches a file, with a message naming the pillar key; and
the values the rules must still accept, so they cannot refuse everything."""

import pytest

import odoo_websocket_schema as schema
import odoo_websocket_settings as mod
from bad_pillars import BAD
from helpers import settings_with

LONG = "x" * 10000
NAMES = "odoo_websocket:nginx:server_name"
HOST = "odoo_websocket:odoo:host"
BACKUP = "odoo_websocket:backup:dir"
RESTART = "odoo_websocket:odoo:config:restart_cmd"
RECREATE = "odoo_websocket:compose:recreate_cmd"
EXTRA = "odoo_websocket:odoo:config:extra_options"


def names(*entries):
    return {"nginx": {"server_name": list(entries)}}


# (case id, pillar overrides, the key path the error must name)
# fmt: off
HOSTILE = [
    # Injection characters in server names (they end up in an nginx directive).
    ("name-semicolon", names("odoo.example.com; return 200"), NAMES),
    ("name-open-brace", names("odoo.example.com{"), NAMES),
    ("name-close-brace", names("odoo}.example.com"), NAMES),
    ("name-dollar", names("$host"), NAMES),
    ("name-backtick", names("`id`.example.com"), NAMES),
    ("name-double-quotes", names('"odoo.example.com"'), NAMES),
    ("name-single-quotes", names("'odoo.example.com'"), NAMES),
    ("name-newline", names("odoo.example.com\nreturn 200"), NAMES),
    ("name-carriage-return", names("odoo.example.com\r"), NAMES),
    ("name-nul", names("odoo.example.com\x00"), NAMES),
    # Look-alikes: Cyrillic 'о', fullwidth letters, a bidi override.
    ("name-cyrillic-o", names("\u043edoo.example.com"), NAMES),
    ("name-fullwidth", names("\uff4fdoo.example.com"), NAMES),
    ("name-bidi-override", names("odoo\u202e.example.com"), NAMES),
    # URLs, paths, comments, ports and other things that are no host name.
    ("name-url", names("https://odoo.example.com/"), NAMES),
    ("name-path", names("../../etc/nginx"), NAMES),
    ("name-comment", names("odoo.test#comment"), NAMES),
    ("name-with-port", names("odoo.example.com:80"), NAMES),
    ("name-empty", names(""), NAMES),
    ("name-duplicate", names("odoo.example.com", "Odoo.Example.com"), NAMES),
    ("name-trailing-dot", names("odoo.example.com."), NAMES),
    ("name-leading-hyphen", names("-odoo.example.com"), NAMES),
    ("name-label-64", names("a" * 64 + ".example.com"), NAMES),
    ("name-254-characters", names(".".join(["a" * 63] * 3 + ["b" * 62])), NAMES),
    ("name-bad-wildcard", names("odoo.*.com"), NAMES),
    ("name-two-wildcards", names("*.example.*"), NAMES),
    ("name-star-alone", names("*"), NAMES),
    ("name-zone-id", names("fe80::1%eth0"), NAMES),
    ("name-10k", names(LONG), NAMES),
    ("name-regex-semicolon", names("~^odoo;return"), NAMES),
    ("name-regex-space", names("~^odoo .example.com$"), NAMES),
    ("name-regex-braces", names(r"~^odoo\d{2}\.example\.com$"), NAMES),
    ("name-regex-backslash-newline", names("~^odoo\\\n.example.com$"), NAMES),
    # YAML type confusion for the list.
    ("names-string-for-list", {"nginx": {"server_name": "odoo.example.com"}}, NAMES),
    ("names-dict-for-list", {"nginx": {"server_name": {"odoo.example.com": None}}}, NAMES),
    ("names-none", {"nginx": {"server_name": None}}, NAMES),
    ("names-boolean-entry", names(True), NAMES),
    ("names-number-entry", names(8069), NAMES),
    ("names-only-wildcards-with-verify", names("*.example.com", "_"), NAMES),
    # odoo:host, written into nginx's upstream blocks.
    ("host-semicolon", {"odoo": {"host": "127.0.0.1; return 200"}}, HOST),
    ("host-dollar", {"odoo": {"host": "odoo$host"}}, HOST),
    ("host-list", {"odoo": {"host": ["127.0.0.1"]}}, HOST),
    ("host-none", {"odoo": {"host": None}}, HOST),
    ("host-cyrillic", {"odoo": {"host": "\u043edoo.local"}, "deployment": "native"}, HOST),
    ("host-10k", {"odoo": {"host": LONG}}, HOST),
    ("host-bare-ipv6", {"odoo": {"host": "::1"}, "deployment": "native"}, HOST),
    ("host-nul", {"odoo": {"host": "127.0.0.1\x00"}}, HOST),
    ("docker-host-not-bind-address", {"odoo": {"host": "127.0.0.2"}}, HOST),
    ("docker-host-name-not-bind-address", {"odoo": {"host": "localhost"}}, HOST),
    ("docker-host-not-ipv6-bind-address", {"compose": {"bind_address": "::1"}}, HOST),
    # Ports: booleans, floats, strings, fullwidth digits, None.
    ("port-true", {"nginx": {"http_port": True}}, "odoo_websocket:nginx:http_port"),
    ("port-false", {"odoo": {"gevent_port": False}}, "odoo_websocket:odoo:gevent_port"),
    ("port-float", {"nginx": {"http_port": 80.0}}, "odoo_websocket:nginx:http_port"),
    ("port-string", {"odoo": {"http_port": "8069"}}, "odoo_websocket:odoo:http_port"),
    ("port-fullwidth", {"nginx": {"http_port": "\uff18\uff10"}}, "odoo_websocket:nginx:http_port"),
    ("port-fullwidth-published", {"compose": {"published_http_port": "\uff18\uff10\uff16\uff19"}},
     "odoo_websocket:compose:published_http_port"),
    ("port-none", {"nginx": {"tls": {"port": None}}}, "odoo_websocket:nginx:tls:port"),
    ("workers-float", {"odoo": {"workers": 2.5}}, "odoo_websocket:odoo:workers"),
    # backup:dir: / and shared system folders, however written.
    ("backup-root", {"backup": {"dir": "/"}}, BACKUP),
    ("backup-double-slash-root", {"backup": {"dir": "//"}}, BACKUP),
    ("backup-tmp", {"backup": {"dir": "/tmp"}}, BACKUP),
    ("backup-tmp-trailing-slash", {"backup": {"dir": "/tmp/"}}, BACKUP),
    ("backup-var-backups", {"backup": {"dir": "//var//backups//"}}, BACKUP),
    ("backup-dotdot-to-var", {"backup": {"dir": "/var/backups/odoo_websocket/../.."}}, BACKUP),
    ("backup-etc", {"backup": {"dir": "/etc"}}, BACKUP),
    ("backup-dev-shm", {"backup": {"dir": "/dev/shm"}}, BACKUP),
    ("backup-home", {"backup": {"dir": "/home/"}}, BACKUP),
    ("backup-nul", {"backup": {"dir": "/var/backups/odoo\x00"}}, BACKUP),
    ("backup-relative", {"backup": {"dir": "backups"}}, BACKUP),
    # Paths: newlines, lists, injection.
    ("site-file-newline", {"nginx": {"site_file": "/etc/nginx/sites-available/o.conf\nx"}},
     "odoo_websocket:nginx:site_file"),
    ("conf-file-list", {"odoo": {"config": {"file": ["/etc/odoo/odoo.conf"]}}},
     "odoo_websocket:odoo:config:file"),
    ("compose-file-injection", {"compose": {"file": "/opt/odoo/dc.yml;touch /nonexistent/x"}},
     "odoo_websocket:compose:file"),
    ("site-link-dollar", {"nginx": {"site_link": "/etc/nginx/sites-enabled/$x"}},
     "odoo_websocket:nginx:site_link"),
    ("certificate-line-separator", {"nginx": {"tls": {"certificate": "/etc/ssl/o.pem\u2028"}}},
     "odoo_websocket:nginx:tls:certificate"),
    # Commands: one line, no NUL, strings only.
    ("restart-newline", {"odoo": {"config": {"restart_cmd": "service odoo restart\ntouch /x"}}},
     RESTART),
    ("restart-nul", {"odoo": {"config": {"restart_cmd": "service odoo restart\x00"}}}, RESTART),
    ("restart-10k", {"odoo": {"config": {"restart_cmd": LONG}}}, RESTART),
    ("recreate-crlf", {"compose": {"recreate_cmd": "docker compose up -d\r\ntouch /x"}}, RECREATE),
    ("recreate-list", {"compose": {"recreate_cmd": ["docker", "compose", "up"]}}, RECREATE),
    # Names that go into nginx or a shell command.
    ("service-newline", {"compose": {"service": "odoo\n"}}, "odoo_websocket:compose:service"),
    ("upstream-newline", {"nginx": {"upstream_http": "odoo\n"}},
     "odoo_websocket:nginx:upstream_http"),
    ("size-newline", {"nginx": {"client_max_body_size": "64m\n"}},
     "odoo_websocket:nginx:client_max_body_size"),
    ("version-newline", {"odoo": {"version": "17.0\n"}}, "odoo_websocket:odoo:version"),
    # Deployment guide keys: an allow entry or an expires time that would end
    # the directive and add others.
    ("allow-injection", {"nginx": {"database_manager_allow": ["10.0.0.1; allow all"]}},
     "odoo_websocket:nginx:database_manager_allow"),
    ("allow-all", {"nginx": {"database_manager_allow": ["all"]}},
     "odoo_websocket:nginx:database_manager_allow"),
    ("allow-string-for-list", {"nginx": {"database_manager_allow": "10.0.0.0/8"}},
     "odoo_websocket:nginx:database_manager_allow"),
    ("allow-host-bits", {"nginx": {"database_manager_allow": ["10.0.0.1/8"]}},
     "odoo_websocket:nginx:database_manager_allow"),
    ("expires-injection", {"nginx": {"static_expires": "24h; autoindex on"}},
     "odoo_websocket:nginx:static_expires"),
    ("keepalive-string", {"nginx": {"upstream_keepalive": "16"}},
     "odoo_websocket:nginx:upstream_keepalive"),
    ("keepalive-negative", {"nginx": {"upstream_keepalive": -1}},
     "odoo_websocket:nginx:upstream_keepalive"),
    ("sessions-negative", {"nginx": {"max_sessions": -1}}, "odoo_websocket:nginx:max_sessions"),
    ("sessions-string", {"nginx": {"max_sessions": "2000"}}, "odoo_websocket:nginx:max_sessions"),
    ("sessions-bool", {"nginx": {"max_sessions": True}}, "odoo_websocket:nginx:max_sessions"),
    ("sessions-float", {"nginx": {"max_sessions": 2.5}}, "odoo_websocket:nginx:max_sessions"),
    ("bind-address-nul", {"compose": {"bind_address": "127.0.0.1\x00"}},
     "odoo_websocket:compose:bind_address"),
    ("interface-newline", {"odoo": {"http_interface": "127.0.0.1\n"}},
     "odoo_websocket:odoo:http_interface"),
    ("listen-string-for-list", {"nginx": {"listen_addresses": "0.0.0.0"}},
     "odoo_websocket:nginx:listen_addresses"),
    ("listen-dict-for-list", {"nginx": {"listen_addresses": {"0.0.0.0": None}}},
     "odoo_websocket:nginx:listen_addresses"),
    # Booleans and choices.
    ("deployment-boolean", {"deployment": True}, "odoo_websocket:deployment"),
    ("deployment-none", {"deployment": None}, "odoo_websocket:deployment"),
    ("enabled-string", {"nginx": {"enabled": "yes"}}, "odoo_websocket:nginx:enabled"),
    ("reload-string-false", {"nginx": {"reload": "false"}}, "odoo_websocket:nginx:reload"),
    ("section-none", {"backup": None}, "odoo_websocket:backup"),
    # extra_options: odoo.conf lines; values may be secrets and are never echoed.
    ("extra-value-nul", {"odoo": {"config": {"extra_options": {"db_password": "s3\x00cr3t"}}}},
     EXTRA),
    ("extra-value-10k", {"odoo": {"config": {"extra_options": {"limit_time_real": LONG}}}}, EXTRA),
    ("extra-value-cr", {"odoo": {"config": {"extra_options": {"db_password": "s3cr3t\r"}}}},
     EXTRA),
    ("extra-name-newline", {"odoo": {"config": {"extra_options": {"db_password\n": "x"}}}},
     EXTRA),
    ("extra-list", {"odoo": {"config": {"extra_options": ["db_password"]}}}, EXTRA),
    ("secret-keys-string", {"odoo": {"config": {"secret_keys": "smtp_password"}}},
     "odoo_websocket:odoo:config:secret_keys"),
]
# fmt: on


def test_the_corpus_is_large_and_unique():
    assert len(HOSTILE) >= 40
    assert len({case for case, _, _ in HOSTILE}) == len(HOSTILE)


@pytest.mark.parametrize(
    "overrides, key", [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE]
)
def test_hostile_value_is_refused_naming_its_key(overrides, key):
    with pytest.raises(mod.CommandExecutionError) as raised:
        mod.settings(settings_with(**overrides))
    message = str(raised.value)
    assert message.startswith("Invalid pillar, nothing was changed:")
    assert f"\n  {key}: " in message
    errors = schema.validate(settings_with(**overrides))
    assert [e for e in errors if e.startswith(f"{key}: ")], errors
    for error in errors:
        # One readable line each: no raw control characters, no 10k echo.
        assert error.isprintable() and len(error) < 600, error
    assert "s3cr3t" not in message and "s3\\x00cr3t" not in message


@pytest.mark.parametrize("overrides, message", BAD[-10:])
def test_hostile_bad_pillars_keep_messages_on_one_printable_line(overrides, message):
    """The integration suite looks for these messages in salt's output."""
    errors = schema.validate(settings_with(**overrides))
    assert any(message in error for error in errors), errors
    assert all(error.isprintable() for error in errors)


SERVER_NAME_253 = ".".join(["a" * 63] * 3 + ["b" * 61])


@pytest.mark.parametrize(
    "entries",
    [
        ["odoo.example.com", "*.example.com"],
        ["odoo.example.com", ".example.com"],
        ["odoo.example.com", "www.example.*"],
        ["odoo.example.com", "_"],
        ["[2001:db8::1]"],
        ["odoo.example.com", "2001:db8::1"],
        ["192.0.2.10"],
        ["odoo.example.com", r"~^odoo\d+\.example\.com$"],
        ["odoo.example.com", r"~^(?<tenant>.+)\.example\.com$"],
        [SERVER_NAME_253],
        ["ODOO.Example.COM", "xn--bcher-kva.example", "odoo-1.example.com"],
        ["localhost"],
    ],
)
def test_server_names_accepted(entries):
    assert len(SERVER_NAME_253) == 253
    result = mod.settings(settings_with(nginx={"server_name": entries}))
    assert result["nginx"]["server_name"] == entries
    assert result["verify"]["server_name"] == entries[0]


def test_wildcards_alone_are_accepted_without_verify():
    data = settings_with(nginx={"server_name": ["*.example.com", "_"]}, verify={"enabled": False})
    assert schema.validate(data) == []
    # The CLI's odoo_websocket.verify still gets a name (the first).
    assert mod.settings(data)["verify"]["server_name"] == "*.example.com"


def test_the_check_knocks_with_the_first_literal_name():
    data = settings_with(nginx={"server_name": ["_", "*.example.com", "erp.example.com"]})
    assert mod.settings(data)["verify"]["server_name"] == "erp.example.com"


@pytest.mark.parametrize(
    "overrides",
    [
        {"backup": {"dir": "/var/backups/odoo_websocket"}},
        {"backup": {"dir": "/srv/backups/odoo/"}},
        {"backup": {"dir": "/var/lib/odoo_websocket/backups"}},
        # Docker: any host behind an all-interfaces binding, or without compose.
        {"compose": {"bind_address": "0.0.0.0"}, "odoo": {"host": "odoo.internal"}},
        {"compose": {"bind_address": "::"}, "odoo": {"host": "127.0.0.1"}},
        {"compose": {"bind_address": "::1"}, "odoo": {"host": "[::1]"}},
        {"compose": {"bind_address": "127.0.0.2"}, "odoo": {"host": "127.0.0.2"}},
        {"compose": {"enabled": False}, "odoo": {"host": "10.0.0.5"}},
        {"deployment": "native", "odoo": {"host": "odoo.internal"}},
        # A shell command may hold shell syntax; a secret may hold anything printable.
        {"odoo": {"config": {"restart_cmd": "systemctl restart odoo && sleep 1; echo $?"}}},
        {"odoo": {"config": {"extra_options": {"db_password": "p%s;{$`'\"}\\"}}}},
        {"odoo": {"config": {"extra_options": {"db_password": "x" * 4096}}}},
        {"odoo": {"config": {"extra_options": {"dbfilter": "^%d$"}}}},
    ],
)
def test_good_values_accepted(overrides):
    assert schema.validate(settings_with(**overrides)) == []


def test_4096_characters_is_the_limit():
    def extra(value):
        return settings_with(odoo={"config": {"extra_options": {"limit": value}}})

    assert schema.validate(extra("x" * 4096)) == []
    assert schema.validate(extra("x" * 4097)) == [
        f"{EXTRA}: value of 'limit' must be at most 4096 characters (got 4097)"
    ]


def test_docker_host_message_names_the_bind_address():
    errors = schema.validate(settings_with(compose={"bind_address": "::1"}))
    assert errors == [
        f"{HOST}: must be [::1], the compose:bind_address: in a docker deployment nginx "
        "reaches Odoo only through the ports compose publishes there (got '127.0.0.1')"
    ]


def test_default_commands_quote_pillar_values():
    result = mod.settings(settings_with(compose={"file": "/opt/odoo(1)/dc&co.yml"}))
    quoted, cd = "-f '/opt/odoo(1)/dc&co.yml'", "cd '/opt/odoo(1)' && "
    assert result["compose"]["recreate_cmd"] == (
        f"{cd}if docker compose version >/dev/null 2>&1; then docker compose {quoted} up -d odoo; "
        f"else docker-compose {quoted} up -d odoo; fi"
    )
    assert result["odoo"]["config"]["restart_cmd"] == (
        f"{cd}if docker compose version >/dev/null 2>&1; then docker compose {quoted} restart "
        f"odoo; else docker-compose {quoted} restart odoo; fi"
    )
