"""The control listener on 127.0.0.1:local.watcher.port (protocol: msgsrv/control/protocol.py).

Every connection must present the token first. Malformed, oversized or unauthenticated requests
get one ERR line, are logged, and the connection is closed; the watcher carries on.

Resources (issue 10): at most MAX_UNAUTHENTICATED connections may wait for their AUTH line (a new
one closes the oldest waiting one, so a flood of idle connections never locks a real client out) and
at most MAX_CONNECTIONS be open at all, well below the descriptor limit the daemon raised, so a flood
can never take the descriptors a restart needs. Refusals are logged at most REFUSALS_PER_WINDOW times
per REFUSAL_WINDOW seconds, then summed up in one line.

A request that waits (queued behind an operation) gets a K line every KEEPALIVE seconds, so a client
can tell a busy watcher from one that does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time

from msgsrv import components, logfmt
from msgsrv import messages as M
from msgsrv.components import BY_NAME, PROBE_TARGETS, START_ORDER
from msgsrv.control.protocol import KEEPALIVE, MAX_LINE, Answer, ProtocolError, Request, parse
from msgsrv.watcher.operations import Out
from msgsrv.watcher.supervisor import Supervisor

AUTH_TIMEOUT = 10.0  # seconds an unauthenticated connection may stay idle
MAX_UNAUTHENTICATED = 128
MAX_CONNECTIONS = 512
REFUSAL_WINDOW = 10.0
REFUSALS_PER_WINDOW = 5
UTILITIES = ("mboxutil",)


class RefusalLog:
    """At most LIMIT refusal lines per WINDOW seconds in the default log, then one summary line."""

    def __init__(self, write, limit: int = REFUSALS_PER_WINDOW, window: float = REFUSAL_WINDOW):
        self.write, self.limit, self.window = write, limit, window
        self.start = 0.0
        self.count = 0
        self.suppressed = 0

    def __call__(self, text: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self.start >= self.window:
            if self.suppressed:
                self.write(M.REFUSED_MORE.format(n=self.suppressed, seconds=int(self.window)))
            self.start, self.count, self.suppressed = now, 0, 0
        if self.count < self.limit:
            self.count += 1
            self.write(text)
        else:
            self.suppressed += 1


class ControlServer:
    def __init__(self, sup: Supervisor, token: str):
        self.sup = sup
        self.token = token
        self.server: asyncio.Server | None = None
        self.waiting: dict[asyncio.StreamWriter, object] = {}  # connections without AUTH yet, oldest first
        self.connections = 0
        self.refusals = RefusalLog(self._log_refusal)
        self._answering: set[asyncio.Task] = set()

    async def listen(self, port: int, sock=None) -> asyncio.Server:
        if sock is not None:
            self.server = await asyncio.start_server(self.handle, sock=sock, limit=MAX_LINE)
        else:
            self.server = await asyncio.start_server(self.handle, "127.0.0.1", port, limit=MAX_LINE,
                                                     reuse_address=True)
        return self.server

    def _log_refusal(self, text: str) -> None:
        with contextlib.suppress(OSError):
            logfmt.default_log(self.sup.root, "watcher", "Warning", text)

    def _refuse(self, peer, reason: str) -> None:
        self.refusals(f"control connection from {peer} refused: {reason}")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One control connection. A connection still open when the watcher exits is cancelled with
        its loop: that is the end of it, not an error (Python 3.11's stream callback would otherwise
        print a CancelledError traceback into the watcher's console log)."""
        try:
            await self._handle(reader, writer)
        except asyncio.CancelledError:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self.connections >= MAX_CONNECTIONS:
            self._refuse(peer, "too many connections")
            writer.close()
            return
        if len(self.waiting) >= MAX_UNAUTHENTICATED:
            oldest, oldest_peer = next(iter(self.waiting.items()))
            del self.waiting[oldest]
            self._refuse(oldest_peer, "too many connections waiting for a token")
            oldest.close()
        self.connections += 1
        self.waiting[writer] = peer
        registration: tuple[str, int] | None = None
        utility: tuple[str, int] | None = None
        authed = False
        said_bye = False
        who: str | None = None

        def send(line: str) -> None:
            if not writer.is_closing():
                writer.write((line.replace("\n", " ") + "\n").encode("utf-8", "replace"))

        try:
            while True:
                try:
                    raw = await asyncio.wait_for(reader.readline(), None if authed else AUTH_TIMEOUT)
                except TimeoutError:
                    send("ERR authentication timed out")
                    self._refuse(peer, "no token in time")
                    break
                except (ValueError, asyncio.LimitOverrunError):
                    send(f"ERR request longer than {MAX_LINE} bytes")
                    self._refuse(peer, "oversized request")
                    break
                if not raw or not raw.endswith(b"\n"):
                    break  # EOF (a registration closing here without BYE is a failure)
                try:
                    req = parse(raw)
                except ProtocolError as e:
                    send(f"ERR {e}")
                    self._refuse(peer, str(e))
                    break
                if not authed:
                    if req.verb != "AUTH" or len(req.args) not in (1, 2) or not hmac.compare_digest(
                            req.args[0].encode(), self.token.encode()):
                        send("ERR authentication required" if req.verb != "AUTH" else "ERR bad token")
                        self._refuse(peer, "bad or missing token")
                        break
                    authed = True
                    self.waiting.pop(writer, None)
                    who = req.args[1][:64] if len(req.args) == 2 else None
                    send("OK")
                    continue
                if req.verb == "REGISTER":
                    registration = self._register(req, send)
                    if registration is None:
                        break
                    continue
                if req.verb == "UTILITY":
                    utility = self._utility(req, send)
                    if utility is None:
                        break
                    continue
                if req.verb == "BYE":
                    if registration:
                        self.sup.unregister(*registration)
                    said_bye = True
                    send("OK")
                    break
                await self.dispatch(req, send, writer, who or (f"{peer[0]}:{peer[1]}" if peer else None))
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.waiting.pop(writer, None)
            self.connections -= 1
            if registration and not said_bye:
                self.sup.disconnected(*registration)
            if utility and not said_bye:
                name, pid = utility
                self.sup.utility_failed(name, f"process {pid} ended without finishing (killed?)",
                                        by=f"{name}[{pid}]")
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()

    def _register(self, req: Request, send) -> tuple[str, int] | None:
        if len(req.args) != 2 or req.args[0] not in BY_NAME or not req.args[1].isdigit():
            send("ERR usage: REGISTER <component> <pid>")
            return None
        c, pid = req.args[0], int(req.args[1])
        self.sup.registered(c, pid)
        send("OK")
        return c, pid

    def _utility(self, req: Request, send) -> tuple[str, int] | None:
        if len(req.args) != 2 or req.args[0] not in UTILITIES or not req.args[1].isdigit():
            send(f"ERR usage: UTILITY <{'|'.join(UTILITIES)}> <pid>")
            return None
        send("OK")
        return req.args[0], int(req.args[1])

    async def dispatch(self, req: Request, send, writer, who: str | None) -> None:
        """PING, STATUS, HUNG, FAILED answer at once; START/STOP/RESTART/SHUTDOWN go through the queue."""
        sup = self.sup
        if req.verb == "PING":
            send("OK pong")
            return
        if req.verb == "STATUS":
            send("OK " + json.dumps(sup.status(pss="pss" in req.args), separators=(",", ":")))
            return
        if req.verb == "AUTH":
            send("OK")
            return
        if req.verb == "HUNG":
            if len(req.args) < 2 or req.args[0] not in PROBE_TARGETS:
                send(f"ERR usage: HUNG <{'|'.join(PROBE_TARGETS)}> <since> <detail...>")
                return
            try:
                since = float(req.args[1])
            except ValueError:
                since = 0.0
            outcome, text = sup.report_hang(req.args[0], since, " ".join(req.args[2:]) or "no answer",
                                            who or "a client")
            send("OK " + Answer(outcome, text).format())
            return
        if req.verb == "FAILED":
            name = req.args[0] if req.args else "utility"
            reason = " ".join(req.args[1:]) or "failed"
            outcome, text = sup.utility_failed(name, reason, by=who)
            send("OK " + Answer(outcome, text).format())
            return

        def progress(kind: str, text: str) -> None:
            send(f"{kind} {text}")

        out = Out(sup.log, progress)
        args = list(req.args)
        try:
            if req.verb == "START":
                if args and args[0] == "ha":
                    sup.ha = True
                    args = args[1:]
                names = self._names(args) if args else sup.enabled()
                if args:
                    enabled = sup.enabled()
                    off = [c for c in names if c not in enabled]
                    if off:
                        send(f"ERR {off[0]} is not enabled ({BY_NAME[off[0]].enable} = no)")
                        return
                fut = sup.request_start(names, out, by=who)
            elif req.verb == "STOP":
                force = bool(args) and args[0] == "-f"
                args = args[1:] if force else args
                fut = sup.request_stop(self._names(args) if args else None, out, force, by=who)
            elif req.verb == "RESTART":
                if not args:
                    send("ERR usage: RESTART COMPONENT...")
                    return
                fut = sup.request_restart(self._names(args), out, by=who)
                if fut is None:
                    send("ERR nothing to restart (never restarted automatically)")
                    return
            elif req.verb == "SHUTDOWN":
                if args not in ([], ["-f"]):
                    send("ERR usage: SHUTDOWN [-f]")
                    return
                fut = sup.shutdown(0, out, by=who, force=bool(args))
            else:
                send(f"ERR unexpected request {req.verb}")
                return
        except KeyError as e:
            send(f"ERR unknown component {e.args[0]!r}; known: {' '.join(components.known_names())}")
            return
        task = asyncio.get_running_loop().create_task(self._wait(fut, send, writer))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)
        await asyncio.shield(task)

    async def quiesce(self, timeout: float = 1.0) -> None:
        """Let every request that has its answer send it (SHUTDOWN's OK before the watcher exits)."""
        if self._answering:
            await asyncio.wait(set(self._answering), timeout=timeout)

    @staticmethod
    async def _wait(fut: asyncio.Future, send, writer) -> None:
        """Answer when FUT is done; meanwhile a K line every KEEPALIVE seconds."""
        while True:
            done, _ = await asyncio.wait({fut}, timeout=KEEPALIVE)
            if done:
                break
            send("K")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        try:
            fut.result()
            send("OK")
        except Exception as e:
            send(f"ERR {e}")
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    @staticmethod
    def _names(args: list[str]) -> list[str]:
        names = components.resolve(args)
        return [c for c in START_ORDER if c in names]
