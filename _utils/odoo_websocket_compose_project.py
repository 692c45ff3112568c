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


# The names both composes find by themselves in a project folder (with the
# override beside them, and .env's COMPOSE_FILE and COMPOSE_PROJECT_NAME):
# docker-compose 1.x does not look for compose.yaml.
DISCOVERED = ("docker-compose.yml", "docker-compose.yaml")


def project_files(compose_file):
    """
    The files compose reads for the project as the formula's commands run
    it (``odoo_websocket_settings``: in COMPOSE_FILE's folder, naming the file
    with ``-f`` only when compose would not find it by itself), in order:
    then only the file; else COMPOSE_FILE from the environment or the
    project's .env (COMPOSE_PATH_SEPARATOR between them), or the file and
    the override beside it (whose entries, ports among them, compose adds).
    """
    folder, name = os.path.split(os.path.abspath(compose_file))
    if name not in DISCOVERED:
        return [os.path.abspath(compose_file)]
    variables = project_variables(compose_file)
    listed = variables.get("COMPOSE_FILE")
    if listed:
        separator = variables.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        files = [os.path.join(folder, name) for name in listed.split(separator) if name]
        return list(dict.fromkeys(os.path.normpath(path) for path in files))
    overrides = [os.path.join(folder, f"docker-compose.override.{ext}") for ext in ("yml", "yaml")]
    return [os.path.abspath(compose_file)] + [p for p in overrides if os.path.isfile(p)][:1]


def validate(text, compose_file, project=None):
    """
    Check compose TEXT as the compose file at COMPOSE_FILE would be read:
    with ``docker-compose config`` (Debian's docker-compose validates offline)
    when it is installed, otherwise by parsing it. PROJECT: ``{path: text}``
    of every file the project reads (``project_files``, TEXT as COMPOSE_FILE's),
    checked together as compose merges them. Returns
    ``{"ok": bool, "by": ..., "message": ...}``.
    """
    project = project or {compose_file: text}
    try:
        for each in project.values():
            odoo_websocket_compose.load(each)
    except odoo_websocket_compose.ComposeError as exc:
        return {"ok": False, "by": "parser", "message": str(exc)}
    tool = shutil.which("docker-compose")
    if not tool:
        return {"ok": True, "by": "parser", "message": ""}
    # Sibling files, so relative paths in them resolve as in the real ones.
    folder = os.path.dirname(os.path.abspath(compose_file))
    candidates, args = {}, [tool]
    try:
        for path, each in project.items():
            fd, candidate = tempfile.mkstemp(
                prefix=".odoo_websocket.", suffix=".yml", dir=os.path.dirname(path) or folder
            )
            candidates[candidate] = path
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(each)
            args += ["-f", candidate]
        proc = subprocess.run(
            [*args, "config", "-q"],
            capture_output=True, text=True, timeout=60, check=False, cwd=folder,
        )  # fmt: skip
    finally:
        for candidate in candidates:
            os.unlink(candidate)
    message = (proc.stderr + proc.stdout).strip()
    for candidate, path in candidates.items():
        message = message.replace(candidate, path)
    return {"ok": proc.returncode == 0, "by": "docker-compose config", "message": message}
