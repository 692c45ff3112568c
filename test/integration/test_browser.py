"""A person's view: the Odoo page loaded through nginx in headless Chromium,
on a browser host that is not the Odoo host."""

import json
import os

from rig.field import broken_docker_host
from rig.sandbox import REPO

BROWSER = os.path.join(REPO, "tools", "rig", "browser.py")
ARTIFACTS = os.path.join(REPO, "artifacts")
# The stand-in pings an idle websocket every PING seconds (Odoo: 45); the page
# is watched for WATCH seconds after it subscribed, so a few pings cross nginx.
PING, WATCH = 1, 4


def load_page(outside, host, screenshot, timeout, watch=0):
    proc = outside.python(
        BROWSER,
        "http://odoo.example.com/web",
        "--resolve", f"odoo.example.com={host.address}",
        "--screenshot", screenshot,
        "--timeout", str(timeout),
        "--watch", str(watch),
        timeout=120,
    )  # fmt: skip
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def test_web_client_websocket_opens_and_subscribes_after_apply(rig):
    os.makedirs(ARTIFACTS, exist_ok=True)
    host = rig.odoo_host(prepare=broken_docker_host, ping_interval=PING)
    outside = rig.outside_host()
    before_png = os.path.join(ARTIFACTS, "browser-before.png")
    after_png = os.path.join(ARTIFACTS, "browser-after.png")

    before = load_page(outside, host, before_png, timeout=4)
    # The page loads, but its websocket reaches a prefork worker: HTTP 500.
    assert before["subscribed"] is False
    assert before["status"].startswith("Websocket connection lost. Trying to reconnect...")

    code, result = host.apply_formula(host.sandbox.pillar())
    assert code == 0, result
    after = load_page(outside, host, after_png, timeout=20, watch=WATCH)
    assert after["subscribed"] is True, after
    assert after["events"][0] == "websocket open: ws://odoo.example.com/websocket?version=17.0-1"
    # "Connection lost" after a good start is the user's symptom: the socket
    # must stay open, through the keep-alive pings, for the whole watch.
    closed = [e for e in after["events"] if e.startswith("Websocket connection lost")]
    assert closed == [], after
    assert after["watched"] >= WATCH, after
    assert after["status"].startswith("subscribed")
    with open(after_png, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
