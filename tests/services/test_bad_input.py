"""Bad client input gets the protocol's error reply, and the server keeps serving others."""

from __future__ import annotations

import http.client
import imaplib
import poplib
import smtplib

import pytest

from tests.services.conftest import PASSWORD, USER, Conn

LONG = b"x" * 9000  # more than 8 KiB


def imap_still_serves(m) -> None:
    im = imaplib.IMAP4("127.0.0.1", m.port("service.imap.port"), timeout=10)
    assert im.login(USER, PASSWORD)[0] == "OK"
    im.logout()


def test_imap_unknown_command_overlong_line_and_garbage(mailsys):
    with Conn(mailsys.port("service.imap.port")) as c:
        assert c.line().startswith(b"* OK")
        assert c.ask("a1 FROBNICATE").startswith(b"a1 BAD unknown command")
        assert c.ask(b"a2 NOOP " + b"x" * 70000).startswith(b"a2 BAD line too long")  # over 64 KiB: tagged
        assert c.ask(b"\xff\xfe\x00garbage").startswith(b"* BAD")
        assert c.ask("(((").startswith(b"* BAD")
        assert c.ask("a3 SELECT INBOX").startswith(b"a3 BAD log in first")
        assert c.ask("a4 NOOP") == b"a4 OK NOOP completed"  # same connection still works
    imap_still_serves(mailsys)


def test_imap_wrong_password_is_refused(mailsys):
    im = imaplib.IMAP4("127.0.0.1", mailsys.port("service.imap.port"), timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        im.login(USER, "wrong")
    assert im.login(USER, PASSWORD)[0] == "OK"  # the same connection may try again
    im.logout()
    log = mailsys.root.default_log.read_text()
    assert "login failed for 'alice'" in log
    assert "wrong" not in log and PASSWORD not in log  # passwords are never logged


def test_imap_too_many_errors_closes_the_connection(mailsys):
    with Conn(mailsys.port("service.imap.port")) as c:
        c.line()
        c.send("x BOGUS\r\n" * 10)
        replies = [c.line() for _ in range(11)]
        assert replies[-1] == b"* BYE too many errors"
        assert c.line() == b""  # closed


def test_imap_literal_login(mailsys):
    with Conn(mailsys.port("service.imap.port")) as c:
        c.line()
        pw = PASSWORD.encode()
        assert c.ask(f"a1 LOGIN {USER} {{{len(pw)}}}") == b"+ Ready for literal data"
        assert c.ask(pw).startswith(b"a1 OK")


def test_pop_unknown_command_overlong_line_garbage_and_wrong_password(mailsys):
    with Conn(mailsys.port("service.pop.port")) as c:
        assert c.line().startswith(b"+OK")
        assert c.ask("FROB").startswith(b"-ERR unknown command")
        assert c.ask(b"USER " + LONG).startswith(b"-ERR line too long")
        assert c.ask(b"\x00\xff\x01").startswith(b"-ERR")
        assert c.ask("STAT").startswith(b"-ERR command not valid in this state")
        assert c.ask(f"USER {USER}").startswith(b"+OK")
        assert c.ask("PASS nope").startswith(b"-ERR [AUTH]")
        assert c.ask(f"USER {USER}").startswith(b"+OK")
        assert c.ask(f"PASS {PASSWORD}").startswith(b"+OK")
        assert c.ask("RETR 999999").startswith(b"-ERR no such message")
        assert c.ask("QUIT").startswith(b"+OK")
    p = poplib.POP3("127.0.0.1", mailsys.port("service.pop.port"), timeout=10)
    with pytest.raises(poplib.error_proto, match="AUTH"):
        p.user(USER)
        p.pass_("wrong")
    p.quit()


def test_smtp_unknown_command_overlong_line_and_garbage(mailsys):
    with Conn(mailsys.port("service.smtp.port")) as c:
        assert c.line().startswith(b"220")
        assert c.ask("FROB").startswith(b"500")
        assert c.ask(b"HELO " + LONG).startswith(b"500")
        assert c.ask(b"\xff\xfe\x00").startswith(b"500")
        assert c.ask("RCPT TO:<alice>").startswith(b"503")  # RFC 5321 §4.1.4 sequence
        assert c.ask("QUIT").startswith(b"221")
    with smtplib.SMTP("127.0.0.1", mailsys.port("service.smtp.port"), timeout=10) as s:
        assert s.noop()[0] == 250


def test_http_garbage_and_overlong_request_lines(mailsys):
    port = mailsys.port("service.http.port")
    with Conn(port) as c:
        assert c.ask(b"\xff\xfe garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    with Conn(port) as c:
        assert c.ask(b"GET /" + LONG + b" HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 414")
    with Conn(port) as c:
        assert c.ask(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").startswith(b"HTTP/1.1 405")
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/health")
    assert c.getresponse().status == 200


@pytest.mark.parametrize("param,partial", [
    ("service.imap.port", b"a1 LOG"),
    ("service.pop.port", b"US"),
    ("service.smtp.port", b"EH"),
    ("service.http.port", b"GET / HTTP/1.1\r\nHost: x"),
    ("local.store.port", b"STA"),
])
def test_connection_dropped_mid_command_leaves_the_server_serving(mailsys, param, partial):
    for _ in range(3):
        c = Conn(mailsys.port(param))
        c.send(partial)
        c.close()
    if param == "local.store.port":
        with Conn(mailsys.port(param)) as c:
            assert c.line().startswith(b"* OK stored")
            assert c.ask("PING") == b"+OK PONG"
    elif param == "service.http.port":
        h = http.client.HTTPConnection("127.0.0.1", mailsys.port(param), timeout=10)
        h.request("GET", "/")
        assert h.getresponse().status == 200
    else:
        with Conn(mailsys.port(param)) as c:
            assert c.line()[:3] in (b"* O", b"+OK", b"220")


def test_health_line_server_errors(mailsys):
    with Conn(mailsys.port("local.store.port")) as c:
        assert c.line().startswith(b"* OK stored ready")
        assert c.ask("NOPE").startswith(b"-ERR unknown command")
        assert c.ask(LONG).startswith(b"-ERR line too long")
        assert c.ask("STATUS").startswith(b"+OK stored pid=")
        assert c.ask("QUIT") == b"+OK bye"
