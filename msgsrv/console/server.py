"""The console's listener in the watcher's loop: start, stop, and the guard in front of aiohttp.

    console = await server.start(sup, token, cfg)   # daemon.py, next to the metrics listener
    ...
    await server.stop(console)

`local.watcher.httpport` (49995; 0 = off) on `local.watcher.httpaddr` (127.0.0.1). A port that
cannot be bound is logged as a failure and the watcher goes on without a console: supervision
matters more than its window.

The port is bound at start, but the web application (aiohttp, jinja2: about 17 MB and 150 ms of
imports) is loaded only when the first connection arrives, on a worker thread, so a watcher whose
console nobody opens stays as small as one without, and no import ever runs in the loop.

aiohttp parses HTTP; a small protocol (_Gate) sits between each socket and aiohttp's own, for what
aiohttp leaves to the application: a cap on open connections (MAX_CONNECTIONS; past it, 503 and
close), a deadline for the first request head (HEAD_TIMEOUT; past it, 408 and close), and holding
the first bytes while the application loads. Later requests on a kept-alive connection are
aiohttp's: it closes a connection idle for KEEPALIVE seconds. Every answer carries the security
headers (headers.py): the gate's own, the application's, and aiohttp's 400 for a request it cannot
parse (app.Handler).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib

from msgsrv import forkguard
from msgsrv.console import link
from msgsrv.console import text as T
from msgsrv.console.headers import secure

DEFAULT_PORT = 49995
MAX_CONNECTIONS = 256
HEAD_TIMEOUT = 10.0
KEEPALIVE = 15.0
MAX_HEAD = 16 * 1024  # aiohttp refuses longer heads itself (400/431); the gate stops looking
MAX_HELD = 128 * 1024  # bytes held per connection while the application loads
HANDLER_OPTIONS = {"keepalive_timeout": KEEPALIVE, "access_log": None}  # aiohttp's RequestHandler


def _plain(code: int, reason: str, text: str) -> bytes:
    body = (text + "\n").encode()
    headers = {"Content-Type": "text/plain; charset=utf-8", "Content-Length": str(len(body)), "Connection": "close"}
    secure(headers)
    return (f"HTTP/1.1 {code} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n").encode() + body


def _import_app() -> None:
    with forkguard.no_fork():  # aiohttp's import makes TLS contexts: OpenSSL's locks
        importlib.import_module("msgsrv.console.app")


class _Gate(asyncio.Protocol):
    def __init__(self, owner: ConsoleServer):
        self.owner = owner
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.refused = False
        self.lost = False
        self.head = b""
        self.head_seen = False
        self.held = bytearray()
        self.eof = False
        self.timer: asyncio.TimerHandle | None = None

    # -- from the socket ---------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        if len(self.owner.open) >= MAX_CONNECTIONS:
            self.refused = True
            transport.write(_plain(503, "Service Unavailable", T.TOO_MANY))
            transport.close()
            return
        self.owner.open.add(self)
        self.timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT, self._too_slow)
        self.owner.attach(self)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if not self.head_seen:
            self.head = (self.head + data)[-MAX_HEAD:]
            if b"\r\n\r\n" in self.head or b"\n\n" in self.head or len(self.head) >= MAX_HEAD:
                self.head_seen, self.head = True, b""
                if self.timer:
                    self.timer.cancel()
        if self.inner is not None:
            self.inner.data_received(data)
        elif len(self.held) + len(data) <= MAX_HELD:
            self.held += data
        else:
            self.close(503, "Service Unavailable", T.TOO_LARGE.format(limit=MAX_HELD))

    def eof_received(self):
        if self.inner is not None:
            return self.inner.eof_received()
        self.eof = True
        return True  # keep the half-open connection until the application answers

    def connection_lost(self, exc) -> None:
        self.lost = True
        if self.timer:
            self.timer.cancel()
        if self.refused:
            return
        self.owner.open.discard(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # -- from the console ---------------------------------------------------------------------------
    def attach(self, inner: asyncio.Protocol) -> None:
        """Hand the connection to aiohttp's protocol, with what arrived meanwhile."""
        if self.lost or self.transport is None or self.transport.is_closing():
            return
        self.inner = inner
        inner.connection_made(self.transport)
        if self.held:
            held, self.held = bytes(self.held), bytearray()
            inner.data_received(held)
        if self.eof and not inner.eof_received():
            self.transport.close()

    def close(self, code: int, reason: str, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_plain(code, reason, text))
            self.transport.close()

    def _too_slow(self) -> None:
        if not self.head_seen:
            self.close(408, "Request Timeout", T.TOO_SLOW.format(seconds=int(HEAD_TIMEOUT)))


class ConsoleServer:
    def __init__(self, sup, token: str, host: str, port: int):
        self.sup = sup
        self.host, self.port = host, port
        self.token = token
        self.open: set[_Gate] = set()
        self.app = None
        self.runner = None
        self.handler_cls = None
        self.listener: asyncio.AbstractServer | None = None
        self._loading: asyncio.Task | None = None
        self._waiting: list[_Gate] = []

    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        self.listener = await loop.create_server(lambda: _Gate(self), self.host, self.port, reuse_address=True)
        if self.port == 0:  # an ephemeral port: the one the kernel chose
            self.port = self.listener.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return link.token_url(self.host, self.port, self.token)

    def attach(self, gate: _Gate) -> None:
        """Give GATE its aiohttp protocol now, or once the application has loaded."""
        if self.runner is not None:
            gate.attach(self._handler())
            return
        self._waiting.append(gate)
        if self._loading is None:
            self._loading = asyncio.get_running_loop().create_task(self._load())

    async def _load(self) -> None:
        try:
            # the imports run on a worker thread: the loop keeps handling crashes meanwhile (a
            # server it restarts meanwhile is exec'd, not forked: forkguard.py)
            await asyncio.to_thread(_import_app)
            from aiohttp import web

            from msgsrv.console.app import Handler, make_app
            from msgsrv.console.backend import Backend

            app = make_app(Backend(self.sup), self.token)
            runner = web.AppRunner(app, shutdown_timeout=1.0, **HANDLER_OPTIONS)
            await runner.setup()
        except Exception as e:  # a broken installation costs the console, never the watcher
            self.sup.alert(T.LOAD_FAILED.format(reason=f"{type(e).__name__}: {e}"))
            waiting, self._waiting = self._waiting, []
            for g in waiting:
                g.close(503, "Service Unavailable", T.UNAVAILABLE)
            self._loading = None
            return
        self.app, self.runner, self.handler_cls = app, runner, Handler
        waiting, self._waiting = self._waiting, []
        for g in waiting:
            g.attach(self._handler())

    def _handler(self) -> asyncio.Protocol:
        """aiohttp's protocol for one connection: what `runner.server()` makes, as app.Handler (the
        security headers on aiohttp's own error answers too)."""
        return self.handler_cls(self.runner.server, loop=asyncio.get_running_loop(), **HANDLER_OPTIONS)

    async def close(self) -> None:
        link.withdraw(self.sup.root)
        if self.listener is not None:
            self.listener.close()
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loading
        if self.app is not None:
            from msgsrv.console.views import CONSOLE

            await self.app[CONSOLE].close()
        if self.runner is not None:
            await self.runner.cleanup()
        for g in list(self.open):
            if g.transport is not None:
                g.transport.close()


async def start(sup, token: str, cfg) -> ConsoleServer | None:
    """The console for SUP as CFG says, listening; None when it is off or cannot listen (logged)."""
    link.withdraw(sup.root)  # a link left by a watcher that was killed names a dead token
    port = cfg.get_int("local.watcher.httpport", DEFAULT_PORT)
    host = cfg.get_str("local.watcher.httpaddr", "127.0.0.1").strip() or "127.0.0.1"
    if port == 0:  # port_or_off: the store and its readers keep it inside 0-65535
        return None
    console = ConsoleServer(sup, token, host, port)
    try:
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
