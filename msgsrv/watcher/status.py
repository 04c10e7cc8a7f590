"""The status view: `watcher status`, the metrics and the console read one snapshot, derived from the
supervisor's facts (SPEC §4 "States"): each component's state, live pids, uptime, restarts inside the
window, whether it is enabled and wanted, why it is down and its last unexpected exit."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import psutil

from msgsrv import messages as M
from msgsrv.components import BY_NAME, START_ORDER, STORE_GROUP
from msgsrv.procinfo import CLOCK_TICKS, system_uptime
from msgsrv.procinfo import stat as proc_stat

if TYPE_CHECKING:
    from msgsrv.watcher.supervisor import Supervisor


def pss(pids: list[int]) -> int | None:
    """The proportional set size of PIDS together, in bytes (issue 14: pages shared copy-on-write
    with the watcher count once in all); None when none could be read."""
    total, seen = 0, False
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_full_info().pss
            seen = True
        except (psutil.Error, OSError, AttributeError):
            continue
    return total if seen else None


def frozen(stats: dict[int, tuple[bytes, int] | None]) -> list[dict]:
    """The processes (pid -> proc_stat) that answer nothing though they exist: stopped by a signal
    (SIGSTOP, a terminal stop: state T) or by a debugger (t), each {"pid", "why"}. The supervisor's
    state stays RUNNING (the process lives; msprobe finds a component that answers nothing hung and
    asks for its restart); the view says so, so status never shows a stopped server as serving."""
    out = []
    for pid, st in stats.items():
        if st is not None and st[0] in (b"T", b"t"):
            out.append({"pid": pid, "why": (M.FROZEN_STOPPED if st[0] == b"T" else M.FROZEN_TRACED).format(pid=pid)})
    return out


def uptime(kids: list, stats: dict[int, tuple[bytes, int] | None], booted: float | None, now: float) -> float | None:
    """The age of the oldest of KIDS, measured on the clock since boot (its start in /proc against
    /proc/uptime), so that a step of the wall clock never shows a negative or inflated uptime; the
    recorded start time where /proc cannot tell."""
    if not kids:
        return None
    ages = [booted - st[1] / CLOCK_TICKS for st in stats.values() if st is not None and booted is not None]
    return round(max(0.0, max(ages)) if ages else now - min(k.started for k in kids), 1)


def frozen_tag(row: dict) -> str:
    """`frozen`, or `1 of 4 frozen` when other workers still serve; "" when none is."""
    n, of = len(row.get("frozen") or ()), len(row["pids"])
    return "" if not n else "frozen" if n >= of else f"{n} of {of} frozen"


def serving(row: dict) -> bool:
    """RUNNING with a process that is not frozen (a worker of several may be: the others serve)."""
    return row["state"] == "RUNNING" and len(row.get("frozen") or ()) < len(row["pids"])


def snapshot(sup: Supervisor, with_pss: bool = False) -> dict:
    """One consistent view, read in the loop. `unrecorded`: state files waiting to be written (a full
    disk); `anomalies`: state changes outside the table (0 unless the watcher has a bug). WITH_PSS:
    each component's and the watcher's PSS, and `pss_total` (reads /proc/<pid>/smaps_rollup of every
    process: `watcher status --json` asks for it, the metrics and the console do not)."""
    cfg = sup.cfg.refresh()
    now, mono = time.time(), time.monotonic()
    window = sup.window()
    rows = []
    booted = system_uptime()
    for c in START_ORDER:
        comp = sup.comps[c]
        unit = BY_NAME[c].unit
        kids = comp.procs
        stats = {k.pid: proc_stat(k.pid) for k in kids}
        rows.append({
            "name": c,
            "daemon": BY_NAME[c].daemon,
            "state": comp.state.value,
            "pids": [k.pid for k in kids],
            "uptime": uptime(kids, stats, booted, now),
            "since": round(comp.since, 3),
            "restarts": sup.budget.in_window(unit, mono) if unit else 0,
            "unit": unit,
            "group": "store" if c in STORE_GROUP else None,
            "enabled": cfg.get_bool(BY_NAME[c].enable),
            "wanted": comp.wanted,
            "reason": comp.reason,
            "last_exit": comp.last_exit,
            "frozen": frozen(stats),
        })
        if with_pss:
            rows[-1]["pss"] = pss([k.pid for k in kids]) if kids else None
    out = {"components": rows, "watcher": {
        "pid": os.getpid(), "ha": sup.ha, "port": sup.watcher_port,
        "autorestart": cfg.get_bool("local.autorestart"), "window": window, "limit": sup.budget.limit,
        "restarts_total": dict(sup.restarts_total), "config_error": sup.cfg.broken,
        "unrecorded": sorted(str(p) for p in sup.recorder.pending), "journal_lost": sup.journal.lost,
        "anomalies": sup.anomalies, "busy": sup.ops.pending()}}
    if with_pss:
        out["watcher"]["pss"] = pss([os.getpid()])
        out["pss_total"] = sum(x for x in [out["watcher"]["pss"], *(r["pss"] for r in rows)] if x)
    return out
