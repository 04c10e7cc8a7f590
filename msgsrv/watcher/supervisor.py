"""Supervisor: component state, failure decisions and the start/stop/restart operations.

Events (a pidfd turns readable, a registration closes, a request arrives) are handled
synchronously: state changes go through _enter(), the RestartBudget decides, and operations are
queued. One worker runs the operations one at a time, each wait with a named deadline. A request
that arrives during a restart waits in the queue; nothing is refused for being busy.

The same class runs inside the watcher daemon and, when local.watcher.enable is no (or no
watcher answers stop-msg), inside start-msg/stop-msg for one operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable

from msgsrv import logfmt
from msgsrv import messages as M
from msgsrv.components import BY_NAME, START_ORDER, STOP_ORDER, STORE_GROUP, unit_members
from msgsrv.config.store import ConfigStore
from msgsrv.errors import OperationFailed
from msgsrv.paths import ServerRoot
from msgsrv.watcher import children as ch
from msgsrv.watcher.policy import RestartBudget, Verdict
from msgsrv.watcher.states import State, allowed

DOT_EVERY = 0.05  # one progress dot per 50 ms of waiting
MIN_DOTS = 3


class StartFailed(OperationFailed):
    pass


class Out:
    """Where the lines of one operation go: the watcher log always, a requesting client if any.

    text() adds to the current line (and shows it at once); line() completes it.
    """

    def __init__(self, log: Callable[[str], None], send: Callable[[str, str], None] | None = None):
        self._log = log
        self._send = send
        self._partial = ""

    def text(self, s: str) -> None:
        self._partial += s
        if self._send:
            self._send("T", s)

    def line(self, s: str = "") -> None:
        full, self._partial = self._partial + s, ""
        self._log(full)
        if self._send:
            self._send("L", s)


class Dots:
    """Real progress: a dot every DOT_EVERY seconds while a wait lasts (at least MIN_DOTS)."""

    def __init__(self, out: Out):
        self.out = out
        self.count = 0
        self._task: asyncio.Task | None = None

    async def _tick(self) -> None:
        while True:
            self.out.text(".")
            self.count += 1
            await asyncio.sleep(DOT_EVERY)

    def __enter__(self) -> Dots:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc) -> None:
        if self._task:
            self._task.cancel()
        while self.count < MIN_DOTS:
            self.out.text(".")
            self.count += 1


class Supervisor:
    def __init__(self, root: ServerRoot, *, ha: bool = False, supervised: bool = True,
                 watcher_port: int | None = None, console: Callable[[str], None] | None = None):
        self.root = root
        self.cfg = ConfigStore(root.config_file)
        self.ha = ha
        self.supervised = supervised  # True inside the watcher daemon
        self.watcher_port = watcher_port
        self.console = console or (lambda line: None)
        self.state: dict[str, State] = {c: State.STOPPED for c in START_ORDER}
        self.children: dict[str, list[ch.Child]] = {c: [] for c in START_ORDER}
        self.since: dict[str, float] = {}
        self.started_with: set[str] = set()  # components started by this watcher ("enabled at start-up")
        self.budget = RestartBudget()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pending_units: set[str] = set()
        self.restarts_total: dict[str, int] = {}  # unit -> restarts since the watcher started
        self._ready: dict[int, asyncio.Future] = {}
        self._exited: dict[int, asyncio.Future] = {}
        self.finished = asyncio.Event()
        self.exit_code = 0
        self.closing = False

    # -- logging -------------------------------------------------------------------
    def log(self, line: str) -> None:
        logfmt.append(self.root.watcher_log, line)

    def alert(self, line: str, severity: str = "Error") -> None:
        """Failures: watcher log, default log and the console (SPEC §3 "Logs")."""
        self.log(line)
        logfmt.default_log(self.root, "watcher", severity, line)
        self.console(line)

    # -- the one door for state changes ---------------------------------------------
    def _enter(self, c: str, new: State) -> None:
        old = self.state[c]
        if not allowed(old, new):
            raise RuntimeError(f"{c}: illegal transition {old.value} -> {new.value}")
        if old != new:
            self.state[c] = new
            if new in (State.RUNNING, State.STARTING):
                self.since.setdefault(c, time.time())
            else:
                self.since.pop(c, None)

    # -- config ----------------------------------------------------------------------
    def enabled(self) -> list[str]:
        self.cfg.refresh()
        return [c for c in START_ORDER if self.cfg.get_bool(BY_NAME[c].enable)]

    def _seconds(self, c: str, what: str, default: float) -> float:
        return self.cfg.get_float(f"local.{c}.{what}", default)

    def alive(self, c: str) -> list[ch.Child]:
        return list(self.children[c])

    # -- operations queue --------------------------------------------------------------
    def submit(self, op: Callable[[], Awaitable]) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((op, fut))
        return fut

    async def worker(self) -> None:
        while True:
            op, fut = await self.queue.get()
            try:
                res = await op()
            except Exception as e:  # an operation's failure belongs to its requester
                if not fut.done():
                    fut.set_exception(e)
            else:
                if not fut.done():
                    fut.set_result(res)

    # -- child events -------------------------------------------------------------------
    def _watch(self, child: ch.Child) -> None:
        loop = asyncio.get_running_loop()
        self._exited[child.pid] = loop.create_future()
        loop.add_reader(child.pidfd, self._on_exit, child)

    def _on_exit(self, child: ch.Child) -> None:
        # A pidfd turned readable: the process is gone (SPEC §3: no polling loop).
        loop = asyncio.get_running_loop()
        loop.remove_reader(child.pidfd)
        child.exit_status = ch.reap(child)
        ch.close_fd(child.pidfd)
        c = child.component
        if child in self.children[c]:
            self.children[c].remove(child)
        self._write_pidfile(c)
        fut = self._exited.pop(child.pid, None)
        if fut and not fut.done():
            fut.set_result(child.exit_status)
        ready = self._ready.pop(child.pid, None)
        if ready and not ready.done():
            ready.set_exception(StartFailed(f"exited with status {child.exit_status}"))
        if child.stopping or self.closing or self.state[c] == State.STARTING:
            return  # expected, or the start operation reports it
        if child.unregistered:
            self.log(M.EXITED_CLEANLY.format(c=c, pid=child.pid))
            self._settle(c)
            return  # it said BYE first: an orderly exit, not a failure
        daemon = BY_NAME[c].daemon
        self.failure(c, M.WATCHED_EXITED.format(daemon=daemon, pid=child.pid))

    def registered(self, component: str, pid: int) -> bool:
        for child in self.children.get(component, []):
            if child.pid == pid:
                fut = self._ready.pop(pid, None)
                if fut and not fut.done():
                    fut.set_result(True)
                return True
        return False

    def unregister(self, component: str, pid: int) -> None:
        for child in self.children.get(component, []):
            if child.pid == pid:
                child.unregistered = True

    def disconnected(self, component: str, pid: int) -> None:
        """A registration closed without BYE. If the process is still there after a moment (its
        exit would have been seen through the pidfd), it failed while alive (SPEC §3)."""

        def check() -> None:
            for child in self.children.get(component, []):
                if child.pid == pid and not child.stopping and not self.closing \
                        and self.state[component] == State.RUNNING:
                    daemon = BY_NAME[component].daemon
                    self.failure(component, M.WATCHED_DISCONNECTED.format(daemon=daemon, pid=pid))

        asyncio.get_running_loop().call_later(0.5, check)

    # -- failure policy -------------------------------------------------------------------
    def failure(self, c: str, message: str) -> None:
        """A component crashed or vanished: log it, then restart its unit if the policy allows."""
        self.alert(message)
        self.request_restart([c], reason="failure")

    def request_restart(self, components: list[str], reason: str = "request",
                        out: Out | None = None) -> asyncio.Future | None:
        """Restart the units of COMPONENTS (failure, msprobe or an admin). Returns the queued
        operation, or None when nothing is restarted."""
        self.cfg.refresh()
        units: dict[str, str] = {}
        for c in components:
            unit = BY_NAME[c].unit
            if unit is None:
                self.alert(M.NOT_RESTARTABLE.format(c=c))
                self._settle(c)
                continue
            units.setdefault(unit, c)
        if not units:
            return None
        if reason == "failure" and not self.cfg.get_bool("local.autorestart"):
            for unit, c in units.items():
                self.alert(M.AUTORESTART_OFF.format(units=" ".join(self._members(unit, c))))
                self._settle(c)
            return None
        self.budget.window = self.cfg.get_float("local.autorestart.timeout", 600.0)
        now = time.monotonic()
        last = None
        for unit, c in units.items():
            if unit in self.pending_units:
                continue  # already queued: one failure, one restart
            members = self._members(unit, c)
            if self.budget.record(unit, now) is Verdict.GIVE_UP:
                self.alert(M.GIVING_UP.format(c=c, n=self.budget.limit + 1, units=" ".join(members),
                                              window=_fmt(self.budget.window)), severity="Critical")
                for m in members:
                    if not self.children[m]:
                        self._enter(m, State.FATAL)  # -> FATAL: restart budget spent
                if self.ha:
                    self.alert(M.HA_SHUTDOWN, severity="Critical")
                    last = self.submit(lambda: self.op_shutdown(1))
                continue
            for m in members:
                if not self.children[m] and self.state[m] in (State.RUNNING, State.STARTING):
                    self._enter(m, State.BACKOFF)
            if self.state[c] == State.RUNNING:
                self._enter(c, State.BACKOFF)
            self.pending_units.add(unit)
            self.restarts_total[unit] = self.restarts_total.get(unit, 0) + 1
            last = self.submit(lambda u=unit, ms=members: self.op_restart(u, ms, out))
        return last

    def _members(self, unit: str, c: str) -> list[str]:
        """SPEC §3: a store-group failure restarts every store service enabled at start-up."""
        pool = self.started_with | {c} | {m for m in START_ORDER if self.children[m]}
        return unit_members(unit, [m for m in START_ORDER if m in pool])

    def _settle(self, c: str) -> None:
        if not self.children[c] and self.state[c] in (State.RUNNING, State.BACKOFF, State.STARTING):
            self._enter(c, State.STOPPED)

    # -- operations (run by the worker, one at a time) -----------------------------------------
    async def op_start(self, names: list[str], out: Out) -> list[str]:
        self.cfg.refresh()
        failed = []
        for c in names:
            try:
                await self.start_component(c, out)
            except StartFailed as e:
                failed.append(f"{c}: {e}")
        if failed:
            raise StartFailed("; ".join(failed))
        return names

    async def op_stop(self, names: list[str], out: Out, force: bool = False) -> None:
        for c in STOP_ORDER:
            if c in names:
                await self.stop_component(c, out, force)

    async def op_restart(self, unit: str, members: list[str], client: Out | None) -> None:
        out = client or Out(self.log)
        self.cfg.refresh()
        try:
            out.line(M.RECEIVED_RESTART.format(units=" ".join(members)))
            out.line(M.CONNECTING)
            for c in reversed(members):
                await self.stop_component(c, out)
            failed = None
            for c in members:
                try:
                    await self.start_component(c, out)
                except StartFailed as e:
                    self.alert(M.START_FAILED.format(c=c, reason=e))
                    failed = failed or c
        finally:
            self.pending_units.discard(unit)
        if failed and not self.closing:
            # SPEC §3: the budget covers every exit, start-up included; it decides whether to go on.
            self.request_restart([failed], reason="failure")

    async def op_shutdown(self, code: int = 0, out: Out | None = None) -> None:
        out = out or Out(self.log)
        self.closing = True
        await self.op_stop([c for c in STOP_ORDER if self.children[c]], out)
        self.exit_code = code
        self.finished.set()

    # -- start / stop one component ------------------------------------------------------------
    def _command(self, c: str) -> str:
        return self.cfg.get_str(f"local.{c}.command", "")

    def _workers(self, c: str) -> int:
        param = BY_NAME[c].workers
        return max(1, self.cfg.get_int(param, 1)) if param else 1

    def _env(self, c: str, worker: int) -> dict[str, str]:
        env = dict(os.environ)
        env["MSGSRV_BASE"] = str(self.root.base)
        env["MSGSRV_COMPONENT"] = c
        env["MSGSRV_WORKER"] = str(worker)
        if self.supervised and self.watcher_port:
            env["MSGSRV_SUPERVISED"] = "1"
            env["MSGSRV_WATCHER_PORT"] = str(self.watcher_port)
        else:
            env.pop("MSGSRV_SUPERVISED", None)
        return env

    async def start_component(self, c: str, out: Out) -> list[int]:
        """Start C with the configuration as the operation read it (see op_start / op_restart)."""
        if self.children[c]:
            out.line(M.ALREADY_RUNNING.format(c=c))
            return [k.pid for k in self.children[c]]
        self.started_with.add(c)
        self._enter(c, State.STARTING)
        command = self._command(c)
        argv = ch.server_argv(c, command)
        log_path = self.root.component_log(f"{c}.out")
        deadline = self._seconds(c, "starttimeout", 10.0)
        out.text(M.STARTING.format(c=c))
        spawned: list[ch.Child] = []
        with Dots(out):
            try:
                for w in range(self._workers(c)):
                    pid = ch.spawn(argv, self._env(c, w), log_path)
                    child = ch.Child(c, pid, ch.open_pidfd(pid), ch.create_time(pid), time.time(), worker=w)
                    spawned.append(child)
                    self.children[c].append(child)
                    if self.supervised and not command.strip():
                        self._ready[pid] = asyncio.get_running_loop().create_future()
                    self._watch(child)
                self._write_pidfile(c)
                await asyncio.wait_for(self._wait_ready(c, spawned, bool(command.strip())), deadline)
            except (OSError, StartFailed, TimeoutError, Exception) as e:
                reason = e if not isinstance(e, TimeoutError) else f"not accepting within {_fmt(deadline)} s"
                if isinstance(e, OSError) and e.filename:
                    reason = f"unable to run {argv[0]}: {e.strerror}"
                await self._kill_all(c, spawned)
                self._enter(c, State.FATAL)
                out.line(" failed")
                tail = _tail(log_path)
                raise StartFailed(f"{reason}{'; log: ' + tail if tail else ''}") from None
        self._enter(c, State.RUNNING)
        out.line(" " + " ".join(str(k.pid) for k in spawned))
        if c == "store" and not command.strip():
            await self._check_store(out)
        return [k.pid for k in spawned]

    async def _wait_ready(self, c: str, spawned: list[ch.Child], external: bool) -> None:
        """Registration of every worker (built-in, supervised), else the first port accepting."""
        futs = [self._ready[k.pid] for k in spawned if k.pid in self._ready]
        exits = [self._exited[k.pid] for k in spawned if k.pid in self._exited]
        if futs:
            waiting = set(futs)
            while waiting:
                done, _ = await asyncio.wait(waiting | set(exits), return_when=asyncio.FIRST_COMPLETED)
                for f in exits:
                    if f.done():
                        raise StartFailed(f"exited with status {f.result()}")
                for f in done & waiting:
                    f.result()  # re-raises StartFailed from _on_exit
                waiting -= done
            return
        port = self._port(c)
        while True:
            if any(f.done() for f in exits):
                raise StartFailed(f"exited with status {[f for f in exits if f.done()][0].result()}")
            if port and await _accepts(port):
                return
            await asyncio.sleep(0.02)

    def _port(self, c: str) -> int | None:
        ports = BY_NAME[c].ports
        return self.cfg.get_int(ports[0][1]) if ports else None

    async def _check_store(self, out: Out) -> None:
        """`checking store server status ... ready`: the store answers a STATUS line."""
        out.text(M.CHECKING_STORE)
        with Dots(out):
            ok = await _store_status(self._port("store") or 0)
        out.line(M.READY if ok else " not ready")

    async def stop_component(self, c: str, out: Out, force: bool = False) -> None:
        kids = self.alive(c)
        if not kids:
            out.line(M.NOT_RUNNING.format(c=c))
            self._settle(c)
            return
        self._enter(c, State.STOPPING)
        sig = signal.SIGKILL if force else signal.SIGTERM
        for k in kids:
            k.stopping = True
            ch.signal_group(k.pid, sig)
        grace = self._seconds(c, "stoptimeout", 5.0)
        for k in kids:
            out.text(M.STOPPING.format(c=c, pid=k.pid))
            with Dots(out):
                await self._wait_exit(k, grace)
            out.line(M.DONE)
        self._enter(c, State.STOPPED)

    async def _wait_exit(self, k: ch.Child, grace: float) -> None:
        fut = self._exited.get(k.pid)
        if fut is not None:
            try:
                await asyncio.wait_for(asyncio.shield(fut), grace)
            except TimeoutError:
                ch.signal_group(k.pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(fut), 5.0)
        ch.kill_leftovers(k.pid)  # grandchildren left in its process group

    async def _kill_all(self, c: str, kids: list[ch.Child]) -> None:
        for k in kids:
            k.stopping = True
            ch.signal_group(k.pid, signal.SIGKILL)
        for k in kids:
            await self._wait_exit(k, 5.0)

    def _write_pidfile(self, c: str) -> None:
        ch.write_pidfile(self.root.pid_file(c), self.children[c])

    # -- re-adoption (SPEC §3: a new watcher supervises what the old one left running) ---------------
    def adopt(self) -> list[str]:
        adopted = []
        for c in START_ORDER:
            path = self.root.pid_file(c)
            for rec in ch.read_pidfile(path):
                pid, ctime = rec["pid"], float(rec.get("create_time", 0))
                if not ch.alive_same(pid, ctime):
                    continue
                try:
                    fd = ch.open_pidfd(pid)
                except OSError:
                    continue
                child = ch.Child(c, pid, fd, ctime, float(rec.get("started", time.time())),
                                 worker=int(rec.get("worker", 0)), adopted=True)
                self.children[c].append(child)
                self._watch(child)
            if self.children[c]:
                self._enter(c, State.RUNNING)
                self.started_with.add(c)
                adopted.append(c)
                self.log(M.ADOPTED.format(c=c, pid=" ".join(str(k.pid) for k in self.children[c])))
            self._write_pidfile(c)
        return adopted

    # -- status ------------------------------------------------------------------------------
    def status(self) -> dict:
        now, mono = time.time(), time.monotonic()
        self.budget.window = self.cfg.get_float("local.autorestart.timeout", 600.0)
        rows = []
        for c in START_ORDER:
            comp = BY_NAME[c]
            kids = self.children[c]
            rows.append({
                "name": c,
                "daemon": comp.daemon,
                "state": self.state[c].value,
                "pids": [k.pid for k in kids],
                "uptime": round(now - min(k.started for k in kids), 1) if kids else None,
                "restarts": self.budget.in_window(comp.unit, mono) if comp.unit else 0,
                "unit": comp.unit,
                "group": "store" if c in STORE_GROUP else None,
            })
        return {"components": rows}


async def _accepts(port: int) -> bool:
    try:
        _, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    w.close()
    with contextlib.suppress(Exception):
        await w.wait_closed()
    return True


async def _store_status(port: int, timeout: float = 5.0) -> bool:
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, TimeoutError):
        return False
    try:
        greeting = await asyncio.wait_for(r.readline(), timeout)
        w.write(b"STATUS\r\n")
        await w.drain()
        answer = await asyncio.wait_for(r.readline(), timeout)
        return bool(greeting) and bool(answer) and not answer.upper().startswith((b"-", b"ERR", b"* BAD"))
    except (OSError, TimeoutError):
        return False
    finally:
        w.close()


def _tail(path, lines: int = 3) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return " | ".join(ln.strip() for ln in text.strip().splitlines()[-lines:] if ln.strip())


def _fmt(n: float) -> str:
    return str(int(n)) if float(n) == int(n) else str(n)


def console_writer(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
