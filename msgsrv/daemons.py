"""Which suite daemons run, read from data/run/, and the signal that makes them reread their config.

The watcher's pid is in data/run/watcher.pid, components' pids in data/run/<component>.pid,
each with the process's start time, so a stale file or a recycled pid is never taken for a
daemon. Only the watcher and imsched (the `sched` component) reread their configuration on
SIGHUP (SPEC §2); the other servers read theirs when they start.

Read only: the writers of these files are the watcher's (watcher/daemon.py, watcher/children.py).
"""

from __future__ import annotations

import json
import os
import signal

from msgsrv.paths import ServerRoot
from msgsrv.procinfo import recorded

REFRESHABLE = ("watcher", "sched")  # the daemons that reread their config on SIGHUP


def _records(path) -> list[dict]:
    try:
        data = json.loads(path.read_text())
    except PermissionError:
        raise  # another user's server root: not "not running" (the command names the file)
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    return [d for d in data if isinstance(d, dict) and isinstance(d.get("pid"), int) and d["pid"] > 0]


def running_pids(root: ServerRoot, name: str) -> list[int]:
    """Live pids of NAME (`watcher` or a component), checked against their recorded start times."""
    return [r["pid"] for r in _records(root.pid_file(name)) if recorded(r)]


def running_components(root: ServerRoot) -> list[str]:
    """The components whose pid files name live processes, in start order."""
    from msgsrv.components import START_ORDER

    return [c for c in START_ORDER if running_pids(root, c)]


def watcher_pid(root: ServerRoot) -> int | None:
    """The running watcher's pid, or None. Read from its pid file, never by taking its lock: a
    lock test could make a watcher that starts at that moment believe another one runs."""
    pids = running_pids(root, "watcher")
    return pids[0] if pids else None


def refresh(root: ServerRoot, names: tuple[str, ...] = REFRESHABLE) -> list[tuple[str, int | None, str]]:
    """SIGHUP every running daemon in NAMES. Returns (name, pid, problem) rows; pid None and a
    problem of "not running" when none was found, problem "" when the signal was sent."""
    out = []
    for name in names:
        pids = running_pids(root, name)
        if not pids:
            out.append((name, None, "not running"))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGHUP)
                out.append((name, pid, ""))
            except ProcessLookupError:
                out.append((name, pid, "not running"))
            except OSError as e:
                out.append((name, pid, (e.strerror or str(e)).lower()))
    return out
