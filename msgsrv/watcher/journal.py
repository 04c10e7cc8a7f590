"""The journal: an append-only, bounded record of what the watcher saw and did, for programs.

data/log/watcher is for people (the seed's wording); the journal is for programs such as the web
console (issue 15), which shows its timeline from it without parsing text logs.

Format. JSON lines (UTF-8, one object per line) in `data/run/journal.jsonl`, mode 0600. Each
record is exactly:

    {"t": 1764282163.52, "kind": "exit", "component": "imap", "unit": "store", "pid": 13428,
     "detail": "Watched 'imapd' process 13428 exited abnormally (killed by signal 9)", "by": null}

    t          float, seconds since the epoch (time.time() of the writer)
    kind       one of KINDS below
    component  component name (imap, pop, ...) or null
    unit       restart unit (store, dispatcher, ...) or null
    pid        process id the record is about, or null
    detail     one line of text for a person
    by         who asked or reported ("msprobe[4321]", "start-msg[77]", "watcher") or null

Kinds (KINDS):

    watcher-start    a watcher started (pid = the watcher)
    watcher-adopt    the previous watcher ended unexpectedly; this one adopted its servers
    watcher-exit     the watcher exits (detail: the exit status)
    request          a start/stop/restart/shutdown request (detail: the request, by: who asked)
    exit             a supervised process exited unexpectedly (detail: status) - a failure
    disconnect       a registration closed without BYE while the process lived - a failure
    hang             a hang reported by msprobe (detail: the probe's words, by: the reporter)
    utility          a store utility failed or vanished (component: store, by: the utility)
    start-failed     a start did not come up (detail: why) - a failure
    restart-queued   a restart of the unit was granted (detail: the members)
    restart-merged   a failure folded into a restart already queued for its unit
    restart-started  a restart began (detail: the members)
    restart-done     a restart finished (detail: the members)
    give-up          the restart budget is spent: the unit is given up (FATAL; HA: shutdown)
    not-restarted    a failure not restarted (autorestart off, ens)
    started          a component is running (pid: its first process; detail: every pid)
    stopped          a component was stopped by request
    exited           a process exited after saying BYE (an orderly exit nobody asked for)
    config           the configuration file does not parse (or parses again); a restart waits for it

Bounds and crash safety. Each record is one write(2) on an O_APPEND descriptor, so records never
interleave. When the file passes MAX_BYTES it is renamed to `journal.1.jsonl` (replacing the older
one) and a new file begins: at most twice MAX_BYTES on disk. A crash mid-write can leave one
partial last line; `read()` skips any line that does not parse. Writing never raises: a full disk
loses journal records, never supervision.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from msgsrv.atomicfile import locked

MAX_BYTES = 1 << 20
NAME = "journal.jsonl"
OLD_NAME = "journal.1.jsonl"
FIELDS = ("t", "kind", "component", "unit", "pid", "detail", "by")
KINDS = ("watcher-start", "watcher-adopt", "watcher-exit", "request", "exit", "disconnect", "hang", "utility",
         "start-failed", "restart-queued", "restart-merged", "restart-started", "restart-done", "give-up",
         "not-restarted", "started", "stopped", "exited", "config")


def path(run_dir: Path) -> Path:
    return Path(run_dir) / NAME


def record(kind: str, component: str | None = None, unit: str | None = None, pid: int | None = None,
           detail: str = "", by: str | None = None, t: float | None = None) -> dict:
    """One journal record (the exact shape documented above)."""
    return {"t": round(time.time() if t is None else t, 6), "kind": kind, "component": component, "unit": unit,
            "pid": pid, "detail": " ".join(str(detail).split()), "by": by}


class Journal:
    """The writer (the watcher, or start-msg/stop-msg when they act without one)."""

    def __init__(self, run_dir: Path, max_bytes: int = MAX_BYTES):
        self.run_dir = Path(run_dir)
        self.max_bytes = max_bytes
        self.lost = 0  # records that could not be written (full disk, ...)

    def add(self, kind: str, component: str | None = None, unit: str | None = None, pid: int | None = None,
            detail: str = "", by: str | None = None) -> dict:
        rec = record(kind, component, unit, pid, detail, by)
        line = (json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8", "replace")
        try:
            fd = os.open(path(self.run_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if size > self.max_bytes:
                self._rotate()
        except OSError:
            self.lost += 1
        return rec

    def _rotate(self) -> None:
        current = path(self.run_dir)
        with locked(self.run_dir / ".journal.lock"):
            with contextlib.suppress(FileNotFoundError):
                if current.stat().st_size > self.max_bytes:  # not already rotated by another writer
                    os.replace(current, self.run_dir / OLD_NAME)


def _parse(line: bytes) -> dict | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None  # a partial last line after a crash, or damage
    if not isinstance(rec, dict) or not isinstance(rec.get("t"), (int, float)) or not isinstance(rec.get("kind"), str):
        return None
    return {f: rec.get(f) for f in FIELDS}


def parse(data: bytes) -> list[dict]:
    """The records in DATA (whole lines of a journal file), as read() gives them; a line that does
    not parse is skipped. For readers that follow the file as it grows (the web console)."""
    return [rec for rec in map(_parse, data.splitlines()) if rec is not None]


def read(root, since: float | None = None, limit: int = 1000) -> list[dict]:
    """The newest LIMIT records with t > SINCE (all when SINCE is None), oldest first.

    ROOT is a ServerRoot (or anything with `run_dir`) or the run directory itself.
    """
    run_dir = Path(getattr(root, "run_dir", root))
    out: list[dict] = []
    for name in (OLD_NAME, NAME):
        try:
            data = (run_dir / name).read_bytes()
        except OSError:
            continue
        for line in data.splitlines():
            rec = _parse(line)
            if rec is not None and (since is None or rec["t"] > since):
                out.append(rec)
    return out[-limit:] if limit > 0 else []
