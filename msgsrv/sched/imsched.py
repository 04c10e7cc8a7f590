"""imsched: the scheduler daemon. One asyncio loop runs every `local.schedule.<task>` entry.

    local.schedule.msprobe = "5,15,25,35,45,55 * * * * lib/msprobe"   (crontab, dom AND dow)
    local.schedule.purge   = "30 lib/mboxutil -l"                      (every 30 seconds)
    local.schedule.<task>.enable = no                                  (skip the task)

A relative command naming one of the suite's programs (`lib/msprobe`) runs that program with
this interpreter; another relative path is taken under the server root. Each run and its exit
status go to the default log. SIGTERM/SIGINT stop the loop (running tasks are terminated). A task
still running when its next time comes is not started again, and that is logged.

**msprobe in-process** (issue 14). A task whose command is the suite's msprobe doing a plain pass
(`lib/msprobe [-q] [--json] [SERVICE...]`) is not spawned: the loop awaits probe.runner.run_pass,
the very code `msprobe` runs, so the response-time lines, the history, the alarms and the
RESTART requests are the same; only the interpreter start (≈ 100 ms of CPU) is saved. Any other
command, including msprobe with other options or named by an absolute path, is spawned.

**Reloading.** SIGHUP (`refresh sched`) reloads the schedule at once; besides, the loop wakes at
least every CONFIG_CHECK seconds and reloads when config/msg.toml changed (one stat of the file
and of the link to it). Otherwise it sleeps until the earliest next run, a reload or a stop. The
health listener is in sched/health.py.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from msgsrv import logfmt
from msgsrv.config import catalogue
from msgsrv.config.types import to_boolean
from msgsrv.paths import ServerRoot
from msgsrv.sched.cron import Schedule
from msgsrv.sched.health import start_health

SOURCE = "imsched"
PREFIX = "local.schedule."
STOP_GRACE = 1.0  # seconds a running task gets after SIGTERM before SIGKILL
CONFIG_CHECK = 1.0  # seconds between two looks at config/msg.toml
CLOCK_STEP = 5.0  # seconds the wall clock may gain or lose on the monotonic one before it is a step
WATCHER_GRACE = 1.0  # seconds between losing the watcher's connection and looking at the watcher
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


# msprobe's options that leave its pass unchanged (they only shape its own output; cli/msprobe.py)
PROBE_OUTPUT_OPTIONS = ("-q", "--quiet", "--json")


def in_process_pass(command: tuple[str, ...]) -> list[str] | None:
    """The services (empty: all) when COMMAND is the suite's msprobe doing a plain probe pass,
    run in-process; None when the command must be spawned."""
    from msgsrv.components import PROBE_TARGETS

    first, args = command[0], command[1:]
    if os.path.basename(first) != "msprobe" or os.path.isabs(first):
        return None
    services = []
    for a in args:
        if a in PROBE_OUTPUT_OPTIONS:
            continue
        if a not in PROBE_TARGETS:
            return None  # --history, --test-alarm, shell words, a typo: msprobe itself decides
        services.append(a)
    return list(dict.fromkeys(services))


def config_identity(path: Path) -> tuple:
    """What changes when config/msg.toml changes: the link and the file it names (inode, size,
    mtime). A write by configutil always renames a new file in."""
    out = []
    for st in (os.lstat, os.stat):
        try:
            r = st(path)
            out.append((r.st_dev, r.st_ino, r.st_size, r.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


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
        self.running: dict[str, asyncio.subprocess.Process | asyncio.Task] = {}
        self.runs: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._reload = True
        self._stopping = False
        self._children: set[asyncio.Task] = set()
        self._config_id: tuple | None = None
        self._clock: tuple[datetime, float] | None = None  # wall and monotonic time at the last look
        self.registration = None  # with the watcher (control/registration.py), once serve() made it
        self._looking: asyncio.Task | None = None  # a look at the watcher after its connection closed

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

    # -- the watcher --------------------------------------------------------------------------------
    def register(self, again: bool = False) -> None:
        from msgsrv.control.registration import Registration

        self.registration = Registration.start("sched", self.root, on_lost=self.watcher_lost, again=again)

    def watcher_lost(self) -> None:
        """The watcher closed our registration while we run: it died (a clean stop stops us
        first). Rather than wait for the next msprobe pass (up to 10 minutes of servers nobody
        watches), look at the watcher now, as msprobe does, and launch it again (probe/watchdog.py:
        not in HA mode, not under systemd, only with local.autorestart yes)."""
        if not self._stopping and (self._looking is None or self._looking.done()):
            self._looking = asyncio.get_running_loop().create_task(self._look_at_the_watcher())

    async def unregister(self) -> None:
        """At our exit: no more looks at the watcher, and BYE (a stop the watcher asked for)."""
        if self._looking is not None:
            self._looking.cancel()
        if self.registration is not None:
            await self.registration.bye()

    async def _look_at_the_watcher(self) -> None:
        from msgsrv.config.store import ConfigStore, StoreError
        from msgsrv.probe import watchdog

        await asyncio.sleep(WATCHER_GRACE)
        if self._stopping:
            return
        try:
            store = ConfigStore(self.root.config_file)
            if not watchdog.wanted(store, named=False):
                return
            timeout = watchdog.answer_timeout(store)
        except StoreError as e:
            self.log("Error", f"the watcher's connection closed; unable to read the configuration: {e}")
            return
        self.log("Error", "the watcher's connection closed; looking at the watcher")
        w = await asyncio.to_thread(watchdog.check, self.root, store, timeout)
        for severity, text in w.lines():
            self.log(severity, text)
        if not self._stopping and (w.healthy or w.relaunched is not None):
            self.register(again=True)  # so that its death, too, is seen at once

    def load(self, now: datetime) -> None:
        from msgsrv.config.store import ConfigStore, StoreError

        self._config_id = config_identity(self.root.config_file)  # before reading: a later change is seen
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
        """Sleep until the next due time, a reload, a stop or the next look at the config file;
        start what is due."""
        while not self._stopping:
            now = datetime.now().astimezone()
            if not self._reload and config_identity(self.root.config_file) != self._config_id:
                self._reload = True
                self.log("Info", "configuration changed; reloading the schedule")
            if self._reload:
                self._reload = False
                self.load(now)
            self._notice_a_clock_step(now)
            for name in sorted(self.due):
                if self.due[name] <= now:
                    self._fire(self.tasks[name], now)
            deadline = min(self.due.values(), default=None)
            self._wake.clear()
            if self._stopping or self._reload:
                continue
            timeout = CONFIG_CHECK
            if deadline is not None:
                timeout = min(timeout, max(0.0, (deadline - datetime.now().astimezone()).total_seconds()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
        await self._terminate_running()

    def _notice_a_clock_step(self, now: datetime) -> None:
        """The wall clock stepped (NTP after boot, a VM resumed, `date -s`) when it moved more than
        CLOCK_STEP seconds apart from the monotonic clock since the last look: every next time is
        computed again from NOW. Back, the old ones would lie up to the step ahead (msprobe
        silent for an hour); forward, they would all be due at once."""
        mono = time.monotonic()
        if self._clock is not None:
            wall0, mono0 = self._clock
            step = (now - wall0).total_seconds() - (mono - mono0)
            if abs(step) > CLOCK_STEP:
                self.log("Warning", f"the clock stepped {'back' if step < 0 else 'forward'} by {abs(step):.0f} s; "
                                    "next run times computed again from now")
                for name, task in self.tasks.items():
                    self.due[name] = next_time(task.schedule, now)
        self._clock = (now, mono)

    def _fire(self, task: Task, now: datetime) -> None:
        self.due[task.name] = next_time(task.schedule, now, previous=self.due[task.name])
        if task.name in self.running:
            self.log("Warning", f"task {task.name} is still running; not started again")
            return
        services = in_process_pass(task.schedule.command)
        work = self._run_task(task) if services is None else self._run_pass(task, services)
        t = asyncio.get_running_loop().create_task(work)
        self._children.add(t)
        t.add_done_callback(self._children.discard)

    async def _run_pass(self, task: Task, services: list[str]) -> None:
        """One msprobe pass in this process: what `msprobe SERVICES` does, without its start-up."""
        from msgsrv.probe.runner import run_pass

        command = shlex.join(task.schedule.command)
        self.running[task.name] = asyncio.current_task()
        self.log("Info", f"task {task.name} started: {command} (in-process)")
        try:
            report = await run_pass(self.root, services or None)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the pass's own failure must not take the scheduler down
            self.log("Warning", f"task {task.name} (in-process) failed: {type(e).__name__}: {e}")
            return
        finally:
            del self.running[task.name]
        self.runs[task.name] = self.runs.get(task.name, 0) + 1
        rc = 0 if report.healthy else 1
        text = f"task {task.name} (in-process) exited with status {rc}"
        quiet = any(a in ("-q", "--quiet") for a in task.schedule.command[1:])
        if rc != 0 and not quiet and report.errors:  # what msprobe would have printed on stderr
            text += ": " + " | ".join(f"msprobe: {e}" for e in report.errors[-3:])
        self.log("Info" if rc == 0 else "Warning", text)

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
        procs = [p for p in self.running.values() if not isinstance(p, asyncio.Task)]
        for t in self.running.values():
            if isinstance(t, asyncio.Task):
                t.cancel()  # an in-process pass: its probes stop at once
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


async def serve(root: ServerRoot, port: int | None = None) -> int:
    """The sched component: bind the health port, register with the watcher, run until SIGTERM."""
    from msgsrv.config.store import ConfigStore

    root.ensure()
    if port is None:
        port = ConfigStore(root.config_file).get_int("local.sched.port", 10998)
    sched = Scheduler(root)
    loop = asyncio.get_running_loop()
    # handlers first: a SIGTERM that arrives as soon as the port accepts is a clean stop
    loop.add_signal_handler(signal.SIGHUP, sched.request_reload)
    loop.add_signal_handler(signal.SIGTERM, sched.stop)
    loop.add_signal_handler(signal.SIGINT, sched.stop)
    try:
        server = await start_health(root, sched, port)  # bind first: a registered server answers probes
        sched.register()
        # the REGISTER on its way before the schedule's first load, which imports croniter (~15 ms
        # that the loop cannot run): imsched is the last of a suite's start, which waits for it
        await sched.registration.sent.wait()
        sched.log("Info", f"imsched process {os.getpid()} started; health port 127.0.0.1:{port}")
        try:
            await sched.run()
        finally:
            server.close()
            sched.log("Info", f"imsched process {os.getpid()} exiting")
    finally:
        for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(s)
        await sched.unregister()
    return 0
