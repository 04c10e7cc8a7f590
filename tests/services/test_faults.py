"""The fault switch (data/run/fault.<component>, SIGUSR1) behaves as msgsrv-server(8) says."""

from __future__ import annotations

import select
import signal
import time

import pytest

from tests.conftest import held_by, wait_for
from tests.services.conftest import Conn

GREETING = {"cert": b"* OK certd ready", "imap": b"* OK [CAPABILITY", "dispatcher": b"220 "}
PORT = {"cert": "local.cert.port", "imap": "service.imap.port", "dispatcher": "service.smtp.port",
        "http": "service.http.port", "pop": "service.pop.port"}


def silent_for(conn: Conn, seconds: float) -> bool:
    """True when the server sent nothing on CONN for SECONDS (the connection was accepted)."""
    readable, _, _ = select.select([conn.sock], [], [], seconds)
    return not readable


@pytest.mark.parametrize("component", ["cert", "imap", "dispatcher"])
def test_hang_keeps_accepting_but_never_answers_until_the_file_is_removed(mailroot, component):
    mailroot.spawn(component)
    mailroot.fault(component, "hang\n")
    conns = [Conn(mailroot.port(PORT[component])) for _ in range(3)]  # accepted, every one
    try:
        wait_for(lambda: held_by([p.pid for p in mailroot.procs], [c.sock for c in conns]))  # accepted
        assert all(silent_for(c, 0.4) for c in conns)  # then nothing arrives
        mailroot.fault(component, None)
        with Conn(mailroot.port(PORT[component])) as fresh:
            assert fresh.line().startswith(GREETING[component])
    finally:
        for c in conns:
            c.close()


@pytest.mark.parametrize("component", ["cert", "dispatcher"])
def test_slow_answers_after_the_given_seconds(mailroot, component):
    mailroot.spawn(component)
    mailroot.fault(component, "slow 0.6")
    start = time.monotonic()
    with Conn(mailroot.port(PORT[component])) as c:
        assert c.line().startswith(GREETING[component])
    assert 0.6 <= time.monotonic() - start < 3.0


@pytest.mark.parametrize("component", ["cert", "imap", "dispatcher", "http", "pop"])
def test_crash_exits_abnormally_on_the_next_connection(mailroot, component):
    proc = mailroot.spawn(component)
    mailroot.fault(component, "crash")
    c = Conn(mailroot.port(PORT[component]))
    assert proc.wait(5) == 70
    c.close()
    assert "fault injection: crash requested" in mailroot.root.default_log.read_text()


def test_every_worker_obeys_the_file(mailroot):
    for i in range(2):
        mailroot.spawn("pop", worker=i)
    mailroot.fault("pop", "hang")
    conns = [Conn(mailroot.port("service.pop.port")) for _ in range(8)]
    try:
        wait_for(lambda: held_by([p.pid for p in mailroot.procs], [c.sock for c in conns]))  # accepted
        assert all(silent_for(c, 0.4) for c in conns)  # then nothing arrives
    finally:
        for c in conns:
            c.close()


def test_sigusr1_toggles_hang(mailroot):
    proc = mailroot.spawn("cert")
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while not mailroot.root.default_log.exists() or \
            "SIGUSR1 turned hang on" not in mailroot.root.default_log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with Conn(mailroot.port("local.cert.port")) as c:
        wait_for(lambda: held_by([proc.pid], [c.sock]))  # accepted
        assert silent_for(c, 0.3)  # then nothing arrives
    proc.send_signal(signal.SIGUSR1)
    while "SIGUSR1 turned hang off" not in mailroot.root.default_log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with Conn(mailroot.port("local.cert.port")) as c:
        assert c.line() == b"* OK certd ready"


def test_unknown_fault_words_are_ignored(mailroot):
    mailroot.spawn("cert")
    mailroot.fault("cert", "explode")
    with Conn(mailroot.port("local.cert.port")) as c:
        assert c.line() == b"* OK certd ready"


def test_sigusr1_toggles_hang_in_the_aiohttp_and_aiosmtpd_servers(mailroot):
    for component, parameter in (("http", "service.http.port"), ("dispatcher", "service.lmtp.port")):
        proc = mailroot.spawn(component)
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        log = mailroot.root.default_log
        while not log.exists() or "SIGUSR1 turned hang on" not in log.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with Conn(mailroot.port(parameter)) as c:
            c.send(b"GET /health HTTP/1.0\r\n\r\n" if component == "http" else b"")
            time.sleep(0.3)
            assert silent_for(c, 0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        log.unlink()


def test_a_broken_uidlist_does_not_lock_the_user_out_of_imap_and_pop(mailroot):
    """dovecot-uidlist written over under running servers: before, alice's every SELECT and POP
    login failed (`unsupported uidlist version`) until someone mended the file by hand. The first
    look writes a new one: SELECT answers with a new UIDVALIDITY and her messages, POP lists them,
    and the default log says what was done."""
    import imaplib
    import poplib

    from msgsrv.store.mailbox import Store
    from tests.services.conftest import PASSWORD, USER

    mailroot.spawn("imap")
    mailroot.spawn("pop")
    box = Store(mailroot.root).mailbox(USER)
    box.deliver(b"Subject: one\n\nbody\n")
    old = box.uidvalidity
    (mailroot.root.store_dir / USER / "dovecot-uidlist").write_text("garbage\n")
    imap = imaplib.IMAP4("127.0.0.1", mailroot.port("service.imap.port"), timeout=10)
    imap.login(USER, PASSWORD)
    assert imap.select("INBOX") == ("OK", [b"1"])
    validity = int(imap.response("UIDVALIDITY")[1][0])
    assert validity != old
    imap.logout()
    pop = poplib.POP3("127.0.0.1", mailroot.port("service.pop.port"), timeout=10)
    pop.user(USER)
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == 1
    pop.quit()
    log = mailroot.root.default_log.read_text()
    assert "Warning: " in log and f"wrote a new one (UIDVALIDITY {validity})" in log, log


def test_an_append_that_fills_the_disk_is_no_overquota_and_the_session_goes_on(mailroot):
    """IMAP APPEND of a message larger than the space left: before, the server dropped the
    connection (`error serving ...: OSError: [Errno 28]`) and left the part in tmp/. Now the
    command fails as RFC 5530 says (`NO [OVERQUOTA] Not enough disk space`), the session goes on
    (a small APPEND succeeds), the default log says why. imapd runs in a private mount namespace
    with alice's maildir on a 64 KiB tmpfs."""
    import imaplib
    import subprocess
    import sys

    from tests.services.conftest import PASSWORD, USER, server_env, wait_accepting

    maildir = mailroot.root.store_dir / USER
    maildir.mkdir(parents=True, exist_ok=True)
    script = 'mount -t tmpfs -o size=64k,mode=0700 tmpfs "$1" && shift && exec "$@"'
    proc = subprocess.Popen(["unshare", "-m", "sh", "-c", script, "sh", str(maildir), sys.executable, "-m",
                             "msgsrv.services", "imap"], env=server_env(mailroot.base), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    mailroot.procs.append(proc)
    try:
        wait_accepting(mailroot.port("service.imap.port"), proc)
    except AssertionError:
        err = proc.stderr.read().decode() if proc.poll() is not None else ""
        if "unshare" in err or "mount" in err:
            pytest.skip(f"no private tmpfs mount here: {err.strip()}")
        raise
    imap = imaplib.IMAP4("127.0.0.1", mailroot.port("service.imap.port"), timeout=10)
    imap.login(USER, PASSWORD)
    big = b"Subject: big\r\n\r\n" + b"x" * 200_000 + b"\r\n"
    assert imap.append("INBOX", None, None, big) == ("NO", [b"[OVERQUOTA] Not enough disk space"])
    typ, data = imap.append("INBOX", None, None, b"Subject: small\r\n\r\nhi\r\n")
    assert typ == "OK" and b"APPENDUID" in data[0]
    assert imap.select("INBOX") == ("OK", [b"1"])
    imap.logout()
    assert f"Warning: APPEND for {USER} failed: No space left on device" in mailroot.root.default_log.read_text()
