"""
What the formula's library asks of the Salt minion that runs it.

The library (every module in ``_utils/``) is plain Python: its modules import
each other with ordinary imports, and Salt's loader never sees them as
execution modules. Only the formula's Salt surface (``_modules/``,
``_states/``, ``_beacons/``) is loaded by Salt; it binds what it was given
(``__salt__``, ``__pillar__``, ``__grains__``, ``__context__``) for the length
of one call with :py:func:`bound` (each surface module's ``_minion``
decorator), and the library reads it with :py:func:`current`. So what the
library needs from Salt is one explicit, greppable seam, and tests bind
their own.
"""

import contextlib
import contextvars
import dataclasses
import importlib.util
import os
import sys

import salt.version

# The Python packages the library needs beyond Salt's, as
# odoo_websocket.dependencies installs them (defaults.yaml: dependencies).
PACKAGES = {"crossplane": "crossplane==0.5.8", "ruamel.yaml": "ruamel.yaml==0.19.1",
            "websockets": "websockets==17.4"}  # fmt: skip
# The library's modules: every one of them is named so (the surface's
# freshness check below relies on it).
PREFIX = "odoo_websocket_"


@dataclasses.dataclass
class Minion:
    """Salt's functions, this run's pillar and grains, and the run's cache."""

    functions: dict
    pillar: dict
    grains: dict
    context: dict


_CURRENT = contextvars.ContextVar("odoo_websocket_minion")


@contextlib.contextmanager
def bound(functions, pillar, grains, context):
    """Make :py:func:`current` answer with these for the block's length."""
    token = _CURRENT.set(Minion(functions, pillar, grains, context))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current():
    """The minion the calling Salt module bound."""
    try:
        return _CURRENT.get()
    except LookupError:
        raise RuntimeError(
            "odoo_websocket's library was called outside a Salt call: "
            "wrap the call in odoo_websocket_minion.bound(...)"
        ) from None


def missing_packages():
    """The pinned requirements of the packages Salt's Python lacks."""
    return [pin for name, pin in PACKAGES.items() if importlib.util.find_spec(name) is None]


# The oldest Salt line the matrix tests (noxfile.py, FORMULA's minimum_version).
MINIMUM_SALT = (3006, 0)


def unsupported_salt(version=None):
    """Why this minion's Salt (VERSION: its ``(major, minor)``) is too old
    for the formula, or None."""
    if version is None:
        version = salt.version.__saltstack_version__.info[:2]
    if tuple(version) >= MINIMUM_SALT:
        return None
    found = ".".join(map(str, version))
    return (
        f"odoo_websocket needs Salt {MINIMUM_SALT[0]} or newer on the minion (3006, 3007 "
        f"and 3008 are tested); this one runs {found}: upgrade it"
    )


def missing_message():
    """Why the formula's Salt modules cannot load here, or None."""
    too_old = unsupported_salt()
    if too_old:
        return too_old
    missing = missing_packages()
    if not missing:
        return None
    return (
        f"odoo_websocket: Salt's Python lacks {', '.join(missing)}: state.apply "
        f"odoo_websocket.dependencies (or salt-pip install {' '.join(missing)})"
    )


def _stamp(module, missing):
    """What MODULE was imported from: its file, and the packages then missing
    (a module imported without crossplane has no parser, even once it is
    installed)."""
    try:
        stat = os.stat(module.__file__)
    except (OSError, TypeError):
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size, tuple(missing))


def fresh():
    """
    Drop the library modules a running minion imported from an older sync.
    Salt re-imports its own modules after ``saltutil.sync_all``, but Python
    keeps ordinary imports for the life of the process: without this, new
    states would run old library code. The same when a package the library
    imports was installed since (the dependencies step's pip). Called by
    each Salt module of the formula before it imports the library; modules
    no Salt module stamped are left alone.
    """
    missing = missing_packages()
    loaded = {n: m for n, m in list(sys.modules.items()) if n.startswith(PREFIX)}
    stale = any(
        hasattr(m, "__odoo_websocket_stamp__") and m.__odoo_websocket_stamp__ != _stamp(m, missing)
        for m in loaded.values()
    )
    if stale:
        for name in loaded:
            del sys.modules[name]


def stamp():
    """Record the files the library was imported from (see :py:func:`fresh`)."""
    missing = missing_packages()
    for name, module in list(sys.modules.items()):
        if name.startswith(PREFIX) and not hasattr(module, "__odoo_websocket_stamp__"):
            module.__odoo_websocket_stamp__ = _stamp(module, missing)
