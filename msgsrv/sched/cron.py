"""Schedules as pure values: 5 crontab fields + command, or a plain number of seconds + command.

Crontab semantics follow the original imsched: when both day-of-month and day-of-week are
restricted, BOTH must match (croniter's day_or=False), unlike cron's OR rule.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Schedule:
    text: str
    command: tuple[str, ...]
    every: float | None = None  # plain seconds
    cron: str | None = None  # the 5 fields

    def next_run(self, after: datetime) -> datetime:
        """The first run time strictly after AFTER (an aware or naive datetime)."""
        if self.every is not None:
            return after + timedelta(seconds=self.every)
        return _croniter()(self.cron, after, day_or=False).get_next(datetime)

    def longest_gap(self, horizon_days: int = 400, max_runs: int = 3000) -> float:
        """Longest time in seconds between two runs, looked at over HORIZON_DAYS or MAX_RUNS."""
        if self.every is not None:
            return float(self.every)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        it = _croniter()(self.cron, start, day_or=False)
        prev = it.get_next(datetime)
        end = prev + timedelta(days=horizon_days)
        gap = 0.0
        for _ in range(max_runs):
            nxt = it.get_next(datetime)
            gap = max(gap, (nxt - prev).total_seconds())
            if nxt > end:
                break
            prev = nxt
        return gap


def _croniter():
    """croniter's class, imported without the subprocess croniter's import runs.

    croniter (6.0 and later) calls platform.architecture() when it is imported, to tell a 32-bit
    interpreter; for the running interpreter that runs `file -b` on it in a subprocess (a fork of
    the importing process and an exec: 12-45 ms here, on imsched's start, the last of a suite's
    start, and in every configutil that checks a schedule). While croniter is imported, that one
    question is answered from struct (pointer size), as platform itself does when `file` is
    missing; any other call goes to the real function, which is put back at once."""
    module = sys.modules.get("croniter")
    if module is None:
        import platform
        import struct

        real = platform.architecture

        def architecture(executable=sys.executable, bits="", linkage=""):
            if executable == sys.executable:
                return f"{struct.calcsize('P') * 8}bit", linkage
            return real(executable, bits, linkage)

        platform.architecture = architecture
        try:
            import croniter as module
        finally:
            platform.architecture = real
    return module.croniter


_CRON_CHARS = set("0123456789*,-/")
MIN_EVERY, MAX_EVERY = 0.1, 366 * 86400  # a seconds schedule: no busy loop, at least yearly
PROBE_COMMAND = ("lib/msprobe",)  # what `local.schedule.msprobe = 600` runs


def _looks_cron(words: list[str]) -> bool:
    """`61 * * * * cmd` is a bad crontab line, not 61 seconds of `* * * * cmd`."""
    return len(words) >= 5 and all(w and set(w) <= _CRON_CHARS for w in words[1:5])


def parse(text: str, default_command: tuple[str, ...] | None = None) -> Schedule:
    """Parse a schedule; ValueError with a one-line reason when it is neither form.

    With DEFAULT_COMMAND, a bare number of seconds runs that command (`600` = every 600 s)."""
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise ValueError(f"bad schedule: {e}") from None
    if not words:
        raise ValueError("expected a schedule: 5 crontab fields and a command, or seconds and a command")
    every = None
    if not _looks_cron(words):
        w = words[0]
        body = w[1:] if w[:1] in "+-" else w
        every = float(w) if body and set(body) <= set("0123456789.") and body.count(".") <= 1 and body != "." \
            else None
    if every is not None:
        if every <= 0:
            raise ValueError("a schedule in seconds must be a positive number")
        if not MIN_EVERY <= every <= MAX_EVERY:
            raise ValueError(f"a schedule in seconds must be from {MIN_EVERY:g} to {MAX_EVERY} seconds")
        command = tuple(words[1:]) or default_command
        if not command:
            raise ValueError("a schedule needs a command after the seconds")
        return Schedule(text, command, every=int(every) if every == int(every) else every)
    fields = words
    if len(fields) < 6:
        raise ValueError("expected 5 crontab fields and a command (min hour dom month dow command), "
                         "or seconds and a command")
    cron = " ".join(fields[:5])
    croniter = _croniter()

    if not croniter.is_valid(cron):
        raise ValueError(f"invalid crontab fields '{cron}'")
    try:
        croniter(cron, datetime(2026, 1, 1), day_or=False).get_next(datetime)
    except Exception as e:  # croniter raises several types for impossible dates
        raise ValueError(f"crontab fields '{cron}' never match: {e}") from None
    return Schedule(text, tuple(words[5:]), cron=cron)
