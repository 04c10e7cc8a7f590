"""forkguard: the watcher's SQLite reads on worker threads and its forks of built-in servers never
overlap, so no forked server inherits a SQLite mutex held by a thread it does not have (a child
that did hung at its first use of SQLite: 11 of 300 forks, measured without the guard)."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import pytest

from msgsrv import forkguard


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "history.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE samples (series TEXT, value REAL)")
    con.executemany("INSERT INTO samples VALUES (?, ?)", [(f"s{i % 10}", i) for i in range(3000)])
    con.commit()
    con.close()
    return path


def test_forks_taken_under_the_guard_never_leave_a_child_stuck_in_sqlite(db):
    stop = threading.Event()
    reads = []

    def reader():
        while not stop.is_set():
            reads.append(len(forkguard.sqlite_rows(db, "SELECT * FROM samples")))

    worker = threading.Thread(target=reader)
    worker.start()
    stuck = 0
    try:
        for _ in range(200):
            with forkguard.fork_allowed():
                pid = os.fork()
            if pid == 0:  # the child: SQLite at once, as imsched's first msprobe pass does
                signal.alarm(3)
                con = sqlite3.connect(db)
                con.execute("SELECT COUNT(*) FROM samples").fetchall()
                con.close()
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            stuck += status != 0
    finally:
        stop.set()
        worker.join()
    assert stuck == 0
    assert len(reads) > 10 and set(reads) == {3000}  # the reader really ran alongside


def test_a_read_waits_out_a_write_lock_without_holding_the_guard(db):
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")  # msprobe committing a pass, for longer than usual
    result = {}

    def read():
        t0 = time.monotonic()
        result["rows"] = len(forkguard.sqlite_rows(db, "SELECT * FROM samples", busy=5.0))
        result["took"] = time.monotonic() - t0

    t = threading.Thread(target=read)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    with forkguard.fork_allowed():  # a restart meanwhile does not wait for the locked read
        waited = time.monotonic() - t0
    writer.execute("COMMIT")
    t.join(10)
    writer.close()
    assert waited < 0.05
    assert result["rows"] == 3000 and result["took"] >= 0.3


def test_a_read_gives_up_after_its_busy_time(db):
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    t0 = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        forkguard.sqlite_rows(db, "SELECT * FROM samples", busy=0.2)
    assert 0.2 <= time.monotonic() - t0 < 2
    writer.execute("ROLLBACK")
    writer.close()


def test_a_fork_is_not_allowed_while_a_worker_thread_keeps_the_lock_past_the_wait():
    inside, leave = threading.Event(), threading.Event()

    def loader():
        with forkguard.no_fork():
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=loader)
    t.start()
    inside.wait(10)
    t0 = time.monotonic()
    with forkguard.fork_allowed(wait=0.1) as allowed:
        assert not allowed
    assert 0.1 <= time.monotonic() - t0 < 1
    leave.set()
    t.join(10)
    with forkguard.fork_allowed(wait=0.1) as allowed:
        assert allowed
