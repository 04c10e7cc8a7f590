"""Connecting to the watcher, or launching one: what start-msg does first (SPEC §2)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from msgsrv.control.client import WatcherClient, WatcherUnavailable
from msgsrv.errors import OperationFailed
from msgsrv.paths import ServerRoot


def launch_watcher(root: ServerRoot, ha: bool, console_tty: bool, timeout: float = 15.0) -> tuple[int, WatcherClient]:
    """Start `watcher` detached (its own session) and wait until it answers. Returns (pid, client).

    Its console (stderr) is our terminal when we have one, else data/log/console.
    """
    argv = [sys.executable, "-m", "msgsrv.cli.watcher"] + (["--ha"] if ha else [])
    log = open(root.log_dir / "console", "ab")
    os.chmod(log.name, 0o600)
    stderr = None if console_tty else log
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=stderr,
                                start_new_session=True, cwd=root.base, close_fds=True)
    finally:
        log.close()
    deadline = time.monotonic() + timeout
    while True:
        rc = proc.poll()
        if rc is not None:
            raise OperationFailed(f"watcher exited with status {rc} before answering; see {root.log_dir / 'console'}")
        try:
            return proc.pid, WatcherClient.connect(root, timeout=2.0)
        except WatcherUnavailable:
            if time.monotonic() > deadline:
                raise OperationFailed(f"watcher did not answer within {timeout:.0f} s") from None
            time.sleep(0.02)
