"""
Secrets masked out of the diffs the formula shows (state changes, backup
diffs): odoo.conf, compose files and nginx files all go through
:py:func:`masked`, whatever the file, so no rule depends on knowing its kind.

- odoo.conf: the values of listed keys and of keys naming a password, secret,
  token or key (``odoo_websocket_odoo_conf.mask``).
- compose: every value of every ``environment:`` (block mapping, block list,
  flow ``{...}`` or ``[...]``, whatever the variable's name; a bare name
  passed through from the host stays), and any
  ``KEY: value`` / ``KEY=value`` entry whose key names a secret (an
  environment written under an ``x-`` anchor elsewhere).
- nginx: every argument after the header name of ``proxy_set_header``,
  ``add_header``, ``more_set_headers`` and ``more_set_input_headers`` for
  Authorization, Proxy-Authorization and Cookie headers, and any directive
  argument that names a password, passwd, secret, token or api key.
- anywhere: the password of a URL (``scheme://user:password@host``).
"""

import re

import odoo_websocket_odoo_conf

MASK = "********"
_COMPOSE_SECRET = re.compile(
    r"""(?im)^(\s*-?\s*["']?[\w.]*(?:passw|_pass\b|secret|token|key)[\w.]*["']?\s*[:=]\s*).+$"""
)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")
# "environment:" as a compose key, with what follows it on its line (an
# anchor, a flow collection, an alias or nothing).
_ENVIRONMENT = re.compile(r"""^(\s*)(?:-\s+)?["']?environment["']?\s*:(?:\s+&\S+)?\s*""")
# One item of a flow collection: quoted, or plain up to a comma or bracket.
_FLOW_ITEM = re.compile(r""""(?:\\.|[^"\\])*"|'(?:''|[^'])*'|[^,\[\]{}\s][^,\[\]{}]*""")
# A block entry: "- KEY=value", "- 'KEY=value'", "KEY: value", "'KEY': value".
_BLOCK_ENTRY = re.compile(
    r"""^(\s*(?:-\s+)?(["']?)[^\s=:"'#][^=:"']*?(?:\2\s*:(?:\s+|$)|=))(.*)$"""
)
_HEADERS = r"(?:proxy_set_header|add_header|more_set_headers|more_set_input_headers)"
_NGINX_HEADER = re.compile(
    rf"""(?im)^(\s*{_HEADERS}\s+["']?(?:-[st]\s+\S+\s+)*["']?(?:proxy-|set-)?(?:authorization|cookie)"""
    r"""["']?(?:\s*:)?)([^;\n]*)(;?)"""
)
_NGINX_SECRET_ARG = re.compile(
    r"""(?im)^(\s*(?!#)(?![a-z0-9_]*_file\s)[a-z0-9_]+\s+)"""  # not a path: *_file
    r"""([^;\n]*?(?:password|passwd|secret|token|api_?key)[^;\n]*)(;)"""
)


def masked(text, secret_keys=()):
    """
    TEXT with every secret value replaced by ``********`` (see the module's
    rules); SECRET_KEYS: odoo.conf keys that are secrets whatever their name.
    """
    text = odoo_websocket_odoo_conf.mask(text, secret_keys)
    text = _environments(text)
    text = _COMPOSE_SECRET.sub(rf"\1{MASK}", text)
    text = _NGINX_HEADER.sub(_header, text)
    text = _NGINX_SECRET_ARG.sub(rf"\1{MASK}\3", text)
    return _URL_PASSWORD.sub(rf"\1{MASK}@", text)


def _header(match):
    """A credential header's value masked, a closing quote kept."""
    value = match.group(2).rstrip()
    if not value:
        return match.group(0)
    quote = value[-1] if value[-1] in "'\"" and len(value) > 1 else ""
    return f"{match.group(1)} {MASK}{quote}{match.group(3)}"


def _flow(text):
    """A flow collection's items with their values masked: KEY: value and
    KEY=value keep KEY; anything else is masked whole."""

    def item(match):
        token = match.group(0)
        quote = token[0] if token[0] in "'\"" else ""
        inner = token[1:-1] if quote else token.rstrip()
        seps = [sep for sep in ("=", ":") if sep in inner]
        if not seps:
            return token if quote else MASK
        sep = min(seps, key=inner.index)
        return f"{quote}{inner.split(sep, 1)[0]}{sep}{'' if sep == '=' else ' '}{MASK}{quote}"

    return _FLOW_ITEM.sub(item, text)


def _block(line):
    """An entry line under environment: its value masked, its key kept."""
    body = line.rstrip("\r\n")
    ending = line[len(body) :]
    stripped = body.strip()
    if not stripped or stripped.startswith("#") or re.fullmatch(r"[\]}],?", stripped):
        return line
    if stripped[:1] in "{[" or re.match(r"-\s+[\[{]", stripped):
        return _flow(body) + ending
    entry = _BLOCK_ENTRY.match(body)
    if entry:
        quote = entry.group(2) if "=" in entry.group(1) else ""
        value = entry.group(3)
        kept = quote if value.endswith(quote) and quote else ""
        return f"{entry.group(1)}{MASK if value.strip() else ''}{kept}{ending}"
    if re.fullmatch(r"""-\s+(["']?)[\w.-]+\1""", stripped):
        return line  # a variable passed through from the host: a name only
    indent = body[: len(body) - len(body.lstrip())]
    return f"{indent}{MASK}{ending}"  # a scalar's continuation line


def _environments(text):
    """Every value under every environment: key masked."""
    out, depth = [], None  # depth: the environment key's indent while inside it
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        indent = len(body) - len(body.lstrip())
        # Inside: deeper lines, a list at the key's own indent, closing brackets.
        inside = depth is not None and (
            not body.strip() or indent > depth or body.lstrip().startswith(("- ", "]", "}"))
        )
        if inside:
            out.append(_block(line))
            continue
        depth = None
        found = _ENVIRONMENT.match(body)
        if found:
            rest = body[found.end() :]
            depth = len(found.group(1))
            line = found.group(0) + (_flow(rest) if rest[:1] in "{[" else rest) + line[len(body) :]
        out.append(line)
    return "".join(out)
