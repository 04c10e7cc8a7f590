"""imsched's health listener on `local.sched.port`: the suite's health line protocol
(services/base.py HealthSession), so msprobe probes the scheduler like any other server.

    S: * OK imsched ready
    C: PING      S: +OK PONG
    C: STATUS    S: +OK imsched pid=<pid> tasks=<n> running=<n>
    C: QUIT      S: +OK bye

It obeys the fault switch data/run/fault.sched (hang | slow N | crash), read on each connection.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from msgsrv.errors import OperationFailed
from msgsrv.paths import ServerRoot

if TYPE_CHECKING:
    from msgsrv.sched.imsched import Scheduler

IDLE_TIMEOUT = 30.0  # seconds a health connection may stay silent
GREETING = b"* OK imsched ready\r\n"


async def _health(switch, sched: Scheduler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    from msgsrv.services.fault import CRASH_STATUS

    try:
        fault = switch.current()  # data/run/fault.sched: hang | slow N | crash
        if fault is not None and fault.mode == "crash":
            os._exit(CRASH_STATUS)
        if fault is not None and fault.mode == "hang":
            await reader.read()  # keep the connection, never answer
            return
        if fault is not None and fault.mode == "slow":
            await asyncio.sleep(fault.seconds)
        writer.write(GREETING)
        while True:
            raw = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
            if not raw:
                break
            verb = raw.decode("utf-8", "replace").strip().upper()
            if verb == "PING":
                writer.write(b"+OK PONG\r\n")
            elif verb == "STATUS":
                writer.write(f"+OK imsched pid={os.getpid()} tasks={len(sched.tasks)} "
                             f"running={len(sched.running)}\r\n".encode())
            elif verb == "QUIT":
                writer.write(b"+OK bye\r\n")
                break
            else:
                writer.write(b"-ERR unknown command\r\n")
            await writer.drain()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def start_health(root: ServerRoot, sched: Scheduler, port: int) -> asyncio.Server:
    from msgsrv.services.fault import FaultSwitch

    switch = FaultSwitch(root.fault_file("sched"))
    try:
        return await asyncio.start_server(lambda r, w: _health(switch, sched, r, w), "127.0.0.1", port,
                                          reuse_address=True)
    except OSError as e:
        raise OperationFailed(f"unable to listen on 127.0.0.1:{port}: {(e.strerror or str(e)).lower()}") from None
