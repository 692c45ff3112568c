"""The RedHat family layout (issue 13, item 5), chosen by the map from the
os_family grain, never by the pillar: a rig host laid out as RHEL lays nginx
out (its stock nginx.conf: `user nginx`, conf.d only, its own default server;
no sites-available or sites-enabled; the nginx user in its /etc/passwd) with
the grain os_family RedHat in its minion configuration. The pillar names no
path: the formula's files land in conf.d and nowhere else, the real nginx
runs them (its workers as the nginx user), the outside host gets its
websocket through nginx and never Odoo's ports, and a second run changes
nothing."""

import difflib
import os

import yaml

from rig.probe import check_from

# The pillar docs/guide.md's "RedHat family" section shows, verbatim. Nothing
# about the layout: the restart commands are the rig's (the stand-in Odoo
# restarts on SIGHUP; a real host keeps the default docker compose command).
REDHAT_PILLAR = """\
odoo_websocket:
  odoo:
    config:
      restart_cmd: kill -HUP $(cat /run/odoo.pid) && sleep 0.3
  compose:
    recreate_cmd: kill -HUP $(cat /run/odoo.pid) && sleep 0.3
"""
TRANSACTION = "odoo_websocket-host-transaction-applied"


def applied(host):
    code, result = host.apply_formula(yaml.safe_load(REDHAT_PILLAR))
    assert isinstance(result, dict), result
    failed = {s["__id__"]: s["comment"] for s in result.values() if not s["result"]}
    assert code == 0 and not failed, failed
    return {s["__id__"]: s for s in result.values()}


def test_redhat_layout_comes_from_the_map_and_works_end_to_end(rig):
    host = rig.odoo_host(name="rhel", layout="redhat")
    outside = rig.outside_host()
    nginx_dir = host.sandbox.nginx_dir
    conf = open(host.sandbox.conf_file, encoding="utf-8").read()
    assert "\nuser nginx;\n" in conf and "sites-enabled" not in conf

    first = applied(host)
    changed = sorted(first[TRANSACTION]["changes"])
    assert [p for p in changed if p.startswith("/etc/nginx/")] == [
        "/etc/nginx/conf.d/odoo_websocket.conf",
        "/etc/nginx/conf.d/odoo_websocket_map.conf",
        "/etc/nginx/nginx.conf",
    ], changed
    # No Debian folder appeared; mime.types is as shipped, and of nginx.conf
    # only the directives nginx:max_sessions sizes changed, in place.
    assert sorted(os.listdir(nginx_dir)) == ["conf.d", "default.d", "mime.types", "nginx.conf"]
    after = open(host.sandbox.conf_file, encoding="utf-8").read().splitlines()
    edits = [line for line in difflib.ndiff(conf.splitlines(), after) if line[:1] in "+-"]
    assert edits and {line.split()[1] for line in edits} <= {
        "worker_rlimit_nofile", "worker_connections"
    }, edits  # fmt: skip
    site = open(host.sandbox.site_file, encoding="utf-8").read()
    assert "location /websocket {" in site

    # The running nginx loaded the formula's files through conf.d/*.conf,
    # and its workers run as RedHat's nginx user.
    dump = host.exec("nginx", "-T")
    assert dump.returncode == 0, dump.stderr
    assert "# configuration file /etc/nginx/conf.d/odoo_websocket.conf:" in dump.stdout
    users = host.exec("ps", "-o", "user=,args=", "-C", "nginx").stdout.splitlines()
    workers = [line.split()[0] for line in users if "worker process" in line]
    assert workers and set(workers) == {"nginx"}, users

    # From another machine: the websocket through nginx, Odoo's ports closed.
    seen = check_from(outside, host)
    assert seen["through_nginx"]["status"] == 101, seen
    assert seen["through_nginx"]["subscribed"], seen
    assert seen["direct"] == {"8069": False, "8072": False}, seen

    # A second run with the same pillar changes nothing.
    second = applied(host)
    assert all(not state["changes"] for state in second.values()), second
