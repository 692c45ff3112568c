"""
salt-ssh on the rig: an sshd inside a namespace host, bound to the host's
bridge address only, with host keys, a client key, its own configuration
(no PAM, root by key only) made in a folder of the test's; and salt-ssh
from this repository's .venv on the machine, with its own configuration
folder (master config, roster, known_hosts) serving this repository.

The host has its own /etc/passwd (root's shell /bin/sh: a non-interactive
session reads no rc file, so `python3` is the system's /usr/bin/python3
whatever root's ~/.bashrc does on the machine) and its own
/usr/local/lib/python3.X/dist-packages holding the formula's three
libraries, as an operator installs them for salt-ssh (its thin runs on the
target's python3; see docs/operations.md, "salt-ssh"). rig/init.py mounts both.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import yaml

from rig.sandbox import formula_roots

BIN = os.path.dirname(sys.executable)
SSHD = "/usr/sbin/sshd"
ROSTER_ID = "odoo-ssh"
# The libraries the formula's modules import (defaults.yaml's
# dependencies:pip_packages), as their top-level folders.
LIBRARIES = ("crossplane", "ruamel", "websockets")

SSHD_CONFIG = """\
ListenAddress {address}:22
HostKey {folder}/ssh_host_ed25519_key
PidFile /run/sshd-rig.pid
AuthorizedKeysFile {folder}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitUserRC no
StrictModes no
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""

# The roster docs/operations.md's "salt-ssh" section quotes ({...}: the test's paths).
ROSTER = """\
odoo-ssh:
  host: {address}
  user: root
  priv: {folder}/id_ed25519
  thin_dir: {folder}/thin
"""


def _system_site():
    """/usr/local/lib/python3.X/dist-packages of the system's python3."""
    found = subprocess.run(
        ["/usr/bin/python3", "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return found.stdout.strip()


def prepare_target(box):
    """A sandbox PREPARE hook (rig.hosts.Rig.odoo_host): root's shell /bin/sh
    in the host's own /etc/passwd, the formula's libraries in its system
    Python's site folder."""
    with open("/etc/passwd", encoding="utf-8") as handle:
        lines = handle.read().splitlines(True)
    root = [f"{line.rsplit(':', 1)[0]}:/bin/sh\n" if line.startswith("root:") else line
            for line in lines]  # fmt: skip
    box.write(os.path.join(box.root, "etc/passwd"), "".join(root))
    site = os.path.join(box.root, _system_site().lstrip("/"))
    os.makedirs(site)
    here = os.path.dirname(yaml.__file__.rsplit(os.sep, 1)[0])  # the .venv's site-packages
    for name in LIBRARIES:
        shutil.copytree(os.path.join(here, name), os.path.join(site, name),
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip


def _keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)


def start_sshd(host, folder):
    """sshd inside HOST on its bridge address, keys and config in FOLDER
    (the client's key too). Returns when it accepts connections."""
    os.makedirs(folder, exist_ok=True)
    _keygen(os.path.join(folder, "ssh_host_ed25519_key"))
    _keygen(os.path.join(folder, "id_ed25519"))
    shutil.copy(os.path.join(folder, "id_ed25519.pub"), os.path.join(folder, "authorized_keys"))
    config = os.path.join(folder, "sshd_config")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write(SSHD_CONFIG.format(address=host.address, folder=folder))
    host.exec("mkdir", "-p", "-m", "0755", "/run/sshd")  # privilege separation
    checked = host.exec(SSHD, "-t", "-f", config)
    assert checked.returncode == 0, checked.stderr
    log = open(os.path.join(folder, "sshd.log"), "wb")  # noqa: SIM115
    proc = host.popen(SSHD, "-D", "-e", "-f", config, stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((host.address, 22), timeout=0.5):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(folder, "sshd.log"), encoding="utf-8") as handle:
                    raise RuntimeError(f"sshd did not start: {handle.read()}") from None
            time.sleep(0.05)


class SaltSSH:
    """salt-ssh's configuration folder for one roster host, and its CLI."""

    def __init__(self, host, folder, pillar):
        self.folder = folder
        pillar_dir = os.path.join(folder, "pillar")
        os.makedirs(pillar_dir, exist_ok=True)
        with open(os.path.join(pillar_dir, "top.sls"), "w", encoding="utf-8") as handle:
            handle.write(f"base:\n  '{ROSTER_ID}':\n    - odoo_websocket\n")
        self.pillar_file = os.path.join(pillar_dir, "odoo_websocket.sls")
        self.set_pillar(pillar)
        with open(os.path.join(folder, "roster"), "w", encoding="utf-8") as handle:
            handle.write(ROSTER.format(address=host.address, folder=folder))
        with open(os.path.join(folder, "ssh_host_ed25519_key.pub"), encoding="ascii") as handle:
            key = " ".join(handle.read().split()[:2])
        with open(os.path.join(folder, "known_hosts"), "w", encoding="ascii") as handle:
            handle.write(f"{host.address} {key}\n")
        master = {
            "root_dir": os.path.join(folder, "root"),
            "file_roots": {"base": [formula_roots(os.path.join(folder, "formula"))]},
            "pillar_roots": {"base": [pillar_dir]},
            "roster_file": os.path.join(folder, "roster"),
            "known_hosts_file": os.path.join(folder, "known_hosts"),
            "log_level_logfile": "info",
        }
        with open(os.path.join(folder, "master"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(master, handle)

    def set_pillar(self, pillar):
        with open(self.pillar_file, "w", encoding="utf-8") as handle:
            json.dump(pillar, handle)

    def run(self, *args, timeout=300):
        """salt-ssh ROSTER_ID ARGS: (exit code, the host's return or the
        raw output)."""
        proc = subprocess.run(
            [os.path.join(BIN, "salt-ssh"), "-c", self.folder, "--out=json", "--static",
             ROSTER_ID, *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        try:
            return proc.returncode, json.loads(proc.stdout)[ROSTER_ID]
        except (ValueError, KeyError):
            return proc.returncode, proc.stdout + proc.stderr
