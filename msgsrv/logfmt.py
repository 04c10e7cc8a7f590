"""Log lines: `[26/Nov/2026:03:22:43 +0000] text`, appended whole (O_APPEND, one write)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def stamp(t: float | None = None) -> str:
    lt = time.localtime(time.time() if t is None else t)
    return time.strftime("[%d/%b/%Y:%H:%M:%S %z]", lt)


def append(path: Path, text: str, t: float | None = None) -> None:
    """Append TEXT (one or more lines) to PATH, each line stamped; file created 0600."""
    st = stamp(t)
    data = "".join(f"{st} {line}\n" if line else "\n" for line in text.split("\n"))
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:  # the log directory was removed (a cleanup): made again, owner-only
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, data.encode("utf-8", "replace"))
    finally:
        os.close(fd)


def default_log(root, source: str, severity: str, text: str) -> None:
    """A line in data/log/default: `[stamp] source Severity: text`."""
    append(root.default_log, f"{source} {severity}: {text}")
