"""
The compose project around the Odoo compose file: what compose substitutes
in its ``${VAR}`` (the project's .env under the environment), and the real
compose's verdict on an edited file before it replaces the live one.
"""

import os
import shutil
import subprocess
import tempfile

import odoo_websocket_compose


def project_variables(compose_file):
    """What compose substitutes in COMPOSE_FILE's ``${VAR}``: its project's
    .env (beside the file as the pillar names it), under the environment
    the formula's commands run in."""
    found = {}
    try:
        with open(os.path.join(os.path.dirname(compose_file), ".env"), encoding="utf-8") as env:
            for line in env:
                name, sep, value = line.strip().partition("=")
                if sep and name and not name.startswith("#"):
                    found[name.removeprefix("export ").strip()] = value.strip().strip("'\"")
    except (OSError, UnicodeDecodeError):
        pass
    return {**found, **os.environ}


def validate(text, compose_file):
    """
    Check compose TEXT as the compose file at COMPOSE_FILE would be read:
    with ``docker-compose config`` (Debian's docker-compose validates offline)
    when it is installed, otherwise by parsing it. Returns
    ``{"ok": bool, "by": ..., "message": ...}``.
    """
    try:
        odoo_websocket_compose.load(text)
    except odoo_websocket_compose.ComposeError as exc:
        return {"ok": False, "by": "parser", "message": str(exc)}
    tool = shutil.which("docker-compose")
    if not tool:
        return {"ok": True, "by": "parser", "message": ""}
    # A sibling file, so relative paths in it resolve as in the real one.
    folder = os.path.dirname(os.path.abspath(compose_file))
    fd, candidate = tempfile.mkstemp(prefix=".odoo_websocket.", suffix=".yml", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        proc = subprocess.run(
            [tool, "-f", candidate, "config", "-q"],
            capture_output=True, text=True, timeout=60, check=False, cwd=folder,
        )  # fmt: skip
    finally:
        os.unlink(candidate)
    message = (proc.stderr + proc.stdout).strip().replace(candidate, compose_file)
    return {"ok": proc.returncode == 0, "by": "docker-compose config", "message": message}
