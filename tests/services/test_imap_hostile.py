"""imapd against hostile clients (issue 13 "Hostile clients"): bounded commands and literals before
and after login, sequence sets never expanded, LIST patterns without backtracking, one client never
stalling the others, and failed logins that cost more each time."""

from __future__ import annotations

import socket
import threading
import time

import psutil
import pytest

from msgsrv.store.mailbox import Store
from tests.services.conftest import PASSWORD, USER
from tests.services.imapconn import ImapConn

MB = 1024 * 1024


@pytest.fixture
def imap(mailroot):
    mailroot.spawn("imap")
    return mailroot


def rss(m) -> int:
    return psutil.Process(m.procs[0].pid).memory_info().rss


def still_serves(m) -> None:
    with ImapConn(m.port("service.imap.port")) as c:
        c.login(USER, PASSWORD)
        assert c.ok("NOOP") == []


def read_until_closed(sock: socket.socket, deadline: float = 10.0) -> bytes:
    sock.settimeout(deadline)
    out = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            out += chunk
    except (ConnectionResetError, TimeoutError):
        return out


def test_chained_nonsync_literals_before_login_are_cut_off(imap):
    # issue 13: one command of chained LITERAL+ literals that never ends grew imapd by 400 MB in 3 s
    before = rss(imap)
    sock = socket.create_connection(("127.0.0.1", imap.port("service.imap.port")), timeout=10)
    sock.recv(4096)
    chunk = b"x" * 4000
    try:
        sock.sendall(b"a1 LOGIN {4000+}\r\n" + chunk)
        for _ in range(400):  # 1.6 MB in one command
            sock.sendall(b" {4000+}\r\n" + chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server hung up on us: what we want
    reply = read_until_closed(sock)
    sock.close()
    assert b"a1 BAD command too long" in reply or b"a1 BAD literal too large" in reply
    assert b"* BYE" in reply
    assert rss(imap) - before < 20 * MB
    still_serves(imap)


def test_big_literals_before_login_are_refused_unread(imap):
    # issue 13: 10 MiB APPEND literals before LOGIN added 130 MB
    before = rss(imap)
    with ImapConn(imap.port("service.imap.port")) as c:
        c.send("a1 APPEND INBOX {10485760}\r\n")  # synchronizing: refused, no "+", connection kept
        assert c.line() == b"a1 BAD literal too large (at most 8192 octets here)"
        assert c.cmd("NOOP")[1] == b"t1 OK NOOP completed"
    sock = socket.create_connection(("127.0.0.1", imap.port("service.imap.port")), timeout=10)
    sock.recv(4096)
    try:
        sock.sendall(b"a1 APPEND INBOX {10485760+}\r\n" + b"x" * (4 * MB))  # the octets are on their way
    except (BrokenPipeError, ConnectionResetError):
        pass
    reply = read_until_closed(sock)
    sock.close()
    assert b"* BYE" in reply
    assert rss(imap) - before < 20 * MB
    still_serves(imap)


def test_command_size_is_bounded_after_login(imap):
    with ImapConn(imap.port("service.imap.port")) as c:
        c.login(USER, PASSWORD)
        c.ok("SELECT INBOX")
        c.send(b"a1 SEARCH TEXT {40000+}\r\n" + b"y" * 40000 + b" TEXT {40000}\r\n")
        assert c.line().startswith(b"a1 BAD literal too large")  # 64 KiB per command; no "+" sent
        assert c.cmd("NOOP")[1].endswith(b"OK NOOP completed")
        c.send("a2 APPEND INBOX {70000}\r\n")  # a message may be bigger than a command
        assert c.line() == b"+ Ready for literal data"
        c.send(b"Subject: big\r\n\r\n" + b"z" * (70000 - 17) + b"\r\n")
        assert c.until("a2")[1].startswith(b"a2 OK [APPENDUID ")


def test_sequence_sets_are_not_expanded(imap):
    # issue 13: UID FETCH 1:10000000,10000001:20000000,... took 3.2 GB and blocked every client
    for _ in range(3):
        Store(imap.root).deliver(USER, b"Subject: x\r\n\r\nbody\r\n")
    ranges = ",".join(f"{i * 10_000_000 + 1}:{(i + 1) * 10_000_000}" for i in range(400))
    before = rss(imap)
    with ImapConn(imap.port("service.imap.port")) as c:
        c.login(USER, PASSWORD)
        c.ok("SELECT INBOX")
        start = time.monotonic()
        lines = c.ok(f"UID FETCH {ranges} FLAGS")
        assert len(lines) == 3 and time.monotonic() - start < 2
        assert c.ok("UID SEARCH UID 1:4294967295") == [b"* SEARCH 1 2 3"]
        assert b"BAD" in c.cmd("FETCH 1:4294967295 FLAGS")[1]  # sequence numbers must exist
    assert rss(imap) - before < 20 * MB


def test_list_pattern_does_not_stall_the_other_clients(imap):
    # issue 13: LIST "" "*a*a*a*a*a*b" against a long name blocked every client for 77 s
    store = Store(imap.root)
    store.create(USER, "a" * 190)
    for i in range(50):
        store.create(USER, f"{'a' * 150}.{i}")
    pattern = "*a" * 60 + "*b"
    with ImapConn(imap.port("service.imap.port")) as slow, ImapConn(imap.port("service.imap.port")) as other:
        slow.login(USER, PASSWORD)
        other.login(USER, PASSWORD)
        answered = {}

        def listing():
            answered["list"] = slow.ok(f'LIST "" "{pattern}"')

        t = threading.Thread(target=listing)
        start = time.monotonic()
        t.start()
        assert other.ok("NOOP") == []
        assert time.monotonic() - start < 1.0
        t.join(10)
        assert answered["list"] == [] and time.monotonic() - start < 3.0


def test_failed_logins_cost_more_each_time_and_close_the_connection(imap):
    # issue 13: 1,000 wrong passwords at 49/s with no delay, none of them closing the connection
    with ImapConn(imap.port("service.imap.port")) as c:
        times = []
        for _ in range(3):
            start = time.monotonic()
            lines, done = c.cmd(f"LOGIN {USER} wrong")
            times.append(time.monotonic() - start)
            assert b"NO [AUTHENTICATIONFAILED]" in done
        assert times[0] >= 0.4 and times[1] >= 0.9 and times[2] >= 1.9  # 0.5 s, 1 s, 2 s
        assert c.line() == b"* BYE too many failed logins"
        assert c.line() == b""  # closed
    with ImapConn(imap.port("service.imap.port")) as c:  # the address is remembered
        start = time.monotonic()
        assert b"NO" in c.cmd(f"LOGIN {USER} wrong")[1]
        assert time.monotonic() - start >= 3.9  # the 4th failure from this address: 4 s
        c.login(USER, PASSWORD)  # a success forgets
    log = imap.root.default_log.read_text()
    assert log.count("login failed for 'alice'") == 3  # failures 1, 2 and 4 are logged, not 3
    assert "wrong" not in log
