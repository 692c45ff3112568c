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
- anywhere (a compose ``command``, ``entrypoint`` or healthcheck ``test``,
  a shell line): the value of a command-line flag naming a secret
  (``--db_password=x``, ``--db_password x``, ``"--db_password", "x"``), of
  a shell variable naming one (``PGPASSWORD=x``), of curl's ``-u user:x``,
  and the password of a URL (``scheme://user:password@host``).
- compose anchors: the values of an anchored mapping or list that an
  ``environment:`` uses (``environment: *env``, ``<<: *env``).
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
# An alias (*name), and a merge key line (<<: *name): names, not values.
_ALIAS = re.compile(r"(?<![\w*])\*([\w.-]+)")
_MERGE = re.compile(r"""^\s*<<\s*:\s*(?:\*[\w.-]+|\[[^\]]*\])\s*$""")
# One item of a flow collection: quoted, or plain up to a comma or bracket.
_FLOW_ITEM = re.compile(r""""(?:\\.|[^"\\])*"|'(?:''|[^'])*'|[^,\[\]{}\s][^,\[\]{}]*""")
# A block entry: "- KEY=value", "- 'KEY=value'", "KEY: value", "'KEY': value".
_BLOCK_ENTRY = re.compile(
    r"""^(\s*(?:-\s+)?(["']?)[^\s=:"'#][^=:"']*?(?:\2\s*:(?:\s+|$)|=))(.*)$"""
)
_HEADERS = r"(?:proxy_set_header|add_header|more_set_headers|more_set_input_headers)"
# A header whose name says it carries a credential (X-Api-Key, Cookie...).
_CREDENTIAL = r"[\w-]*(?:auth|cookie|key|token|secret|passw|session)[\w-]*"
_NGINX_HEADER = re.compile(
    rf"""(?im)^(\s*{_HEADERS}\s+["']?(?:-[st]\s+\S+\s+)*["']?{_CREDENTIAL}"""
    r"""["']?(?:\s*:)?)([^;\n]*)(;?)"""
)
_NGINX_SECRET_ARG = re.compile(
    r"""(?im)^(\s*(?!#)(?![a-z0-9_]*_file\s)[a-z0-9_]+\s+)"""  # not a path: *_file
    r"""([^;\n]*?(?:password|passwd|secret|token|api[-_]?key)[^;\n]*)(;)"""
)
# A name that says it holds a secret, in a flag or a shell variable.
_SECRET_NAME = r"[\w-]*(?:passw|secret|token|api[-_]?key|_pass\b|_pw\b)[\w-]*"
# --db_password=x, --db_password x, "--db_password", "x"; PGPASSWORD=x.
_FLAG = re.compile(
    rf"""(?i)((?:^|[\s"'\[,])(?:--?{_SECRET_NAME}(?:=|["']?\s*,\s*["']?|\s+)|"""
    rf"""(?<![\w-]){_SECRET_NAME}=))([^\s"',\]]+)"""
)
# curl -u user:password, --user user:password.
_USER_PASSWORD = re.compile(r"""((?:\s-[a-zA-Z]*u\s*|\s--user[=\s])["']?[^\s:"']+:)([^\s"']+)""")


def masked(text, secret_keys=()):
    """
    TEXT with every secret value replaced by ``********`` (see the module's
    rules); SECRET_KEYS: odoo.conf keys that are secrets whatever their name.
    """
    text = odoo_websocket_odoo_conf.mask(text, secret_keys)
    text = _environments(text)
    text = _COMPOSE_SECRET.sub(rf"\1{MASK}", text)
    text = _FLAG.sub(rf"\1{MASK}", text)
    text = _USER_PASSWORD.sub(rf"\1{MASK}", text)
    text = _NGINX_HEADER.sub(_header, text)
    text = _NGINX_SECRET_ARG.sub(rf"\1{MASK}\3", text)
    return _URL_PASSWORD.sub(rf"\1{MASK}@", text)


def _header(match):
    """A credential header's value masked, a closing quote kept."""
    value = match.group(2).rstrip()
    if not value:
        return match.group(0)
    quote = value[-1] if value[-1] in "'\"" and len(value) > 1 else ""
    opening = quote if quote and value.lstrip().startswith(quote) else ""
    return f"{match.group(1)} {opening}{MASK}{quote}{match.group(3)}"


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
    """Every value under every environment: key masked, and under every
    anchor an environment uses (``environment: *env``, ``<<: *env``)."""
    aliases = set()
    text = _masked_blocks(text, _ENVIRONMENT, aliases)
    if not aliases:
        return text
    names = "|".join(map(re.escape, sorted(aliases)))
    anchored = re.compile(rf"""^(\s*)(?:-\s+)?[^\s#][^:#]*:\s*&(?:{names})(?![\w.-])\s*""")
    return _masked_blocks(text, anchored, set())


def _masked_blocks(text, start, aliases):
    """Every value of every block whose key line START matches masked; the
    aliases the blocks use are added to ALIASES."""
    out, depth = [], None  # depth: the block key's indent while inside it
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        indent = len(body) - len(body.lstrip())
        # Inside: deeper lines, a list at the key's own indent, closing brackets.
        inside = depth is not None and (
            not body.strip() or indent > depth or body.lstrip().startswith(("- ", "]", "}"))
        )
        if inside:
            aliases.update(_ALIAS.findall(body))
            out.append(line if _MERGE.match(body) else _block(line))
            continue
        depth = None
        found = start.match(body)
        if found:
            rest = body[found.end() :]
            aliases.update(_ALIAS.findall(rest))
            depth = len(found.group(1))
            if rest[:1] in "{[":
                rest = _flow(rest)
            line = found.group(0) + rest + line[len(body) :]
        out.append(line)
    return "".join(out)
