"""What /proc says of a process: its state and its start, and whether a recorded process is it.

A process the suite records (data/run/*.pid, watcher.json) is named by its pid and its start in
clock ticks after boot (`start_ticks`, field 22 of /proc/PID/stat): a recycled pid has another
start. That count is one no step of the wall clock moves. psutil's create_time is it plus the
boot time of /proc/stat, which the kernel moves with every step of the wall clock: with records
compared on it, the clock set an hour forward (NTP after boot, `date -s`) made every recorded
process look like another one, and a new watcher took every running server for one that had
exited (`status unknown`) and started a second of each.

Records written before `start_ticks` (msgsrv 0.2.0) have `create_time` only; they are still
compared on it.
"""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of a start time in /proc/PID/stat


def stat(pid: int) -> tuple[bytes, int] | None:
    """PID's state letter and start time (clock ticks after boot), from /proc/PID/stat; None when
    it cannot be read (gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rfind(b")") + 2:].split()  # the command name may hold spaces and parentheses
    try:
        return fields[0], int(fields[19])  # fields 3 (state) and 22 (starttime) of proc(5)
    except (IndexError, ValueError):
        return None


def start_ticks(pid: int) -> int | None:
    """PID's start, in clock ticks after boot; None when it cannot be read (gone)."""
    st = stat(pid)
    return st[1] if st is not None else None


def system_uptime() -> float | None:
    """Seconds since boot (/proc/uptime): a clock no step of the wall clock moves."""
    try:
        with open("/proc/uptime", "rb") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def age(pid: int, booted: float | None = None) -> float | None:
    """PID's age in seconds on the clock since boot (no step of the wall clock moves it); None when
    /proc cannot tell. BOOTED: system_uptime(), when the caller has read it already."""
    st = stat(pid)
    booted = system_uptime() if booted is None else booted
    return None if st is None or booted is None else max(0.0, booted - st[1] / CLOCK_TICKS)


def _known(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def same_process(pid: int, ticks: int | None = None, create_time: float | None = None) -> bool:
    """Is PID alive (not a zombie) and the process recorded: started at TICKS (clock ticks after
    boot) or, for a record that has no TICKS (written by msgsrv 0.2.0), at CREATE_TIME (psutil's,
    seconds since the epoch)? Alive is enough when neither was recorded."""
    st = stat(pid)
    if st is None or st[0] == b"Z":
        return False
    if _known(ticks):
        return st[1] == ticks
    if _known(create_time):
        import psutil  # only for a record of 0.2.0

        try:
            return abs(psutil.Process(pid).create_time() - float(create_time)) < 0.05
        except (psutil.Error, OSError):
            return False
    return True


def recorded(rec: dict) -> bool:
    """same_process for a record {"pid", "start_ticks"?, "create_time"?} as the suite writes them."""
    pid = rec.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    return same_process(pid, rec.get("start_ticks"), rec.get("create_time"))
