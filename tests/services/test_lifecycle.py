"""Process model (SPEC §3): readiness, process names, SIGTERM, modes, usage, health lines."""

from __future__ import annotations

import imaplib
import os
import signal
import smtplib
import socket
import stat
import subprocess
import sys
import time

from msgsrv.components import BY_NAME
from msgsrv.services.stored import check_status
from tests.services.conftest import PASSWORD, PORTS, USER, Conn, server_env, wait_accepting

EVERY = ("store", "ens", "imap", "pop", "cert", "http", "sched", "dispatcher", "job_controller", "mmp")


def test_every_server_names_itself_and_exits_0_within_2s_of_sigterm(mailroot):
    procs = {c: mailroot.spawn(c, wait=False) for c in EVERY}
    conns = []
    for c, proc in procs.items():
        for parameter in PORTS[c]:
            wait_accepting(mailroot.port(parameter), proc)
        conns.append(Conn(mailroot.port(PORTS[c][0])))  # an open connection must not delay the exit
    for c, proc in procs.items():
        with open(f"/proc/{proc.pid}/comm") as f:
            assert f.read().strip() == BY_NAME[c].daemon
    start = time.monotonic()
    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    codes = {c: proc.wait(5) for c, proc in procs.items()}
    assert time.monotonic() - start < 2.0
    assert codes == {c: 0 for c in EVERY}
    for conn in conns:
        conn.close()


def test_idle_imap_client_is_told_bye_at_shutdown(mailroot):
    proc = mailroot.spawn("imap")
    with Conn(mailroot.port("service.imap.port")) as c:
        c.line()
        proc.send_signal(signal.SIGTERM)
        assert c.line() == b"* BYE server shutting down"
    assert proc.wait(3) == 0


def test_files_are_private(mailroot):
    for c in ("imap", "dispatcher"):
        mailroot.spawn(c)
    with smtplib.SMTP("127.0.0.1", mailroot.port("service.smtp.port"), timeout=10) as s:
        s.sendmail("x@example.org", [USER], b"Subject: mode\r\n\r\nx\r\n")
    im = imaplib.IMAP4("127.0.0.1", mailroot.port("service.imap.port"), timeout=10)
    im.login(USER, PASSWORD)
    im.logout()
    mailroot.stop_all()
    for dirpath, dirs, files in os.walk(mailroot.base / "data"):
        for d in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, d)).st_mode) == 0o700, d
        for f in files:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, f)).st_mode) == 0o600, f


def test_check_status_sees_the_store_server(mailroot):
    assert not check_status(mailroot.root, timeout=1)
    mailroot.spawn("store")
    assert check_status(mailroot.root, timeout=5)


def test_line_servers_answer_ping_and_status(mailroot):
    for c in ("ens", "job_controller", "cert", "sched"):
        mailroot.spawn(c)
    (mailroot.base / "data" / "queue" / "msg1").write_text("queued")
    for c in ("ens", "job_controller", "cert", "sched"):
        with Conn(mailroot.port(PORTS[c][0])) as conn:
            assert conn.line() == f"* OK {BY_NAME[c].daemon} ready".encode()
            assert conn.ask("PING") == b"+OK PONG"
            if c != "sched":
                assert conn.ask("STATUS").startswith(f"+OK {BY_NAME[c].daemon} pid=".encode())
    with Conn(mailroot.port("local.job_controller.port")) as conn:
        conn.line()
        assert conn.ask("QUEUE") == b"+OK 1 messages queued"


def test_mmp_relays_to_the_back_ends_and_reports_a_missing_one(mailroot):
    mailroot.spawn("mmp")
    with Conn(mailroot.port("local.mmp.popport")) as c:
        assert c.line() == b"-ERR pop back end unavailable"
    mailroot.spawn("imap")
    with Conn(mailroot.port("local.mmp.imapport")) as c:
        assert c.line().startswith(b"* OK [CAPABILITY IMAP4rev1")
        assert c.ask("a1 LOGOUT").startswith(b"* BYE")


def test_unknown_component_is_a_usage_error(base):
    r = subprocess.run([sys.executable, "-m", "msgsrv.services", "nosuch"], capture_output=True, text=True,
                       env=server_env(base), timeout=10)
    assert r.returncode == 2
    assert r.stderr.startswith("msgsrv-server: unknown component 'nosuch'")


def test_port_taken_by_another_program_fails_with_status_1(mailroot):
    with socket.socket() as other:  # no SO_REUSEPORT: the port cannot be shared
        other.bind(("127.0.0.1", mailroot.port("local.cert.port")))
        other.listen()
        r = subprocess.run([sys.executable, "-m", "msgsrv.services", "cert"], capture_output=True, text=True,
                           env=server_env(mailroot.base), timeout=10)
    assert r.returncode == 1
    assert f"unable to listen on 127.0.0.1:{mailroot.port('local.cert.port')}" in r.stderr


def test_start_and_stop_are_logged_with_the_daemon_name(mailroot):
    proc = mailroot.spawn("cert")
    proc.send_signal(signal.SIGTERM)
    proc.wait(3)
    log = mailroot.root.default_log.read_text()
    assert f"certd[{proc.pid}] Notice: certd process {proc.pid} started" in log
    assert f"certd[{proc.pid}] Notice: certd process {proc.pid} stopped" in log


def test_a_server_greets_while_the_watcher_has_not_answered_its_registration(mailroot):
    """Issue 14: registering (AUTH and REGISTER in one write) does not hold up serving. A watcher
    that accepts the registration connection and never answers (stopped, wedged) delays neither
    the first greeting nor the exit on SIGTERM (its BYE waits 2 s at most)."""
    mute = socket.create_server(("127.0.0.1", 0))  # listens, never reads, never answers
    mailroot.root.token_file.parent.mkdir(parents=True, exist_ok=True)
    mailroot.root.token_file.write_text("t" * 64 + "\n")
    env = {**server_env(mailroot.base), "MSGSRV_SUPERVISED": "1", "MSGSRV_WATCHER_PORT": str(mute.getsockname()[1])}
    proc = subprocess.Popen([sys.executable, "-m", "msgsrv.services", "imap"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_accepting(mailroot.port("service.imap.port"), proc)
        watcher_side, _ = mute.accept()  # the registration connection came
        watcher_side.settimeout(5)
        sent = b""
        while sent.count(b"\n") < 2:
            sent += watcher_side.recv(4096)
        assert sent.startswith(b"AUTH ") and f"REGISTER imap {proc.pid}\n".encode() in sent
        with socket.create_connection(("127.0.0.1", mailroot.port("service.imap.port")), timeout=5) as c:
            assert c.recv(100).startswith(b"* OK")  # served, unregistered
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert time.monotonic() - start < 4.0
        watcher_side.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        mute.close()
