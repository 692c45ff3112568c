"""
Odoo's ports seen as a browser would, without nginx: this host's addresses a
remote browser could use, and which of them accept a TCP connection on
Odoo's ports. The websocket check (``odoo_websocket_verify``) reports any.
"""

import ipaddress
import socket

import salt.utils.network


def as_list(value):
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return list(value)


def _interface_addresses():
    """Every address of this host's interfaces but IPv6 link-local ones
    (unusable without a scope), loopback included."""
    # One `ip addr` for both families (network.ip_addrs and ip_addrs6 run one each).
    interfaces = salt.utils.network.interfaces().values()
    found = [
        entry.get("address", "")
        for interface in interfaces
        for family in ("inet", "inet6")
        for entry in interface.get(family, [])
    ]
    addresses = []
    for text in found:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if not (ip.version == 6 and ip.is_link_local) and text not in addresses:
            addresses.append(text)
    return addresses


def host_addresses():
    """This host's addresses a remote browser could use: not loopback, and not
    IPv6 link-local (unusable without a scope)."""
    return [text for text in _interface_addresses() if not ipaddress.ip_address(text).is_loopback]


def local(addresses):
    """Those of ADDRESSES a connection to stays on this host: an IPv4
    loopback address, or an address of one of its interfaces (nginx may
    listen on an address the host does not have, with ip_nonlocal_bind, or
    on a host name: never knocked on)."""
    mine = {ipaddress.ip_address(text) for text in _interface_addresses()}
    found = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if ip in mine or (ip.is_loopback and ip.version == 4):
            found.append(text)
    return found


def ipv6_available():
    """Whether this host's kernel has IPv6 (not booted with ipv6.disable=1),
    so nginx can listen on [::] as Debian's default site does."""
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
    except OSError:
        return False
    return True


def _accepts(address, port, timeout):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((address, int(port)))
        except OSError:
            return False
    return True


def exposed_ports(ports, addresses=None, timeout=1):
    """
    The ``{"address", "port"}`` pairs among ADDRESSES x PORTS that accept a TCP
    connection. ADDRESSES defaults to this host's non-loopback addresses, so a
    hit means Odoo answers there without nginx.
    """
    addresses = host_addresses() if addresses is None else as_list(addresses)
    return [
        {"address": address, "port": int(port)}
        for address in addresses
        for port in as_list(ports)
        if _accepts(address, port, timeout)
    ]


def checks(odoo_ports, addresses=None, timeout=1):
    """
    The websocket verdict's entries on Odoo's ports: one failed check per
    address and port of ODOO_PORTS that accepts a connection (browsers can
    bypass nginx there), or one passed check naming the addresses tried.
    """
    addresses = host_addresses() if addresses is None else as_list(addresses)
    exposed = exposed_ports(odoo_ports, addresses, timeout=timeout)
    bypass = "Odoo port {port} answers on {address}: browsers can bypass nginx"
    found = [{"name": f"Odoo port {hit['port']}", "ok": False, "detail": bypass.format(**hit)}
             for hit in exposed]  # fmt: skip
    if not exposed:
        where = ", ".join(addresses) or "(no non-loopback address)"
        found.append(
            {"name": "Odoo ports", "ok": True, "detail": f"Odoo ports not reachable on {where}"}
        )
    return found
