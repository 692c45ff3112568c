"""Shared fixtures: module imports for unit tests, sandboxes, and a real Salt
master and minion (pytest-salt-factories) serving this repository."""

import json
import logging
import os
import socket
import subprocess

import crossplane
import pytest
import yaml

from rig.sandbox import REPO, Sandbox


@pytest.fixture
def sandbox(tmp_path):
    return Sandbox(str(tmp_path / "root")).create()


@pytest.fixture
def running_nginx(tmp_path):
    """The sandbox's nginx really running, on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = Sandbox(str(tmp_path / "live"), http_port=port).create()
    subprocess.run(["nginx", "-c", box.conf_file], check=True)
    yield box
    subprocess.run(["nginx", "-c", box.conf_file, "-s", "stop"], check=False)


@pytest.fixture(scope="session")
def pillar_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pillar")
    (path / "top.sls").write_text("base:\n  '*':\n    - odoo_websocket\n")
    (path / "odoo_websocket.sls").write_text("{}\n")
    return path


@pytest.fixture(scope="session")
def tofs_root(tmp_path_factory):
    """An operator's own file_roots, after the formula's: a site template that
    the pillar can select through TOFS (tofs:source_files)."""
    root = tmp_path_factory.mktemp("operator_roots")
    folder = root / "odoo_websocket" / "files" / "default"
    folder.mkdir(parents=True)
    with open(os.path.join(REPO, "odoo_websocket/files/default/site.conf.jinja")) as handle:
        template = handle.read()
    marker = "# Managed by Salt (odoo_websocket formula): local changes are overwritten."
    (folder / "site-custom.conf.jinja").write_text(
        template.replace(marker, marker + "\n# operator's own template")
    )
    return root


@pytest.fixture(scope="session")
def salt_master(salt_factories, pillar_dir, tofs_root):
    overrides = {
        "file_roots": {"base": [REPO, str(tofs_root)]},
        "pillar_roots": {"base": [str(pillar_dir)]},
    }
    factory = salt_factories.salt_master_daemon("odoo-ws-master", overrides=overrides)
    with factory.started():
        yield factory


@pytest.fixture(scope="session")
def salt_minion(salt_master):
    factory = salt_master.salt_minion_daemon("odoo-ws-minion")
    with factory.started():
        cli = salt_master.salt_cli(timeout=120)
        ret = cli.run("saltutil.sync_all", minion_tgt=factory.id)
        assert ret.returncode == 0, ret
        yield factory


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


@pytest.fixture
def formula(salt_master, salt_minion, pillar_dir):
    return Formula(salt_master, salt_minion, pillar_dir)


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


def pytest_unconfigure(config):
    # Salt's deferred log handler queues the daemons' shutdown chatter and
    # prints it at exit, after pytest's summary line: drop it (the daemons'
    # own log files keep everything).
    for handler in list(logging.root.handlers):
        if type(handler).__name__ == "DeferredStreamHandler":
            logging.root.removeHandler(handler)
            handler._DeferredStreamHandler__messages.clear()


@pytest.fixture
def rig(tmp_path):
    """A bridge for namespace test hosts; every host, link and namespace goes
    at teardown, whatever the test did."""
    from rig.hosts import Rig

    lab = Rig(str(tmp_path / "rig")).create()
    yield lab
    lab.destroy()
