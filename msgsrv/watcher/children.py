"""OS processes: spawn into a new session, pidfds, signals to whole process groups, pid files,
re-adoption. The only module of the watcher that calls posix_spawn or kill.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

from msgsrv.atomicfile import write_atomic


@dataclass
class Child:
    component: str
    pid: int
    pidfd: int
    create_time: float
    started: float  # time.time() at spawn / adoption
    worker: int = 0
    adopted: bool = False
    unregistered: bool = False  # said BYE: its exit is orderly
    stopping: bool = False
    exit_status: int | None = None  # waitid status; None for adopted processes


def server_argv(component: str, command: str) -> list[str]:
    """`local.<component>.command` if set, else the built-in server."""
    if command.strip():
        return shlex.split(command)
    return [sys.executable, "-m", "msgsrv.services", component]


def spawn(argv: list[str], env: dict[str, str], log_path: Path) -> int:
    """posix_spawn ARGV in a new session (so killpg takes its whole tree); output to LOG_PATH."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawnp(argv[0], argv, env, file_actions=actions, setsid=True,
                           setsigdef=(signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD,
                                      signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE))


def open_pidfd(pid: int) -> int:
    return os.pidfd_open(pid)


def reap(child: Child) -> int | None:
    """Collect the exit status of a finished child (None for a non-child we adopted)."""
    try:
        res = os.waitid(os.P_PIDFD, child.pidfd, os.WEXITED | os.WNOHANG)
    except ChildProcessError:
        return None
    if res is None:
        return None
    return res.si_status if res.si_code == os.CLD_EXITED else -res.si_status


def signal_group(pid: int, sig: int) -> bool:
    """Send SIG to the process group led by PID (every server is a session leader); False if gone."""
    try:
        os.killpg(pid, sig)
        return True
    except ProcessLookupError:
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False
    except PermissionError:
        return False


def kill_leftovers(pid: int) -> None:
    """SIGKILL anything still in the session PID led (grandchildren a server forked)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def create_time(pid: int) -> float:
    return psutil.Process(pid).create_time()


def close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


# -- pid files: data/run/<component>.pid, JSON list of {pid, create_time, worker} ------------
def write_pidfile(path: Path, children: list[Child]) -> None:
    if not children:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    data = [{"pid": c.pid, "create_time": c.create_time, "worker": c.worker, "started": c.started}
            for c in children]
    write_atomic(path, json.dumps(data))


def read_pidfile(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text())
        return [d for d in data if isinstance(d, dict) and isinstance(d.get("pid"), int)]
    except (OSError, ValueError, TypeError):
        return []


def alive_same(pid: int, ctime: float) -> bool:
    """Is PID still the process we started (not a recycled pid)?"""
    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - ctime) < 0.05 and p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
