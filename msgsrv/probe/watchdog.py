"""msprobe's look at the watcher itself: who restarts the supervisor?

The watcher restarts every server; nothing restarted the watcher. One that died (SIGKILL, the
OOM killer, a bug) left its servers running unsupervised: a crash from then on was nobody's, and
every msprobe pass said all was well, until an admin ran start-msg. Every full msprobe pass (and
`msprobe watcher`), and imsched a second after its registration with the watcher closes (the
watcher's death: sched/imsched.py), now ask the watcher to answer (PING on its control port) and
say one of

    OK        it answered within local.probe.watcher.timeout (default: service.readtimeout)
    HUNG      it lives but did not answer: killed (SIGKILL) and launched again; one stopped by a
              signal or held by a debugger is only reported (an admin is looking at it)
    DOWN      it is not running, and servers of the suite are: launched again, it adopts them (and
              restarts what died meanwhile, as after any watcher's death)
    STOPPED   neither it nor any server runs: the suite was stopped (start-msg's work, not ours)

The watcher is launched again only with local.autorestart yes, and never in HA mode (the cluster
manager owns it: its monitor sees the watcher gone and fails over) nor when a service manager
started it (systemd restarts its unit), nor by a user the server root does not belong to (root's
msprobe on mail's root would run the suite as root). local.watcher.enable no keeps it from being
launched; local.probe.watcher.enable no leaves the check out of full passes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass

from msgsrv import procinfo
from msgsrv.config.store import ConfigStore
from msgsrv.daemons import running_components
from msgsrv.paths import ServerRoot

OK, HUNG, DOWN, STOPPED = "OK", "HUNG", "DOWN", "STOPPED"
KILL_WAIT = 5.0  # seconds a killed hung watcher has to be gone before another is launched


@dataclass(frozen=True)
class WatcherCheck:
    port: int
    elapsed: float
    status: str  # OK HUNG DOWN STOPPED
    detail: str = ""
    pid: int | None = None  # the watcher looked at, when one ran
    relaunched: int | None = None  # the pid of the watcher launched again
    why_not: str = ""  # why it was not launched again (HA, systemd, autorestart off, a failed launch)

    @property
    def healthy(self) -> bool:
        return self.status == OK

    def lines(self) -> list[tuple[str, str]]:
        """(severity, text) of what was found and done, in msprobe's words."""
        from msgsrv.probe import messages as M

        if self.status == OK:
            return [("Info", M.WATCHER_RESPONSE.format(t=f"{self.elapsed:.3f}"))]
        if self.status == STOPPED:
            return [("Info", M.WATCHER_STOPPED)]
        out = [("Error", (M.WATCHER_HUNG if self.status == HUNG else M.WATCHER_DOWN).format(detail=self.detail))]
        if self.relaunched is not None:
            out.append(("Error", M.WATCHER_RELAUNCHED.format(pid=self.relaunched)))
        elif self.why_not:
            out.append(("Warning", M.WATCHER_NOT_RELAUNCHED.format(why=self.why_not)))
        return out

    def to_dict(self) -> dict:
        return {"port": self.port, "elapsed": round(self.elapsed, 4), "status": self.status, "detail": self.detail,
                "pid": self.pid, "relaunched": self.relaunched, "not_relaunched": self.why_not or None}


def wanted(store: ConfigStore, named: bool) -> bool:
    """Whether this pass looks at the watcher: `msprobe watcher` (NAMED), or a full pass where the
    suite runs a watcher and the check is on."""
    return named or (store.get_bool("local.watcher.enable") and store.get_bool("local.probe.watcher.enable"))


def answer_timeout(store: ConfigStore) -> float:
    """local.probe.watcher.timeout, else service.readtimeout (10 s)."""
    v = store.value("local.probe.watcher.timeout")
    return float(store.value("service.readtimeout", 10.0) if v is None else v)


def check(root: ServerRoot, store: ConfigStore, timeout: float) -> WatcherCheck:
    """Look at the watcher, and launch it again where it must be (module doc). Blocking: a pass
    runs it in a thread."""
    from msgsrv.control.client import WatcherClient, WatcherNotAnswering
    from msgsrv.control.runrecord import run_record
    from msgsrv.errors import OperationFailed

    rec = run_record(root.run_dir)
    port = rec["port"] if rec and isinstance(rec.get("port"), int) else store.get_int("local.watcher.port", 49994)
    alive = rec is not None and procinfo.recorded(rec)
    t0 = time.monotonic()
    if alive:
        pid = rec["pid"]
        try:
            with WatcherClient.connect(root, timeout=timeout) as client:
                client.request("PING", timeout=timeout)
            return WatcherCheck(port, time.monotonic() - t0, OK, pid=pid)
        except WatcherNotAnswering:
            elapsed = time.monotonic() - t0
        except OperationFailed as e:  # alive but not listening: starting, or on its way out
            return WatcherCheck(port, time.monotonic() - t0, DOWN, str(e), pid=pid,
                                why_not=f"watcher process {pid} is still running")
        detail = f"did not respond within {timeout:g}s"
        st = procinfo.stat(pid)
        if st is not None and st[0] in (b"T", b"t"):
            return WatcherCheck(port, elapsed, HUNG, detail, pid, why_not=(
                f"watcher process {pid} is stopped by a signal (kill -CONT {pid} continues it)" if st[0] == b"T"
                else f"watcher process {pid} is held by a debugger"))
        why_not = _why_not(root, store, rec)
        if why_not:
            return WatcherCheck(port, elapsed, HUNG, detail, pid, why_not=why_not)
        _kill(pid, rec)
        return _relaunch(root, WatcherCheck(port, elapsed, HUNG, detail, pid))
    try:
        running = running_components(root)
    except OSError:  # another user's pid files: nothing to relaunch from here
        running = []
    if not running:
        return WatcherCheck(port, 0.0, STOPPED, "not running; no server runs")
    gone = rec["pid"] if rec and isinstance(rec.get("pid"), int) else None
    detail = (f"watcher process {gone} ended unexpectedly" if gone else "not running") + \
        f"; {' '.join(running)} run unsupervised"
    why_not = _why_not(root, store, rec)
    if why_not:
        return WatcherCheck(port, 0.0, DOWN, detail, gone, why_not=why_not)
    return _relaunch(root, WatcherCheck(port, 0.0, DOWN, detail, gone))


def _why_not(root: ServerRoot, store: ConfigStore, rec: dict | None) -> str:
    from msgsrv.errors import foreign_owner

    if not store.get_bool("local.watcher.enable"):
        return "local.watcher.enable is no"
    if not store.get_bool("local.autorestart"):
        return "local.autorestart is off"
    if rec and rec.get("ha"):
        return "it runs in HA mode: the cluster manager decides"
    if rec and rec.get("manager"):
        return f"{rec['manager']} started it and restarts it"
    other = foreign_owner(root.base)
    if other:  # a watcher of ours would make its files ours, and run its servers as us
        return f"{other[0]} belongs to {other[1]}: run msprobe as {other[1]}"
    return ""


def _kill(pid: int, rec: dict) -> None:
    """SIGKILL the hung watcher PID and wait (at most KILL_WAIT) until it is gone: its servers
    live on (they are not in its process group), and the next watcher adopts them."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT
    while procinfo.recorded(rec) and time.monotonic() < deadline:
        time.sleep(0.01)


def _relaunch(root: ServerRoot, found: WatcherCheck) -> WatcherCheck:
    from dataclasses import replace

    from msgsrv.control.launch import launch_watcher
    from msgsrv.errors import OperationFailed

    try:
        pid, client = launch_watcher(root, ha=False, console_tty=False, detached=True)
    except (OperationFailed, OSError) as e:
        return replace(found, why_not=f"unable to launch it: {e}")
    client.close()
    return replace(found, relaunched=pid)
