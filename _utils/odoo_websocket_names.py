"""
Host names, addresses and server names as nginx takes them: the pillar
schema's rules for them (each returns the problem with a value, or None) and
:py:func:`probe_name`, whether a server name can be the Host header of the
check after a change. Pure: no file or network I/O.
"""

import ipaddress
import re

# One label of an RFC 1123 host name (checked on ASCII text only).
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# What a ~regex server name may not hold: it would end or split the directive.
_REGEX_UNSAFE = re.compile(r"""[\s;{}'"`]""")


def ip(value):
    """An IP address (odoo:http_interface, compose:bind_address)."""
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return "must be an IP address"


def listen_address(value):
    """An nginx listen address: IPv4, or IPv6 in brackets."""
    # nginx wants IPv6 listen addresses in brackets: [::1]
    text = str(value)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        try:
            ipaddress.IPv6Address(text)
            return None
        except ValueError:
            return "must be an IPv4 address or a bracketed IPv6 address like '[::]'"
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return "must be an IPv4 address or a bracketed IPv6 address like '[::]'"


def _is_host_name(text):
    """An RFC 1123 host name: ASCII labels of 1-63 letters, digits and '-' (not
    first or last), 253 characters at most, no trailing dot, and not an
    all-digit last label unless the whole is an IPv4 address."""
    if not text.isascii() or len(text) > 253:
        return False
    labels = text.split(".")
    return all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def _is_ip(text, bare_ipv6=True):
    """An IPv4 literal, a bracketed IPv6 literal, or (BARE_IPV6) a bare one."""
    if text.startswith("[") and text.endswith("]"):
        text, bare_ipv6 = text[1:-1], True
    elif ":" in text and not bare_ipv6:
        return False
    if "%" in text:  # a zone id (fe80::1%eth0) is no address nginx can use
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_wildcard(text):
    """nginx's wildcard names: *.example.com, .example.com, www.example.*"""
    if text.startswith("*."):
        return _is_host_name(text[2:])
    if text.startswith("."):
        return _is_host_name(text[1:])
    if text.endswith(".*"):
        return _is_host_name(text[:-2])
    return False


def host(value):
    """Where nginx reaches Odoo: a host name, IPv4 or bracketed IPv6."""
    if not isinstance(value, str) or not (_is_host_name(value) or _is_ip(value, False)):
        return "must be a host name, an IPv4 address or a bracketed IPv6 address like '[::1]'"


def server_name(value):
    """One server_name entry: a host name, an address, a wildcard or a ~regex."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if not value.isascii():
        return "must be ASCII (write an internationalised name in punycode: xn--...)"
    if value.startswith("~"):
        # nginx compiles the regex itself when the staged tree is tested.
        if len(value) == 1 or _REGEX_UNSAFE.search(value):
            return "starting with '~' must not contain whitespace, ';', '{', '}', quotes or '`'"
        return None
    if value == "_" or _is_ip(value) or _is_host_name(value) or _is_wildcard(value):
        return None
    return "must be a host name, an IP address or an nginx wildcard like *.example.com"


def duplicate_server_name(values):
    """
    The problem with VALUES (valid server names) when one appears twice, or
    None. Host names are case-insensitive; a regex is compared as written.
    """
    seen = set()
    for name in values:
        folded = name if name.startswith("~") else name.lower()
        if folded in seen:
            return f"every entry must appear once (duplicate: {name!r})"
        seen.add(folded)


def probe_name(name):
    """
    Whether NAME (a valid server name) can be the Host header of the check
    after a change: a host name or an address, not a wildcard or a regex.
    """
    return _is_host_name(name) or _is_ip(name, bare_ipv6=False)


def allowed_client(value):
    """What nginx's allow takes, written as nginx wants it: an address or a
    network with a prefix length and no host bits ('all' is what an empty
    list means; a netmask, brackets or a zone are refused)."""
    wrong = "must be an IP address or a network like 10.0.0.0/8"
    if not isinstance(value, str) or not re.fullmatch(r"[0-9A-Fa-f.:]+(/[0-9]{1,3})?", value):
        return wrong
    try:
        ipaddress.ip_network(value)
    except ValueError as error:
        return f"{wrong} (host bits set)" if "host bits" in str(error) else wrong
