"""The console's pure and blocking parts with plain values: plots, sessions, log tails, history reads,
the timeline's journal reads, the read pool. No watcher here (test_console_api.py and test_console_browser.py have one)."""

from __future__ import annotations

import asyncio
import re
import threading
import xml.etree.ElementTree as ET

import pytest

from msgsrv.console import auth, history, logtail, plots, timeline
from msgsrv.console.reader import Busy, Reader
from msgsrv.probe.history import History
from msgsrv.watcher import journal

SVG = "{http://www.w3.org/2000/svg}"


# -- plots ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "ok", "expected"), [
    (0.004, True, "ok"), (5.0, True, "ok"), (5.01, True, "warn"), (12.0, True, "warn"),
    (9.5, False, "hung"), (10.0, False, "hung"), (0.002, False, "down"), (9.4, False, "down"),
])
def test_point_status_with_warn_5_and_timeout_10(value, ok, expected):
    assert plots.status(plots.Point(0.0, value, ok), warn=5.0, timeout=10.0) == expected


def _svg(points, warn=5.0, timeout=10.0, series="imap"):
    text = plots.render(series, points, 1000.0, 4600.0, warn, timeout, "hour")
    return text, ET.fromstring(text)


def _classes(root, tag):
    return [el.get("class") for el in root.iter(f"{SVG}{tag}")]


def test_plot_draws_every_point_both_thresholds_and_marks_failures():
    pts = [plots.Point(1100.0, 0.004, True), plots.Point(1700.0, 6.0, True), plots.Point(2300.0, 10.0, False),
           plots.Point(2900.0, 0.001, False), plots.Point(3500.0, 0.003, True)]
    text, root = _svg(pts)
    assert root.get("data-points") == "5"
    assert _classes(root, "circle") == ["pt ok", "pt warn", "pt ok"]
    marks = [c for c in _classes(root, "path")]
    assert marks == ["pt hung", "pt down"]
    lines = _classes(root, "line")
    assert lines.count("warn-line") == 1 and lines.count("timeout-line") == 1
    assert lines.count("fail hung") == 1 and lines.count("fail down") == 1
    labels = [el.text for el in root.iter(f"{SVG}text") if "line-label" in (el.get("class") or "")]
    assert labels == ["warning 5 s", "timeout 10 s"]
    assert len(root.findall(f"{SVG}polyline")) == 1  # the answered probes joined


def test_plot_orders_points_by_time_on_the_x_axis_and_slow_ones_higher():
    pts = [plots.Point(1100.0, 0.001, True), plots.Point(3500.0, 1.0, True)]
    _, root = _svg(pts)
    c = list(root.iter(f"{SVG}circle"))
    assert float(c[0].get("cx")) < float(c[1].get("cx"))
    assert float(c[0].get("cy")) > float(c[1].get("cy"))  # SVG y grows downwards
    timeout_y = float(next(el for el in root.iter(f"{SVG}line") if el.get("class") == "timeout-line").get("y1"))
    warn_y = float(next(el for el in root.iter(f"{SVG}line") if el.get("class") == "warn-line").get("y1"))
    assert timeout_y < warn_y < float(c[1].get("cy"))


def test_empty_plot_says_so_and_still_draws_the_thresholds():
    text, root = _svg([])
    assert "no probe results in this hour" in text
    assert {"warn-line", "timeout-line"} <= set(_classes(root, "line"))


def test_plot_has_no_inline_style_and_escapes_names():
    text, _ = _svg([plots.Point(1100.0, 0.01, True)], series='<x&"y>')
    assert "style" not in text  # the CSP allows no inline style: classes only
    assert "<x&" not in text and "&lt;x&amp;" in text


def test_human_seconds():
    assert [plots.human_seconds(v) for v in (0.0042, 0.25, 1, 12.5, 0)] == ["4.2 ms", "250 ms", "1 s", "12.5 s",
                                                                           "0 ms"]


# -- sessions -------------------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_token_is_compared_exactly():
    s = auth.Sessions("secret")
    assert s.token_ok("secret")
    assert not s.token_ok("secre") and not s.token_ok("") and not s.token_ok(None) and not s.token_ok("secret ")


def test_session_lives_while_used_and_dies_when_idle():
    clock = Clock()
    s = auth.Sessions("t", clock=clock, idle=100.0)
    a = s.create()
    assert a.id != a.csrf and len(a.id) >= 40
    clock.now = 99.0
    assert s.get(a.id) is a  # used: its idle clock restarts
    clock.now = 198.0
    assert s.get(a.id) is a
    clock.now = 298.0
    assert s.get(a.id) is None and len(s) == 0
    assert s.get(None) is None and s.get("nope") is None


def test_oldest_session_is_forgotten_past_the_limit():
    s = auth.Sessions("t", limit=2)
    a, b, c = s.create(), s.create(), s.create()
    assert s.get(a.id) is None and s.get(b.id) is b and s.get(c.id) is c


def test_bearer_header():
    assert auth.bearer("Bearer abc") == "abc"
    assert auth.bearer("bearer  abc ") == "abc"
    assert auth.bearer("Basic abc") is None and auth.bearer("Bearer") is None and auth.bearer(None) is None


# -- log tails ------------------------------------------------------------------------------------
def test_tail_gives_the_last_whole_lines_then_what_was_appended(tmp_path):
    f = tmp_path / "watcher"
    f.write_text("".join(f"line {i}\n" for i in range(300)) + "half")
    got = logtail.tail(f, None, lines=3)
    assert got["lines"] == ["line 297", "line 298", "line 299"]
    assert got["offset"] == f.stat().st_size - len("half")  # the unfinished line waits for its newline
    with f.open("a") as w:
        w.write(" done\nnext\n")
    more = logtail.tail(f, got["offset"])
    assert more["lines"] == ["half done", "next"] and more["offset"] == f.stat().st_size
    assert logtail.tail(f, more["offset"])["lines"] == []


def test_tail_starts_again_when_the_file_shrank(tmp_path):
    f = tmp_path / "imap.out"
    f.write_text("a\nb\nc\n")
    f.write_text("new\n")
    got = logtail.tail(f, 6)
    assert got["reset"] and got["lines"] == ["new"] and got["offset"] == 4


def test_tail_reads_a_bounded_chunk_and_drops_the_cut_first_line(tmp_path):
    f = tmp_path / "big"
    f.write_bytes(b"x" * (logtail.CHUNK + 10) + b"\nlast\n")
    got = logtail.tail(f, None)
    assert got["lines"] == ["last"]
    first = logtail.tail(f, 0)  # following from the start: at most CHUNK bytes per read
    assert first["offset"] == logtail.CHUNK and len(first["lines"][0]) == logtail.CHUNK
    assert logtail.tail(f, first["offset"])["lines"] == ["x" * 10, "last"]


def test_tail_of_a_missing_log_is_empty(tmp_path):
    assert logtail.tail(tmp_path / "none", None) == {"offset": 0, "lines": [], "size": 0, "reset": False}


def test_only_the_trees_own_logs_are_served():
    assert "watcher" in logtail.LOGS and "imap.out" in logtail.LOGS
    assert not any("/" in n or n.startswith(".") for n in logtail.LOGS)


# -- history reads ----------------------------------------------------------------------------------
def test_history_reads_never_create_the_database(tmp_path):
    db = tmp_path / "counters.sqlite"
    assert history.plot_points(db, "imap", 0, 10) == [] and history.rows(db, None, 0, 10) == []
    assert history.last_per_series(db) == {} and history.series_names(db) == []
    assert not db.exists()


def test_plot_points_are_raw_until_there_are_too_many(tmp_path):
    db = tmp_path / "counters.sqlite"
    h = History(db)
    for i in range(10):
        h.record([("imap", 0.01 * (i + 1), i != 4)], now=1000.0 + i)
    pts = history.plot_points(db, "imap", 1000.0, 1009.0, buckets=10)
    assert [p.ts for p in pts] == [1000.0 + i for i in range(10)]
    few = history.plot_points(db, "imap", 1000.0, 1010.0, buckets=2)
    assert len(few) == 2
    assert few[0].ok is False and few[0].value == pytest.approx(0.05)  # the failure and the slowest survive
    assert few[1].ok and few[1].value == pytest.approx(0.10)


def test_rows_keep_the_newest_when_limited_and_render_as_csv(tmp_path):
    db = tmp_path / "counters.sqlite"
    h = History(db)
    h.record([("imap", 0.5, True), ("pop", 12.0, False)], now=100.0)
    h.record([("imap", 0.25, True)], now=200.0)
    found = history.rows(db, ["imap"], 0, 300, limit=1)
    assert found == [(200.0, "imap", 0.25, 1)]
    csv_text = history.as_csv(history.rows(db, None, 0, 300))
    lines = csv_text.splitlines()
    assert lines[0] == "time,ts,series,value,ok"
    assert [ln.split(",")[1:] for ln in lines[1:]] == [["100.000", "imap", "0.5", "1"],
                                                       ["100.000", "pop", "12.0", "0"],
                                                       ["200.000", "imap", "0.25", "1"]]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", lines[1].split(",")[0])
    assert history.as_dicts(found)[0]["ok"] is True


# -- the read pool ------------------------------------------------------------------------------------
def test_reader_shares_one_read_and_refuses_past_its_bound():
    calls = []
    gate = threading.Event()

    def slow(x):
        calls.append(x)
        gate.wait(5)
        return x * 2

    async def main():
        r = Reader(workers=1, max_pending=2, ttl=60)
        try:
            a = asyncio.ensure_future(r.run(slow, 1, key="k"))
            b = asyncio.ensure_future(r.run(slow, 1, key="k"))  # shares a's read
            c = asyncio.ensure_future(r.run(slow, 2))
            await asyncio.sleep(0.05)
            with pytest.raises(Busy):
                await r.run(slow, 3)
            gate.set()
            assert await asyncio.gather(a, b, c) == [2, 2, 4]
            assert await r.run(slow, 1, key="k") == 2  # cached
            assert calls == [1, 2]
            assert r.pending == 0
        finally:
            r.close()

    asyncio.run(main())


# -- the timeline (the watcher's journal) -----------------------------------------------------------
def test_every_journal_kind_has_exactly_one_timeline_group():
    grouped = [k for kinds in timeline.GROUPS.values() for k in kinds]
    assert sorted(grouped) == sorted(journal.KINDS)
    assert timeline.GROUP_OF["exit"] == "failure" and timeline.GROUP_OF["give-up"] == "failure"
    assert timeline.GROUP_OF["restart-done"] == "restart" and timeline.GROUP_OF["request"] == "request"


def _recs():
    rows = [journal.record("watcher-start", pid=1, t=100.0),
            journal.record("exit", "imap", "store", 42, "Watched 'imapd' process 42 exited abnormally", t=110.0),
            journal.record("restart-queued", "imap", "store", 42, "store imap pop http", t=110.0),
            journal.record("started", "imap", "store", 43, "43", t=111.5),
            journal.record("request", detail="restart store", by="(console, 127.0.0.1)", t=120.0),
            journal.record("hang", "pop", "store", 50, "pop server is not responding", by="msprobe[9]", t=130.0)]
    return timeline.compact(rows)


def test_a_compact_record_is_the_journal_record_and_its_group():
    rec = journal.record("hang", "pop", "store", 50, "pop server is not responding", by="msprobe[9]", t=130.0)
    assert timeline.event(timeline.compact([rec])[0]) == {**rec, "group": "failure"}
    new_kind = {**rec, "kind": "something-newer"}  # from a newer watcher: shown all the same
    assert timeline.event(timeline.compact([new_kind])[0])["group"] == "watcher"


def test_select_gives_the_newest_first_and_says_when_it_left_older_ones_out():
    got = timeline.select(_recs(), limit=3)
    assert [e["kind"] for e in got["events"]] == ["hang", "request", "started"]
    assert (got["count"], got["matched"], got["truncated"], got["newest"]) == (3, 6, True, 130.0)
    everything = timeline.select(_recs())
    assert [e["t"] for e in everything["events"]] == [130.0, 120.0, 111.5, 110.0, 110.0, 100.0]
    assert everything["truncated"] is False


def test_select_by_time_kind_group_component_and_unit():
    recs = _recs()
    assert [e["kind"] for e in timeline.select(recs, since=110.0)["events"]] == ["hang", "request", "started"]
    assert [e["t"] for e in timeline.select(recs, since=100.0, until=111.5)["events"]] == [111.5, 110.0, 110.0]
    failures = timeline.kinds_of([], ["failure"])
    assert [e["kind"] for e in timeline.select(recs, kinds=failures)["events"]] == ["hang", "exit"]
    assert [e["kind"] for e in timeline.select(recs, kinds=timeline.kinds_of(["started"], ["request"]))["events"]] \
        == ["request", "started"]
    assert [e["pid"] for e in timeline.select(recs, component="imap")["events"]] == [43, 42, 42]
    assert [e["kind"] for e in timeline.select(recs, unit="store", kinds={"hang"})["events"]] == ["hang"]
    assert timeline.kinds_of([], []) is None
    assert timeline.select([], since=1.0) == {"count": 0, "matched": 0, "truncated": False, "events": [],
                                              "newest": None}


def test_select_does_not_stop_at_a_record_out_of_time_order():
    recs = _recs()
    recs += timeline.compact([journal.record("stopped", "http", "store", t=105.0)])  # clock stepped back
    assert [e["kind"] for e in timeline.select(recs, since=108.0, kinds={"stopped", "hang"})["events"]] == ["hang"]
    assert [e["kind"] for e in timeline.select(recs, since=100.0, kinds={"stopped"})["events"]] == ["stopped"]


def _plain(recs):
    return [{k: v for k, v in timeline.event(r).items() if k != "group"} for r in recs]


def test_records_follow_the_journal_as_it_grows_and_agree_with_journal_read(tmp_path, monkeypatch):
    j = journal.Journal(tmp_path, max_bytes=2000)
    j.add("watcher-start", pid=1)
    j.add("exit", "imap", "store", 42, "Watched 'imapd' process 42 exited abnormally")
    parsed = []
    real = journal.parse
    monkeypatch.setattr(journal, "parse", lambda data: parsed.append(len(data)) or real(data))
    first = timeline.records(tmp_path)
    assert [(r[1], r[-1]) for r in first] == [("watcher-start", "watcher"), ("exit", "failure")]
    assert _plain(first) == journal.read(tmp_path)
    assert timeline.records(tmp_path) is first and len(parsed) == 1  # unchanged: nothing read again
    size = (tmp_path / journal.NAME).stat().st_size
    rec = j.add("started", "imap", "store", 43, "43")
    assert _plain(timeline.records(tmp_path)) == journal.read(tmp_path)
    grown = (tmp_path / journal.NAME).stat().st_size - size
    assert parsed[-1] == grown  # only the bytes appended since were parsed
    with open(tmp_path / journal.NAME, "ab") as f:
        f.write(b'{"t": 5, "kind": "exi')  # a line being written (or cut by a crash): not taken in yet
    assert _plain(timeline.records(tmp_path)) == journal.read(tmp_path)
    assert timeline.event(timeline.records(tmp_path)[-1])["pid"] == rec["pid"]
    j.add("stopped", "http", "store")  # joins the cut line: both are lost, as for journal.read()
    assert _plain(timeline.records(tmp_path)) == journal.read(tmp_path)
    for i in range(30):  # past max_bytes: rotated to journal.1.jsonl (maybe twice), read from both files
        j.add("started", "pop", "store", 100 + i, str(100 + i))
        assert _plain(timeline.records(tmp_path)) == journal.read(tmp_path, None, 10**6), i
    assert (tmp_path / journal.OLD_NAME).exists()
    got = timeline.select(timeline.records(tmp_path), kinds={"started"}, limit=100)
    assert [e["pid"] for e in got["events"]][:3] == [129, 128, 127]
    (tmp_path / journal.NAME).unlink()  # a new file begins: followed from its start
    j.add("watcher-start", pid=2)
    assert _plain(timeline.records(tmp_path)) == journal.read(tmp_path, None, 10**6)
