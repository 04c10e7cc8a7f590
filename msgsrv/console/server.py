"""The console's listener in the watcher's loop: start, stop, and the guard in front of aiohttp.

    console = await server.start(sup, token, cfg)   # daemon.py, next to the metrics listener
    ...
    await console.close()

`local.watcher.httpport` (49995; 0 = off) on `local.watcher.httpaddr` (127.0.0.1). A port that
cannot be bound is logged as a failure and the watcher goes on without a console: supervision
matters more than its window.

aiohttp parses HTTP; a small protocol (_Gate) sits between each socket and aiohttp's own, for the
two things aiohttp leaves to the application: a cap on open connections (MAX_CONNECTIONS; past it,
503 and close) and a deadline for the first request head (HEAD_TIMEOUT; past it, 408 and close).
Later requests on a kept-alive connection are aiohttp's: it closes a connection idle for
KEEPALIVE seconds.
"""

from __future__ import annotations

import asyncio
import contextlib

from msgsrv.console import link
from msgsrv.console import text as T

DEFAULT_PORT = 49995
MAX_CONNECTIONS = 256
HEAD_TIMEOUT = 10.0
KEEPALIVE = 15.0
MAX_HEAD = 16 * 1024  # aiohttp refuses longer heads itself (400/431); the gate stops looking


def _plain(code: int, reason: str, text: str) -> bytes:
    body = (text + "\n").encode()
    return (f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class _Gate(asyncio.Protocol):
    def __init__(self, owner: ConsoleServer, inner: asyncio.Protocol):
        self.owner = owner
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.refused = False
        self.head = b""
        self.head_seen = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        if len(self.owner.open) >= MAX_CONNECTIONS:
            self.refused = True
            transport.write(_plain(503, "Service Unavailable", T.TOO_MANY))
            transport.close()
            return
        self.owner.open.add(self)
        self.timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT, self._too_slow)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if not self.head_seen:
            self.head = (self.head + data)[-MAX_HEAD:]
            if b"\r\n\r\n" in self.head or b"\n\n" in self.head or len(self.head) >= MAX_HEAD:
                self.head_seen, self.head = True, b""
                if self.timer:
                    self.timer.cancel()
        self.inner.data_received(data)

    def _too_slow(self) -> None:
        if not self.head_seen and self.transport and not self.transport.is_closing():
            self.transport.write(_plain(408, "Request Timeout", T.TOO_SLOW.format(seconds=int(HEAD_TIMEOUT))))
            self.transport.close()

    def eof_received(self):
        return None if self.refused else self.inner.eof_received()

    def connection_lost(self, exc) -> None:
        if self.timer:
            self.timer.cancel()
        if self.refused:
            return
        self.owner.open.discard(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class ConsoleServer:
    def __init__(self, sup, token: str, host: str, port: int):
        from msgsrv.console.app import make_app
        from msgsrv.console.backend import Backend

        self.sup = sup
        self.host, self.port = host, port
        self.token = token
        self.app = make_app(Backend(sup), token)
        self.open: set[_Gate] = set()
        self.runner = None
        self.listener: asyncio.AbstractServer | None = None

    async def listen(self) -> None:
        from aiohttp import web

        self.runner = web.AppRunner(self.app, access_log=None, keepalive_timeout=KEEPALIVE,
                                    shutdown_timeout=1.0)
        await self.runner.setup()
        handler_factory = self.runner.server
        loop = asyncio.get_running_loop()
        try:
            self.listener = await loop.create_server(lambda: _Gate(self, handler_factory()), self.host, self.port,
                                                     reuse_address=True)
        except BaseException:
            await self.runner.cleanup()
            raise
        if self.port == 0:  # an ephemeral port (tests): the one the kernel chose
            self.port = self.listener.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return link.token_url(self.host, self.port, self.token)

    async def close(self) -> None:
        link.withdraw(self.sup.root)
        if self.listener is not None:
            self.listener.close()
        await self.app["console"].close()
        if self.runner is not None:
            await self.runner.cleanup()


async def start(sup, token: str, cfg) -> ConsoleServer | None:
    """The console for SUP as CFG says, listening; None when it is off or cannot listen (logged)."""
    link.withdraw(sup.root)  # a link left by a watcher that was killed names a dead token
    port = cfg.get_int("local.watcher.httpport", DEFAULT_PORT)
    host = cfg.get_str("local.watcher.httpaddr", "127.0.0.1").strip() or "127.0.0.1"
    if port == 0:
        return None
    if not 0 < port <= 65535:  # the catalogue types it integer (0 = off), so the range is checked here
        sup.alert(T.BAD_PORT.format(port=port))
        return None
    try:
        console = ConsoleServer(sup, token, host, port)
        await console.listen()
    except OSError as e:
        sup.alert(T.LISTEN_FAILED.format(host=host, port=port, reason=e.strerror or e))
        return None
    link.publish(sup.root, console.url)
    return console


async def stop(console: ConsoleServer | None) -> None:
    if console is not None:
        with contextlib.suppress(Exception):
            await console.close()
