"""Log tails for the console: the last lines of a log, then what was appended since an offset.

The page follows a log by asking again with the offset it got (`/api/log?name=watcher&offset=N`).
Only the logs the watcher's tree writes are served (by name, never by path): `watcher`, `default`,
`console` and each component's `<component>.out`. Reads are bounded (CHUNK bytes) and block, so the
console runs them on its thread pool.
"""

from __future__ import annotations

import os
from pathlib import Path

from msgsrv.components import START_ORDER

CHUNK = 64 * 1024  # at most this much is read per request
TAIL_LINES = 200
LOGS: tuple[str, ...] = ("watcher", "default", "console", *(f"{c}.out" for c in START_ORDER))


def tail(path: Path, offset: int | None, lines: int = TAIL_LINES) -> dict:
    """{offset, lines, size, reset}: without OFFSET the last LINES whole lines; with one, the whole
    lines appended after it (at most CHUNK bytes: ask again from the new offset for more). A line
    still being written waits for its newline. RESET is true when the file got shorter than OFFSET
    (truncated or replaced): the tail then starts afresh."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            reset = offset is not None and offset > size
            fresh = offset is None or reset
            start = max(0, size - CHUNK) if fresh else offset
            f.seek(start)
            data = f.read(min(CHUNK, size - start))
    except FileNotFoundError:
        return {"offset": 0, "lines": [], "size": 0, "reset": bool(offset)}
    whole = data[:data.rfind(b"\n") + 1]
    if not whole and len(data) == CHUNK:
        whole = data  # one line longer than CHUNK: shown in pieces rather than never
    end = start + len(whole)
    if fresh and start > 0:
        whole = whole.split(b"\n", 1)[1] if b"\n" in whole else b""  # the first line is cut: drop it
    found = whole.decode("utf-8", "replace").splitlines()
    return {"offset": end, "lines": found[-lines:] if fresh else found, "size": size, "reset": reset}
