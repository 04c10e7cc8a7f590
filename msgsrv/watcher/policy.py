"""RestartBudget: at most LIMIT restarts per unit inside a sliding window (SPEC §3 "Restart limit").

Pure: the clock is passed in. A failure at time t counts the restarts granted in (t - window, t];
one granted exactly `window` seconds earlier has left the window.
"""

from __future__ import annotations

from collections import defaultdict, deque
from enum import StrEnum

LIMIT = 2  # SPEC §1: restarts happen at most twice within local.autorestart.timeout


class Verdict(StrEnum):
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
