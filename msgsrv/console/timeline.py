"""The timeline: crashes, hangs, restarts, give-ups and admin actions, newest first, from the
watcher's journal (data/run/journal.jsonl; format in msgsrv/watcher/journal.py and watcher(8)).

Never from the text logs: `journal.read()` is the only reader of the records. It runs on the
Reader's threads, never in the watcher's loop. The journal is at most twice journal.MAX_BYTES on
disk; it is parsed again only when one of its two files changed (inode, size or modification time),
so twenty pages polling an idle watcher cost a few stat calls. `select()` is pure.

Every kind of record belongs to one group, which the page's filter and `group=` use:

    failure  exit disconnect hang utility start-failed give-up not-restarted
    restart  restart-queued restart-merged restart-started restart-done
    request  request (start, stop, restart, shutdown, run msprobe; `by` names who asked)
    process  started stopped exited
    watcher  watcher-start watcher-adopt watcher-exit config
"""

from __future__ import annotations

import os
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
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
SCAN = 1 << 30  # journal.read's limit when everything is wanted (the files bound it)

_cache: dict[Path, tuple[tuple, list[dict]]] = {}
_lock = threading.Lock()


def _signature(run_dir: Path) -> tuple:
    sig = []
    for name in (journal.OLD_NAME, journal.NAME):
        try:
            st = os.stat(run_dir / name)
        except OSError:
            sig.append(None)
        else:
            sig.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(sig)


def records(run_dir: Path) -> list[dict]:
    """Every journal record, oldest first (parsed again only when a file changed)."""
    run_dir = Path(run_dir)
    sig = _signature(run_dir)  # before reading: a change while reading is seen next time
    hit = _cache.get(run_dir)
    if hit is not None and hit[0] == sig:
        return hit[1]
    found = journal.read(run_dir, None, SCAN)
    for r in found:
        r["group"] = GROUP_OF.get(r["kind"], "watcher")  # a kind from a newer watcher: shown all the same
    with _lock:
        _cache[run_dir] = (sig, found)
    return found


def select(recs: list[dict], since: float | None = None, until: float | None = None,
           kinds: Collection[str] | None = None, component: str | None = None, unit: str | None = None,
           limit: int = DEFAULT_LIMIT) -> dict:
    """The newest LIMIT of RECS (oldest first) with since < t <= until that match, newest first."""
    out: list[dict] = []
    matched = 0
    for r in reversed(recs):
        t = r["t"]
        # not `break` at SINCE: a clock stepped back, or start-msg journalling without a watcher,
        # can put a record out of time order
        if (until is not None and t > until) or (since is not None and t <= since):
            continue
        if kinds is not None and r["kind"] not in kinds:
            continue
        if component is not None and r["component"] != component:
            continue
        if unit is not None and r["unit"] != unit:
            continue
        matched += 1
        if len(out) < limit:
            out.append(r)
    return {"count": len(out), "matched": matched, "truncated": matched > len(out), "events": out,
            "newest": recs[-1]["t"] if recs else None}


def read(run_dir: Path, **how) -> dict:
    """select() over the journal of RUN_DIR (on a Reader thread)."""
    return select(records(run_dir), **how)


def kinds_of(kinds: Collection[str], groups: Collection[str]) -> set[str] | None:
    """The kinds named, plus every kind of the groups named; None when neither names any."""
    if not kinds and not groups:
        return None
    return set(kinds) | {k for g in groups for k in GROUPS[g]}
