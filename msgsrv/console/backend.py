"""The console's one door to the watcher: the status view, and actions through the supervisor's
request functions.

No other console module touches the Supervisor. What it shows is the watcher's own status view
(`Supervisor.status()`, msgsrv/watcher/status.py: every state, EXITED and FATAL with the last exit
and why, restarts in the window); what it does goes through the same request functions the control
port calls (msgsrv/watcher/server.py): `request_restart`, `request_start`, `request_stop`, each with
`by=` naming who asked, `(console, 127.0.0.1)`, and an Out that writes the watcher log and feeds the
action's progress lines. So a console restart is queued, journalled and carried out exactly like
`stop-msg`'s. Everything here runs in the watcher's loop; reading files is for the caller to put on
a thread.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from msgsrv import messages as M
from msgsrv.components import BY_NAME, COMPONENTS
from msgsrv.console import text as T
from msgsrv.console.actions import Action
from msgsrv.watcher.operations import Out
from msgsrv.watcher.states import State
from msgsrv.watcher.supervisor import Supervisor

UNITS: tuple[str, ...] = tuple(dict.fromkeys(c.unit for c in COMPONENTS if c.unit))
PROBE_TIMEOUT = 120.0  # seconds a console-started msprobe pass may take


class Refused(Exception):
    """The request cannot be carried out as asked (HTTP 409); nothing was done."""


def unit_members(unit: str) -> list[str]:
    return [c.name for c in COMPONENTS if c.unit == unit]


class Backend:
    def __init__(self, sup: Supervisor):
        self.sup = sup
        self.started = time.time()

    @property
    def root(self):
        return self.sup.root

    # -- what the overview shows ---------------------------------------------------------------
    def status(self) -> dict:
        """The watcher's status view (one consistent snapshot, read in the loop), grouped by unit."""
        sup = self.sup
        st = sup.status()
        w = st["watcher"]
        limit, window = w["limit"], w["window"]
        rows = [{**r, "limit": limit, "window": window, "restartable": bool(r["unit"])} for r in st["components"]]
        units = []
        for u in UNITS:
            members = [r for r in rows if r["unit"] == u]
            units.append({"name": u, "members": [r["name"] for r in members],
                          "restarts": max((r["restarts"] for r in members), default=0),
                          "restarts_total": w["restarts_total"].get(u, 0),
                          "fatal": any(r["state"] == State.FATAL.value for r in members),
                          "enabled": any(r["enabled"] or r["pids"] for r in members),
                          "pending": u in sup.pending})
        watcher = {**w, "started": self.started, "busy": bool(w["busy"]) or bool(sup.pending),
                   "closing": sup.closing}
        return {"watcher": watcher, "components": rows, "units": units,
                "banners": T.banners(watcher, units), "now": time.time()}

    @staticmethod
    def known_unit(unit: str) -> bool:
        return unit in UNITS

    # -- actions: the control port's request functions, with who asked ----------------------------
    def _out(self, action: Action) -> Out:
        who = T.who(action.who)
        restart_line = M.RECEIVED_RESTART.format(units="")

        def log(line: str) -> None:
            # the seed's request line, then who asked: `... store imap pop http (console, 127.0.0.1)`
            self.sup.log(f"{line} {who}" if line.startswith(restart_line) else line)

        return Out(log, action.feed)

    def restart(self, unit: str, action: Action) -> asyncio.Future:
        """Restart UNIT as `RESTART <member>` on the control port would: its members meant to run are
        stopped in reverse order and started in order; a FATAL unit comes back."""
        sup = self.sup
        members = unit_members(unit)
        enabled = sup.enabled()
        # the member named in the request is wanted up afterwards: one that runs or is meant to, else
        # the first enabled one (restarting a unit whose members are all off would start nothing)
        named = next((m for m in members if sup.comps[m].wanted or sup.comps[m].procs), None) \
            or next((m for m in members if m in enabled), None)
        if named is None:
            raise Refused(T.RESTART_NOTHING.format(unit=unit))
        fut = sup.request_restart([named], self._out(action), by=T.who(action.who))
        if fut is None:
            raise Refused(T.RESTART_NOTHING.format(unit=unit))
        return fut

    def stop(self, component: str, action: Action) -> asyncio.Future:
        who = T.who(action.who)
        self.sup.log(T.REQUEST.format(verb="stop", names=component, who=who))
        return self.sup.request_stop([component], self._out(action), by=who)

    def start(self, component: str, action: Action) -> asyncio.Future:
        if component not in self.sup.enabled():
            raise Refused(T.NOT_ENABLED.format(c=component, switch=BY_NAME[component].enable))
        who = T.who(action.who)
        self.sup.log(T.REQUEST.format(verb="start", names=component, who=who))
        return self.sup.request_start([component], self._out(action), by=who)

    async def probe(self, action: Action) -> None:
        """One msprobe pass, as imsched would run it; its output lines are the progress. A hang it
        finds reaches the watcher as msprobe's own report (HUNG), as from imsched."""
        who = T.who(action.who)
        self.sup.log(T.PROBE_REQUEST.format(who=who))
        self.sup.journal.add("request", detail="run msprobe", by=who)
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
