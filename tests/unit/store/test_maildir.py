"""msgsrv/store/mailbox.py as Maildir++: file names, dovecot-uidlist, UIDVALIDITY, \\Recent,
rename, copies, subscriptions, crash safety and the 0.1.0 conversion (store/legacy.py)."""

from __future__ import annotations

import os
import re

import pytest

from msgsrv.store import maildirname as mn
from msgsrv.store.mailbox import INBOX, MailboxError, Store
from msgsrv.store.uidlist import Uidlist


@pytest.fixture
def store(root):
    return Store(root)


def test_delivery_lands_in_new_with_a_standard_name_and_a_uidlist_record(store, root):
    uid = store.deliver("alice", b"Subject: x\n\nbody\n")
    user = root.store_dir / "alice"
    (name,) = os.listdir(user / "new")
    assert re.fullmatch(r"\d+\.M\d+P\d+Q\d+\.[^,/:]+,S=20,W=20", name)  # stored with CRLF: 20 octets
    assert os.listdir(user / "tmp") == [] and os.listdir(user / "cur") == []
    header, record = (user / "dovecot-uidlist").read_text().splitlines()
    assert re.fullmatch(r"3 V\d+ N1 G[0-9a-f]{32}", header)
    assert record == f"{uid} :{name}"


def test_flagged_delivery_goes_to_cur_with_info(store):
    box = store.mailbox("alice")
    uid = box.deliver(b"m", frozenset({"\\Seen", "\\Answered"}))
    msg = box.message(uid)
    assert msg.path.parent.name == "cur" and msg.path.name.endswith(":2,RS")
    assert msg.flags == {"\\Seen", "\\Answered"}


def test_flag_change_moves_a_new_message_to_cur(store):
    box = store.mailbox("alice")
    uid = box.deliver(b"m")
    assert box.message(uid).path.parent.name == "new"
    box.set_flags(uid, add=frozenset({"\\Deleted"}))
    assert box.message(uid).path.parent.name == "cur"
    assert Store(store_root(store)).mailbox("alice").message(uid).flags == {"\\Deleted"}


def store_root(store):
    from msgsrv.paths import ServerRoot

    return ServerRoot(store.base.parent.parent)


def test_files_put_there_by_another_program_get_the_next_uids(store, root):
    box = store.mailbox("alice")
    box.deliver(b"one")
    user = root.store_dir / "alice"
    (user / "new" / "1700000000.other.host").write_bytes(b"two\r\n")
    (user / "cur" / "1700000001.other.host:2,S").write_bytes(b"three\r\n")
    msgs = Store(root).mailbox("alice").messages()
    assert [m.uid for m in msgs] == [1, 2, 3]
    assert [m.size for m in msgs] == [3, 5, 7]  # no S= in the name: the file's size
    assert msgs[2].flags == {"\\Seen"}


def test_crash_between_rename_and_uid_record_loses_nothing(store, root):
    box = store.mailbox("alice")
    box.deliver(b"first")
    user = root.store_dir / "alice"
    # what a kill -9 after the rename into new/ and before the uidlist append leaves behind:
    name = mn.unique_base(6)
    (user / "new" / name).write_bytes(b"second")
    msgs = Store(root).messages("alice")
    assert [m.uid for m in msgs] == [1, 2]
    assert Store(root).mailbox("alice").read(2) == b"second"


def test_uidvalidity_never_repeats_for_a_recreated_name(store):
    first = store.create("alice", "Box").uidvalidity
    store.delete("alice", "Box")
    second = store.create("alice", "Box").uidvalidity
    assert second > first
    assert store.create("alice", "Other").uidvalidity > second


def test_rename_moves_children_and_keeps_uids(store):
    box = store.create("alice", "a")
    uid = box.deliver(b"m")
    validity = box.uidvalidity
    store.create("alice", "a.b")
    store.rename("alice", "a", "z")
    assert store.mailboxes("alice") == ["z", "z.b"]
    moved = store.mailbox("alice", "z")
    assert moved.uidvalidity == validity and moved.read(uid) == b"m"
    with pytest.raises(MailboxError, match="already exists"):
        store.rename("alice", "z.b", "z")
    with pytest.raises(MailboxError, match="no mailbox"):
        store.rename("alice", "nope", "x")


def test_rename_inbox_moves_its_messages_and_leaves_it_empty(store):
    store.deliver("alice", b"one")
    store.mailbox("alice").deliver(b"two", frozenset({"\\Flagged"}))
    store.rename("alice", "inbox", "Old")
    assert store.messages("alice", INBOX) == []
    old = store.mailbox("alice", "Old")
    assert [old.read(m.uid) for m in old.messages()] == [b"one", b"two"]
    assert [m.flags for m in old.messages()] == [frozenset(), {"\\Flagged"}]


def test_copy_in_links_files_and_keeps_flags_and_date(store):
    src = store.mailbox("alice")
    uid = src.deliver(b"body", frozenset({"\\Seen", "$Label"}), date=1_000_000_000)
    dst = store.create("alice", "Copy")
    msg = src.message(uid)
    (new_uid,) = dst.copy_in([(msg.path, msg.flags, None)])
    copy = dst.message(new_uid)
    assert copy.flags == {"\\Seen", "$Label"} and dst.read(new_uid) == b"body"
    assert dst.internaldate(new_uid) == 1_000_000_000
    assert os.stat(copy.path).st_ino == os.stat(msg.path).st_ino  # a hard link, not a second copy


def test_recent_is_claimed_once(store):
    box = store.mailbox("alice")
    for _ in range(2):
        box.deliver(b"m")
    assert box.recent_floor() == 1
    assert box.claim_recent() == (1, 3)  # this session sees UIDs 1 and 2 as \Recent
    assert box.recent_floor() == 3
    assert box.claim_recent() == (3, 3)  # nothing left for the next one
    box.deliver(b"m")
    assert box.claim_recent() == (3, 4) and box.recent_floor() == 4


def test_subscriptions_are_a_maildirpp_file(store, root):
    store.subscribe("alice", "Sent")
    store.subscribe("alice", "a/b")
    store.subscribe("alice", "Sent")
    assert store.subscriptions("alice") == ["a.b", "Sent"]
    store.subscribe("alice", "a.b", on=False)
    assert (root.store_dir / "alice" / "subscriptions").read_text() == "Sent\n"


def test_uidlist_is_compacted_when_expunged_records_dominate(store, root):
    box = store.mailbox("alice")
    uids = [box.deliver(b"m") for _ in range(300)]
    box.remove(uids[:-1])
    lines = (root.store_dir / "alice" / "dovecot-uidlist").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("300 :")
    assert lines[0].split()[2] == "N301"
    assert box.deliver(b"m") == 301


def test_uidlist_written_by_dovecot_with_extension_fields_is_read(tmp_path):
    path = tmp_path / "dovecot-uidlist"
    path.write_text("3 V1700000000 N5 Gabcdef\n1 W120 S118 :1.M1P1.h,S=118\n4 :4.M1P1.h,S=3:2,S\n")
    u = Uidlist(path)
    assert u.refresh()
    assert (u.validity, u.next_uid, u.records) == (1700000000, 5, {"1.M1P1.h,S=118": 1, "4.M1P1.h,S=3": 4})
    with open(path, "a") as f:
        f.write("7 :7.M1P1.h\n8 :partial")  # a record still being written is left for later
    assert u.refresh() and u.records["7.M1P1.h"] == 7 and u.next_uid == 8
    assert not u.refresh()


def test_legacy_store_of_0_1_0_is_converted_keeping_uids(root):
    user = root.store_dir / "alice"
    for name, files in (("INBOX", {"3,S=5:2,S": b"hello", "7,S=2:2,": b"hi"}), ("a%2Fb", {"1,S=1:2,T": b"x"})):
        d = user / name
        (d / "cur").mkdir(parents=True)
        (d / "tmp").mkdir()
        (d / "uidvalidity").write_text("1234\n")
        (d / "uidnext").write_text("9\n")
        for fname, data in files.items():
            (d / "cur" / fname).write_bytes(data)
    store = Store(root)
    assert store.mailboxes("alice") == ["INBOX", "a.b"]
    inbox = store.mailbox("alice")
    assert [(m.uid, m.flags) for m in inbox.messages()] == [(3, {"\\Seen"}), (7, frozenset())]
    assert (inbox.uidvalidity, inbox.uidnext) == (1234, 9)
    assert inbox.read(3) == b"hello"
    assert [(m.uid, m.flags) for m in store.messages("alice", "a.b")] == [(1, {"\\Deleted"})]
    assert not (user / "INBOX").exists() and not (user / "a%2Fb").exists()


def test_uidlist_of_a_mailbox_made_again_is_noticed_even_on_the_same_inode(tmp_path):
    # delete + create reuses inode numbers: the header (UIDVALIDITY) tells the files apart
    path = tmp_path / "dovecot-uidlist"
    path.write_text("3 V100 N3\n1 :a\n2 :b\n")
    u = Uidlist(path)
    u.refresh()
    with open(path, "r+") as f:  # same inode, new content at least as long
        f.write("3 V200 N2\n1 :c\n2 :dd\n")
    assert u.refresh()
    assert (u.validity, u.records) == (200, {"c": 1, "dd": 2})


@pytest.mark.parametrize("damage", ["garbage\n1 :whatever\n", "9 V1 N2\n", "\x00\x00\x00", "3 N7\n1 :x\n"])
def test_a_broken_uidlist_is_written_again_with_a_new_uidvalidity_and_said(store, root, damage):
    """dovecot-uidlist written over (as Dovecot does with a broken one): before, every SELECT and
    every POP login of that user failed for ever (`unsupported uidlist version`). Its records are
    not trusted: a new file with a new UIDVALIDITY, every message kept under a new UID, and the
    repair said where the server logs it."""
    from msgsrv.store import maildir

    box = store.mailbox("alice")
    first, second = box.deliver(b"Subject: a\n\none\n"), box.deliver(b"Subject: b\n\ntwo\n")
    old_validity = box.uidvalidity
    (root.store_dir / "alice" / "dovecot-uidlist").write_bytes(damage.encode())
    said: list[str] = []
    maildir.on_repair = said.append
    try:
        again = store.mailbox("alice")
        uids = [m.uid for m in again.messages()]
    finally:
        maildir.on_repair = None
    assert len(uids) == 2 and again.uidvalidity != old_validity
    assert sorted(again.message(u).path.read_bytes() for u in uids) == [b"Subject: a\r\n\r\none\r\n",
                                                                      b"Subject: b\r\n\r\ntwo\r\n"]
    header = (root.store_dir / "alice" / "dovecot-uidlist").read_text().splitlines()[0]
    assert header.startswith(f"3 V{again.uidvalidity} ")
    assert len(said) == 1 and "wrote a new one" in said[0] and "get new UIDs" in said[0], said
    assert (first, second) == (1, 2)


def test_a_delivery_that_fills_the_disk_leaves_nothing_behind(root):
    """A message larger than the space left: the delivery fails (the dispatcher answers 451, the
    sender retries) and its part-written file is removed from tmp/. Before, the part stayed and
    kept the disk full: every later delivery, however small, failed too. Run on a 64 KiB tmpfs
    over the store, in a private mount namespace."""
    import json
    import subprocess
    import sys

    code = ("import json, sys; from pathlib import Path; from msgsrv.paths import ServerRoot; "
            "from msgsrv.store.mailbox import Store; "
            "root = ServerRoot(Path(sys.argv[1])); store = Store(root); out = {}\n"
            "try:\n    store.deliver('alice', b'Subject: big\\n\\n' + b'x' * 200_000)\n"
            "except OSError as e:\n    out['big'] = e.strerror\n"
            "out['tmp'] = sorted(p.name for p in (root.store_dir / 'alice' / 'tmp').iterdir())\n"
            "out['small'] = store.deliver('alice', b'Subject: small\\n\\nhi\\n')\n"
            "print(json.dumps(out))")
    script = 'mount -t tmpfs -o size=64k,mode=0700 tmpfs "$1" && shift && exec "$@"'
    r = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(root.store_dir), sys.executable, "-c", code,
                        str(root.base)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and ("unshare" in r.stderr or "mount" in r.stderr):
        pytest.skip(f"no private tmpfs mount here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"big": "No space left on device", "tmp": [], "small": 1}
