"""
An nginx site file as text and as crossplane's parse: each directive with
the lines it spans, blocks rebuilt in the file's own indentation and edits
applied at their lines (line endings and trailing comments kept), and what
a server block says (its names, its listens, whether it only redirects).
Pure: reads and writes no live file. odoo_websocket_adopt edits with it.
"""

import io
import ipaddress
import os
import tempfile

try:
    import crossplane
    import crossplane.errors
    from crossplane.lexer import _lex_file_object
except ImportError:  # odoo_websocket_minion.missing_message says so
    pass


REDIRECT_CODES = {"301", "302", "303", "307", "308"}


def has_site(text):
    """
    Whether TEXT is a site nginx can read with at least one server block:
    something of the host's to keep (an empty or unreadable file is not).
    """
    try:
        return any(d["directive"] == "server" for d in all_directives(parse(text)))
    except AdoptError:
        return False


class AdoptError(ValueError):
    """The site cannot be adopted as it is; the message says why and what to do."""


def parse(text):
    """The file TEXT parsed alone (includes not followed), comments kept."""
    with tempfile.TemporaryDirectory(prefix="odoo_websocket-adopt.") as folder:
        path = os.path.join(folder, "site.conf")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            payload = crossplane.parse(
                path, single=True, comments=True, check_ctx=False, check_args=False,
                catch_errors=False,
            )  # fmt: skip
        except crossplane.errors.NgxParserBaseException as exc:
            raise AdoptError(f"nginx's grammar does not accept it: {exc.strerror}") from None
    if payload["status"] != "ok":
        why = payload["errors"][0]
        message = why["error"].split(" in /")[0]
        raise AdoptError(f"nginx's grammar does not accept it: {message} (line {why['line']})")
    parsed = payload["config"][0]["parsed"]
    for directive in all_directives(parsed):  # a CRLF file's comments end in "\r"
        if directive["directive"] == "#":
            directive["comment"] = directive["comment"].rstrip("\r")
    return parsed


def all_directives(directives):
    for directive in directives:
        yield directive
        yield from all_directives(directive.get("block") or [])


def spans(text):
    """Every block's lines, in the order of its opening brace: ``[{start,
    end, whole, tail}]``; WHOLE: nothing else shares its first or last line
    (but a comment after its closing brace, TAIL), so the block can be
    replaced line for line."""
    tokens = [t for t in _lex_file_object(io.StringIO(text + "\n"))]
    by_line = {}
    for index, (token, line, quoted) in enumerate(tokens):
        if not (token.startswith("#") and not quoted):
            by_line.setdefault(line, []).append(index)
    spans, stack, statement = [], [], None
    for index, (token, line, quoted) in enumerate(tokens):
        if token.startswith("#") and not quoted:
            continue
        if statement is None:
            statement = index
        if quoted:
            continue
        if token == "{":
            spans.append({"first": statement, "start": tokens[statement][1]})
            stack.append(len(spans) - 1)
            statement = None
        elif token == "}":
            span = spans[stack.pop()]
            span["end"] = line
            span["whole"] = (
                min(by_line[span["start"]]) == span["first"] and max(by_line[line]) == index
            )
            span["tail"] = " ".join(
                t[0].rstrip("\r") for t in tokens[index + 1 :]
                if t[1] == line and t[0].startswith("#") and not t[2]
            )  # fmt: skip
            statement = None
        elif token == ";":
            statement = None
    return spans


def blocks(directives):
    """Every block directive in document order (the order of its brace)."""
    for directive in directives:
        if directive.get("block") is not None:
            yield directive
            yield from blocks(directive["block"])


def server_names(server):
    block = server["block"]
    return {a.lower() for d in block if d["directive"] == "server_name" for a in d["args"]}


def sends_elsewhere(block):
    """Whether BLOCK itself (not an if inside it) answers with a redirect."""
    for d in block:
        args = d["args"]
        if d["directive"] == "return" and args:
            if args[0] in REDIRECT_CODES or args[0].startswith(("http://", "https://", "$")):
                return True
        if d["directive"] == "rewrite" and len(args) >= 2:
            flag = args[2] if len(args) > 2 else ""
            if flag in ("permanent", "redirect") or args[1].startswith(("http://", "https://")):
                return True
    return False


def redirect_only(server):
    """Whether a server block only sends browsers elsewhere (http -> https,
    www -> the bare name): a redirect for every path (at its top, or in its
    "/" location), or a return or rewrite and no proxy_pass anywhere."""
    block = server["block"]
    names = {d["directive"] for d in all_directives(block)}
    if "proxy_pass" not in names and names & {"return", "rewrite"}:
        return True
    root = [d for d in block if d["directive"] == "location" and location_path(d["args"]) in ROOTS]
    return sends_elsewhere(block) or any(sends_elsewhere(d["block"]) for d in root)


def listen_args(server):
    return [" ".join(d["args"]) for d in server["block"] if d["directive"] == "listen"] or ["80"]


def location_path(args):
    """(modifier, path) of a location's arguments; ("?", "") for others."""
    if len(args) == 1:
        return ("", args[0])
    return (args[0], args[1]) if len(args) == 2 else ("?", "")


ROOTS = (("", "/"), ("^~", "/"))


def indent(text, margin):
    return [margin + line if line.strip() else line for line in text.split("\n")]


def numbered(directives, start=-1):
    """Give new directives distinct line numbers of their own, so crossplane's
    builder never joins a comment onto the line before it."""
    counter = [start]

    def walk(items):
        for item in items:
            if "line" not in item:
                item["line"] = counter[0]
                counter[0] -= 1
            if item.get("block") is not None:
                walk(item["block"])

    walk(directives)
    return directives


def indent_unit(lines, parsed):
    """The file's indentation step (a tab, or so many spaces): the margin a
    block's first child adds to the block's own line; four spaces when no
    block shows one."""
    for block in blocks(parsed):
        children = [d for d in block["block"] if d["line"] > block["line"]]
        if children:
            outer = margin(lines[block["line"] - 1])
            inner = margin(lines[children[0]["line"] - 1])
            if len(inner) > len(outer) and inner.startswith(outer):
                return inner[len(outer) :]
    return "    "


def build(directive, margin, unit="    ", tail=""):
    """DIRECTIVE as lines of text at MARGIN, indented by UNIT; TAIL (a
    comment that followed its closing brace) kept on its last line."""
    tabs = unit == "\t"
    text = crossplane.build(numbered([directive]), indent=len(unit), tabs=tabs)
    built = indent(text, margin)
    if tail:
        built[-1] += " " + tail
    return built


def margin(line):
    return line[: len(line) - len(line.lstrip())]


def apply_edits(lines, edits, newline="\n"):
    """LINES with each (first, last, new lines) edit made, 1-based and
    inclusive (last = first - 1: insert before FIRST); edits at one place
    land in their order."""
    out = list(lines)
    ordered = sorted(enumerate(edits), key=lambda e: (e[1][0], e[1][1], e[0]), reverse=True)
    for _, (first, last, new) in ordered:
        out[first - 1 : last] = new
    return newline.join(out)


def parse_listen(args):
    """``{port, ssl, address}`` of a listen directive (address: a specific
    IP address the check can connect to, else None); None for a unix socket."""
    value = args[0] if args else "80"
    if value.startswith("unix:"):
        return None
    host, _, port = value.rpartition(":") if not value.endswith("]") else (value, "", "")
    if not port.isdigit():
        host, port = (value if not value.isdigit() else ""), (value if value.isdigit() else "80")
    address = host.strip("[]")
    try:
        specific = ipaddress.ip_address(address) and address not in ("0.0.0.0", "::")
    except ValueError:
        specific = False
    return {"port": int(port), "ssl": "ssl" in args[1:], "address": address if specific else None}


def listens(text, names):
    """
    Where the server blocks in TEXT that serve NAMES (not only redirect)
    listen: ``[{port, ssl, address}]``, in the file's order.
    """
    wanted = {name.lower() for name in names}
    found = []
    for server in parse(text):
        if server["directive"] == "server" and wanted & server_names(server):
            if redirect_only(server):
                continue
            directives = [d["args"] for d in server["block"] if d["directive"] == "listen"]
            # UDP (HTTP/3) listens are no place for the check; "ssl on" (nginx
            # before 1.25.1) makes every listen of the block TLS.
            ssl_on = ["on"] in [d["args"] for d in server["block"] if d["directive"] == "ssl"]
            directives = [args for args in directives or [["80"]] if "quic" not in args[1:]]
            for listen in filter(None, map(parse_listen, directives)):
                found.append(dict(listen, ssl=listen["ssl"] or ssl_on))
    return found
