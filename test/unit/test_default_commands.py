"""The restart and recreate commands the formula runs when the pillar leaves
them empty, as rendered for each OS family (defaults.yaml, osfamilymap.yaml,
the settings module): the exact command lines, and the arguments a shell
splits them into (a path with shell characters stays one argument)."""

import shlex

import pytest

from mapdata import FAMILIES, rendered_settings


def commands(pillar=None, family="Debian"):
    result = rendered_settings(family, pillar or {})
    return result["odoo"]["config"]["restart_cmd"], result["compose"]["recreate_cmd"], result


def compose_either(folder, arguments, file=None):
    """The default compose command, from the project's folder (its .env, its
    override), the file named only when compose would not find it by itself:
    the docker CLI's plugin when it answers, else the standalone
    docker-compose, decided on the minion when it runs."""
    tail = f"-f {file} {arguments}" if file else arguments
    return (
        f"cd {folder} && if docker compose version >/dev/null 2>&1; then docker compose {tail}; "
        f"else docker-compose {tail}; fi"
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_docker_defaults_restart_and_recreate_the_odoo_service(family):
    restart, recreate, result = commands(family=family)
    assert restart == compose_either("/opt/odoo", "restart odoo")
    # `up -d`: detached, or the run would wait on the container's output forever.
    assert recreate == compose_either("/opt/odoo", "up -d odoo")
    assert result["compose"]["enabled"] is True


def test_docker_defaults_follow_the_compose_file_and_service():
    restart, recreate, _ = commands(
        {"compose": {"file": "/srv/odoo(prod)/compose&co.yaml", "service": "erp"}}
    )
    # The path stays one argument in both branches (quoted once for the shell).
    file, folder = "'/srv/odoo(prod)/compose&co.yaml'", "'/srv/odoo(prod)'"
    assert restart == compose_either(folder, "restart erp", file)
    assert recreate == compose_either(folder, "up -d erp", file)
    cd, _, test = recreate.partition(" && ")
    assert shlex.split(cd) == ["cd", "/srv/odoo(prod)"]
    branches = test.removeprefix("if ").removesuffix("; fi").split("; ")
    assert [shlex.split(b) for b in branches] == [
        ["docker", "compose", "version", ">/dev/null", "2>&1"],
        ["then", "docker", "compose", "-f", "/srv/odoo(prod)/compose&co.yaml", "up", "-d", "erp"],
        ["else", "docker-compose", "-f", "/srv/odoo(prod)/compose&co.yaml", "up", "-d", "erp"],
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_native_default_restarts_the_service_and_never_recreates(family):
    restart, _, result = commands({"deployment": "native"}, family)
    assert restart == "service odoo restart"
    assert result["compose"]["enabled"] is False  # no recreate in a native deployment


def test_commands_from_the_pillar_are_kept_as_written():
    restart, recreate, _ = commands(
        {"odoo": {"config": {"restart_cmd": "systemctl restart odoo@prod"}},
         "compose": {"recreate_cmd": "podman-compose up -d odoo"}}
    )  # fmt: skip
    assert (restart, recreate) == ("systemctl restart odoo@prod", "podman-compose up -d odoo")
