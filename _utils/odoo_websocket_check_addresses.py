"""
Where the websocket check knocks besides its main address: nginx hands a
connection to the server blocks listening on its exact address first, then
to those on its family's wildcard, so a browser reaching the host at one
address may get another site than at the next. Read from nginx's live tree:
one address per way nginx may answer the site, those of this host only.
"""

import ipaddress

import odoo_websocket_exposure
import odoo_websocket_nginx

_WILDCARDS = (("*", 4), ("[::]", 6))


def loopback(address):
    """Whether ADDRESS (``127.0.0.1``, ``[::1]``, ``::1``) is a loopback
    address, which no browser on another machine reaches."""
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:  # a host name
        return False


def _free_loopback(version, taken):
    """A loopback address of IP VERSION that no block listens on by itself
    (TAKEN: listen addresses), or None: there nginx picks among the
    wildcard's blocks."""
    if version == 6:
        return None if "[::1]" in taken else "::1"
    # Linux answers on all of 127.0.0.0/8.
    return next((f"127.0.0.{n}" for n in range(1, 255) if f"127.0.0.{n}" not in taken), None)


def where(own, others, address):
    """
    Where the check knocks, from the listen addresses (``"*"``, ``"[::]"``,
    ``"10.0.0.5"``, ``"[::1]"``) of the site's server blocks (OWN) and of the
    others (OTHERS) on its port: ``(main, more)``. MAIN is ADDRESS, or
    another loopback address when ADDRESS is a loopback one another block
    listens on by itself (a status page on 127.0.0.1, say). MORE: a loopback
    address no block takes for each wildcard the site listens on, each
    address it listens on, and each address another block listens on
    within its wildcards (loopback ones aside: no browser reaches them).
    """
    specific = {a for a in own | others if a not in ("*", "[::]")}
    version = 6 if ":" in address else 4
    listened = f"[{address}]" if version == 6 else address
    if loopback(address) and listened in others - own:
        address = _free_loopback(version, specific) or address
    more = [_free_loopback(v, specific) for wildcard, v in _WILDCARDS if wildcard in own]
    for listen in sorted(specific):
        wildcard = "[::]" if listen.startswith("[") else "*"
        plain = listen.strip("[]")
        if listen in own or (wildcard in own and not loopback(plain)):
            more.append(plain)
    return address, [a for a in dict.fromkeys(more) if a and a != address]


class Tree:
    """nginx's live tree (CONF_FILE; None: not read, nothing more to knock
    at), read once for a check. ``unread``: why it could not be read."""

    def __init__(self, conf_file):
        self.payload, self.unread = None, None
        if conf_file:
            try:
                self.payload = odoo_websocket_nginx.tree(conf_file)
            except (OSError, ValueError, KeyError, NameError) as exc:
                self.unread = f"nginx's tree ({conf_file}) could not be read: {exc}"
                return
            errors = self.payload.get("errors") or []
            if errors:  # what was read still counts
                first = errors[0]
                self.unread = (f"nginx's tree ({conf_file}) was not all read: {first.get('file')}: "
                               f"{first.get('error')}")  # fmt: skip

    def knock(self, server_name, address, port):
        """(main address, more addresses of this host) for SERVER_NAME's
        check on PORT (see ``where``)."""
        if self.payload is None:
            return address, []
        own, others = odoo_websocket_nginx.listeners(self.payload, server_name, int(port))
        if not own:  # the name is served by a pattern or a default: as before
            return address, []
        main, more = where(own, others, address)
        return main, odoo_websocket_exposure.local(more)
