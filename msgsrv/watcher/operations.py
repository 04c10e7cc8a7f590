"""Operations: start, stop and restart of components and units, run one at a time.

The supervisor decides (supervisor.py, policy.py); operations carry its decisions out in order, with
the seed's lines (messages.py) and a named deadline on every wait: `ready_by` for a start,
`dead_by` for a stop. An operation records facts (a process was spawned, it passed its readiness
check, it was stopped) through the supervisor's door; a process that dies while an operation waits
on it is a failure the supervisor has already decided about, and the operation only reports it.

OperationQueue runs one operation at a time. Requests that arrive meanwhile wait in the queue,
never refused for being busy (STYLE §4.5). A shutdown preempts: the operation under way is
cancelled at its next wait, queued ones are answered "the watcher is shutting down (asked by
...)", the shutdown runs next, and the queue takes nothing more (a start is refused, a stop is
answered with the shutdown). A stop of everything interrupts a start the same way but leaves the
watcher up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from msgsrv import messages as M
from msgsrv import tls
from msgsrv.components import BY_NAME, PORT_SWITCHES, START_ORDER, STOP_ORDER
from msgsrv.control import listeners
from msgsrv.errors import MsgsrvError, OperationFailed
from msgsrv.watcher import children as ch
from msgsrv.watcher.states import State

if TYPE_CHECKING:
    from msgsrv.watcher.facts import Restart
    from msgsrv.watcher.supervisor import Supervisor

DOT_EVERY = 0.05  # one progress dot per 50 ms of waiting
MIN_DOTS = 3
KILL_WAIT = 5.0  # seconds to wait for an exit after SIGKILL
RESOURCE_RETRY_DELAY = 0.25  # seconds before retrying a start that failed for want of resources
STARTED_GRACE = 0.02  # local.<component>.ready = started: seconds a spawned command must live to be RUNNING
BUSY_SLICE = 0.02  # seconds of spawning (many workers) before the loop runs again (keepalives, exits)


class StartFailed(OperationFailed):
    pass


class ShuttingDown(OperationFailed):
    pass


class Interrupted(OperationFailed):
    """A start cancelled, or dropped from the queue, by a stop of everything asked for after it."""


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

    def end(self) -> None:
        """Complete the line an operation had begun when it was cancelled (a shutdown preempted
        it): `Starting store server ... interrupted`, in the log and to the client, not lost."""
        if self._partial:
            self.line(M.INTERRUPTED)


class InOrder:
    """The lines of components started together, shown in start order: the first one's as they
    come, each later one's (held until then) once every one before it is done. The watcher log
    gets them in the same order, as from a start of one component after the other."""

    def __init__(self, out: Out, n: int):
        self.out = out
        self.said: list[list[tuple[str, str]]] = [[] for _ in range(n)]
        self.done = [False] * n
        self.head = 0  # the part being shown
        self.shown = 0  # how much of it

    def part(self, i: int) -> Out:
        return _Part(self, i)

    def pump(self) -> None:
        while self.head < len(self.said):
            said = self.said[self.head]
            while self.shown < len(said):
                kind, s = said[self.shown]
                self.shown += 1
                (self.out.text if kind == "T" else self.out.line)(s)
            if not self.done[self.head]:
                return
            self.head, self.shown = self.head + 1, 0


class _Part(Out):
    """One component's Out within an InOrder."""

    def __init__(self, shown: InOrder, i: int):
        super().__init__(lambda _line: None)
        self._shown, self._i = shown, i

    def text(self, s: str) -> None:
        self._shown.said[self._i].append(("T", s))
        self._shown.pump()

    def line(self, s: str = "") -> None:
        self._shown.said[self._i].append(("L", s))
        self._shown.pump()

    def finish(self) -> None:
        said = self._shown.said[self._i]
        if said and said[-1][0] == "T":  # a start cancelled mid-line (a stop or shutdown preempted it)
            said.append(("L", M.INTERRUPTED))
        self._shown.done[self._i] = True
        self._shown.pump()


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


# -- the queue ---------------------------------------------------------------------------------------
class OperationQueue:
    def __init__(self, on_crash: Callable[[str, BaseException], None] | None = None) -> None:
        # ON_CRASH(label, exception): an operation ended with an exception that is not one of the
        # suite's own (a bug): its requester, if any, gets it too, but a restart of the watcher's
        # own has none, and the failure it was healing must not vanish with it
        self.on_crash = on_crash
        self._queue: deque[tuple[Callable[[], Awaitable], asyncio.Future, str]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.current: asyncio.Task | None = None
        self.current_label = ""
        self._why: str | None = None  # why the operation under way was cancelled
        self._shutdown = False  # ... by a shutdown
        self._closed: tuple[asyncio.Future, str] | None = None  # the shutdown queued, and why

    def submit(self, make: Callable[[], Awaitable], label: str = "", first: bool = False) -> asyncio.Future:
        """Queue MAKE (FIRST: ahead of every queued operation). Once a shutdown is queued nothing
        else runs: a stop is answered with the shutdown (it stops everything), anything else at
        once with why (never started by a watcher on its way out, its servers left unwatched)."""
        if self._closed is not None:
            shutdown, why = self._closed
            if label == "stop":
                return shutdown
            refused = asyncio.get_running_loop().create_future()
            refused.set_exception(ShuttingDown(why))
            refused.add_done_callback(lambda f: f.exception())
            return refused
        fut = asyncio.get_running_loop().create_future()
        # the watcher's own restarts have no requester: their outcome is in the log, not in a future
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        (self._queue.appendleft if first else self._queue.append)((make, fut, label))
        self._idle.clear()
        self._wake.set()
        return fut

    def _crashed(self, label: str, e: BaseException) -> None:
        if self.on_crash is None or isinstance(e, MsgsrvError):
            return
        try:
            self.on_crash(label, e)
        except Exception:  # noqa: BLE001 - the queue outlives anything its report may do
            pass

    def preempt(self, make: Callable[[], Awaitable], label: str = "shutdown",
                why: str = "the watcher is shutting down") -> asyncio.Future:
        """Run MAKE (the shutdown) next: cancel the operation under way, answer every queued one
        WHY, and take nothing more (submit)."""
        for _, fut, _ in self._queue:
            if not fut.done():
                fut.set_exception(ShuttingDown(why))
        self._queue.clear()
        if self.current is not None and not self.current.done() and self.current_label != label:
            self._why, self._shutdown = why, True
            self.current.cancel()
        fut = self.submit(make, label)
        self._closed = (fut, why)
        return fut

    @property
    def shutdown(self) -> asyncio.Future | None:
        """The future of the shutdown queued (preempt), None before one is."""
        return self._closed[0] if self._closed else None

    def interrupt(self, labels: tuple[str, ...], cancel: tuple[str, ...], why: str) -> None:
        """Drop the queued operations whose label starts with one of LABELS and cancel the one under
        way if its label starts with one of CANCEL (at its next wait, its open line ending
        `interrupted`); each requester is answered WHY."""
        kept: deque = deque()
        for item in self._queue:
            if item[2].startswith(labels):
                if not item[1].done():
                    item[1].set_exception(Interrupted(why))
            else:
                kept.append(item)
        self._queue = kept
        if self.current is not None and not self.current.done() and self.current_label.startswith(cancel):
            self._why = why
            self.current.cancel()

    def pending(self) -> int:
        return len(self._queue) + (1 if self.current is not None else 0)

    async def idle(self) -> None:
        await self._idle.wait()

    async def run(self) -> None:
        while True:
            while not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            make, fut, label = self._queue.popleft()
            task = asyncio.get_running_loop().create_task(make())
            self.current, self.current_label = task, label
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                task.cancel()
                raise
            finally:
                self.current, self.current_label = None, ""
            why, shutdown, self._why, self._shutdown = self._why, self._shutdown, None, False
            if not task.cancelled() and task.exception() is not None:
                self._crashed(label, task.exception())
            if fut.done():
                continue
            if task.cancelled():
                fut.set_exception(ShuttingDown(why or "the watcher is shutting down") if shutdown or not why
                                  else Interrupted(why))
            elif task.exception() is not None:
                fut.set_exception(task.exception())
            else:
                fut.set_result(task.result())


# -- one component ----------------------------------------------------------------------------------------
async def start_component(sup: Supervisor, c: str, out: Out) -> tuple[bool, str | None]:
    """Start C (all its workers) and wait until it is ready. Returns (ok, reason it failed)."""
    comp = sup.comps[c]
    cfg = sup.cfg.current
    command = cfg.get_str(f"local.{c}.command", "")
    external = not sup.cfg.built_in(c)
    if comp.procs and comp.state is not State.FATAL:
        out.line(M.ALREADY_RUNNING.format(c=c))
        sup.want(c, True)
        return True, None
    if sup.cfg.broken and not external:
        # a built-in server reads config/msg.toml itself: it could not start now (not its failure)
        out.line(M.NOT_STARTED_CONFIG.format(c=c))
        if comp.state is State.STOPPED:
            sup.want(c, False)  # it stays as it was: stopped
        return False, f"{sup.cfg.path} does not parse"
    if comp.procs:  # FATAL: a hung process given up on is replaced
        await stop_component(sup, c, out, hung=True, final=False)
    await sup.leftovers_done(c)
    argv = ch.server_argv(c, command)
    param = BY_NAME[c].workers
    workers = max(1, cfg.get_int(param, 1)) if param else 1
    ready_by = time.monotonic() + cfg.get_float(f"local.{c}.starttimeout", 10.0)
    log_path = sup.root.component_log(f"{c}.out")
    with contextlib.suppress(OSError):  # a removed log directory must not fail every (re)start
        log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fork = not external and cfg.get_bool("local.watcher.prefork")  # issue 14: no interpreter start
    sup.want(c, True)
    sup.enter(c, State.STARTING)  # STOPPED/BACKOFF/EXITED/FATAL -> STARTING: start requested
    out.text(M.STARTING.format(c=c))
    spawned: list[ch.Child] = []
    reason: str | None = None
    failure: str | None = None  # a start failure nobody has decided about yet
    resource = False
    shared: list = []
    with Dots(out):
        try:
            shared = shared_listeners(sup, c, workers, external)
            if fork:
                tls.warm(sup.root, cfg)  # the forked server finds its TLS context made
            slice_end = time.monotonic() + BUSY_SLICE
            for w in range(workers):
                env = child_env(sup, c, w, shared)
                child = sup.procs.spawn(c, argv, env, log_path, w, fork=fork)
                spawned.append(child)  # recorded before anything else can fail
                sup.spawned(child)
                if child.output_lost:
                    sup.alert(f"{c} server {child.pid}: {child.output_lost}", "Warning")
                if time.monotonic() >= slice_end:
                    # 200 workers take a second or more on a busy machine: meanwhile the watcher
                    # answers (keepalives, so the caller does not call it hung) and sees exits
                    await asyncio.sleep(0)
                    slice_end = time.monotonic() + BUSY_SLICE
        except listeners.PortInUse as e:
            reason = failure = str(e)
        except OSError as e:
            resource = e.errno in ch.RESOURCE_ERRORS
            what = f"unable to run {argv[0]}" if e.filename and not resource else "unable to start"
            reason = failure = f"{what}: {(e.strerror or str(e)).lower()}"
        finally:
            for s in shared:
                s.close()  # the workers hold it now; the watcher must not keep the port open
        if reason is None:
            try:
                if external and cfg.get_str(f"local.{c}.ready", "port") == "started":
                    await _survived(sup, spawned, STARTED_GRACE)
                else:
                    await sup.wait_ready(c, spawned, external, ready_by)
            except StartFailed as e:
                reason = str(e)  # a worker exited: the supervisor decided about it already
            except TimeoutError:
                total = cfg.get_float(f"local.{c}.starttimeout", 10.0)
                reason = failure = f"not accepting within {_fmt(total)} s"
    if reason is None and comp.procs and all(not k.exited for k in spawned):
        sup.enter(c, State.RUNNING)  # STARTING -> RUNNING: every worker passed its readiness check
        sup.started(c)
        out.line(" " + " ".join(str(k.pid) for k in spawned))
        if c == "store" and not external:
            await _check_store(sup, out)
        return True, None
    # the start failed: end what is left of it (an expected exit: no new failure)
    out.line(" failed")
    await _end(sup, [k for k in spawned if not k.exited], KILL_WAIT, kill=True)
    reason = reason or "exited during start-up"
    tail = _tail(log_path)
    if failure is not None:
        sup.start_failed(c, failure, resource=resource)
    sup.settle(c)
    return False, f"{reason}{'; log: ' + tail if tail else ''}"


async def stop_component(sup: Supervisor, c: str, out: Out, force: bool = False, hung: bool = False,
                         final: bool = True) -> None:
    """Stop every process of C. FINAL: a requested stop (STOPPED); else part of a restart (BACKOFF)."""
    comp = sup.comps[c]
    kids = list(comp.procs)
    if not kids:
        out.line(M.NOT_RUNNING.format(c=c))
        await sup.leftovers_done(c)
        if final:
            sup.stopped(c)
        return
    sup.enter(c, State.STOPPING)  # -> STOPPING: stop requested (or part of a restart)
    cfg = sup.cfg.current
    grace = 0.0 if force else cfg.get_float(
        f"local.{c}.hungstoptimeout" if hung else f"local.{c}.stoptimeout", 0.5 if hung else 5.0)
    dead_by = time.monotonic() + grace
    for k in kids:
        k.stopping = True
        sup.procs.kill(k) if force else sup.procs.terminate(k)
    for k in kids:
        out.text(M.STOPPING.format(c=c, pid=k.pid))
        with Dots(out):
            await _wait_exit(sup, k, dead_by)
        out.line(M.DONE)
    await sup.leftovers_done(c)
    if final:
        sup.stopped(c)
    else:
        sup.settle(c, State.BACKOFF)


async def _wait_exit(sup: Supervisor, k: ch.Child, dead_by: float) -> None:
    """Wait for K's exit until DEAD_BY, then SIGKILL and wait KILL_WAIT more."""
    fut = sup.exit_future(k)
    if fut is None:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(fut), max(0.0, dead_by - time.monotonic()))
        return
    sup.procs.kill(k)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(fut), KILL_WAIT)


async def _end(sup: Supervisor, kids: list[ch.Child], grace: float, kill: bool = False) -> None:
    for k in kids:
        k.stopping = True
        sup.procs.kill(k) if kill else sup.procs.terminate(k)
    dead_by = time.monotonic() + grace
    for k in kids:
        await _wait_exit(sup, k, dead_by)


async def _survived(sup: Supervisor, spawned: list[ch.Child], grace: float) -> None:
    """`ready = started`: every process of the start lives GRACE seconds after its spawn. An exit
    meanwhile raises StartFailed (the supervisor has decided about it, as for any exit during start-up)."""
    exits = [sup.exit_future(k) for k in spawned]
    if any(f is None or f.done() for f in exits):
        raise StartFailed("exited during start-up")
    done, _ = await asyncio.wait(exits, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
    for f in done:
        raise StartFailed(f"exited with status {f.result()}")


async def _check_store(sup: Supervisor, out: Out) -> None:
    """`checking store server status ... ready`: the store answers a STATUS line."""
    out.text(M.CHECKING_STORE)
    with Dots(out):
        ok = await _store_status(sup.port_of("store") or 0)
    out.line(M.READY if ok else " not ready")


# -- the operations the queue runs ----------------------------------------------------------------------
async def op_start(sup: Supervisor, names: list[str], out: Out) -> list[str]:
    """Start NAMES (in start order): each once the ones it comes after (components.py) have been
    started, or have failed to (a failed dependency does not keep the others down, as a start one
    after the other never did); the ones that do not wait for each other together. Their lines are
    shown in start order (InOrder)."""
    sup.cfg.refresh()
    shown = InOrder(out, len(names))
    tasks: dict[str, asyncio.Task] = {}

    async def start(i: int, c: str) -> tuple[bool, str | None]:
        part = shown.part(i)
        try:
            first = [tasks[d] for d in BY_NAME[c].after if d in tasks]
            if first:
                await asyncio.wait(first)
            return await start_component(sup, c, part)
        finally:
            sup.start_begun(c)  # spawned, or ended without: nothing left for a next watcher to finish
            part.finish()

    loop = asyncio.get_running_loop()
    for i, c in enumerate(names):
        tasks[c] = loop.create_task(start(i, c))
    try:
        await asyncio.wait(tasks.values())
    except BaseException:  # cancelled (a shutdown preempts the start): every start with it
        for t in tasks.values():
            t.cancel()
        await asyncio.wait(tasks.values())
        raise
    failed = []
    for c, t in tasks.items():
        ok, reason = t.result()  # an unexpected error of one start is the operation's
        if not ok:
            failed.append(f"{c}: {reason}")
    if failed:
        raise StartFailed("; ".join(failed))
    return names


async def op_stop(sup: Supervisor, names: list[str], out: Out, force: bool = False) -> None:
    sup.cfg.refresh()
    try:
        for c in STOP_ORDER:
            if c in names:
                await stop_component(sup, c, out, force)
    except BaseException:
        out.end()
        raise


async def op_restart(sup: Supervisor, r: Restart, out: Out | None = None) -> None:
    """The seed's restart of one unit: stop the members in reverse order, start them in order."""
    out = out or Out(sup.log)
    sup.cfg.refresh()
    if not any(sup.comps[m].wanted for m in r.members):
        sup.restart_finished(r)  # everything it would restart was stopped by request meanwhile
        return
    if sup.cfg.broken and any(sup.cfg.built_in(m) for m in r.members):
        sup.defer(r)  # resumed when the file parses again (Supervisor.defer)
        return
    if r.delay:
        await asyncio.sleep(r.delay)  # ready_by: a resource shortage may pass
    r.begun = True
    members = [m for m in START_ORDER if m in r.members]
    sup.journal.add("restart-started", r.cause, r.unit, detail=" ".join(members), by=r.by)
    try:
        out.line(M.RECEIVED_RESTART.format(units=" ".join(members)))
        out.line(M.CONNECTING)
        for m in reversed(members):
            await stop_component(sup, m, out, hung=m in r.hung, final=False)
        for m in members:
            if not sup.comps[m].wanted:
                continue  # stopped by request meanwhile: it stays stopped
            sup.cfg.refresh()
            if sup.cfg.broken and sup.cfg.built_in(m):
                # the file broke while this restart was under way: it waits for the file like one
                # that had not begun (resumed from the top), never finished with members left down
                sup.defer(r)
                return
            r.started.add(m)  # from here on, a death of m is a new failure (issue 10)
            await start_component(sup, m, out)
    except BaseException:
        out.end()
        sup.restart_finished(r)
        raise
    sup.restart_finished(r)


async def op_shutdown(sup: Supervisor, code: int, out: Out | None = None, force: bool = False) -> None:
    out = out or Out(sup.log)
    sup.closing = True
    names = [c for c in STOP_ORDER if sup.comps[c].procs]
    await op_stop(sup, names, out, force)
    sup.exit_code = code
    sup.finished.set()


# -- what a spawned server gets: its environment and shared listening sockets -----------------------------
def shared_listeners(sup: Supervisor, c: str, workers: int, external: bool) -> list:
    """The watcher binds a multi-worker built-in server's ports once; every worker inherits them."""
    if external or workers < 2:
        return []
    cfg = sup.cfg.current
    host = cfg.get_str("service.listenaddr", "") or "127.0.0.1"
    socks = []
    try:
        for label, param in BY_NAME[c].ports:
            if label in PORT_SWITCHES and not cfg.get_bool(PORT_SWITCHES[label]):
                continue  # a listener switched off: no socket that would take clients nobody answers
            socks.append(listeners.bind_listener(host, cfg.get_int(param), inheritable=True))
    except OSError:
        for s in socks:
            s.close()
        raise
    return socks


def child_env(sup: Supervisor, c: str, worker: int, shared: list) -> dict[str, str]:
    env = dict(os.environ)
    env["MSGSRV_BASE"] = str(sup.root.base)
    env["MSGSRV_COMPONENT"] = c
    env["MSGSRV_WORKER"] = str(worker)
    env.pop(listeners.ENV, None)
    if shared:
        env[listeners.ENV] = listeners.encode({s.getsockname()[:2]: s.fileno() for s in shared})
    if sup.supervised and sup.watcher_port:
        env["MSGSRV_SUPERVISED"] = "1"
        env["MSGSRV_WATCHER_PORT"] = str(sup.watcher_port)
    else:
        env.pop("MSGSRV_SUPERVISED", None)
    return env


# -- helpers ------------------------------------------------------------------------------------------------
async def accepts(port: int) -> bool:
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
