"""Mail through the real servers with the standard library's clients: SMTP and LMTP in, IMAP and
POP3 out, delete, gone (RFC 5321, RFC 2033, RFC 3501, RFC 1939)."""

from __future__ import annotations

import email
import http.client
import imaplib
import json
import poplib
import smtplib
import socket
import uuid

from tests.services.conftest import PASSWORD, USER


def send_smtp(m, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", m.port("service.smtp.port"), timeout=10) as s:
        s.sendmail("bob@example.org", [f"{USER}@example.org"],
                   f"From: bob@example.org\r\nSubject: {subject}\r\n\r\nhello\r\n.leading dot\r\n")


def send_lmtp(m, subject: str) -> dict:
    with smtplib.LMTP("127.0.0.1", m.port("service.lmtp.port"), timeout=10) as s:
        return s.sendmail("bob@example.org", [USER], f"Subject: {subject}\r\n\r\nvia lmtp\r\n")


def imap_login(m) -> imaplib.IMAP4:
    im = imaplib.IMAP4("127.0.0.1", m.port("service.imap.port"), timeout=10)
    im.login(USER, PASSWORD)
    return im


def imap_find(im, subject: str) -> list[bytes]:
    typ, data = im.search(None, "ALL")
    found = []
    for num in data[0].split():
        typ, msg = im.fetch(num, "(BODY.PEEK[HEADER])")
        if subject.encode() in msg[0][1]:
            found.append(num)
    return found


def test_smtp_message_is_read_by_imap_then_deleted_and_gone(mailsys):
    subject = f"smtp-{uuid.uuid4()}"
    send_smtp(mailsys, subject)
    im = imap_login(mailsys)
    try:
        assert im.select("INBOX")[0] == "OK"
        (num,) = imap_find(im, subject)
        typ, data = im.fetch(num, "(RFC822 FLAGS)")
        msg = email.message_from_bytes(data[0][1])
        assert msg["Subject"] == subject
        assert msg.get_payload() == "hello\r\n.leading dot\r\n"  # RFC 5321 §4.5.2 transparency undone
        assert msg["Received"] and msg["Return-Path"] == "<bob@example.org>"
        assert b"\\Seen" in data[0][0] or b"\\Seen" in data[-1]
        assert im.store(num, "+FLAGS", "\\Deleted")[0] == "OK"
        typ, expunged = im.expunge()
        assert typ == "OK" and expunged[0] == num
        assert imap_find(im, subject) == []
    finally:
        im.logout()


def test_lmtp_message_is_read_by_pop_then_deleted_and_gone(mailsys):
    subject = f"lmtp-{uuid.uuid4()}"
    assert send_lmtp(mailsys, subject) == {}  # no refused recipients

    def find(p):
        count, _ = p.stat()
        for n in range(1, count + 1):
            if f"Subject: {subject}".encode() in p.top(n, 0)[1]:
                return n
        return None

    p = poplib.POP3("127.0.0.1", mailsys.port("service.pop.port"), timeout=10)
    p.user(USER)
    p.pass_(PASSWORD)
    n = find(p)
    assert n is not None
    resp, lines, octets = p.retr(n)
    assert b"via lmtp" in lines
    assert p.dele(n).startswith(b"+OK")
    assert p.quit().startswith(b"+OK")

    p = poplib.POP3("127.0.0.1", mailsys.port("service.pop.port"), timeout=10)
    p.user(USER)
    p.pass_(PASSWORD)
    assert find(p) is None
    p.quit()


def test_pop_dele_without_quit_removes_nothing(mailsys):
    subject = f"keep-{uuid.uuid4()}"
    send_lmtp(mailsys, subject)
    p = poplib.POP3("127.0.0.1", mailsys.port("service.pop.port"), timeout=10)
    p.user(USER)
    p.pass_(PASSWORD)
    count, _ = p.stat()
    p.dele(count)
    p.sock.close()  # dropped, no QUIT: RFC 1939 §6 says no UPDATE state
    im = imap_login(mailsys)
    im.select("INBOX")
    assert len(imap_find(im, subject)) == 1
    im.logout()


def test_unknown_recipient_is_refused_by_smtp_and_lmtp(mailsys):
    for cls, param in ((smtplib.SMTP, "service.smtp.port"), (smtplib.LMTP, "service.lmtp.port")):
        with cls("127.0.0.1", mailsys.port(param), timeout=10) as s:
            s.ehlo()  # smtplib.LMTP sends LHLO for ehlo()
            s.mail("bob@example.org")
            code, text = s.rcpt("nobody@example.org")
            assert code == 550 and b"no such user" in text


def test_lmtp_answers_once_per_recipient(mailsys):
    from msgsrv.store.users import Users

    if not Users(mailsys.root).exists("carol"):
        Users(mailsys.root).add("carol", "pw")
    with socket.create_connection(("127.0.0.1", mailsys.port("service.lmtp.port")), timeout=10) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220")
        sock.sendall(b"LHLO test\r\n")
        while not (line := f.readline()).startswith(b"250 "):  # each read waits 10 s at most
            assert line.startswith(b"250-"), line  # b"": the server closed the connection
        sock.sendall(b"MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n")
        assert [f.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
        sock.sendall(b"Subject: two\r\n\r\nx\r\n.\r\n")
        replies = [f.readline() for _ in range(2)]  # RFC 2033 §4.2
        assert all(r.startswith(b"250 ") for r in replies)
        assert b"alice" in replies[0] and b"carol" in replies[1]


def test_imap_list_create_status_and_uid_commands(mailsys):
    im = imap_login(mailsys)
    try:
        name = f"Box {uuid.uuid4().hex[:6]}"
        assert im.create(f'"{name}"')[0] == "OK"
        typ, listing = im.list()
        assert any(name.encode() in line for line in listing)
        im.select("INBOX")
        send_smtp(mailsys, "uid-test")
        im.noop()
        typ, data = im.uid("SEARCH", "ALL")
        last_uid = data[0].split()[-1]
        assert im.uid("COPY", last_uid, f'"{name}"')[0] == "OK"
        typ, status = im.status(f'"{name}"', "(MESSAGES UNSEEN)")
        assert b"MESSAGES 1" in status[0]
        typ, data = im.uid("FETCH", last_uid, "(UID RFC822.SIZE)")
        assert f"UID {last_uid.decode()}".encode() in data[0]
        assert im.delete(f'"{name}"')[0] == "OK"
    finally:
        im.logout()


def test_http_status_page_and_health_json(mailsys):
    c = http.client.HTTPConnection("127.0.0.1", mailsys.port("service.http.port"), timeout=10)
    c.request("GET", "/")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/html")
    page = r.read()
    assert b"mshttpd" in page and b"alice" not in page and b"users" not in page  # no user data
    c.request("GET", "/health")  # same connection: keep-alive
    r = c.getresponse()
    assert r.status == 200
    facts = json.loads(r.read())
    assert facts["status"] == "ok" and facts["server"] == "mshttpd" and isinstance(facts["pid"], int)
    c.request("GET", "/nope")
    r = c.getresponse()
    assert r.status == 404
    r.read()
    c.close()


def test_new_mail_is_published_to_ens_subscribers(mailsys):
    with socket.create_connection(("127.0.0.1", mailsys.port("local.ens.port")), timeout=10) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"* OK enpd")
        sock.sendall(b"SUBSCRIBE newmail\r\n")
        assert f.readline().startswith(b"+OK subscribed")
        send_smtp(mailsys, "event")
        line = f.readline()
        while not line.startswith(b"* EVENT"):  # the first delivery may race the ens connect
            assert line, "ens closed the connection before the event"  # each read waits 10 s at most
            line = f.readline()
        assert line.startswith(b"* EVENT newmail alice INBOX ")
