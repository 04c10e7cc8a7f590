"""DispatcherService: the SMTP and LMTP servers of the MTA, `dispatcher` (SPEC §3), on aiosmtpd.

- SMTP (RFC 5321) on `service.smtp.port`, LMTP (RFC 2033) on `service.lmtp.port`.
- RCPT is accepted for users in the users file (local part of the address, or the whole
  address): others get `550 5.1.1`.
- DATA is delivered into each recipient's INBOX in the store (msgsrv/store/mailbox.py), with a
  `Return-Path:` and a `Received:` trace field in front (RFC 5321 §4.4). SMTP answers once for
  the transaction; LMTP answers once per recipient (RFC 2033 §4.2).
- Each delivery is published to the event service (ens, when `local.ens.enable`) as
  `PUBLISH newmail <user> INBOX <uid>`; an ens that does not answer is skipped.

Protocol errors are aiosmtpd's replies (500 unknown command or line too long, 501 syntax,
503 bad sequence, 552 too much data). Messages are limited to 10 MiB. The fault switch applies
to both ports: on `hang` no banner is ever sent, `slow N` delays the banner.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

from msgsrv.services.base import STOP_GRACE, Service
from msgsrv.services.fault import CRASH_STATUS

MAX_MESSAGE = 10 * 1024 * 1024
ENS_RETRY = 30.0  # seconds before trying an unreachable ens again


class DeliveryHandler:
    """aiosmtpd handler: recipients must be users; DATA goes into the store."""

    def __init__(self, service: DispatcherService, protocol: str):
        self.service = service
        self.protocol = protocol  # "SMTP" | "LMTP"

    def user_for(self, address: str) -> str | None:
        from msgsrv.store.users import Users

        users = Users(self.service.root)
        address = address.strip().strip("<>")
        for candidate in (address, address.rpartition("@")[0]):
            if candidate and users.exists(candidate):
                return candidate
        return None

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options: list) -> str:
        if self.user_for(address) is None:
            return f"550 5.1.1 <{address}>: no such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    def trace(self, session, envelope) -> bytes:
        from email.utils import formatdate

        peer = session.peer[0] if session.peer else "unknown"
        helo = session.host_name or "unknown"
        with_ = "LMTP" if self.protocol == "LMTP" else ("ESMTP" if session.extended_smtp else "SMTP")
        return (f"Return-Path: <{envelope.mail_from or ''}>\r\n"
                f"Received: from {helo} ([{peer}])\r\n\tby {self.service.hostname} (msgsrv dispatcher)"
                f" with {with_};\r\n\t{formatdate(localtime=True)}\r\n").encode("utf-8", "replace")

    async def handle_DATA(self, server, session, envelope) -> str:
        self.service.in_flight += 1
        self.service.quiet.clear()
        try:
            data = self.trace(session, envelope) + envelope.content
            replies = []
            for rcpt in envelope.rcpt_tos:
                user = self.user_for(rcpt)
                try:
                    if user is None:
                        raise LookupError("no such user")
                    uid = self.service.store.deliver(user, data)
                except Exception as e:  # one recipient's failure must not lose the others
                    self.service.log(f"delivery to {rcpt} failed: {e}", "Error")
                    replies.append(f"451 4.3.0 <{rcpt}>: delivery failed, try again later")
                    continue
                self.service.announce(user, uid)
                replies.append(f"250 2.0.0 <{rcpt}> delivered")
            if self.protocol == "LMTP":
                return "\r\n".join(replies)  # RFC 2033 §4.2: one reply per accepted recipient
            if all(r.startswith("250") for r in replies):
                return f"250 2.0.0 OK: delivered to {len(replies)} recipient(s)"
            return "451 4.3.0 delivery failed for some recipients, try again later"
        finally:
            self.service.in_flight -= 1
            if not self.service.in_flight:
                self.service.quiet.set()


def protocol_class(base: type) -> type:
    """BASE (aiosmtpd SMTP or LMTP) with the fault switch applied when a client connects."""

    class FaultAware(base):
        held = False

        def connection_made(self, transport) -> None:
            service: DispatcherService = self.event_handler.service
            service.connections.add(self)
            fault = service.fault.current()
            if fault is None:
                return super().connection_made(transport)
            if fault.mode == "crash":
                service.log("fault injection: crash requested, exiting abnormally", "Error")
                os._exit(CRASH_STATUS)
            self.held = True
            self.transport = transport
            if fault.mode == "slow":
                self.loop.call_later(fault.seconds, self._late_start, transport)
            # hang: keep the connection, never send the banner

        def _late_start(self, transport) -> None:
            if transport.is_closing():
                return
            self.held = False
            super().connection_made(transport)

        def connection_lost(self, error) -> None:
            self.event_handler.service.connections.discard(self)
            if self.held:
                return
            super().connection_lost(error)

    FaultAware.__name__ = base.__name__
    return FaultAware


class DispatcherService(Service):
    component = "dispatcher"

    def __init__(self, root):
        super().__init__(root)
        from msgsrv.store.mailbox import Store

        self.store = Store(root)
        self.hostname = socket.gethostname()  # not getfqdn(): no DNS wait at start-up
        self.in_flight = 0
        self.quiet = asyncio.Event()  # set while no DATA reply is in flight
        self.quiet.set()
        self.connections: set = set()
        self.ens_writer: asyncio.StreamWriter | None = None
        self.ens_retry_at = 0.0
        self.ens_enabled = self.config.get_bool("local.ens.enable")

    async def bind(self) -> None:
        from aiosmtpd.lmtp import LMTP
        from aiosmtpd.smtp import SMTP

        loop = asyncio.get_running_loop()
        host = self.public_host()
        for base, parameter in ((SMTP, "service.smtp.port"), (LMTP, "service.lmtp.port")):
            cls = protocol_class(base)
            handler = DeliveryHandler(self, "LMTP" if base is LMTP else "SMTP")
            sock = self.bound(host, self.port(parameter))

            def factory(cls=cls, handler=handler):
                return cls(handler, data_size_limit=MAX_MESSAGE, hostname=self.hostname,
                           ident=f"msgsrv {self.daemon}", timeout=300, loop=loop)  # RFC 5321 §4.5.3.2.7

            self.servers.append(await loop.create_server(factory, sock=sock))

    # -- ens: tell subscribers about new mail ----------------------------------------------------
    def announce(self, user: str, uid: int) -> None:
        if not self.ens_enabled:
            return
        if self.ens_writer is not None and not self.ens_writer.is_closing():
            self.ens_writer.write(f"PUBLISH newmail {user} INBOX {uid}\r\n".encode())
            return
        if time.monotonic() >= self.ens_retry_at:
            self.ens_retry_at = time.monotonic() + ENS_RETRY
            asyncio.get_running_loop().create_task(self._ens_connect(f"PUBLISH newmail {user} INBOX {uid}\r\n"))

    async def _ens_connect(self, first: str) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port("local.ens.port")), 2.0)
        except (OSError, TimeoutError):
            return
        self.ens_writer = writer
        writer.write(first.encode())
        try:
            while await reader.readline():  # answers are not needed: drain them
                pass
        except OSError:
            pass
        writer.close()
        self.ens_writer = None

    async def drain(self) -> None:
        for server in self.servers:
            server.close()
        try:
            await asyncio.wait_for(self.quiet.wait(), STOP_GRACE)  # a DATA reply in flight
        except TimeoutError:
            pass
        for proto in list(self.connections):
            if proto.transport is not None:
                proto.transport.close()
        if self.ens_writer is not None:
            self.ens_writer.close()


SERVICE = DispatcherService
