"""Helpers the tests share (fixtures live in conftest.py): running the
formula through the master, reading its results and sites, the defaults
and settings, and the planner's sandboxes. Tests import these, never each
other."""

import copy
import http.client
import json
import os
import socket
import time

import crossplane
import jinja2
import yaml

import odoo_websocket_settings
from rig.sandbox import REPO, Sandbox, merge


class Formula:
    """Run the formula on the test minion through the master, as users do."""

    def __init__(self, master, minion, pillar_dir):
        self.cli = master.salt_cli(timeout=120)
        self.minion = minion
        self.pillar_dir = pillar_dir

    def set_pillar(self, data):
        (self.pillar_dir / "odoo_websocket.sls").write_text(json.dumps(data))
        ret = self.cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt=self.minion.id)
        assert ret.returncode == 0, ret

    def apply(self, pillar, test=False):
        """state.apply odoo_websocket; returns the salt CLI result (.data, .stdout)."""
        self.set_pillar(pillar)
        args = ["state.apply", "odoo_websocket"]
        if test:
            args.append("test=True")
        return self.cli.run(*args, minion_tgt=self.minion.id)


def states(result):
    """The state results of a run keyed by state ID (fails on compile errors)."""
    assert isinstance(result.data, dict), f"no state results: {result.stdout}{result.stderr}"
    return {value["__id__"]: value for value in result.data.values()}


def changed(result):
    return {sid for sid, value in states(result).items() if value["changes"]}


def parse_site(path):
    """The site file as crossplane sees it: {upstreams, servers}."""
    payload = crossplane.parse(path, single=True, check_ctx=False, comments=False)
    assert payload["status"] == "ok", payload["errors"]
    parsed = payload["config"][0]["parsed"]
    upstreams = {
        d["args"][0]: [s["args"][0] for s in d["block"] if s["directive"] == "server"]
        for d in parsed
        if d["directive"] == "upstream"
    }
    servers = [d["block"] for d in parsed if d["directive"] == "server"]
    return upstreams, servers


def load_yaml(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def defaults(family=None):
    with open(os.path.join(REPO, "odoo_websocket/defaults.yaml"), encoding="utf-8") as handle:
        data = yaml.safe_load(handle)["odoo_websocket"]
    if family:
        with open(os.path.join(REPO, "odoo_websocket/osfamilymap.yaml"), encoding="utf-8") as f:
            merge(data, yaml.safe_load(f)[family] or {})
    return data


def settings_with(**overrides):
    """The defaults with OVERRIDES merged in (unvalidated)."""
    return merge(copy.deepcopy(defaults()), overrides)


SITE = "salt://odoo_websocket/files/default/site.conf.jinja"
MAP = "salt://odoo_websocket/files/default/map.conf.jinja"
PARTS = {"compose": {}, "odoo_conf": {}, "nginx": {"site_source": [SITE], "map_source": [MAP]}}


def sandbox_settings(box, instances):
    pillar = box.pillar()["odoo_websocket"]
    return odoo_websocket_settings.settings(merge(defaults(), dict(pillar, instances=instances)))


def sandbox_instances(box, *names):
    """erp (the sandbox's docker Odoo), shop and blog (native, own odoo.conf)."""
    found = {"erp": {"nginx": {"server_name": ["erp.example.com"]}}}
    for number, name in enumerate(("shop", "blog"), 1):
        conf = os.path.join(box.root, f"etc/odoo/{name}.conf")
        if not os.path.exists(conf):
            box.write(conf, "[options]\nadmin_passwd = x\n")
        found[name] = {
            "deployment": "native",
            "odoo": {"workers": 0, "http_port": 8069 + 100 * number,
                     "gevent_port": 8072 + 100 * number,
                     "config": {"file": conf, "restart_cmd": f"touch {box.marker(name)}"}},
            "nginx": {"server_name": [f"{name}.example.com"]},
        }  # fmt: skip
    return {name: found[name] for name in names}


def write(plan):
    """The plan's changes made on disk, as the engine would (no checks)."""
    for change in plan["changes"]:
        if os.path.lexists(change["path"]):
            os.unlink(change["path"])
        if change["kind"] == "link":
            os.symlink(change["target"], change["path"])
        elif change["kind"] == "file":
            Sandbox.write(change["path"], change["data"])


# -- the engine on a sandbox: raw change sets, and what nginx serves --------

NGINX = "/usr/sbin/nginx"
PROXY_SITE = """upstream odoo {{ server 127.0.0.1:8069; }}
server {{
    listen {port};
    server_name odoo.example.com;
    location / {{ proxy_pass http://odoo; client_max_body_size {size}; }}
}}
"""


def nginx_of(box, **extra):
    return {"conf_file": box.conf_file, "binary": NGINX, "start": False, **extra}


def site_change(box, size="10m", text=None):
    """The site, its link, and a conf.d note: a change set of three paths."""
    site = text or PROXY_SITE.format(port=box.http_port, size=size)
    return [
        {"path": box.site_file, "kind": "file", "data": site},
        {"path": box.site_link, "kind": "link", "target": box.site_file},
        {"path": box.map_file, "kind": "file", "data": f"# body size {size}\n"},
    ]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def served_status(box):
    connection = http.client.HTTPConnection("127.0.0.1", box.http_port, timeout=5)
    connection.request("GET", "/", headers={"Host": "odoo.example.com"})
    return connection.getresponse().status


RETURNS = (
    "server {{ listen {port}; server_name odoo.example.com; location / {{ return {code}; }} }}\n"
)


def returning_site(box, code):
    """The change set of a site that answers CODE: what is served tells which is live."""
    return site_change(box, text=RETURNS.format(port=box.http_port, code=code))


def served_soon(box, status, seconds=5):
    """Old workers may take a last connection just after a graceful reload."""
    deadline = time.monotonic() + seconds
    while served_status(box) != status:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# Salt's template functions as Salt runs them: the salt:// file read from
# the repository, rendered with Jinja.
TEMPLATE_FUNCTIONS = {
    "file.source_list": lambda sources, *_: [sources[0], ""],
    "cp.get_file_str": lambda url, saltenv: open(
        os.path.join(REPO, url[len("salt://"):]), encoding="utf-8").read(),
    "file.apply_template_on_contents": lambda text, context, **_: jinja2.Environment(
        extensions=["jinja2.ext.do"]).from_string(text).render(**context),
}  # fmt: skip
