"""The control port refuses what it must and keeps serving good clients (SPEC §3 "Control port")."""

from __future__ import annotations

import json
import socket
import time

import psutil

from msgsrv.control.client import WatcherClient
from tests.watcher.conftest import free_ports, wait_for


def _exchange(port: int, payload: bytes, timeout: float = 15.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        chunks = []
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            chunks.append(d)
        return b"".join(chunks)


def _good_status(root) -> dict:
    with WatcherClient.connect(root, timeout=5) as c:
        return json.loads(c.request("STATUS", timeout=5))


def test_control_port_refuses_bad_clients_and_keeps_serving(suite, cli, root):
    suite.configure()
    assert cli("start-msg").returncode == 0
    port = suite.watcher_port
    token = root.token_file.read_text().strip()
    assert oct(root.token_file.stat().st_mode & 0o777) == "0o600"
    assert _exchange(port, b"PING\n") == b"ERR authentication required\n"
    assert _exchange(port, b"AUTH " + b"0" * 64 + b"\n") == b"ERR bad token\n"
    assert _exchange(port, b"\x00\xff\xfe garbage\n").startswith(b"ERR ")
    assert _exchange(port, b"A" * (1 << 20) + b"\n").startswith(b"ERR request longer than")
    assert _exchange(port, f"AUTH {token}\nFROBNICATE\n".encode()) == b"OK\nERR unknown request 'FROBNICATE'\n"
    reply = _exchange(port, f"AUTH {token}\nRESTART nosuch\nPING\nBYE\n".encode())
    assert reply.startswith(b"OK\nERR unknown component 'nosuch'") and reply.endswith(b"\nOK pong\nOK\n")
    idle = []
    try:
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        t0 = time.monotonic()
        st = _good_status(root)
        assert time.monotonic() - t0 < 1.0
        assert {c["name"]: c["state"] for c in st["components"]}["imap"] == "RUNNING"
    finally:
        for s in idle:
            s.close()
    # the refusals are logged, and the watcher is unharmed
    default = root.default_log.read_text()
    assert "refused: bad or missing token" in default and "refused: oversized request" in default
    assert _good_status(root)["watcher"]["pid"] == suite.watcher_pid()


def test_control_port_listens_on_loopback_only(suite, cli):
    suite.configure()
    assert cli("start-msg").returncode == 0
    import psutil

    conns = [c for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == suite.watcher_port
             and c.status == psutil.CONN_LISTEN]
    assert conns and all(c.laddr.ip == "127.0.0.1" for c in conns)


def test_restart_request_uses_the_seed_lines(suite, cli):
    suite.configure()
    assert cli("start-msg").returncode == 0
    old = suite.pids("pop")
    with WatcherClient.connect(suite.root) as c:
        lines = []
        c.request("RESTART", "pop", on_progress=lambda k, t: lines.append((k, t)), timeout=30)
    text = "".join(t if k == "T" else t + "\n" for k, t in lines)
    assert text.startswith("Received request to restart:  store imap pop http\nConnecting to watcher ...\n")
    wait_for(lambda: (p := suite.pids("pop")) and not set(p) & set(old))


def test_watcher_status_when_no_watcher_runs(cli, base):
    r = cli("watcher", "status")
    assert r.returncode == 1
    assert r.stderr == "watcher: the watcher is not running (start-msg starts it)\n"


def test_a_control_connection_open_at_shutdown_leaves_no_traceback(suite, cli, root):
    metrics = free_ports(1)[0]
    suite.configure(components=("imap",), **{"local.watcher.metricsport": str(metrics)})
    assert cli("start-msg").returncode == 0
    scraper = socket.create_connection(("127.0.0.1", metrics))  # a scrape that never sends its request
    token = root.run_dir.joinpath("watcher.token").read_text().strip()
    idle = socket.create_connection(("127.0.0.1", suite.watcher_port))  # connected, nothing said
    authed = socket.create_connection(("127.0.0.1", suite.watcher_port))
    authed.sendall(f"AUTH {token}\n".encode())
    assert authed.recv(100).startswith(b"OK")
    try:
        w = suite.watcher_pid()
        assert cli("stop-msg").returncode == 0
        wait_for(lambda: b"" == idle.recv(100))  # the watcher closed it on its way out
        wait_for(lambda: not psutil.pid_exists(w) or psutil.Process(w).status() == psutil.STATUS_ZOMBIE)
    finally:
        idle.close()
        authed.close()
        scraper.close()
    console = (root.log_dir / "console").read_text()
    assert "Traceback" not in console and "CancelledError" not in console, console
