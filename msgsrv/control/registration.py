"""A built-in server's registration with the watcher: what every one does once it accepts
connections, on its own event loop (the watcher's readiness signal, SPEC §3 "Process model").

Apart from control/client.py, which start-msg and stop-msg import: they never need asyncio (~30 ms
of their start)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from msgsrv.control.client import DEFAULT_CALL_TIMEOUT, read_token, watcher_port, who_am_i
from msgsrv.control.protocol import format_request
from msgsrv.errors import OperationFailed
from msgsrv.paths import ServerRoot
from msgsrv.watcher import prefork


class Registration:
    """A server's registration with the watcher (SPEC §3 "Process model"), on the server's own
    event loop.

    Connect only when the watcher started us (MSGSRV_SUPERVISED=1). `start()` sends AUTH and
    REGISTER in one write and returns at once: the server serves while the watcher reads them
    (issue 14: a restarted server greets its first client without waiting for two round trips
    through the watcher). The REGISTER is still the readiness signal, sent only after every
    listener accepts. Closing the connection without `bye()` tells the watcher we failed.
    A watcher that cannot be reached or refuses leaves the server unregistered: the watcher
    still sees it through its pid."""

    def __init__(self, on_lost: Callable[[], None] | None = None) -> None:
        self.task: asyncio.Task | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reader: asyncio.StreamReader | None = None
        self.on_lost = on_lost  # called when the watcher closes a registration we did not end
        self.follow: asyncio.Task | None = None
        self.ending = False
        self.sent = asyncio.Event()  # REGISTER written, or registering given up (or not supervised)

    @classmethod
    def start(cls, component: str, root: ServerRoot | None = None, on_lost: Callable[[], None] | None = None,
              again: bool = False) -> Registration:
        """Begin registering COMPONENT; call from inside the server's event loop. ON_LOST: called
        once if the watcher's end of the connection closes while we live (the watcher died).
        AGAIN: with a watcher launched since ours (its port from its run record, not ours)."""
        reg = cls(on_lost)
        if os.environ.get("MSGSRV_SUPERVISED") == "1":
            reg.task = asyncio.get_running_loop().create_task(reg._register(component, root, again))
            reg.task.add_done_callback(lambda _: reg.sent.set())
        else:
            reg.sent.set()
        return reg

    async def _register(self, component: str, root: ServerRoot | None, again: bool = False) -> None:
        root = root or ServerRoot.from_env()
        port = None if again else os.environ.get("MSGSRV_WATCHER_PORT")
        if prefork.joining_cgroup():  # a forked server is RUNNING only once its cgroup holds it
            await prefork.cgroup_joined_soon()
        try:
            token = read_token(root)
            reader, writer = await asyncio.open_connection("127.0.0.1", int(port) if port else watcher_port(root))
        except (OSError, OperationFailed, ValueError):
            return
        self.reader, self.writer = reader, writer
        writer.write(format_request("AUTH", token, who_am_i()) + format_request("REGISTER", component, str(os.getpid())))
        self.sent.set()
        try:
            answers = 0
            while answers < 2:  # OK to AUTH, then OK to REGISTER (progress and keepalive lines skipped)
                line = (await asyncio.wait_for(reader.readline(), DEFAULT_CALL_TIMEOUT)).decode("utf-8", "replace")
                kind = line.split(" ", 1)[0].strip()
                if kind in ("K", "T", "L") and line.endswith("\n"):
                    continue
                if kind != "OK":
                    raise ConnectionError(line.strip() or "closed")
                answers += 1
        except (OSError, TimeoutError, ValueError):  # ConnectionError is an OSError; ValueError: a line too long
            self._close()
            return
        if self.on_lost is not None:
            self.follow = asyncio.get_running_loop().create_task(self._follow(reader))

    async def _follow(self, reader: asyncio.StreamReader) -> None:
        """Read the idle connection to its end: the watcher closes it only when it exits (after
        stopping us) or dies. A close we did not ask for while we run is said through on_lost."""
        try:
            while await reader.readline():
                pass
        except (OSError, ValueError):
            pass
        if not self.ending:
            self._close()
            if self.on_lost is not None:
                self.on_lost()

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def bye(self) -> None:
        """End the registration in order: BYE, then close (2 s at most)."""
        self.ending = True
        if self.follow is not None:
            self.follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.follow
        if self.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), 2.0)
            except (TimeoutError, asyncio.CancelledError):
                self.task.cancel()
                self._close()
                return
        if self.writer is None or self.reader is None:
            return
        try:
            self.writer.write(format_request("BYE"))
            await asyncio.wait_for(self.reader.readline(), 2.0)
        except (OSError, TimeoutError):
            pass
        self._close()
