"""mboxutil as a command: mailboxes and users, exit codes, failure reported to the watcher."""

import fcntl
import os
import sys
import time
from pathlib import Path

from msgsrv.config.store import ConfigStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "probe"))
from probe_fakes import FakeWatcher  # noqa: E402


def add(cli, user="alice", password="secret"):
    return cli("mboxutil", "-a", user, input=password + "\n")


def test_add_user_create_list_delete(root, cli):
    assert add(cli).stdout == "added user alice\n"
    r = cli("mboxutil", "-c", "user/alice/Sent")
    assert (r.returncode, r.stdout) == (0, "created user/alice/Sent\n")
    assert cli("mboxutil", "-c", "alice/Drafts").returncode == 0
    assert cli("mboxutil", "-l").stdout == "user/alice/INBOX\nuser/alice/Drafts\nuser/alice/Sent\n"
    assert cli("mboxutil", "-l", "-p", "user/alice/S*").stdout == "user/alice/Sent\n"
    assert cli("mboxutil", "-u").stdout == "alice\n"
    r = cli("mboxutil", "-d", "user/alice/Sent")
    assert (r.returncode, r.stdout) == (0, "deleted user/alice/Sent\n")
    assert cli("mboxutil", "-l").stdout == "user/alice/INBOX\nuser/alice/Drafts\n"


def test_missing_user_or_mailbox_exit_1(root, cli):
    add(cli)
    r = cli("mboxutil", "-c", "user/bob/Sent")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "mboxutil: unknown user 'bob'\n")
    r = cli("mboxutil", "-d", "user/alice/Nope")
    assert (r.returncode, r.stderr) == (1, "mboxutil: no mailbox 'Nope' for 'alice'\n")
    r = cli("mboxutil", "-c", "user/alice/INBOX")
    assert r.returncode == 1 and "already exists" in r.stderr
    r = add(cli)
    assert (r.returncode, r.stderr) == (1, "mboxutil: user 'alice' already exists\n")


def test_bad_usage_exit_2_nothing_written(root, cli):
    for args in (["-l", "-c", "x"], [], ["-c", "user/"], ["-p", "x", "-u"], ["--nope"]):
        r = cli("mboxutil", *args)
        assert r.returncode == 2, args
        assert r.stderr.startswith("mboxutil: ") and r.stderr.count("\n") == 1
    assert not root.users_file.exists()
    r = cli("mboxutil", "-a", "bob", input="")
    assert (r.returncode, r.stderr) == (2, "mboxutil: no password on stdin\n")


def test_failing_store_is_reported_to_the_watcher(root, cli):
    add(cli)
    (root.store_dir / "alice").rename(root.store_dir / "alice.moved")
    (root.store_dir / "alice").write_text("not a directory\n")  # the store is broken
    with FakeWatcher(root) as w:
        ConfigStore(root.config_file).update({"local.watcher.port": str(w.port)})
        r = cli("mboxutil", "-c", "user/alice/Sent")
    assert r.returncode == 1
    assert r.stderr.endswith("(failure reported to the watcher)\n") and r.stderr.count("\n") == 1
    # it registered as a store utility, reported the failure on that connection, then said BYE
    assert [r[0] for r in w.requests] == ["UTILITY", "FAILED", "BYE"]
    assert w.requests[1][:2] == ("FAILED", "mboxutil")
    assert "mboxutil Error: store utility failed: " in root.default_log.read_text()


def test_hung_store_hits_the_time_limit_and_is_reported(root, cli):
    root.config_dir.mkdir(parents=True, exist_ok=True)
    lock = os.open(root.users_file.with_name("users.toml.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # another holder that never lets go
    try:
        with FakeWatcher(root) as w:
            ConfigStore(root.config_file).update({"local.watcher.port": str(w.port)})
            t0 = time.monotonic()
            r = cli("mboxutil", "-t", "0.5", "-a", "bob", input="pw\n")
            took = time.monotonic() - t0
    finally:
        os.close(lock)
    assert r.returncode == 1
    assert r.stderr == "mboxutil: no answer from the store within 0.5s (failure reported to the watcher)\n"
    assert [r for r in w.requests if r[0] == "FAILED"] == [
        ("FAILED", "mboxutil", "no", "answer", "from", "the", "store", "within", "0.5s")]
    assert took < 5


def test_failure_without_watcher_still_exits_1(root, cli):
    add(cli)
    (root.store_dir / "alice").rename(root.store_dir / "alice.moved")
    (root.store_dir / "alice").write_text("x")
    r = cli("mboxutil", "-c", "user/alice/Sent")
    assert r.returncode == 1 and "unable to report the failure to the watcher" in r.stderr
