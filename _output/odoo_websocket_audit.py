"""
The table ``salt HOST odoo_websocket.audit`` prints: per host, one row per
finding (severity, id, file:line) with its why and fix wrapped beneath.
``--out=json`` (or yaml) gives the findings as data instead.

On a master, ``salt-run saltutil.sync_output`` makes it available to the
``salt`` command (salt-call on a minion has it after ``saltutil.sync_all``).
"""

import textwrap

__virtualname__ = "odoo_websocket_audit"

WIDTH = 100


def __virtual__():
    return __virtualname__


def _count(findings):
    counts = {}
    for finding in findings:
        counts[finding["severity"]] = counts.get(finding["severity"], 0) + 1
    plural = {"error": "errors", "warning": "warnings", "info": "info"}
    parts = [f"{counts[s]} {s if counts[s] == 1 else plural[s]}" for s in plural if s in counts]
    return f"{len(findings)} finding{'s' * (len(findings) != 1)} ({', '.join(parts)})"


def _where(finding):
    return f"{finding['file']}:{finding['line']}" if finding["line"] else str(finding["file"])


def table(host, findings):
    """The report of one host: a title line, then a row per finding."""
    if not isinstance(findings, list):  # the minion's error text
        return f"{host}:\n    {findings}"
    if not findings:
        return f"{host}: no findings"
    width = max(len(finding["id"]) for finding in findings)
    lines = [f"{host}: {_count(findings)}", f"  {'severity':8}  {'id':{width}}  where"]
    indent = " " * 12
    for finding in findings:
        lines.append(f"  {finding['severity']:8}  {finding['id']:{width}}  {_where(finding)}")
        for label in ("why", "fix"):
            lines += textwrap.wrap(
                finding[label],
                WIDTH,
                initial_indent=f"{indent}{label}: ",
                subsequent_indent=indent + " " * 5,
            )
    return "\n".join(lines)


def output(data, **kwargs):  # pylint: disable=unused-argument
    """Every host's table, one after the other."""
    return "\n\n".join(table(host, findings) for host, findings in sorted(data.items()))
