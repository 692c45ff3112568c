"""`make demo`'s program: a broken host fixed by one state.apply, as seen
from another host, leaving nothing behind."""

import os
import subprocess

from rig.sandbox import REPO


def namespaces():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_demo_shows_the_failure_then_the_fix_and_cleans_up():
    before = namespaces()
    proc = subprocess.run(
        [os.path.join(REPO, "bin", "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    broken, _, rest = out.partition("salt-call --local state.apply odoo_websocket")
    fixed = rest.partition("After, from the browser host:")[2].partition("Second run:")[0]
    assert "[FAIL] websocket through nginx: HTTP 500" in broken
    # The host's own site, for its address and odoo.example.com, is adopted.
    adopted = "Adopting the existing site /etc/nginx/sites-available/odoo for 10."
    assert adopted in rest and "kept names odoo.example.com" in rest
    assert "[FAIL] Odoo port 8072 from the browser host: answers (bypasses nginx)" in broken
    assert "[ok  ] websocket through nginx: 101 Switching Protocols, subscribe answered" in fixed
    assert "[ok  ] Odoo port 8069 from the browser host: refused" in fixed
    assert "proxy_mode on" in fixed
    # The browser's own view, before and after: required, never left out.
    assert "[FAIL] Chromium shows: Websocket connection lost" in broken
    assert "[ok  ] Chromium shows: subscribed" in fixed
    assert "FAIL" not in fixed
    assert "Second run changed 0 state(s). Demo succeeded." in out
    assert namespaces() == before
