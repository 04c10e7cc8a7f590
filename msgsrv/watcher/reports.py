"""What msprobe and the store utilities report to the watcher, and the answer they get.

A hang report (HUNG) and a store utility's failure (FAILED, or its UTILITY registration closing
without BYE) are failures like a crash: logged to data/log/watcher, the default log and the console
whether or not anything is restarted (seed), then decided by the supervisor's policy. The reporter
is answered at once with the decision (control/protocol.py: restarting, already, limit, off, never,
stale, down), so msprobe never waits for a restart to finish.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from msgsrv import messages as M
from msgsrv import procinfo
from msgsrv.components import BY_NAME, PROBE_TARGETS, STORE_GROUP
from msgsrv.watcher.operations import _fmt
from msgsrv.watcher.policy import Action
from msgsrv.watcher.states import State

if TYPE_CHECKING:
    from msgsrv.watcher.supervisor import Supervisor


def _answer(action: Action, members: list[str], limit: str, c: str) -> tuple[str, str]:
    words = " ".join(members)
    return {Action.RESTART: ("restarting", words), Action.MERGE: ("already", words), Action.NOT_ON: ("off", words),
            Action.NEVER: ("never", c), Action.GIVE_UP: ("limit", limit)}[action]


def limit_text(sup: Supervisor, c: str) -> str:
    return (f"{' '.join(sup.members(BY_NAME[c].unit, c))}: {sup.budget.limit} restarts within "
            f"{_fmt(sup.window())} s")


def hang(sup: Supervisor, service: str, since: float, detail: str, by: str) -> tuple[str, str]:
    """msprobe says SERVICE does not respond (its probe began at SINCE).

    Not a new failure when a restart of its unit is due or under way, when the component was
    stopped by request, or when its processes (or its passing the readiness check) are newer than
    the probe; a FATAL one whose budget is
    still spent stays given up. Anything else goes through the policy like a crash: a FATAL or
    EXITED component whose window has passed is restarted again."""
    c = PROBE_TARGETS[service][0]
    comp = sup.comps[c]
    unit = BY_NAME[c].unit
    line = M.NOT_RESPONDING.format(svc=service, detail=detail, by=by)
    members = " ".join(sup.members(unit, c))
    live = [k for k in comp.procs if not k.stopping]

    def noted(outcome: str, text: str) -> tuple[str, str]:
        sup.alert(line, "Warning")
        sup.journal.add("hang", c, unit, live[0].pid if live else None, f"{line} (not acted on: {outcome})", by)
        return outcome, text

    sup.cfg.refresh()
    sup.window()
    if sup.closing:
        return noted("down", "the watcher is shutting down")
    if comp.state in (State.BACKOFF, State.STARTING, State.STOPPING) or sup.pending.get(unit or ""):
        return noted("already", members)
    if not comp.wanted:
        return noted("down", f"{c} is {comp.state.value} (stopped by request)")
    if live and _newer_than_the_probe(live, comp, since):
        # its processes, or its readiness, are newer than the probe: the probe met it while it was
        # being (re)started, not a hang of what runs now
        return noted("stale", members)
    if comp.state is State.FATAL and unit and sup.budget.in_window(unit, time.monotonic()) >= sup.budget.limit:
        return noted("limit", limit_text(sup, c))
    action, decided = sup.failure(c, "hang", line, line, pid=live[0].pid if live else None, by=by, hung=bool(live))
    return _answer(action, decided, limit_text(sup, c), c)


def _newer_than_the_probe(live: list, comp, since: float) -> bool:
    """Whether every live process of COMP, or its readiness, is newer than a probe that began at
    SINCE (msprobe's wall clock). Judged by ages on clocks no step of the wall clock moves: the
    probe's age is its wall-clock age now (the report follows the probe by seconds), a process's
    its start in /proc against the time since boot, the readiness's the monotonic clock. Before,
    the wall-clock instants were compared: with the clock set back an hour, every hang report of
    that hour was taken for a stale one and the hung server was never restarted."""
    probe_age = max(0.0, time.time() - since)  # a probe "in the future" (a step back since): now
    booted = procinfo.system_uptime()
    ages = [a if (a := procinfo.age(k.pid, booted)) is not None else time.time() - k.started for k in live]
    return all(a < probe_age for a in ages) or time.monotonic() - comp.since_mono < probe_age


def utility(sup: Supervisor, who: str, reason: str, by: str | None = None) -> tuple[str, str]:
    """SPEC §1: a store utility that fails or freezes restarts every store service (not itself)."""
    line = M.UTILITY_FAILED.format(who=who, reason=reason)
    running = sorted((m for m in STORE_GROUP if sup.comps[m].wanted),
                     key=lambda m: sup.comps[m].state is not State.RUNNING)  # a running member first
    if not running:
        sup.alert(line)
        sup.journal.add("utility", "store", "store", None, f"{line} (no store service runs)", by or who)
        return "down", "no store service runs"
    # the failure is the store group's: charged to its first member meant to run
    action, decided = sup.failure(running[0], "utility", line, line, by=by or who)
    return _answer(action, decided, limit_text(sup, running[0]), running[0])
