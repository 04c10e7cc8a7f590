"""SMTP and LMTP in full (issue 13 "SMTP / LMTP"): null sender, postmaster, local domains only,
the EHLO/LHLO extensions, enhanced status codes on every reply, pipelining, SMTPUTF8."""

from __future__ import annotations

import re
import smtplib
import socket

import pytest

from msgsrv.config.store import ConfigStore
from msgsrv.store.mailbox import Store
from tests.services.conftest import USER, Conn

ENHANCED = re.compile(rb"^[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}( |$)")


@pytest.fixture(scope="module")
def mta(tmp_path_factory):
    from tests.services.conftest import make_root

    m = make_root(tmp_path_factory.mktemp("mta") / "root")
    ConfigStore(m.root.config_file).update({"local.domains": "example.net, Mail.Example.COM"})
    m.spawn("dispatcher")
    yield m
    m.stop_all()


def last_message(m, user: str = USER) -> bytes:
    box = Store(m.root).mailbox(user)
    msgs = box.messages()
    return box.read(msgs[-1].uid) if msgs else b""


def count(m, user: str = USER) -> int:
    box = Store(m.root).mailbox(user)
    return len(box.messages()) if box.exists() else 0


def test_null_sender_gets_an_empty_return_path(mta):
    with smtplib.SMTP("127.0.0.1", mta.port("service.smtp.port"), timeout=10) as s:
        assert s.sendmail("<>", [USER], b"Subject: bounce\r\n\r\nundeliverable\r\n") == {}
    assert last_message(mta).startswith(b"Return-Path: <>\r\nReceived: ")


@pytest.mark.parametrize("address", ["postmaster", "Postmaster", "POSTMASTER@example.org", "postmaster@localhost",
                                     "postmaster@example.net"])
def test_postmaster_is_always_a_valid_recipient(mta, address):
    before = count(mta, "postmaster")
    with smtplib.SMTP("127.0.0.1", mta.port("service.smtp.port"), timeout=10) as s:
        assert s.sendmail("bob@example.org", [address], b"Subject: to the postmaster\r\n\r\nx\r\n") == {}
    assert count(mta, "postmaster") == before + 1
    with smtplib.LMTP("127.0.0.1", mta.port("service.lmtp.port"), timeout=10) as s:
        assert s.sendmail("bob@example.org", [address], b"Subject: lmtp to the postmaster\r\n\r\nx\r\n") == {}
    assert count(mta, "postmaster") == before + 2


@pytest.mark.parametrize("address,code", [
    (f"{USER}@example.org", 250),  # service.defaultdomain
    (f"{USER}@example.net", 250),  # local.domains
    (f"{USER}@mail.example.com", 250),  # local.domains, case-insensitive
    (f"{USER}@localhost", 250),
    (f"{USER}@{socket.gethostname()}", 250),
    (USER, 250),
    (f"{USER}@example.com", 550),  # not local: no relaying
    ("victim@gmail.com", 550),
    ("postmaster@gmail.com", 550),
    ("nobody@example.org", 550),
])
def test_recipient_domains_are_checked_no_open_relay(mta, address, code):
    with smtplib.SMTP("127.0.0.1", mta.port("service.smtp.port"), timeout=10) as s:
        s.ehlo()
        s.mail("bob@example.org")
        got, text = s.rcpt(address)
    assert got == code, text
    if code == 550:
        domain = address.rpartition("@")[2]
        want = b"5.1.1" if domain == "example.org" else b"5.7.1"
        assert text.startswith(want)


def test_relay_is_refused_even_after_auth(mta):
    with smtplib.SMTP("127.0.0.1", mta.port("service.smtp.port"), timeout=10) as s:
        from tests.services.conftest import PASSWORD

        s.login(USER, PASSWORD)
        s.mail("alice@example.org")
        code, text = s.rcpt("victim@gmail.com")
    assert code == 550 and b"relay access denied" in text


def test_ehlo_and_lhlo_advertise_the_extensions(mta):
    with smtplib.SMTP("127.0.0.1", mta.port("service.smtp.port"), timeout=10) as s:
        s.ehlo()
        for ext in ("pipelining", "enhancedstatuscodes", "smtputf8", "8bitmime", "size", "starttls", "auth"):
            assert s.has_extn(ext), ext
    with smtplib.LMTP("127.0.0.1", mta.port("service.lmtp.port"), timeout=10) as s:
        s.ehlo()
        for ext in ("pipelining", "enhancedstatuscodes", "starttls"):  # RFC 2033 §5
            assert s.has_extn(ext), ext
        assert not s.has_extn("auth")


def test_every_reply_but_banner_and_ehlo_has_an_enhanced_status_code(mta):
    with Conn(mta.port("service.smtp.port")) as c:
        assert c.line().startswith(b"220 ")
        c.send("EHLO client.example\r\n")
        while c.line().startswith(b"250-"):
            pass
        replies = [c.ask(cmd) for cmd in (
            "NOOP", "FROB", "RCPT TO:<alice>", "MAIL FROM:<bob@example.org>", "MAIL FROM:<x@y>",
            "RCPT TO:<alice>", "RCPT TO:<nobody@example.org>", "RCPT TO:<a@gmail.com>", "RCPT TO:<<>>",
            "VRFY alice", "RSET", "DATA", "MAIL FROM:<bob@example.org> SIZE=99999999999", "HELP", "QUIT")]
    for reply in replies:
        assert ENHANCED.match(reply), reply


def test_pipelined_transaction_gets_every_reply_in_order(mta):
    before = count(mta)
    with Conn(mta.port("service.smtp.port")) as c:
        c.line()
        c.send("EHLO client.example\r\n")
        while c.line().startswith(b"250-"):
            pass
        c.send("MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\n"
               "RCPT TO:<postmaster>\r\nDATA\r\n")  # RFC 2920: one write, replies in order
        assert [c.line()[:9] for _ in range(5)] == [b"250 2.1.0", b"250 2.1.5", b"550 5.1.1", b"250 2.1.5", b"354 End d"]
        c.send("Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        assert c.line().startswith(b"250 2.0.0")
        assert c.line().startswith(b"221 2.0.0")
    assert count(mta) == before + 1


def test_lmtp_pipelining_answers_once_per_recipient(mta):
    with Conn(mta.port("service.lmtp.port")) as c:
        c.line()
        c.send("LHLO client.example\r\n")
        while c.line().startswith(b"250-"):
            pass
        c.send("MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice>\r\nRCPT TO:<postmaster>\r\nDATA\r\n")
        assert [c.line()[:9] for _ in range(4)] == [b"250 2.1.0", b"250 2.1.5", b"250 2.1.5", b"354 End d"]
        c.send("Subject: lmtp pipelined\r\n\r\nbody\r\n.\r\n")
        assert [c.line()[:9] for _ in range(2)] == [b"250 2.0.0", b"250 2.0.0"]


def test_smtputf8_message_is_accepted_and_stored_byte_for_byte(mta):
    body = "Subject: Grüße\r\nFrom: jörg@example.org\r\n\r\nnaïve café ✓\r\n".encode()
    with smtplib.SMTP("127.0.0.1", mta.port("service.smtp.port"), timeout=10) as s:
        s.ehlo()
        assert s.sendmail("jörg@example.org", [USER], body, mail_options=["SMTPUTF8"]) == {}
    stored = last_message(mta)
    assert stored.endswith(body) and "Return-Path: <jörg@example.org>".encode() in stored
