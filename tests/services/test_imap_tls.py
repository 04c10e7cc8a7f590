"""imapd with TLS: STARTTLS, the implicit-TLS port (service.imap.sslport), AUTHENTICATE PLAIN,
local.requiretls, and Python's imaplib over both (issue 13 "TLS and authentication")."""

from __future__ import annotations

import base64
import imaplib

import pytest

from msgsrv.config.store import ConfigStore
from msgsrv.tls import client_context
from tests.services.conftest import PASSWORD, USER
from tests.services.imapconn import ImapConn


@pytest.fixture
def imap(mailroot):
    mailroot.spawn("imap")
    return mailroot


def plain(user: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def test_imaplib_starttls_then_login(imap):
    im = imaplib.IMAP4("127.0.0.1", imap.port("service.imap.port"), timeout=10)
    assert "STARTTLS" in im.capabilities and "AUTH=PLAIN" in im.capabilities
    assert im.starttls(ssl_context=client_context(imap.root))[0] == "OK"
    assert "STARTTLS" not in im.capabilities  # imaplib asks again after the handshake
    assert im.login(USER, PASSWORD)[0] == "OK"
    assert im.select("INBOX")[0] == "OK"
    im.logout()


def test_imaplib_over_the_implicit_tls_port(imap):
    im = imaplib.IMAP4_SSL("127.0.0.1", imap.port("service.imap.sslport"), ssl_context=client_context(imap.root),
                           timeout=10)
    assert "STARTTLS" not in im.capabilities
    assert im.login(USER, PASSWORD)[0] == "OK"
    typ, data = im.append("INBOX", None, None, b"Subject: over tls\r\n\r\nhi\r\n")
    assert typ == "OK"
    im.select("INBOX")
    assert im.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0][1] == b"Subject: over tls\r\n\r\n"
    im.logout()


def test_authenticate_plain_with_and_without_initial_response(imap):
    ctx = client_context(imap.root)
    with ImapConn(imap.port("service.imap.sslport"), context=ctx) as c:
        lines, done = c.cmd(f"AUTHENTICATE PLAIN {plain(USER, PASSWORD)}")  # RFC 4959 SASL-IR
        assert done.startswith(b"t1 OK [CAPABILITY ")
    with ImapConn(imap.port("service.imap.sslport"), context=ctx) as c:
        c.send("a1 AUTHENTICATE PLAIN\r\n")
        assert c.line() == b"+ "
        c.send("*\r\n")
        assert c.line() == b"a1 BAD AUTHENTICATE cancelled"
        c.send("a2 AUTHENTICATE PLAIN\r\n")
        assert c.line() == b"+ "
        c.send(plain(USER, PASSWORD, authzid="root") + "\r\n")
        assert c.line().startswith(b"a2 NO [AUTHORIZATIONFAILED]")
        c.send("a3 AUTHENTICATE PLAIN\r\n")
        c.line()
        c.send(plain(USER, PASSWORD, authzid=USER) + "\r\n")
        assert c.line().startswith(b"a3 OK")


def test_requiretls_refuses_cleartext_logins_until_starttls(mailroot):
    ConfigStore(mailroot.root.config_file).update({"local.requiretls": "yes"})
    mailroot.spawn("imap")
    with ImapConn(mailroot.port("service.imap.port")) as c:
        assert b"LOGINDISABLED" in c.greeting and b"AUTH=PLAIN" not in c.greeting
        lines, done = c.cmd(f'LOGIN {USER} "{PASSWORD}"')
        assert done.startswith(b"t1 NO [PRIVACYREQUIRED]")
        lines, done = c.cmd(f"AUTHENTICATE PLAIN {plain(USER, PASSWORD)}")
        assert done.startswith(b"t2 NO [PRIVACYREQUIRED]")
    im = imaplib.IMAP4("127.0.0.1", mailroot.port("service.imap.port"), timeout=10)
    im.starttls(ssl_context=client_context(mailroot.root))
    assert "LOGINDISABLED" not in im.capabilities and "AUTH=PLAIN" in im.capabilities
    assert im.login(USER, PASSWORD)[0] == "OK"
    im.logout()
    im = imaplib.IMAP4_SSL("127.0.0.1", mailroot.port("service.imap.sslport"),
                           ssl_context=client_context(mailroot.root), timeout=10)
    assert im.login(USER, PASSWORD)[0] == "OK"
    im.logout()


def test_commands_pipelined_behind_starttls_are_dropped(imap):
    # RFC 2595 §3.1 / CVE-2011-0411 class: cleartext sent after STARTTLS must not run inside TLS
    import socket
    import ssl

    sock = socket.create_connection(("127.0.0.1", imap.port("service.imap.port")), timeout=10)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"a1 STARTTLS\r\na2 CAPABILITY\r\n")
    assert f.readline() == b"a1 OK Begin TLS negotiation now\r\n"
    tls = client_context(imap.root).wrap_socket(sock)
    tls.sendall(b"a3 NOOP\r\n")
    tf = tls.makefile("rb")
    assert tf.readline() == b"a3 OK NOOP completed\r\n"  # nothing answered for a2
    tls.close()
    with pytest.raises(ssl.SSLError):  # and the IMAPS port speaks only TLS
        s = socket.create_connection(("127.0.0.1", imap.port("service.imap.sslport")), timeout=10)
        ctx = ssl.create_default_context()  # does not trust the suite's certificate
        ctx.wrap_socket(s, server_hostname="localhost")


def test_the_fault_switch_holds_the_implicit_tls_port_too(imap):
    import socket

    imap.fault("imap", "hang")
    raw = socket.create_connection(("127.0.0.1", imap.port("service.imap.sslport")), timeout=10)
    tls = client_context(imap.root).wrap_socket(raw)  # the handshake happens, then nothing
    tls.settimeout(0.5)
    with pytest.raises(TimeoutError):
        tls.recv(100)
    tls.close()
    imap.fault("imap", None)
    with ImapConn(imap.port("service.imap.sslport"), context=client_context(imap.root)) as c:
        assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1")
