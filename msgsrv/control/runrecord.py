"""data/run/watcher.json, read side: where the running watcher listens (issue 11).

The watcher writes it once it listens and removes it when it exits cleanly (watcher/statefile.py
and daemon.py); every command reads it before anything else, so a watcher is found on the port it
really uses even after `configutil -o local.watcher.port -v N`. A record whose process is gone (or
is another process now) names a watcher that died.
"""

from __future__ import annotations

import json
from pathlib import Path

from msgsrv.procinfo import recorded

NAME = "watcher.json"


def run_record(run_dir: Path) -> dict | None:
    try:
        rec = json.loads((Path(run_dir) / NAME).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("pid"), int):
        return None
    return rec


def live_watcher(run_dir: Path) -> dict | None:
    """The run record of a watcher that is still alive, else None."""
    rec = run_record(run_dir)
    if rec is None or not recorded(rec):
        return None
    return rec
