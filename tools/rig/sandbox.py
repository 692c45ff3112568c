"""
A sandbox of the files the formula manages: a Debian-style nginx tree, an
odoo.conf and a compose file under one folder, plus the pillar that points the
formula at them. Used by the tests and by `make demo`.
"""

import copy
import os
import shutil

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The test rig and the benchmarks (`python -m rig.hosts` runs from here).
TOOLS = os.path.join(REPO, "tools")
FIXTURES = os.path.join(REPO, "test", "fixtures")
# What a master's file_roots holds of this repository: the state tree, the
# Salt modules and their library. The checkout also holds .venv and .nox
# (90,000 files), and Salt's roots fileserver walks the whole of file_roots
# for every file list a minion asks for (the sync of each module kind, the
# states of every run): 8 s a walk for an older minion's sync here.
FORMULA_DIRS = ("odoo_websocket", "_modules", "_utils", "_states", "_beacons", "_output")


def formula_roots(dest):
    """DEST made a master's file_roots for the formula: a link to each of the
    working tree's formula folders (edits show at once), nothing else."""
    os.makedirs(dest, exist_ok=True)
    for folder in FORMULA_DIRS:
        link = os.path.join(dest, folder)
        if not os.path.lexists(link):
            os.symlink(os.path.join(REPO, folder), link)
    return dest


# RedHat's nginx package's system user (its uid and gid are picked by
# useradd -r; one the machine does not use).
REDHAT_NGINX_USER = "nginx:x:988:988:Nginx web server:/var/lib/nginx:/sbin/nologin\n"
REDHAT_NGINX_GROUP = "nginx:x:988:\n"


def load_pillar_example():
    with open(os.path.join(REPO, "pillar.example"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _fill(path, root, http_port):
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return text.replace("@ROOT@", root).replace("@HTTP_PORT@", str(http_port))


class Sandbox:
    """Files under ROOT laid out as on a Debian host running Odoo in docker
    (or, with LAYOUT "redhat", a RedHat one: see create_redhat)."""

    def __init__(self, root, http_port=80, inside=False, layout="debian"):
        """INSIDE: the files are for a namespace host that mounts them at their
        real places (/etc/nginx...), so their contents name those places."""
        self.root = os.path.abspath(root)
        self.inside = inside
        self.layout = layout
        self.prefix = "" if inside else self.root
        self.nginx_dir = os.path.join(self.root, "etc/nginx")
        self.conf_file = os.path.join(self.nginx_dir, "nginx.conf")
        self.map_file = os.path.join(self.nginx_dir, "conf.d/odoo_websocket_map.conf")
        self.site_file = os.path.join(self.nginx_dir, "sites-available/odoo_websocket.conf")
        self.site_link = os.path.join(self.nginx_dir, "sites-enabled/odoo_websocket.conf")
        self.odoo_conf = os.path.join(self.root, "etc/odoo/odoo.conf")
        self.compose_file = os.path.join(self.root, "opt/odoo/docker-compose.yml")
        self.marker_dir = os.path.join(self.root, "markers")
        self.backup_dir = os.path.join(self.root, "var/backups/odoo_websocket")
        self.http_port = http_port

    def create(self):
        if self.layout == "redhat":
            return self.create_redhat()
        for folder in (
            "etc/nginx/conf.d",
            "etc/nginx/sites-available",
            "etc/nginx/sites-enabled",
            "etc/odoo",
            "opt/odoo",
            "run",
            "var/log/nginx",
            "var/www/html",
            "var/backups",
            "markers",
        ):
            os.makedirs(os.path.join(self.root, folder), exist_ok=True)
        nginx_fixtures = os.path.join(FIXTURES, "nginx")
        self.write(
            self.conf_file,
            _fill(os.path.join(nginx_fixtures, "nginx.conf"), self.prefix, self.http_port),
        )
        shutil.copy(
            os.path.join(nginx_fixtures, "mime.types"), os.path.join(self.nginx_dir, "mime.types")
        )
        default = os.path.join(self.nginx_dir, "sites-available/default")
        self.write(
            default,
            _fill(os.path.join(nginx_fixtures, "default.site"), self.prefix, self.http_port),
        )
        os.symlink(
            self.prefix + "/etc/nginx/sites-available/default",
            os.path.join(self.nginx_dir, "sites-enabled/default"),
        )
        shutil.copy(os.path.join(FIXTURES, "odoo.conf"), self.odoo_conf)
        os.chmod(self.odoo_conf, 0o640)
        shutil.copy(os.path.join(FIXTURES, "docker-compose.yml"), self.compose_file)
        return self

    def create_redhat(self):
        """A RedHat host's files, for a namespace host only (INSIDE): RHEL's
        stock nginx.conf (user nginx, conf.d only, its own default server),
        no sites-available or sites-enabled; its own /etc/passwd and
        /etc/group (the machine's plus RedHat's nginx user) and
        /var/lib/nginx (nginx gives its temporary folders to its user), which
        rig/init.py mounts over the machine's."""
        assert self.inside, "the RedHat layout is for namespace hosts"
        self.site_file = os.path.join(self.nginx_dir, "conf.d/odoo_websocket.conf")
        self.site_link = None
        for folder in ("etc/nginx/conf.d", "etc/nginx/default.d", "etc/odoo", "opt/odoo",
                       "var/log/nginx", "var/backups", "var/lib/nginx", "markers"):  # fmt: skip
            os.makedirs(os.path.join(self.root, folder), exist_ok=True)
        shutil.copy(os.path.join(FIXTURES, "nginx/redhat-nginx.conf"), self.conf_file)
        shutil.copy(os.path.join(FIXTURES, "nginx/mime.types"), self.nginx_dir)
        for name, entry in (("passwd", REDHAT_NGINX_USER), ("group", REDHAT_NGINX_GROUP)):
            with open("/etc/" + name, encoding="utf-8") as handle:
                self.write(os.path.join(self.root, "etc", name), handle.read() + entry)
        shutil.copy(os.path.join(FIXTURES, "odoo.conf"), self.odoo_conf)
        os.chmod(self.odoo_conf, 0o640)
        shutil.copy(os.path.join(FIXTURES, "docker-compose.yml"), self.compose_file)
        return self

    @staticmethod
    def write(path, text, mode=0o644):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, mode)

    def marker(self, name):
        return os.path.join(self.marker_dir, name)

    def pillar(self, **overrides):
        """pillar.example with every path moved into the sandbox, then OVERRIDES
        (nested dicts merge; other values replace)."""
        data = copy.deepcopy(load_pillar_example())
        settings = data["odoo_websocket"]
        if self.inside:
            # The host sees its files at the real paths: pillar.example's. The
            # stand-in Odoo restarts on SIGHUP, within well under 0.3 s.
            restart = "kill -HUP $(cat /run/odoo.pid) && sleep 0.3"
            settings["odoo"]["config"]["restart_cmd"] = restart
            settings["compose"]["recreate_cmd"] = restart
            merge(settings, overrides)
            return data
        settings["nginx"].update(
            {
                "binary": shutil.which("nginx") or "/usr/sbin/nginx",
                "conf_file": self.conf_file,
                "map_file": self.map_file,
                "site_file": self.site_file,
                "site_link": self.site_link,
                "http_port": self.http_port,
            }
        )
        settings["odoo"]["config"]["file"] = self.odoo_conf
        # Restart commands leave a marker instead of touching real services.
        settings["odoo"]["config"]["restart_cmd"] = f"touch {self.marker('odoo-restarted')}"
        settings["compose"]["file"] = self.compose_file
        settings["compose"]["recreate_cmd"] = f"touch {self.marker('compose-recreated')}"
        settings["backup"]["dir"] = self.backup_dir
        # Never start an nginx on the machine's own ports from a sandbox, and
        # no websocket check: no Odoo runs here (the rig's hosts verify).
        settings["nginx"]["start"] = False
        settings["verify"]["enabled"] = False
        merge(settings, overrides)
        return data

    # Folders under the root that the formula's runs write to by design (logs,
    # PID files, backup sets, restart markers): left out of the fingerprint.
    UNFINGERPRINTED = ("var/log", "run", "var/backups", "markers")

    def fingerprint(self):
        """Bytes, mode, owner and link target of every file, and mode and owner
        of every folder, under the sandbox, keyed by absolute path; the folders
        in UNFINGERPRINTED are left out by their path relative to the root (the
        root's own path may hold any of those names: /run/user/0/...). Fails
        when it finds no file: a "nothing changed" check must compare
        something."""
        result = {}
        for folder, folders, files in os.walk(self.root):
            relative = os.path.relpath(folder, self.root)
            for name in folders + files:
                path = os.path.join(folder, name)
                result[path] = _entry(path)
            # A skipped folder keeps its own mode and owner in the snapshot.
            folders[:] = [
                name
                for name in folders
                if os.path.normpath(os.path.join(relative, name)) not in self.UNFINGERPRINTED
            ]
        if not any(isinstance(value[0], bytes) for value in result.values()):
            raise AssertionError(f"no file to fingerprint under {self.root}")
        return result


def _entry(path):
    """What a fingerprint records of PATH: a link's target, a folder's mode
    and owner, a file's bytes, mode and owner (a socket's or FIFO's mode and
    owner: opening one could block)."""
    if os.path.islink(path):
        return ("link", os.readlink(path))
    stat = os.stat(path)
    if os.path.isdir(path):
        return ("folder", stat.st_mode, stat.st_uid, stat.st_gid)
    if not os.path.isfile(path):
        return ("special", stat.st_mode, stat.st_uid, stat.st_gid)
    with open(path, "rb") as handle:
        return (handle.read(), stat.st_mode, stat.st_uid, stat.st_gid)


def merge(target, overrides):
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value
    return target
