"""`make demo`'s program: salt-call --local on pillar.example in a sandbox."""

import os
import subprocess
import sys

from sandbox import REPO


def test_demo_fixes_the_sandbox_and_second_run_changes_nothing():
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "bin", "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    before, after = out.split("== After", 1)
    assert "Odoo port 8072 published on every interface" in before
    assert "odoo.conf: proxy_mode = (not set)" in before
    assert "Odoo port 8072 published on 127.0.0.1" in after
    assert "odoo.conf: proxy_mode = True" in after
    assert "nginx: location /websocket {" in after
    assert "nginx -t on the whole tree: ok" in after
    assert "Second run: 0 change(s)." in out
    assert "db_password = ********" in out and "p%ss;word" not in out
    assert "Sandbox kept" not in out
