"""Compose port rebinding (pure logic)."""

import odoo_compose
import pytest
import yaml

PORTS = [8069, 8072]


def service_ports(text, service="odoo"):
    return yaml.safe_load(text)["services"][service]["ports"]


@pytest.mark.parametrize(
    "entry, expected",
    [
        ('"8069:8069"', "127.0.0.1:8069:8069"),
        ('"0.0.0.0:8069:8069"', "127.0.0.1:8069:8069"),
        ('"8069"', "127.0.0.1:8069:8069"),
        ("8069", "127.0.0.1:8069:8069"),
        ('"8069:8069/tcp"', "127.0.0.1:8069:8069/tcp"),
        # nginx's upstream is 8069: a different host port is brought in line.
        ('"18069:8069"', "127.0.0.1:8069:8069"),
        ('"[::]:8069:8069"', "127.0.0.1:8069:8069"),
        ('"${WEB_PORT:-8069}:8069"', "127.0.0.1:${WEB_PORT:-8069}:8069"),
        ("'8069:8069'", "127.0.0.1:8069:8069"),
        ('"8069-8072:8069-8072"', "127.0.0.1:8069-8072:8069-8072"),
    ],
)
def test_short_syntax(entry, expected):
    text = f"services:\n  odoo:\n    image: odoo:17\n    ports:\n      - {entry}\n"
    out = odoo_compose.bind_ports(text, "odoo", PORTS)
    ports = service_ports(out)
    assert expected in ports
    for port in ports:
        assert str(port).startswith("127.0.0.1:")
    assert odoo_compose.bind_ports(out, "odoo", PORTS) == out


def test_long_syntax():
    text = (
        "services:\n  odoo:\n    ports:\n"
        "      - target: 8069\n        published: 8069\n        host_ip: 0.0.0.0\n"
        "      - target: 8072\n        published: '8072'\n"
        "      - target: 8071\n        host_ip: 0.0.0.0\n"
    )
    out = odoo_compose.bind_ports(text, "odoo", PORTS)
    ports = service_ports(out)
    assert ports[0] == {"target": 8069, "published": 8069, "host_ip": "127.0.0.1"}
    assert ports[1]["host_ip"] == "127.0.0.1" and ports[1]["published"] == "8072"
    assert ports[2] == {"target": 8071, "host_ip": "0.0.0.0"}  # not Odoo's: untouched
    assert odoo_compose.bind_ports(out, "odoo", PORTS) == out


def test_other_ports_services_comments_and_anchors_untouched():
    text = (
        "# head comment\n"
        "x-common: &common\n  restart: always\n"
        "services:\n"
        '  db:\n    <<: *common\n    ports:\n      - "5432:5432"  # db\n'
        "  odoo:\n    <<: *common\n    ports:\n"
        '      - "8069:8069"   # web\n'
        '      - "8071:8071"\n'
        '      - "8072:8072"\n'
    )
    out = odoo_compose.bind_ports(text, "odoo", PORTS)
    expected = text.replace('"8069:8069"   # web', '"127.0.0.1:8069:8069"   # web').replace(
        '"8072:8072"', '"127.0.0.1:8072:8072"'
    )
    assert out == expected


def test_missing_ports_are_added():
    out = odoo_compose.bind_ports("services:\n  odoo:\n    image: odoo:17\n", "odoo", PORTS)
    assert service_ports(out) == ["127.0.0.1:8069:8069", "127.0.0.1:8072:8072"]
    out = odoo_compose.bind_ports(
        "services:\n  odoo:\n    ports:\n      - '8069:8069'\n", "odoo", PORTS
    )
    assert sorted(service_ports(out)) == ["127.0.0.1:8069:8069", "127.0.0.1:8072:8072"]


def test_ipv6_bind_address():
    out = odoo_compose.bind_ports(
        "services:\n  odoo:\n    ports:\n      - 8069:8069\n", "odoo", [8069], "::1"
    )
    assert service_ports(out) == ["[::1]:8069:8069"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("services: [\n", "not valid YAML"),
        ("version: '3'\n", "no 'services' mapping"),
        ("services:\n  web:\n    image: x\n", "no service 'odoo' (services: web)"),
        ("services:\n  odoo:\n    ports: 8069\n", "'ports' is not a list"),
        ("services:\n  odoo:\n    ports:\n      - published: 80\n", "has no target"),
    ],
)
def test_bad_compose_files_are_refused(text, message):
    with pytest.raises(odoo_compose.ComposeError) as raised:
        odoo_compose.bind_ports(text, "odoo", PORTS)
    assert message in str(raised.value)


def test_validate_uses_docker_compose_config(tmp_path):
    compose_file = str(tmp_path / "docker-compose.yml")
    good = odoo_compose.validate("services:\n  odoo:\n    image: odoo:17\n", compose_file)
    assert good == {"ok": True, "by": "docker-compose config", "message": ""}
    bad = odoo_compose.validate("services:\n  odoo:\n    ports: 5\n", compose_file)
    assert bad["ok"] is False and bad["by"] == "docker-compose config"
    assert "services.odoo.ports contains an invalid type" in bad["message"]
    assert compose_file in bad["message"]
    assert list(tmp_path.iterdir()) == []  # the candidate file is gone
    assert odoo_compose.validate("services: [\n", compose_file)["by"] == "parser"


def test_host_ports_differing_from_container_ports():
    text = (
        "services:\n  odoo:\n    ports:\n      - '18069:8069'\n"
        "      - target: 8072\n        published: 8072\n        host_ip: 0.0.0.0\n"
    )
    out = odoo_compose.bind_ports(text, "odoo", [[8069, 18069], [8072, 18072]])
    ports = service_ports(out)
    assert ports[0] == "127.0.0.1:18069:8069"
    assert ports[1] == {"target": 8072, "published": 18072, "host_ip": "127.0.0.1"}
    assert odoo_compose.bind_ports(out, "odoo", [[8069, 18069], [8072, 18072]]) == out
    added = odoo_compose.bind_ports("services:\n  odoo:\n    image: x\n", "odoo", [[8069, 18069]])
    assert service_ports(added) == ["127.0.0.1:18069:8069"]
