"""Hostile clients on POP and SMTP (issue 13 "Hostile clients"): each attack found becomes a test."""

from __future__ import annotations

import base64
import smtplib
import time

from msgsrv.store.mailbox import Store
from tests.services.conftest import PASSWORD, USER, Conn


def test_issue_13_300_rcpt_of_one_recipient_with_1mb_body_is_delivered_once(mailroot):
    mailroot.spawn("dispatcher")
    body = b"Subject: many\r\n\r\n" + (b"y" * 998 + b"\r\n") * 1000
    with Conn(mailroot.port("service.smtp.port")) as c:
        c.line()
        assert c.ask("HELO attacker").startswith(b"250")
        assert c.ask("MAIL FROM:<a@example.org>").startswith(b"250")
        c.send("RCPT TO:<alice>\r\n" * 300)
        replies = [c.line()[:9] for _ in range(300)]
        assert replies == [b"250 2.1.5"] * 100 + [b"452 4.5.3"] * 200  # capped at 100, as common MTAs
        assert c.ask("DATA").startswith(b"354")
        c.send(body + b".\r\n")
        assert c.line().startswith(b"250 2.0.0 OK: delivered to 1 recipient(s)")
    msgs = Store(mailroot.root).messages(USER)
    assert len(msgs) == 1 and msgs[0].size > 1_000_000


def test_issue_13_recipients_per_message_are_capped_at_100(mailroot):
    mailroot.spawn("dispatcher")
    with Conn(mailroot.port("service.lmtp.port")) as c:
        c.line()
        c.send("LHLO attacker\r\n")
        while c.line().startswith(b"250-"):
            pass
        assert c.ask("MAIL FROM:<a@example.org>").startswith(b"250")
        c.send("".join(f"RCPT TO:<{'postmaster' if i % 2 else 'alice'}@example.org>\r\n" for i in range(101)))
        replies = [c.line()[:9] for _ in range(101)]
        assert replies[:100] == [b"250 2.1.5"] * 100 and replies[100] == b"452 4.5.3"
        c.send("DATA\r\n")
        assert c.line().startswith(b"354")
        c.send("Subject: x\r\n\r\nx\r\n.\r\n")
        # RFC 2033 §4.2: one reply per accepted RCPT, though each user gets the message once
        assert [c.line()[:9] for _ in range(100)] == [b"250 2.0.0"] * 100
    assert len(Store(mailroot.root).messages(USER)) == 1
    assert len(Store(mailroot.root).messages("postmaster")) == 1


def timed(conn: Conn, line: str) -> tuple[bytes, float]:
    t0 = time.monotonic()
    reply = conn.ask(line)
    return reply, time.monotonic() - t0


def test_issue_13_pop_wrong_passwords_are_slowed_per_address_and_cut_off(mailroot):
    mailroot.spawn("pop")
    port = mailroot.port("service.pop.port")
    with Conn(port) as c:
        c.line()
        delays = []
        for _ in range(3):
            assert c.ask(f"USER {USER}").startswith(b"+OK")
            reply, took = timed(c, "PASS wrong")
            assert reply.startswith(b"-ERR [AUTH] invalid user name or password")
            delays.append(took)
        assert b"closing connection" in reply
        assert c.line() == b""  # closed after the third failure on one connection
    assert delays[0] >= 0.45 and delays[1] >= 0.95 and delays[2] >= 1.95  # growing
    with Conn(port) as c:  # a new connection from the same address starts where the last one left
        c.line()
        c.ask(f"USER {USER}")
        reply, took = timed(c, "PASS wrong again")
        assert reply.startswith(b"-ERR [AUTH]") and took >= 3.9
        c.ask(f"USER {USER}")
        assert c.ask(f"PASS {PASSWORD}").startswith(b"+OK")  # a success forgets the failures
        assert c.ask("QUIT").startswith(b"+OK")
    with Conn(port) as c:
        c.line()
        c.ask(f"USER {USER}")
        reply, took = timed(c, "PASS wrong")
        assert took < 1.5
    log = mailroot.root.default_log.read_text()
    assert log.count("login failed for 'alice' from 127.0.0.1") == 5
    assert "wrong" not in log


def test_issue_13_smtp_auth_failures_are_slowed_and_cut_off(mailroot):
    mailroot.spawn("dispatcher")
    bad = base64.b64encode(f"\0{USER}\0wrong".encode()).decode()
    with Conn(mailroot.port("service.smtp.port")) as c:
        c.line()
        c.send("EHLO attacker\r\n")
        while c.line().startswith(b"250-"):
            pass
        replies = [timed(c, f"AUTH PLAIN {bad}") for _ in range(3)]
        assert [r[:9] for r, _ in replies] == [b"535 5.7.8", b"535 5.7.8", b"421 4.7.0"]
        assert replies[0][1] >= 0.45 and replies[1][1] >= 0.95 and replies[2][1] >= 1.95
        assert c.line() == b""  # closed
    with smtplib.SMTP("127.0.0.1", mailroot.port("service.smtp.port"), timeout=20) as s:
        s.login(USER, PASSWORD)  # the right password still works (and forgets the failures)
    assert "AUTH failed for 'alice' from 127.0.0.1" in mailroot.root.default_log.read_text()
