"""Adoption (SPEC §3, §4): a new watcher supervises what the old one left running, and forgets nothing.

It takes over the processes in data/run/*.pid (pid and start time checked, so a recycled pid is never
taken) and watches them through pidfds. When the previous watcher died (its data/run/watcher.json was
left behind), it also restores from data/run/supervision.json the restart budget, the restart counts,
which components were meant to run and their last failures, re-queues the restarts that were under
way, and treats a wanted server that died while nobody watched as a failure.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from msgsrv import messages as M
from msgsrv.components import BY_NAME, START_ORDER
from msgsrv.watcher import children as ch
from msgsrv.watcher import operations as ops
from msgsrv.watcher import statefile
from msgsrv.watcher.facts import Restart
from msgsrv.watcher.states import GIVEN_UP, State

if TYPE_CHECKING:
    from msgsrv.watcher.supervisor import Supervisor


def adopt(sup: Supervisor, restore: bool = False, rebooted: bool = False, request_follows: bool = False) -> list[str]:
    """Take over the processes in data/run/*.pid. RESTORE (the previous watcher died): also the
    budget, the restarts, what was wanted and the last failures, and act on what died meanwhile.
    REBOOTED (it died with the system): no process of its records can run, and none failed; what
    was meant to run is started (read_state keeps nothing else of that boot), unless
    REQUEST_FOLLOWS: start-msg launched this watcher and its START says what to start, as after a
    first boot (its `Starting ...` lines are then the start's, not `already running`)."""
    saved = statefile.read_state(sup.root.run_dir) if restore else {}
    if saved.get("damaged"):
        sup.alert(M.STATE_DAMAGED.format(path=sup.root.run_dir / statefile.STATE), "Warning")
    if restore:
        sup.budget.restore(saved.get("budget") or {})
        sup.restarts_total.update(saved.get("restarts_total") or {})
    facts = saved.get("components") or {}
    adopted, lost, stopping = [], {}, []
    for c in START_ORDER:
        comp = sup.comps[c]
        f = facts.get(c) or {}
        comp.wanted = bool(f.get("wanted")) if restore and not (rebooted and request_follows) else False
        comp.start_pending = comp.wanted and (rebooted or bool(f.get("start_pending")))
        comp.last_exit = f.get("last_exit")
        path = sup.root.pid_file(c)
        dead = []
        for rec in statefile.pid_records(path):
            child = sup.procs.adopt(c, rec, sup.root.base)
            if child is None:
                dead.append(rec["pid"])
                continue
            sup.adopted(child)
        if not comp.procs and not rebooted and sup.cfg.built_in(c):
            found = sup.procs.found_in_cgroups(c, BY_NAME[c].daemon, sup.root.base)
            for child in found:
                sup.adopted(child)
            if found:
                sup.log(M.FOUND_IN_CGROUP.format(c=c, pids=" ".join(str(k.pid) for k in found),
                                                 path=path.name))
                dead = []  # what the record named was replaced by these: not a failure of theirs
        if comp.procs and restore and f.get("wanted") is False:
            # the previous watcher was stopping it at the admin's request when it died (nothing
            # else leaves a process of a component not meant to run): that stop is finished, and
            # an exit meanwhile (the SIGTERM it had sent) is that stop's, not a failure
            sup.enter(c, State.RUNNING)
            sup.enter(c, State.STOPPING)
            for k in comp.procs:
                k.stopping = True
            stopping.append(c)
        elif comp.procs:
            state = State.FATAL if f.get("state") == State.FATAL.value else State.RUNNING
            sup.enter(c, state, f.get("reason"))  # STOPPED -> RUNNING: re-adopted (FATAL: a hung one)
            comp.wanted = True
            adopted.append(c)
        if comp.procs:
            comp.start_pending = False  # it runs: a start of it was under way, and it lives
            sup.log(M.ADOPTED.format(c=c, pid=" ".join(str(k.pid) for k in comp.procs)))
        elif restore and f.get("state") in (State.EXITED.value, State.FATAL.value):
            comp.down_state = State(f["state"])
            sup.enter(c, comp.down_state, f.get("reason"))
        if dead and not rebooted:  # a pid of another boot names nothing that ran in this one
            lost[c] = dead
        sup.write_pids(c)
    if stopping:
        sup.log(M.STOP_RESUMED.format(names=" ".join(stopping)))
        sup.ops.submit(lambda: ops.op_stop(sup, stopping, ops.Out(sup.log)), "stop")
    if restore:
        resume(sup, saved.get("pending") or [], lost, M.START_AFTER_REBOOT if rebooted else M.START_RESUMED)
    sup.save_soon()
    return adopted


def resume(sup: Supervisor, pending: list[dict], lost: dict[str, list[int]], starting: str = M.START_RESUMED) -> None:
    """After the previous watcher died: finish the restarts it had granted, and treat a wanted
    member that died while nobody watched as a failure (never lost)."""
    covered: set[str] = set()
    for p in pending:
        unit = p.get("unit")
        members = {m for m in p.get("members") or () if m in sup.comps}
        if not unit or not members:
            continue
        cause = p.get("cause") if p.get("cause") in members else sorted(members)[0]
        r = Restart(unit, members, cause, "watcher", hung=set(p.get("hung") or ()) & members)
        sup.pending.setdefault(unit, []).append(r)
        covered |= members
        for m in members:
            sup.settle(m, State.BACKOFF)
        sup.ops.submit(lambda r=r: ops.op_restart(sup, r), f"restart {unit}")
    unstarted = []
    for c in START_ORDER:
        comp = sup.comps[c]
        if comp.procs or not comp.wanted or c in covered or comp.state in GIVEN_UP:
            continue
        if comp.start_pending and not lost.get(c):
            # the previous watcher died before its start of C spawned anything: nothing has run or
            # failed, so no failure and no restart; the start is finished instead
            unstarted.append(c)
            continue
        pid = (lost.get(c) or [None])[0]
        comp.last_exit = {"pid": pid, "status": None, "how": ch.describe(None), "time": time.time()}
        line = (M.WATCHED_EXITED.format(daemon=BY_NAME[c].daemon, pid=pid) if pid
                else M.NOT_RUNNING.format(c=c))
        sup.failure(c, "exit", line, f"{line} (while no watcher was running)", pid=pid)
        for r in sup.pending.get(BY_NAME[c].unit or "", []):
            covered |= r.members  # its unit's restart covers the other members too
    unstarted = [c for c in unstarted if c not in covered]  # a restart of its unit starts it anyway
    if unstarted:
        sup.log(starting.format(names=" ".join(unstarted)))
        sup.ops.submit(lambda: ops.op_start(sup, unstarted, ops.Out(sup.log)), "start")
