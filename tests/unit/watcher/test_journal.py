"""msgsrv/watcher/journal.py: the append-only, bounded record the web console reads."""

import json
import os
import stat

from msgsrv.watcher.journal import FIELDS, KINDS, NAME, OLD_NAME, Journal, read, record


def test_a_record_has_exactly_the_documented_fields(tmp_path):
    Journal(tmp_path).add("exit", "imap", "store", 13428, "Watched 'imapd' process 13428\n exited", by=None)
    [rec] = read(tmp_path)
    assert tuple(rec) == FIELDS
    assert rec["kind"] == "exit" and rec["component"] == "imap" and rec["unit"] == "store" and rec["pid"] == 13428
    assert rec["detail"] == "Watched 'imapd' process 13428 exited"  # one line
    assert isinstance(rec["t"], float) and rec["by"] is None


def test_the_file_is_owner_only_json_lines(tmp_path):
    j = Journal(tmp_path)
    j.add("request", detail="start", by="start-msg[7]")
    j.add("started", "imap", "store", 9, "9")
    path = tmp_path / NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert [json.loads(ln)["kind"] for ln in lines] == ["request", "started"]


def test_a_partial_last_line_after_a_crash_is_skipped(tmp_path):
    j = Journal(tmp_path)
    j.add("exit", "imap")
    with open(tmp_path / NAME, "ab") as f:
        f.write(b'{"t": 1.0, "kind": "ex')  # the writer died mid-record
    assert [r["kind"] for r in read(tmp_path)] == ["exit"]
    j.add("started", "imap")  # the next record starts on the damaged line; only that line is lost
    assert [r["kind"] for r in read(tmp_path)] == ["exit"]
    j.add("stopped", "imap")
    assert [r["kind"] for r in read(tmp_path)] == ["exit", "stopped"]


def test_since_and_limit(tmp_path):
    j = Journal(tmp_path)
    recs = [j.add("request", detail=str(i)) for i in range(10)]
    assert [r["detail"] for r in read(tmp_path, limit=3)] == ["7", "8", "9"]
    assert [r["detail"] for r in read(tmp_path, since=recs[7]["t"])] == ["8", "9"]
    assert read(tmp_path, limit=0) == []


def test_bounded_two_files_at_most(tmp_path):
    j = Journal(tmp_path, max_bytes=2000)
    for i in range(200):
        j.add("request", detail=f"request number {i}")
    assert (tmp_path / OLD_NAME).exists()
    assert (tmp_path / NAME).stat().st_size <= 2000 + 200
    assert (tmp_path / OLD_NAME).stat().st_size <= 2000 + 200
    got = [r["detail"] for r in read(tmp_path, limit=1000)]
    assert got[-1] == "request number 199" and got == sorted(got, key=lambda d: int(d.split()[-1]))


def test_a_full_disk_loses_records_never_raises(tmp_path):
    (tmp_path / NAME).mkdir()  # an unwritable journal
    j = Journal(tmp_path)
    j.add("exit", "imap")
    assert j.lost == 1


def test_reading_a_server_root_or_its_run_dir(tmp_path):
    from msgsrv.paths import ServerRoot

    root = ServerRoot(tmp_path / "r").ensure()
    Journal(root.run_dir).add("watcher-start", pid=os.getpid())
    assert read(root)[0]["kind"] == "watcher-start" == read(root.run_dir)[0]["kind"]


def test_kinds_are_documented_in_the_man_page():
    from tests.conftest import REPO

    page = (REPO / "man" / "watcher.8").read_text().replace("\\-", "-")
    missing = [k for k in KINDS if k not in page]
    assert missing == []
    assert record("exit")["kind"] == "exit"
