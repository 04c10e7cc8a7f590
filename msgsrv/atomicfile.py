"""Atomic replacement of state files, under an exclusive lock.

write temp -> fsync -> rename: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o600


@contextlib.contextmanager
def locked(path: Path) -> Iterator[int]:
    """Hold an exclusive flock on PATH (created 0600) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


def write_atomic(path: Path, data: bytes | str, mode: int = FILE_MODE, follow_symlinks: bool = False,
                 durable: bool = True) -> None:
    """Replace PATH with DATA. With FOLLOW_SYMLINKS, a PATH that is a symbolic link keeps being
    one: its final target is replaced (the temp file is made beside the target, since rename
    works within one file system only). The temp file is `.NAME.PID.tmp`, so that the next
    writer can tell a dead writer's leftover from a live one's.

    DURABLE: fsync the file before the rename and the directory after it, so that the new data
    survives a machine crash. A record that means nothing after a reboot (a pid file: its
    processes are gone then) needs only the rename, which readers and the writer's own death
    already see atomically; its two fsyncs (milliseconds each) are skipped."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if follow_symlinks and os.path.islink(path):
        path = Path(os.path.realpath(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    if not durable:
        return
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
