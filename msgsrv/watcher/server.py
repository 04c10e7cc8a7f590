"""The control listener on 127.0.0.1:local.watcher.port (protocol: msgsrv/control/protocol.py).

Every connection must present the token first. Malformed, oversized or unauthenticated requests
get one ERR line, are logged, and the connection is closed; the watcher carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os

from msgsrv import components, logfmt
from msgsrv import messages as M
from msgsrv.components import BY_NAME, START_ORDER, STOP_ORDER
from msgsrv.control.protocol import MAX_LINE, ProtocolError, Request, parse
from msgsrv.watcher.supervisor import Out, Supervisor

AUTH_TIMEOUT = 10.0  # seconds an unauthenticated connection may stay idle


class ControlServer:
    def __init__(self, sup: Supervisor, token: str):
        self.sup = sup
        self.token = token
        self.server: asyncio.Server | None = None

    async def listen(self, port: int) -> asyncio.Server:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", port, limit=MAX_LINE,
                                                 reuse_address=True)
        return self.server

    def _refuse(self, peer, reason: str) -> None:
        logfmt.default_log(self.sup.root, "watcher", "Warning", f"control connection from {peer} refused: {reason}")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        registration: tuple[str, int] | None = None
        authed = False
        said_bye = False

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
                    if req.verb != "AUTH" or len(req.args) != 1 or not hmac.compare_digest(
                            req.args[0].encode(), self.token.encode()):
                        send("ERR authentication required" if req.verb != "AUTH" else "ERR bad token")
                        self._refuse(peer, "bad or missing token")
                        break
                    authed = True
                    send("OK")
                    continue
                if req.verb == "REGISTER":
                    registration = self._register(req, send)
                    if registration is None:
                        break
                    continue
                if req.verb == "BYE":
                    if registration:
                        self.sup.unregister(*registration)
                    said_bye = True
                    send("OK")
                    break
                await self.dispatch(req, send)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if registration and not said_bye:
                self.sup.disconnected(*registration)
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

    async def dispatch(self, req: Request, send) -> None:
        """PING, STATUS answer at once; START/STOP/RESTART/SHUTDOWN/FAILED go through the queue."""
        sup = self.sup
        if req.verb == "PING":
            send("OK pong")
            return
        if req.verb == "STATUS":
            st = sup.status()
            st["watcher"] = {"pid": os.getpid(), "ha": sup.ha, "port": sup.watcher_port,
                             "autorestart": sup.cfg.get_bool("local.autorestart"),
                             "window": sup.budget.window}
            send("OK " + json.dumps(st, separators=(",", ":")))
            return
        if req.verb == "AUTH":
            send("OK")
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
                fut = sup.submit(lambda: sup.op_start(names, out))
            elif req.verb == "STOP":
                force = bool(args) and args[0] == "-f"
                args = args[1:] if force else args
                names = self._names(args) if args else [c for c in STOP_ORDER if sup.children[c]]
                fut = sup.submit(lambda: sup.op_stop(names, out, force))
            elif req.verb == "RESTART":
                if not args:
                    send("ERR usage: RESTART COMPONENT...")
                    return
                names = self._names(args)
                fut = sup.request_restart(names, reason="request", out=out)
                if fut is None:
                    send("ERR nothing to restart (not restartable, or restart limit reached)")
                    return
            elif req.verb == "FAILED":
                who = args[0] if args else "utility"
                reason = " ".join(args[1:]) or "failed"
                sup.alert(M.UTILITY_FAILED.format(who=who, reason=reason))
                fut = sup.request_restart(["store"], reason="failure")
                if fut is None:
                    send("OK not restarted")
                    return
            elif req.verb == "SHUTDOWN":
                fut = sup.submit(lambda: sup.op_shutdown(0, out))
            else:
                send(f"ERR unexpected request {req.verb}")
                return
        except KeyError as e:
            send(f"ERR unknown component {e.args[0]!r}; known: {' '.join(components.known_names())}")
            return
        try:
            await fut
            send("OK")
        except Exception as e:
            send(f"ERR {e}")

    @staticmethod
    def _names(args: list[str]) -> list[str]:
        names = components.resolve(args)
        return [c for c in START_ORDER if c in names]
