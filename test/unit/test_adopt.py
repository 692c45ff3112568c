"""Adoption edits a host's own site in place (odoo_websocket_adopt): for
every shape of site the field has, the result keeps everything but the
websocket proxying (checked with an oracle of its own, rig.nginx_dump),
accepts a second pass unchanged, and sends the bus where Odoo serves it."""

import jinja2
import pytest

import odoo_websocket_adopt as adopt
import odoo_websocket_nginx_text as nginx_text
from mapdata import rendered_settings
from rig import field, nginx_dump
from rig.sandbox import REPO

ADDRESS = "10.231.0.10"


def render(**pillar):
    """The formula's site for pillar.example's settings plus PILLAR."""
    with open(f"{REPO}/odoo_websocket/files/default/site.conf.jinja", encoding="utf-8") as f:
        template = jinja2.Template(f.read(), keep_trailing_newline=True)
    return template.render(settings=rendered_settings("Debian", pillar))


def shape(name):
    text, names, _, _, version = field.SHAPES[name]
    text = text.replace("{address}", ADDRESS)
    names = [n.replace("{address}", ADDRESS) for n in names]
    return text, names, render(odoo={"version": version}, nginx={"server_name": names})


def dump(text):
    return f"# configuration file /etc/nginx/sites-enabled/odoo:\n{text}"


def locations(server):
    block = server["block"]
    return {" ".join(d["args"]): d["block"] for d in block if d["directive"] == "location"}


def values(block, name):
    return [d["args"] for d in block if d["directive"] == name]


@pytest.mark.parametrize("name", sorted(field.SHAPES))
def test_every_shape_keeps_all_but_the_websocket_proxying(name):
    text, names, site = shape(name)
    edited = adopt.edit(text, names, site)
    assert edited["text"] != text and edited["changed"]
    # The oracle: with what the formula owns taken out, nothing differs.
    assert nginx_dump.normalized(dump(edited["text"])) == nginx_dump.normalized(dump(text))
    # A second pass finds nothing to do.
    again = adopt.edit(edited["text"], names, site)
    assert again["text"] == edited["text"] and again["changed"] == []


@pytest.mark.parametrize("name", sorted(field.SHAPES))
def test_every_serving_block_routes_the_bus_to_the_formulas_upstream(name):
    text, names, site = shape(name)
    _, _, _, _, version = field.SHAPES[name]
    route = "/longpolling" if version == "14.0" else "/websocket"
    parsed = nginx_dump.parsed(adopt.edit(text, names, site)["text"])
    upstreams = {d["args"][0] for d in parsed if d["directive"] == "upstream"}
    assert {"odoo_websocket_http", "odoo_websocket_evented"} <= upstreams
    wanted = {n.lower() for n in names}
    served = [
        d for d in parsed if d["directive"] == "server"
        and wanted & {a for s in d["block"] if s["directive"] == "server_name" for a in s["args"]}
        and not nginx_text.redirect_only(d)
    ]  # fmt: skip
    assert served
    for server in served:
        routes = locations(server)
        assert values(routes[route], "proxy_pass") == [["http://odoo_websocket_evented"]]
        assert values(routes[route], "proxy_http_version") == [["1.1"]]
        assert values(routes["/"], "proxy_pass") == [["http://odoo_websocket_http"]]
        headers = {args[0]: args[1] for args in values(routes[route], "proxy_set_header")}
        assert headers["Connection"] == "$odoo_websocket_connection"
        assert headers["Origin"] == "$http_origin" and headers["Host"] == "$host"


def test_threaded_odoo_gets_its_bus_on_the_http_port():
    text, names, _ = shape("extras-kept")
    site = render(odoo={"workers": 0})
    routes = locations(
        next(d for d in nginx_dump.parsed(adopt.edit(text, names, site)["text"])
             if d["directive"] == "server")
    )  # fmt: skip
    assert values(routes["/websocket"], "proxy_pass") == [["http://odoo_websocket_http"]]


def test_only_the_changed_blocks_are_rewritten():
    text, names, site = shape("second-site-in-the-file")
    edited = adopt.edit(text, names, site)["text"]
    blog = text[text.index("server {\n    listen 80;\n    server_name blog") :]
    assert edited.endswith(blog)  # byte for byte
    head = text[: text.index("server {")]
    assert edited.startswith(head)


def test_host_headers_are_carried_into_locations_that_stop_inheriting_them():
    text, names, site = shape("extras-kept")
    server = next(d for d in nginx_dump.parsed(adopt.edit(text, names, site)["text"])
                  if d["directive"] == "server")  # fmt: skip
    assert ["X-Site", "odoo-main"] in values(locations(server)["/"], "proxy_set_header")
    assert values(server["block"], "client_max_body_size") == [["200m"]]
    static = locations(server)["~* /web/static/"]
    assert values(static, "proxy_pass") == [["http://odoo"]]  # the host's, as it was


def test_the_report_names_what_was_kept_and_changed():
    text, names, site = shape("two-names-in-one-block")
    edited = adopt.edit(text, names, site)
    assert "names odoo.example.com" in edited["kept"]
    assert "location /websocket (added)" in edited["changed"]
    text, names, site = shape("odoo-17-sample")
    edited = adopt.edit(text, names, site)
    assert "listen 443 ssl" in edited["kept"]
    assert "1 other server block(s)" in edited["kept"]


def test_blocks_sharing_lines_are_rebuilt_whole_and_still_settle():
    text = "upstream odoo { server 127.0.0.1:8069; } server { listen 80; server_name o.example; location / { proxy_pass http://odoo; } }\n"  # noqa: E501
    site = render(nginx={"server_name": ["o.example"]})
    edited = adopt.edit(text, ["o.example"], site)
    assert nginx_dump.normalized(dump(edited["text"])) == nginx_dump.normalized(dump(text))
    assert adopt.edit(edited["text"], ["o.example"], site)["text"] == edited["text"]


def test_a_site_that_only_redirects_is_refused():
    text = "server {\n    listen 80;\n    server_name o.example;\n    return 301 https://x$request_uri;\n}\n"  # noqa: E501
    with pytest.raises(adopt.AdoptError, match="only redirects"):
        adopt.edit(text, ["o.example"], render(nginx={"server_name": ["o.example"]}))


def test_a_file_nginx_cannot_parse_is_refused_with_why():
    with pytest.raises(adopt.AdoptError, match="grammar"):
        adopt.edit("server { listen 80;\n", ["o.example"], render())


@pytest.mark.parametrize(
    "args, port, ssl, address",
    [(["80"], 80, False, None), (["443", "ssl"], 443, True, None),
     (["10.1.2.3:8080"], 8080, False, "10.1.2.3"), (["[::]:443", "ssl", "http2"], 443, True, None),
     (["10.1.2.3"], 80, False, "10.1.2.3"), (["*:81"], 81, False, None)],
)  # fmt: skip
def test_listen_forms(args, port, ssl, address):
    assert nginx_text.parse_listen(args) == {"port": port, "ssl": ssl, "address": address}


# -- review findings: each a shape where the edit once went wrong ------------

TLS_PAIR = """server {{
    listen 80;
    server_name o.example;
    location /.well-known/acme-challenge/ {{
        proxy_pass http://127.0.0.1:8402;
    }}
    location / {{
        return 301 https://$host$request_uri;
    }}
}}

server {{
    listen 443 ssl;
    server_name o.example;
    ssl_certificate /etc/ssl/o.crt;
    ssl_certificate_key /etc/ssl/o.key;
{body}
}}
"""


def edited(text, includes=None, **nginx):
    """TEXT adopted for o.example (INCLUDES: {include argument: the
    directives its file holds}, as the plan reads them from the live tree),
    checked to settle: a second pass changes nothing."""
    site = render(nginx=dict(nginx, server_name=["o.example"]))

    def included(text):
        return {
            number: includes[line.strip()[len("include ") : -1]]
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip().startswith("include ") and line.strip()[8:-1] in (includes or {})
        }

    result = adopt.edit(text, ["o.example"], site, included(text))
    again = adopt.edit(result["text"], ["o.example"], site, included(result["text"]))
    assert again["text"] == result["text"], "a second pass changed the file"
    return result


def servers_of(text):
    return [d for d in nginx_dump.parsed(text) if d["directive"] == "server"]


def test_a_port_80_block_that_redirects_its_root_is_left_alone():
    body = "    location / {\n        proxy_pass http://127.0.0.1:8069;\n    }"
    text = TLS_PAIR.format(body=body)
    result = edited(text)["text"]
    redirect = text[: text.index("server {\n    listen 443")]
    assert redirect in result  # byte for byte
    assert nginx_text.listens(result, ["o.example"]) == [
        {"port": 443, "ssl": True, "address": None}
    ]


def test_an_added_bus_location_takes_the_sites_access_rules():
    body = ("    location / {\n        allow 192.0.2.0/24;\n        deny all;\n"
            "        auth_basic \"staff\";\n"
            "        proxy_pass http://127.0.0.1:8069;\n    }")  # fmt: skip
    https = servers_of(edited(TLS_PAIR.format(body=body))["text"])[1]
    bus = locations(https)["/websocket"]
    assert values(bus, "allow") == [["192.0.2.0/24"]] and values(bus, "deny") == [["all"]]
    assert values(bus, "auth_basic") == [["staff"]]


@pytest.mark.parametrize(
    "host_location, expected",
    [("location ~* ^/(websocket|longpolling) {\n        proxy_pass http://127.0.0.1:8069;\n    }",
      "^~ /websocket"),
     ("location /websocket/ {\n        proxy_pass http://127.0.0.1:8072;\n    }", "/websocket"),
     ("location = /websocket {\n        proxy_pass http://127.0.0.1:8072;\n    }",
      "= /websocket")],
)  # fmt: skip
def test_the_bus_location_is_the_one_nginx_selects(host_location, expected):
    root = "    location / {\n        proxy_pass http://127.0.0.1:8069;\n    }"
    body = f"    {host_location}\n{root}"
    https = servers_of(edited(TLS_PAIR.format(body=body))["text"])[1]
    assert values(locations(https)[expected], "proxy_pass") == [["http://odoo_websocket_evented"]]
    assert sum(" ".join(d["args"]).endswith("/websocket") for d in https["block"]
               if d["directive"] == "location") == 1  # fmt: skip


def test_a_prefix_root_with_its_modifier_is_the_same_location():
    body = "    location ^~ / {\n        proxy_pass http://127.0.0.1:8069;\n    }"
    https = servers_of(edited(TLS_PAIR.format(body=body))["text"])[1]
    roots = [d for d in https["block"] if d["directive"] == "location" and d["args"][-1] == "/"]
    assert len(roots) == 1 and values(roots[0]["block"], "proxy_pass") == [
        ["http://odoo_websocket_http"]
    ]


def test_a_balancers_forwarding_choices_and_a_long_read_timeout_are_kept():
    body = ("    location / {\n        proxy_set_header X-Forwarded-Proto https;\n"
            "        proxy_redirect http:// https://;\n        proxy_read_timeout 3600s;\n"
            "        proxy_pass http://127.0.0.1:8069;\n    }\n"
            "    location /websocket {\n        proxy_read_timeout 30s;\n"
            "        proxy_pass http://127.0.0.1:8072;\n    }")  # fmt: skip
    https = servers_of(edited(TLS_PAIR.format(body=body))["text"])[1]
    root, bus = locations(https)["/"], locations(https)["/websocket"]
    assert ["X-Forwarded-Proto", "https"] in values(root, "proxy_set_header")
    assert values(root, "proxy_redirect") == [["http://", "https://"]]
    assert values(root, "proxy_read_timeout") == [["3600s"]]
    # Under Odoo's 45 s ping the bus would drop: the formula's timeout wins there.
    assert values(bus, "proxy_read_timeout") == [["720s"]]


def test_an_include_is_never_edited_and_never_doubled():
    proxy_params = nginx_dump.parsed(
        "proxy_set_header Host $http_host;\nproxy_set_header X-Real-IP $remote_addr;\n"
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "proxy_set_header X-Forwarded-Proto $scheme;\n"
    )
    body = ("    location / {\n        include proxy_params;\n"
            "        proxy_pass http://127.0.0.1:8069;\n    }")  # fmt: skip
    https = servers_of(edited(TLS_PAIR.format(body=body), {"proxy_params": proxy_params})["text"])[
        1
    ]
    root = locations(https)["/"]
    assert values(root, "include") == [["proxy_params"]]
    names = [args[0].lower() for args in values(root, "proxy_set_header")]
    assert "host" not in names and "x-real-ip" not in names  # the include sets them
    assert "upgrade" in names and "connection" in names


def test_an_include_setting_what_the_websocket_needs_is_refused_with_the_step():
    hardcoded = nginx_dump.parsed('proxy_set_header Connection "upgrade";\n')
    body = ("    location / {\n        include snippets/odoo.conf;\n"
            "        proxy_pass http://127.0.0.1:8069;\n    }")  # fmt: skip
    with pytest.raises(adopt.AdoptError, match="includes snippets/odoo.conf, which sets"):
        edited(TLS_PAIR.format(body=body), {"snippets/odoo.conf": hardcoded})


def test_a_location_an_include_brings_is_not_added_twice():
    locations_file = nginx_dump.parsed("location / {\n    proxy_pass http://127.0.0.1:8069;\n}\n")
    text = TLS_PAIR.format(body="    include snippets/odoo-locations.conf;")
    with pytest.raises(adopt.AdoptError, match="takes location / from an include"):
        edited(text, {"snippets/odoo-locations.conf": locations_file})


def test_quic_listens_are_not_where_the_check_goes():
    body = ("    listen 443 quic reuseport;\n    location / {\n"
            "        proxy_pass http://127.0.0.1:8069;\n    }")  # fmt: skip
    result = edited(TLS_PAIR.format(body=body))["text"]
    assert nginx_text.listens(result, ["o.example"]) == [
        {"port": 443, "ssl": True, "address": None}
    ]


def test_crlf_files_comments_after_braces_and_several_added_locations():
    text = ("server {\r\n    listen 80;\r\n    server_name o.example;\r\n"
            "    proxy_read_timeout 720s;\r\n} # the Odoo site\r\n")  # fmt: skip
    result = edited(text, static_expires="24h")["text"]
    assert "\n" not in result.replace("\r\n", "")  # every line ends as the file's do
    assert "} # the Odoo site\r\n" in result
    order = [" ".join(d["args"]) for d in servers_of(result)[0]["block"]
             if d["directive"] == "location"]  # fmt: skip
    assert order == ["/websocket", "/", "~ ^/[^/]+/static/"]  # the template's order


def test_http_level_lines_of_the_adopted_file_stay():
    """What the file carries outside its server blocks (real IP, rate-limit
    zones, server_tokens) stays, line for line."""
    head = ("set_real_ip_from 10.0.0.0/8;\nreal_ip_header X-Forwarded-For;\nserver_tokens off;\n"
            "limit_req_zone $binary_remote_addr zone=odoo:10m rate=10r/s;\n\n")  # fmt: skip
    body = "    location / {\n        proxy_pass http://127.0.0.1:8069;\n    }"
    text = head + TLS_PAIR.format(body=body)
    assert edited(text)["text"].startswith(head)
