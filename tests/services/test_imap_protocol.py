"""imapd over a real socket (RFC 3501 and the extensions it advertises): what mail clients send,
updates made by other sessions and processes, \\Recent, IDLE, UIDPLUS, MOVE, mailbox commands."""

from __future__ import annotations

import re
import signal
import time

import pytest

from msgsrv.store.mailbox import Store
from tests.services.conftest import PASSWORD, USER
from tests.services.imapconn import ImapConn

MSG = (b"From: Ann <ann@example.org>\r\nTo: alice@example.org\r\nSubject: hello %d\r\n"
       b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <m%d@example.org>\r\n\r\nbody %d\r\n")


@pytest.fixture
def imap(mailroot):
    mailroot.spawn("imap")
    return mailroot


def conn(m, login: bool = True) -> ImapConn:
    c = ImapConn(m.port("service.imap.port"))
    if login:
        c.login(USER, PASSWORD)
    return c


def deliver(m, n: int, mbox: str = "INBOX") -> list[int]:
    store = Store(m.root)
    return [store.deliver(USER, MSG % (i, i, i), mbox) for i in range(n)]


def test_mutt_header_fetch_is_answered(imap):
    # issue 13: mutt's first fetch used to get "BAD unsupported FETCH item"
    deliver(imap, 2)
    with conn(imap) as c:
        c.ok("SELECT INBOX")
        lines = c.ok("UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS "
                     "(DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE IN-REPLY-TO REPLY-TO "
                     "LINES LIST-POST X-LABEL)])")
        assert len(lines) == 2
        assert re.match(rb'\* 1 FETCH \(UID 1 FLAGS \(\\Recent\) INTERNALDATE "[^"]+" RFC822.SIZE \d+ '
                        rb"BODY\[HEADER.FIELDS \(DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE "
                        rb"IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL\)\] \{\d+\}\r\nFrom: Ann", lines[0])
        lines = c.ok("FETCH 2 (ENVELOPE BODYSTRUCTURE BODY[TEXT]<0.4> RFC822.SIZE)")
        assert b'ENVELOPE ("Mon, 1 Jan 2024 10:00:00 +0000" "hello 1" (("Ann" NIL "ann" "example.org"))' in lines[0]
        assert b'BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 8 1 NIL NIL NIL NIL)' in lines[0]
        assert b"BODY[TEXT]<0> {4}\r\nbody" in lines[0]


def test_body_fetch_sets_seen_and_peek_does_not(imap):
    deliver(imap, 2)
    with conn(imap) as c:
        c.ok("SELECT INBOX")
        assert b"\\Seen" not in c.ok("FETCH 1 (BODY.PEEK[])")[0]
        lines = c.ok("FETCH 1 (BODY[TEXT])")
        assert b"FLAGS (\\Seen \\Recent)" in lines[0]  # told, though FLAGS was not asked for
    with conn(imap) as c:
        c.ok("EXAMINE INBOX")
        lines, done = c.cmd("STORE 1 -FLAGS (\\Seen)")
        assert b" NO " in done and b"read-only" in done
        c.ok("FETCH 2 BODY[]")  # read-only: reading does not set \Seen
        assert b"\\Seen" not in c.ok("FETCH 2 FLAGS")[0]


def test_changes_by_other_sessions_are_reported_before_the_tagged_reply(imap):
    deliver(imap, 4)
    with conn(imap) as a, conn(imap) as b:
        a.ok("SELECT INBOX")
        b.ok("SELECT INBOX")
        b.ok("STORE 1,3 +FLAGS (\\Deleted)")
        b.ok("STORE 2 +FLAGS ($Label1)")
        b.ok("EXPUNGE")
        # RFC 3501 §7.4.1: no EXPUNGE while answering FETCH; the numbers stay as A knows them
        lines = a.ok("FETCH 4 (UID)")
        assert not any(b"EXPUNGE" in line for line in lines)
        assert b"* 4 FETCH (UID 4)" in lines
        assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)" in lines  # the new keyword
        assert b"* 2 FETCH (FLAGS (\\Recent $Label1))" in lines
        assert a.ok("NOOP") == [b"* 3 EXPUNGE", b"* 1 EXPUNGE"]  # high to low: each number valid when sent
        deliver(imap, 1)  # another process (as LMTP delivery is)
        lines = a.ok("NOOP")
        assert lines == [b"* 3 EXISTS", b"* 3 RECENT"]
        assert a.ok("FETCH 2 (UID FLAGS)") == [b"* 2 FETCH (UID 4 FLAGS (\\Recent))"]  # A selected first


def test_recent_belongs_to_one_session(imap):
    deliver(imap, 2)
    with conn(imap) as a, conn(imap) as b:
        lines = a.ok("EXAMINE INBOX")  # read-only: looks, does not take
        assert b"* 2 RECENT" in lines
        lines = b.ok("SELECT INBOX")
        assert b"* 2 RECENT" in lines
        assert b"RECENT 0" in a.ok("STATUS INBOX (RECENT MESSAGES)")[0]
        deliver(imap, 1)
        assert b.ok("NOOP") == [b"* 3 EXISTS", b"* 3 RECENT"]  # RFC 3501 §7.3.2: all recent ones
        assert b"SEARCH 1 2 3" in b.ok("SEARCH RECENT")[0]


def test_idle_reports_new_mail_at_once_and_done_ends_it(imap):
    deliver(imap, 1)
    with conn(imap) as c, conn(imap) as other:
        c.ok("SELECT INBOX")
        c.send("i1 IDLE\r\n")
        assert c.line() == b"+ idling"
        other.ok(b"APPEND INBOX {9+}\r\nSubject:\r\n")
        start = time.monotonic()
        assert c.line() == b"* 2 EXISTS"
        assert time.monotonic() - start < 5
        assert c.line() == b"* 2 RECENT"
        c.send("DONE\r\n")
        assert c.line() == b"i1 OK IDLE terminated"


def test_idle_session_is_told_bye_and_server_exits_within_2_s_on_sigterm(imap):
    with conn(imap) as c:
        c.ok("SELECT INBOX")
        c.send("i1 IDLE\r\n")
        assert c.line() == b"+ idling"
        proc = imap.procs[0]
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert c.line() == b"* BYE server shutting down"
        assert proc.wait(3) == 0
        assert time.monotonic() - start < 2.0


def test_uidplus_append_copy_move_and_uid_expunge(imap):
    with conn(imap) as c:
        c.ok("CREATE Archive")
        lines, done = c.cmd(b'APPEND INBOX (\\Flagged $Work) "05-Feb-2024 10:11:12 +0100" {9+}\r\nSubject:\r\n')
        validity, uid = re.search(rb"\[APPENDUID (\d+) (\d+)\]", done).groups()
        assert b"UIDVALIDITY " + validity in b" ".join(c.ok("SELECT INBOX"))
        lines = c.ok(f"UID FETCH {uid.decode()} (FLAGS INTERNALDATE)")
        assert b"FLAGS (\\Flagged \\Recent $Work)" in lines[0] and b'INTERNALDATE "05-Feb-2024' in lines[0]
        c.ok(b"APPEND INBOX {4+}\r\nx\r\n\r\n")
        c.ok("NOOP")
        lines, done = c.cmd("UID COPY 1:* Archive")
        assert re.search(rb"OK \[COPYUID \d+ 1:2 1:2\] UID COPY completed", done), done
        lines, done = c.cmd("MOVE 1 Archive")
        assert re.match(rb"\* OK \[COPYUID \d+ 1 3\]", lines[0]), lines
        assert lines[1] == b"* 1 EXPUNGE" and done.endswith(b"MOVE completed")
        c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        c.ok("UID EXPUNGE 1:1")  # UID 2 is not in the set: kept
        assert c.ok("UID SEARCH DELETED") == [b"* SEARCH 2"]
        assert b"MESSAGES 3" in c.ok("STATUS Archive (MESSAGES UIDNEXT)")[0]
        lines, done = c.cmd("COPY 1 Nowhere")
        assert done.startswith(b"t") and b"NO [TRYCREATE]" in done


def test_mailbox_hierarchy_rename_subscriptions_and_special_use(imap):
    with conn(imap) as c:
        assert c.ok('LIST "" ""') == [b'* LIST (\\Noselect) "." ""']
        for name in ("Sent", "Work.", "Work.2024.Q1", "Trash"):
            c.ok(f"CREATE {name}")
        lines = c.ok('LIST "" "*"')
        assert b'* LIST (\\HasNoChildren \\Sent) "." "Sent"' in lines
        assert b'* LIST (\\HasChildren) "." "Work"' in lines
        assert b'* LIST (\\Noselect \\HasChildren) "." "Work.2024"' in lines  # only through its child
        assert b'* LIST (\\HasNoChildren \\Trash) "." "Trash"' in lines
        assert c.ok('LIST "" "Work.%"') == [b'* LIST (\\Noselect \\HasChildren) "." "Work.2024"']
        assert c.ok('LIST "" inbox') == [b'* LIST (\\HasNoChildren) "." "INBOX"']
        c.ok("RENAME Work Job")
        assert b'"Job.2024.Q1"' in b" ".join(c.ok('LIST "" "Job.*"'))
        c.ok("SUBSCRIBE Job.2024.Q1")
        c.ok("SUBSCRIBE Sent")
        assert c.ok('LSUB "" "%"') == [b'* LSUB (\\Noselect) "." "Job"', b'* LSUB () "." "Sent"']
        c.ok("UNSUBSCRIBE Sent")
        assert c.ok('LSUB "" "*"') == [b'* LSUB () "." "Job.2024.Q1"']
        assert c.cmd("CREATE Sent")[1].endswith(b"NO [ALREADYEXISTS] mailbox already exists")
        assert b"NO [NONEXISTENT]" in c.cmd("SELECT Nope")[1]
        assert b"NO [CANNOT]" in c.cmd("CREATE a/b")[1]
        assert b"NO [CANNOT]" in c.cmd("CREATE caf&-&")[1]  # not modified UTF-7
        assert c.ok("NAMESPACE") == [b'* NAMESPACE (("" ".")) NIL NIL']
    assert (imap.base / "data" / "store" / USER / ".Job.2024.Q1" / "cur").is_dir()  # Maildir++ on disk


def test_uidvalidity_of_a_recreated_name_differs(imap):
    with conn(imap) as c:
        c.ok("CREATE Box")
        first = c.ok("STATUS Box (UIDVALIDITY)")[0]
        c.ok("DELETE Box")
        c.ok("CREATE Box")
        assert c.ok("STATUS Box (UIDVALIDITY)")[0] != first


def test_search_over_the_wire(imap):
    deliver(imap, 3)
    with conn(imap) as c:
        c.ok("SELECT INBOX")
        assert c.ok("SEARCH CHARSET UTF-8 SUBJECT \"hello 1\"") == [b"* SEARCH 2"]
        assert c.ok("UID SEARCH UID 2:4294967295 NOT BODY \"body 2\"") == [b"* SEARCH 2"]
        assert c.ok("SEARCH OR FROM ann@example.org 9 SENTON 1-Jan-2024") == [b"* SEARCH 1 2 3"]
        assert b"NO [BADCHARSET" in c.cmd("SEARCH CHARSET KOI8-R ALL")[1]
        assert c.ok("SEARCH 5") == [b"* SEARCH"]


def test_every_command_gets_a_tagged_reply_without_echoing_input(imap):
    with conn(imap, login=False) as c:
        for text, status in (("FROBNICATE", b"BAD"), ("SELECT INBOX", b"BAD"), ("LOGIN", b"BAD"),
                             ("AUTHENTICATE XOAUTH9", b"NO"), ("ID NIL", b"OK"), ("CAPABILITY", b"OK")):
            lines, done = c.cmd(text)
            assert done.split(b" ")[1] == status, (text, done)
            assert b"FROB" not in done and b"XOAUTH9" not in done
        c.login(USER, PASSWORD)
        for text, status in (("FETCH 1 FLAGS", b"BAD"), ("LOGIN a b", b"BAD"), ("STATUS INBOX (NOPE)", b"BAD"),
                             ("SELECT INBOX", b"OK"), ("FETCH 1 FLAGS", b"BAD"), ("FETCH 1:* (NOPE)", b"BAD"),
                             ("STORE 1 FLAGS (\\Bogus)", b"BAD"), ("UID FROB 1", b"BAD"), ("SEARCH", b"BAD")):
            lines, done = c.cmd(text)
            assert done.split(b" ")[1] == status, (text, done)
            assert b"NOPE" not in done and b"Bogus" not in done and b"FROB" not in done
        c.send("x LOGOUT\r\n")
        assert c.until("x")[1] == b"x OK LOGOUT completed"
