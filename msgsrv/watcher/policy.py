"""What to do about a failure: the restart budget and the decision (SPEC §3 "Restart limit").

Pure: the clock is passed in, nothing here logs, spawns or awaits.

RestartBudget: at most LIMIT restarts per unit inside a sliding window. A failure at time t
counts the restarts granted in (t - window, t]; one granted exactly `window` seconds earlier has
left the window. The grant times are the budget's whole state: `grants()` and `restore()` carry
them through data/run/supervision.json, so a new watcher that adopts the servers gives up exactly
where the old one would have (SPEC §4 "Nothing is forgotten").

decide(): a failure of a component -> one Action:

    NEVER      the component has no restart unit (ens): never restarted automatically
    NOT_ON     local.autorestart is no: logged, not restarted
    MERGE      a restart of its unit is queued or under way and has not started it yet: that restart
               covers this failure too (two failures, one restart, one grant)
    RESTART    a new grant: restart the unit
    GIVE_UP    the third failure inside the window: the unit is given up (FATAL; HA: shut down)

A member that dies after its unit's restart has started it is a NEW failure, never merged.
"""

from __future__ import annotations

from collections import defaultdict, deque
from enum import StrEnum

LIMIT = 2  # SPEC §1: restarts happen at most twice within local.autorestart.timeout


class Verdict(StrEnum):
    RESTART = "RESTART"
    GIVE_UP = "GIVE_UP"


class Action(StrEnum):
    NEVER = "NEVER"
    NOT_ON = "NOT_ON"
    MERGE = "MERGE"
    RESTART = "RESTART"
    GIVE_UP = "GIVE_UP"


class RestartBudget:
    def __init__(self, limit: int = LIMIT, window: float = 600.0):
        self.limit = limit
        self.window = window
        self._granted: dict[str, deque[float]] = defaultdict(deque)

    def _expire(self, unit: str, now: float) -> deque[float]:
        q = self._granted[unit]
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def record(self, unit: str, now: float) -> Verdict:
        """A failure of UNIT at NOW: RESTART (and count it) or GIVE_UP (the third inside the window)."""
        q = self._expire(unit, now)
        if len(q) >= self.limit:
            return Verdict.GIVE_UP
        q.append(now)
        return Verdict.RESTART

    def in_window(self, unit: str, now: float) -> int:
        return len(self._expire(unit, now))

    def reset(self, unit: str) -> None:
        self._granted.pop(unit, None)

    def snapshot(self, now: float) -> dict[str, int]:
        return {u: self.in_window(u, now) for u in list(self._granted)}

    def grants(self) -> dict[str, list[float]]:
        """Every grant time still remembered, per unit (for the state file)."""
        return {u: list(q) for u, q in self._granted.items() if q}

    def restore(self, grants: dict[str, list[float]]) -> None:
        """Take over GRANTS (unit -> times on the same clock as later `record` calls)."""
        for unit, times in grants.items():
            self._granted[unit] = deque(sorted(float(t) for t in times))


def decide(unit: str | None, *, autorestart: bool, merge: bool, budget: RestartBudget, now: float) -> Action:
    """The Action for one failure of a member of UNIT (see the module docstring)."""
    if unit is None:
        return Action.NEVER
    if not autorestart:
        return Action.NOT_ON
    if merge:
        return Action.MERGE
    if budget.record(unit, now) is Verdict.RESTART:
        return Action.RESTART
    return Action.GIVE_UP
