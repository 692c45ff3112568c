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


def broken_docker_host(box):
    """The demo's host: upgrade headers hard-coded on "/" (the bus reaches a
    prefork worker on 8069), compose publishing 8069/8072 on every interface,
    odoo.conf (with its comments and secrets) lacking proxy_mode."""
    site(box, HARDCODED)
    with open(box.odoo_conf, "a", encoding="utf-8") as handle:
        handle.write("workers = 2\ngevent_port = 8072\n")


# Odoo's documented sample (deployment docs, 16+), adapted to plain http as
# hosts without a certificate run it: its own upstream names and map.
ODOO_SAMPLE = """upstream odoo {
  server 127.0.0.1:8069;
}
upstream odoochat {
  server 127.0.0.1:8072;
}
map $http_upgrade $connection_upgrade {
  default upgrade;
  ''      close;
}

server {
  listen 80;
  server_name odoo.example.com;

  proxy_read_timeout 720s;
  proxy_connect_timeout 720s;
  proxy_send_timeout 720s;

  location /websocket {
    proxy_pass http://odoochat;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $connection_upgrade;
    proxy_set_header X-Forwarded-Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Real-IP $remote_addr;
  }

  location / {
    proxy_set_header X-Forwarded-Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_redirect off;
    proxy_pass http://odoo;
  }

  gzip_types text/css text/plain application/json application/javascript;
  gzip on;
}
"""
