"""Compose port rebinding (pure logic)."""

import re

import pytest
import yaml
from ruamel.yaml import YAML

import odoo_websocket_compose as odoo_compose
import odoo_websocket_compose_project

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
    good = odoo_websocket_compose_project.validate(
        "services:\n  odoo:\n    image: odoo:17\n", compose_file
    )
    assert good == {"ok": True, "by": "docker-compose config", "message": ""}
    bad = odoo_websocket_compose_project.validate(
        "services:\n  odoo:\n    ports: 5\n", compose_file
    )
    assert bad["ok"] is False and bad["by"] == "docker-compose config"
    assert "services.odoo.ports contains an invalid type" in bad["message"]
    assert compose_file in bad["message"]
    assert list(tmp_path.iterdir()) == []  # the candidate file is gone
    assert odoo_websocket_compose_project.validate("services: [\n", compose_file)["by"] == "parser"


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


# YAML anchors, merge keys and flow style ---------------------------------------


def outside_service(text, service="odoo"):
    """The text before SERVICE's key and from the next key on: all that
    rebinding SERVICE's ports must keep byte for byte."""
    document = YAML().load(text)
    keys = sorted(
        tuple(mapping.lc.key(key))
        for mapping in (document, document["services"])
        for key, _ in mapping.non_merged_items()
    )
    start = tuple(document["services"].lc.key(service))
    end = next((key for key in keys if key > start), None)
    lines = text.splitlines(keepends=True)
    return "".join(lines[: start[0]]), "".join(lines[end[0] :] if end else [])


STACK = """\
# shop
x-common: &common
  restart: unless-stopped
x-ports: &ports
  ports:
    - "8069:8069"   # web
    - target: 8072
      published: 8072
x-list: &list
  - "8069:8069"
services:
  legacy:
    <<: *ports
    image: odoo:12
  odoo:
{odoo}
  worker:
    <<: [*common, *ports]
  cron:
    image: odoo:17
    ports: *list
volumes:
  data: {{}}
"""


@pytest.mark.parametrize(
    "odoo",
    [
        "    <<: *common",
        "    <<: *ports  # shared",
        "    <<: [*common, *ports]\n    image: odoo:17",
        "    image: odoo:17\n    ports: *list",
        '    image: odoo:17\n    ports: ["8069:8069", 8072]',
        "    ports:\n      - {target: 8069, host_ip: 0.0.0.0}\n      - 8072:8072",
    ],
)
def test_other_services_and_anchors_are_kept_byte_for_byte(odoo):
    text = STACK.format(odoo=odoo)
    out = odoo_compose.bind_ports(text, "odoo", PORTS)
    assert outside_service(out) == outside_service(text)
    before, after = yaml.safe_load(text)["services"], yaml.safe_load(out)["services"]
    assert {k: v for k, v in after.items() if k != "odoo"} == {
        k: v for k, v in before.items() if k != "odoo"
    }
    assert sorted(odoo_compose.published_ports(out, "odoo"), key=str) == sorted(
        [
            {"host_ip": "127.0.0.1", "published": "8069", "target": "8069", "protocol": None},
            {"host_ip": "127.0.0.1", "published": "8072", "target": "8072", "protocol": None},
        ],
        key=str,
    )
    assert odoo_compose.bind_ports(out, "odoo", PORTS) == out


def test_service_of_merge_keys_only_gets_its_own_ports():
    one_line = (
        "x: &x\n  image: odoo\nservices:\n  odoo:\n    <<: *x  # base\n  db:\n    image: pg\n"
    )
    out = odoo_compose.bind_ports(one_line, "odoo", [8069])
    assert out == one_line.replace(
        "# base\n", '# base\n    ports:\n      - "127.0.0.1:8069:8069"\n'
    )
    # A merge key over several lines: 'ports:' goes above it (order does not
    # matter to a merge: the service's own keys win).
    listed = "x: &x\n  image: odoo\nservices:\n  odoo:\n    <<:\n      - *x\n"
    out = odoo_compose.bind_ports(listed, "odoo", [8069])
    assert out == listed.replace("    <<:", '    ports:\n      - "127.0.0.1:8069:8069"\n    <<:')
    assert yaml.safe_load(out)["services"]["odoo"]["image"] == "odoo"


def test_merged_ports_copied_in_a_crlf_file_without_last_line_break():
    text = 'x: &x\r\n  ports:\r\n    - "8069:8069"\r\nservices:\r\n  odoo:\r\n    <<: *x'
    out = odoo_compose.bind_ports(text, "odoo", [8069])
    assert out == text + '\r\n    ports:\r\n      - "127.0.0.1:8069:8069"\r\n'


def test_merged_ports_already_bound_are_left_alone():
    text = 'x: &x\n  ports:\n    - "127.0.0.1:8069:8069"\nservices:\n  odoo:\n    <<: *x\n'
    assert odoo_compose.bind_ports(text, "odoo", [8069]) == text


def test_aliased_ports_list_is_replaced_by_the_service_own_list():
    text = (
        'x-list: &list\n  - "8069:8069"\n  - target: 8072\n    published: 8072\n'
        "services:\n  odoo:\n    ports: *list  # shared\n  db:\n    ports: *list\n"
    )
    out = odoo_compose.bind_ports(text, "odoo", PORTS)
    assert out == text.replace(
        "ports: *list  # shared",
        'ports: ["127.0.0.1:8069:8069", {target: 8072, host_ip: "127.0.0.1", published: 8072}]'
        "  # shared",
    )
    assert yaml.safe_load(out)["services"]["db"]["ports"][0] == "8069:8069"


def test_flow_list_over_several_lines():
    text = (
        'services:\n  odoo:\n    ports: [\n      "0.0.0.0:8069:8069",  # web\n      8072\n    ]\n'
    )
    out = odoo_compose.bind_ports(text, "odoo", PORTS)
    assert out == text.replace('"0.0.0.0:', '"127.0.0.1:').replace(
        "      8072\n", '      "127.0.0.1:8072:8072"\n'
    )


def test_entry_repeated_by_an_alias_in_its_own_list_is_edited_once():
    text = 'services:\n  odoo:\n    ports:\n      - &web "8069:8069"\n      - *web\n'
    out = odoo_compose.bind_ports(text, "odoo", [8069])
    assert out == text.replace('&web "8069:8069"', '&web "127.0.0.1:8069:8069"')


@pytest.mark.parametrize(
    "text, message",
    [
        # The entry is the anchor's text: editing it would edit x-web.
        ('x-web: &web "8069:8069"\nservices:\n  odoo:\n    ports:\n      - *web\n',
         "a port entry is an alias of line 1"),
        ("x-ip: &ip 0.0.0.0\nservices:\n  odoo:\n    ports:\n      - target: 8069\n"
         "        host_ip: *ip\n", "a port entry is an alias of line 1"),
        # Another service holds the very same entries.
        ('services:\n  odoo: &odoo\n    ports:\n      - "8069:8069"\n  cron:\n    <<: *odoo\n',
         "service 'cron' holds the same port entries through a YAML anchor"),
        ('services:\n  odoo:\n    ports: &p ["8069:8069"]\n  web:\n    ports: *p\n',
         "service 'web' holds the same port entries"),
        ('services:\n  odoo:\n    ports: &p\n      - &e "8069:8069"\n'
         "  web:\n    ports:\n      - *e\n",
         "service 'web' holds the same port entries"),
        ('services:\n  odoo:\n    ports:\n      - target: 8069\n        host_ip: &h "0.0.0.0"\n'
         "  web:\n    ports:\n      - target: 80\n        host_ip: *h\n",
         "service 'web' holds the same port entries"),
        ("x: &x\n  image: odoo\nservices:\n  odoo: *x\n", "service 'odoo' is a YAML alias"),
        ("services:\n  odoo: {image: odoo}\n", "service 'odoo' is a flow mapping"),
        ('x: &x\n  - "8069:8069"\nservices:\n  odoo:\n    ports:\n      *x\n',
         "its 'ports' come from a YAML anchor"),
        ("x: &x\n  ports: [[8069, 8069]]\nservices:\n  odoo:\n    <<: *x\n",
         "port entry [8069, 8069] not understood"),
    ],
)  # fmt: skip
def test_ports_shared_through_anchors_are_refused(text, message):
    with pytest.raises(odoo_compose.ComposeError, match=re.escape(message)):
        odoo_compose.bind_ports(text, "odoo", [8069])


def test_service_merging_odoo_but_with_its_own_ports_does_not_block_the_edit():
    text = (
        'services:\n  odoo: &odoo\n    image: odoo\n    ports:\n      - "8069:8069"\n'
        "  cron:\n    <<: *odoo\n    ports: []\n"
    )
    out = odoo_compose.bind_ports(text, "odoo", [8069])
    assert out == text.replace('- "8069:8069"', '- "127.0.0.1:8069:8069"')


@pytest.mark.parametrize("last", ["\r\n", ""])
def test_lines_added_in_a_crlf_file_end_in_crlf(last):
    text = "services:\r\n  odoo:\r\n    ports:\r\n      - target: 8069" + last
    out = odoo_compose.bind_ports(text, "odoo", PORTS)
    assert out == (
        'services:\r\n  odoo:\r\n    ports:\r\n      - "127.0.0.1:8072:8072"\r\n'
        '      - target: 8069\r\n        host_ip: "127.0.0.1"\r\n        published: "8069"\r\n'
    )


# Issue 23's smaller findings: compose shapes real hosts have.


def compose_with(*entries, extra=""):
    listed = "".join(f"      - {entry}\n" for entry in entries)
    return f"services:\n  odoo:\n    image: odoo:17\n{extra}    ports:\n{listed}"


@pytest.mark.parametrize("udp", ['"8069:8069/udp"', "{target: 8069, protocol: udp}"])
def test_a_udp_entry_does_not_publish_the_tcp_port(udp):
    """8069/udp is another port to docker: Odoo's TCP port still gets its entry."""
    ports = service_ports(odoo_compose.bind_ports(compose_with(udp), "odoo", PORTS))
    assert "127.0.0.1:8069:8069" in ports and "127.0.0.1:8072:8072" in ports
    for port in ports:  # the udp entry itself is bound too, never public
        assert str(port).startswith("127.0.0.1:") or port.get("host_ip") == "127.0.0.1"


def test_dual_stack_entries_stay_two_distinct_loopback_entries():
    """[::]:8069 beside 0.0.0.0:8069 (dual stack): each bound to its own
    family's loopback, not twice the same entry (docker refuses duplicates)."""
    text = compose_with('"0.0.0.0:8069:8069"', '"[::]:8069:8069"', '"8072:8072"')
    ports = service_ports(odoo_compose.bind_ports(text, "odoo", PORTS))
    assert ports == ["127.0.0.1:8069:8069", "[::1]:8069:8069", "127.0.0.1:8072:8072"]


def test_host_networking_is_refused_with_the_step_that_applies():
    """network_mode: host publishes nothing: the ports the formula would
    write change nothing and Odoo answers on every interface."""
    text = compose_with('"8069:8069"', extra="    network_mode: host\n")
    with pytest.raises(odoo_compose.ComposeError) as raised:
        odoo_compose.bind_ports(text, "odoo", PORTS)
    assert "network_mode: host" in str(raised.value)
    assert "http_interface" in str(raised.value)


def test_a_port_variable_is_kept_only_when_compose_resolves_it_to_nginxs_port():
    """${WEB_PORT:-8069} is what docker publishes on: kept as written when it
    resolves to 8069 (nginx's upstream), replaced when .env sets it else."""
    text = compose_with('"${WEB_PORT:-8069}:8069"', '"8072:8072"')
    kept = service_ports(odoo_compose.bind_ports(text, "odoo", PORTS, variables={}))
    assert "127.0.0.1:${WEB_PORT:-8069}:8069" in kept
    moved = odoo_compose.bind_ports(text, "odoo", PORTS, variables={"WEB_PORT": "18069"})
    assert "127.0.0.1:8069:8069" in service_ports(moved)
    assert "127.0.0.1:${WEB_PORT:-8069}:8069" in service_ports(
        odoo_compose.bind_ports(text, "odoo", PORTS, variables={"WEB_PORT": "8069"})
    )


@pytest.mark.parametrize(
    "text, variables, value",
    [("${A:-1}", {}, "1"), ("${A:-1}", {"A": ""}, "1"), ("${A-1}", {"A": ""}, ""),
     ("${A}", {"A": "2"}, "2"), ("$A", {"A": "3"}, "3"), ("${A}", {}, "")],
)  # fmt: skip
def test_interpolation_as_compose_does_it(text, variables, value):
    assert odoo_compose.port_entries.interpolated(text, variables) == value


def test_project_variables_read_the_env_file_under_the_environment(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("# ports\nWEB_PORT=18069\nexport NAME='shop'\nSHELL_WINS=env\n")
    monkeypatch.setenv("SHELL_WINS", "shell")
    found = odoo_websocket_compose_project.project_variables(str(tmp_path / "docker-compose.yml"))
    assert found["WEB_PORT"] == "18069" and found["NAME"] == "shop"
    assert found["SHELL_WINS"] == "shell"


def test_dual_stack_entries_with_an_address_that_has_no_ipv6_twin_are_refused():
    text = compose_with('"0.0.0.0:8069:8069"', '"[::]:8069:8069"', '"8072:8072"')
    with pytest.raises(odoo_compose.ComposeError, match="dual stack"):
        odoo_compose.bind_ports(text, "odoo", PORTS, "172.17.0.1")


# -- the project's other files (docker-compose.override.yml) ---------------

OVERRIDE = """# the developer's override
services:
  odoo:
    ports:
      - "8069:8069"  # debug from the LAN
    environment:
      - DEBUG=1
"""


def test_an_override_has_its_entries_rebound_and_nothing_added():
    """compose adds an override's ports to the main file's: its entry must be
    bound too, and the ports only the main file lists stay there alone."""
    out = odoo_compose.bind_ports(OVERRIDE, "odoo", PORTS, override=True)
    assert service_ports(out) == ["127.0.0.1:8069:8069"]
    assert out == OVERRIDE.replace('"8069:8069"', '"127.0.0.1:8069:8069"')
    # The main file with the same ports gets what it lacks.
    assert len(service_ports(odoo_compose.bind_ports(OVERRIDE, "odoo", PORTS))) == 2


@pytest.mark.parametrize(
    "text",
    [
        "services:\n  db:\n    image: postgres:15\n",  # no odoo service there
        "services:\n  odoo:\n    environment:\n      - DEBUG=1\n",  # no ports
        "services:\n  odoo:\n    ports:\n      - '127.0.0.1:8069:8069'\n",  # bound already
        "services:\n  odoo:\n",  # an empty service
        "services:\n  odoo: {}\n",
    ],
)
def test_an_override_that_publishes_nothing_unbound_is_left_as_it_is(text):
    assert odoo_compose.bind_ports(text, "odoo", PORTS, override=True) == text


def test_an_override_with_network_mode_host_is_refused():
    text = "services:\n  odoo:\n    network_mode: host\n"
    with pytest.raises(odoo_compose.ComposeError, match="network_mode: host"):
        odoo_compose.bind_ports(text, "odoo", PORTS, override=True)


def test_project_files_are_the_file_and_its_override_or_compose_file(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPOSE_FILE", raising=False)
    monkeypatch.delenv("COMPOSE_PATH_SEPARATOR", raising=False)
    main = str(tmp_path / "docker-compose.yml")
    files = odoo_websocket_compose_project.project_files
    assert files(main) == [main]
    (tmp_path / "docker-compose.override.yml").write_text(OVERRIDE)
    assert files(main) == [main, str(tmp_path / "docker-compose.override.yml")]
    # COMPOSE_FILE in the project's .env decides, relative to the folder.
    (tmp_path / ".env").write_text("COMPOSE_FILE=docker-compose.yml;prod/ports.yml\n"
                                   "COMPOSE_PATH_SEPARATOR=;\n")  # fmt: skip
    assert files(main) == [main, str(tmp_path / "prod" / "ports.yml")]
    # A file compose would not find by itself is named with -f: it alone counts.
    assert files(str(tmp_path / "odoo.yml")) == [str(tmp_path / "odoo.yml")]


def test_validate_reads_the_project_as_compose_merges_it(tmp_path):
    """An override alone is no valid compose file (no image): the project is
    checked as a whole, each file's planned text in its place."""
    main, override = str(tmp_path / "docker-compose.yml"), str(tmp_path / "o.yml")
    text = "services:\n  odoo:\n    image: odoo:17\n"
    project = {main: text, override: OVERRIDE}
    assert odoo_websocket_compose_project.validate(text, main, project)["ok"] is True
    alone = odoo_websocket_compose_project.validate(OVERRIDE, override)
    assert alone["ok"] is False and "image" in alone["message"], alone
    bad = {main: text, override: OVERRIDE.replace('\n      - "8069:8069"', " 5")}
    refused = odoo_websocket_compose_project.validate(text, main, bad)
    assert refused["ok"] is False and override in refused["message"], refused
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no candidate left
