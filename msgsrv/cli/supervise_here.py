"""start-msg / stop-msg without a watcher: run the Supervisor in this process for one operation
(local.watcher.enable = no, or stop-msg when no watcher answers). Servers started this way keep
running after we exit; stop-msg finds them again through their pid files.

While it acts, this process holds data/run/watcher.lock, so no watcher adopts half a change.
"""

from __future__ import annotations

import os
import signal
import time

from msgsrv import components
from msgsrv.errors import OperationFailed, UsageError
from msgsrv.paths import ServerRoot

LOCK_WAIT = 5.0


def resolve_names(args: list[str], prog: str) -> list[str]:
    try:
        return components.resolve([a for a in args if a != "watcher"]) if args else []
    except KeyError as e:
        raise UsageError(f"unknown component '{e.args[0]}' (known: {' '.join(components.known_names())})") from None


def _progress_out(sup):
    from msgsrv.cli.console import progress
    from msgsrv.watcher.operations import Out

    return Out(sup.log, progress)


def _locked(root: ServerRoot) -> int:
    from msgsrv.watcher.daemon import acquire_lock

    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            return acquire_lock(root)
        except OperationFailed:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _run(root: ServerRoot, act, need_config: bool) -> int:
    import asyncio  # here: start-msg imports this module for resolve_names, and asyncio costs ~35 ms

    from msgsrv.control.client import who_am_i
    from msgsrv.watcher import statefile
    from msgsrv.watcher.supervisor import Supervisor

    fd = _locked(root)
    try:
        async def go() -> int:
            sup = Supervisor(root, supervised=False, by=who_am_i())
            sup.cfg.refresh()
            if not sup.cfg.good:
                saved = statefile.read_state(root.run_dir).get("config")
                if isinstance(saved, dict):
                    sup.seed_config(saved)  # the last configuration that parsed
                elif need_config:
                    raise OperationFailed(f"{sup.cfg.broken}; fix it (configutil -V)")
            sup.adopt()
            try:
                await act(sup)
            finally:
                sup.save_now()
            return 0

        return asyncio.run(go())
    finally:
        os.close(fd)


def start_without_watcher(root: ServerRoot, names: list[str]) -> int:
    from msgsrv.watcher import operations as ops

    async def act(sup) -> None:
        todo = names or sup.enabled()
        sup.journal.add("request", detail="start " + " ".join(todo) + " (no watcher)", by=sup.by)
        for c in todo:
            sup.want(c, True)
        await ops.op_start(sup, todo, _progress_out(sup))

    return _run(root, act, need_config=True)


def stop_without_watcher(root: ServerRoot, names: list[str], force: bool) -> int:
    from msgsrv.components import STOP_ORDER
    from msgsrv.watcher import operations as ops

    async def act(sup) -> None:
        sup.closing = True
        todo = names or [c for c in STOP_ORDER if sup.comps[c].procs]
        sup.journal.add("request", detail=("stop -f " if force else "stop ") + " ".join(todo) + " (no watcher)",
                        by=sup.by)
        for c in todo:
            sup.want(c, False)
        await ops.op_stop(sup, todo, _progress_out(sup), force)

    return _run(root, act, need_config=False)


def kill_watcher(root: ServerRoot) -> int | None:
    """SIGKILL a watcher that does not answer (stop-msg -f); returns its pid once it is gone."""
    from msgsrv.control.runrecord import live_watcher

    rec = live_watcher(root.run_dir)
    if rec is None:
        return None
    pid = rec["pid"]
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        import select

        select.select([fd], [], [], 5.0)
    except OSError:
        pass
    finally:
        os.close(fd)
    return pid
