"""Which server blocks answer which names and ports, read from a real parsed
tree (crossplane on files written here), and the service-manager choice."""

import pytest

import odoo_websocket_nginx
import odoo_websocket_nginx_service

nginx = odoo_websocket_nginx

TREE = """
events {}
stream {
    server { listen 5432; proxy_pass 127.0.0.1:5433; }
}
http {
    upstream odoo { server 127.0.0.1:8069; }
    include sites/*;
    server { server_name main.example.com; }
}
"""
SITES = {
    "a.conf": "server { listen 80; server_name A.example.com b.example.com; }\n",
    "b.conf": "server { listen [::]:8080 default_server; listen 127.0.0.1:8080; "
    "server_name c.example.com; }\n",
    "c.conf": "server { listen 443 ssl; listen unix:/run/x.sock; server_name _; }\n",
    "d.conf": "server { listen 10.0.0.1; server_name *.example.com; }\n",
}


@pytest.fixture
def payload(tmp_path):
    (tmp_path / "sites").mkdir()
    for name, text in SITES.items():
        (tmp_path / "sites" / name).write_text(text)
    (tmp_path / "nginx.conf").write_text(TREE)
    return nginx.tree(str(tmp_path / "nginx.conf"))


def test_server_blocks_follow_includes_and_skip_stream_and_upstream(payload):
    found = [(b["file"].rsplit("/", 1)[-1], b["names"], b["ports"]) for b in
             nginx.server_blocks(payload)]  # fmt: skip
    assert found == [
        ("a.conf", ["a.example.com", "b.example.com"], {80}),
        ("b.conf", ["c.example.com"], {8080}),
        ("c.conf", ["_"], {443}),
        ("d.conf", ["*.example.com"], {80}),
        ("nginx.conf", ["main.example.com"], {80}),  # no listen: port 80
    ]


@pytest.mark.parametrize(
    "names, ports, files",
    [
        (["a.example.com"], [80], ["a.conf"]),
        (["A.EXAMPLE.COM"], [80], ["a.conf"]),  # names are case-insensitive
        (["a.example.com"], [8080], []),  # same name, other port: no conflict
        (["c.example.com"], [8080], ["b.conf"]),
        (["x.example.com"], [80], []),  # wildcards never clash with an exact name
        (["main.example.com"], [80, 443], ["nginx.conf"]),
    ],
)
def test_answering_is_what_nginx_calls_a_conflicting_server_name(payload, names, ports, files):
    found = nginx.answering(payload, names, ports)
    assert [b["file"].rsplit("/", 1)[-1] for b in found] == files


def test_service_manager_only_for_the_packaged_tree_under_systemd(tmp_path):
    managed = odoo_websocket_nginx_service.service_managed
    assert managed("/etc/nginx/nginx.conf", str(tmp_path)) is True
    assert managed("/srv/box/etc/nginx/nginx.conf", str(tmp_path)) is False
    assert managed("/etc/nginx/nginx.conf", str(tmp_path / "none")) is False


def test_include_loops_and_empty_globs(tmp_path):
    """A file that includes itself, and a glob that matches nothing: the
    parsed tree still ends and lists each block once; nginx -t, which dies on
    the loop, is reported as an error with a reason, never as a pass."""
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "a.conf").write_text(
        "include sites/*.conf;\nserver { server_name a.example.com; }\n"
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp { include sites/*.conf; include none/*.conf; }\n")
    payload = nginx.tree(str(conf))
    assert [b["names"] for b in nginx.server_blocks(payload)] == [["a.example.com"]]
    verdict = nginx.configtest(str(conf), "/usr/sbin/nginx")
    assert verdict["ok"] is False
    assert verdict["errors"][0]["message"]


def _tree(tmp_path, *servers):
    (tmp_path / "nginx.conf").write_text("events {}\nhttp {\n" + "\n".join(servers) + "\n}\n")
    return nginx.tree(str(tmp_path / "nginx.conf"))


ODOO = "server { %s server_name odoo.example.com; }"
OTHER = "server { %s server_name intranet.example.com; }"


@pytest.mark.parametrize(
    "odoo, other, own, others",
    [
        ("listen 80; listen [::]:80;", "listen 10.9.9.9:80;", {"*", "[::]"}, {"10.9.9.9"}),
        ("listen 127.0.0.1:80;", "listen [::1]:80 default_server; listen 8080;",
         {"127.0.0.1"}, {"[::1]"}),
        # No listen is *:80, as nginx takes it; 0.0.0.0 is the wildcard too.
        ("", "listen 0.0.0.0:80; listen localhost:80;", {"*"}, {"*", "localhost"}),
    ],
)  # fmt: skip
def test_listeners_are_the_sites_listen_addresses_and_the_others(tmp_path, odoo, other, own,
                                                                 others):  # fmt: skip
    payload = _tree(tmp_path, ODOO % odoo, OTHER % other)
    assert nginx.listeners(payload, "Odoo.Example.com", 80) == (own, others)


def test_a_tree_read_again_is_parsed_again_whenever_a_file_or_folder_changed(tmp_path):
    """A run reads the same tree several times and parses it once; any change
    to a file, a link, or a folder an include reads is seen at once."""
    import os
    import time

    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n    include sites/*.conf;\n    include extra/*.conf;\n"
                    "    include apps/*/site.conf;\n}\n")  # fmt: skip
    (tmp_path / "apps" / "shop").mkdir(parents=True)
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "a.conf").write_text("server { server_name a.example.com; }\n")
    (tmp_path / "shared.conf").write_text("server { server_name s.example.com; }\n")
    os.symlink(tmp_path / "shared.conf", tmp_path / "sites" / "s.conf")

    def names():
        payload = nginx.tree(str(conf))
        return sorted(n for b in nginx.server_blocks(payload) for n in b["names"])

    def remembered():  # files written this close to a parse are never remembered
        time.sleep(nginx._SETTLED_NS / 1e9 + 0.05)
        found = names()
        assert str(conf) in nginx._TREES  # the next read is a copy of this one
        return found

    assert remembered() == ["a.example.com", "s.example.com"]
    nginx.tree(str(conf))["config"].clear()  # a caller's changes stay its own
    assert names() == ["a.example.com", "s.example.com"]
    (tmp_path / "sites" / "a.conf").write_text("server { server_name z.example.com; }\n")
    assert names() == ["s.example.com", "z.example.com"]  # same size, same folder
    remembered()
    (tmp_path / "shared.conf").write_text("server { server_name t.example.com; }\n")
    assert names() == ["t.example.com", "z.example.com"]  # through the link
    remembered()
    (tmp_path / "sites" / "b.conf").write_text("server { server_name b.example.com; }\n")
    assert names() == ["b.example.com", "t.example.com", "z.example.com"]  # a file added
    remembered()
    (tmp_path / "extra").mkdir()  # a folder an include names, absent until now
    (tmp_path / "extra" / "x.conf").write_text("server { server_name x.example.com; }\n")
    assert "x.example.com" in names()
    remembered()
    (tmp_path / "apps" / "shop" / "site.conf").write_text("server { server_name y.example.com; }\n")
    assert "y.example.com" in names()  # a file in a folder the include's glob matches
