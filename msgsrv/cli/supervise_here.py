"""start-msg / stop-msg without a watcher: run the Supervisor in this process for one operation
(local.watcher.enable = no, or stop-msg when no watcher answers). Servers started this way keep
running after we exit; stop-msg finds them again through their pid files."""

from __future__ import annotations

import asyncio

from msgsrv import components
from msgsrv.errors import UsageError
from msgsrv.paths import ServerRoot


def resolve_names(args: list[str], prog: str) -> list[str]:
    try:
        return components.resolve([a for a in args if a != "watcher"]) if args else []
    except KeyError as e:
        raise UsageError(f"unknown component '{e.args[0]}' (known: {' '.join(components.known_names())})") from None


def _progress_out(sup):
    from msgsrv.cli.console import progress
    from msgsrv.watcher.supervisor import Out

    return Out(sup.log, progress)


def start_without_watcher(root: ServerRoot, names: list[str]) -> int:
    from msgsrv.watcher.supervisor import Supervisor

    async def go() -> int:
        sup = Supervisor(root, supervised=False)
        sup.adopt()
        todo = names or sup.enabled()
        await sup.op_start(todo, _progress_out(sup))
        return 0

    return asyncio.run(go())


def stop_without_watcher(root: ServerRoot, names: list[str], force: bool) -> int:
    from msgsrv.components import STOP_ORDER
    from msgsrv.watcher.supervisor import Supervisor

    async def go() -> int:
        sup = Supervisor(root, supervised=False)
        sup.adopt()
        sup.closing = True
        todo = names or [c for c in STOP_ORDER if sup.children[c]]
        await sup.op_stop(todo, _progress_out(sup), force)
        return 0

    return asyncio.run(go())
