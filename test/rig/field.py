"""States of an Odoo host as found in the field, shared by the scenario
tests, the browser test and the demo."""

import os

SITE = "/etc/nginx/sites-available/odoo"
LINK = "/etc/nginx/sites-enabled/odoo"

# A common copy-paste: upgrade headers hard-coded on "/", no map, no
# /websocket route, so the bus reaches a prefork worker on 8069.
HARDCODED = """upstream odoo { server 127.0.0.1:8069; }
server {
    listen 80;
    server_name odoo.example.com;
    location / {
        proxy_pass http://odoo;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
    }
}
"""


def site(box, text, enable=True):
    box.write(box.root + SITE, text)
    if enable:
        os.symlink(SITE, box.root + LINK)


def odoo_conf(box, **options):
    text = "[options]\naddons_path = /mnt/extra-addons\n" + "".join(
        f"{key} = {value}\n" for key, value in options.items()
    )
    box.write(box.odoo_conf, text, mode=0o640)


def own_site(pillar):
    """Point the formula at the site the host already has."""
    pillar["odoo_websocket"]["nginx"].update({"site_file": SITE, "site_link": LINK})
    return pillar


def broken_docker_host(box):
    """The demo's host: upgrade headers hard-coded on "/" (the bus reaches a
    prefork worker on 8069), compose publishing 8069/8072 on every interface,
    odoo.conf (with its comments and secrets) lacking proxy_mode."""
    site(box, HARDCODED)
    with open(box.odoo_conf, "a", encoding="utf-8") as handle:
        handle.write("workers = 2\ngevent_port = 8072\n")
