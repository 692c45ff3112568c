#!/usr/bin/env python3
"""
A salt-minion in a container of the test image (rig/containers.py), for a
master on the rig's bridge (rig/fleet.Master). Used by
test/integration/test_container_minion.py.

- Debian 12 has no salt package, and the image is built from Debian's
  packages only: Salt and the libraries the formula's modules import come
  from PyPI into a virtual environment of Debian's own /usr/bin/python3 (the
  image's python3 too), built on the machine with the project's constraints
  and cached under CACHE_DIR by a hash of what goes in it. The container gets
  it bind-mounted, read-only, at the same path (its scripts name their
  interpreter by path).
- The container shares the network namespace of the rig host its engine runs
  in (`--network host`): it reaches the master on the bridge, and the rig's
  outside host reaches its nginx, as any rig host's. catatonit (`--init`) is
  its PID 1 and reaps what nginx and Salt leave; nginx (Debian's, from the
  image) and the stand-in Odoo (native: /etc/odoo/odoo.conf, restarted by
  SIGHUP) start with it, then the minion.
"""

import hashlib
import json
import os
import subprocess
import sys

from rig.containers import CACHE_DIR, STANDIN_IN_IMAGE, cached_build
from rig.sandbox import REPO

DEBIAN_PYTHON = "/usr/bin/python3"
# requirements.txt's runtime part (Salt, what the formula's modules import,
# and the websocket client of the formula's own check), pinned by
# constraints.txt.
SALT_PACKAGES = ("salt", "Jinja2", "crossplane", "ruamel.yaml", "websockets")
CONSTRAINTS = os.path.join(REPO, "constraints.txt")
MINION_ROOT = "/var/lib/saltroot"  # in the container's own file system
# The container's first process, after catatonit: nginx and the stand-in
# Odoo, then the minion in its place.
BOOT = (
    "nginx && "
    f"python3 {STANDIN_IN_IMAGE} --config /etc/odoo/odoo.conf --odoo-version 17.0"
    " --pidfile /run/odoo.pid --log /var/log/odoo.log & "
    "exec {venv}/bin/salt-minion -c /etc/salt"
)
# The pillar's restart command: the stand-in Odoo restarts on SIGHUP.
RESTART_CMD = "kill -HUP $(cat /run/odoo.pid) && sleep 0.3"


def _venv_hash():
    version = subprocess.run(
        [DEBIAN_PYTHON, "-c", "import sys; print(sys.version)"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    with open(CONSTRAINTS, "rb") as handle:
        constraints = handle.read()
    hasher = hashlib.sha256(json.dumps([version, SALT_PACKAGES]).encode() + b"\0" + constraints)
    return hasher.hexdigest()[:16]


def salt_venv(cache_dir=CACHE_DIR):
    """The minion's virtual environment, built unless the cache holds one of
    this recipe (rig.containers.cached_build). Returns (folder, seconds spent
    building: 0 when cached)."""
    return cached_build(cache_dir, "venv", _venv_hash(), _build_venv)


def _build_venv(folder):
    # No ensurepip needed: the project's own pip installs into it.
    subprocess.run([DEBIAN_PYTHON, "-m", "venv", "--without-pip", folder], check=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", os.path.join(folder, "bin/python"),
         "install", "-q", "--disable-pip-version-check", *SALT_PACKAGES, "-c", CONSTRAINTS],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-20:])
        raise RuntimeError(f"pip install into {folder} failed (exit {done.returncode}):\n{tail}")
    with open(os.path.join(folder, ".complete"), "w", encoding="ascii") as mark:
        json.dump(SALT_PACKAGES, mark)


def write_minion_files(workdir, minion_id, master, odoo_conf):
    """The container's /etc/salt (the minion's configuration for MASTER, a
    rig.fleet.Master) and /etc/odoo (ODOO_CONF, text) as folders in WORKDIR.
    Returns (etc_salt, etc_odoo)."""
    etc_salt, etc_odoo = os.path.join(workdir, "etc-salt"), os.path.join(workdir, "etc-odoo")
    os.makedirs(etc_salt, exist_ok=True)
    os.makedirs(etc_odoo, exist_ok=True)
    config = {
        "id": minion_id,
        "master": master.address,
        "master_port": master.config["ret_port"],
        "publish_port": master.config["publish_port"],
        "root_dir": MINION_ROOT,
        "acceptance_wait_time": 1,
        "log_level": "info",  # to the container's log
    }
    with open(os.path.join(etc_salt, "minion"), "w", encoding="utf-8") as handle:
        json.dump(config, handle)
    with open(os.path.join(etc_odoo, "odoo.conf"), "w", encoding="utf-8") as handle:
        handle.write(odoo_conf)
    os.chmod(os.path.join(etc_odoo, "odoo.conf"), 0o640)
    return etc_salt, etc_odoo


def run_minion(engine, image, venv, etc_salt, etc_odoo, name="minion"):
    """Start the minion's container NAME on ENGINE (a rig.containers.Engine)
    from IMAGE, with VENV, ETC_SALT and ETC_ODOO mounted. Returns
    its id."""
    done = engine.podman(
        "run", "--detach", "--name", name, "--init", "--network", "host",
        "--volume", f"{venv}:{venv}:ro",
        "--volume", f"{etc_salt}:/etc/salt",
        "--volume", f"{etc_odoo}:/etc/odoo",
        image, "sh", "-c", BOOT.format(venv=venv),
    )  # fmt: skip
    return done.stdout.strip()
