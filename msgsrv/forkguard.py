"""One lock between the watcher's worker threads that call into SQLite and its fork of a built-in
server (watcher/prefork.py).

A fork copies every mutex as it is at that instant. SQLite keeps process-wide ("static") mutexes,
one of them taken by every allocation it makes while its memory statistics are on (the default):
copied while a worker thread of the watcher held it (reading msprobe's history for the console or
a metrics scrape), it stays held in the child for ever, and that server's first use of SQLite
waits for ever; imsched records every msprobe pass in SQLite. Measured: a thread reading the
history in a loop, 300 forks, 11 children hung.

So the watcher's SQLite reads go through `sqlite_rows`, which holds the lock for one short read at
a time, never while waiting for msprobe's write lock (it asks SQLite not to wait, and sleeps
outside the lock before trying again); `fork_allowed()` takes the lock around the fork, so a
restart waits at most for one such read.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

SQLITE_BUSY = 5
RETRY_EVERY = 0.01  # seconds between tries while the database is locked

_lock = threading.Lock()


@contextlib.contextmanager
def fork_allowed() -> Iterator[None]:
    """Around os.fork() in the watcher: no worker thread is inside SQLite meanwhile."""
    with _lock:
        yield


def sqlite_rows(db: Path, sql: str, args: tuple = (), busy: float = 1.0) -> list[tuple]:
    """The rows of SQL on a read-only connection to DB; while another process holds the write lock,
    tried again for up to BUSY seconds. Raises sqlite3.Error as sqlite3 does."""
    import sqlite3

    deadline = time.monotonic() + busy
    while True:
        with _lock:
            try:
                con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0)
                try:
                    return con.execute(sql, args).fetchall()
                finally:
                    con.close()
            except sqlite3.OperationalError as e:
                locked = getattr(e, "sqlite_errorcode", None) == SQLITE_BUSY or "locked" in str(e)
                if not locked or time.monotonic() >= deadline:
                    raise
        time.sleep(RETRY_EVERY)
