"""PopService: the POP3 server `popd` (RFC 1939), on `service.pop.port` and, over implicit TLS
(RFC 8314), on `service.pop.sslport` (POP3S; `service.pop.enablesslport no` turns it off).

- AUTHORIZATION state: CAPA (RFC 2449), STLS (RFC 2595), USER, PASS, QUIT
- TRANSACTION state: STAT, LIST, UIDL, RETR, TOP, DELE, RSET, NOOP, CAPA, QUIT

The maildrop is the user's INBOX as it was at PASS. DELE only marks; the marked messages are
removed when QUIT ends the session (the UPDATE state, RFC 1939 §6); a dropped connection
removes nothing. Errors are `-ERR ...` (a bad password: `-ERR [AUTH] ...`, RFC 3206). After 10
errors in a row, or 10 minutes idle (RFC 1939 §3), the connection is closed.

Passwords: with `local.requiretls yes`, USER/PASS on a cleartext connection is refused (and CAPA
leaves USER out until STLS, RFC 2595 §4). Each wrong password is answered after a delay that grows
per source address, and the third on one connection closes it (services/logins.py).

The greeting names the process and its worker index, e.g. `+OK popd[4242] worker 2 POP3 server
ready`, so one can see which of the `service.pop.numprocesses` workers (they share the port
through SO_REUSEPORT) took a connection.
"""

from __future__ import annotations

from msgsrv.services.base import LineSession, Service
from msgsrv.store.mailbox import MailboxError

CAPABILITIES = ("UIDL", "TOP", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION msgsrv")


def dot_stuffed(data: bytes) -> bytes:
    """RFC 1939 §3: a multi-line body, lines starting with '.' doubled, ended by CRLF.CRLF."""
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class PopSession(LineSession):
    idle_timeout = 10 * 60.0  # RFC 1939 §3: at least 10 minutes

    def __init__(self, *args):
        super().__init__(*args)
        self.user_given: str | None = None
        self.user: str | None = None
        self.box = None
        self.drop = []  # Messages of the maildrop, numbered from 1
        self.deleted: set[int] = set()  # message numbers marked by DELE
        self.login_failures = 0  # wrong passwords on this connection

    async def greet(self) -> None:
        s = self.service
        self.send(f"+OK {s.daemon}[{s.pid}] worker {s.worker} POP3 server ready")

    def reply_error(self, tag, text: str) -> None:
        self.send(f"-ERR {text}")

    # -- helpers --------------------------------------------------------------------------------
    def transaction(self) -> bool:
        if self.user is None:
            self.reply_error(None, "command not valid in this state; log in with USER and PASS")
            return False
        return True

    def message_number(self, arg: str):
        """The maildrop Message numbered ARG, or None (an -ERR has been sent)."""
        if not arg.isdigit() or not 1 <= int(arg) <= len(self.drop):
            self.reply_error(None, f"no such message {arg[:20]!r}")
            return None
        n = int(arg)
        if n in self.deleted:
            self.reply_error(None, f"message {n} already deleted")
            return None
        return self.drop[n - 1]

    def live(self):
        return [(n, m) for n, m in enumerate(self.drop, 1) if n not in self.deleted]

    # -- AUTHORIZATION (RFC 1939 §4, §7) --------------------------------------------------------------
    def plaintext_refused(self) -> bool:
        """`local.requiretls yes` and this connection is not encrypted."""
        return self.service.require_tls and not self.secure

    async def cmd_CAPA(self, tag, rest: str) -> None:
        self.send("+OK capability list follows")
        if self.user is None and not self.secure:
            self.send("STLS")
        if self.user is None and not self.plaintext_refused():
            self.send("USER")  # RFC 2595 §4: not offered while plaintext passwords are refused
        for cap in CAPABILITIES:
            self.send(cap)
        self.send(".")

    async def cmd_STLS(self, tag, rest: str) -> None:
        # RFC 2595 §4: only in the AUTHORIZATION state, only once
        if self.secure:
            self.reply_error(None, "command not permitted when TLS active")
            return
        if self.user is not None or self.user_given is not None:
            self.reply_error(None, "STLS only before USER")
            return
        self.send("+OK begin TLS negotiation")
        await self.start_tls(self.service.tls_context())

    async def cmd_USER(self, tag, rest: str) -> None:
        if self.user is not None:
            self.reply_error(None, "already logged in")
            return
        if self.plaintext_refused():
            self.reply_error(None, "[AUTH] plaintext authentication disallowed on non-secure connections; use STLS")
            return
        name = rest.strip()
        if not name:
            self.protocol_error(None, "usage: USER name")
            return
        self.user_given = name
        self.send(f"+OK send PASS for {name[:64]}")

    async def cmd_PASS(self, tag, rest: str) -> None:
        if self.user is not None:
            self.reply_error(None, "already logged in")
            return
        if self.user_given is None:
            self.reply_error(None, "send USER first")
            return
        user, self.user_given = self.user_given, None
        guard, address = self.service.logins, self.peer.rpartition(":")[0]
        if not await guard.verify(user, rest, address):
            self.login_failures += 1
            if await guard.failed(user, address, self.login_failures):
                self.send("-ERR [AUTH] invalid user name or password; too many failures, closing connection")
                self.done = True
                return
            self.send("-ERR [AUTH] invalid user name or password")
            return
        try:
            self.box = self.service.store.mailbox(user).ensure()
            self.drop = self.box.messages()
        except (MailboxError, OSError) as e:
            self.send(f"-ERR [SYS/TEMP] unable to open the maildrop: {e}")  # RFC 3206
            return
        self.user = user
        self.send(f"+OK {user} has {len(self.drop)} messages ({sum(m.size for m in self.drop)} octets)")

    async def cmd_QUIT(self, tag, rest: str) -> None:
        self.done = True
        if self.user is None:
            self.send(f"+OK {self.service.daemon} signing off")
            return
        # RFC 1939 §6: the UPDATE state removes the messages marked as deleted
        uids = [self.drop[n - 1].uid for n in sorted(self.deleted)]
        gone = self.box.remove(uids) if uids else []
        left = len(self.drop) - len(self.deleted)
        if len(gone) != len(uids):
            self.send(f"-ERR some deleted messages not removed ({left} messages left)")
        else:
            self.send(f"+OK {self.service.daemon} signing off ({left} messages left)")

    # -- TRANSACTION (RFC 1939 §5) ----------------------------------------------------------------
    async def cmd_STAT(self, tag, rest: str) -> None:
        if self.transaction():
            live = self.live()
            self.send(f"+OK {len(live)} {sum(m.size for _, m in live)}")

    async def cmd_LIST(self, tag, rest: str, uidl: bool = False) -> None:
        if not self.transaction():
            return

        def value(m):
            return m.uid if uidl else m.size

        if rest.strip():
            m = self.message_number(rest.strip())
            if m is not None:
                self.send(f"+OK {rest.strip()} {value(m)}")
            return
        self.send("+OK scan listing follows")
        for n, m in self.live():
            self.send(f"{n} {value(m)}")
        self.send(".")

    async def cmd_UIDL(self, tag, rest: str) -> None:
        await self.cmd_LIST(tag, rest, uidl=True)

    async def cmd_RETR(self, tag, rest: str, lines: int | None = None) -> None:
        if not self.transaction():
            return
        m = self.message_number(rest.split()[0] if rest.split() else "")
        if m is None:
            return
        try:
            data = self.box.read(m.uid)
        except MailboxError:
            self.reply_error(None, "message vanished from the maildrop")
            return
        if lines is not None:  # TOP: the header, the blank line, then LINES lines of the body
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                body = data[end + 4:].split(b"\r\n")
                data = data[:end + 4] + b"\r\n".join(body[:lines]) + (b"\r\n" if lines and body[:lines] else b"")
        self.send(f"+OK {m.size} octets")
        self.send_bytes(dot_stuffed(data))

    async def cmd_TOP(self, tag, rest: str) -> None:
        args = rest.split()
        if len(args) != 2 or not args[1].isdigit():
            if self.transaction():
                self.protocol_error(None, "usage: TOP msg lines")
            return
        await self.cmd_RETR(tag, args[0], lines=int(args[1]))

    async def cmd_DELE(self, tag, rest: str) -> None:
        if self.transaction() and self.message_number(rest.strip()) is not None:
            self.deleted.add(int(rest.strip()))
            self.send(f"+OK message {int(rest.strip())} deleted")

    async def cmd_RSET(self, tag, rest: str) -> None:
        if self.transaction():
            self.deleted.clear()
            self.send(f"+OK maildrop has {len(self.drop)} messages")

    async def cmd_NOOP(self, tag, rest: str) -> None:
        if self.transaction():
            self.send("+OK")


class PopService(Service):
    component = "pop"

    def __init__(self, root):
        super().__init__(root)
        from msgsrv.services.logins import LoginGuard
        from msgsrv.store.mailbox import Store

        self.store = Store(root)
        self.logins = LoginGuard(self)
        self.require_tls = self.config.get_bool("local.requiretls")

    async def bind(self) -> None:
        context = self.tls_context()  # STLS needs it too: a certificate that cannot load stops the start
        await self.listen(self.port("service.pop.port"), PopSession, self.public_host())
        if self.config.get_bool("service.pop.enablesslport"):
            await self.listen(self.port("service.pop.sslport"), PopSession, self.public_host(), tls=context)


SERVICE = PopService
