"""The concerns' table (odoo_websocket_concerns) is what the formula runs:
each concern's SLS holds its planning state, the state module plans exactly
the table's concerns, and the paths, restarts and fixes derive from it."""

import os
import re

import odoo_websocket_audit
import odoo_websocket_concerns
import odoo_websocket_settings
from helpers import defaults, settings_with
from rig.sandbox import REPO

CONCERNS = odoo_websocket_concerns.CONCERNS


def test_each_concern_names_its_sls_and_planning_state():
    for name, concern in CONCERNS.items():
        folder = concern.sls.split(".", 1)[1]
        with open(os.path.join(REPO, "odoo_websocket", folder, "init.sls"), encoding="utf-8") as f:
            sls = f.read()
        state = re.escape(concern.state_id)
        assert re.search(rf"^{state}:\n  odoo_websocket\.\w+_planned:$", sls, re.M), name


def test_the_states_plan_the_tables_concerns_and_no_other():
    with open(os.path.join(REPO, "_states", "odoo_websocket.py"), encoding="utf-8") as handle:
        planned = set(re.findall(r'return _planned\(name, "(\w+)"', handle.read()))
    assert planned == set(CONCERNS)


def test_restarts_and_managed_paths_come_from_the_table():
    settings = odoo_websocket_settings.settings(settings_with(deployment="docker"))
    odoo, compose = settings["odoo"]["config"], settings["compose"]
    restart = odoo_websocket_concerns.restart("odoo_conf", settings)
    assert restart == {"concern": "odoo_conf", "what": "restart Odoo",
                       "cmd": odoo["restart_cmd"], "unless": "compose"}  # fmt: skip
    assert odoo_websocket_concerns.restart("nginx", settings) is None  # reloaded, not restarted
    native = odoo_websocket_settings.settings(settings_with(deployment="native"))
    assert odoo_websocket_concerns.restart("odoo_conf", native)["unless"] is None
    by_path = odoo_websocket_concerns.restarts_by_path(settings, covered=True)
    assert [r["path"] for r in by_path] == [os.path.realpath(compose["file"]),
                                            os.path.realpath(odoo["file"])]  # fmt: skip
    assert by_path[1]["unless"] == [os.path.realpath(compose["file"])]
    assert "unless" not in odoo_websocket_concerns.restarts_by_path(settings)[1]
    managed = odoo_websocket_concerns.managed_paths(settings)
    nginx = settings["nginx"]
    for path in (nginx["site_file"], nginx["site_link"], nginx["map_file"], odoo["file"],
                 compose["file"], os.path.dirname(nginx["conf_file"]) + "/"):  # fmt: skip
        assert path in managed


def test_the_audits_fixes_name_the_concerns_sls():
    assert CONCERNS["odoo_conf"].sls in odoo_websocket_audit.ODOO_FIX
    assert CONCERNS["compose"].sls in odoo_websocket_audit.COMPOSE_FIX
    assert defaults()["compose"]["enabled"]  # the table's compose concern is on by default
