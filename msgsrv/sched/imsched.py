"""imsched: the scheduler daemon. One asyncio loop runs every `local.schedule.<task>` entry.

    local.schedule.msprobe = "5,15,25,35,45,55 * * * * lib/msprobe"   (crontab, dom AND dow)
    local.schedule.purge   = "30 lib/mboxutil -l"                      (every 30 seconds)
    local.schedule.<task>.enable = no                                  (skip the task)

A relative command naming one of the suite's programs (`lib/msprobe`) runs that program with
this interpreter; another relative path is taken under the server root. Each run and its exit
status go to the default log. SIGHUP reloads the schedule; SIGTERM/SIGINT stop the loop (running
tasks are terminated). A task still running when its next time comes is not started again.

The loop never polls: it sleeps until the earliest next run, a reload, or a stop. A health
listener on `local.sched.port` speaks the suite's health line protocol (services/base.py
HealthSession), so msprobe probes the scheduler like any other server:

    S: * OK imsched ready
    C: PING      S: +OK PONG
    C: STATUS    S: +OK imsched pid=<pid> tasks=<n> running=<n>
    C: QUIT      S: +OK bye
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from msgsrv import logfmt
from msgsrv.config import catalogue
from msgsrv.config.types import to_boolean
from msgsrv.errors import OperationFailed
from msgsrv.paths import ServerRoot
from msgsrv.sched.cron import Schedule

SOURCE = "imsched"
PREFIX = "local.schedule."
STOP_GRACE = 1.0  # seconds a running task gets after SIGTERM before SIGKILL
IDLE_TIMEOUT = 30.0  # health connections
SHELL_WORDS = {">", ">>", "<", "|", "||", "&&", ";", "&", "2>", "2>&1"}
# Programs of the suite that a relative command may name (lib/msprobe, sbin/mboxutil, ...).
TASK_ROW = catalogue.lookup(PREFIX + "task")
SUITE_PROGRAMS = {"msprobe": "msprobe", "mboxutil": "mboxutil", "configutil": "configutil",
                  "start-msg": "start_msg", "stop-msg": "stop_msg"}


# -- pure parts -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    name: str
    schedule: Schedule


def load_tasks(overrides: dict[str, str]) -> tuple[list[Task], list[str]]:
    """(tasks to run, problems) from the config overrides plus the catalogue's msprobe default."""
    entries: dict[str, str] = {}
    default = catalogue.EXACT[PREFIX + "msprobe"].default
    if default:
        entries["msprobe"] = default
    for name, text in overrides.items():
        rest = name[len(PREFIX):] if name.startswith(PREFIX) else ""
        if rest and "." not in rest:
            entries[rest] = text
    tasks, problems = [], []
    for name in sorted(entries):
        enable = overrides.get(f"{PREFIX}{name}.enable", "yes")
        try:
            if not to_boolean(enable or "yes"):
                continue
        except ValueError as e:
            problems.append(f"{PREFIX}{name}.enable: {e}")
            continue
        text = entries[name]
        if not text.strip():
            continue
        row = catalogue.EXACT.get(PREFIX + name, TASK_ROW)  # local.schedule.msprobe = 600: 600 lib/msprobe
        try:
            tasks.append(Task(name, catalogue.parse(row, text)))
        except ValueError as e:
            problems.append(f"{PREFIX}{name}: {e}")
    return tasks, problems


def resolve_command(command: tuple[str, ...], base: Path, python: str = sys.executable) -> list[str]:
    """The argv to run: suite programs by module, other relative paths under BASE, shell when
    the command has redirections or pipes."""
    first, rest = command[0], list(command[1:])
    prog = SUITE_PROGRAMS.get(os.path.basename(first))
    if prog is not None and not os.path.isabs(first):
        head = [python, "-m", f"msgsrv.cli.{prog}"]
    elif not os.path.isabs(first) and "/" in first:
        head = [str(base / first)]
    else:
        head = [first]
    if any(w in SHELL_WORDS for w in rest):
        return ["/bin/sh", "-c", " ".join([shlex.join(head), *rest])]
    return head + rest


def next_time(schedule: Schedule, now: datetime, previous: datetime | None = None) -> datetime:
    """The next run after NOW. A seconds schedule keeps its beat (previous + every) unless it fell
    behind; a crontab schedule asks croniter."""
    if schedule.every is not None and previous is not None:
        nxt = previous + timedelta(seconds=schedule.every)
        return nxt if nxt > now else now + timedelta(seconds=schedule.every)
    return schedule.next_run(now)


# -- the daemon -------------------------------------------------------------------------------------
class Scheduler:
    def __init__(self, root: ServerRoot):
        self.root = root
        self.tasks: dict[str, Task] = {}
        self.due: dict[str, datetime] = {}
        self.running: dict[str, asyncio.subprocess.Process] = {}
        self.runs: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._reload = True
        self._stopping = False
        self._children: set[asyncio.Task] = set()

    def log(self, severity: str, text: str) -> None:
        try:
            logfmt.default_log(self.root, SOURCE, severity, text)
        except OSError:
            sys.stderr.write(f"{SOURCE}: {severity}: {text}\n")

    # signal handlers: only flip a flag and wake the loop
    def request_reload(self) -> None:
        self._reload = True
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def load(self, now: datetime) -> None:
        from msgsrv.config.store import ConfigStore, StoreError

        try:
            overrides = ConfigStore(self.root.config_file).overrides()
        except StoreError as e:
            self.log("Error", f"unable to reload the schedule: {e}; keeping the old one")
            return
        tasks, problems = load_tasks(overrides)
        for p in problems:
            self.log("Error", f"ignoring schedule {p}")
        new = {t.name: t for t in tasks}
        for name, t in new.items():
            old = self.tasks.get(name)
            if old is None or old.schedule.text != t.schedule.text or name not in self.due:
                self.due[name] = next_time(t.schedule, now)
        for name in list(self.due):
            if name not in new:
                del self.due[name]
        self.tasks = new
        listing = ", ".join(f"{t.name} ({t.schedule.text})" for t in tasks) or "none"
        self.log("Info", f"schedule loaded: {listing}")

    async def run(self) -> None:
        """Sleep until the next due time, a reload or a stop; start what is due."""
        while not self._stopping:
            now = datetime.now().astimezone()
            if self._reload:
                self._reload = False
                self.load(now)
            for name in sorted(self.due):
                if self.due[name] <= now:
                    self._fire(self.tasks[name], now)
            deadline = min(self.due.values(), default=None)
            self._wake.clear()
            if self._stopping or self._reload:
                continue
            timeout = None if deadline is None else max(0.0, (deadline - datetime.now().astimezone()).total_seconds())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
        await self._terminate_running()

    def _fire(self, task: Task, now: datetime) -> None:
        self.due[task.name] = next_time(task.schedule, now, previous=self.due[task.name])
        if task.name in self.running:
            self.log("Warning", f"task {task.name} is still running; not started again")
            return
        t = asyncio.get_running_loop().create_task(self._run_task(task))
        self._children.add(t)
        t.add_done_callback(self._children.discard)

    async def _run_task(self, task: Task) -> None:
        argv = resolve_command(task.schedule.command, self.root.base)
        env = dict(os.environ, MSGSRV_BASE=str(self.root.base))
        env.pop("MSGSRV_SUPERVISED", None)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=env, cwd=str(self.root.base), start_new_session=True)
        except OSError as e:
            self.log("Error", f"unable to run task {task.name} ({shlex.join(task.schedule.command)}): "
                              f"{(e.strerror or str(e)).lower()}")
            return
        self.running[task.name] = proc
        self.log("Info", f"task {task.name} started: {shlex.join(task.schedule.command)} (pid {proc.pid})")
        try:
            out, _ = await proc.communicate()
        finally:
            del self.running[task.name]
        self.runs[task.name] = self.runs.get(task.name, 0) + 1
        rc = proc.returncode
        text = f"task {task.name} (pid {proc.pid}) exited with status {rc}"
        if rc != 0:
            tail = [ln for ln in out.decode("utf-8", "replace").splitlines() if ln.strip()][-3:]
            if tail:
                text += ": " + " | ".join(tail)
        self.log("Info" if rc == 0 else "Warning", text)

    async def _terminate_running(self) -> None:
        procs = list(self.running.values())
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self._children:
            _, pending = await asyncio.wait(self._children, timeout=STOP_GRACE)
            for p in procs:
                if p.returncode is None:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            if pending:
                await asyncio.wait(pending, timeout=STOP_GRACE)


# -- the health listener ------------------------------------------------------------------------------
GREETING = b"* OK imsched ready\r\n"


async def _health(switch, sched: Scheduler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    from msgsrv.services.fault import CRASH_STATUS

    try:
        fault = switch.current()  # data/run/fault.sched: hang | slow N | crash
        if fault is not None and fault.mode == "crash":
            os._exit(CRASH_STATUS)
        if fault is not None and fault.mode == "hang":
            await reader.read()  # keep the connection, never answer
            return
        if fault is not None and fault.mode == "slow":
            await asyncio.sleep(fault.seconds)
        writer.write(GREETING)
        while True:
            raw = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
            if not raw:
                break
            verb = raw.decode("utf-8", "replace").strip().upper()
            if verb == "PING":
                writer.write(b"+OK PONG\r\n")
            elif verb == "STATUS":
                writer.write(f"+OK imsched pid={os.getpid()} tasks={len(sched.tasks)} "
                             f"running={len(sched.running)}\r\n".encode())
            elif verb == "QUIT":
                writer.write(b"+OK bye\r\n")
                break
            else:
                writer.write(b"-ERR unknown command\r\n")
            await writer.drain()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def start_health(root: ServerRoot, sched: Scheduler, port: int) -> asyncio.Server:
    from msgsrv.services.fault import FaultSwitch

    switch = FaultSwitch(root.fault_file("sched"))
    try:
        return await asyncio.start_server(lambda r, w: _health(switch, sched, r, w), "127.0.0.1", port,
                                          reuse_address=True)
    except OSError as e:
        raise OperationFailed(f"unable to listen on 127.0.0.1:{port}: {(e.strerror or str(e)).lower()}") from None


async def serve(root: ServerRoot, port: int | None = None) -> int:
    """The sched component: bind the health port, register with the watcher, run until SIGTERM."""
    from msgsrv.config.store import ConfigStore
    from msgsrv.control.client import Registration

    root.ensure()
    if port is None:
        port = ConfigStore(root.config_file).get_int("local.sched.port", 10998)
    sched = Scheduler(root)
    loop = asyncio.get_running_loop()
    # handlers first: a SIGTERM that arrives as soon as the port accepts is a clean stop
    loop.add_signal_handler(signal.SIGHUP, sched.request_reload)
    loop.add_signal_handler(signal.SIGTERM, sched.stop)
    loop.add_signal_handler(signal.SIGINT, sched.stop)
    registration = None
    try:
        server = await start_health(root, sched, port)  # bind first: a registered server answers probes
        registration = await asyncio.to_thread(Registration.open, "sched", root)
        sched.log("Info", f"imsched process {os.getpid()} started; health port 127.0.0.1:{port}")
        try:
            await sched.run()
        finally:
            server.close()
            sched.log("Info", f"imsched process {os.getpid()} exiting")
    finally:
        for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(s)
        if registration is not None:
            await asyncio.to_thread(registration.bye)
    return 0
