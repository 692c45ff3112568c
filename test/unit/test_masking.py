"""Secret masking of diffs: odoo.conf keys by name and by pattern, compose
environment entries and passwords in URLs (odoo_websocket_plan.masked)."""

import pytest
from loader import load

plan = load()["odoo_websocket_plan"]
conf = load()["odoo_conf"]


@pytest.mark.parametrize(
    "line, secret",
    [
        ("admin_passwd = Adm%1\n", "Adm%1"),
        ("smtp_password = Smtp%2\n", "Smtp%2"),
        ("mail_api_token = Tok%3\n", "Tok%3"),
        ("; db_password = Commented%4\n", "Commented%4"),
        ("      - POSTGRES_PASSWORD=Pg%5\n", "Pg%5"),
        ("      POSTGRES_PASSWORD: Pg%6\n", "Pg%6"),
        ('      "SECRET_KEY": "Sk%7"\n', "Sk%7"),
        ("      DB_PASS: Pw%8\n", "Pw%8"),
        ("      DATABASE_URL: postgres://odoo:Url%9@db/odoo\n", "Url%9"),
        ("listed_option = Listed%10\n", "Listed%10"),
    ],
)
def test_secret_values_are_masked(line, secret):
    text = "[options]\nworkers = 2\n" + line + "proxy_mode = True\n"
    shown = plan.masked(text, ["listed_option"])
    assert secret not in shown
    assert "********" in shown
    assert "workers = 2" in shown and "proxy_mode = True" in shown


def test_plain_values_stay_readable():
    text = "[options]\naddons_path = /mnt/extra-addons\ndb_host = db\n"
    assert plan.masked(text) == text
    assert conf.is_secret("smtp_password") and not conf.is_secret("db_host")
