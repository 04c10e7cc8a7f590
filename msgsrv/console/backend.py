"""The console's one door to the watcher: status, actions and records, read from the Supervisor.

No other console module touches the Supervisor. Actions go through the same operations and the
same queue as the control port (msgsrv/watcher/server.py): a restart is `request_restart`, a stop
`op_stop`, a start `op_start`, each with an Out that writes the watcher log and feeds the action's
progress lines. Everything here runs in the watcher's loop and does no I/O beyond what those
operations do; reads of files are for the caller to put on a thread.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from msgsrv import messages as M
from msgsrv.components import BY_NAME, COMPONENTS, START_ORDER, STOP_ORDER
from msgsrv.console import text as T
from msgsrv.console.actions import Action
from msgsrv.watcher.states import State
from msgsrv.watcher.supervisor import Out, Supervisor

UNITS: tuple[str, ...] = tuple(dict.fromkeys(c.unit for c in COMPONENTS if c.unit))
PROBE_TIMEOUT = 120.0  # seconds a console-started msprobe pass may take


class Refused(Exception):
    """The request cannot be carried out as asked (HTTP 409); nothing was done."""


class Backend:
    def __init__(self, sup: Supervisor):
        self.sup = sup
        self.started = time.time()

    @property
    def root(self):
        return self.sup.root

    # -- what the overview shows ---------------------------------------------------------------
    def status(self) -> dict:
        sup = self.sup
        st = sup.status()  # in the loop: one consistent view
        limit, window = sup.budget.limit, sup.budget.window
        rows = []
        for row in st["components"]:
            c = row["name"]
            rows.append({**row, "enabled": sup.cfg.get_bool(BY_NAME[c].enable), "limit": limit,
                         "window": window, "restartable": bool(row["unit"])})
        units = []
        for u in UNITS:
            members = [r for r in rows if r["unit"] == u]
            units.append({"name": u, "members": [r["name"] for r in members],
                          "restarts": max((r["restarts"] for r in members), default=0),
                          "restarts_total": sup.restarts_total.get(u, 0),
                          "fatal": any(r["state"] == State.FATAL.value for r in members),
                          "enabled": any(r["enabled"] or r["pids"] for r in members),
                          "pending": u in sup.pending_units})
        watcher = {"pid": os.getpid(), "ha": bool(sup.ha), "autorestart": sup.cfg.get_bool("local.autorestart"),
                   "limit": limit, "window": window, "started": self.started, "busy": not sup.queue.empty()
                   or bool(sup.pending_units), "closing": sup.closing}
        return {"watcher": watcher, "components": rows, "units": units,
                "banners": T.banners(watcher, units), "now": time.time()}

    def known_unit(self, unit: str) -> bool:
        return unit in UNITS

    @staticmethod
    def known_component(name: str) -> bool:
        return name in BY_NAME

    # -- actions (the control port's operations, with who asked) ----------------------------------
    def _out(self, action: Action) -> Out:
        who = T.who(action.who)

        def log(line: str) -> None:
            # the seed's request line, then who asked: `... store imap pop http (console, 127.0.0.1)`
            self.sup.log(line + " " + who if line.startswith(M.RECEIVED_RESTART.format(units="")) else line)

        return Out(log, action.feed)

    def restart(self, unit: str, action: Action) -> asyncio.Future:
        members = [c.name for c in COMPONENTS if c.unit == unit]
        # request_restart picks the unit's members that run or ran (SPEC §3 store group)
        fut = self.sup.request_restart(members[:1], reason="request", out=self._out(action))
        if fut is None:
            raise Refused(T.RESTART_REFUSED.format(unit=unit))
        return fut

    def stop(self, component: str, action: Action) -> asyncio.Future:
        self.sup.log(T.REQUEST.format(verb="stop", names=component, who=T.who(action.who)))
        names = [c for c in STOP_ORDER if c == component]
        return self.sup.submit(lambda: self.sup.op_stop(names, self._out(action)))

    def start(self, component: str, action: Action) -> asyncio.Future:
        enabled = self.sup.enabled()
        if component not in enabled:
            raise Refused(T.NOT_ENABLED.format(c=component, switch=BY_NAME[component].enable))
        self.sup.log(T.REQUEST.format(verb="start", names=component, who=T.who(action.who)))
        names = [c for c in START_ORDER if c == component]
        return self.sup.submit(lambda: self.sup.op_start(names, self._out(action)))

    async def probe(self, action: Action) -> None:
        """One msprobe pass, as imsched would run it; its output lines are the progress."""
        self.sup.log(T.PROBE_REQUEST.format(who=T.who(action.who)))
        env = dict(os.environ, MSGSRV_BASE=str(self.root.base))
        env.pop("MSGSRV_SUPERVISED", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "msgsrv.cli.msprobe", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True)
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                assert proc.stdout is not None
                async for raw in proc.stdout:
                    action.feed("L", raw.decode("utf-8", "replace").rstrip("\n"))
                rc = await proc.wait()
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if rc not in (0, 1):  # 1 = a service was unhealthy: the pass itself worked
            raise RuntimeError(T.PROBE_FAILED.format(rc=rc))
        action.feed("L", T.PROBE_HEALTHY if rc == 0 else T.PROBE_UNHEALTHY)

    # -- records ---------------------------------------------------------------------------------
    def timeline(self, since: float | None, limit: int) -> dict:
        """The watcher's own event records. This watcher keeps none yet (no journal)."""
        return {"available": False, "reason": T.NO_JOURNAL, "events": []}
