"""msgsrv/store/mailbox.py: the on-disk format, UIDs, flags, expunge."""

from __future__ import annotations

import stat

import pytest

from msgsrv.store.mailbox import MailboxError, Store, normalize_crlf


@pytest.fixture
def store(root):
    return Store(root)


def test_first_delivery_creates_inbox_with_private_modes(store, root):
    uid = store.deliver("alice", b"Subject: x\n\nbody\n")
    assert uid == 1
    assert store.mailboxes("alice") == ["INBOX"]
    box = store.mailbox("alice")
    (msg,) = box.messages()
    assert stat.S_IMODE(msg.path.stat().st_mode) == 0o600
    for d in (root.store_dir / "alice", box.path, box.cur):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_messages_are_stored_with_crlf_and_exact_size(store):
    store.deliver("alice", b"Subject: x\n\nbody\r\nmore\n")
    (msg,) = store.messages("alice", "INBOX")
    data = store.mailbox("alice").read(msg.uid)
    assert data == b"Subject: x\r\n\r\nbody\r\nmore\r\n"
    assert msg.size == len(data)


def test_uids_ascend_and_are_not_reused_after_expunge(store):
    box = store.mailbox("alice")
    assert [box.deliver(b"m") for _ in range(3)] == [1, 2, 3]
    box.set_flags(3, add=frozenset({"\\Deleted"}))
    assert box.expunge() == [3]
    assert box.deliver(b"m") == 4
    assert [m.uid for m in box.messages()] == [1, 2, 4]
    assert box.uidnext == 5


def test_flags_and_keywords_are_kept_in_the_file_name(store):
    box = store.mailbox("alice")
    uid = box.deliver(b"m")
    assert box.set_flags(uid, add=frozenset({"\\Seen", "\\Flagged", "$Junk"})) == {"\\Seen", "\\Flagged", "$Junk"}
    assert box.set_flags(uid, remove=frozenset({"\\Seen"})) == {"\\Flagged", "$Junk"}
    msg = store.mailbox("alice").message(uid)
    assert msg.flags == {"\\Flagged", "$Junk"}
    assert msg.path.parent.name == "cur" and msg.path.name.endswith(":2,Fa")  # keyword 0 is letter a
    assert (box.path / "dovecot-keywords").read_text() == "0 $Junk\n"
    assert box.read(uid) == b"m"


def test_inbox_name_is_case_insensitive_and_cannot_be_deleted(store):
    store.deliver("alice", b"m", mbox="inbox")
    assert store.mailboxes("alice") == ["INBOX"]
    with pytest.raises(MailboxError, match="INBOX cannot be deleted"):
        store.delete("alice", "Inbox")


def test_mailbox_names_with_space_round_trip_and_slash_is_the_delimiter(store, root):
    store.create("alice", "Sent Items")
    store.create("alice", "a/b")  # mboxutil's user/alice/a/b: the child b of a
    assert store.mailboxes("alice") == ["Sent Items", "a.b"]
    assert (root.store_dir / "alice" / ".a.b" / "cur").is_dir()  # Maildir++ folder
    assert (root.store_dir / "alice" / ".a.b" / "maildirfolder").is_file()
    with pytest.raises(MailboxError, match="already exists"):
        store.create("alice", "a.b")
    store.delete("alice", "a/b")
    assert store.mailboxes("alice") == ["Sent Items"]


@pytest.mark.parametrize("name", ["", ".", "..", "a\x00b", "x\ny", "a..b", ".a", "a.", "~x", "x" * 201])
def test_invalid_mailbox_names_are_refused(store, name):
    with pytest.raises(MailboxError, match="invalid mailbox name"):
        store.create("alice", name)


@pytest.mark.parametrize("user", ["../etc", "", ".hidden", "a/b"])
def test_invalid_user_names_never_reach_the_file_system(store, user):
    with pytest.raises(MailboxError, match="invalid user name"):
        store.deliver(user, b"m")


def test_remove_ignores_unknown_uids(store):
    box = store.mailbox("alice")
    box.deliver(b"m")
    assert box.remove([1, 99]) == [1]
    assert box.messages() == []


def test_unknown_mailbox_listing_is_an_error(store):
    with pytest.raises(MailboxError, match="no such mailbox"):
        store.messages("alice", "Nope")


def test_normalize_crlf_leaves_crlf_alone():
    assert normalize_crlf(b"a\r\nb\nc") == b"a\r\nb\r\nc"
    assert normalize_crlf(b"plain") == b"plain"
