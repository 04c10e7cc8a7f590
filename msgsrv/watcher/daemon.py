"""The watcher daemon's entry: limits, lock, control listener, run record, adoption, signals.

"Is the watcher up?" means "is data/run/watcher.lock locked?" (s6's rule, STYLE §4.9). Where it
listens is data/run/watcher.json (statefile.py): written once it listens, removed when it exits
cleanly; one left behind means the previous watcher died, and this one logs
`watcher process N (previous) ended unexpectedly; adopting ...` and restores the saved budget.

The default port 49994 lies in Linux's ephemeral range (32768-60999): an outgoing connection can
hold it for a while. A busy port is retried for LISTEN_RETRY seconds, saying who holds it; the
lasting fix is net.ipv4.ip_local_reserved_ports (`watcher reserve-port`, watcher(8)).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import resource
import secrets
import signal
import time

from msgsrv import messages as M
from msgsrv.atomicfile import write_atomic
from msgsrv.control import listeners, notify
from msgsrv.errors import OperationFailed, file_problem
from msgsrv.paths import ServerRoot
from msgsrv.watcher import cgroup, oom, prefork, statefile
from msgsrv.watcher.children import Processes
from msgsrv.watcher.server import ControlServer
from msgsrv.watcher.supervisor import Supervisor, console_writer

LISTEN_RETRY = 5.0  # seconds a busy control port is retried
LISTEN_EVERY = 0.2
KEEP_EVERY = 2.0  # seconds between two looks at the run files (RunFiles): three stats
KEEP_FULL = 15  # every so many looks, the pid files and the state too


def acquire_lock(root: ServerRoot) -> int:
    fd = os.open(root.watcher_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = watcher_pid(root)
        raise OperationFailed(f"{M.WATCHER_ALREADY_RUNNING}{f' (pid {pid})' if pid else ''}") from None
    return fd


def watcher_pid(root: ServerRoot) -> int | None:
    rec = statefile.run_record(root.run_dir)
    if rec:
        return rec["pid"]
    recs = statefile.pid_records(root.pid_file("watcher"))
    return recs[0]["pid"] if recs else None


def raise_fd_limit() -> int:
    """Soft descriptor limit up to the hard one (issue 10: a flood must not strand a restart)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def bind_control(port: int, say) -> object:
    """The control socket on 127.0.0.1:PORT; a busy port is retried for LISTEN_RETRY seconds."""
    deadline = time.monotonic() + LISTEN_RETRY
    told = False
    while True:
        try:
            return listeners.bind_listener("127.0.0.1", port)
        except listeners.PortInUse as e:
            why = str(e)
            if time.monotonic() >= deadline:
                raise OperationFailed(M.LISTEN_FAILED.format(port=port, why=why)) from None
            if not told:
                say(M.LISTEN_RETRY.format(port=port, why=why, seconds=int(LISTEN_RETRY)))
                told = True
            await asyncio.sleep(LISTEN_EVERY)
        except OSError as e:
            raise OperationFailed(f"unable to listen on 127.0.0.1:{port}: {e.strerror or e}") from None


async def run(root: ServerRoot, ha: bool = False) -> int:
    try:
        root.ensure()
        os.chdir(root.base)
        raise_fd_limit()
        locks = [acquire_lock(root)]
        oom.protect()  # the OOM killer takes a server first: a crash we heal, not a loss (oom.py)
        try:
            return await _run_locked(root, ha, locks)
        finally:
            for fd in locks:
                os.close(fd)
    except OSError as e:  # a file of the server root it cannot use (read-only, full disk): one line
        if e.filename is None:
            raise
        raise OperationFailed(file_problem(e)) from None


class RunFiles:
    """What the watcher keeps in data/run/ while it runs, written again when it vanishes.

    `rm -rf data/run` under a running suite (an admin cleaning up, systemd-tmpfiles on a root under
    /tmp) took the token, the run record, the lock and the pid files: no command could reach the
    watcher any more, a second one could be launched (it took the new lock and failed on the port),
    and the next crash of a store member left the whole group down (a restarted server could not
    read the token to register, so it never became ready). Every KEEP_EVERY seconds the watcher
    looks at the token, the run record and the lock (every KEEP_FULL looks, at every file) and
    writes again what is gone, taking the lock again on a new lock file; the pid files and the
    state are written again through the recorder."""

    def __init__(self, sup: Supervisor, root: ServerRoot, token: str, record: dict, me: dict, locks: list[int]):
        self.sup, self.root, self.token, self.record, self.me, self.locks = sup, root, token, record, me, locks
        self._token = self._record = self._lock = ""
        self._lock_ino = 0
        self.said: list[str] = []  # what was said gone last (said once, not every second)

    def missing(self) -> list[str]:
        """The files of data/run/ that should be there and are not (a write the recorder still
        retries, on a full disk, is the recorder's: not counted here)."""
        run = self.root.run_dir
        paths = [self.root.token_file, run / statefile.RUN_RECORD, self.root.pid_file("watcher"), run / statefile.STATE]
        paths += [self.root.pid_file(c) for c, comp in self.sup.comps.items() if comp.procs]
        gone = [p.name for p in paths if p not in self.sup.recorder.pending and not p.exists()]
        if not self._lock_is_ours():
            gone.append(self.root.watcher_lock.name)
        return gone

    def _lock_is_ours(self) -> bool:
        try:
            return os.stat(self.root.watcher_lock).st_ino == os.fstat(self.locks[-1]).st_ino
        except OSError:
            return False

    def restore(self) -> list[str]:
        """Write again what is gone; returns the names written (nothing gone: [])."""
        gone = self.missing()
        if not gone:
            self.said = []
            return []
        with contextlib.suppress(OperationFailed):
            self.root.ensure()  # data/run itself, 0700
        if self.root.token_file.name in gone:
            with contextlib.suppress(OSError):
                write_atomic(self.root.token_file, self.token + "\n")
        if self.root.watcher_lock.name in gone:
            with contextlib.suppress(OperationFailed, OSError):
                self.locks.append(acquire_lock(self.root))
        rec = self.sup.recorder
        rec.write(self.root.run_dir / statefile.RUN_RECORD, json.dumps(self.record), durable=False)
        rec.write(self.root.pid_file("watcher"), json.dumps([self.me]), durable=False)
        for c, comp in self.sup.comps.items():
            if comp.procs:
                self.sup.write_pids(c)
        self.sup.save_now()
        if gone != self.said:
            self.sup.log(M.RUN_FILES_RESTORED.format(names=" ".join(gone), path=self.root.run_dir))
            self.said = gone
        return gone

    def _at_a_glance(self) -> bool:
        """The token, the run record and our lock are there: three stats, the usual look (the
        watcher's idle CPU stays below the tick resolution)."""
        try:
            os.stat(self._token)
            os.stat(self._record)
            return os.stat(self._lock).st_ino == self._lock_ino
        except OSError:
            return False

    async def keep(self) -> None:
        self._token, self._record = str(self.root.token_file), str(self.root.run_dir / statefile.RUN_RECORD)
        self._lock = str(self.root.watcher_lock)
        n = 0
        while True:
            self._lock_ino = os.fstat(self.locks[-1]).st_ino
            await asyncio.sleep(KEEP_EVERY)
            n += 1
            if n % KEEP_FULL and self._at_a_glance():
                continue
            self.restore()


async def _run_locked(root: ServerRoot, ha: bool, locks: list[int]) -> int:
    previous = statefile.run_record(root.run_dir)  # left behind: the previous watcher died
    restore = previous is not None and previous.get("pid") != os.getpid()
    sup = Supervisor(root, ha=ha, supervised=True, console=console_writer)
    sup.cfg.refresh()
    if not sup.cfg.good:
        saved = statefile.read_state(root.run_dir).get("config")
        if not isinstance(saved, dict):
            raise OperationFailed(f"{sup.cfg.broken}; fix it (configutil -V) before starting the watcher")
        sup.seed_config(saved)  # SPEC §4: the last good configuration stays in force
    cfg = sup.cfg.current
    if cfg.get_bool("local.watcher.prefork"):
        # issue 14: the servers' code imported once, before any socket, thread or child exists;
        # every built-in server is then forked from this image (prefork.py)
        prefork.preload([c for c in sup.enabled() if sup.cfg.built_in(c)])
    port = cfg.get_int("local.watcher.port", 49994)
    if cfg.get_bool("local.watcher.cgroups"):
        sup.procs = Processes(cgroup.Cgroups.detect(root.base))
    sock = await bind_control(port, console_writer)
    sup.watcher_port = port
    token = secrets.token_hex(32)
    write_atomic(root.token_file, token + "\n")
    control = ControlServer(sup, token)
    server = await control.listen(port, sock=sock)
    me = statefile.own_pid_record()
    # manager: a service manager that restarts us (msprobe then leaves that to it, probe/watchdog.py)
    record = {**me, "port": port, "ha": ha, "boot_id": statefile.boot_id(),
              "manager": "systemd" if os.environ.get("INVOCATION_ID") else None}
    sup.recorder.write(root.run_dir / statefile.RUN_RECORD, json.dumps(record), durable=False)
    sup.recorder.write(root.pid_file("watcher"), json.dumps([me]), durable=False)
    keeper = asyncio.get_running_loop().create_task(RunFiles(sup, root, token, record, me, locks).keep())
    notify.ready()  # start-msg, which launched us, connects now
    sup.log("")
    sup.log(M.WATCHER_STARTED.format(pid=os.getpid(), when=time.ctime()))
    sup.journal.add("watcher-start", pid=os.getpid(), detail=f"port {port}{' HA' if ha else ''}")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: sup.shutdown(0, by="signal"))
    loop.add_signal_handler(signal.SIGHUP, sup.cfg.refresh)
    worker = loop.create_task(sup.ops.run())
    # the previous watcher's record is from another boot: it ended with the system, and so did
    # every server it ran (not failures; what was meant to run is started again)
    rebooted = restore and statefile.other_boot(previous.get("boot_id"))
    if restore:
        line = (M.PREVIOUS_REBOOTED if rebooted else M.PREVIOUS_DIED).format(pid=previous["pid"])
        sup.log(line)
        sup.journal.add("watcher-adopt", pid=previous["pid"], detail=line)
    # after a reboot, start-msg (the admin's, systemd's, the OCF agent's) says what to start, as on
    # a first boot; a watcher run by hand starts what was meant to run before
    sup.adopt(restore=restore, rebooted=rebooted, request_follows=notify.launched())
    metrics = None
    metrics_port = sup.cfg.current.get_int("local.watcher.metricsport", 0)
    if 0 < metrics_port < 65536:
        from msgsrv.watcher.metrics import serve_metrics

        metrics = await serve_metrics(sup, metrics_port)
    from msgsrv.console import server as console_server

    console = await console_server.start(sup, token, sup.cfg.current)
    try:
        await sup.finished.wait()
        await control.quiesce()
    finally:
        server.close()
        if metrics is not None:
            metrics.close()
        await console_server.stop(console)
        worker.cancel()
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        sup.save_now()
        if sup.finished.is_set():  # a clean exit; after anything else the next watcher must know
            sup.log(M.WATCHER_EXITING.format(pid=os.getpid()))
            sup.journal.add("watcher-exit", pid=os.getpid(), detail=f"exit status {sup.exit_code}")
            for path in (root.pid_file("watcher"), root.run_dir / statefile.RUN_RECORD):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    return sup.exit_code
