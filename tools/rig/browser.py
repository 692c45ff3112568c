#!/usr/bin/env python3
"""
Load an Odoo page in headless Chromium (Debian's package) and report, from
the page itself, whether its bus websocket opened and got the subscribe
reply; save a screenshot. Drives Chromium over the DevTools protocol with the
websockets client. Meant to run inside the outside test host:

    browser.py http://odoo.example.com/web --resolve odoo.example.com=10.231.7.10 \
        --screenshot /tmp/odoo.png --watch 5

With --watch, the page is kept open that many seconds after it subscribed
and any close event of its websocket counts: "Websocket connection lost"
after a good start is what users report.
"""

import argparse
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.sync.client import connect

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--window-size=1000,600",
]


def devtools_page(port, deadline):
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as reply:
                pages = [p for p in json.load(reply) if p.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("Chromium's DevTools endpoint never answered")


class DevTools:
    def __init__(self, url):
        self.ws = connect(url, max_size=None, open_timeout=10)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=20))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(message["error"])
                return message["result"]

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


LOST = "Websocket connection lost"
PAGE_STATE = (
    "({subscribed: !!window.busSubscribed, events: window.busEvents || [],"
    " status: (document.getElementById('status') || {}).textContent || ''})"
)


def lost(result):
    """The close events the page saw (it notes every one of them)."""
    return [event for event in result.get("events", []) if event.startswith(LOST)]


def run(url, resolve, screenshot, timeout=20, watch=0, spki=None):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="odoo_websocket-chromium.")
    port = 9222
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}"]
    if resolve:
        name, address = resolve.split("=", 1)
        flags.append(f"--host-resolver-rules=MAP {name} {address}")
    if spki:
        # Trust a test certificate by its key's hash (no certificate store needed).
        flags.append(f"--ignore-certificate-errors-spki-list={spki}")
    proc = subprocess.Popen(
        [chromium, *flags, url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + timeout
        tools = DevTools(devtools_page(port, deadline))
        result = {}
        while time.monotonic() < deadline:
            result = tools.evaluate(PAGE_STATE) or {}
            if result.get("subscribed"):
                break
            time.sleep(0.2)
        if result.get("subscribed") and watch:
            # Keep the page open through the server's keep-alive pings; stop
            # at the first close event.
            started = time.monotonic()
            while time.monotonic() - started < watch and not lost(result):
                time.sleep(0.2)
                result = tools.evaluate(PAGE_STATE) or {}
            result["watched"] = round(time.monotonic() - started, 1)
        if screenshot:
            shot = tools.call("Page.captureScreenshot", format="png")
            with open(screenshot, "wb") as handle:
                handle.write(base64.b64decode(shot["data"]))
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--resolve", help="NAME=ADDRESS, as a DNS record would")
    parser.add_argument("--screenshot")
    parser.add_argument("--spki", help="base64 SHA-256 of a test certificate's public key to trust")
    parser.add_argument("--timeout", type=float, default=20)
    parser.add_argument(
        "--watch", type=float, default=0, help="seconds to keep watching once subscribed"
    )
    args = parser.parse_args(argv)
    result = run(args.url, args.resolve, args.screenshot, args.timeout, args.watch, args.spki)
    json.dump(result, sys.stdout)
    return 0 if result.get("subscribed") and not lost(result) else 1


if __name__ == "__main__":
    sys.exit(main())
