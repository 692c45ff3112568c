"""
Watch this host's websocket (``odoo_websocket.verify`` with the
settings the formula uses) and fire an event when its verdict changes, so
that a reactor can put the formula back (``salt://odoo_websocket/reactor/``).

Events, under ``salt/beacon/<minion id>/odoo_websocket/``:

- ``broken``: the verdict went from healthy (or unknown: the first check
  after the minion started) to broken; ``failed`` lists the failing checks.
  It asks for a heal: attempt 1.
- ``still_broken``: not a change of verdict, a repeated heal request: the
  host is still broken ``backoff`` seconds after the first request (the heal
  failed, or nothing answered), twice as long after each further one (at
  most an hour). Attempts 2 to ``attempts``, none while a state run is in
  progress on this minion.
- ``giving_up``: ``attempts`` requests went out and the host is still
  broken one backoff later: once, with an error in the minion's log; then
  silence until the host is healthy again.
- ``healthy``: the host passed ``healthy_after`` checks in a row after
  being broken (``broken_for_s``, ``attempts`` used). One healthy check
  between broken ones does not end the episode (hysteresis): a flapping
  host gets ``attempts`` heal requests and one give-up, not a storm
  (docs/benchmarks.md, "Self-heal").

No check runs while a state run or an operator's ``odoo_websocket.*``
command is in progress, nor while an operator's restore or clean holds the
host (``odoo_websocket.check_target``'s ``hold_file``) until the formula is
applied again: a person's explicit command is never undone by a heal.

The verdict and the count live in a small file in the minion's cache
(``odoo_websocket_beacon.json``), so a minion restart or a beacon refresh
neither loses a broken host nor resets its attempts.

Configuration (pillar or minion config):

.. code-block:: yaml

    beacons:
      odoo_websocket:
        - interval: 60    # seconds between checks (Salt's own beacon option)
        - attempts: 3     # heal requests before giving up
        - timeout: 3      # seconds for each connection of the check
        - backoff: 60     # seconds before the 2nd request, doubled for each next one
        - healthy_after: 3  # healthy checks in a row that end a broken episode
"""

import contextvars
import json
import logging
import os
import re
import threading
import time

import salt.utils.beacons
import salt.utils.data
import salt.utils.minion

log = logging.getLogger(__name__)

__virtualname__ = "odoo_websocket"

DEFAULTS = {"attempts": 3, "timeout": 3, "saltenv": "base", "backoff": 60, "healthy_after": 3}
MAX_BACKOFF = 3600
# Keys Salt's beacon framework reads itself (and strips or adds).
FRAMEWORK = {"interval", "enabled", "disable_during_state_run", "run_once", "beacon_module",
             "_beacon_name"}  # fmt: skip
STATE_FILE = "odoo_websocket_beacon.json"


def __virtual__():
    return __virtualname__


def _config(config):
    merged = dict(DEFAULTS)
    merged.update(salt.utils.beacons.list_to_dict(config) if isinstance(config, list) else config)
    return merged


def validate(config):
    """
    The configuration is a list of one-key dicts (or a dict): ``attempts``
    (an integer >= 1), ``timeout`` (seconds > 0), ``saltenv``, and Salt's
    own beacon options (``interval``...).
    """
    if not isinstance(config, list | dict):
        return False, "odoo_websocket beacon: the configuration must be a list of dicts"
    if isinstance(config, list) and not all(isinstance(item, dict) for item in config):
        return False, "odoo_websocket beacon: the configuration must be a list of dicts"
    merged = _config(config)
    unknown = sorted(set(merged) - set(DEFAULTS) - FRAMEWORK)
    if unknown:
        return False, f"odoo_websocket beacon: unknown option(s): {', '.join(unknown)}"
    attempts, timeout = merged["attempts"], merged["timeout"]
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        return False, f"odoo_websocket beacon: attempts must be an integer >= 1, got {attempts!r}"
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        return False, f"odoo_websocket beacon: timeout must be a number > 0, got {timeout!r}"
    if not isinstance(merged["saltenv"], str):
        return False, "odoo_websocket beacon: saltenv must be a string"
    backoff, after = merged["backoff"], merged["healthy_after"]
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or backoff < 0:
        return False, f"odoo_websocket beacon: backoff must be a number >= 0, got {backoff!r}"
    if isinstance(after, bool) or not isinstance(after, int) or after < 1:
        return False, f"odoo_websocket beacon: healthy_after must be an integer >= 1, got {after!r}"
    return True, "Valid beacon configuration"


def _state_path():
    return os.path.join(__opts__["cachedir"], STATE_FILE)


def _load():
    try:
        with open(_state_path(), encoding="utf-8") as handle:
            state = json.load(handle)
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(state):
    path = _state_path()
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump(state, handle)
    os.rename(tmp, path)


def _state_run_in_progress():
    """A state run (the reactor's heal, or a person's) or an operator's
    command (a restore, a clean) is changing the host: its transaction proves
    the websocket itself, and a check now could catch nginx mid-reload."""
    return any(
        re.match(r"(state|odoo_websocket)\.", job.get("fun", ""))
        for job in salt.utils.minion.running(__opts__)
    )


def _held(settings):
    """The operator's restore or clean that holds healing off (the mark
    ``odoo_websocket.check_target`` names), or None: a person's explicit
    command wins over the beacon until the formula is applied again."""
    try:
        with open(settings.get("hold_file") or "", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _fetch(job, saltenv):
    try:
        # Where browsers reach each instance (an adopted site's own port).
        job["verify"] = __salt__["odoo_websocket.check_target"](saltenv)
    except Exception as exc:  # pylint: disable=broad-except
        job["error"] = f"{type(exc).__name__}: {exc}"


def _settings(options):
    """The verify settings, read in a thread: the beacon runs in the minion's
    main loop, and fetching defaults.yaml from the master there would block
    that loop (and every job's return, which goes through it). None until
    the first read is done; the last settings while a changed pillar's are
    read."""
    pillar = salt.utils.data.traverse_dict_and_list(
        __opts__.get("pillar", {}), "odoo_websocket", {}
    )
    key = json.dumps([options["saltenv"], pillar], sort_keys=True, default=str)
    cache = __context__.setdefault("odoo_websocket_beacon", {})
    if cache.get("key") == key:
        return cache["verify"]
    job = cache.get("job")
    if job and job["key"] == key and not job["thread"].is_alive():
        del cache["job"]
        if "error" in job:
            log.error("odoo_websocket beacon: cannot read the settings: %s", job["error"])
        else:
            cache.update(key=key, verify=job["verify"])
            return job["verify"]
    elif not job or not job["thread"].is_alive():
        job = {"key": key}
        # Salt's loader keeps __pillar__, __grains__ and __context__ in context
        # variables, which a new thread does not inherit: run it in a copy.
        run = contextvars.copy_context().run
        job["thread"] = threading.Thread(
            target=run, args=(_fetch, job, options["saltenv"]), daemon=True
        )
        cache["job"] = job
        job["thread"].start()
    return cache.get("verify")


def _verdict(options):
    settings = _settings(options)
    if settings is None or not settings.get("enabled", True):
        return None
    held = _held(settings)
    if held:
        log.debug("odoo_websocket beacon: held off by the operator's %s (since %s) until the "
                  "next apply", held.get("command"), held.get("since"))  # fmt: skip
        return None
    return __salt__["odoo_websocket.verify"](target=settings, timeout=options["timeout"])


def _event(tag, verdict, state, **extra):
    failed = [{"name": c["name"], "detail": c["detail"]} for c in verdict["checks"] if not c["ok"]]
    data = {"tag": tag, "healthy": verdict["ok"], "summary": verdict["summary"], "failed": failed}
    if state.get("since"):
        data["broken_since"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state["since"]))
    data.update(extra)
    return data


def _next(state, verdict, options, now):
    """(new state, events) for one check (OPTIONS: attempts, backoff,
    healthy_after)."""
    attempts, broken = int(options["attempts"]), state.get("verdict") == "broken"
    if verdict["ok"]:
        if not broken:
            return {"verdict": "healthy"}, []
        streak = state.get("healthy_streak", 0) + 1
        if streak < int(options["healthy_after"]):  # not over yet: a flap is no recovery
            return dict(state, healthy_streak=streak), []
        extra = {"broken_for_s": round(now - state["since"], 1), "attempts": state["requests"]}
        return {"verdict": "healthy"}, [_event("healthy", verdict, state, **extra)]
    if not broken:
        state = {"verdict": "broken", "since": now, "requests": 1, "gave_up": False,
                 "asked": now}  # fmt: skip
        return state, [_event("broken", verdict, state, attempt=1, attempts=attempts)]
    state = dict(state, healthy_streak=0)
    if state.get("gave_up"):
        return state, []
    wait = min(float(options["backoff"]) * 2 ** (state["requests"] - 1), MAX_BACKOFF)
    if now - state.get("asked", state["since"]) < wait:
        return state, []  # the last request's heal may still be under way
    if state["requests"] < attempts:
        state["requests"] += 1
        state["asked"] = now
        extra = {"attempt": state["requests"], "attempts": attempts}
        return state, [_event("still_broken", verdict, state, **extra)]
    state["gave_up"] = True
    log.error(
        "odoo_websocket beacon: GIVING UP on %s: still broken after %s heal request(s) since "
        "%s: %s",
        __opts__.get("id"),
        state["requests"],
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state["since"])),
        verdict["summary"],
    )
    return state, [_event("giving_up", verdict, state, attempts=state["requests"])]


def beacon(config):
    """
    Check the websocket as ``odoo_websocket.verify`` does (skipped while a
    state run is in progress) and return the events of a changed verdict
    (see the module's documentation).

    .. code-block:: yaml

        beacons:
          odoo_websocket:
            - interval: 60
            - attempts: 3
    """
    options = _config(config)
    if _state_run_in_progress():
        log.debug("odoo_websocket beacon: a state run is in progress, not checking")
        return []
    try:
        verdict = _verdict(options)
    except Exception as exc:  # pylint: disable=broad-except
        # A bad pillar or a missing module: say so, but never claim a verdict.
        log.error("odoo_websocket beacon: cannot check the websocket: %s", exc)
        return []
    if verdict is None:  # settings not read yet, or verify:enabled false
        return []
    old = _load()
    state, events = _next(old, verdict, options, time.time())
    if state != old:
        _save(state)
    for event in events:
        log.info("odoo_websocket beacon: %s: %s", event["tag"], verdict["summary"])
    return events
