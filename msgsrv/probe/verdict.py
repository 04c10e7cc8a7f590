"""Pure decisions about one probe result: its status, and which restart it asks for.

    classify(ProbeResult(elapsed=12.0, ok=False, timed_out=True), warn=5, timeout=10) -> HUNG

SPEC §2 / reference §4.1: smtp and lmtp restart the dispatcher; a store-group member restarts
the whole store group; ens is never restarted automatically.
"""

from __future__ import annotations

from enum import StrEnum

from msgsrv.components import BY_NAME, PROBE_TARGETS, unit_members
from msgsrv.probe.checks import ProbeResult


class Status(StrEnum):
    OK = "OK"  # answered within the warning threshold
    WARN = "WARN"  # answered, but slower than the warning threshold
    HUNG = "HUNG"  # accepted the connection (or not) but gave no answer within the timeout
    DOWN = "DOWN"  # refused the connection, closed it, or answered wrongly

    @property
    def healthy(self) -> bool:
        return self in (Status.OK, Status.WARN)


def classify(result: ProbeResult, warn: float, timeout: float) -> Status:
    """The boundaries: elapsed == warn is OK, elapsed == timeout (answered) is WARN."""
    if not result.ok:
        return Status.HUNG if result.timed_out else Status.DOWN
    if result.elapsed > timeout:
        return Status.HUNG
    if result.elapsed > warn:
        return Status.WARN
    return Status.OK


def component_of(service: str) -> str:
    """msprobe service name -> component (smtp, lmtp -> dispatcher)."""
    return PROBE_TARGETS[service][0]


def restart_unit(service: str) -> str | None:
    """The restart unit a failing SERVICE asks for; None = never restarted automatically (ens)."""
    return BY_NAME[component_of(service)].unit


def restart_request(services: list[str] | tuple[str, ...], enabled: list[str] | tuple[str, ...]) -> list[list[str]]:
    """Failing SERVICES -> one list of components per restart unit, in start order.

    A store-group member asks for every enabled store service (`store imap pop http`), so
    the watcher's log names the whole group; units are asked for once each.
    """
    units: list[str] = []
    for s in services:
        u = restart_unit(s)
        if u is not None and u not in units:
            units.append(u)
    out = []
    for u in units:
        failing = [component_of(s) for s in services if restart_unit(s) == u]
        out.append(unit_members(u, enabled) or list(dict.fromkeys(failing)))
    return out


def alarm_condition(value: float, threshold: float, direction: int = 1) -> bool:
    """The alarm rule of reference §4.3: direction 1 alarms above THRESHOLD, -1 below it."""
    return value < threshold if direction < 0 else value > threshold
