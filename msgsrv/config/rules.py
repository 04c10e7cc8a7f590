"""Validation as pure functions: names, values, and the cross-field rule of SPEC §3.

Each check raises ValueError (one line, ready for the user) or returns a list of problems.
"""

from __future__ import annotations

from msgsrv.config import catalogue
from msgsrv.config.catalogue import Parameter

TIMEOUT = "local.autorestart.timeout"
SCHEDULE = "local.schedule.msprobe"
SCHEDULE_ENABLE = "local.schedule.msprobe.enable"
CROSS_FIELD = (TIMEOUT, SCHEDULE, SCHEDULE_ENABLE)


def check_name(name: str) -> Parameter:
    p = catalogue.lookup(name)
    if p is None:
        hint = catalogue.suggest(name)
        more = f" (did you mean '{hint}'?)" if hint else ""
        raise ValueError(f"unknown parameter '{name}'{more}")
    return p


def check_value(name: str, text: str) -> None:
    """ValueError naming the parameter, the expected type and the reason."""
    p = check_name(name)
    if text == "":
        return  # `-v ""` stores an empty value: "unset but present", as the original
    try:
        catalogue.parse(p, text)
    except ValueError as e:
        raise ValueError(f"invalid value '{shown(text)}' for {name}: {e}") from None


def shown(text: str, limit: int = 60) -> str:
    """TEXT for a one-line message: unprintable characters escaped as listings write them, a
    long value cut short."""
    from msgsrv.config.listing import escape

    out = "".join(escape(ch) if not ch.isprintable() else ch for ch in text)
    return out if len(out) <= limit else out[:limit] + "..."


def _effective(overrides: dict[str, str], name: str) -> str | None:
    if name in overrides:
        return overrides[name]
    p = catalogue.lookup(name)
    return p.default if p else None


def check_cross_field(overrides: dict[str, str]) -> None:
    """SPEC §3: local.autorestart.timeout must be at least the longest gap between two msprobe runs."""
    from msgsrv.config.types import to_boolean, to_duration

    try:
        enabled = to_boolean(_effective(overrides, SCHEDULE_ENABLE) or "yes")
        sched_text = _effective(overrides, SCHEDULE) or ""
        timeout = to_duration(_effective(overrides, TIMEOUT) or "600")
        if not enabled or not sched_text.strip():
            return
        gap = catalogue.parse(catalogue.EXACT[SCHEDULE], sched_text).longest_gap()
    except ValueError:
        return  # a bad value is reported by check_value, not here
    if timeout < gap:
        raise ValueError(
            f"{TIMEOUT} ({_fmt(timeout)} s) must be at least the longest gap between two msprobe runs "
            f"({_fmt(gap)} s from {SCHEDULE} = \"{shown(sched_text, 200)}\")")


def _fmt(n: float) -> str:
    return str(int(n)) if float(n) == int(n) else str(n)


def validate_change(overrides: dict[str, str], changed: list[str]) -> None:
    """Check the names and values in CHANGED, then the cross-field rule if it concerns them."""
    for name in changed:
        if name in overrides:
            check_value(name, overrides[name])
    if any(n in CROSS_FIELD for n in changed):
        check_cross_field(overrides)


def validate_all(overrides: dict[str, str]) -> list[str]:
    """Every problem in the store, one line each (for `configutil -V`)."""
    problems = []
    for name in sorted(overrides):
        try:
            check_value(name, overrides[name])
        except ValueError as e:
            problems.append(str(e))
    try:
        check_cross_field(overrides)
    except ValueError as e:
        problems.append(str(e))
    return problems
