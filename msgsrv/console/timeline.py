"""The timeline: crashes, hangs, restarts, give-ups and admin actions, newest first, from the
watcher's journal (data/run/journal.jsonl; format in msgsrv/watcher/journal.py and watcher(8)).

Never from the text logs: the records are parsed by the journal's own parser (`journal.parse`,
the one `journal.read()` uses). It runs on the Reader's threads, never in the watcher's loop. The
journal is at most twice journal.MAX_BYTES on disk; it is followed as it grows (_Followed), so
twenty pages polling an idle watcher cost a few stat calls and a new record costs its own bytes.
`select()` is pure.

Every kind of record belongs to one group, which the page's filter and `group=` use:

    failure  exit disconnect hang utility start-failed give-up not-restarted
    restart  restart-queued restart-merged restart-started restart-done
    request  request (start, stop, restart, shutdown, run msprobe; `by` names who asked)
    process  started stopped exited
    watcher  watcher-start watcher-adopt watcher-exit config
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Collection
from pathlib import Path

from msgsrv.watcher import journal

GROUPS: dict[str, tuple[str, ...]] = {
    "failure": ("exit", "disconnect", "hang", "utility", "start-failed", "give-up", "not-restarted"),
    "restart": ("restart-queued", "restart-merged", "restart-started", "restart-done"),
    "request": ("request",),
    "process": ("started", "stopped", "exited"),
    "watcher": ("watcher-start", "watcher-adopt", "watcher-exit", "config"),
}
GROUP_OF: dict[str, str] = {k: g for g, kinds in GROUPS.items() for k in kinds}
FIELDS = (*journal.FIELDS, "group")  # a record's tuple: t kind component unit pid detail by group
SHARED = ("kind", "component", "unit")
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000


class _Followed:
    """How far the journal of one run directory has been read. journal.jsonl is followed as it
    grows: a change costs the bytes appended since, not the whole file (journal.read() parses both
    files on every call: about 90 ms of CPU at their bound, 2 MB, on a thread that shares the
    interpreter with the watcher's loop). journal.1.jsonl is read again only when it changed (a
    rotation); journal.jsonl from the start only when it is a new file or shrank."""

    def __init__(self) -> None:
        self.sig: tuple | None = None  # both files' identity when last looked at
        self.old_id: tuple | None = None
        self.old: list[dict] = []
        self.ino: int | None = None  # the journal.jsonl being followed
        self.offset = 0  # bytes of it taken in, up to its last whole line
        self.cur: list[dict] = []
        self.merged: list[dict] = []


_followed: dict[Path, _Followed] = {}
_lock = threading.Lock()


def _identity(st: os.stat_result) -> tuple:
    return st.st_ino, st.st_size, st.st_mtime_ns


def _signature(run_dir: Path) -> tuple:
    sig = []
    for name in (journal.OLD_NAME, journal.NAME):
        try:
            sig.append(_identity(os.stat(run_dir / name)))
        except OSError:
            sig.append(None)
    return tuple(sig)


def compact(recs: list[dict]) -> list[tuple]:
    """Records as tuples in FIELDS order, the short strings shared: at the journal's 2 MB bound,
    about 15,000 records take 4 MB of the watcher's memory this way, 8 MB as dicts."""
    out = []
    for r in recs:
        # a kind from a newer watcher has no group here: shown all the same, with the watcher's
        group = GROUP_OF.get(r["kind"], "watcher")
        out.append((r["t"], *(_share(r[f]) for f in SHARED), r["pid"], r["detail"], _share(r["by"]), group))
    return out


def _share(v):
    return sys.intern(v) if isinstance(v, str) else v


def event(r: tuple) -> dict:
    """One record as the API shows it: the journal's fields and its group."""
    return dict(zip(FIELDS, r))


def _read_old(f: _Followed, path: Path) -> None:
    try:
        with open(path, "rb") as fh:
            ident = _identity(os.fstat(fh.fileno()))
            if ident != f.old_id:
                f.old, f.old_id = compact(journal.parse(fh.read())), ident
    except OSError:
        f.old, f.old_id = [], None


def _follow(f: _Followed, path: Path) -> None:
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())  # the file read, whatever a rotation did to the name meanwhile
            if st.st_ino != f.ino or st.st_size < f.offset:
                f.ino, f.offset, f.cur = st.st_ino, 0, []
            fh.seek(f.offset)
            data = fh.read(max(0, st.st_size - f.offset))
    except OSError:
        f.ino, f.offset, f.cur = None, 0, []
        return
    whole = data[:data.rfind(b"\n") + 1]  # a line still being written is taken in with its end
    if whole:
        f.offset += len(whole)
        f.cur = f.cur + compact(journal.parse(whole))  # a new list: a result handed out never changes


def records(run_dir: Path) -> list[tuple]:
    """Every journal record, oldest first, as a tuple in FIELDS order (event() makes it a dict).
    Never modify the list returned."""
    run_dir = Path(run_dir)
    sig = _signature(run_dir)  # before reading: a change while reading is seen next time
    with _lock:
        f = _followed.setdefault(run_dir, _Followed())
        if f.sig != sig:
            _read_old(f, run_dir / journal.OLD_NAME)
            _follow(f, run_dir / journal.NAME)
            f.merged, f.sig = f.old + f.cur, sig
        return f.merged


def select(recs: list[tuple], since: float | None = None, until: float | None = None,
           kinds: Collection[str] | None = None, component: str | None = None, unit: str | None = None,
           limit: int = DEFAULT_LIMIT) -> dict:
    """The newest LIMIT of RECS (tuples as records() gives them, oldest first) with since < t <= until
    that match, newest first, as dicts."""
    out: list[dict] = []
    matched = 0
    for r in reversed(recs):
        t = r[0]
        # not `break` at SINCE: a clock stepped back, or start-msg journalling without a watcher,
        # can put a record out of time order
        if (until is not None and t > until) or (since is not None and t <= since):
            continue
        if kinds is not None and r[1] not in kinds:
            continue
        if component is not None and r[2] != component:
            continue
        if unit is not None and r[3] != unit:
            continue
        matched += 1
        if len(out) < limit:
            out.append(event(r))
    return {"count": len(out), "matched": matched, "truncated": matched > len(out), "events": out,
            "newest": recs[-1][0] if recs else None}


def read(run_dir: Path, **how) -> dict:
    """select() over the journal of RUN_DIR (on a Reader thread)."""
    return select(records(run_dir), **how)


def kinds_of(kinds: Collection[str], groups: Collection[str]) -> set[str] | None:
    """The kinds named, plus every kind of the groups named; None when neither names any."""
    if not kinds and not groups:
        return None
    return set(kinds) | {k for g in groups for k in GROUPS[g]}
