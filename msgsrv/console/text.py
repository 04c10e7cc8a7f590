"""Every user-visible line of the console (pages, API errors, watcher log lines), in one place.

Code and tests import the same constants (STYLE §4.6).
"""

from __future__ import annotations

# -- watcher log lines (data/log/watcher), next to the seed's own ---------------------------------
REQUEST = "Received request to {verb}:  {names} {who}"
PROBE_REQUEST = "Received request to run msprobe {who}"
LISTEN_FAILED = "watcher: unable to serve the console on {host}:{port}: {reason}"
LOAD_FAILED = "watcher: unable to load the console: {reason}"


def who(peer: str) -> str:
    """`(console, 127.0.0.1)`: who asked, as the watcher log shows it."""
    return f"(console, {peer})"


# -- action results --------------------------------------------------------------------------------
RESTART_NOTHING = "nothing to restart in unit {unit}: none of its members is enabled"
NOT_ENABLED = "{c} is not enabled ({switch} = no)"
PROBE_FAILED = "msprobe exited with status {rc}"
PROBE_HEALTHY = "msprobe: every service answered"
PROBE_UNHEALTHY = "msprobe: some services did not answer well (see above)"

# -- the timeline's filter (msgsrv/console/timeline.py GROUPS) ---------------------------------------
GROUP_LABELS = {"failure": "failures", "restart": "restarts", "request": "requests", "process": "starts and stops",
                "watcher": "watcher"}

# -- HTTP refusals (one line each, in the JSON body's "error") ---------------------------------------
NEED_LOGIN = "not logged in: open the link that start-msg printed (Console: http://…/?token=…)"
LOGIN_PAGE = "You are not logged in."
BAD_TOKEN = "wrong token"
BAD_CSRF = "missing or wrong CSRF token (X-CSRF-Token)"
CROSS_ORIGIN = "request from another origin refused"
UNKNOWN_COMPONENT = "unknown component {name!r}; known: {known}"
UNKNOWN_UNIT = "unknown restart unit {name!r}; units: {known}"
UNKNOWN_SERIES = "unknown series {name!r}"
UNKNOWN_LOG = "unknown log {name!r}; logs: {known}"
UNKNOWN_ACTION = "unknown action {id!r}"
BAD_RANGE = "range must be one of {known}"
BAD_NUMBER = "{name} must be a number"
BAD_FORMAT = "format must be json or csv"
BAD_BODY = "malformed request body: {reason}"
TOO_LARGE = "request body larger than {limit} bytes"
TOO_SLOW = "request not received within {seconds} seconds"
TOO_MANY = "too many connections to the console"
BUSY = "the console is busy reading history; try again"
HISTORY_UNAVAILABLE = "history database unavailable: {reason}"
UNKNOWN_FILTER = "unknown {name} {value!r}; known: {known}"
NOT_FOUND = "not found"
UNAVAILABLE = "the console could not be loaded; see data/log/watcher"


def banners(watcher: dict, units: list[dict]) -> list[dict]:
    """Notices for the top of every page: {level: info|warn|error, text}."""
    out = []
    if watcher.get("config_error"):
        out.append({"level": "error", "text": f"The configuration file does not parse ({watcher['config_error']}); "
                                              f"the watcher goes on with the last good configuration."})
    for u in units:
        if u["fatal"]:
            out.append({"level": "error",
                        "text": f"Gave up on the {u['name']} unit: restart budget spent "
                                f"({watcher['limit']} restarts within {_n(watcher['window'])} s). "
                                f"Start it again once the cause is fixed."})
    if watcher["ha"]:
        out.append({"level": "info", "text": "HA mode: when a unit fails a third time inside the window the "
                                             "watcher stops every server and exits, so the cluster fails over."})
    if not watcher["autorestart"]:
        out.append({"level": "warn", "text": "local.autorestart is no: failures are logged but nothing is "
                                             "restarted automatically."})
    return out


def _n(v: float) -> str:
    return str(int(v)) if float(v) == int(v) else str(v)
