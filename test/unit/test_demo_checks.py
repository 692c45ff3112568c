"""The demo's verdict includes the browser: without Chromium it prints a
FAIL line and fails, rather than leaving the line out (the integration test
of `make demo` requires the line before and after)."""

import types

import rig.demo as demo

GOOD = {"through_nginx": {"status": 101, "subscribed": True}, "direct": {"8069": False}}


def test_missing_chromium_is_a_failed_check_not_a_missing_line(monkeypatch, capsys):
    outside = types.SimpleNamespace(address="10.231.1.11")
    monkeypatch.setattr(demo, "check_from", lambda *_: GOOD)
    monkeypatch.setattr(demo, "whoami_from", lambda *_: {"remote_addr": outside.address,
                                                         "proxy_mode": True})  # fmt: skip
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    assert demo.show_checks(outside, types.SimpleNamespace(address="10.231.1.10")) is False
    shown = capsys.readouterr().out
    assert "[FAIL] Chromium shows: nothing, chromium is not installed" in shown
    assert "[ok  ] websocket through nginx: 101" in shown  # the rest still shows
