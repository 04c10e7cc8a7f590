"""Connecting to the watcher, or launching one: what start-msg does first (SPEC §2)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from msgsrv.control.client import WatcherClient, WatcherUnavailable
from msgsrv.control.runrecord import NAME
from msgsrv.errors import OperationFailed
from msgsrv.paths import ServerRoot

POLL = 0.005  # seconds between looks for the launched watcher (a look is a stat until it listens)


def launch_watcher(root: ServerRoot, ha: bool, console_tty: bool, timeout: float = 15.0) -> tuple[int, WatcherClient]:
    """Start `watcher` detached (its own session) and wait until it answers. Returns (pid, client).

    Its console (stderr) is our terminal when we have one, else data/log/console.
    """
    argv = [sys.executable, "-m", "msgsrv.watcher"] + (["--ha"] if ha else [])
    console = root.log_dir / "console"
    log = open(console, "ab")
    os.chmod(log.name, 0o600)
    start = log.tell()
    stderr = None if console_tty else log
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=stderr,
                                start_new_session=True, cwd=root.base, close_fds=True)
    finally:
        log.close()
    deadline = time.monotonic() + timeout
    record = root.run_dir / NAME  # written once it listens (a stale one: try the port all the same)
    stale = record.exists()
    while True:
        rc = proc.poll()
        if rc is not None:
            said = "" if console_tty else _last_line(console, start)
            raise OperationFailed(f"watcher exited with status {rc} before answering"
                                  + (f": {said}" if said else f"; see {console}"))
        try:
            if not stale and not record.exists():
                raise WatcherUnavailable("not listening yet")
            return proc.pid, WatcherClient.connect(root, timeout=2.0)
        except WatcherUnavailable:  # not listening yet (or not answering yet: it may be busy starting)
            if time.monotonic() > deadline:
                raise OperationFailed(f"watcher did not answer within {timeout:.0f} s") from None
            time.sleep(POLL)


def _last_line(path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""
