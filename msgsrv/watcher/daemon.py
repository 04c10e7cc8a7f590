"""The watcher daemon's entry: lock, token, control listener, adoption, signals, the worker.

"Is the watcher up?" means "is data/run/watcher.lock locked?" (s6's rule, STYLE §4.9).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import signal
import time

from msgsrv import messages as M
from msgsrv.atomicfile import write_atomic
from msgsrv.config.store import ConfigStore
from msgsrv.errors import OperationFailed
from msgsrv.paths import ServerRoot
from msgsrv.watcher import children as ch
from msgsrv.watcher.server import ControlServer
from msgsrv.watcher.supervisor import Supervisor, console_writer


def acquire_lock(root: ServerRoot) -> int:
    fd = os.open(root.watcher_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = watcher_pid(root)
        raise OperationFailed(f"a watcher is already running{f' (pid {pid})' if pid else ''}") from None
    return fd


def watcher_pid(root: ServerRoot) -> int | None:
    recs = ch.read_pidfile(root.pid_file("watcher"))
    return recs[0]["pid"] if recs else None


async def run(root: ServerRoot, ha: bool = False) -> int:
    root.ensure()
    os.chdir(root.base)
    lock_fd = acquire_lock(root)
    cfg = ConfigStore(root.config_file)
    port = cfg.get_int("local.watcher.port", 49994)
    token = secrets.token_hex(32)
    write_atomic(root.token_file, token + "\n")
    sup = Supervisor(root, ha=ha, supervised=True, watcher_port=port, console=console_writer)
    control = ControlServer(sup, token)
    try:
        server = await control.listen(port)
    except OSError as e:
        os.close(lock_fd)
        raise OperationFailed(f"unable to listen on 127.0.0.1:{port}: {e.strerror}") from None
    me = ch.Child("watcher", os.getpid(), -1, ch.create_time(os.getpid()), time.time())
    ch.write_pidfile(root.pid_file("watcher"), [me])
    sup.log("")
    sup.log(M.WATCHER_STARTED.format(pid=os.getpid(), when=time.ctime()))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: sup.submit(lambda: sup.op_shutdown(0)))
    loop.add_signal_handler(signal.SIGHUP, sup.cfg.refresh)
    worker = loop.create_task(sup.worker())
    sup.adopt()
    metrics = None
    metrics_port = cfg.get_int("local.watcher.metricsport", 0)
    if metrics_port:
        from msgsrv.watcher.metrics import serve_metrics

        metrics = await serve_metrics(sup, metrics_port)
    from msgsrv.console import server as console_server

    console = await console_server.start(sup, token, cfg)
    try:
        await sup.finished.wait()
    finally:
        server.close()
        if metrics is not None:
            metrics.close()
        await console_server.stop(console)
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        sup.log(M.WATCHER_EXITING.format(pid=os.getpid()))
        with contextlib.suppress(FileNotFoundError):
            root.pid_file("watcher").unlink()
        os.close(lock_fd)
    return sup.exit_code
