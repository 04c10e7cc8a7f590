"""The OOM killer takes a server before the watcher.

On a host short of memory the kernel's OOM killer ends the process with the highest badness,
mostly its resident size; a pre-forked watcher, whose resident pages include every server's code
(shared with them), is often the largest process of the suite, so it went first: every server then
ran unsupervised until msprobe or an admin launched a watcher again. Where it may (root, or
CAP_SYS_RESOURCE), the watcher lowers its own /proc/self/oom_score_adj to WATCHER_ADJ (elsewhere,
started higher than 0, to 0, as low as any process may go on its own); a server
that was killed is a crash the watcher heals at once, while a killed watcher is a loss nobody sees.
Every server it starts gets the value the watcher was started with back (the watcher sets it
right after the fork or spawn, before the pid is recorded; a forked one also sets it itself first
thing), so the protection is the
watcher's alone. A watcher started lower still (OOMScoreAdjust= of a systemd unit) keeps its value,
and so do its servers.
"""

from __future__ import annotations

import contextlib

WATCHER_ADJ = -500
_inherited: str | None = None  # the value this watcher was started with, once it lowered its own


def protect() -> bool:
    """Lower this process's oom_score_adj to WATCHER_ADJ when it may; else, started higher than 0
    (a parent that raised it), back to 0, as low as a process without CAP_SYS_RESOURCE may go."""
    global _inherited
    try:
        with open("/proc/self/oom_score_adj") as f:
            current = f.read().strip()
        value = int(current)
    except (OSError, ValueError):
        return False  # no /proc
    for target in (WATCHER_ADJ, 0):
        if value <= target:
            continue
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(target))
        except OSError:
            continue  # not allowed this low (CAP_SYS_RESOURCE)
        _inherited = current
        return True
    return False


def give_back(pid: int | str = "self") -> None:
    """A server (PID, or this forked process) gets the value the watcher was started with."""
    if _inherited is None:
        return
    with contextlib.suppress(OSError), open(f"/proc/{pid}/oom_score_adj", "w") as f:
        f.write(_inherited)
