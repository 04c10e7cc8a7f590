"""The launched watcher tells start-msg it is up, or why it is not, on a pipe (like s6's
notification-fd, or systemd's READY=1).

start-msg (control/launch.py) gives the watcher it launches the writing end of a pipe, named by
MSGSRV_NOTIFY_FD. The watcher takes it before anything else (the variable leaves its environment
and the descriptor is close-on-exec, so no server inherits either) and writes one line:

    READY                   it listens on its control port, its run record and token are written
    watcher: <reason>       it cannot start (the same line it writes on stderr)

and closes it. start-msg waits for that line instead of looking for the run record every few
milliseconds, and can say why a watcher did not start even when its console log cannot be
written (a full disk, a read-only data directory). A watcher started any other way (`watcher`,
systemd) has no such descriptor and says nothing.
"""

from __future__ import annotations

import contextlib
import os

ENV = "MSGSRV_NOTIFY_FD"
READY = "READY"

_fd: int | None = None
_launched = False  # a launcher (start-msg) waits for READY and then sends its request


def take() -> None:
    """Take the descriptor named by MSGSRV_NOTIFY_FD, if any (called first thing in the watcher)."""
    global _fd, _launched
    value = os.environ.pop(ENV, None)
    if not value or not value.isdigit():
        return
    fd = int(value)
    try:
        os.fstat(fd)
        os.set_inheritable(fd, False)
    except OSError:
        return
    _fd, _launched = fd, True


def launched() -> bool:
    """This watcher was launched by start-msg, whose request follows READY and says what to start."""
    return _launched


def ready() -> None:
    _say(READY)


def failed(line: str) -> None:
    _say(line)


def _say(line: str) -> None:
    global _fd
    if _fd is None:
        return
    fd, _fd = _fd, None
    with contextlib.suppress(OSError):
        os.write(fd, (line.replace("\n", " ") + "\n").encode("utf-8", "replace"))
    with contextlib.suppress(OSError):
        os.close(fd)
