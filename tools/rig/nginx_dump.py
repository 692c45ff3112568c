"""What nginx loads, as `nginx -T` prints it, parsed file by file, and the
same with what the formula owns taken out: two hosts' dumps that differ only
in the formula's own directives normalize to the same thing. The tests'
oracle for adoption ("change only what the websocket needs"), written apart
from the formula's own code on purpose."""

import os
import re
import tempfile

import crossplane

# In a location the formula owns: its proxying.
OWNED = {"proxy_pass", "proxy_http_version", "proxy_redirect", "proxy_connect_timeout",
         "proxy_read_timeout", "proxy_send_timeout", "return"}  # fmt: skip
OWNED_HEADERS = {"upgrade", "connection", "host", "origin", "x-forwarded-host",
                 "x-forwarded-for", "x-forwarded-proto", "x-real-ip"}  # fmt: skip
OWNED_LOCATIONS = (["/websocket"], ["/longpolling"], ["/"])
# nginx.conf's capacity for nginx:max_sessions.
OWNED_MAIN = {"worker_rlimit_nofile", "worker_connections"}
_FILE = re.compile(r"^# configuration file (/\S+):$", re.MULTILINE)


def files(dump):
    """{path: text} of every file in DUMP (the standard output of nginx -T)."""
    parts = _FILE.split(dump)
    return {parts[i]: parts[i + 1].lstrip("\n") for i in range(1, len(parts) - 1, 2)}


def parsed(text):
    """One file's directives (includes not followed, comments dropped)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "file.conf")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        payload = crossplane.parse(path, single=True, check_ctx=False, check_args=False)
    assert payload["status"] == "ok", payload["errors"]
    return _plain(payload["config"][0]["parsed"])


def _plain(directives):
    out = []
    for d in directives:
        item = {"directive": d["directive"], "args": d["args"]}
        if d.get("block") is not None:
            item["block"] = _plain(d["block"])
        out.append(item)
    return out


def _owned(directive):
    name, args = directive["directive"], directive["args"]
    if name == "proxy_set_header":
        return args[0].lower() in OWNED_HEADERS
    return name in OWNED


def _location(location, server):
    """A location without what the formula owns, nor the copies of its
    server's header lines (a location with any of them inherits none)."""
    inherited = [d for d in server if d["directive"] in ("proxy_set_header", "add_header")]
    block = [d for d in location["block"] if not _owned(d) and d not in inherited]
    return dict(location, block=block)


def _walk(directives):
    out = []
    for d in directives:
        if d["directive"] in OWNED_MAIN:
            continue
        if d["directive"] == "upstream" and d["args"][0].startswith("odoo_websocket_"):
            continue
        if d["directive"] == "server" and "block" in d:
            block = []
            for item in d["block"]:
                if item["directive"] == "location":
                    item = _location(item, d["block"])
                    if not item["block"] and item["args"] in OWNED_LOCATIONS:
                        continue  # a location the formula added
                block.append(item)
            out.append(dict(d, block=block))
        elif "block" in d:
            out.append(dict(d, block=_walk(d["block"])))
        else:
            out.append(d)
    return out


def normalized(dump):
    """{path: directives} of DUMP with the formula's own taken out: its map
    drop-in and upstreams, the proxying of the locations it owns, nginx.conf's
    capacity lines."""
    return {
        path: _walk(parsed(text))
        for path, text in files(dump).items()
        if not os.path.basename(path).startswith("odoo_websocket")
    }
