"""
The formula's concerns in one table: for each, whether an instance's
settings manage it and the file it plans. The planning states, the planner
and the operator's restore and clean read it, with the one way to walk the
Odoo instances of a host's settings.
"""

# Whether an instance's settings manage a concern (compose: docker
# deployments only), and the file the concern plans in them.
CONCERNS = {
    "compose": {
        "enabled": lambda s: s["compose"]["enabled"],
        "file": lambda s: s["compose"]["file"],
    },
    "odoo_conf": {
        "enabled": lambda s: s["odoo"]["config"]["enabled"],
        "file": lambda s: s["odoo"]["config"]["file"],
    },
    "nginx": {
        "enabled": lambda s: s["nginx"]["enabled"],
        "file": lambda s: s["nginx"]["site_file"],
    },
}


def instances(settings):
    """{name: settings} of each Odoo instance (odoo_websocket_instances): the
    settings themselves, as ``default``, for a single-instance pillar."""
    return settings.get("instances") or {"default": settings}


def enabled(concern, settings):
    """Whether SETTINGS (one instance's, or the host's) manage CONCERN."""
    return CONCERNS[concern]["enabled"](settings)


def files(concern, settings):
    """The files CONCERN plans, each instance's that manages it, instances in
    name order, each file once."""
    found = [CONCERNS[concern]["file"](instance) for _, instance in
             sorted(instances(settings).items()) if enabled(concern, instance)]  # fmt: skip
    return list(dict.fromkeys(path for path in found if path))
