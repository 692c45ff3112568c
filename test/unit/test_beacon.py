"""The odoo_websocket beacon's verdict machine and configuration check, with
the check's verdicts given (the fleet test runs it for real, in salt-minions
on the rig, against nginx and the stand-in Odoo)."""

import copy
import importlib.util
import os

import pytest

from rig.sandbox import REPO

SPEC = importlib.util.spec_from_file_location(
    "odoo_websocket_beacon", os.path.join(REPO, "_beacons", "odoo_websocket.py")
)
beacon = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(beacon)

OK = {"ok": True, "latency_ms": 2, "checks": [
    {"name": "websocket handshake", "ok": True, "detail": "101 Switching Protocols via x"},
    {"name": "Odoo ports", "ok": True, "detail": "Odoo ports not reachable"},
]}  # fmt: skip
INVALID = "HTTP 400 BAD REQUEST: Invalid upgrade header"
BROKEN = {"ok": False, "latency_ms": 2, "checks": [
    {"name": "websocket handshake", "ok": False, "detail": INVALID},
    {"name": "Odoo ports", "ok": True, "detail": "Odoo ports not reachable"},
]}  # fmt: skip


@pytest.fixture
def minion(tmp_path, monkeypatch):
    """The beacon as a minion loads it: a cache folder, the check's verdicts
    queued, no state run in progress unless a test says so."""
    verdicts, jobs = [], []
    settings = {"verify": {"enabled": True, "server_name": "odoo.example.com",
                           "address": "127.0.0.1", "port": 80, "tls": False,
                           "realtime_path": "/websocket", "odoo_ports": [8069, 8072]}}  # fmt: skip
    beacon.__opts__ = {"cachedir": str(tmp_path), "id": "odoo1", "pillar": {}}
    beacon.__context__ = {}

    def verify(target, timeout):  # the operator's command: the verdict and its summary
        verdict = copy.deepcopy(verdicts.pop(0))
        return dict(verdict, summary="ok" if verdict["ok"] else "check FAILED")

    beacon.__salt__ = {
        "odoo_websocket.check_target": lambda saltenv: settings["verify"],
        "odoo_websocket.verify": verify,
    }
    monkeypatch.setattr(beacon.salt.utils.minion, "running", lambda opts: jobs)
    settings_read(beacon)
    return verdicts, jobs, settings


def settings_read(module, options=None):
    """Start the settings' read (in a thread, as on a minion) and wait for it."""
    options = dict(module.DEFAULTS, **(options or {}))
    first = module._settings(options)
    job = module.__context__["odoo_websocket_beacon"].get("job")
    if job:
        job["thread"].join(5)
    return first, module._settings(options)


def tags(events):
    return [event["tag"] for event in events]


# One check per heal request and one healthy check ending an episode: the
# verdict machine's steps one by one (hysteresis and backoff are below).
QUICK = ({"backoff": 0}, {"healthy_after": 1})


def run(minion, *verdicts, config=({"attempts": 2}, *QUICK)):
    queue = minion[0]
    fired = []
    for verdict in verdicts:
        queue.append(verdict)
        fired.append(tags(beacon.beacon(list(config))))
    return fired


def test_only_a_changed_verdict_fires(minion):
    assert run(minion, OK, OK, BROKEN) == [[], [], ["broken"]]
    assert run(minion, OK, OK) == [["healthy"], []]


def test_broken_at_start_asks_for_a_heal_and_says_what_failed(minion):
    minion[0].append(BROKEN)
    (event,) = beacon.beacon([{"attempts": 2}])
    assert event["tag"] == "broken" and event["attempt"] == 1 and event["attempts"] == 2
    assert event["failed"] == [{"name": "websocket handshake", "detail": INVALID}]
    assert event["healthy"] is False and "broken_since" in event


def test_repeats_the_request_then_gives_up_loudly_once(minion, caplog):
    fired = run(minion, BROKEN, BROKEN, BROKEN, BROKEN, OK)
    assert fired == [["broken"], ["still_broken"], ["giving_up"], [], ["healthy"]]
    assert "GIVING UP on odoo1: still broken after 2 heal request(s)" in caplog.text


def test_healthy_event_counts_the_attempts(minion):
    minion[0].extend([BROKEN, BROKEN, OK])
    events = [beacon.beacon([{"attempts": 3}, *QUICK]) for _ in range(3)]
    assert events[2][0]["attempts"] == 2 and events[2][0]["broken_for_s"] >= 0


def test_the_verdict_survives_a_minion_restart(minion):
    """Kept in the minion's cache, not in memory: a restarted minion (a new
    loader) neither forgets a broken host nor resets its attempts."""
    assert run(minion, BROKEN) == [["broken"]]
    saved = os.path.join(beacon.__opts__["cachedir"], beacon.STATE_FILE)
    assert os.stat(saved).st_mode & 0o777 == 0o600
    fresh = importlib.util.module_from_spec(SPEC)
    SPEC.loader.exec_module(fresh)
    fresh.__opts__, fresh.__salt__, fresh.__context__ = beacon.__opts__, beacon.__salt__, {}
    settings_read(fresh)
    minion[0].append(BROKEN)
    assert tags(fresh.beacon([{"attempts": 2}, *QUICK])) == ["still_broken"]


def test_no_check_while_a_state_run_changes_the_host(minion):
    minion[1].append({"fun": "state.apply", "jid": "1"})
    minion[0].append(BROKEN)
    assert beacon.beacon([{"attempts": 2}]) == []
    assert minion[0] == [BROKEN]  # not even checked


def test_verify_disabled_means_no_verdict(minion):
    minion[2]["verify"]["enabled"] = False
    assert beacon.beacon([]) == []


def test_settings_are_read_off_the_minions_loop_and_again_when_the_pillar_changes(minion):
    """The first tick only starts the read (no verdict yet); a changed
    pillar is read again while the last settings keep serving."""
    beacon.__context__ = {}
    first, then = settings_read(beacon)
    assert first is None and then["server_name"] == "odoo.example.com"
    beacon.__opts__["pillar"] = {"odoo_websocket": {"nginx": {"server_name": ["other"]}}}
    minion[2]["verify"] = dict(minion[2]["verify"], server_name="other")
    stale, fresh = settings_read(beacon)
    assert stale["server_name"] == "odoo.example.com" and fresh["server_name"] == "other"


def test_unreadable_settings_are_logged_and_retried(minion, caplog):
    beacon.__context__ = {}

    def broken(saltenv):
        raise ValueError("Invalid pillar")

    beacon.__salt__ = dict(beacon.__salt__, **{"odoo_websocket.check_target": broken})
    assert settings_read(beacon) == (None, None)
    assert "cannot read the settings: ValueError: Invalid pillar" in caplog.text


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ({"interval": 2}, None),
        ([{"interval": 2}, {"attempts": 5}, {"timeout": 1.5}], None),
        ([{"attempts": 0}], "attempts must be an integer >= 1"),
        ([{"attempts": True}], "attempts must be an integer >= 1"),
        ([{"timeout": "3"}], "timeout must be a number > 0"),
        ([{"atempts": 3}], "unknown option(s): atempts"),
        ([{"backoff": -1}], "backoff must be a number >= 0"),
        ([{"healthy_after": 0}], "healthy_after must be an integer >= 1"),
        ("attempts: 3", "must be a list of dicts"),
        (["attempts"], "must be a list of dicts"),
    ],
)
def test_validate(config, why):
    valid, comment = beacon.validate(config)
    assert valid is (why is None), comment
    if why:
        assert why in comment


def test_an_operators_restore_or_clean_is_never_healed_away(minion, tmp_path):
    """Issue 23, item 7: the operator's clean leaves the host without the
    formula (a broken websocket, on purpose): no heal request until the next
    apply releases the hold; then the beacon asks again."""
    verdicts, jobs, settings = minion
    hold = tmp_path / "operator-hold.json"
    settings["verify"]["hold_file"] = str(hold)
    settings_read(beacon)
    hold.write_text('{"command": "odoo_websocket.clean", "since": "2026-12-06T08:00:00Z"}')
    verdicts.extend([BROKEN] * 3)
    for _ in range(3):
        assert beacon.beacon([{"attempts": 3}]) == []
    assert len(verdicts) == 3  # not even checked
    hold.unlink()  # the next apply released it
    assert [e["tag"] for e in beacon.beacon([{"attempts": 3}])] == ["broken"]


def test_no_check_while_an_operators_command_runs(minion):
    verdicts, jobs, _ = minion
    jobs.append({"fun": "odoo_websocket.restore"})
    verdicts.append(BROKEN)
    assert beacon.beacon([{"attempts": 3}]) == [] and len(verdicts) == 1


def test_a_flapping_host_gets_a_few_requests_and_one_give_up(minion, monkeypatch):
    """Issue 23, item 8: 4 broken checks, 1 healthy, over and over (a check
    a minute, two hours): one healthy check does not end the episode, and
    requests back off, so a flapping host is not healed in a storm."""
    clock = [0.0]
    monkeypatch.setattr(beacon.time, "time", lambda: clock[0])
    fired = []
    for minute in range(120):
        minion[0].append(OK if minute % 5 == 4 else BROKEN)
        fired += tags(beacon.beacon([{"attempts": 3}]))
        clock[0] += 60
    assert fired == ["broken", "still_broken", "still_broken", "giving_up"], fired


def test_backoff_spaces_the_requests_and_healthy_after_confirms(minion, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(beacon.time, "time", lambda: clock[0])
    config = [{"attempts": 3}, {"backoff": 10}, {"healthy_after": 2}]
    seen = {}
    for second in range(0, 100, 5):  # a check every 5 s, broken for 65 s
        clock[0] = float(second)
        minion[0].append(BROKEN if second < 65 else OK)
        for event in beacon.beacon(config):
            seen[event["tag"]] = second
    # 10 s after the first request, then 20 s after the second; healthy once
    # two checks in a row passed (65 and 70 s).
    assert seen == {"broken": 0, "still_broken": 30, "healthy": 70}, seen
