"""MmpService: the IMAP/POP proxy `mmp` (SPEC §3), off by default (`local.mmp.enable`).

Two listeners relay every byte, both ways, to the built-in servers on loopback:

    local.mmp.imapport (17143)  ->  service.imap.port
    local.mmp.popport  (17110)  ->  service.pop.port

The client sees the back end's own greeting and replies. When the back end does not accept
the connection the proxy answers itself and closes: `* BYE imap back end unavailable`
(RFC 3501 §7.1.5) or `-ERR pop back end unavailable` (RFC 1939 §3). Idle connections close
after 30 minutes; the fault switch applies to new connections as in every server.
"""

from __future__ import annotations

import asyncio

from msgsrv.services.base import LOOPBACK, LineSession, Service

CONNECT_TIMEOUT = 5.0
CHUNK = 65536


class RelaySession(LineSession):
    idle_timeout = 30 * 60.0
    backend_parameter = ""
    unavailable = ""

    async def run(self) -> None:
        port = self.service.port(self.backend_parameter)
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as e:
            self.service.log(f"back end 127.0.0.1:{port} unavailable for {self.peer}: {e}", "Error")
            self.send(self.unavailable)
            await self.flush()
            return
        try:
            await asyncio.gather(self.pipe(self.reader, up_writer), self.pipe(up_reader, self.writer))
        finally:
            up_writer.close()

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await asyncio.wait_for(reader.read(CHUNK), self.idle_timeout)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()  # one side finished: end the other


class ImapRelay(RelaySession):
    backend_parameter = "service.imap.port"
    unavailable = "* BYE imap back end unavailable"


class PopRelay(RelaySession):
    backend_parameter = "service.pop.port"
    unavailable = "-ERR pop back end unavailable"


class MmpService(Service):
    component = "mmp"

    async def bind(self) -> None:
        host = self.public_host()
        await self.listen(self.port("local.mmp.imapport"), ImapRelay, host)
        await self.listen(self.port("local.mmp.popport"), PopRelay, host)


SERVICE = MmpService
