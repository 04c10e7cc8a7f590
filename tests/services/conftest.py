"""Real server processes on 127.0.0.1 in a temporary server root, for the service tests.

`spawn(root, component)` starts `msgsrv-server COMPONENT` without a watcher; readiness is a
successful connect to each of its ports (no fixed sleeps).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_ports

PORTS = {  # component -> its port parameters
    "store": ("local.store.port",),
    "imap": ("service.imap.port", "service.imap.sslport"),
    "pop": ("service.pop.port", "service.pop.sslport"),
    "http": ("service.http.port", "service.http.sslport"),
    "dispatcher": ("service.smtp.port", "service.lmtp.port", "service.smtp.sslport"),
    "ens": ("local.ens.port",),
    "job_controller": ("local.job_controller.port",),
    "cert": ("local.cert.port",),
    "sched": ("local.sched.port",),
    "mmp": ("local.mmp.imapport", "local.mmp.popport"),
}
ALL_PARAMS = [p for ps in PORTS.values() for p in ps] + ["local.watcher.port"]
USER, PASSWORD = "alice", "s3cret pass"
DOMAIN = "example.org"  # service.defaultdomain of the test roots: RCPT to alice@example.org is local


def server_env(base: Path, worker: int = 0) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSRV_")}
    env.update(MSGSRV_BASE=str(base), MSGSRV_WORKER=str(worker))
    return env


def wait_accepting(port: int, proc: subprocess.Popen | None = None, timeout: float = 10.0) -> float:
    """Seconds until 127.0.0.1:PORT accepts a connection; fails if PROC exits first."""
    start = time.monotonic()
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return time.monotonic() - start
        except OSError:
            if proc is not None and proc.poll() is not None:
                why = proc.stderr.read() if proc.stderr else ""
                raise AssertionError(f"server exited with {proc.returncode}: {why}") from None
            if time.monotonic() - start > timeout:
                raise AssertionError(f"port {port} not accepting after {timeout}s") from None
            time.sleep(0.005)


@dataclass
class MailRoot:
    base: Path
    ports: dict[str, int]
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def root(self):
        from msgsrv.paths import ServerRoot

        return ServerRoot(self.base)

    def port(self, parameter: str) -> int:
        return self.ports[parameter]

    def spawn(self, component: str, worker: int = 0, wait: bool = True) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "msgsrv.services", component], env=server_env(self.base, worker),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        self.procs.append(proc)
        if wait:
            for parameter in PORTS[component]:
                wait_accepting(self.ports[parameter], proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if proc.stderr:
                proc.stderr.close()

    def fault(self, component: str, text: str | None) -> None:
        path = self.root.fault_file(component)
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)


def make_root(base: Path) -> MailRoot:
    from msgsrv.config.store import ConfigStore
    from msgsrv.paths import ServerRoot
    from msgsrv.store.users import Users

    root = ServerRoot(base).ensure()
    ports = dict(zip(ALL_PARAMS, free_ports(len(ALL_PARAMS))))
    ConfigStore(root.config_file).update({**{k: str(v) for k, v in ports.items()}, "service.defaultdomain": DOMAIN})
    Users(root).add(USER, PASSWORD)
    return MailRoot(base, ports)


@pytest.fixture
def mailroot(tmp_path):
    """A fresh server root with free ports and user alice; servers started by the test."""
    m = make_root(tmp_path / "root")
    yield m
    m.stop_all()


@pytest.fixture(scope="module")
def mailsys(tmp_path_factory):
    """One server root per test module with store, imap, pop (4 workers), http and dispatcher up."""
    m = make_root(tmp_path_factory.mktemp("mailsys") / "root")
    try:
        for component in ("store", "ens", "imap", "http", "dispatcher"):
            m.spawn(component, wait=False)
        for i in range(4):
            m.spawn("pop", worker=i, wait=False)
        for proc, component in zip(m.procs, ("store", "ens", "imap", "http", "dispatcher")):
            for parameter in PORTS[component]:
                wait_accepting(m.ports[parameter], proc)
        wait_accepting(m.ports["service.pop.port"])
        yield m
    finally:
        m.stop_all()


class Conn:
    """A raw client connection for protocol tests: send lines, read lines."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def line(self) -> bytes:
        return self.file.readline(65536).rstrip(b"\r\n")

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def ask(self, data: bytes | str) -> bytes:
        self.send(data if (data.endswith("\r\n") if isinstance(data, str) else data.endswith(b"\r\n"))
                  else data + ("\r\n" if isinstance(data, str) else b"\r\n"))
        return self.line()

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
