"""Expected output of the `odoo_websocket._mapdata` state: the settings
map.jinja renders (defaults.yaml < osfamilymap.yaml < pillar, then
odoo_websocket_settings.settings), which carry the names of odoo.conf's
extra_options but never their values.

`.venv/bin/python test/mapdata.py` rewrites test/fixtures/mapdata/<family>.yaml
for the defaults and an empty pillar; test/unit/test_mapdata.py fails until the
committed fixtures match what the formula renders.
"""

import os
import sys

import salt.utils.dictupdate
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FORMULA = os.path.join(REPO, "odoo_websocket")
FIXTURES = os.path.join(HERE, "fixtures", "mapdata")
sys.path.insert(0, HERE)

import odoo_websocket_settings  # noqa: E402

FAMILIES = ("Debian", "RedHat")
HEADER = (
    "# yamllint disable rule:indentation rule:line-length\n"
    "# {family}: defaults, empty pillar (written by test/mapdata.py)\n"
    "---\n"
)


def _load(name):
    with open(os.path.join(FORMULA, name), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _merge(base, update):
    """slsutil.merge(base, update, strategy='recurse'), as map.jinja merges."""
    return salt.utils.dictupdate.merge(base, update or {}, strategy="recurse")


def rendered_settings(os_family, pillar=None):
    """The settings map.jinja exports on a minion of OS_FAMILY with PILLAR
    (the content of pillar:odoo_websocket)."""
    merged = _merge(_load("defaults.yaml")["odoo_websocket"], _load("osfamilymap.yaml")[os_family])
    return odoo_websocket_settings.settings(_merge(merged, pillar))


def expected_mapdata(os_family, pillar=None):
    """The YAML text of the settings for OS_FAMILY and PILLAR."""
    data = rendered_settings(os_family, pillar)
    body = yaml.safe_dump(data, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return HEADER.format(family=os_family) + body


def fixture_path(os_family):
    return os.path.join(FIXTURES, f"{os_family}.yaml")


def main():
    os.makedirs(FIXTURES, exist_ok=True)
    for family in FAMILIES:
        with open(fixture_path(family), "w", encoding="utf-8") as handle:
            handle.write(expected_mapdata(family))
        print(f"wrote {os.path.relpath(fixture_path(family), REPO)}")


if __name__ == "__main__":
    main()
