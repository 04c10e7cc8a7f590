"""msgsrv/probe/history.py: bounds, statistics and sparkline."""

from msgsrv.probe.history import DAY, History, cutoff, sparkline, summarize


def test_cutoff_keeps_exactly_days_old():
    assert cutoff(100 * DAY, 30) == 70 * DAY


def test_sparkline_scales_between_min_and_max():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([3, 3, 3]) == "▁▁▁"
    assert sparkline([]) == ""
    assert len(sparkline(list(range(100)), width=30)) == 30


def test_summarize_min_median_max():
    s = summarize("imap", [0.3, 0.1, 0.2, 5.0], [True, True, True, False])
    assert (s.count, s.failures, s.min, s.median, s.max, s.last) == (4, 1, 0.1, 0.25, 5.0, 5.0)


def test_history_is_bounded_by_days(tmp_path):
    h = History(tmp_path / "c.sqlite", days=2)
    h.record([("imap", 0.1, True)], now=0.0)
    h.record([("imap", 0.2, True)], now=1 * DAY)
    h.record([("imap", 0.3, True), ("disk:store", 50.0, True)], now=2 * DAY)
    assert h.values("imap")[0] == [0.1, 0.2, 0.3]  # 2 days old: kept
    h.record([("imap", 0.4, False)], now=2 * DAY + 1)
    assert h.values("imap") == ([0.2, 0.3, 0.4], [True, True, False])
    assert h.series() == ["disk:store", "imap"]
    assert h.extremes("imap") == (0.2, 0.4)


def test_missing_database_is_empty(tmp_path):
    h = History(tmp_path / "none.sqlite")
    assert h.summaries() == [] and h.extremes("imap") is None
    assert not (tmp_path / "none.sqlite").exists()


def test_pruning_old_samples_uses_the_ts_index(tmp_path):
    """With a pass every second the table holds millions of rows: the delete of every write must
    not scan them all (issue 14, CPU with msprobe every second)."""
    import sqlite3

    h = History(tmp_path / "c.sqlite", 1)
    h.record([("imap", 0.1, True)], 1000.0)
    db = sqlite3.connect(tmp_path / "c.sqlite")
    plan = " ".join(str(r) for r in db.execute("EXPLAIN QUERY PLAN DELETE FROM samples WHERE ts < ?", (1.0,)))
    db.close()
    assert "USING INDEX samples_ts" in plan or "USING COVERING INDEX samples_ts" in plan, plan


def test_a_damaged_file_is_kept_aside_and_a_new_history_begins(tmp_path):
    path = tmp_path / "counters.sqlite"
    junk = b"this is not a database, whatever wrote it " * 100
    path.write_bytes(junk)
    aside = History(path).record([("imap", 0.5, True)], now=1000.0)
    assert aside == str(tmp_path / "counters.sqlite.damaged-1000")
    assert (tmp_path / "counters.sqlite.damaged-1000").read_bytes() == junk  # nothing lost
    assert History(path).values("imap") == ([0.5], [True])
    assert History(path).record([("imap", 0.25, True)], now=1001.0) is None  # a sound file stays


def test_a_busy_database_is_not_taken_for_a_damaged_one(tmp_path):
    import sqlite3

    path = tmp_path / "counters.sqlite"
    History(path).record([("imap", 0.5, True)], now=1000.0)
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, past the timeout
    try:
        h = History(path, timeout=0.1)
        try:
            h.record([("imap", 0.25, True)], now=1001.0)
            raise AssertionError("recorded through an exclusive lock")
        except sqlite3.OperationalError as e:
            assert "locked" in str(e)
    finally:
        holder.rollback()
        holder.close()
    assert not list(tmp_path.glob("*.damaged-*"))
    assert History(path).values("imap") == ([0.5], [True])
