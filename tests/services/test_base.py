"""msgsrv/services/base.py in process: idle timeout, the reply in flight at shutdown, masking."""

from __future__ import annotations

import asyncio

from msgsrv.services.base import HealthSession, masked
from msgsrv.services.cert import CertService


class QuickIdle(HealthSession):
    idle_timeout = 0.2


class SlowReply(HealthSession):
    async def cmd_SLOW(self, tag, rest: str) -> None:
        await asyncio.sleep(0.3)
        self.send("+OK done")


async def started(root, session_class) -> CertService:
    service = CertService(root)
    service.stopping = asyncio.Event()
    await service.listen(0, session_class)
    return service


def test_idle_connection_is_closed_after_the_idle_timeout(root):
    async def scenario():
        service = await started(root, QuickIdle)
        reader, writer = await asyncio.open_connection("127.0.0.1", service.ports[0])
        assert await reader.readline() == b"* OK certd ready\r\n"
        assert await asyncio.wait_for(reader.readline(), 2) == b"-ERR idle timeout, closing connection\r\n"
        assert await reader.readline() == b""
        writer.close()
        await service.drain()

    asyncio.run(scenario())


def test_shutdown_finishes_the_reply_in_flight_and_closes_idle_connections(root):
    async def scenario():
        service = await started(root, SlowReply)
        port = service.ports[0]
        busy_r, busy_w = await asyncio.open_connection("127.0.0.1", port)
        idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
        await busy_r.readline()
        await idle_r.readline()
        busy_w.write(b"SLOW\r\n")
        await asyncio.sleep(0.05)  # the command is now being handled
        service.request_stop()
        await service.drain()
        assert await busy_r.readline() == b"+OK done\r\n"
        assert await busy_r.readline() == b""
        assert await idle_r.readline() == b""
        try:
            await asyncio.open_connection("127.0.0.1", port)
            refused = False
        except OSError:
            refused = True
        assert refused  # no longer accepting
        busy_w.close()
        idle_w.close()

    asyncio.run(scenario())


def test_passwords_are_masked_for_logs():
    assert masked("a1 LOGIN alice s3cret") == "a1 LOGIN alice ****"
    assert masked("PASS hunter2") == "PASS ****"
    assert masked("AUTH PLAIN AGFsaWNlAHMzY3JldA==") == "AUTH ****"
    assert masked("a2 SELECT INBOX") == "a2 SELECT INBOX"
