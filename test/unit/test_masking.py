"""Secret masking of diffs: odoo.conf keys by name and by pattern, compose
environment entries and passwords in URLs (odoo_websocket_files.masked)."""

import pytest

import odoo_websocket_files
import odoo_websocket_odoo_conf
import odoo_websocket_plan

plan = odoo_websocket_plan
conf = odoo_websocket_odoo_conf


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
        ("ldap_bind_pw = Ldap%11\n", "Ldap%11"),
    ],
)
def test_secret_values_are_masked(line, secret):
    text = "[options]\nworkers = 2\n" + line + "proxy_mode = True\n"
    shown = odoo_websocket_files.masked(text, ["listed_option"])
    assert secret not in shown
    assert "********" in shown
    assert "workers = 2" in shown and "proxy_mode = True" in shown


def test_plain_values_stay_readable():
    text = "[options]\naddons_path = /mnt/extra-addons\ndb_host = db\n"
    assert odoo_websocket_files.masked(text) == text
    assert conf.is_secret("smtp_password") and not conf.is_secret("db_host")


COMPOSE_ENVIRONMENTS = """services:
  odoo:
    image: odoo:17
    environment: {HOST: db, USER: Flow%1, PASSWORD: "Flow%2"}
    ports:
      - "8069:8069"
  db:
    environment: ["POSTGRES_PASSWORD=Flow%3", 'PGDATA=Flow%4']
  web:
    environment:
      PLAIN: Block%5
      "QUOTED": "Block%6"
      MULTI: |
        Block%7
  worker:
    environment: &env
    - ANY=List%8
    - "QUOTED=List%9"
    - PASSED_THROUGH
    command: --workers=2
"""


def test_every_compose_environment_value_is_masked_whatever_its_form():
    """Block or flow, mapping or list, whatever the variable's name: the
    values never show; the keys, ports and everything else stay readable."""
    shown = odoo_websocket_files.masked(COMPOSE_ENVIRONMENTS)
    for secret in ("Flow%", "Block%", "List%", "db,"):
        assert secret not in shown
    for kept in ("HOST: ********", "PASSWORD: ********", '"POSTGRES_PASSWORD=********"',
                 "PLAIN: ********", '"QUOTED": ********', "- ANY=********",
                 '"QUOTED=********"', "- PASSED_THROUGH", '- "8069:8069"',
                 "command: --workers=2", "image: odoo:17"):  # fmt: skip
        assert kept in shown, shown


@pytest.mark.parametrize(
    "line, secret",
    [
        ('proxy_set_header Authorization "Basic Ng%1";', "Ng%1"),
        ("proxy_set_header  proxy-authorization Basic Ng%2;", "Ng%2"),
        ("proxy_set_header Cookie session_id=Ng%3;", "Ng%3"),
        ('add_header Set-Cookie "sid=Ng%4; Path=/";', "Ng%4"),
        ('more_set_headers "Authorization: Bearer Ng%5";', "Ng%5"),
        ("proxy_set_header X-Api-Key Ng6apikey;", "Ng6"),
        ("set $odoo_password Ng%7;", "Ng%7"),
        ("proxy_pass http://odoo:Ng%8@127.0.0.1:8069;", "Ng%8"),
    ],
)
def test_nginx_credentials_are_masked(line, secret):
    text = f"server {{\n    location / {{\n        {line}\n        proxy_pass http://up;\n"
    shown = odoo_websocket_files.masked(
        text + "        auth_basic_user_file /etc/nginx/htpasswd;\n    }\n}\n"
    )
    assert secret not in shown and "********" in shown
    assert "proxy_pass http://up;" in shown and "auth_basic_user_file /etc/nginx/htpasswd;" in shown


# Issue 23, item 9: every field that can carry a secret, in any shape.
SECRET_SHAPES = {
    "command flag": "services:\n  odoo:\n    command: --db_password=Sh%1 --workers=2\n",
    "command flag, flow list": "services:\n  odoo:\n"
    '    command: ["odoo", "--db_password", "Sh%2"]\n',
    "command flag, block list": "services:\n  odoo:\n    command:\n      - --db_password=Sh%3\n",
    "entrypoint flag, spaced": "services:\n  odoo:\n    entrypoint: odoo --db_password Sh%4\n",
    "healthcheck variable": 'services:\n  db:\n    healthcheck:\n      test: ["CMD-SHELL", '
    '"PGPASSWORD=Sh%5 pg_isready -U odoo"]\n',
    "healthcheck curl user": "services:\n  db:\n    healthcheck:\n"
    "      test: curl -fsu admin:Sh%6 http://localhost\n",
    "anchor in x- field": "x-env: &env\n  HOST: Sh%7\n  USER: Sh%8\nservices:\n  odoo:\n"
    "    environment: *env\n",
    "anchor merged": "x-env: &env\n  DBUSER: Sh%9\nservices:\n  odoo:\n    environment:\n"
    "      <<: *env\n      EXTRA: Sh%10\n",
    "hyphenated header": "server {\n    proxy_set_header X-Api-Key Sh%11;\n}\n",
    "auth header": "server {\n    proxy_set_header X-Auth-User-Secret Sh%12;\n}\n",
}


@pytest.mark.parametrize("text", SECRET_SHAPES.values(), ids=list(SECRET_SHAPES))
def test_secrets_in_every_shape_are_masked(text):
    shown = odoo_websocket_files.masked(text)
    leaked = [word for word in text.replace('"', " ").split() if "Sh%" in word]
    assert leaked and not [word for word in leaked if word.strip(",]'") in shown], shown
    assert "********" in shown


def test_what_frames_a_masked_value_stays():
    """Quotes stay balanced, flags, names and aliases stay readable."""
    masked = odoo_websocket_files.masked
    assert masked('proxy_set_header Authorization "Basic x1";\n') == (
        'proxy_set_header Authorization "********";\n'
    )
    assert masked("proxy_set_header Authorization 'Bearer x2';\n") == (
        "proxy_set_header Authorization '********';\n"
    )
    shown = masked(SECRET_SHAPES["command flag"])
    assert "--db_password=******** --workers=2" in shown
    shown = masked(SECRET_SHAPES["anchor merged"])
    assert "<<: *env" in shown and "DBUSER: ********" in shown
    plain = "services:\n  odoo:\n    command: --workers=2 --proxy-mode\n    image: odoo:17\n"
    assert masked(plain) == plain
