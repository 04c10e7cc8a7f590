"""Reading msprobe's counter database (msgsrv/probe/history.py writes it) for plots and /api/history.

Read-only (`mode=ro`: the console never creates or locks msprobe's file for writing) and bounded:
a plot asks for at most MAX_PLOT_POINTS buckets (the worst sample of each), the API for at most
MAX_ROWS rows. These functions block; the console runs them on its own small thread pool
(app.Reader), never in the watcher's loop.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from pathlib import Path

from msgsrv import forkguard
from msgsrv.console.plots import Point

MAX_PLOT_POINTS = 400
MAX_ROWS = 10000
BUSY_TIMEOUT = 1.0  # seconds to wait for msprobe's write lock before giving up on one read


class HistoryUnavailable(Exception):
    """The database exists but cannot be read now (locked past the timeout, damaged)."""


def _query(db: Path, sql: str, args: tuple) -> list[tuple]:
    """SQL's rows (the watcher's SQLite reads go through forkguard: see there why)."""
    if not Path(db).exists():
        return []
    try:
        return forkguard.sqlite_rows(db, sql, args, busy=BUSY_TIMEOUT)
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []  # msprobe has not recorded anything yet
        raise HistoryUnavailable(str(e)) from None
    except sqlite3.Error as e:
        raise HistoryUnavailable(str(e)) from None


def series_names(db: Path) -> list[str]:
    return [r[0] for r in _query(db, "SELECT DISTINCT series FROM samples ORDER BY series", ())]


def plot_points(db: Path, series: str, start: float, end: float, buckets: int = MAX_PLOT_POINTS) -> list[Point]:
    """SERIES between START and END: every sample while there are at most BUCKETS, else one point
    per time bucket holding its slowest sample, failed when any of its samples failed (a hang is
    never averaged away)."""
    raw = _query(db, "SELECT ts, value, ok FROM samples WHERE series = ? AND ts >= ? AND ts <= ? ORDER BY ts LIMIT ?",
                 (series, start, end, buckets + 1))
    if len(raw) > buckets:
        width = max((end - start) / max(buckets, 1), 1e-6)
        raw = _query(db, "SELECT MAX(ts), MAX(value), MIN(ok) FROM samples WHERE series = ? AND ts >= ? AND ts <= ? "
                         "GROUP BY CAST((ts - ?) / ? AS INTEGER) ORDER BY 1",
                     (series, start, end, start, width))
    return [Point(float(ts), float(v), bool(ok)) for ts, v, ok in raw]


def rows(db: Path, series: list[str] | None, start: float, end: float, limit: int = MAX_ROWS) -> list[tuple]:
    """(ts, series, value, ok) rows, oldest first; the newest LIMIT when there are more."""
    where, args = "ts >= ? AND ts <= ?", [start, end]
    if series:
        where += f" AND series IN ({','.join('?' * len(series))})"
        args += series
    found = _query(db, f"SELECT ts, series, value, ok FROM samples WHERE {where} ORDER BY ts DESC, series DESC LIMIT ?",
                   (*args, limit))
    return list(reversed(found))


def last_per_series(db: Path) -> dict[str, tuple[float, float, bool]]:
    """series -> (ts, value, ok) of its newest sample."""
    found = _query(db, "SELECT s.series, s.ts, s.value, s.ok FROM samples s JOIN "
                       "(SELECT series, MAX(ts) AS ts FROM samples GROUP BY series) m "
                       "ON s.series = m.series AND s.ts = m.ts", ())
    return {series: (float(ts), float(v), bool(ok)) for series, ts, v, ok in found}


# -- shaping for the API (pure) ------------------------------------------------------------------
def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


def as_dicts(found: list[tuple]) -> list[dict]:
    return [{"time": iso(ts), "ts": ts, "series": s, "value": v, "ok": bool(ok)} for ts, s, v, ok in found]


def as_csv(found: list[tuple]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["time", "ts", "series", "value", "ok"])
    for ts, s, v, ok in found:
        w.writerow([iso(ts), f"{ts:.3f}", s, repr(float(v)), 1 if ok else 0])
    return buf.getvalue()
