"""Property-based tests (hypothesis) of the two file editors, and the hostile
files of issue 9 item 7 as explicit examples.

odoo_conf.set_options and odoo_compose.bind_ports must be idempotent, keep
every line outside the keys they edit byte for byte, and produce a file that
the consumer reads with the wanted values: RawConfigParser reading a file as
Odoo does (universal newlines, no interpolation), and a YAML loader for
compose. The generators stay inside what each editor accepts by design; the
inputs it refuses are checked as examples (a clear error, never a bad edit).
"""

import configparser
import io
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

import odoo_websocket_compose as odoo_compose
import odoo_websocket_compose_ports as compose_ports
import odoo_websocket_odoo_conf as odoo_conf

# Bounded: the whole file runs in a few seconds. No example database: the
# unit run leaves nothing behind in the repository.
BOUNDED = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
RENAMES = {"longpolling_port": "gevent_port"}


def ending(line):
    return "\r\n" if line.endswith("\r\n") else "\n" if line.endswith("\n") else ""


def assert_kept(before, after):
    """The lines of BEFORE and AFTER (each without the edited ones) are equal,
    byte for byte; only a last line without a line break may gain one."""
    assert len(before) == len(after), (before, after)
    for old, new in zip(before, after, strict=True):
        if old != new:
            assert not ending(old) and new.rstrip("\r\n") == old, (old, new)


# odoo.conf ------------------------------------------------------------------

# Text on one line: what splitlines() and Odoo's universal-newline read agree
# on (no C0/C1 controls, no U+2028/2029; see test_odoo_conf_line_breaks_...).
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp"))
    | st.sampled_from(list("%%;#=:[] \t")),
    max_size=20,
)
KEY_POOL = [
    "addons_path", "admin_passwd", "db_host", "db_password", "workers", "proxy_mode",
    "gevent_port", "longpolling_port", "http_interface", "limit_time_real", "dbfilter",
    "list_db", "smtp_password", "websocket_url",
]  # fmt: skip
KEY = st.sampled_from(KEY_POOL) | st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
SEPARATOR = st.sampled_from([" = ", "=", " =", "= ", ": ", ":", "  =  ", "\t=\t", " : "])
# A wanted value: one line, no surrounding blanks (RawConfigParser strips them).
VALUE = TEXT.map(str.strip)


@st.composite
def cased(draw, key):
    return "".join(c.upper() if c.isalpha() and draw(st.booleans()) else c for c in key)


@st.composite
def comment_line(draw):
    prefix = draw(st.sampled_from(["#", ";", "# ", "; ", "  #", "\t;", "#;"]))
    return prefix + draw(TEXT)


@st.composite
def option_block(draw, key):
    """An option line, then continuation lines (comments may sit between)."""
    lines = [draw(cased(key)) + draw(SEPARATOR) + draw(TEXT)]
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            lines.append(draw(comment_line()))
        text = draw(TEXT.filter(lambda t: t.strip() and t.strip()[0] not in "#;"))
        lines.append(draw(st.sampled_from([" ", "    ", "\t", "  \t"])) + text)
    return lines


@st.composite
def section_body(draw, keys):
    """Lines of a section holding KEYS: blanks and comments around them. A
    blank line never precedes a continuation (odoo_conf refuses that)."""
    lines = []
    for key in keys:
        for _ in range(draw(st.integers(0, 2))):
            lines.append(draw(st.sampled_from(["", " ", "\t"]) | comment_line()))
        lines.extend(draw(option_block(key)))
    for _ in range(draw(st.integers(0, 2))):
        lines.append(draw(st.sampled_from(["", "  "]) | comment_line()))
    return lines


@st.composite
def odoo_conf_texts(draw):
    """An odoo.conf Odoo reads: [options] once, other sections around it."""
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    others = draw(st.lists(st.sampled_from(["queue_job", "Options", "misc", "x"]), unique=True))
    sections = others[:]
    sections.insert(draw(st.integers(0, len(others))), "options")
    lines = draw(st.lists(st.sampled_from(["", "  "]) | comment_line(), max_size=3))
    for name in sections:
        lines.append(f"[{name}]" + draw(st.sampled_from(["", " ", "\t"])))
        keys = draw(st.lists(KEY, max_size=6, unique_by=str.lower))
        lines.extend(draw(section_body(keys)))
    text = newline.join(lines)
    return text + newline if draw(st.booleans()) or not text else text


@st.composite
def wanted_options(draw):
    """[[key, value]] as odoo_websocket_settings derives them, and the renames."""
    renames = RENAMES if draw(st.booleans()) else {}
    pool = [k for k in KEY_POOL if k not in renames]
    keys = draw(st.lists(st.sampled_from(pool) | KEY, min_size=1, max_size=5, unique=True))
    keys = [k for k in keys if k not in renames] or ["workers"]
    return [[key, draw(VALUE)] for key in keys], renames


def odoo_reads(text):
    """{section: {key: value}} as Odoo reads the file: RawConfigParser over a
    text-mode file (universal newlines), no interpolation."""
    parser = configparser.RawConfigParser()
    parser.read_file(io.StringIO(text, newline=None))
    return {name: dict(parser.items(name)) for name in parser.sections()}


def edited_lines(text, keys):
    """Indexes of the lines of KEYS in [options]: option lines and continuations."""
    return {
        index
        for index, record in enumerate(odoo_conf.parse(text))
        if record["section"] == "options"
        and record["kind"] in ("option", "continuation")
        and record["key"] in keys
    }


def without(text, indexes):
    return [line for i, line in enumerate(odoo_conf._lines(text)) if i not in indexes]


@BOUNDED
@given(odoo_conf_texts(), wanted_options())
def test_odoo_conf_edit_properties(text, wanted):
    options, renames = wanted
    once = odoo_conf.set_options(text, options, renames)
    # Idempotent.
    assert odoo_conf.set_options(once, options, renames) == once
    # Every line outside the edited keys (and the renamed old ones) stays.
    keys = {key for key, _ in options} | {
        old for old, new in renames.items() if new in dict(options)
    }
    assert_kept(without(text, edited_lines(text, keys)), without(once, edited_lines(once, keys)))
    # Odoo reads the wanted values, and every other value as before.
    before, after = odoo_reads(text), odoo_reads(once)
    expected = {name: dict(values) for name, values in before.items()}
    for old in keys - {key for key, _ in options}:
        expected["options"].pop(old, None)
    expected["options"].update(dict(options))
    assert after == expected
    assert {k: odoo_conf.get_options(once)[k] for k, _ in options} == dict(options)
    # New lines use the file's line break.
    breaks = {ending(line) for line in once.splitlines(keepends=True)[:-1]}
    assert breaks <= {ending(odoo_conf._lines(text)[0]) or "\n"}


@BOUNDED
@given(odoo_conf_texts(), wanted_options())
def test_odoo_conf_with_a_bom_is_refused_as_odoo_refuses_it(text, wanted):
    """Odoo reads odoo.conf as UTF-8 text, so a BOM stays a character before
    the first section: RawConfigParser raises, and so does the editor."""
    with pytest.raises(configparser.MissingSectionHeaderError):
        odoo_reads("\ufeff" + text)
    with pytest.raises(odoo_conf.OdooConfError, match="line 1: text before the first"):
        odoo_conf.set_options("\ufeff" + text, *wanted)


# odoo.conf: the hostile files of issue 9 as examples.


@pytest.mark.parametrize(
    "text, message, odoo_error",
    [
        ("[options]\nworkers = 1\nWorkers = 2\n", "line 3: option 'workers' appears twice",
         configparser.DuplicateOptionError),
        ("[options]\r\nworkers = 1\r\n[options]\r\n", "line 3: section [options] appears twice",
         configparser.DuplicateSectionError),
        ("\ufeff[options]\nworkers = 1\n", "line 1: text before the first [section]",
         configparser.MissingSectionHeaderError),
        ("\ufeff[options]\r\nworkers = 1\r\n", "line 1: text before the first [section]",
         configparser.MissingSectionHeaderError),
    ],
)  # fmt: skip
def test_odoo_conf_files_odoo_cannot_read_are_refused(text, message, odoo_error):
    with pytest.raises(odoo_error):
        odoo_reads(text)
    with pytest.raises(odoo_conf.OdooConfError, match=re.escape(message)):
        odoo_conf.set_options(text, [["workers", "2"]])


@pytest.mark.parametrize(
    "text", ["[queue_job]\nchannels = root:2\n", "; only comments\r\n", "[Options]\nworkers = 1\n"]
)
def test_odoo_conf_without_options_section_is_refused(text):
    with pytest.raises(odoo_conf.OdooConfError, match=r"no \[options\] section"):
        odoo_conf.set_options(text, [["workers", "2"]])


def test_odoo_conf_crlf_edit_keeps_crlf_and_secrets():
    text = (
        "; Odoo\r\n[options]\r\nadmin_passwd = a%b;c\r\naddons_path = /a,\r\n    /b\r\n"
        "longpolling_port = 8072\r\nworkers = 0\r\n\r\n[queue_job]\r\nchannels = root:2"
    )
    out = odoo_conf.set_options(
        text, [["proxy_mode", "True"], ["workers", "2"], ["gevent_port", "8072"]], RENAMES
    )
    assert out == (
        "; Odoo\r\n[options]\r\nadmin_passwd = a%b;c\r\naddons_path = /a,\r\n    /b\r\n"
        "gevent_port = 8072\r\nworkers = 2\r\nproxy_mode = True\r\n\r\n[queue_job]\r\n"
        "channels = root:2"
    )
    assert odoo_reads(out)["options"]["admin_passwd"] == "a%b;c"


def test_odoo_conf_default_section_values_are_overridden_in_options():
    text = "[DEFAULT]\nworkers = 9\n[options]\nx = 1\n"
    out = odoo_conf.set_options(text, [["workers", "2"]])
    assert out == text + "workers = 2\n"
    assert odoo_reads(out)["options"]["workers"] == "2"


@pytest.mark.parametrize(
    "text, options, renames",
    [
        ("[options]\nworkers = 1\n    2\n", [["workers", "2"], ["proxy_mode", "True"]], {}),
        (
            "[options]\ngevent_port = 8072\nlongpolling_port = 9000\n",
            [["gevent_port", "8072"], ["proxy_mode", "True"]],
            RENAMES,
        ),
    ],
)
def test_odoo_conf_appends_after_a_dropped_last_line(text, options, renames):
    out = odoo_conf.set_options(text, options, renames)
    assert odoo_reads(out)["options"] == dict(options)
    assert odoo_conf.set_options(out, options, renames) == out


@pytest.mark.parametrize("separator", ["\x85", "\u2028", "\x0c"])
def test_odoo_conf_line_breaks_odoo_does_not_know_are_no_line_breaks(separator):
    text = f"[options]\ndb_password = a{separator}workers = 1\n"
    try:
        out = odoo_conf.set_options(text, [["workers", "2"]])
    except odoo_conf.OdooConfError:
        return  # refusing the file is fine too
    assert odoo_reads(out)["options"] == {"db_password": f"a{separator}workers = 1", "workers": "2"}


# compose --------------------------------------------------------------------

PORTS = st.sampled_from([[8069, 8072], [[8069, 18069], [8072, 18072]], [8069], [[8072, 9072]]])
BIND = st.sampled_from(["127.0.0.1", "127.0.0.2", "::1"])
SERVICE = st.sampled_from(["odoo", "erp", "web-1"])
OTHER_SERVICES = ["db", "redis", "worker", "odoo-cron", "nginx"]
COMMENT = st.sampled_from(["", "  # web", " # bus: keep", "   #"])


def quoted(text, style):
    if style == "plain" and not text.startswith("["):
        return text
    return f"'{text}'" if style == "single" else f'"{text}"'


@st.composite
def short_entry(draw):
    """A short-syntax port, e.g. "0.0.0.0:8069:8069/tcp", in any quoting."""
    target = draw(st.sampled_from(["8069", "8072", "8071", "5432", "8069-8072", "8000-8010"]))
    published = draw(st.sampled_from([None, "same", "18069", "${ODOO_PORT:-8069}"]))
    host = draw(st.sampled_from([None, "0.0.0.0", "127.0.0.1", "[::]", "${BIND:-0.0.0.0}"]))
    if published is None and target in ("8069", "8072") and draw(st.booleans()):
        return target, draw(COMMENT)  # a plain integer
    text = target
    if published is not None or host is not None:
        published = target if published in (None, "same") or "-" in target else published
        text = f"{published}:{target}" if host is None else f"{host}:{published}:{target}"
    if draw(st.booleans()):
        text += "/tcp"
    style = draw(st.sampled_from(["plain", "single", "double"]))
    return quoted(text, style), draw(COMMENT)


@st.composite
def long_entry(draw, indent):
    """A long-syntax port: target, published, host_ip, protocol in any order."""
    fields = {"target": draw(st.sampled_from(["8069", "8072", "8071", '"8069"', "'8072'"]))}
    published = draw(st.sampled_from([None, "8069", '"8072"', "'18069'", "${WEB:-8069}"]))
    host = draw(st.sampled_from([None, "0.0.0.0", '"0.0.0.0"', "'::'", '"127.0.0.1"']))
    for key, value in (("published", published), ("host_ip", host)):
        if value is not None:
            fields[key] = value
    if draw(st.booleans()):
        fields["protocol"] = "tcp"
    order = draw(st.permutations(list(fields)))
    lines = [f"{indent}- {order[0]}: {fields[order[0]]}{draw(COMMENT)}"]
    lines += [f"{indent}  {key}: {fields[key]}" for key in order[1:]]
    return lines


@st.composite
def flow_entry(draw):
    """A port inside a flow list: quoted where a plain scalar cannot be, or a
    flow mapping."""
    if draw(st.booleans()):
        text, _ = draw(short_entry())
        return f'"{text}"' if "{" in text and text[0] not in "'\"" else text
    fields = {"target": draw(st.sampled_from(["8069", "8072", "8071", '"8069"']))}
    published = draw(st.sampled_from([None, "8069", "'18069'", '"${WEB:-8069}"']))
    host = draw(st.sampled_from([None, "0.0.0.0", '"0.0.0.0"', "'::'"]))
    for key, value in (("published", published), ("host_ip", host)):
        if value is not None:
            fields[key] = value
    order = draw(st.permutations(list(fields)))
    return "{" + ", ".join(f"{key}: {fields[key]}" for key in order) + "}"


@st.composite
def ports_block(draw, indent):
    """The 'ports:' key and its entries: block style (indented or not), or a
    flow list on one line."""
    if draw(st.integers(0, 3)) == 0:
        entries = draw(st.lists(flow_entry(), min_size=1, max_size=3))
        return [f"{indent}ports: [{', '.join(entries)}]{draw(COMMENT)}"]
    entry_indent = indent + draw(st.sampled_from(["", "  ", "    "]))
    lines = [f"{indent}ports:{draw(COMMENT)}"]
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            lines += draw(long_entry(entry_indent))
        else:
            text, comment = draw(short_entry())
            lines.append(f"{entry_indent}- {text}{comment}")
        if draw(st.integers(0, 4)) == 0:
            lines.append(f"{entry_indent}# a comment between entries")
    return lines


@st.composite
def service_block(draw, name, step, anchor, is_odoo):
    indent = step * 2
    lines = [f"{step}{name}:"]
    if anchor and draw(st.booleans()):
        lines.append(f"{indent}<<: *common")
    lines.append(f"{indent}image: {draw(st.sampled_from(['odoo:17', 'postgres:16', 'redis']))}")
    if draw(st.booleans()):
        lines.append(f"{indent}environment:")
        if draw(st.booleans()):
            lines += [f"{indent}{step}- PGPASSWORD=${{PG_PASS}}", f"{indent}{step}- TZ=UTC"]
        else:
            lines += [f"{indent}{step}POSTGRES_PASSWORD: ${{PG_PASS:?set it}}"]
    if draw(st.booleans()) or not is_odoo and draw(st.booleans()):
        lines += draw(ports_block(indent))
    if draw(st.booleans()):
        lines += [f"{indent}volumes:", f"{indent}{step}- ./config:/etc/odoo  # config"]
    return lines


@st.composite
def compose_texts(draw, service):
    """A compose file holding SERVICE among others, with comments, an anchor
    and merge keys, ${VAR}s and the port syntaxes Docker documents."""
    step = draw(st.sampled_from(["  ", "    "]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = draw(
        st.lists(st.sampled_from(["# compose file", "", "version: '3.8'"]), max_size=3, unique=True)
    )
    anchor = draw(st.booleans())
    if anchor:
        lines += ["x-common: &common", f"{step}restart: unless-stopped", f"{step}env_file: .env"]
        if draw(st.booleans()):  # ports that every service merging it gets
            lines += draw(ports_block(step))
    lines.append("services:")
    names = draw(st.lists(st.sampled_from(OTHER_SERVICES), max_size=3, unique=True))
    names.insert(draw(st.integers(0, len(names))), service)
    for name in names:
        lines += draw(service_block(name, step, anchor, name == service))
    if draw(st.booleans()):
        lines += ["volumes:", f"{step}data: {{}}", "# trailing comment"]
    text = newline.join(lines)
    return text + newline if draw(st.booleans()) else text


def port_lines(text, service):
    """Indexes of the lines of SERVICE's port entries and of its 'ports:' key
    (none when they are merged in from an anchor)."""
    definition = YAML().load(text)["services"][service]
    if "ports" not in dict(definition.non_merged_items()):
        return set()
    entries = definition.get("ports") or []
    lines = {definition.lc.key("ports")[0]} if "ports" in definition else set()
    for index, entry in enumerate(entries):
        if isinstance(entry, dict):
            lines |= {entry.lc.key(key)[0] for key in entry}
        else:
            lines.add(entries.lc.item(index)[0])
    return lines


def wanted_map(ports):
    return {p: p for p in ports if isinstance(p, int)} | {
        t: h for t, h in (p for p in ports if not isinstance(p, int))
    }


def covers(target, wanted):
    low, _, high = str(target).partition("-")
    return low.isdigit() and any(int(low) <= p <= int(high or low) for p in wanted)


def check_bound(out, service, wanted, bind):
    """SERVICE publishes every wanted port on BIND only, and at the wanted
    host port (single ports without a ${VAR}); its other entries as before."""
    covered, entries = set(), odoo_compose.published_ports(out, service)
    ipv4 = {(e["target"], e["protocol"] or "tcp") for e in entries
            if ":" not in (e["host_ip"] or "")}  # fmt: skip
    for entry in entries:
        target = entry["target"]
        if not covers(target, wanted):
            continue
        if entry["host_ip"] == "::1" and bind.startswith("127."):
            # The IPv6 twin of a dual-stack pair, on IPv6's loopback.
            assert (target, entry["protocol"] or "tcp") in ipv4, entry
        else:
            assert entry["host_ip"] == bind, entry
        if target.isdigit() and "$" not in (entry["published"] or ""):
            assert entry["published"] == str(wanted[int(target)]), entry
        low, _, high = target.partition("-")
        if (entry["protocol"] or "tcp") == "tcp":  # udp publishes no TCP port
            covered |= {p for p in wanted if int(low) <= p <= int(high or low)}
    assert covered == set(wanted)


def unrelated(document, service, wanted):
    """The document without SERVICE's entries for WANTED ports."""
    ports = document["services"][service].get("ports") or []
    document["services"][service]["ports"] = [
        p for p in ports if not covers(p["target"] if isinstance(p, dict) else
                                       compose_ports.parse_short_port(p)["target"], wanted)
    ]  # fmt: skip
    return document


@st.composite
def compose_cases(draw):
    service = draw(SERVICE)
    return draw(compose_texts(service)), service, draw(PORTS), draw(BIND)


@BOUNDED
@given(compose_cases())
def test_compose_edit_properties(case):
    text, service, ports, bind = case
    wanted = wanted_map(ports)
    try:
        once = odoo_compose.bind_ports(text, service, ports, bind)
    except odoo_compose.ComposeError as exc:
        # The one refusal a generated file may earn: an IPv4 and an IPv6
        # entry for one port that the bind address would make one entry.
        assert "dual stack" in str(exc), exc
        families = {(e["target"], ":" in str(e["host_ip"] or ""))
                    for e in odoo_compose.published_ports(text, service)}  # fmt: skip
        assert any((target, True) in families and (target, False) in families
                   for target, _ in families), text  # fmt: skip
        return
    # Idempotent.
    assert odoo_compose.bind_ports(once, service, ports, bind) == once
    # Every line but the service's port entries (and an added 'ports:') stays.
    before = without(text, port_lines(text, service))
    assert_kept(before, without(once, port_lines(once, service)))
    # A YAML reader sees the ports bound, and everything else as before.
    check_bound(once, service, wanted, bind)
    old, new = yaml.safe_load(text), yaml.safe_load(once)
    assert unrelated(new, service, wanted) == unrelated(old, service, wanted)


# compose: the hostile files of issue 9 as examples.

ANCHORED = """\
# Odoo stack
x-common: &common
  restart: unless-stopped
  environment: &env
    TZ: ${TZ:-UTC}
services:
  db:
    <<: *common
    image: postgres:16
    environment:
      <<: *env
      POSTGRES_PASSWORD: ${PG_PASS:?set it}
    ports:
      - "8069:8069"   # not Odoo's service: untouched
  odoo:
    <<: *common
    image: odoo:17
    ports:
      - ${ODOO_PORT:-8069}:8069
      - target: 8072
        published: "8072"
        host_ip: 0.0.0.0
        protocol: tcp
      - '8071:8071'
  sidecar:
    image: busybox
    profiles: [debug]
"""


def test_compose_anchors_merge_keys_vars_and_long_syntax():
    out = odoo_compose.bind_ports(ANCHORED, "odoo", [8069, 8072])
    assert out == ANCHORED.replace(
        "- ${ODOO_PORT:-8069}:8069", '- "127.0.0.1:${ODOO_PORT:-8069}:8069"'
    ).replace("host_ip: 0.0.0.0", 'host_ip: "127.0.0.1"')
    document = yaml.safe_load(out)
    assert document["services"]["db"]["ports"] == ["8069:8069"]
    assert document["services"]["odoo"]["restart"] == "unless-stopped"
    assert odoo_compose.bind_ports(out, "odoo", [8069, 8072]) == out


@pytest.mark.parametrize(
    "text, message",
    [
        ("services:\n  web:\n    image: odoo\n  db:\n    image: pg\n",
         "no service 'odoo' (services: web, db)"),
        ("services: {}\n", "no service 'odoo' (services: none)"),
        ("x-odoo:\n  image: odoo\n", "no 'services' mapping"),
        ("services:\n  odoo:\n    ports: []\n", "'ports' is empty"),
        ("services:\n  odoo:\n    ports:\n      - target: 8069\n        published: ''\n",
         "empty published for port 8069"),
        ("services:\n  odoo:\n    ports:\n      - [8069, 8069]\n", "not understood"),
        ("services:\n  odoo:\n    image: a\n  odoo:\n    image: b\n", "duplicate key"),
        ("services:\n  odoo:\n    ports:\n      - \"8069:8069\"\t# tab\n", "not valid YAML"),
    ],
)  # fmt: skip
def test_compose_files_it_cannot_edit_are_refused(text, message):
    with pytest.raises(odoo_compose.ComposeError, match=re.escape(message)):
        odoo_compose.bind_ports(text, "odoo", [8069])


def test_compose_other_unknown_services_and_keys_are_kept():
    text = (
        "name: shop\nservices:\n  odoo:\n    image: odoo:17\n    deploy: {replicas: 1}\n"
        "  x-custom-thing:\n    ports: ['8069:8069']\nnetworks:\n  default: {}\n"
    )
    out = odoo_compose.bind_ports(text, "odoo", [8069])
    assert out == text.replace(
        "    image: odoo:17\n", '    ports:\n      - "127.0.0.1:8069:8069"\n    image: odoo:17\n'
    )


def test_compose_service_made_only_of_a_merge_key():
    """A merge key has no position of its own: 'ports:' goes below it."""
    text = "x-odoo: &odoo\n  image: odoo:17\nservices:\n  odoo:\n    <<: *odoo\n"
    out = odoo_compose.bind_ports(text, "odoo", [8069])
    assert out == text + '    ports:\n      - "127.0.0.1:8069:8069"\n'
    assert yaml.safe_load(out)["services"]["odoo"]["image"] == "odoo:17"
    assert odoo_compose.bind_ports(out, "odoo", [8069]) == out


@pytest.mark.parametrize(
    "ports, expected",
    [
        ('["8069:8069", "8072:8072"]', '["127.0.0.1:8069:8069", "127.0.0.1:8072:8072"]'),
        ("[8069:8069, '8071:8071', 8072]  # web",
         "[\"127.0.0.1:8069:8069\", '8071:8071', \"127.0.0.1:8072:8072\"]  # web"),
        ('["0.0.0.0:8069:8069"]', '["127.0.0.1:8072:8072", "127.0.0.1:8069:8069"]'),
        ("\n      - {target: 8069, published: 8069, host_ip: 0.0.0.0}\n      - {target: 8072}",
         '\n      - {target: 8069, published: 8069, host_ip: "127.0.0.1"}'
         '\n      - {target: 8072, host_ip: "127.0.0.1", published: "8072"}'),
    ],
)  # fmt: skip
def test_compose_flow_style_ports(ports, expected):
    """Several edits on one line, plain scalars that end at ',' or ']', and
    entries added inside the brackets or braces."""
    text = f"services:\n  odoo:\n    image: odoo:17\n    ports: {ports}\n  db:\n    image: pg\n"
    out = odoo_compose.bind_ports(text, "odoo", [8069, 8072])
    assert out == text.replace(ports, expected)
    check_bound(out, "odoo", {8069: 8069, 8072: 8072}, "127.0.0.1")
    assert odoo_compose.bind_ports(out, "odoo", [8069, 8072]) == out


def test_compose_anchored_port_entry():
    """The anchor stays on the edited entry; when another service aliases it,
    rebinding it would rebind that service: refused, naming it."""
    own = 'services:\n  odoo:\n    ports:\n      - &web "8069:8069"  # web\n'
    out = odoo_compose.bind_ports(own, "odoo", [8069])
    assert out == own.replace('"8069:8069"', '"127.0.0.1:8069:8069"')
    shared = own + "  proxy:\n    image: nginx\n    ports:\n      - *web\n"
    with pytest.raises(odoo_compose.ComposeError, match="service 'proxy' holds the same port"):
        odoo_compose.bind_ports(shared, "odoo", [8069])


SHARED_PORTS = """\
x-ports: &ports
  ports:
    - "8069:8069"  # web
    - "8071:8071"
services:
  odoo:
    <<: *ports
    image: odoo:17
  legacy:
    <<: *ports
"""


def test_compose_ports_shared_through_an_anchor():
    """Ports merged from an anchor become the service's own list: the anchor
    and the other service merging it stay byte for byte."""
    out = odoo_compose.bind_ports(SHARED_PORTS, "odoo", [8069])
    assert out == SHARED_PORTS.replace(
        "    image: odoo:17\n",
        '    ports:\n      - "127.0.0.1:8069:8069"\n      - "8071:8071"\n    image: odoo:17\n',
    )
    document = yaml.safe_load(out)
    assert document["services"]["legacy"]["ports"] == ["8069:8069", "8071:8071"]
    assert document["services"]["odoo"]["ports"] == ["127.0.0.1:8069:8069", "8071:8071"]
    assert odoo_compose.bind_ports(out, "odoo", [8069]) == out


def test_compose_crlf_file_stays_crlf():
    text = "services:\r\n  odoo:\r\n    image: odoo:17\r\n"
    out = odoo_compose.bind_ports(text, "odoo", [8069])
    assert all(line.endswith("\r\n") for line in out.splitlines(keepends=True)), repr(out)
