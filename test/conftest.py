"""Shared fixtures: module imports for unit tests, sandboxes, and a real Salt
master and minion (pytest-salt-factories) serving this repository."""

import logging
import os
import socket
import subprocess

import pytest

import odoo_websocket_minion
import odoo_websocket_plan
from helpers import NGINX, TEMPLATE_FUNCTIONS, Formula, free_port
from rig.sandbox import REPO, Sandbox, formula_roots


@pytest.fixture
def sandbox(tmp_path):
    return Sandbox(str(tmp_path / "root")).create()


@pytest.fixture
def live_sandbox(tmp_path):
    """A sandbox whose nginx is started by the engine itself, on a free port."""
    box = Sandbox(str(tmp_path / "live"), http_port=free_port()).create()
    yield box
    subprocess.run([NGINX, "-c", box.conf_file, "-s", "stop"], capture_output=True, check=False)


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
def salt_master(salt_factories, pillar_dir, tofs_root, tmp_path_factory):
    roots = formula_roots(str(tmp_path_factory.mktemp("formula_roots")))
    overrides = {
        "file_roots": {"base": [roots, str(tofs_root)]},
        "pillar_roots": {"base": [str(pillar_dir)]},
    }
    factory = salt_factories.salt_master_daemon("odoo-ws-master", overrides=overrides)
    with factory.started():
        yield factory


def minion_options():
    """A minion daemon run by another Python, with another Salt, than the
    master's (the matrix's mixed pair: noxfile.py sets
    ODOO_WEBSOCKET_MINION_PYTHON); {} otherwise."""
    python = os.environ.get("ODOO_WEBSOCKET_MINION_PYTHON")
    if not python:
        return {}
    from saltfactories.daemons.minion import SaltMinion

    class OtherPythonMinion(SaltMinion):
        # The factories manager gives every daemon this Python and a script
        # that puts this environment's site-packages (its Salt) first: the
        # minion runs the other environment's own salt-minion instead.
        def __attrs_post_init__(self):
            self.python_executable = python
            super().__attrs_post_init__()

        def get_script_path(self):
            return os.path.join(os.path.dirname(python), "salt-minion")

    return {"factory_class": OtherPythonMinion}


@pytest.fixture(scope="session")
def salt_minion(salt_master):
    factory = salt_master.salt_minion_daemon("odoo-ws-minion", **minion_options())
    with factory.started():
        cli = salt_master.salt_cli(timeout=120)
        ret = cli.run("saltutil.sync_all", minion_tgt=factory.id)
        assert ret.returncode == 0, ret
        yield factory


@pytest.fixture
def formula(salt_master, salt_minion, pillar_dir):
    return Formula(salt_master, salt_minion, pillar_dir)


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


@pytest.fixture
def planner():
    """The planner with Salt's template functions as Salt runs them: the
    salt:// file read from the repository, rendered with Jinja."""
    with odoo_websocket_minion.bound(TEMPLATE_FUNCTIONS, {}, {}, {}):
        yield odoo_websocket_plan
