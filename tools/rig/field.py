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


# -- Sites as hosts have them, each broken in one of the field's ways: what
# adoption must fix while keeping the rest (test_adoption, the demo). Each
# shape: the site file's text ({address}: the host's address), the pillar's
# server_name, the name a browser uses, TLS (a certificate for
# odoo.example.com at CERT/KEY) and the Odoo version.

CERT = "/etc/nginx/ssl/odoo.example.com.crt"
KEY = "/etc/nginx/ssl/odoo.example.com.key"

# One block, two names (an address and a domain): the Connection header
# hard-coded on "/", no /websocket route (the bus reaches a prefork worker).
TWO_NAMES = HARDCODED.replace(
    "server_name odoo.example.com;", "server_name {address} odoo.example.com;"
)

# example.com with a www redirect block; /websocket without Upgrade.
WWW_REDIRECT = """upstream odoo { server 127.0.0.1:8069; }
upstream odoochat { server 127.0.0.1:8072; }

server {
    listen 80;
    server_name www.example.com;
    return 301 http://example.com$request_uri;
}

server {
    listen 80;
    server_name example.com;

    location /websocket {
        proxy_pass http://odoochat;
        proxy_http_version 1.1;
        proxy_set_header Connection "upgrade";
    }

    location / {
        proxy_pass http://odoo;
    }
}
"""

# Port 80 redirects to https; the 443 block has its certificate and talks
# HTTP/1.0 to its upstreams (nginx's default before 1.29.7).
TLS_REDIRECT = f"""upstream odoo {{ server 127.0.0.1:8069; }}
upstream odoochat {{ server 127.0.0.1:8072; }}
map $http_upgrade $connection_upgrade {{
    default upgrade;
    ''      close;
}}

server {{
    listen 80;
    server_name odoo.example.com;
    return 301 https://$host$request_uri;
}}

server {{
    listen 443 ssl;
    server_name odoo.example.com;
    ssl_certificate {CERT};
    ssl_certificate_key {KEY};
    ssl_session_cache shared:SSL:10m;

    location /websocket {{
        proxy_pass http://odoochat;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header Host $host;
    }}

    location / {{
        proxy_pass http://odoo;
        proxy_set_header Host $host;
    }}
}}
"""

# Upload size, gzip, a static caching location, an access log and a header
# of the host's own at server level; /websocket routed to 8072 while Odoo
# runs threaded (nothing listens there: 502).
EXTRAS = """upstream odoo { server 127.0.0.1:8069; }
upstream odoochat { server 127.0.0.1:8072; }

server {
    listen 80;
    server_name odoo.example.com;
    client_max_body_size 200m;
    access_log /var/log/nginx/odoo.access.log;
    proxy_set_header X-Site odoo-main;
    gzip on;
    gzip_types text/css application/javascript;

    location ~* /web/static/ {
        proxy_buffering on;
        expires 864000;
        proxy_pass http://odoo;
    }

    location /websocket {
        proxy_pass http://odoochat;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
    }

    location / {
        proxy_pass http://odoo;
    }
}
"""

# A second, unrelated site in the same file; Odoo's /websocket drops the
# browser's Origin (Odoo answers 400 "Empty or missing header(s): origin").
SECOND_SITE = """upstream odoo { server 127.0.0.1:8069; }

server {
    listen 80;
    server_name odoo.example.com;

    location /websocket {
        proxy_pass http://odoo;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_set_header Origin "";
    }

    location / {
        proxy_pass http://odoo;
    }
}

server {
    listen 80;
    server_name blog.example.com;
    location / {
        default_type text/plain;
        return 200 "the blog";
    }
}
"""

# Odoo's deployment guide's samples, verbatim but for the server name and
# the certificate's paths.
ODOO14_SAMPLE = f"""#odoo server
upstream odoo {{
 server 127.0.0.1:8069;
}}
upstream odoochat {{
 server 127.0.0.1:8072;
}}

# http -> https
server {{
   listen 80;
   server_name odoo.example.com;
   rewrite ^(.*) https://$host$1 permanent;
}}

server {{
 listen 443;
 server_name odoo.example.com;
 proxy_read_timeout 720s;
 proxy_connect_timeout 720s;
 proxy_send_timeout 720s;

 # Add Headers for odoo proxy mode
 proxy_set_header X-Forwarded-Host $host;
 proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
 proxy_set_header X-Forwarded-Proto $scheme;
 proxy_set_header X-Real-IP $remote_addr;

 # SSL parameters
 ssl on;
 ssl_certificate {CERT};
 ssl_certificate_key {KEY};
 ssl_session_timeout 30m;
 ssl_protocols TLSv1.2;
 ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384;
 ssl_prefer_server_ciphers off;

 # log
 access_log /var/log/nginx/odoo.access.log;
 error_log /var/log/nginx/odoo.error.log;

 # Redirect longpoll requests to odoo longpolling port
 location /longpolling {{
 proxy_pass http://odoochat;
 }}

 # Redirect requests to odoo backend server
 location / {{
   proxy_redirect off;
   proxy_pass http://odoo;
 }}

 # common gzip
 gzip_types text/css text/scss text/plain text/xml application/xml application/json application/javascript;
 gzip on;
}}
"""

ODOO16_SAMPLE = f"""#odoo server
upstream odoo {{
  server 127.0.0.1:8069;
}}
upstream odoochat {{
  server 127.0.0.1:8072;
}}
map $http_upgrade $connection_upgrade {{
  default upgrade;
  ''      close;
}}

# http -> https
server {{
  listen 80;
  server_name odoo.example.com;
  rewrite ^(.*) https://$host$1 permanent;
}}

server {{
  listen 443 ssl;
  server_name odoo.example.com;
  proxy_read_timeout 720s;
  proxy_connect_timeout 720s;
  proxy_send_timeout 720s;

  # SSL parameters
  ssl_certificate {CERT};
  ssl_certificate_key {KEY};
  ssl_session_timeout 30m;
  ssl_protocols TLSv1.2;
  ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384;
  ssl_prefer_server_ciphers off;

  # log
  access_log /var/log/nginx/odoo.access.log;
  error_log /var/log/nginx/odoo.error.log;

  # Redirect websocket requests to odoo gevent port
  location /websocket {{
    proxy_pass http://odoochat;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $connection_upgrade;
    proxy_set_header X-Forwarded-Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Real-IP $remote_addr;
  }}

  # Redirect requests to odoo backend server
  location / {{
    # Add Headers for odoo proxy mode
    proxy_set_header X-Forwarded-Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_redirect off;
    proxy_pass http://odoo;
  }}

  # common gzip
  gzip_types text/css text/scss text/plain text/xml application/xml application/json application/javascript;
  gzip on;
}}
"""

# 17.0 adds HSTS and the session cookie's flags to both locations, and
# X-Forwarded-Host $http_host.
ODOO17_SAMPLE = (
    ODOO16_SAMPLE.replace("X-Forwarded-Host $host;", "X-Forwarded-Host $http_host;")
    .replace(
        "    proxy_set_header X-Real-IP $remote_addr;\n  }",
        "    proxy_set_header X-Real-IP $remote_addr;\n\n"
        '    add_header Strict-Transport-Security "max-age=31536000; includeSubDomains";\n'
        "    proxy_cookie_flags session_id samesite=lax secure;\n  }",
    )
    .replace(
        "    proxy_pass http://odoo;\n  }",
        "    proxy_pass http://odoo;\n\n"
        '    add_header Strict-Transport-Security "max-age=31536000; includeSubDomains";\n'
        "    proxy_cookie_flags session_id samesite=lax secure;\n  }",
    )
)

# name -> (site text, pillar server_name, the name browsers use, TLS, Odoo version)
SHAPES = {
    "two-names-in-one-block": (TWO_NAMES, ["{address}"], "odoo.example.com", False, "17.0"),
    "www-redirect-block": (WWW_REDIRECT, ["example.com"], "example.com", False, "17.0"),
    "https-with-port-80-redirect": (TLS_REDIRECT, ["odoo.example.com"], "odoo.example.com", True,
                                    "17.0"),
    "extras-kept": (EXTRAS, ["odoo.example.com"], "odoo.example.com", False, "17.0"),
    "second-site-in-the-file": (SECOND_SITE, ["odoo.example.com"], "odoo.example.com", False,
                                "17.0"),
    "odoo-14-sample": (ODOO14_SAMPLE, ["odoo.example.com"], "odoo.example.com", True, "14.0"),
    "odoo-16-sample": (ODOO16_SAMPLE, ["odoo.example.com"], "odoo.example.com", True, "16.0"),
    "odoo-17-sample": (ODOO17_SAMPLE, ["odoo.example.com"], "odoo.example.com", True, "17.0"),
}  # fmt: skip


def site_with_two_names(address):
    """The demo's host: broken_docker_host's site answering for the host's
    ADDRESS and odoo.example.com in one block (the everyday shape a new
    user's pillar, naming the address, meets)."""

    def prepare(box):
        broken_docker_host(box)
        box.write(box.root + SITE, TWO_NAMES.replace("{address}", address))

    return prepare
