"""One lock between the watcher's worker threads that call into C libraries with process-wide locks
(SQLite, OpenSSL) and its fork of a built-in server (watcher/prefork.py).

A fork copies every mutex as it is at that instant. SQLite keeps process-wide ("static") mutexes,
one of them taken by every allocation it makes while its memory statistics are on (the default):
copied while a worker thread of the watcher held it (reading msprobe's history for the console or
a metrics scrape), it stays held in the child for ever, and that server's first use of SQLite
waits for ever; imsched records every msprobe pass in SQLite. Measured: a thread reading the
history in a loop, 300 forks, 11 children hung.

OpenSSL is the same: the console's first connection loads its application on a worker thread, and
importing aiohttp makes TLS contexts (the system's CA bundle read in); a child forked meanwhile
can wait for ever on one of OpenSSL's locks at its first TLS context or handshake (measured: a
thread making default contexts in a loop, 100 forks, 1 child hung).

So the watcher's SQLite reads go through `sqlite_rows`, which holds the lock for one short read at
a time, never while waiting for msprobe's write lock (it asks SQLite not to wait, and sleeps
outside the lock before trying again); the console's loader holds it (`no_fork()`) while it
imports. `fork_allowed()` takes the lock around a fork, waiting at most FORK_WAIT: a fork that
would wait longer (the console loading, ~0.2 s once) is not made, and the watcher exec's that
server instead (a new interpreter: slower to start, and nothing inherited).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

SQLITE_BUSY = 5
RETRY_EVERY = 0.01  # seconds between tries while the database is locked
FORK_WAIT = 0.05  # seconds a fork may wait for a worker thread (longer than one short read)

_lock = threading.Lock()


@contextlib.contextmanager
def fork_allowed(wait: float = FORK_WAIT) -> Iterator[bool]:
    """Around os.fork() in the watcher: True, and no worker thread inside SQLite or OpenSSL until
    the block ends; False when a worker thread kept the lock past WAIT seconds (do not fork)."""
    got = _lock.acquire(timeout=wait)
    try:
        yield got
    finally:
        if got:
            _lock.release()


@contextlib.contextmanager
def no_fork() -> Iterator[None]:
    """Around work on a worker thread that may hold a process-wide lock of a C library for a while
    (the console's imports): the watcher forks no server meanwhile (it exec's them)."""
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
