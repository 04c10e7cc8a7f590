"""Connecting to the watcher, or launching one: what start-msg does first (SPEC §2)."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time

from msgsrv.control import notify
from msgsrv.control.client import WatcherClient, WatcherUnavailable
from msgsrv.errors import OperationFailed
from msgsrv.messages import WATCHER_ALREADY_RUNNING
from msgsrv.paths import ServerRoot

# what a server's environment holds for it alone: a watcher launched from a server (msprobe run by
# imsched launching a watcher again, probe/watchdog.py) must not pass them on
SERVER_ONLY_ENV = ("MSGSRV_COMPONENT", "MSGSRV_WORKER", "MSGSRV_SUPERVISED", "MSGSRV_WATCHER_PORT",
                   "MSGSRV_LISTEN_FDS")


def launch_watcher(root: ServerRoot, ha: bool, console_tty: bool, timeout: float = 15.0,
                   detached: bool = False) -> tuple[int, WatcherClient]:
    """Start `watcher` detached (its own session) and wait until it answers. Returns (pid, client).

    Its console (stderr) is our terminal when we have one, else data/log/console (or nothing, when
    that cannot be opened: a full disk, a read-only data directory). It says on a pipe of ours
    (control/notify.py) when it listens, or why it cannot start, so that reason reaches the admin
    even when no log can be written. DETACHED: not our child either (a shell that starts it and
    ends at once): for a caller that lives on (imsched), which would otherwise keep its zombie.
    """
    argv = [sys.executable, "-m", "msgsrv.watcher"] + (["--ha"] if ha else [])
    if detached:
        argv = ["/bin/sh", "-c", '"$@" </dev/null & exit 0', "sh", *argv]
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ONLY_ENV}
    console = root.log_dir / "console"
    try:
        log = open(console, "ab")
        os.chmod(log.name, 0o600)
    except OSError:
        log = open(os.devnull, "ab")
    start = log.tell()
    stderr = None if console_tty else log
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=stderr,
                                start_new_session=True, cwd=root.base, close_fds=True, pass_fds=(w,),
                                env={**env, notify.ENV: str(w)})
    except BaseException:
        os.close(r)
        raise
    finally:
        log.close()
        os.close(w)
    deadline = time.monotonic() + timeout
    try:
        said = _notice(r, deadline)
    finally:
        os.close(r)
    if detached:
        proc.wait()  # the shell, gone at once
    if said == notify.READY:
        client = _connect(root, None if detached else proc, deadline)
        return (client.pid or proc.pid) if detached else proc.pid, client
    if said is None:
        raise OperationFailed(f"watcher did not answer within {timeout:.0f} s")
    if WATCHER_ALREADY_RUNNING in said:
        # another launch won the lock meanwhile (two start-msg at once, msprobe launching a dead
        # watcher again, probe/watchdog.py): that watcher is the one to talk to
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)
        client = _connect(root, None, deadline)  # the winner: it listens once its start is done
        return client.pid or 0, client
    try:
        rc = proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        rc = None
    said = said or ("" if console_tty else _last_line(console, start))
    status = f"exited with status {rc}" if rc is not None else f"(pid {proc.pid}) gave up"
    raise OperationFailed(f"watcher {status} before answering"
                          + (f": {said}" if said else f"; see {console}"))


def _notice(r: int, deadline: float) -> str | None:
    """The watcher's line on the pipe: READY, its reason for not starting, '' when it closed the
    pipe saying nothing (it ended), None when it said nothing before DEADLINE."""
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if not select.select([r], [], [], left)[0]:
            continue
        chunk = os.read(r, 4096)
        if not chunk:
            break  # every writer gone: the watcher ended, or closed it without a word
        data += chunk
    return data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()


def _connect(root: ServerRoot, proc: subprocess.Popen | None, deadline: float) -> WatcherClient:
    """Connect to the watcher that said READY (PROC: ours, given up on when it ends; None: not our
    child). It may still be busy finishing its start (adopting what a previous watcher left): its
    port accepts, and it answers once its loop runs."""
    while True:
        try:
            return WatcherClient.connect(root, timeout=2.0)
        except WatcherUnavailable:
            if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _last_line(path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""
