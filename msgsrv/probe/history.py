"""The counter database: every measured response time and disk figure, kept for a bounded time.

SQLite at root.history_db, one table:

    samples(ts REAL, series TEXT, value REAL, ok INTEGER)

`series` is a probe service name (`imap`) or a disk (`disk:store`, `disk:queue`, value = percent
free). Rows older than `local.probe.history.days` are deleted on every write, so the file stays
bounded; the index on `ts` keeps that delete a range lookup, not a scan of every row (imsched
may record a pass every second: a million rows a day). The statistics and the sparkline are pure functions over plain lists.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
from dataclasses import dataclass
from pathlib import Path

DAY = 86400.0
SPARKS = "▁▂▃▄▅▆▇█"
DAMAGED = ("SQLITE_NOTADB", "SQLITE_CORRUPT")  # a file sqlite cannot use: kept aside, a new one begun
SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (ts REAL NOT NULL, series TEXT NOT NULL, value REAL NOT NULL,
                                    ok INTEGER NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS samples_series_ts ON samples (series, ts);
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts);
"""


# -- pure parts -------------------------------------------------------------------------------
def cutoff(now: float, days: float) -> float:
    """Samples taken before this time are dropped; a sample exactly `days` old is kept."""
    return now - days * DAY


@dataclass(frozen=True)
class Summary:
    series: str
    count: int
    failures: int
    min: float
    median: float
    max: float
    last: float
    spark: str

    def to_dict(self) -> dict:
        return {"series": self.series, "count": self.count, "failures": self.failures, "min": self.min,
                "median": self.median, "max": self.max, "last": self.last, "spark": self.spark}


def sparkline(values: list[float], width: int = 30) -> str:
    """The last WIDTH values as block characters scaled between their min and max."""
    vals = values[-width:]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    if hi == lo:
        return SPARKS[0] * len(vals)
    top = len(SPARKS) - 1
    return "".join(SPARKS[round((v - lo) / (hi - lo) * top)] for v in vals)


def summarize(series: str, values: list[float], oks: list[bool] | None = None, width: int = 30) -> Summary:
    oks = oks if oks is not None else [True] * len(values)
    return Summary(series, len(values), sum(1 for o in oks if not o), min(values), statistics.median(values),
                   max(values), values[-1], sparkline(values, width))


# -- the database shell -----------------------------------------------------------------------
class History:
    def __init__(self, path: Path, days: float = 30, timeout: float = 5.0):
        self.path = Path(path)
        self.days = days
        self.timeout = timeout  # seconds to wait for another writer's lock

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.timeout)
        db.executescript(SCHEMA)
        return db

    def record(self, samples: list[tuple[str, float, bool]], now: float) -> str | None:
        """Store (series, value, ok) samples taken at NOW and drop what is older than the bound.
        A damaged database file (not a database, malformed) is kept aside under a new name and a
        new one is started, so that history goes on: returns where it was put, else None."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        aside = None
        try:
            self._store(samples, now)
        except sqlite3.DatabaseError as e:
            if getattr(e, "sqlite_errorname", "") not in DAMAGED:
                raise  # busy, locked, full: not the file's fault
            aside = self.path.with_name(f"{self.path.name}.damaged-{int(now)}")
            os.replace(self.path, aside)
            self._store(samples, now)
        return aside and str(aside)

    def _store(self, samples: list[tuple[str, float, bool]], now: float) -> None:
        db = self._connect()
        try:
            with db:
                db.executemany("INSERT INTO samples (ts, series, value, ok) VALUES (?, ?, ?, ?)",
                               [(now, s, float(v), 1 if ok else 0) for s, v, ok in samples])
                db.execute("DELETE FROM samples WHERE ts < ?", (cutoff(now, self.days),))
        finally:
            db.close()

    def values(self, series: str) -> tuple[list[float], list[bool]]:
        if not self.path.exists():
            return [], []
        db = self._connect()
        try:
            rows = db.execute("SELECT value, ok FROM samples WHERE series = ? ORDER BY ts", (series,)).fetchall()
        finally:
            db.close()
        return [r[0] for r in rows], [bool(r[1]) for r in rows]

    def series(self) -> list[str]:
        if not self.path.exists():
            return []
        db = self._connect()
        try:
            return [r[0] for r in db.execute("SELECT DISTINCT series FROM samples ORDER BY series")]
        finally:
            db.close()

    def summaries(self, names: list[str] | None = None) -> list[Summary]:
        out = []
        for s in names if names else self.series():
            vals, oks = self.values(s)
            if vals:
                out.append(summarize(s, vals, oks))
        return out

    def extremes(self, series: str) -> tuple[float, float] | None:
        """(lowest, highest) recorded value of SERIES, for the alarm mail."""
        vals, _ = self.values(series)
        return (min(vals), max(vals)) if vals else None
