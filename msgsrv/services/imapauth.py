"""The not-authenticated commands of imapd (RFC 3501 §6.2): STARTTLS, LOGIN and AUTHENTICATE PLAIN
(RFC 4616, with the SASL-IR initial response of RFC 4959), as a mixin of ImapSession.

Passwords are checked against config/users.toml (store/users.py, through the service's
VerifiedLogins, off the event loop). A failure is answered after the delay the service's
LoginThrottle gives the source address (services/authlimit.py); the third failure on a connection
closes it; failures are logged at the 1st, 2nd, 4th, 8th ... from an address, never with the
password. With `local.requiretls yes` LOGIN and AUTHENTICATE wait for TLS.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ssl

from msgsrv.services.authlimit import MAX_PER_CONNECTION
from msgsrv.services.imapreply import ANSWERED, Bad, Refused


class AuthCommands:
    """Mixin: needs self.service, self.store, self.reader/writer, self.tls, send/flush/read_raw_line."""

    # -- not authenticated (RFC 3501 §6.2) -------------------------------------------------------------
    async def cmd_STARTTLS(self, tag, args):
        if self.tls:
            raise Bad("TLS is already active")
        context = self.service.tls_context
        if context is None:
            raise Refused("TLS is not available")
        # RFC 3501 §6.2.1 / RFC 2595 §3.1: nothing the client sent in the clear may count after the
        # handshake; drop what it pipelined behind STARTTLS.
        pending = getattr(self.reader, "_buffer", None)
        if pending:
            pending.clear()
        self.send(f"{tag} OK Begin TLS negotiation now")
        await self.flush()
        try:
            await self.writer.start_tls(context, ssl_handshake_timeout=30)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as e:
            self.service.log(f"STARTTLS handshake with {self.peer} failed: {e}", "Warning")
            self.done = True
            return ANSWERED
        self.tls = True
        return ANSWERED

    async def cmd_LOGIN(self, tag, args):
        self.want(args, 2, "LOGIN user password")
        if not self.login_allowed():
            raise Refused("[PRIVACYREQUIRED] LOGIN needs TLS: use STARTTLS first")
        if isinstance(args[0], list) or isinstance(args[1], list):
            raise Bad("usage: LOGIN user password")
        return await self.authenticate(str(args[0]), str(args[1]))

    async def cmd_AUTHENTICATE(self, tag, args):
        if not args or len(args) > 2 or isinstance(args[0], list):
            raise Bad("usage: AUTHENTICATE mechanism [initial-response]")
        if str(args[0]).upper() != "PLAIN":
            raise Refused("[CANNOT] unsupported authentication mechanism")
        if not self.login_allowed():
            raise Refused("[PRIVACYREQUIRED] AUTHENTICATE needs TLS: use STARTTLS first")
        if len(args) == 2:  # RFC 4959 SASL-IR; "=" is an empty response
            response = b"" if str(args[1]) == "=" else str(args[1]).encode("ascii", "replace")
        else:
            self.send("+ ")
            await self.flush()
            line = await self.read_raw_line(tag)
            if line is None:
                self.done = True
                return ANSWERED
            if line == b"*":
                raise Bad("AUTHENTICATE cancelled")
            response = line
        try:
            decoded = base64.b64decode(response, validate=True)
        except (binascii.Error, ValueError):
            raise Bad("invalid base64 in AUTHENTICATE response") from None
        fields = decoded.split(b"\0")
        if len(fields) != 3:
            raise Bad("malformed PLAIN response")
        authzid, user, password = (f.decode("utf-8", "surrogateescape") for f in fields)
        if authzid and authzid != user:
            raise Refused("[AUTHORIZATIONFAILED] cannot act as another user")
        return await self.authenticate(user, password)

    async def authenticate(self, user: str, password: str) -> str:
        service = self.service
        if not await asyncio.to_thread(service.logins.verify, user, password):
            self.failed_logins += 1
            delay = service.throttle.failed(self.address)
            count = service.throttle.failures(self.address)
            if count & (count - 1) == 0:  # 1, 2, 4, 8, ...: rate-limited log
                service.log(f"login failed for {user[:64]!r} from {self.peer} ({count} failures from this address)",
                            "Warning")
            await asyncio.sleep(delay)
            if self.failed_logins >= MAX_PER_CONNECTION:
                self.bye = "too many failed logins"
            raise Refused("[AUTHENTICATIONFAILED] Authentication failed")  # RFC 5530
        service.throttle.succeeded(self.address)
        self.store.mailbox(user).ensure()
        self.user = user
        return f"[CAPABILITY {self.capabilities()}] Logged in"
