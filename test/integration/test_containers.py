"""Odoo as a real compose service in a real container (issue 14).

The docker host is a rig namespace host running a real engine (podman,
rootful, its Docker API driven by Debian's docker-compose: rig/containers.py),
nginx from the Debian package, and salt-call. Odoo is the stand-in Odoo in a
container of the test image (Debian packages only), its odoo.conf mounted as
operators do (`./config:/etc/odoo`). The host starts broken like the demo's
(compose publishing 8069/8072 on every interface, upgrade headers hard-coded
on "/", odoo.conf without proxy_mode); one `state.apply odoo_websocket` with
the formula's own default restart and recreate commands fixes it, and a
second rig host, a browser elsewhere, checks the result.

No skip: a machine where podman cannot run fails this test with the engine's
log."""

import os
import re
import time

import pytest

from rig.containers import Engine, write_project
from rig.field import HARDCODED
from rig.probe import check_from, whoami_from
from rig.sandbox import Sandbox

TX_ID = "odoo_websocket-host-transaction-applied"


class DockerHost:
    """The rig host's files, nginx and engine; `apply` runs the formula."""

    def __init__(self, rig, workdir):
        self.host = rig.outside_host(name="docker")  # a network namespace of its own
        self.box = Sandbox(os.path.join(workdir, "files")).create()
        self.config = os.path.join(os.path.dirname(self.box.compose_file), "config/odoo.conf")
        self.engine = Engine(os.path.join(workdir, "engine"), self.host.netns)
        self.nginx_started = False

    def prepare_broken(self, image):
        """The demo's broken host, in a real compose project."""
        box = self.box
        with open(box.odoo_conf, encoding="utf-8") as handle:
            conf = handle.read() + "workers = 2\ngevent_port = 8072\n"
        os.unlink(box.odoo_conf)
        assert write_project(os.path.dirname(box.compose_file), image, conf) == box.compose_file
        site = os.path.join(box.nginx_dir, "sites-available/odoo")
        box.write(site, HARDCODED)
        os.symlink(site, os.path.join(box.nginx_dir, "sites-enabled/odoo"))

    def start_nginx(self):
        done = self.host.exec("nginx", "-c", self.box.conf_file)
        assert done.returncode == 0, done.stderr
        self.nginx_started = True

    def stop_nginx(self):
        try:
            with open(os.path.join(self.box.root, "run/nginx.pid"), encoding="ascii") as handle:
                os.kill(int(handle.read()), 15)
        except (OSError, ValueError):
            pass

    def container_id(self):
        return self.engine.compose(self.box.compose_file, "ps", "-q", "odoo").stdout.strip()

    def listening(self, port):
        """Addresses something listens on PORT at, in the host's namespace."""
        lines = self.host.exec("ss", "-Htln", f"sport = :{port}").stdout.splitlines()
        return sorted(line.split()[3].rsplit(":", 1)[0] for line in lines)

    def pillar(self):
        """pillar.example moved into the sandbox, with the formula's own
        default restart and recreate commands and its websocket check."""
        return self.box.pillar(
            odoo={"config": {"file": self.config, "restart_cmd": ""}},
            compose={"recreate_cmd": ""},
            nginx={"start": True},
            verify={"enabled": True},
        )


@pytest.fixture
def docker_host(rig, tmp_path, monkeypatch):
    lab = DockerHost(rig, str(tmp_path))
    try:
        lab.engine.start()
        tag, built, imported = lab.engine.load_image()
        print(f"image {tag}: root file system built in {built:.1f} s, imported in {imported:.1f} s")
        lab.prepare_broken(tag)
        lab.start_nginx()
        # salt-call's restart and recreate commands find the engine as an
        # operator's shell does: DOCKER_HOST.
        monkeypatch.setenv("DOCKER_HOST", lab.engine.url)
        yield lab
    finally:
        if lab.engine.service:
            lab.engine.compose(lab.box.compose_file, "down", check=False)
        lab.engine.stop()
        lab.stop_nginx()


def wait_answering(outside, host, deadline=20):
    """check_from once Odoo's container answers on its published port."""
    end = time.monotonic() + deadline
    while True:
        result = check_from(outside, host)
        if result["direct"]["8069"] or time.monotonic() > end:
            return result
        time.sleep(0.2)


def test_formula_recreates_a_real_compose_service_on_loopback(rig, docker_host):
    lab, outside = docker_host, rig.outside_host()
    box, engine = lab.box, lab.engine
    engine.compose(box.compose_file, "up", "-d")
    before = wait_answering(outside, lab.host)
    # Broken as in the field: Odoo reachable around nginx, the bus hitting a
    # prefork worker, Odoo unaware of the proxy.
    assert before["direct"] == {"8069": True, "8072": True}, before
    assert before["through_nginx"]["status"] == 500, before
    assert whoami_from(outside, lab.host)["proxy_mode"] is False
    assert lab.listening(8069) == lab.listening(8072) == ["0.0.0.0"]
    old_id = lab.container_id()

    code, result = lab.host.apply_formula(lab.pillar())
    assert isinstance(result, dict), result
    failed = {s["__id__"]: s["comment"] for s in result.values() if not s["result"]}
    assert code == 0 and not failed, f"{failed}\n{engine.logs()}"
    transaction = next(s for s in result.values() if s["__id__"] == TX_ID)
    assert "websocket verified: 101 Switching Protocols" in transaction["comment"]

    # The engine recreated the service from the file the formula edited, and
    # publishes its ports on loopback only.
    new_id = lab.container_id()
    assert new_id and new_id != old_id
    labels = engine.podman("inspect", "--format", "{{json .Config.Labels}}", new_id).stdout
    # Run from the project's folder, as the operator's own compose: the file
    # found there by name (its override and .env would count too).
    folder, name = os.path.split(box.compose_file)
    assert f'"com.docker.compose.project.working_dir":"{folder}"' in labels, labels
    assert re.search(rf'"com.docker.compose.project.config_files":"[^"]*{name}"', labels), labels
    ports = engine.podman("port", new_id).stdout.split("\n")
    assert sorted(filter(None, ports)) == [
        "8069/tcp -> 127.0.0.1:8069",
        "8072/tcp -> 127.0.0.1:8072",
    ]
    assert lab.listening(8069) == lab.listening(8072) == ["127.0.0.1"]

    # From elsewhere: the websocket through nginx reaches the container's
    # Odoo, whose own ports are refused.
    after = check_from(outside, lab.host)
    assert after["through_nginx"]["status"] == 101, after
    assert after["through_nginx"]["subscribed"], after
    assert after["direct"] == {"8069": False, "8072": False}, after

    # odoo.conf is the mounted one: the container reads what the formula wrote.
    mounted = engine.podman("exec", new_id, "cat", "/etc/odoo/odoo.conf").stdout
    with open(lab.config, encoding="utf-8") as handle:
        assert mounted == handle.read()
    assert "proxy_mode = True" in mounted
    seen = whoami_from(outside, lab.host)
    assert seen["proxy_mode"] is True and seen["remote_addr"] == outside.address, seen
