"""Bad pillar values and the message each must produce: shared by the unit
tests (validation alone) and the integration tests (a real run that must fail
and change nothing).

Every path a bad value names lies inside the sandbox, where the integration
test's fingerprint would see a write: SANDBOX stands for the sandbox's root
(absolute), SANDBOX without its leading slash for that root relative to the
folder the minion runs in (see in_sandbox). The backup:dir values are shared
system folders by necessity: the test checks them for a new backup set."""

import os
import re

SANDBOX = "/odoo_websocket-sandbox"
# A backup set, its folder's mark and the journal, by their names (the
# backups module's pattern).
BACKUP_NAMES = re.compile(r"[0-9]{8}T[0-9]{12}-[0-9]+-[0-9a-f]{6}|\.odoo_websocket|journal\.json.*")
# Pillar keys that name a file or folder on the host.
PATH_KEYS = ("file", "conf_file", "site_file", "site_link", "map_file", "binary",
             "certificate", "certificate_key", "dir")  # fmt: skip

# fmt: off
BAD = [
    ({"nginx": {"http_port": 0}}, "odoo_websocket:nginx:http_port: must be an integer from 1 to 65535"),
    ({"nginx": {"http_port": "80"}}, "odoo_websocket:nginx:http_port: must be an integer"),
    ({"odoo": {"gevent_port": 70000}}, "odoo_websocket:odoo:gevent_port: must be an integer from 1"),
    ({"odoo": {"workers": -1}}, "odoo_websocket:odoo:workers: must be an integer >= 0"),
    ({"nginx": {"server_name": ["odoo.example.com; return 200"]}}, "odoo_websocket:nginx:server_name: every entry must be a host name, an IP address or an nginx wildcard like *.example.com (bad entry: 'odoo.example.com; return 200')"),
    ({"nginx": {"server_name": []}}, "odoo_websocket:nginx:server_name: must list at least one entry"),
    ({"nginx": {"site_file": SANDBOX[1:] + "/etc/nginx/sites-available/odoo.conf"}}, "odoo_websocket:nginx:site_file: must be an absolute path"),
    ({"nginx": {"map_file": SANDBOX + "/etc/nginx/conf.d/a{b}.conf"}}, "odoo_websocket:nginx:map_file: must not contain"),
    ({"nginx": {"server_nme": ["x"]}}, "odoo_websocket:nginx:server_nme: unknown key (did you mean 'server_name'?)"),
    ({"deployment": "kubernetes"}, "odoo_websocket:deployment: must be one of: docker, native"),
    ({"odoo": {"version": "seventeen"}}, "odoo_websocket:odoo:version: must be an Odoo version"),
    ({"nginx": {"proxy_timeout": 30}}, "odoo_websocket:nginx:proxy_timeout: must be an integer >= 60"),
    ({"nginx": {"tls": {"enabled": True}}}, "odoo_websocket:nginx:tls:certificate: required when tls:enabled"),
    ({"odoo": {"config": {"extra_options": {"proxy_mode": False}}}}, "option 'proxy_mode' is set by the formula itself"),
    ({"odoo": {"config": {"extra_options": {"admin_passwd": "x\ny = 1"}}}}, "value of 'admin_passwd' must be on one line"),
    ({"compose": {"bind_address": "localhost"}}, "odoo_websocket:compose:bind_address: must be an IP address"),
    ({"nginx": {"upstream_evented": "odoo_websocket_http"}}, "odoo_websocket:nginx:upstream_evented: must differ from upstream_http"),
    ({"odoo": {"workers": 2, "gevent_port": 8069}}, "odoo_websocket:odoo:gevent_port: must differ from http_port"),
    ({"nginx": {"listen_addresses": ["::"]}}, "odoo_websocket:nginx:listen_addresses: every entry must be an IPv4 address or a bracketed IPv6"),
    ({"nginx": "yes"}, "odoo_websocket:nginx: must be a mapping"),
    # Hostile values (issue 9): the best of test/unit/test_hostile_input.py.
    ({"nginx": {"server_name": ["https://odoo.example.com/"]}}, "odoo_websocket:nginx:server_name: every entry must be a host name, an IP address or an nginx wildcard like *.example.com (bad entry: 'https://odoo.example.com/')"),
    ({"nginx": {"server_name": ["../../etc/nginx"]}}, "odoo_websocket:nginx:server_name: every entry must be a host name, an IP address or an nginx wildcard like *.example.com (bad entry: '../../etc/nginx')"),
    ({"nginx": {"server_name": ["\u043edoo.example.com"]}}, "odoo_websocket:nginx:server_name: every entry must be ASCII (write an internationalised name in punycode"),
    ({"nginx": {"server_name": ["odoo.example.com", "ODOO.example.com"]}}, "odoo_websocket:nginx:server_name: every entry must appear once (duplicate: 'ODOO.example.com')"),
    ({"backup": {"dir": "/"}}, "odoo_websocket:backup:dir: must be a folder of the formula's own, e.g. /var/backups/odoo_websocket, not the shared folder /,"),
    ({"backup": {"dir": "//tmp//"}}, "odoo_websocket:backup:dir: must be a folder of the formula's own, e.g. /var/backups/odoo_websocket, not the shared folder /tmp,"),
    ({"odoo": {"host": "127.0.0.2"}}, "odoo_websocket:odoo:host: must be 127.0.0.1, the compose:bind_address: in a docker deployment nginx reaches Odoo only through the ports compose publishes there"),
    ({"odoo": {"host": "a" * 10000}}, "odoo_websocket:odoo:host: must be at most 4096 characters (got 10000)"),
    ({"odoo": {"config": {"restart_cmd": "service odoo restart\x00touch " + SANDBOX + "/markers/bad-restart"}}}, "odoo_websocket:odoo:config:restart_cmd: must not contain control characters"),
    ({"nginx": {"http_port": True}}, "odoo_websocket:nginx:http_port: must be an integer from 1 to 65535, got True"),
]
# fmt: on


def in_sandbox(overrides, root, cwd):
    """OVERRIDES with SANDBOX moved to ROOT: absolute values to ROOT, relative
    ones to ROOT relative to CWD (the minion's working folder)."""
    if isinstance(overrides, dict):
        return {key: in_sandbox(value, root, cwd) for key, value in overrides.items()}
    if isinstance(overrides, list):
        return [in_sandbox(value, root, cwd) for value in overrides]
    if isinstance(overrides, str) and overrides.startswith(SANDBOX):
        return root + overrides[len(SANDBOX) :]
    if isinstance(overrides, str) and overrides.startswith(SANDBOX[1:]):
        return os.path.relpath(root, cwd) + overrides[len(SANDBOX) - 1 :]
    if isinstance(overrides, str):
        return overrides.replace(" " + SANDBOX, " " + root)  # in a command
    return overrides


def paths_in(overrides):
    """(key, value) of every pillar key in OVERRIDES that names a path."""
    for key, value in overrides.items():
        if isinstance(value, dict):
            yield from paths_in(value)
        elif key in PATH_KEYS:
            yield key, value


def backup_names(folder):
    """The backup sets, mark and journal in FOLDER (none when it is missing)."""
    try:
        return sorted(name for name in os.listdir(folder) if BACKUP_NAMES.fullmatch(name))
    except (FileNotFoundError, NotADirectoryError):
        return []
