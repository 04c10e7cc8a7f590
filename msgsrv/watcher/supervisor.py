"""Supervisor: the facts about each component, the decisions about failures, and the one door
through which a state changes.

Events arrive synchronously, from the loop: a pidfd turns readable (on_exit), a registration comes,
says BYE or closes without it, msprobe reports a hang, a store utility fails, a request arrives. Each
is recorded as a fact (journal.py, the component's last exit), the policy (policy.py) decides, and
operations (operations.py) are queued to carry the decision out, one at a time.

The rules that keep the watcher truthful (issue 10):
- Every state change goes through `enter()`, which checks states.TRANSITIONS; RUNNING always names
  a live process, and a component without processes takes the state its last decision gave it
  (`settle()`): BACKOFF while a restart is due, EXITED or FATAL when none will come, STOPPED only
  after a stop request.
- A process that dies unasked is always a failure. It is merged into a restart of its unit only
  when that restart has not started the member yet; one that dies after its unit's restart started
  it is a new failure with its own grant (or FATAL).
- The budget, the restarts, what is wanted up and the last failures are saved in
  data/run/supervision.json, so a new watcher carries on where a dead one stopped.

The same class runs inside start-msg/stop-msg, for one operation, when no watcher is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable

from msgsrv import logfmt
from msgsrv import messages as M
from msgsrv.components import BY_NAME, START_ORDER, STOP_ORDER, unit_members
from msgsrv.paths import ServerRoot
from msgsrv.watcher import adoption, reports, statefile
from msgsrv.watcher import children as ch
from msgsrv.watcher import operations as ops
from msgsrv.watcher import status as status_view
from msgsrv.watcher.configview import ConfigView
from msgsrv.watcher.facts import Comp, Restart
from msgsrv.watcher.journal import Journal
from msgsrv.watcher.policy import Action, RestartBudget, decide
from msgsrv.watcher.states import GIVEN_UP, WITH_PROCESSES, State, allowed

DISCONNECT_GRACE = 0.5  # seconds: a registration closed without BYE whose process still lives is a failure
CONFIG_RECHECK = 1.0  # seconds between looks at a config file that does not parse, while a restart waits


class Supervisor:
    def __init__(self, root: ServerRoot, *, ha: bool = False, supervised: bool = True,
                 watcher_port: int | None = None, console: Callable[[str], None] | None = None,
                 procs: ch.Processes | None = None, by: str = "watcher"):
        self.root = root
        self.ha = ha
        self.supervised = supervised  # True inside the watcher daemon
        self.watcher_port = watcher_port
        self.console = console or (lambda line: None)
        self.by = by  # who acts when this supervisor acts on its own (the journal's `by`)
        self.journal = Journal(root.run_dir)
        self.recorder = statefile.Recorder(self._record_problem)
        self.cfg = ConfigView(root.config_file, self._config_problem)
        self.procs = procs or ch.Processes()
        self.comps: dict[str, Comp] = {c: Comp(c) for c in START_ORDER}
        self.budget = RestartBudget()
        self.restarts_total: dict[str, int] = {}
        self.pending: dict[str, list[Restart]] = {}
        self.ops = ops.OperationQueue(on_crash=self._operation_crashed)
        self.anomalies = 0  # transitions outside the table (always 0 unless the watcher has a bug)
        self._ready: dict[int, asyncio.Future] = {}
        self._exited: dict[int, asyncio.Future] = {}
        self._leftovers: dict[str, set[asyncio.Task]] = {c: set() for c in START_ORDER}
        self._save_handle: asyncio.Handle | None = None
        self._lasting: tuple | None = None  # what supervision.json last synced to disk (save_now)
        self._retry_handle: asyncio.TimerHandle | None = None
        self._config_handle: asyncio.TimerHandle | None = None
        self.finished = asyncio.Event()
        self.exit_code = 0
        self.closing = False

    # -- logging ---------------------------------------------------------------------------------
    def log(self, line: str) -> None:
        with contextlib.suppress(OSError):  # a full disk must not stop supervision
            logfmt.append(self.root.watcher_log, line)

    def alert(self, line: str, severity: str = "Error") -> None:
        """Failures: watcher log, default log and the console (SPEC §3 "Logs")."""
        self.log(line)
        with contextlib.suppress(OSError):
            logfmt.default_log(self.root, "watcher", severity, line)
        self.console(line)

    def _config_problem(self, line: str, broken: bool) -> None:
        self.alert(line, "Error" if broken else "Notice")
        self.journal.add("config", detail=line)
        if not broken:
            self._resume_deferred()

    def _record_problem(self, line: str) -> None:
        self.alert(line, "Warning")

    # -- the one door for state changes -------------------------------------------------------------
    def enter(self, c: str, new: State, reason: str | None = None) -> None:
        comp = self.comps[c]
        old = comp.state
        if new is State.RUNNING and not comp.procs:
            self._anomaly(f"{c}: RUNNING without a process refused (state stays {old.value})")
            return
        if not allowed(old, new):
            self._anomaly(f"{c}: transition {old.value} -> {new.value} outside the table")
        if new not in WITH_PROCESSES and comp.procs:
            self._anomaly(f"{c}: {new.value} with live processes {[k.pid for k in comp.procs]}")
        if old != new:
            comp.state = new
            comp.since, comp.since_mono = time.time(), time.monotonic()
        if new in (State.STARTING, State.RUNNING, State.STOPPING, State.STOPPED):
            comp.reason = None
        elif reason is not None:
            comp.reason = reason

    def _anomaly(self, text: str) -> None:
        self.anomalies += 1
        self.log(f"internal error: {text}")

    def _operation_crashed(self, label: str, e: BaseException) -> None:
        """An operation ended with an exception of no kind the suite raises (a bug in the watcher).
        Said everywhere a failure is (with the traceback on the console, for the report), and no
        component is left looking as if it ran or were on its way: what is meant to run and has no
        process is FATAL with the reason, so status, msprobe and the alerts show it down."""
        import traceback

        self.anomalies += 1
        line = M.OPERATION_CRASHED.format(label=label or "operation", error=f"{type(e).__name__}: {e}")
        self.alert(line)
        with contextlib.suppress(Exception):
            self.console("".join(traceback.format_exception(e)).rstrip())
        for c, comp in self.comps.items():
            if comp.wanted and not comp.procs and comp.state not in (State.EXITED, State.FATAL):
                self.enter(c, State.FATAL, line)
                comp.down_state = State.FATAL
                self.journal.add("give-up", c, BY_NAME[c].unit, None, line, "watcher")
        self.save_soon()

    def settle(self, c: str, down: State | None = None) -> None:
        """C has no process left (or may not): take the state its last decision gave it."""
        comp = self.comps[c]
        if down is not None:
            comp.down_state = down
        if not comp.procs and comp.state != comp.down_state:
            self.enter(c, comp.down_state)

    def want(self, c: str, wanted: bool) -> None:
        if self.comps[c].wanted != wanted:
            self.comps[c].wanted = wanted
            self.save_soon()
        if not wanted:
            self.start_begun(c)

    def start_begun(self, c: str) -> None:
        """C's start has spawned it, or has ended without: no longer a start to finish."""
        if self.comps[c].start_pending:
            self.comps[c].start_pending = False
            self.save_soon()

    # -- config --------------------------------------------------------------------------------------
    def seed_config(self, overrides: dict[str, str]) -> None:
        """Supervise with OVERRIDES (the last good configuration saved) until the file parses."""
        self.cfg = ConfigView(self.root.config_file, self._config_problem, seed=overrides)
        self.cfg.refresh()

    def enabled(self) -> list[str]:
        cfg = self.cfg.refresh()
        return [c for c in START_ORDER if cfg.get_bool(BY_NAME[c].enable)]

    def port_of(self, c: str) -> int | None:
        ports = BY_NAME[c].ports
        return self.cfg.current.get_int(ports[0][1]) if ports else None

    def window(self) -> float:
        self.budget.window = self.cfg.current.get_float("local.autorestart.timeout", 600.0)
        return self.budget.window

    # -- process facts ---------------------------------------------------------------------------------
    def spawned(self, child: ch.Child) -> None:
        """A process of ours exists: record it before anything else can fail (issue 10)."""
        self._track(child, ready=self.supervised and self.cfg.built_in(child.component))  # built-in servers register when ready
        self.write_pids(child.component)
        self.start_begun(child.component)

    def adopted(self, child: ch.Child) -> None:
        """A process a previous watcher left running is ours now (adoption.py)."""
        self._track(child, ready=False)

    def _track(self, child: ch.Child, ready: bool) -> None:
        self.comps[child.component].procs.append(child)
        loop = asyncio.get_running_loop()
        self._exited[child.pid] = loop.create_future()
        if ready:
            self._ready[child.pid] = loop.create_future()
        self.procs.watch(child, self.on_exit)

    def exit_future(self, child: ch.Child) -> asyncio.Future | None:
        return self._exited.get(child.pid)

    def write_pids(self, c: str) -> None:
        for k in self.comps[c].procs:
            self.procs.fill_start_ticks(k)
        statefile.write_pid_records(self.recorder, self.root.pid_file(c), [k.record() for k in self.comps[c].procs])
        self._retry_records()

    def _retry_records(self) -> None:
        """While some record could not be written (a full disk), try again now and then."""
        if self.recorder.flush() or self._retry_handle is not None:
            return

        def again() -> None:
            self._retry_handle = None
            self._retry_records()

        with contextlib.suppress(RuntimeError):
            self._retry_handle = asyncio.get_running_loop().call_later(statefile.RETRY_EVERY, again)

    def on_exit(self, child: ch.Child, status: int | None) -> None:
        """A pidfd turned readable: the process is gone (SPEC §3: no polling loop)."""
        c = child.component
        comp = self.comps[c]
        child.exited, child.exit_status = True, status
        if child in comp.procs:
            comp.procs.remove(child)
        self.write_pids(c)
        fut = self._exited.pop(child.pid, None)
        if fut and not fut.done():
            fut.set_result(status)
        ready = self._ready.pop(child.pid, None)
        if ready and not ready.done():
            ready.set_exception(ops.StartFailed(f"exited with status {status}"))
        task = asyncio.get_running_loop().create_task(self.procs.clear_leftovers(child))
        self._leftovers[c].add(task)
        task.add_done_callback(self._leftovers[c].discard)
        if child.stopping or self.closing:
            return  # we asked for it (the operation records the stop)
        if child.unregistered:
            # it said BYE first: an orderly exit nobody asked the watcher for; not restarted
            self.log(M.EXITED_CLEANLY.format(c=c, pid=child.pid))
            self.journal.add("exited", c, BY_NAME[c].unit, child.pid, ch.describe(status))
            comp.last_exit = self._exit_fact(child, status)
            self.settle(c, State.EXITED)
            self.save_soon()
            return
        comp.last_exit = self._exit_fact(child, status)
        line = M.WATCHED_EXITED.format(daemon=BY_NAME[c].daemon, pid=child.pid)
        # an exit before the readiness check passed is a start-up failure: it counts all the same
        self.failure(c, "exit", line, f"{line} ({ch.describe(status)})", pid=child.pid,
                     start=comp.state is State.STARTING)

    @staticmethod
    def _exit_fact(child: ch.Child, status: int | None) -> dict:
        return {"pid": child.pid, "status": status, "how": ch.describe(status), "time": time.time()}

    async def leftovers_done(self, c: str) -> None:
        """Wait until what was left of C's exited processes is gone (its ports are free again)."""
        tasks = list(self._leftovers[c])
        if tasks:
            await asyncio.wait(tasks)

    async def wait_ready(self, c: str, spawned: list[ch.Child], external: bool, ready_by: float) -> None:
        """Registration of every worker (built-in, supervised), else the first port accepting.
        Raises StartFailed when a worker exits, TimeoutError at READY_BY."""
        futs = [self._ready[k.pid] for k in spawned if k.pid in self._ready]
        exits = [self._exited[k.pid] for k in spawned if k.pid in self._exited]
        if len(exits) < len(spawned):
            raise ops.StartFailed("exited during start-up")
        if futs or any(k.registered for k in spawned):
            # registrations (a worker may have registered already, while the others were spawned)
            waiting = set(futs)
            while waiting:
                timeout = ready_by - time.monotonic()
                if timeout <= 0:
                    raise TimeoutError
                done, _ = await asyncio.wait(waiting | set(exits), timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                for f in exits:
                    if f.done():
                        raise ops.StartFailed(f"exited with status {f.result()}")
                for f in done & waiting:
                    f.result()  # re-raises StartFailed from on_exit
                waiting -= done
            return
        port = self.port_of(c)
        while True:
            for f in exits:
                if f.done():
                    raise ops.StartFailed(f"exited with status {f.result()}")
            if port and await ops.accepts(port):
                return
            if time.monotonic() > ready_by:
                raise TimeoutError
            await asyncio.sleep(0.02)

    def started(self, c: str) -> None:
        comp = self.comps[c]
        comp.down_state = State.STOPPED
        pids = [k.pid for k in comp.procs]
        self.journal.add("started", c, BY_NAME[c].unit, pids[0], " ".join(map(str, pids)))
        self.save_soon()

    def stopped(self, c: str) -> None:
        """A requested stop is done: C is STOPPED (its last failure stays on record)."""
        self.settle(c, State.STOPPED)
        self.journal.add("stopped", c, BY_NAME[c].unit)
        self.save_soon()

    # -- registrations ------------------------------------------------------------------------------------
    def registered(self, component: str, pid: int) -> bool:
        for child in self.comps[component].procs:
            if child.pid == pid:
                child.registered = True
                fut = self._ready.pop(pid, None)
                if fut and not fut.done():
                    fut.set_result(True)
                return True
        return False

    def unregister(self, component: str, pid: int) -> None:
        for child in self.comps[component].procs:
            if child.pid == pid:
                child.unregistered = True

    def disconnected(self, component: str, pid: int) -> None:
        """A registration closed without BYE. If the process still lives after a moment (an exit
        would have been seen through its pidfd), it failed while alive (SPEC §3)."""

        def check() -> None:
            for child in self.comps[component].procs:
                if child.pid == pid and not child.stopping and not child.unregistered and not self.closing:
                    line = M.WATCHED_DISCONNECTED.format(daemon=BY_NAME[component].daemon, pid=pid)
                    # alive but cut off: as good as hung (short stop grace; FATAL keeps its pid)
                    self.failure(component, "disconnect", line, line, pid=pid, hung=True)

        asyncio.get_running_loop().call_later(DISCONNECT_GRACE, check)

    # -- failures and decisions -----------------------------------------------------------------------------
    def failure(self, c: str, kind: str, line: str, detail: str, *, pid: int | None = None, by: str | None = None,
                hung: bool = False, start: bool = False, delay: float = 0.0) -> tuple[Action, list[str]]:
        """A failure of C: log it everywhere, decide, and queue the restart the decision grants."""
        cfg = self.cfg.refresh()
        unit = BY_NAME[c].unit
        self.alert(line)
        self.journal.add(kind, c, unit, pid, detail, by)
        members = self.members(unit, c)
        if self.closing:
            return Action.NOT_ON, members  # shutting down: logged, nothing more
        target = self._merge_target(unit, c)
        self.window()
        # without a watcher (start-msg/stop-msg acting alone) nobody is left to restart anything
        autorestart = cfg.get_bool("local.autorestart") and self.supervised
        action = decide(unit, autorestart=autorestart, merge=target is not None, budget=self.budget,
                        now=time.monotonic())
        if action is Action.NEVER:
            self.alert(M.NOT_RESTARTABLE.format(c=c))
            self.journal.add("not-restarted", c, unit, pid, M.NOT_RESTARTABLE.format(c=c))
            self.settle(c, State.EXITED)
        elif action is Action.NOT_ON:
            text = M.AUTORESTART_OFF.format(units=" ".join(members))
            self.alert(text, "Warning")
            self.journal.add("not-restarted", c, unit, pid, text)
            self.settle(c, State.FATAL if start else State.EXITED)  # -> FATAL: it could not start
        elif action is Action.MERGE:
            target.members.add(c)
            if hung:
                target.hung.add(c)
            self.journal.add("restart-merged", c, unit, pid, " ".join(sorted(target.members)))
            members = [m for m in START_ORDER if m in target.members]
            self.settle(c, State.BACKOFF)  # -> BACKOFF: the restart under way covers it
        elif action is Action.RESTART:
            r = Restart(unit, set(members), c, by, hung={c} if hung else set(), delay=delay)
            self.pending.setdefault(unit, []).append(r)
            self.restarts_total[unit] = self.restarts_total.get(unit, 0) + 1
            self.journal.add("restart-queued", c, unit, pid, " ".join(members), by)
            self.settle(c, State.BACKOFF)  # -> BACKOFF: a restart is queued
            self.ops.submit(lambda: ops.op_restart(self, r), f"restart {unit}")
        else:  # GIVE_UP
            text = M.GIVING_UP.format(c=c, n=self.budget.limit + 1, units=" ".join(members),
                                      window=ops._fmt(self.budget.window))
            self.alert(text, "Critical")
            self.journal.add("give-up", c, unit, pid, text, by)
            comp = self.comps[c]
            comp.down_state = State.FATAL
            if comp.state in (State.STARTING, State.STOPPING) or (comp.procs and not hung):
                # an operation is at work on it, or its other workers still serve: it stays as it is
                # and is FATAL once it has no process left
                comp.reason = text
            else:
                self.enter(c, State.FATAL, reason=text)  # -> FATAL: budget spent (a hung one keeps its pids)
            for m in members:
                comp = self.comps[m]
                if m != c and not comp.procs and comp.state in (State.BACKOFF, State.EXITED):
                    self.settle(m, State.FATAL)
            if self.ha:
                self.alert(M.HA_SHUTDOWN, "Critical")
                self.shutdown(1, by="watcher")
        self.save_soon()
        return action, members

    def start_failed(self, c: str, reason: str, resource: bool = False) -> None:
        """A start that did not come up without an exit the supervisor saw (timeout, spawn error)."""
        line = M.START_FAILED.format(c=c, reason=reason)
        self.failure(c, "start-failed", line, line, start=True,
                     delay=ops.RESOURCE_RETRY_DELAY if resource else 0.0)

    def _merge_target(self, unit: str | None, c: str) -> Restart | None:
        """The latest restart of UNIT, if it has not started C yet (then it covers this failure)."""
        queue = self.pending.get(unit or "", [])
        if queue and c not in queue[-1].started:
            return queue[-1]
        return None

    def members(self, unit: str | None, c: str) -> list[str]:
        """SPEC §1: the members of the unit meant to run (wanted), and the one that failed; a member
        stopped by request stays stopped (issue 10)."""
        if unit is None:
            return [c]
        return [m for m in unit_members(unit, START_ORDER) if m == c or self.comps[m].wanted]

    # -- restarts waiting for the config file (a built-in server cannot start while it does not parse) ----
    def defer(self, r: Restart) -> None:
        """Hold R until config/msg.toml parses again: the built-in servers read it themselves, so a start
        now would fail and spend the budget for nothing. The members still running keep running; the
        queue is not held up (stop-msg still stops everything)."""
        if not r.deferred:
            r.deferred = True
            units = " ".join(m for m in START_ORDER if m in r.members)
            self.alert(M.WAITING_FOR_CONFIG.format(units=units, path=self.cfg.path))
            self.journal.add("config", r.cause, r.unit, detail=M.WAITING_FOR_CONFIG.format(units=units,
                                                                                          path=self.cfg.path))
            for m in r.members:
                if not self.comps[m].procs and self.comps[m].wanted:
                    self.settle(m, State.BACKOFF)  # -> BACKOFF: its restart waits for the file
                    self.comps[m].reason = M.WAITING_FOR_CONFIG.format(units=units, path=self.cfg.path)
        self._recheck_config()

    def _recheck_config(self) -> None:
        """While a restart waits for the config file, look at the file again every CONFIG_RECHECK s."""
        if self._config_handle is not None or not any(r.deferred for q in self.pending.values() for r in q):
            return

        def again() -> None:
            self._config_handle = None
            self.cfg.refresh()  # reports the fix, which resumes the deferred restarts
            self._recheck_config()

        self._config_handle = asyncio.get_running_loop().call_later(CONFIG_RECHECK, again)

    def _resume_deferred(self) -> None:
        for q in self.pending.values():
            for r in q:
                if r.deferred:
                    r.deferred = False
                    self.ops.submit(lambda r=r: ops.op_restart(self, r), f"restart {r.unit}")

    def restart_finished(self, r: Restart) -> None:
        queue = self.pending.get(r.unit, [])
        if r in queue:
            queue.remove(r)
        if not queue:
            self.pending.pop(r.unit, None)
        if r.begun:
            self.journal.add("restart-done", r.cause, r.unit, detail=" ".join(sorted(r.members)))
        for m in r.members:
            self.settle(m, None if self.comps[m].wanted else State.STOPPED)  # stopped by request meanwhile
        self.save_soon()

    # -- reports, adoption and the status view (reports.py, adoption.py, status.py) ----------------------
    def report_hang(self, service: str, since: float, detail: str, by: str) -> tuple[str, str]:
        return reports.hang(self, service, since, detail, by)

    def utility_failed(self, who: str, reason: str, by: str | None = None) -> tuple[str, str]:
        return reports.utility(self, who, reason, by)

    def adopt(self, restore: bool = False, rebooted: bool = False, request_follows: bool = False) -> list[str]:
        return adoption.adopt(self, restore, rebooted, request_follows)

    def status(self, pss: bool = False) -> dict:
        return status_view.snapshot(self, pss)

    # -- requests ----------------------------------------------------------------------------------------
    def request_start(self, names: list[str], out: ops.Out, by: str | None = None) -> asyncio.Future:
        self.journal.add("request", detail="start " + " ".join(names), by=by)
        if self.closing:
            return self.ops.submit(_nothing, "start")  # answered why at once; nothing changed
        for c in names:
            self.want(c, True)
            if not self.comps[c].procs:
                self.comps[c].start_pending = True  # saved below: see adoption.resume
        self.save_soon()
        return self.ops.submit(lambda: ops.op_start(self, names, out), "start")

    def request_stop(self, names: list[str] | None, out: ops.Out, force: bool = False,
                     by: str | None = None) -> asyncio.Future:
        """Stop NAMES, after the operations queued before. NAMES None: everything (stop-msg without
        names), which does not wait behind a start: the start or restart under way is interrupted
        (its lines end `interrupted`, its requester is told why), queued starts are dropped, and the
        stop runs next, of whatever runs by then (queued restarts then find nothing wanted).
        A failure's restart is never lost by it: only what nobody wants any more is not done."""
        flag = "stop -f" if force else "stop"
        self.journal.add("request", detail=f"{flag} {' '.join(names)}" if names is not None else f"{flag} (everything)",
                         by=by)
        for c in names if names is not None else self.comps:
            self.want(c, False)  # from now on a failure of it is not restarted
        if names is not None:
            return self.ops.submit(lambda: ops.op_stop(self, names, out, force), "stop")
        self.ops.interrupt(("start",), ("start", "restart"), M.START_INTERRUPTED.format(by=f" by {by}" if by else ""))
        return self.ops.submit(lambda: ops.op_stop(self, [c for c in STOP_ORDER if self.comps[c].procs], out, force),
                               "stop", first=True)

    def request_restart(self, names: list[str], out: ops.Out | None = None, by: str | None = None) -> asyncio.Future | None:
        """An admin's restart: not a failure, so no grant from the budget; FATAL members come back."""
        self.journal.add("request", detail="restart " + " ".join(names), by=by)
        if self.closing:
            return self.ops.submit(_nothing, "restart")  # answered why at once; nothing changed
        last = None
        units: dict[str, str] = {}
        for c in names:
            unit = BY_NAME[c].unit
            if unit is None:
                self.alert(M.NOT_RESTARTABLE.format(c=c))
                continue
            units.setdefault(unit, c)
        for unit, c in units.items():
            self.want(c, True)
            r = Restart(unit, set(self.members(unit, c)), c, by)
            self.pending.setdefault(unit, []).append(r)
            self.settle(c)
            last = self.ops.submit(lambda r=r: ops.op_restart(self, r, out), f"restart {unit}")
        return last

    def shutdown(self, code: int = 0, out: ops.Out | None = None, by: str | None = None,
                 force: bool = False) -> asyncio.Future:
        """Stop everything and exit CODE, ahead of any operation (the one under way is interrupted,
        queued ones are answered why). Nothing is wanted from here on: should this watcher die
        before the end, the next one finishes the stop (adoption) and counts no failure."""
        self.journal.add("request", detail=f"shutdown{' -f' if force else ''} (exit {code})", by=by)
        if self.ops.shutdown is not None:
            return self.ops.shutdown  # already under way: answered when it is done
        self.closing = True
        for c in self.comps:
            self.want(c, False)
        why = M.SHUTTING_DOWN.format(by={"signal": " (on a signal)", "watcher": " (HA mode gave up)"}.get(
            by or "", f" (asked by {by})" if by else ""))
        return self.ops.preempt(lambda: ops.op_shutdown(self, code, out, force), "shutdown", why)

    # -- the saved state (SPEC §4 "Nothing is forgotten") -------------------------------------------------
    def save_soon(self) -> None:
        """Write supervision.json once the current event is handled (changes coalesce)."""
        if self._save_handle is not None:
            return
        try:
            self._save_handle = asyncio.get_running_loop().call_soon(self.save_now)
        except RuntimeError:
            self.save_now()

    def save_now(self) -> None:
        self._save_handle = None
        comps = {c: {"wanted": k.wanted, "state": k.state.value if k.state in GIVEN_UP else None,
                     "reason": k.reason, "last_exit": k.last_exit, "start_pending": k.start_pending}
                 for c, k in self.comps.items()}
        pending = [{"unit": r.unit, "members": sorted(r.members), "cause": r.cause, "hung": sorted(r.hung)}
                   for q in self.pending.values() for r in q]
        config = self.cfg.overrides() if self.cfg.good else None
        data = statefile.state_snapshot(time.monotonic(), self.budget.grants(), self.restarts_total, comps,
                                        pending, config)
        # What a reboot keeps (the last good configuration, what the admin wants up, what was given
        # up) is synced to disk when it changes. The rest (the budget, queued restarts, exits and
        # counts) belongs to this boot (read_state drops it after a reboot): the atomic rename is
        # enough for a watcher that dies, and a crash's restart skips two fsyncs before its fork.
        lasting = (config, [(c, v["wanted"], v["state"]) for c, v in comps.items()])
        durable = lasting != self._lasting
        if self.recorder.write(self.root.run_dir / statefile.STATE, data, durable=durable) and durable:
            self._lasting = lasting
        self._retry_records()


def console_writer(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


async def _nothing() -> None:
    """What a request refused while the watcher shuts down would have run (it never does)."""
