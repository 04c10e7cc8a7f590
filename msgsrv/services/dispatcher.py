"""DispatcherService: the SMTP and LMTP servers of the MTA, `dispatcher` (SPEC §3), on aiosmtpd.

Listeners (all share the fault switch: on `hang` no banner is ever sent, `slow N` delays it):

- SMTP (RFC 5321) on `service.smtp.port`: STARTTLS (RFC 3207), AUTH PLAIN/LOGIN (RFC 4954;
  with `local.requiretls yes` only after STARTTLS), PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME,
  SMTPUTF8, SIZE.
- SMTP submission over implicit TLS (RFC 8314) on `service.smtp.sslport` (SMTPS;
  `service.smtp.enablesslport no` turns it off): the same, and AUTH is required before MAIL.
- LMTP (RFC 2033) on `service.lmtp.port`: STARTTLS, PIPELINING, ENHANCEDSTATUSCODES (§5).

Recipients (RCPT): `postmaster`, with or without a domain, is always accepted (RFC 5321 §4.5.1)
and delivered to the store user `postmaster`. Otherwise the domain must be local, that is
`service.defaultdomain` (empty: the host name), one of `local.domains`, the host name or
localhost; any other domain is refused with `550 5.7.1` whoever asks (no open relay: the suite
delivers locally only). A local address names a user of the users file (the local part, or the
whole address): others get `550 5.1.1`. A transaction takes at most MAX_RECIPIENTS recipients
(`452 4.5.3` beyond), and a user named more than once gets the message once.

DATA is delivered into each recipient's INBOX in the store (msgsrv/store/mailbox.py), with a
`Return-Path:` (`<>` for the null sender) and a `Received:` trace field in front (RFC 5321
§4.4, `with` as in RFC 3848). SMTP answers once for the transaction; LMTP once per accepted
recipient (RFC 2033 §4.2). Deliveries run in a thread, so the fsyncs of concurrent clients
overlap. Each delivery is published to the event service (ens, when `local.ens.enable`) as
`PUBLISH newmail <user> INBOX <uid>`; an ens that does not answer is skipped.

Every 2xx/4xx/5xx reply but the banner and the EHLO/LHLO answer carries an enhanced status code
(RFC 2034), aiosmtpd's own replies included. Wrong AUTH passwords are answered after a delay that
grows per source address; the third on one connection closes it (services/logins.py). Messages
are limited to 10 MiB.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import re
import socket
import time
import warnings

from msgsrv.services.base import STOP_GRACE, Service

MAX_MESSAGE = 10 * 1024 * 1024
MAX_RECIPIENTS = 100  # RFC 5321 §4.5.3.1.8: at least 100 must be accepted; more get 452
ENS_RETRY = 30.0  # seconds before trying an unreachable ens again
POSTMASTER = "postmaster"  # the store user that receives postmaster mail

_ENHANCED = re.compile(r"^\d{3}[ -]\d\.\d{1,3}\.\d{1,3}(\s|$)")
# RFC 3463 codes for aiosmtpd's replies that lack one (by reply code; 250 depends on the command)
_DEFAULT_ENHANCED = {
    "221": "2.0.0", "220": "2.0.0", "235": "2.7.0", "252": "2.0.0",
    "421": "4.3.0", "450": "4.2.0", "451": "4.3.0", "452": "4.3.1", "454": "4.7.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4", "530": "5.7.0",
    "535": "5.7.8", "538": "5.7.11", "550": "5.0.0", "552": "5.3.4", "553": "5.1.3", "554": "5.0.0",
    "555": "5.5.4",
}
_ENHANCED_250 = {"MAIL": "2.1.0", "RCPT": "2.1.5"}
# `<dot-atom@dot-atom>` or `<>`, then the parameters: the paths nearly every client sends (RFC 5321
# §4.1.2); anything else goes to aiosmtpd's full parser (the email package's)
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(rf"\s*<((?:{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)?)>(.*)", re.S)


def with_enhanced_code(reply: str, command: str) -> str:
    """REPLY with an RFC 3463 enhanced status code after the reply code when it has none."""
    if len(reply) < 4 or reply[0] not in "245" or _ENHANCED.match(reply):
        return reply
    code = reply[:3]
    enhanced = _ENHANCED_250.get(command, "2.0.0") if code == "250" else _DEFAULT_ENHANCED.get(code)
    if enhanced is None:
        enhanced = f"{code[0]}.0.0"
    text = reply[4:]
    return f"{reply[:4]}{enhanced}{' ' + text if text else ''}"


class DeliveryHandler:
    """aiosmtpd handler: recipients must be local; AUTH against the users file; DATA into the store."""

    def __init__(self, service: DispatcherService, protocol: str):
        self.service = service
        self.protocol = protocol  # "SMTP" | "LMTP"

    # -- EHLO / LHLO ----------------------------------------------------------------------------
    async def handle_EHLO(self, server, session, envelope, hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        head, last = responses[:-1], responses[-1]
        if self.protocol == "LMTP":
            head = [r for r in head if not r.startswith("250-AUTH")]  # LMTP takes no AUTH
        return head + ["250-PIPELINING", "250-ENHANCEDSTATUSCODES", last]

    # -- AUTH PLAIN / LOGIN (RFC 4954, RFC 4616), checked off the event loop ---------------------
    async def auth_PLAIN(self, server, args: list[str]):
        if len(args) == 1:
            blob = await server.challenge_auth("")
            if not isinstance(blob, bytes):
                return _auth_result(False, handled=True)  # aborted or not base64: already answered
        else:
            blob = await _b64(server, args[1])
            if blob is None:
                return _auth_result(False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await server.push("501 5.5.2 cannot split the PLAIN credentials")
            return _auth_result(False, handled=True)
        return await self._check(server, parts[1], parts[2])

    async def auth_LOGIN(self, server, args: list[str]):
        if len(args) == 1:
            login = await server.challenge_auth(server.AuthLoginUsernameChallenge)
        else:
            login = await _b64(server, args[1])
        if not isinstance(login, bytes):
            return _auth_result(False, handled=True)
        password = await server.challenge_auth(server.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return _auth_result(False, handled=True)
        return await self._check(server, login, password)

    async def _check(self, server, login: bytes, password: bytes):
        user = login.decode("utf-8", "replace")
        address = _peer_address(server.session)
        guard = self.service.logins
        if await guard.verify(user, password.decode("utf-8", "replace"), address):
            return _auth_result(True, auth_data=user)
        session = server.session
        session.auth_failures = getattr(session, "auth_failures", 0) + 1
        if await guard.failed(user, address, session.auth_failures, what="AUTH"):
            await server.push("421 4.7.0 too many authentication failures, closing connection")
            server.transport.close()
            return _auth_result(False, handled=True)
        return _auth_result(False, handled=False)  # aiosmtpd answers 535 5.7.8

    # -- MAIL / RCPT ---------------------------------------------------------------------------------
    async def handle_MAIL(self, server, session, envelope, address: str, mail_options: list[str]) -> str:
        envelope.mail_from = address  # "<>" for the null reverse-path (RFC 5321 §4.5.5)
        envelope.mail_options.extend(mail_options)
        envelope.rcpt_users = []
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options: list) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 too many recipients (at most {MAX_RECIPIENTS} per message)"
        user, refusal = self.service.recipient(address)
        if user is None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.rcpt_users.append(user)
        return "250 2.1.5 OK"

    # -- DATA ----------------------------------------------------------------------------------------
    def trace(self, server, session, envelope) -> bytes:
        from email.utils import formatdate

        peer = _peer_address(session)
        helo = session.host_name or "unknown"
        with_ = "LMTP" if self.protocol == "LMTP" else ("ESMTP" if session.extended_smtp else "SMTP")
        if _secure(server):
            with_ += "S"
        if session.authenticated:
            with_ += "A"  # RFC 3848: ESMTPA, ESMTPSA
        reverse_path = "" if envelope.mail_from == "<>" else envelope.mail_from
        return (f"Return-Path: <{reverse_path}>\r\n"
                f"Received: from {helo} ([{peer}])\r\n\tby {self.service.hostname} (msgsrv dispatcher)"
                f" with {with_};\r\n\t{formatdate(localtime=True)}\r\n").encode("utf-8", "replace")

    async def handle_DATA(self, server, session, envelope) -> str:
        service = self.service
        service.in_flight += 1
        service.quiet.clear()
        try:
            data = self.trace(server, session, envelope) + envelope.content
            users = list(dict.fromkeys(envelope.rcpt_users))  # each user once, in order
            results = await asyncio.to_thread(service.deliver, users, data)
            for user, uid in results.items():
                if uid is not None:
                    service.announce(user, uid)
            replies = []
            for rcpt, user in zip(envelope.rcpt_tos, envelope.rcpt_users, strict=True):
                if results.get(user) is None:
                    replies.append(f"451 4.3.0 <{rcpt}>: delivery failed, try again later")
                else:
                    replies.append(f"250 2.0.0 <{rcpt}> delivered")
            if self.protocol == "LMTP":
                return "\r\n".join(replies)  # RFC 2033 §4.2: one reply per accepted recipient
            if all(r.startswith("250") for r in replies):
                return f"250 2.0.0 OK: delivered to {len(users)} recipient(s)"
            return "451 4.3.0 delivery failed for some recipients, try again later"
        finally:
            service.in_flight -= 1
            if not service.in_flight:
                service.quiet.set()

    async def handle_exception(self, error: Exception) -> str:
        self.service.log(f"{self.protocol} session error: {type(error).__name__}: {error}", "Error")
        return "451 4.3.0 local error in processing"


def _auth_result(success: bool, handled: bool = False, auth_data=None):
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=success, handled=handled, auth_data=auth_data)


async def _b64(server, text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (binascii.Error, ValueError):
        await server.push("501 5.5.2 cannot decode base64")
        return None


def _peer_address(session) -> str:
    return session.peer[0] if session.peer else "unknown"


def _stamp(path) -> tuple:
    """What changes when the file at PATH is written or replaced; () when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return st.st_ino, st.st_mtime_ns, st.st_size


def _secure(server) -> bool:
    return server.transport is not None and server.transport.get_extra_info("ssl_object") is not None


async def read_data(reader: asyncio.StreamReader, size_limit: int, line_limit: int) -> tuple[bytes, str]:
    """The message of a DATA command (RFC 5321 §4.1.1.4), dot-stuffing undone (§4.5.2).

    Returns (content, '') or (b'', the error reply) when the message is over SIZE_LIMIT octets
    (552) or has a line over LINE_LIMIT octets with its CRLF (500); either way the whole message
    has been read up to its terminating `.` line. It reads up to each `.CRLF` (a few large reads,
    not one await per line, which is what aiosmtpd's own loop costs) and checks that a CRLF
    comes before it; the CRLF that ended the DATA command counts for a message that is empty.
    """
    buf = bytearray()
    kept = 0  # octets dropped from the front of buf once the message is known to be too big
    while True:
        try:
            buf += await reader.readuntil(b".\r\n")
        except asyncio.LimitOverrunError as e:  # no ".\r\n" within the reader's limit yet
            buf += await reader.readexactly(e.consumed)
        else:
            if len(buf) + kept == 3 or buf[-5:-3] == b"\r\n":
                break
        if size_limit and kept + len(buf) > size_limit + 5:
            kept += len(buf) - 5  # RFC 5321 §4.5.3.1.7: read it all, keep none of it
            del buf[:-5]
    if kept:
        return b"", "552 5.3.4 Error: too much mail data"
    content = bytes((b"\r\n" + buf[:-3]).replace(b"\r\n.", b"\r\n")[2:])
    if size_limit and len(content) > size_limit:
        return b"", "552 5.3.4 Error: too much mail data"
    if content and max(map(len, content.split(b"\r\n"))) + 2 > line_limit:
        return b"", "500 5.5.2 Line too long (see RFC5321 4.5.3.1.6)"
    return content, ""


def protocol_class(base: type) -> type:
    """BASE (aiosmtpd SMTP or LMTP) with connection tracking (for the drain) and RFC 2034 codes."""

    class Dispatched(base):
        _answering = ""  # the command whose reply is being pushed ("" before the banner is out)

        def connection_made(self, transport) -> None:
            self.event_handler.service.connections.add(self)
            super().connection_made(transport)

        def connection_lost(self, error) -> None:
            self.event_handler.service.connections.discard(self)
            super().connection_lost(error)

        async def push(self, status) -> None:
            # RFC 2034 §3: every reply but the banner and the EHLO/LHLO answer has a code
            if self._answering in ("", "EHLO", "HELO") or not isinstance(status, str):
                if not self._answering:
                    self._answering = "?"  # the banner is out
                return await super().push(status)
            lines = status.split("\r\n")
            return await super().push("\r\n".join(with_enhanced_code(line, self._answering) for line in lines))

        def _getaddr(self, arg):
            # aiosmtpd parses every MAIL/RCPT path with the email package's header parser, a fifth of
            # the dispatcher's CPU per message; the plain forms are matched here with the same result
            m = _SIMPLE_PATH.fullmatch(arg) if arg else None
            if m is None:
                return super()._getaddr(arg)
            return m.group(1) or "<>", m.group(2).lstrip()

        async def _answer(self, command: str, method, arg) -> None:
            self._answering = command
            try:
                await method(arg)
            finally:
                self._answering = "?"

        async def smtp_EHLO(self, arg):
            await self._answer("EHLO", super().smtp_EHLO, arg)

        async def smtp_HELO(self, arg):
            await self._answer("HELO", super().smtp_HELO, arg)

        async def smtp_MAIL(self, arg):
            await self._answer("MAIL", super().smtp_MAIL, arg)

        async def smtp_RCPT(self, arg):
            await self._answer("RCPT", super().smtp_RCPT, arg)

        async def smtp_DATA(self, arg):
            # aiosmtpd's checks and replies, with read_data() taking the message in
            if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
                return
            if not self.envelope.rcpt_tos:
                await self.push("503 Error: need RCPT command")
                return
            if arg:
                await self.push("501 Syntax: DATA")
                return
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            try:
                content, problem = await read_data(self._reader, self.data_size_limit, self.line_length_limit)
            except asyncio.IncompleteReadError:  # the client went away mid-message: nothing was accepted
                self.transport.close()
                return
            if problem:
                self._set_post_data_state()
                await self.push(problem)
                return
            self.envelope.content = self.envelope.original_content = content
            status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            await self.push(status)

        if base.__name__ == "LMTP":
            async def smtp_LHLO(self, arg):
                await self._answer("EHLO", super().smtp_LHLO, arg)

            async def smtp_AUTH(self, arg):
                await self.push("502 5.5.1 AUTH is not offered over LMTP")

    for name, method in vars(Dispatched).items():  # keep aiosmtpd's @syntax marks, which HELP reads
        inherited = getattr(base, name, None)
        if name.startswith("smtp_") and name != "smtp_AUTH" and inherited is not None:
            for mark in ("__smtp_syntax__", "__smtp_syntax_extended__", "__smtp_syntax_when__"):
                if hasattr(inherited, mark):
                    setattr(method, mark, getattr(inherited, mark))
    Dispatched.__name__ = base.__name__
    return Dispatched


class DispatcherService(Service):
    component = "dispatcher"

    def __init__(self, root):
        super().__init__(root)
        from msgsrv.services.gate import GateKeeper
        from msgsrv.services.logins import LoginGuard
        from msgsrv.store.mailbox import Store

        self.store = Store(root)
        self.hostname = socket.gethostname()  # not getfqdn(): no DNS wait at start-up
        self.in_flight = 0
        self.quiet = asyncio.Event()  # set while no DATA reply is in flight
        self.quiet.set()
        self.connections: set = set()
        self.gates = GateKeeper(self)
        self.logins = LoginGuard(self)
        self.ens_writer: asyncio.StreamWriter | None = None
        self.ens_retry_at = 0.0
        self.ens_enabled = self.config.get_bool("local.ens.enable")
        # (stamp of the file when read, what was read); None: not read yet. Not (): that is the stamp
        # of a missing file, and a fresh server root has no config file (every domain was refused)
        self._users: tuple[tuple | None, frozenset[str]] = (None, frozenset())
        self._domains: tuple[tuple | None, frozenset[str]] = (None, frozenset())

    async def bind(self) -> None:
        from aiosmtpd.lmtp import LMTP
        from aiosmtpd.smtp import SMTP

        logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's chatter stays off stderr
        # the SMTPS listener requires AUTH on a connection aiosmtpd cannot see is TLS: not a risk here
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
        loop = asyncio.get_running_loop()
        host = self.public_host()
        context = self.tls_context()
        require_tls = self.config.get_bool("local.requiretls")
        listeners = [(SMTP, "service.smtp.port", {"tls_context": context, "auth_require_tls": require_tls}),
                     (LMTP, "service.lmtp.port", {"tls_context": context})]
        if self.config.get_bool("service.smtp.enablesslport"):
            # implicit TLS: aiosmtpd does not see the TLS under it, so AUTH is allowed as if after STARTTLS
            listeners.append((SMTP, "service.smtp.sslport", {"auth_required": True, "auth_require_tls": False}))
        for base, parameter, options in listeners:
            cls = protocol_class(base)
            handler = DeliveryHandler(self, "LMTP" if base is LMTP else "SMTP")
            sock = self.bound(host, self.port(parameter))

            def factory(cls=cls, handler=handler, options=options):
                return cls(handler, data_size_limit=MAX_MESSAGE, hostname=self.hostname, enable_SMTPUTF8=True,
                           ident=f"msgsrv {self.daemon}", timeout=300, loop=loop, **options)  # RFC 5321 §4.5.3.2.7

            tls = context if parameter == "service.smtp.sslport" else None
            self.servers.append(await loop.create_server(self.gates.factory(factory), sock=sock, ssl=tls,
                                                         ssl_handshake_timeout=30.0 if tls else None))

    # -- recipients ----------------------------------------------------------------------------------
    def local_users(self) -> frozenset[str]:
        """The users file's names, read again only when the file changes."""
        from msgsrv.store.users import Users

        seen = _stamp(self.root.users_file)
        if seen != self._users[0]:
            self._users = (seen, frozenset(Users(self.root).list()) if seen else frozenset())
        return self._users[1]

    def local_domains(self) -> frozenset[str]:
        """service.defaultdomain (or the host name), local.domains, the host name, localhost."""
        seen = _stamp(self.root.config_file)
        if seen != self._domains[0]:
            self.config.refresh()
            names = {self.config.get_str("service.defaultdomain", ""), self.hostname, "localhost"}
            names.update(self.config.get_str("local.domains", "").replace(",", " ").split())
            self._domains = (seen, frozenset(n.lower().rstrip(".") for n in names if n))
        return self._domains[1]

    def recipient(self, address: str) -> tuple[str | None, str]:
        """(store user, '') for a deliverable ADDRESS, else (None, the refusal reply)."""
        local, at, domain = address.rpartition("@") if "@" in address else (address, "", "")
        users = self.local_users()
        if address in users:
            return address, ""
        if at and domain.lower().rstrip(".") not in self.local_domains():
            return None, f"550 5.7.1 <{address}>: relay access denied ({domain} is not a local domain)"
        if local.lower() == POSTMASTER:
            return POSTMASTER, ""  # RFC 5321 §4.5.1
        if local in users:
            return local, ""
        return None, f"550 5.1.1 <{address}>: no such user here"

    def deliver(self, users: list[str], data: bytes) -> dict[str, int | None]:
        """Store DATA in each user's INBOX (runs in a thread); user -> UID, None where it failed."""
        out: dict[str, int | None] = {}
        for user in users:
            try:
                out[user] = self.store.deliver(user, data)
            except Exception as e:  # one recipient's failure must not lose the others
                self.log(f"delivery to {user} failed: {e}", "Error")
                out[user] = None
        return out

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
        self.gates.close_held()
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
