"""
The Salt version matrix (issue 24): the integration core (tests marked
``core``: a real salt-master and salt-minion applying the formula to a broken
host, the no-op, the dry run, the rollback on a failing websocket check, the
audit) under the newest installable release of each Salt line, and a mixed
pair (a 3008 master with a 3006 minion). ``make test-matrix`` runs it;
``make test`` keeps the default line (requirements.txt).

Each session's environment is requirements.txt with Salt pinned to its
line's release (the newest that installs here: newer 3006 and 3007 releases
pin a certifi release the package index lacks), every package pinned by the
line's constraints (Salt 3007 needs pyzmq < 26, say).
"""

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

HERE = os.path.dirname(os.path.abspath(__file__))
# The newest release of each line that pip installs here.
LINES = {"3006": "3006.29", "3007": "3007.16", "3008": "3008.4"}
DEFAULT = "3008"  # requirements.txt's
CORE = ["-m", "core", "-p", "no:cacheprovider", "test/integration"]


def _requirements(session):
    """requirements.txt without its Salt line (each session names its own)."""
    with open(os.path.join(HERE, "requirements.txt"), encoding="utf-8") as handle:
        kept = [line for line in handle if not line.lower().startswith("salt==")]
    path = os.path.join(session.create_tmp(), "requirements.txt")
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(kept)
    return path


def _install(session, line, python=None):
    """The test environment on Salt LINE, every package pinned (the default
    line's constraints.txt, another line's constraints/salt-<line>.txt: its
    Salt pins some of them otherwise): the session's own, or the virtual
    environment of PYTHON (an interpreter path) when given."""
    pins = "constraints.txt" if line == DEFAULT else f"constraints/salt-{line}.txt"
    args = [f"salt=={LINES[line]}", "-r", _requirements(session),
            "-c", os.path.join(HERE, pins)]  # fmt: skip
    if python is None:
        session.install(*args)
    else:
        session.run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args,
                    external=True)  # fmt: skip


@nox.session(name="core")
@nox.parametrize("line", list(LINES))
def core(session, line):
    """The integration core on one Salt line (master, minion and rig hosts)."""
    _install(session, line)
    env = {"ODOO_WEBSOCKET_MINION_SALT": LINES[line]}
    session.run("pytest", *CORE, *session.posargs, "--basetemp", session.create_tmp() + "/pt",
                env=env)  # fmt: skip


@nox.session(name="mixed")
def mixed(session):
    """The integration core with a 3008 master and a 3006 minion: masters are
    upgraded before their minions."""
    _install(session, "3008")
    minion_env = os.path.join(session.create_tmp(), "minion-3006")
    if not os.path.exists(os.path.join(minion_env, "bin", "python")):
        session.run("python", "-m", "venv", minion_env)
    minion_python = os.path.join(minion_env, "bin", "python")
    _install(session, "3006", python=minion_python)
    env = {"ODOO_WEBSOCKET_MINION_PYTHON": minion_python,
           "ODOO_WEBSOCKET_MINION_SALT": LINES["3006"]}  # fmt: skip
    session.run("pytest", *CORE, *session.posargs, "--basetemp", session.create_tmp() + "/pt",
                env=env)  # fmt: skip
