"""LoginThrottle and FailureLog: slow down, cut off and log password guessing (issue 13 "Hostile clients").

Per server process. Each failed login costs a delay before the answer that grows with the failures
seen from the same source address (0.5 s, 1 s, 2 s, ... capped), and a connection is closed after
MAX_PER_CONNECTION failures. A success from an address forgets its failures. The log of failures
is rate-limited: at most LOG_LIMIT lines per LOG_WINDOW seconds, the rest counted and reported in
the next line written. Pure bookkeeping: the clock is passed in; the session awaits the delay it
is given (msgsrv/services/logins.py is the shell).
"""

from __future__ import annotations

import time

BASE_DELAY = 0.5  # seconds after the first failure
MAX_DELAY = 8.0
MAX_PER_CONNECTION = 3  # failures before the connection is closed
FORGET_AFTER = 900.0  # seconds after which an address's failures no longer count
MAX_ADDRESSES = 10_000  # bounded memory under a spray of sources
LOG_LIMIT = 10  # failure lines per window
LOG_WINDOW = 60.0  # seconds


class LoginThrottle:
    def __init__(self, base: float = BASE_DELAY, cap: float = MAX_DELAY):
        self.base = base
        self.cap = cap
        self._failures: dict[str, tuple[int, float]] = {}  # address -> (count, last failure)

    def failed(self, address: str, now: float | None = None) -> float:
        """Record a failure from ADDRESS; return the seconds to wait before answering it."""
        now = time.monotonic() if now is None else now
        count, last = self._failures.get(address, (0, now))
        if now - last > FORGET_AFTER:
            count = 0
        count += 1
        if len(self._failures) >= MAX_ADDRESSES and address not in self._failures:
            self._failures.pop(next(iter(self._failures)))
        self._failures[address] = (count, now)
        return min(self.cap, self.base * (2 ** (count - 1)))

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def failures(self, address: str, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        count, last = self._failures.get(address, (0, now))
        return 0 if now - last > FORGET_AFTER else count


class FailureLog:
    """Rate limit for failure log lines: LIMIT lines per WINDOW seconds, a fixed window."""

    def __init__(self, limit: int = LOG_LIMIT, window: float = LOG_WINDOW):
        self.limit = limit
        self.window = window
        self._start = float("-inf")
        self._written = 0
        self._unlogged = 0

    def admit(self, now: float | None = None) -> int | None:
        """None: leave this failure out of the log; else log it, with this many left out before it."""
        now = time.monotonic() if now is None else now
        if now - self._start >= self.window:
            self._start, self._written = now, 0
        if self._written >= self.limit:
            self._unlogged += 1
            return None
        self._written += 1
        unlogged, self._unlogged = self._unlogged, 0
        return unlogged
