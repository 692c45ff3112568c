"""What a test host's init waits for before it calls the host ready: every
port nginx's configuration and the stand-in Odoo's are set to listen on."""

import os

import pytest

from rig.init import _listen_address, nginx_ports, odoo_ports
from rig.sandbox import Sandbox


@pytest.mark.parametrize(
    "arg, expected",
    [
        ("80", ("*", 80)),
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::]:443", ("::", 443)),
        ("[::1]", ("::1", 80)),
        ("localhost", ("localhost", 80)),
        ("unix:/run/nginx.sock", None),
    ],
)
def test_listen_arguments(arg, expected):
    assert _listen_address(arg) == expected


def test_nginx_ports_follow_includes_and_default_to_80(tmp_path):
    box = Sandbox(str(tmp_path / "box"), http_port=8081).create()
    box.write(
        os.path.join(box.nginx_dir, "conf.d/extra.conf"),
        "server { listen 127.0.0.2:8443 ssl; }\nserver { server_name x; }\n",
    )
    # Debian's default site listens on IPv6's wildcard too.
    assert nginx_ports(box.conf_file) == [
        ("*", 80), ("*", 8081), ("127.0.0.2", 8443), ("::", 8081)
    ]  # fmt: skip


def test_nginx_config_it_cannot_read_is_an_error(tmp_path):
    box = Sandbox(str(tmp_path / "box")).create()
    box.write(os.path.join(box.nginx_dir, "conf.d/broken.conf"), "server {\n")
    with pytest.raises(ValueError, match="cannot read nginx's configuration: .*broken.conf:"):
        nginx_ports(box.conf_file)


def test_odoo_ports_follow_odoo_conf_and_compose_publishing(tmp_path):
    box = Sandbox(str(tmp_path / "box")).create()
    compose = open(box.compose_file).read().replace('"8072:8072"', '"127.0.0.1:18072:8072"')
    box.write(box.compose_file, compose)
    files = {"conf": box.odoo_conf, "compose": box.compose_file}
    assert odoo_ports("17.0", True, **files) == [("0.0.0.0", 8069)]  # threaded: no bus port
    with open(box.odoo_conf, "a") as handle:
        handle.write("workers = 2\nhttp_interface = 127.0.0.3\n")
    assert odoo_ports("17.0", True, **files) == [("0.0.0.0", 8069), ("127.0.0.1", 18072)]
    assert odoo_ports("17.0", False, **files) == [("127.0.0.3", 8069), ("127.0.0.3", 8072)]
