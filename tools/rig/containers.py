#!/usr/bin/env python3
"""
A real container engine for the tests: Debian's podman, rootful, run by the
test itself and gone when it ends.

- The test image is built from Debian packages only: `debootstrap
  --variant=minbase --include=python3,nginx-light` into a root file system cached under
  CACHE_DIR by a hash of its recipe (rebuilt when the recipe changes), then
  imported with the stand-in Odoo added (`podman import`), tagged with a
  hash of both. No registry is ever asked.
- An Engine has a folder of its own: containers.conf (runc, cgroupfs,
  default_ulimits within the limits this process may grant: podman's own
  defaults ask for more than this machine allows), storage.conf (images and
  containers in that folder, never /var/lib/containers) and the Docker API
  socket of `podman system service`. Every podman and compose command it
  runs gets CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and DOCKER_HOST.
- The service runs in the network namespace given (a rig host's) and in a
  mount and a PID namespace of its own: the containers' networks, firewall
  rules and published ports exist only in that network namespace, their
  mounts only in that mount namespace, and ending the service ends every
  process it started (conmon, the containers) with its PID namespace.

CLI (python -m rig.containers ...):
    image                   build (or find in the cache) the test image's root
                            file system; prints its folder and the build time
    up WORKDIR NETNS        start an engine in network namespace NETNS, import
                            the image, write a compose project (the field's
                            ports) in WORKDIR/project; prints DOCKER_HOST
    down WORKDIR            remove its containers and networks, end it
"""

import argparse
import fcntl
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE_DIR = os.environ.get("ODOO_WEBSOCKET_TEST_CACHE", "/var/cache/odoo_websocket-test")
STANDIN = os.path.join(HERE, "standin_odoo.py")
STANDIN_IN_IMAGE = "/opt/odoo-standin/standin_odoo.py"
IMAGE_NAME = "localhost/odoo_websocket-test"
CATATONIT = "/usr/libexec/podman/catatonit"
# The root file system: Debian's own packages, nothing else. Changing any of
# this changes the hash, hence the folder, hence a rebuild.
RECIPE = {
    "tool": "debootstrap",
    "variant": "minbase",
    # nginx for the minion's container (test_container_minion.py).
    "include": ["python3", "nginx-light"],
    "suite": "bookworm",
    "mirror": "http://deb.debian.org/debian",
}
# podman sets its own RLIMIT_NPROC to this at start: containers cannot get more.
PODMAN_NPROC = 32768
PODMAN_NOFILE = 1048576


# The Odoo service as found in the field: ports on every interface of the
# host, odoo.conf mounted from the project's config folder.
COMPOSE = """# Odoo behind nginx: a compose file as found in the field.
services:
  odoo:
    image: {image}
    command: ["python3", "{standin}", "--config", "/etc/odoo/odoo.conf",
              "--odoo-version", "{version}"]
    restart: unless-stopped
    ports:
      - "8069:8069"   # web client
      - "8072:8072"   # bus / websocket
    volumes:
      - ./config:/etc/odoo
"""


def write_project(folder, image, odoo_conf, version="17.0"):
    """A compose project in FOLDER running the stand-in Odoo from IMAGE, with
    ODOO_CONF (text) as config/odoo.conf. Returns the compose file's path."""
    os.makedirs(os.path.join(folder, "config"), exist_ok=True)
    with open(os.path.join(folder, "config/odoo.conf"), "w", encoding="utf-8") as handle:
        handle.write(odoo_conf)
    os.chmod(os.path.join(folder, "config/odoo.conf"), 0o640)
    compose_file = os.path.join(folder, "docker-compose.yml")
    with open(compose_file, "w", encoding="utf-8") as handle:
        handle.write(COMPOSE.format(image=image, standin=STANDIN_IN_IMAGE, version=version))
    return compose_file


def _digest(*parts):
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part if isinstance(part, bytes) else part.encode())
        hasher.update(b"\0")
    return hasher.hexdigest()[:16]


def recipe_hash():
    return _digest(json.dumps(RECIPE, sort_keys=True))


def image_tag():
    """The image's name: a hash of the root file system's recipe and the
    stand-in's bytes."""
    with open(STANDIN, "rb") as handle:
        return f"{IMAGE_NAME}:{_digest(recipe_hash(), handle.read())}"


def cached_build(cache_dir, prefix, digest, build):
    """CACHE_DIR/PREFIX-DIGEST, made by BUILD(folder) unless the cache holds
    a complete one (BUILD writes its ``.complete`` mark last). Returns
    (folder, seconds spent building: 0 when cached). One build at a time (a
    lock in the cache folder); a folder without its mark is a failed build,
    removed and built again; other PREFIX- folders are removed after a
    build. Built where it stays (a venv's scripts name it by path)."""
    os.makedirs(cache_dir, exist_ok=True)
    folder = os.path.join(cache_dir, f"{prefix}-{digest}")
    with open(os.path.join(cache_dir, f"{prefix}.lock"), "w", encoding="ascii") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(folder, ".complete")):
            return folder, 0.0
        started = time.monotonic()
        shutil.rmtree(folder, ignore_errors=True)
        try:
            build(folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        for name in os.listdir(cache_dir):
            if name.startswith(f"{prefix}-") and name != os.path.basename(folder):
                shutil.rmtree(os.path.join(cache_dir, name), ignore_errors=True)
        return folder, time.monotonic() - started


def rootfs(cache_dir=CACHE_DIR):
    """The test image's root file system, built by debootstrap unless the cache
    holds one of this recipe (see :py:func:`cached_build`). Returns (folder,
    seconds spent building: 0 when cached)."""
    return cached_build(cache_dir, "rootfs", recipe_hash(), _debootstrap)


def _debootstrap(target):
    done = subprocess.run(
        ["debootstrap", f"--variant={RECIPE['variant']}",
         "--include=" + ",".join(RECIPE["include"]), RECIPE["suite"], target, RECIPE["mirror"]],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise RuntimeError(f"debootstrap failed (exit {done.returncode}):\n{tail}")
    shutil.rmtree(os.path.join(target, "var/cache/apt/archives"), ignore_errors=True)
    with open(os.path.join(target, ".complete"), "w", encoding="ascii") as mark:
        json.dump(RECIPE, mark)


def _limit(kind, ceiling):
    hard = resource.getrlimit(kind)[1]
    return ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)


def containers_conf(folder):
    """containers.conf for an engine whose state lives in FOLDER."""
    nofile = _limit(resource.RLIMIT_NOFILE, PODMAN_NOFILE)
    nproc = _limit(resource.RLIMIT_NPROC, PODMAN_NPROC)
    return (
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "[engine]\n"
        # crun refuses this machine's hybrid cgroup layout; no systemd here.
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{folder}/events.log"\n'
        f'static_dir = "{folder}/libpod"\n'
        f'tmp_dir = "{folder}/tmp"\n'
        f'volume_path = "{folder}/volumes"\n'
        "[network]\n"
        f'network_config_dir = "{folder}/networks"\n'
    )


def storage_conf(folder):
    lines = ["[storage]", 'driver = "overlay"', f'graphroot = "{folder}/storage"',
             f'runroot = "{folder}/run"']  # fmt: skip
    return "\n".join(lines) + "\n"


STATE_DIRS = ("libpod", "tmp", "volumes", "networks", "storage", "run", "image-extra")


class Engine:
    """podman with its state in WORKDIR, serving the Docker API on
    WORKDIR/podman.sock from the network namespace NETNS (a name in
    /run/netns)."""

    def __init__(self, workdir, netns):
        self.workdir = os.path.abspath(workdir)
        self.netns = netns
        self.socket = os.path.join(self.workdir, "podman.sock")
        self.url = f"unix://{self.socket}"
        self.log = os.path.join(self.workdir, "service.log")
        self.service = None  # Popen of nsenter/unshare
        self.init = None  # PID 1 of the service's PID namespace (catatonit)

    @property
    def env(self):
        """The environment for podman and compose commands using this engine."""
        return dict(
            os.environ,
            CONTAINERS_CONF=os.path.join(self.workdir, "containers.conf"),
            CONTAINERS_STORAGE_CONF=os.path.join(self.workdir, "storage.conf"),
            DOCKER_HOST=self.url,
        )

    def start(self, timeout=20):
        for name in STATE_DIRS:
            os.makedirs(os.path.join(self.workdir, name), exist_ok=True)
        for name, text in (("containers.conf", containers_conf(self.workdir)),
                           ("storage.conf", storage_conf(self.workdir))):  # fmt: skip
            with open(os.path.join(self.workdir, name), "w", encoding="utf-8") as handle:
                handle.write(text)
        # nsenter, not `ip netns exec`: that remounts /sys without the cgroup
        # mounts runc needs. catatonit, PID 1, reaps what conmon leaves.
        args = [
            "nsenter", f"--net=/run/netns/{self.netns}",
            "unshare", "--mount", "--propagation", "slave", "--pid", "--fork", "--mount-proc",
            "--kill-child=SIGTERM", CATATONIT, "--",
            "podman", "system", "service", "--time=0", self.url,
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.service = subprocess.Popen(
                args, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.service.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"podman's API service did not start:\n{self.logs()}")
            time.sleep(0.1)
        children = f"/proc/{self.service.pid}/task/{self.service.pid}/children"
        with open(children, encoding="ascii") as handle:
            self.init = int(handle.read().split()[0])
        with open(os.path.join(self.workdir, "engine.json"), "w", encoding="ascii") as handle:
            json.dump({"netns": self.netns, "init": self.init}, handle)
        return self

    @classmethod
    def running(cls, workdir):
        """The engine `start` left running in WORKDIR (from another process)."""
        with open(os.path.join(workdir, "engine.json"), encoding="ascii") as handle:
            state = json.load(handle)
        engine = cls(workdir, state["netns"])
        engine.init = state["init"]
        return engine

    def _answers(self):
        """Whether the API socket answers Docker's /_ping."""
        try:
            with socket.socket(socket.AF_UNIX) as client:
                client.settimeout(2)
                client.connect(self.socket)
                client.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return client.recv(64).startswith(b"HTTP/1.0 200")
        except OSError:
            return False

    def logs(self, lines=30):
        try:
            with open(self.log, encoding="utf-8", errors="replace") as handle:
                return "\n".join(handle.read().splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def _run(self, args, what, check=True, **kwargs):
        kwargs.setdefault("timeout", 300)
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, **kwargs)
        if check and done.returncode != 0:
            raise RuntimeError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()}")
        return done

    def podman(self, *args, check=True):
        """`podman --remote` through this engine's socket."""
        command = ["podman", "--remote", "--url", self.url, *args]
        return self._run(command, "podman " + " ".join(args), check)

    def compose(self, compose_file, *args, check=True):
        """docker-compose ARGS on COMPOSE_FILE, driving this engine."""
        command = ["docker-compose", "-f", compose_file, *args]
        return self._run(command, "docker-compose " + " ".join(args), check)

    def load_image(self, cache_dir=CACHE_DIR):
        """Import the test image (root file system plus the stand-in Odoo at
        STANDIN_IN_IMAGE). Returns (tag, seconds building the root file
        system: 0 when cached, seconds importing)."""
        folder, built = rootfs(cache_dir)
        tag = image_tag()
        started = time.monotonic()
        extra = os.path.join(self.workdir, "image-extra")
        os.makedirs(extra + os.path.dirname(STANDIN_IN_IMAGE), exist_ok=True)
        shutil.copy(STANDIN, extra + STANDIN_IN_IMAGE)
        tar = subprocess.Popen(
            ["tar", "-C", folder, "--exclude=./.complete", "-cf", "-", ".",
             "-C", extra, os.path.dirname(STANDIN_IN_IMAGE).lstrip("/")],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            done = self._run(
                ["podman", "--remote", "--url", self.url, "import", "-", tag],
                "podman import", check=False, stdin=tar.stdout,
            )  # fmt: skip
        finally:
            tar.stdout.close()
        if tar.wait() != 0 or done.returncode != 0:
            raise RuntimeError(f"podman import failed: {done.stderr.strip()}")
        return tag, built, time.monotonic() - started

    def _end_service(self):
        """SIGTERM to catatonit, PID 1 of the service's namespace, which passes
        it to podman (unshare itself ignores SIGTERM while it waits); once
        catatonit is gone, so is every process in the namespace. SIGKILL to it
        if it lingers."""
        alive = self.init and os.path.exists(f"/proc/{self.init}")
        if alive:
            os.kill(self.init, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while alive and os.path.exists(f"/proc/{self.init}") and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive and os.path.exists(f"/proc/{self.init}"):
            os.kill(self.init, signal.SIGKILL)
        if self.service:
            if self.init is None and self.service.poll() is None:
                os.killpg(self.service.pid, signal.SIGKILL)  # failed before it had an init
            self.service.wait(10)

    def stop(self):
        """Remove every container and network this engine made, end its
        service (and with its PID namespace anything left), remove its state.
        Safe to call more than once and after a failed start."""
        if (self.service or self.init) and self._answers():
            self.podman("rm", "--all", "--force", "--time", "2", check=False)
            self.podman("network", "prune", "--force", check=False)
        if self.service or self.init:
            self._end_service()
        self.service = self.init = None
        for name in STATE_DIRS:
            shutil.rmtree(os.path.join(self.workdir, name), ignore_errors=True)
        for path in (self.socket, os.path.join(self.workdir, "engine.json")):
            if os.path.exists(path):
                os.unlink(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description="The container tests' engine and image.")
    parser.add_argument("action", choices=("image", "up", "down"))
    parser.add_argument("workdir", nargs="?", help="up/down: the engine's folder")
    parser.add_argument("netns", nargs="?", help="up: the network namespace to run in")
    parser.add_argument("--cache-dir", default=CACHE_DIR)
    args = parser.parse_args(argv)
    if args.action == "image":
        folder, built = rootfs(args.cache_dir)
        how = f"built in {built:.1f} s" if built else "cached"
        print(f"{folder} ({how}); imported as {image_tag()}")
    elif args.action == "up":
        engine = Engine(args.workdir, args.netns).start()
        try:
            tag, _, _ = engine.load_image(args.cache_dir)
            with open(os.path.join(HERE, "..", "test/fixtures/odoo.conf"), encoding="utf-8") as f:
                project = write_project(os.path.join(engine.workdir, "project"), tag, f.read())
        except BaseException:
            engine.stop()
            raise
        print(f"export DOCKER_HOST={engine.url}\n# image {tag}, compose project {project}")
    else:
        Engine.running(args.workdir).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
