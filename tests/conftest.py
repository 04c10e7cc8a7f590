"""Shared fixtures: a temporary server root, free ports, and the real commands as subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

BIN = Path(sys.executable).parent  # the venv's console scripts (pip install -e .)
REPO = Path(__file__).resolve().parent.parent

# Under CI a skipped integration or doc test is a failure (issue 12): a missing Debian package or
# tool must not turn into a green run that tested less. Locally the skip still names what is missing
# and lets the rest run.
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
DOC_TESTS = ("test_docs.py", "man_page")  # file names of the tests that check man pages and docs


def must_not_skip(nodeid: str, item=None) -> bool:
    """True for the tests whose skip fails a CI run: integration tests and doc tests."""
    if item is not None and item.get_closest_marker("integration"):
        return True
    path = nodeid.split("::")[0]
    return path.startswith("tests/integration/") or any(d in path.rsplit("/", 1)[-1] for d in DOC_TESTS)


def _skip_reason(longrepr) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (file, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail_skip(rep) -> None:
    rep.outcome = "failed"
    rep.longrepr = f"skipped under CI=true, where integration and doc tests must run: {_skip_reason(rep.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    rep = (yield).get_result()
    if IN_CI and rep.skipped and not hasattr(rep, "wasxfail") and must_not_skip(item.nodeid, item):
        _fail_skip(rep)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    rep = (yield).get_result()
    if IN_CI and rep.skipped and must_not_skip(rep.nodeid):  # a module-level skip
        _fail_skip(rep)


# Ports for the servers a test starts: below Linux's ephemeral range (32768-60999), so no outgoing
# connection of the machine can hold one, and a separate block for each pytest-xdist worker, so two
# workers never pick the same port between choosing it and binding it. Within its block a worker
# walks on from a random start: a port is not handed out again until the block wraps around.
PORT_LOW, PORT_BLOCK = 20000, 2500


def _port_block() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    i = int(worker) if worker.isdigit() else 0
    start = PORT_LOW + (i % 5) * PORT_BLOCK
    return range(start, start + PORT_BLOCK)


_block = _port_block()
_next = [_block.start + (os.getpid() * 7919) % PORT_BLOCK]


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """N distinct ports on 127.0.0.1 that nothing holds now (see PORT_LOW)."""
    ports: list[int] = []
    for _ in range(PORT_BLOCK):
        port = _next[0]
        _next[0] = _block.start + (port + 1 - _block.start) % PORT_BLOCK
        if _bindable(port):
            ports.append(port)
            if len(ports) == n:
                return ports
    raise RuntimeError(f"fewer than {n} free ports in {_block.start}-{_block.stop - 1}")


def free_port() -> int:
    return free_ports(1)[0]


def accepts(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:PORT."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


_SLOW_IMPORT = """import importlib.machinery, importlib.util, os, sys, time
time.sleep({seconds})
here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.machinery.PathFinder.find_spec({name!r}, [p for p in sys.path if os.path.abspath(p or ".") != here])
module = importlib.util.module_from_spec(spec)
sys.modules[{name!r}] = module
spec.loader.exec_module(module)
"""


def slow_import_path(where: Path, name: str, seconds: float) -> str:
    """A PYTHONPATH under which importing the top-level module NAME first sleeps SECONDS (a cold
    cache, a loaded machine), then loads the real one: a shim module in WHERE put first."""
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{name}.py").write_text(_SLOW_IMPORT.format(name=name, seconds=seconds))
    return os.pathsep.join(filter(None, [str(where), os.environ.get("PYTHONPATH")]))


def wait_for(pred, timeout: float = 10.0, every: float = 0.02):
    """Poll PRED until it returns something true (returned), or fail after TIMEOUT seconds.

    A predicate that runs a command (`watcher status --json`: a Python process, ~150 ms of CPU
    under coverage) is polled at most half the time: the pause after a call is at least as long
    as the call, so that a waiting test leaves the machine's cores to the servers it waits for."""
    end = time.monotonic() + timeout
    while True:
        t0 = time.monotonic()
        v = pred()
        if v:
            return v
        now = time.monotonic()
        if now > end:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(min(max(every, now - t0), max(0.0, end - now) + 0.001))


def held_by(pids, socks) -> bool:
    """True once the processes PIDS have accepted every client socket in SOCKS (the server end of each
    connection is an open socket of one of them). Wait on this before asserting that a server stays
    silent, so the silence is measured from the moment the server holds the connection."""
    ours = {s.getsockname() for s in socks}
    theirs = set()
    for pid in pids:
        try:
            p = psutil.Process(pid)
            conns = p.net_connections("tcp") if hasattr(p, "net_connections") else p.connections("tcp")
        except psutil.Error:
            continue
        theirs.update(tuple(k.raddr) for k in conns if k.raddr)
    return ours <= theirs


def command_path(name: str) -> str:
    p = BIN / name
    return str(p) if p.exists() else str(REPO / "bin" / name)


@pytest.fixture
def base(tmp_path, monkeypatch) -> Path:
    """A fresh MSGSRV_BASE for this test (also set in os.environ for subprocesses)."""
    b = tmp_path / "root"
    monkeypatch.setenv("MSGSRV_BASE", str(b))
    monkeypatch.delenv("MSGSRV_DEBUG", raising=False)
    return b


@pytest.fixture
def root(base):
    from msgsrv.paths import ServerRoot

    return ServerRoot(base).ensure()


@pytest.fixture
def cli(base):
    """cli('configutil', '-o', 'x') -> CompletedProcess (text, captured)."""

    def run(cmd: str, *args: str, input: str | None = None, timeout: float = 60, env: dict | None = None):
        e = dict(os.environ)
        if env:
            e.update(env)
        return subprocess.run([command_path(cmd), *args], capture_output=True, text=True,
                              input=input, timeout=timeout, env=e)

    return run


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_session(tmp_path_factory):
    """A test that fails between starting a suite and stopping it must not leave that suite running
    for the rest of the machine's life (on a port a later test, or the next run, needs): at the end
    of the session (of each xdist worker), every process whose MSGSRV_BASE lies under this
    session's temporary directory is killed, and named on stderr."""
    yield
    top = str(tmp_path_factory.getbasetemp())
    left = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get("MSGSRV_BASE", "").startswith(top):
                left.append(p)
        except psutil.Error:
            continue
    for p in left:
        try:
            sys.stderr.write(f"\nconftest: killing {p.pid} ({p.name()}) left running by a test\n")
            p.kill()
        except psutil.Error:
            continue
