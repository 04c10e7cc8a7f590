"""Gate: the fault switch (services/fault.py) for servers built on a library's asyncio protocol.

The line servers and mshttpd apply the switch in `Service.admit` before their session starts. The
dispatcher (aiosmtpd) hands each connection to the library's protocol object instead, so a Gate
stands in front of it for the first moment of the connection:

    no fault   the library's protocol takes the transport at once (`set_protocol`)
    crash      the process exits abnormally (status 70)
    hang       reading is paused and nothing is ever sent; the connection stays open
    slow N     reading is paused; after N seconds the library's protocol takes over

Held connections are closed when the server stops (`GateKeeper.close_held`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from msgsrv.services.fault import CRASH_STATUS


class GateKeeper:
    """Per server process: makes a Gate for each accepted connection, remembers the held ones."""

    def __init__(self, service):
        self.service = service
        self.held: set[asyncio.BaseTransport] = set()

    def factory(self, inner: Callable[[], asyncio.BaseProtocol]) -> Callable[[], Gate]:
        """A protocol factory for loop.create_server: Gates in front of INNER's protocols."""
        return lambda: Gate(self, inner)

    def close_held(self) -> None:
        for transport in list(self.held):
            transport.close()
        self.held.clear()


class Gate(asyncio.Protocol):
    def __init__(self, keeper: GateKeeper, inner: Callable[[], asyncio.BaseProtocol]):
        self.keeper = keeper
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        service = self.keeper.service
        fault = service.fault.current()
        if fault is None:
            self._hand_over()
            return
        if fault.mode == "crash":
            service.log("fault injection: crash requested, exiting abnormally", "Error")
            os._exit(CRASH_STATUS)
        transport.pause_reading()
        self.keeper.held.add(transport)
        if fault.mode == "slow":
            self.timer = asyncio.get_running_loop().call_later(fault.seconds, self._hand_over)
        # hang: keep the connection, never answer it

    def _hand_over(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        held = transport in self.keeper.held
        self.keeper.held.discard(transport)
        protocol = self.inner()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if held:
            transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        """Reading is paused while the connection is held: nothing arrives here."""

    def eof_received(self) -> bool:
        return False  # the client gave up waiting: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.keeper.held.discard(self.transport)
