"""
Edit Odoo's odoo.conf in place, keeping everything the formula does not manage.

Odoo reads the file with ``configparser.RawConfigParser`` (no interpolation),
so ``%`` in a password is literal. Rewriting the file with configparser would
drop comments and reorder keys; this module edits lines instead and rejects
what RawConfigParser itself would reject, so a file Odoo cannot read is never
"fixed" silently.
"""

import re

from salt.exceptions import CommandExecutionError

MASK = "********"

_SECTION = re.compile(r"^\[(?P<name>[^\]]+)\]\s*$")
# Keys whose values are secrets whatever the pillar lists: admin_passwd,
# db_password, smtp_password, and the passwords, tokens and keys of modules.
SECRET_KEY = re.compile(r"passw|secret|token|key|(?:^|_)pw$", re.IGNORECASE)
_OPTION = re.compile(r"^(?P<key>[^=:\s][^=:]*?)(?P<sep>\s*[=:]\s*)(?P<value>.*?)\s*$")


class OdooConfError(CommandExecutionError):
    """odoo.conf is not something Odoo could read."""


def _ending(line):
    if line.endswith("\r\n"):
        return "\r\n"
    if line.endswith("\n"):
        return "\n"
    return "\r" if line.endswith("\r") else ""


def _section_name(match, number, seen_sections):
    """The name of a [section] line; RawConfigParser rejects a section seen before."""
    section = match.group("name")
    if section in seen_sections:
        raise OdooConfError(f"line {number}: section [{section}] appears twice")
    seen_sections.add(section)
    return section


def _option_record(body, index, section, seen_options):
    """The record of a 'key = value' line, rejected where RawConfigParser would."""
    number = index + 1
    if section is None:
        raise OdooConfError(f"line {number}: text before the first [section]")
    match = _OPTION.match(body)
    if not match:
        raise OdooConfError(f"line {number}: neither 'key = value', a [section] nor a comment")
    key = match.group("key").strip().lower()
    if (section, key) in seen_options:
        raise OdooConfError(f"line {number}: option '{key}' appears twice in [{section}]")
    seen_options.add((section, key))
    return {
        "kind": "option",
        "section": section,
        "key": key,
        "value": match.group("value"),
        "index": index,
    }


def parse(text):
    """
    Split odoo.conf TEXT into line records and check it the way Odoo's
    RawConfigParser would. Each record is a dict with ``kind`` (blank, comment,
    section, option, continuation), ``section``, and for options ``key``
    (lower-cased, as configparser does), ``value`` and ``index``.

    Raises an error naming the line for: text before the first section, a line
    that is neither an option nor a comment, a duplicate section or option, or
    no ``[options]`` section.
    """
    records = []
    section = None
    seen_sections = set()
    seen_options = set()
    last_option = None
    for index, line in enumerate(_lines(text)):
        body = line.rstrip("\r\n")
        stripped = body.strip()
        number = index + 1
        if not stripped:
            records.append({"kind": "blank", "section": section})
            last_option = None
            continue
        if stripped[0] in "#;":
            records.append({"kind": "comment", "section": section})
            continue
        if body[0].isspace():
            if last_option is None:
                raise OdooConfError(f"line {number}: indented line outside an option")
            records.append({"kind": "continuation", "section": section, "key": last_option})
            continue
        match = _SECTION.match(body)
        if match:
            section = _section_name(match, number, seen_sections)
            records.append({"kind": "section", "section": section})
            last_option = None
            continue
        records.append(_option_record(body, index, section, seen_options))
        last_option = records[-1]["key"]
    if "options" not in seen_sections:
        raise OdooConfError("no [options] section: Odoo reads its settings from there")
    return records


def get_options(text):
    """
    Return the ``[options]`` of odoo.conf TEXT as a dict (values as written).
    """
    return {
        record["key"]: record["value"]
        for record in parse(text)
        if record["kind"] == "option" and record["section"] == "options"
    }


def _continuation_indexes(records, key):
    """Line indexes of KEY's continuation lines in [options]: they go with its value."""
    return [
        i
        for i, r in enumerate(records)
        if r["kind"] == "continuation" and r["section"] == "options" and r["key"] == key
    ]


def _option_line(line, old_key, key, value, newline):
    """LINE with VALUE, keeping its spacing and key spelling unless KEY renames OLD_KEY."""
    match = _OPTION.match(line.rstrip("\r\n"))
    return (
        f"{key if old_key != key else match.group('key')}"
        f"{match.group('sep')}{value}{_ending(line) or newline}"
    )


def _last_options_line(records):
    """Index of the last option (or continuation) line of [options]: new keys go after it."""
    return max(
        (
            i
            for i, r in enumerate(records)
            if r["section"] == "options" and r["kind"] in ("option", "continuation", "section")
        ),
    )


def _lines(text):
    """TEXT's lines, with their endings, split where Odoo's reader splits
    them (\\n, \\r\\n, \\r), not at the other breaks str.splitlines knows."""
    return re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", text)


def _rebuild(lines, drop, replace, last, append, newline):
    """Join LINES without DROP, with REPLACE applied and APPEND after line LAST."""
    out = []
    for index, line in enumerate(lines):
        if index not in drop:
            out.append(replace.get(index, line))
        if index == last and append:  # even when LAST itself was dropped
            if out and not _ending(out[-1]):
                out[-1] += newline
            out.extend(append)
    return "".join(out)


def set_options(text, options, renames=None):
    """
    Return TEXT with each ``[key, value]`` of OPTIONS set in ``[options]``.

    An existing key keeps its line and spacing, only its value changes (its
    continuation lines go); a missing key is added after the section's last
    option. RENAMES maps an old key to a new one (``longpolling_port`` to
    ``gevent_port`` for Odoo 16+): when the new key is set and only the old one
    is present, that line is renamed in place; when both are present, the old
    line goes. Every other line stays byte for byte.
    """
    renames = renames or {}
    records = parse(text)
    lines = _lines(text)
    newline = _ending(lines[0]) if lines and _ending(lines[0]) else "\n"
    present = {r["key"]: r for r in records if r["kind"] == "option" and r["section"] == "options"}
    drop = set()  # line indexes to delete
    replace = {}  # line index -> new line
    append = []

    wanted = {key.lower(): str(value) for key, value in options}
    for key, value in wanted.items():
        old_keys = [old for old, new in renames.items() if new == key and old in present]
        if key in present:
            record = present[key]
            for old in old_keys:
                drop.add(present[old]["index"])
                drop.update(_continuation_indexes(records, old))
        elif old_keys:
            record = present[old_keys[0]]
        else:
            append.append(f"{key} = {value}{newline}")
            continue
        unchanged = record["key"] == key and record["value"] == value
        if unchanged and not _continuation_indexes(records, record["key"]):
            continue
        line = lines[record["index"]]
        replace[record["index"]] = _option_line(line, record["key"], key, value, newline)
        drop.update(_continuation_indexes(records, record["key"]))

    return _rebuild(lines, drop, replace, _last_options_line(records), append, newline)


def is_secret(key, secret_keys=()):
    """
    Whether odoo.conf option KEY holds a secret: listed in SECRET_KEYS, or
    naming a password, secret, token or key (or ending in _pw: ldap_bind_pw).
    """
    return key.lower() in {k.lower() for k in secret_keys} or bool(SECRET_KEY.search(key))


def mask(text, secret_keys):
    """
    Return odoo.conf TEXT with the values of SECRET_KEYS, and of every key
    naming a password, secret, token or key, replaced by ``********``
    (continuation lines of a secret too), for diffs and logs.
    Text that does not parse is masked line by line as best it can.
    """
    out = []

    def secret(key):
        return is_secret(key, secret_keys)

    current = None  # the option a continuation line belongs to
    for line in _lines(text):
        body = line.rstrip("\r\n")
        stripped = body.strip()
        if body[:1].isspace() and stripped:
            if current and secret(current):
                line = f"    {MASK}{_ending(line)}"
            out.append(line)
            continue
        current = None
        # A commented-out sample line can hold a real password too.
        prefix = re.match(r"^[#;\s]*", body).group(0)
        match = _OPTION.match(body[len(prefix) :])
        if match and not stripped.startswith("["):
            key = match.group("key").strip().lower()
            if not prefix:
                current = key
            if secret(key):
                line = f"{prefix}{match.group('key')}{match.group('sep')}{MASK}{_ending(line)}"
        out.append(line)
    return "".join(out)
