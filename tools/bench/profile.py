#!/usr/bin/env python3
"""
Where a no-op `salt-call --local state.apply odoo_websocket` spends its time,
on a converged rig host (Odoo 17, prefork, docker): pyinstrument (wall
clock, subprocess waits included) when it is installed in .venv, cProfile
otherwise; a salt-call --local test.ping profiled alongside as the floor.

    tools/bench/profile [--out DIR]

Writes DIR/noop.txt, DIR/noop.html (pyinstrument) or DIR/noop.pstats, and
the same for ping. Run as root, under the machine-wide lock:
flock /tmp/ows-test.lock tools/bench/profile
"""

import argparse
import importlib.util
import os
import sys
import tempfile
import time

from bench.fleet import as_a_service_runs
from bench.noop import local_config, salt_call
from bench.websocket import converged_host
from rig.highstate import formula_tree
from rig.hosts import PYTHON, SALT_CALL, Rig


def profiled(host, config_dir, out, name, *args):
    """Run salt-call --local ARGS (configuration CONFIG_DIR) inside HOST under
    the profiler."""
    call = [SALT_CALL, "--local", "-c", config_dir, "--out=json", "--log-level=quiet", *args]
    if importlib.util.find_spec("pyinstrument"):
        text = os.path.join(out, f"{name}.txt")
        html = os.path.join(out, f"{name}.html")
        # One session, two renderings: load it back for the HTML.
        session = os.path.join(out, f"{name}.pyisession")
        start = time.perf_counter()
        proc = host.exec(
            PYTHON, "-m", "pyinstrument", "-r", "pyisession", "-o", session, *call, timeout=300
        )
        wall = time.perf_counter() - start
        host.exec(PYTHON, "-m", "pyinstrument", "--load", session, "-r", "text",
                  "--show-all", "-o", text)  # fmt: skip
        host.exec(PYTHON, "-m", "pyinstrument", "--load", session, "-r", "html", "-o", html)
    else:
        text = os.path.join(out, f"{name}.pstats")
        start = time.perf_counter()
        proc = host.exec(PYTHON, "-m", "cProfile", "-o", text, *call, timeout=300)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    print(f"{name}: {wall:.2f} s wall under the profiler -> {text}", flush=True)
    return text


def main(argv=None):
    as_a_service_runs()
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", default="/tmp/ows-profile")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="owsprof") as workdir:
        rig = Rig(workdir).create()
        try:
            host, pillar = converged_host(rig, workdir)
            # The formula's folders alone, as a master serves them; and the
            # repository (.venv included), as Host.salt_call serves it.
            config = local_config(host, formula_tree(os.path.join(workdir, "formula")), pillar)
            salt_call(host, config, "saltutil.sync_all")
            salt_call(host, config, "state.apply", "odoo_websocket")  # caches warm
            repo = os.path.join(host.root, "salt")
            profiled(host, config, args.out, "ping", "test.ping")
            profiled(host, config, args.out, "noop", "state.apply", "odoo_websocket")
            profiled(host, repo, args.out, "noop-repo", "state.apply", "odoo_websocket")
        finally:
            rig.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
