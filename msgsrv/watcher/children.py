"""OS processes: spawn, pidfds, signal escalation, process groups or cgroups, reaping, adoption.

The only module of the watcher that calls posix_spawn or sends signals. It decides nothing: the
supervisor is told of every exit through the callback given to `watch()`.

- Spawn: `posix_spawn` in a new session (so the process group of a server is its own), output to
  data/log/<component>.out; a built-in server is forked from the watcher's own image instead
  (prefork.py, `local.watcher.prefork`), with the same session, output and cgroup. The child is
  recorded before anything else can fail: if its pidfd cannot be opened (descriptors exhausted),
  it is killed and reaped at once and the spawn fails, so no process is ever left unsupervised.
- Exit: the pidfd turns readable (loop.add_reader); `waitid(P_PIDFD)` reaps our own children, and
  adopted ones (a previous watcher's) are watched through the same path without a status.
- Stop: SIGTERM then SIGCONT to the whole group (a stopped process must see the SIGTERM, SPEC §4),
  SIGKILL at the deadline the operation chooses.
- Leftovers: once a leader has exited, whatever is left of its process group and session, or of
  its cgroup (cgroup.py), gets SIGTERM + SIGCONT, then SIGKILL after LEFTOVER_GRACE. Without a
  cgroup a process that called setsid() escapes this; with one nothing does.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from msgsrv import procinfo
from msgsrv.control import listeners
from msgsrv.errors import os_reason
from msgsrv.watcher import cgroup as cg
from msgsrv.watcher import oom, prefork

LEFTOVER_GRACE = 0.5  # seconds leftovers of a group/cgroup get between SIGTERM and SIGKILL
RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM, errno.ENOSPC})
SIGDEF = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2,
          signal.SIGPIPE)


@dataclass(eq=False)
class Child:
    component: str
    pid: int
    pidfd: int
    start_ticks: int | None  # its start in clock ticks after boot (procinfo.py): its identity in the records
    started: float  # time.time() at spawn / adoption
    worker: int = 0
    adopted: bool = False
    cgroup: str | None = None
    registered: bool = False
    unregistered: bool = False  # said BYE: its exit is orderly
    stopping: bool = False  # we asked it to stop: its exit is expected
    exited: bool = False
    exit_status: int | None = None  # >= 0 exit code, < 0 killed by that signal, None unknown (adopted)
    output_lost: str | None = None  # why its output goes to /dev/null (its .out could not be opened)
    create_time: float | None = None  # adopted from a record of 0.2.0 whose start could not be read since

    def record(self) -> dict:
        rec = {"pid": self.pid, "start_ticks": self.start_ticks, "worker": self.worker, "started": self.started,
               "cgroup": self.cgroup}
        if self.start_ticks is None and self.create_time is not None:
            rec["create_time"] = self.create_time
        return rec


def output_lost(log_path, e: OSError) -> str:
    """Why a server's output is discarded: its .out (LOG_PATH) could not be opened (E)."""
    return f"unable to open {log_path}: {os_reason(e)}; its output is discarded"


def server_argv(component: str, command: str) -> list[str]:
    """`local.<component>.command` if set, else the built-in server."""
    if command.strip():
        return shlex.split(command)
    return [sys.executable, "-m", "msgsrv.services", component]


@functools.lru_cache(maxsize=64)
def _which(name: str, path: str | None) -> str | None:
    return shutil.which(name, path=path)


def _program(name: str, path: str | None) -> str | None:
    """NAME as an executable path: PATH is searched once per name (a restart does not walk it again);
    a program that moved or went away is looked for afresh."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    found = _which(name, path)
    if found and os.access(found, os.X_OK):
        return found
    _which.cache_clear()
    return shutil.which(name, path=path)


def describe(status: int | None) -> str:
    """An exit status in words: 'exit status 3', 'killed by signal 9 (SIGKILL)', 'status unknown'."""
    if status is None:
        return "status unknown"
    if status >= 0:
        return f"exit status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = "?"
    return f"killed by signal {-status} ({name})"


def _group_members(leader: int) -> list[int]:
    """Processes whose process group or session is LEADER's (the leader itself excluded)."""
    out = []
    me = os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        pid = int(name)
        if pid in (leader, me):
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 3 and (int(fields[2]) == leader or int(fields[3]) == leader) and fields[0] != b"Z":
            out.append(pid)
    return out


def _signal(fd: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        signal.pidfd_send_signal(fd, sig)


class Processes:
    """Spawns, watches and stops the processes of one server root."""

    def __init__(self, cgroups: cg.Cgroups | None = None):
        self.cgroups = cgroups

    # -- spawning ---------------------------------------------------------------------------
    def spawn(self, component: str, argv: list[str], env: dict[str, str], log_path: Path, worker: int = 0,
              fork: bool = False) -> Child:
        """Start ARGV in a new session; FORK: the built-in server COMPONENT forked from this process
        instead, unless a fork is not safe at this moment (forkguard.py: ARGV is exec'd then).
        Raises OSError (the program cannot run, resources exhausted)."""
        lost = None
        pid = None
        group = self.cgroups.prepare(component, worker) if self.cgroups else None
        if fork:
            keep = set(listeners.inherited(env).values())  # the shared listeners, nothing else
            pid = prefork.fork_server(component, env, log_path, group, keep)  # None: exec'd instead
        if pid is None:
            program = _program(argv[0], env.get("PATH"))
            if not program:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
            real = cg.join_argv(group, [program, *argv[1:]]) if group else [program, *argv[1:]]
            # opened here, not by a spawn action: a .out that cannot be opened costs the output,
            # never the server (and the reason is said, not a bare "unable to start")
            try:
                out = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as e:
                out = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
                lost = output_lost(log_path, e)
            try:
                actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                           (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, out, 2)]
                pid = os.posix_spawn(real[0], real, env, file_actions=actions, setsid=True, setsigdef=SIGDEF)
            finally:
                os.close(out)
        oom.give_back(pid)  # the watcher's OOM protection is its own (oom.py), before anyone sees the pid
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            # Not watchable: never leave it running unsupervised. Our unreaped child: the pid is ours.
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            raise
        return Child(component, pid, fd, procinfo.start_ticks(pid), time.time(), worker=worker,
                     cgroup=str(group) if group else None, output_lost=lost)

    # -- watching -----------------------------------------------------------------------------
    def watch(self, child: Child, on_exit: Callable[[Child, int | None], None]) -> None:
        loop = asyncio.get_running_loop()

        def readable() -> None:
            loop.remove_reader(child.pidfd)
            status = self.reap(child)
            with contextlib.suppress(OSError):
                os.close(child.pidfd)
            child.pidfd = -1
            on_exit(child, status)

        loop.add_reader(child.pidfd, readable)

    @staticmethod
    def reap(child: Child) -> int | None:
        try:
            res = os.waitid(os.P_PIDFD, child.pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            return None  # not our child (adopted): no status
        except OSError:
            return None
        if res is None:
            return None
        return res.si_status if res.si_code == os.CLD_EXITED else -res.si_status

    @staticmethod
    def fill_start_ticks(child: Child) -> None:
        if child.start_ticks is None and not child.exited:
            # None when /proc could not be read at the spawn (descriptors exhausted, ...): filled
            # in now, a record is not a precondition
            child.start_ticks = procinfo.start_ticks(child.pid)

    # -- signals ----------------------------------------------------------------------------------
    def terminate(self, child: Child) -> None:
        """SIGTERM, then SIGCONT, to the child's process group (SPEC §4 "Stopping")."""
        self._group(child, signal.SIGTERM)
        self._group(child, signal.SIGCONT)

    def kill(self, child: Child) -> None:
        self._group(child, signal.SIGKILL)
        if child.cgroup:
            cg.kill(child.cgroup)

    @staticmethod
    def _group(child: Child, sig: int) -> None:
        if child.exited:
            return
        try:
            os.killpg(child.pid, sig)  # every server leads its own session and process group
        except ProcessLookupError:
            if child.pidfd >= 0:
                _signal(child.pidfd, sig)
        except PermissionError:
            pass

    async def clear_leftovers(self, child: Child, grace: float = LEFTOVER_GRACE) -> int:
        """After CHILD (a leader) exited: end the rest of its group, session and cgroup.
        SIGTERM + SIGCONT, SIGKILL after GRACE. Returns how many were found."""
        # a cgroup holds every descendant (setsid() escapers too); without one, scan for the group
        pids = set(cg.procs(child.cgroup)) if child.cgroup else set(_group_members(child.pid))
        pids.discard(os.getpid())
        fds: dict[int, int] = {}
        for pid in pids:
            with contextlib.suppress(OSError):
                fds[pid] = os.pidfd_open(pid)
        try:
            for fd in fds.values():
                _signal(fd, signal.SIGTERM)
                _signal(fd, signal.SIGCONT)
            if fds:
                await _wait_readable(list(fds.values()), grace)
                for fd in fds.values():
                    _signal(fd, signal.SIGKILL)
            if child.cgroup:
                cg.kill(child.cgroup)
                await _cgroup_empty(child.cgroup, 1.0)
                cg.remove(child.cgroup)
        finally:
            for fd in fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
        return len(fds)

    # -- adoption (SPEC §3: a new watcher supervises what the old one left running) -----------------
    def found_in_cgroups(self, component: str, daemon: str, base: Path) -> list[Child]:
        """The built-in server processes of COMPONENT (named DAEMON) running in its cgroups though
        no pid record names them: started by a watcher that could not write its pid file (a full
        disk) or died before it did. The kernel's record of what the watcher started; without it
        the next watcher counted a failure that had not happened and the cgroup's clearing at its
        restart killed a server that served. Only a process that is this root's built-in server
        (its comm, and this server root) is taken: anything else in a cgroup is a leftover."""
        if self.cgroups is None:
            return []
        out = []
        for worker, group in self.cgroups.of_component(component):
            for pid in cg.procs(group):
                try:
                    with open(f"/proc/{pid}/comm") as f:
                        if f.read().strip() != daemon:
                            continue
                except OSError:
                    continue
                child = self.adopt(component, {"pid": pid, "start_ticks": None, "worker": worker,
                                               "cgroup": str(group)}, base)
                if child is not None:
                    out.append(child)
                    break  # one server per worker's cgroup (its own children are its business)
        return out

    def adopt(self, component: str, rec: dict, base: Path) -> Child | None:
        """The process of pid record REC, if it is still the one recorded (not a recycled pid)."""
        pid, ticks, ctime = rec["pid"], rec.get("start_ticks"), rec.get("create_time")
        if not _same(pid, ticks, ctime, base):
            return None
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return None
        if not _same(pid, ticks, ctime, base):  # recycled between the check and pidfd_open
            os.close(fd)
            return None
        group = rec.get("cgroup") or cg.of_pid(pid)
        return Child(component, pid, fd, ticks if ticks is not None else procinfo.start_ticks(pid),
                     float(rec.get("started") or time.time()), worker=int(rec.get("worker") or 0), adopted=True,
                     cgroup=group if group and os.path.isdir(group) else None, create_time=ctime)


def _same(pid: int, ticks: int | None, ctime: float | None, base: Path) -> bool:
    if ticks is not None or ctime is not None:
        return procinfo.same_process(pid, ticks, ctime)
    # no start time recorded (it could not be read at spawn): it must belong to our root: by its
    # environment (an exec'd server), or by its working directory, the watcher's (a forked one,
    # whose /proc environ is the watcher's)
    try:
        p = psutil.Process(pid)
        return procinfo.same_process(pid) and (p.environ().get("MSGSRV_BASE") == str(base) or p.cwd() == str(base))
    except psutil.Error:
        return False


async def _wait_readable(fds: list[int], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    futs = []
    for fd in fds:
        fut = loop.create_future()

        def done(fd=fd, fut=fut) -> None:
            loop.remove_reader(fd)
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, done)
        futs.append((fd, fut))
    try:
        await asyncio.wait([f for _, f in futs], timeout=timeout)
    finally:
        for fd, fut in futs:
            if not fut.done():
                loop.remove_reader(fd)


async def _cgroup_empty(group: str, timeout: float) -> None:
    dead_by = time.monotonic() + timeout
    while cg.procs(group) and time.monotonic() < dead_by:
        await asyncio.sleep(0.01)
