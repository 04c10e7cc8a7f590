"""data/run/watcher.json, read side: where the running watcher listens (issue 11).

The watcher writes it once it listens and removes it when it exits cleanly (watcher/statefile.py
and daemon.py); every command reads it before anything else, so a watcher is found on the port it
really uses even after `configutil -o local.watcher.port -v N`. A record whose process is gone (or
is another process now) names a watcher that died.
"""

from __future__ import annotations

import json
from pathlib import Path

NAME = "watcher.json"


def run_record(run_dir: Path) -> dict | None:
    try:
        rec = json.loads((Path(run_dir) / NAME).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("pid"), int):
        return None
    return rec


def same_process(pid: int, create_time: float | None) -> bool:
    """Is PID alive and (when CREATE_TIME is known) the process that was recorded?"""
    import psutil  # here: with no record left (a cold start) start-msg never needs it

    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(p.create_time() - float(create_time)) < 0.05
    except (psutil.Error, ValueError, TypeError):
        return False


def live_watcher(run_dir: Path) -> dict | None:
    """The run record of a watcher that is still alive, else None."""
    rec = run_record(run_dir)
    if rec is None or not same_process(rec["pid"], rec.get("create_time")):
        return None
    return rec
