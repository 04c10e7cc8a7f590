"""ImapService: the IMAP4rev1 server `imapd` (RFC 3501), on `service.imap.port` (STARTTLS) and
`service.imap.sslport` (implicit TLS, "IMAPS").

Capabilities: IMAP4rev1, LITERAL+ (RFC 7888), SASL-IR (RFC 4959), AUTH=PLAIN (RFC 4616), STARTTLS,
ID (RFC 2971), IDLE (RFC 2177), UIDPLUS (RFC 4315), NAMESPACE (RFC 2342), MOVE (RFC 6851), UNSELECT
(RFC 3691), CHILDREN (RFC 3348), SPECIAL-USE (RFC 6154) and APPENDLIMIT (RFC 7889). Mailboxes are
the user's Maildir++ folders (store/mailbox.py), hierarchy delimiter `.`; users come from
config/users.toml (store/users.py).

This module frames commands (lines, literals, limits), dispatches them by state and reports
what changed in the selected mailbox before each tagged reply; the commands live in mixins:

- any state (here): CAPABILITY, NOOP, LOGOUT, ID
- not authenticated (imapauth.py): STARTTLS, LOGIN, AUTHENTICATE PLAIN. With `local.requiretls
  yes`, both are refused until TLS is on (LOGINDISABLED, RFC 3501 §6.2.3).
- authenticated: SELECT, EXAMINE, IDLE (here); CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE,
  LIST, LSUB, STATUS, APPEND, NAMESPACE (imapmailboxes.py)
- selected (imapselected.py): CHECK, CLOSE, UNSELECT, EXPUNGE, SEARCH, FETCH, STORE, COPY, MOVE
  and their UID forms; changes made by other sessions are reported before each tagged reply.

Limits (issue 13 "Hostile clients"): a line is at most 64 KiB; a command's lines and literals
together at most 64 KiB, except the message literal of APPEND (32 MiB, after login only); before
login a literal is at most 8 KiB. A synchronizing literal beyond its limit gets a tagged BAD and no
continuation; a non-synchronizing one (its octets already on the way) gets `* BYE` and the
connection is closed. Failed logins are answered after a growing delay per source address
(services/authlimit.py) and close the connection after three. Long commands give way to other
clients every few milliseconds. Errors are `<tag> BAD ...` (syntax) or `<tag> NO ...` (refused)
and never repeat client input; after 10 errors in a row, or 30 minutes idle (RFC 3501 §5.4), the
server says `* BYE` and closes.
"""

from __future__ import annotations

import asyncio
import errno
import re
import ssl
import time

from msgsrv.errors import os_reason
from msgsrv.services.authlimit import LoginThrottle
from msgsrv.services.base import LineSession, LineTooLong, Service, masked
from msgsrv.services.imapauth import AuthCommands
from msgsrv.services.imapmailboxes import MailboxCommands
from msgsrv.services.imapreply import ANSWERED, Bad, Refused
from msgsrv.services.imapselected import SelectedCommands
from msgsrv.services.imapsyntax import LITERAL_MARK, SyntaxProblem, tokenize, valid_mutf7
from msgsrv.services.imapview import SelectedView
from msgsrv.store.mailbox import SEP, MailboxError, canonical

MAX_LINE = 64 * 1024
MAX_COMMAND = 64 * 1024
MAX_PREAUTH_LITERAL = 8 * 1024
MAX_APPEND = 32 * 1024 * 1024
IDLE_POLL = 1.0  # seconds between looks at the maildir while a client idles
BASE_CAPABILITIES = ("IMAP4rev1", "LITERAL+", "ID", "IDLE", "UIDPLUS", "NAMESPACE", "MOVE", "UNSELECT",
                     "CHILDREN", "SPECIAL-USE", f"APPENDLIMIT={MAX_APPEND}")
LITERAL_RE = re.compile(rb"\{(\d{1,10})(\+?)\}$")
TAG_RE = re.compile(r"^[!#$&',\-./0-9:;<=>?@A-Z\[^_`a-z|~]{1,64}$")  # RFC 3501 §9 tag
ANY, NOT_AUTH, AUTH, SELECTED = "any", "not authenticated", "authenticated", "selected"
COMMANDS = {  # verb -> state it needs
    "CAPABILITY": ANY, "NOOP": ANY, "LOGOUT": ANY, "ID": ANY,
    "STARTTLS": NOT_AUTH, "LOGIN": NOT_AUTH, "AUTHENTICATE": NOT_AUTH,
    "SELECT": AUTH, "EXAMINE": AUTH, "CREATE": AUTH, "DELETE": AUTH, "RENAME": AUTH, "SUBSCRIBE": AUTH,
    "UNSUBSCRIBE": AUTH, "LIST": AUTH, "LSUB": AUTH, "STATUS": AUTH, "APPEND": AUTH, "NAMESPACE": AUTH,
    "IDLE": AUTH,
    "CHECK": SELECTED, "CLOSE": SELECTED, "UNSELECT": SELECTED, "EXPUNGE": SELECTED, "SEARCH": SELECTED,
    "FETCH": SELECTED, "STORE": SELECTED, "COPY": SELECTED, "MOVE": SELECTED, "UID": SELECTED,
}
NO_EXPUNGE_DURING = ("FETCH", "STORE", "SEARCH")  # RFC 3501 §7.4.1


class CommandTooLong(LineTooLong):
    """A line, literal or command exceeded its limit; TAG is the command's tag when readable."""

    def __init__(self, tag: str | None, text: str, fatal: bool = False):
        super().__init__(text)
        self.tag = tag
        self.fatal = fatal


class ImapSession(AuthCommands, MailboxCommands, SelectedCommands, LineSession):
    idle_timeout = 30 * 60.0  # RFC 3501 §5.4: at least 30 minutes

    def __init__(self, *args):
        super().__init__(*args)
        self.user: str | None = None
        self.view: SelectedView | None = None
        self.literals: list[bytes] = []
        self.tls = self.writer.get_extra_info("ssl_object") is not None
        self.failed_logins = 0
        self.bye: str | None = None  # said after the tagged reply, then the connection closes
        self.slice_start = time.monotonic()
        self.verb = ""
        self.out: list[bytes] = []  # replies not yet written: one write (one send) per flush
        self.out_size = 0

    @property
    def store(self):
        return self.service.store

    @property
    def address(self) -> str:
        return self.peer.rpartition(":")[0] or self.peer

    # -- output: gathered, written once per command ------------------------------------------------
    def send(self, text: str) -> None:
        self.send_bytes(text.encode("utf-8", "surrogateescape") + b"\r\n")

    def send_bytes(self, data: bytes) -> None:
        self.out.append(data)
        self.out_size += len(data)

    def write_out(self) -> None:
        if self.out:
            self.writer.write(b"".join(self.out))
            self.out, self.out_size = [], 0

    async def flush(self) -> None:
        self.write_out()
        await self.writer.drain()

    def close(self) -> None:
        self.write_out()
        super().close()

    # -- capabilities ------------------------------------------------------------------------------
    def login_allowed(self) -> bool:
        return self.tls or not self.service.require_tls

    def capabilities(self) -> str:
        caps = list(BASE_CAPABILITIES)
        if self.user is None:
            if not self.tls and self.service.tls_context is not None:
                caps.append("STARTTLS")
            caps += ["AUTH=PLAIN", "SASL-IR"] if self.login_allowed() else ["LOGINDISABLED"]
        return " ".join(caps)

    # -- framing: lines and literals (RFC 3501 §4.3, §7.5; RFC 7888) --------------------------------
    async def read_raw_line(self, tag: str | None = None) -> bytes | None:
        """One line without its end; None at end of input. Raises CommandTooLong past MAX_LINE."""
        try:
            raw = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as e:
            head = await self.reader.readexactly(e.consumed)
            tail = head[-16:]
            while True:
                try:
                    rest = await self.reader.readuntil(b"\n")
                    tail = (tail + rest)[-16:]
                    break
                except asyncio.LimitOverrunError as e2:
                    tail = (tail + await self.reader.readexactly(e2.consumed))[-16:]
            if tag is None:
                first = head.split(b" ", 1)[0].decode("ascii", "replace")
                tag = first if TAG_RE.match(first) else None
            nonsync = re.search(rb"\{\d+\+\}\r?\n$", tail) is not None
            raise CommandTooLong(tag, f"line too long (more than {MAX_LINE} octets)", fatal=nonsync) from None
        return raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]

    async def read_command(self) -> str | None:
        """The next command with its literals in self.literals (`\\0<n>\\0` marks in the text)."""
        self.literals = []
        line = await self.read_raw_line()
        if line is None:
            return None
        first = line.split(b" ", 2)
        tag = first[0].decode("ascii", "replace")
        tag = tag if TAG_RE.match(tag) else None
        is_append = len(first) > 1 and first[1].upper() == b"APPEND"
        parts, size = [], len(line)
        while True:
            if b"\0" in line:
                raise CommandTooLong(tag, "NUL in command")  # NUL is never valid (RFC 3501 §9)
            m = LITERAL_RE.search(line)
            if m is None:
                parts.append(line.decode("utf-8", "surrogateescape"))
                return "".join(parts)
            n, nonsync = int(m.group(1)), bool(m.group(2))
            if self.user is None:
                limit = MAX_PREAUTH_LITERAL
            elif is_append:
                limit = MAX_APPEND
            else:
                limit = MAX_COMMAND - size
            if n > limit or (not is_append and size + n > MAX_COMMAND):
                raise CommandTooLong(tag, f"literal too large (at most {max(limit, 0)} octets here)", fatal=nonsync)
            parts.append(line[:m.start()].decode("utf-8", "surrogateescape"))
            parts.append(f"{LITERAL_MARK}{len(self.literals)}{LITERAL_MARK}")
            if not nonsync:
                self.send("+ Ready for literal data")
                await self.flush()
            self.literals.append(await self.read_literal(n))
            size += n
            line = await self.read_raw_line(tag)
            if line is None:
                return None
            size += len(line)
            if size > MAX_COMMAND + (MAX_APPEND if is_append else 0):
                raise CommandTooLong(tag, "command too long", fatal=True)

    async def read_literal(self, n: int) -> bytearray:
        """N octets, read in pieces (never one buffer the client announced but did not send)."""
        buf = bytearray()
        while len(buf) < n:
            chunk = await self.reader.read(min(n - len(buf), 1 << 16))
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(buf), n)
            buf += chunk
        return buf

    # -- the loop (LineSession.run) and its hooks ---------------------------------------------------
    def on_line_too_long(self, e: LineTooLong) -> bool:
        tag, fatal = (e.tag, e.fatal) if isinstance(e, CommandTooLong) else (None, False)
        self.protocol_error(tag, str(e))
        if fatal:
            self.send("* BYE command too long, closing connection")
        return fatal

    def describe(self, line: str) -> str:
        return masked(line.replace(LITERAL_MARK, " "))

    def after_dispatch(self) -> None:
        if self.bye:
            self.send(f"* BYE {self.bye}")
            self.done = True

    def parse(self, line: str):
        tag, _, rest = line.partition(" ")
        if not TAG_RE.match(tag):
            return None, None, ""
        verb, _, args = rest.partition(" ")
        return tag, (verb or None), args

    async def dispatch(self, line: str) -> None:
        tag, verb, rest = self.parse(line)
        if tag is None:
            self.protocol_error(None, "command line not understood (missing or invalid tag)")
            return
        if verb is None:
            self.protocol_error(tag, "missing command")
            return
        verb = verb.upper()
        self.verb = verb
        state = COMMANDS.get(verb)
        if state is None:
            self.protocol_error(tag, "unknown command")
            return
        if state == NOT_AUTH and self.user is not None:
            self.protocol_error(tag, "already logged in")
            return
        if state in (AUTH, SELECTED) and self.user is None:
            self.protocol_error(tag, "log in first")
            return
        if state == SELECTED and self.view is None:
            self.protocol_error(tag, "no mailbox selected")
            return
        self.slice_start = time.monotonic()
        try:
            args = tokenize(rest, self.literals)
            result = await getattr(self, f"cmd_{verb}")(tag, args)
        except (Bad, SyntaxProblem) as e:
            self.protocol_error(tag, str(e))
            return
        except (Refused, MailboxError) as e:
            self.errors = 0
            self.sync_selected(verb)
            self.send(f"{tag} NO {e}")
            return
        except OSError as e:
            if isinstance(e, ConnectionError):
                raise  # the client went away
            # the store could not be written (a full disk, a read-only or failing one): the command
            # fails with a reason (RFC 5530), the connection and the server go on
            self.errors = 0
            full = e.errno in (errno.ENOSPC, errno.EDQUOT)
            self.service.log(f"{verb} for {self.user} failed: {e.strerror or e}", "Warning" if full else "Error")
            self.sync_selected(verb)
            self.send(f"{tag} NO [OVERQUOTA] Not enough disk space" if full
                      else f"{tag} NO [SERVERBUG] the mail store failed: {os_reason(e)}")
            return
        self.errors = 0
        if result is ANSWERED:
            return
        self.sync_selected(verb)
        self.send(f"{tag} OK {result}")

    def sync_selected(self, verb: str) -> None:
        """Tell the client what changed in the selected mailbox (RFC 3501 §5.2)."""
        if self.view is None or self.done:
            return
        try:
            lines = self.view.sync(verb not in NO_EXPUNGE_DURING)
        except MailboxError:
            self.view = None
            self.bye = "the selected mailbox was deleted"
            return
        for text in lines:
            self.send(text)

    def reply_error(self, tag: str | None, text: str) -> None:
        self.send(f"{tag or '*'} BAD {text}")

    async def greet(self) -> None:
        # RFC 3501 §7.1.1: OK greeting with the capabilities as a response code
        self.send(f"* OK [CAPABILITY {self.capabilities()}] {self.service.daemon} IMAP4rev1 server ready")

    def on_idle_timeout(self) -> None:
        self.send("* BYE autologout; idle for too long")

    def on_too_many_errors(self) -> None:
        self.send("* BYE too many errors")

    def on_shutdown(self) -> None:
        self.send("* BYE server shutting down")
        self.write_out()  # said without waiting (Service.drain)

    async def breathe(self) -> None:
        """Let other clients run after a slice of work; never buffer more than 256 KiB of replies."""
        if self.out_size + self.writer.transport.get_write_buffer_size() > 256 * 1024:
            await self.flush()
        if time.monotonic() - self.slice_start > 0.02:
            await asyncio.sleep(0)
            self.slice_start = time.monotonic()

    # -- arguments ---------------------------------------------------------------------------------
    @staticmethod
    def want(args: list, n: int, usage: str) -> None:
        if len(args) != n:
            raise Bad(f"usage: {usage}")

    def mailbox_arg(self, arg, creating: bool = False) -> str:
        """A mailbox name argument (astring), canonical; for CREATE/RENAME also a valid new name."""
        if isinstance(arg, list):
            raise Bad("invalid mailbox name")
        name = str(arg)
        if creating:
            name = name.rstrip(SEP) if name != SEP else name
            if "/" in name or not valid_mutf7(name):
                raise Refused("[CANNOT] invalid mailbox name")
        if not name or "/" in name:
            raise Refused("[NONEXISTENT] no such mailbox")
        return canonical(name)

    # -- any state (RFC 3501 §6.1) -------------------------------------------------------------------
    async def cmd_CAPABILITY(self, tag, args):
        self.send(f"* CAPABILITY {self.capabilities()}")
        return "CAPABILITY completed"

    async def cmd_NOOP(self, tag, args):
        if args:
            raise Bad("NOOP takes no arguments")
        return "NOOP completed"

    async def cmd_LOGOUT(self, tag, args):
        self.send(f"* BYE {self.service.daemon} logging out")
        self.send(f"{tag} OK LOGOUT completed")
        self.done = True
        return ANSWERED

    async def cmd_ID(self, tag, args):
        # RFC 2971: NIL or up to 30 field/value pairs; the client's values are not kept
        if len(args) != 1 or not (isinstance(args[0], list) or str(args[0]).upper() == "NIL"):
            raise Bad("usage: ID (field value ...) or ID NIL")
        if isinstance(args[0], list) and (len(args[0]) % 2 or len(args[0]) > 60):
            raise Bad("ID takes up to 30 field/value pairs")
        from msgsrv import __version__

        self.send(f'* ID ("name" "msgsrv" "version" "{__version__}")')
        return "ID completed"

    # -- authenticated (RFC 3501 §6.3) ---------------------------------------------------------------
    async def cmd_SELECT(self, tag, args, readonly: bool = False):
        self.want(args, 1, "SELECT mailbox")
        self.view = None  # RFC 3501 §6.3.1: a failed SELECT leaves no mailbox selected
        box = self.store.mailbox(self.user, self.mailbox_arg(args[0]))
        if not box.exists():
            raise Refused("[NONEXISTENT] no such mailbox")
        view = SelectedView(box, readonly)
        msgs = view.open()
        for text in view.flag_lines():
            self.send(text)
        self.send(f"* {len(view.uids)} EXISTS")
        self.send(f"* {len(view.recent)} RECENT")
        unseen = next((i for i, m in enumerate(msgs, 1) if "\\Seen" not in m.flags), None)
        if unseen is not None:
            self.send(f"* OK [UNSEEN {unseen}] First unseen.")
        self.send(f"* OK [UIDVALIDITY {box.uidvalidity}] UIDs valid")
        self.send(f"* OK [UIDNEXT {box.uidnext}] Predicted next UID")
        self.view = view
        return "[READ-ONLY] EXAMINE completed" if readonly else "[READ-WRITE] SELECT completed"

    async def cmd_EXAMINE(self, tag, args):
        return await self.cmd_SELECT(tag, args, readonly=True)

    async def cmd_IDLE(self, tag, args):
        """RFC 2177: updates as they happen until the client says DONE."""
        if args:
            raise Bad("IDLE takes no arguments")
        self.send("+ idling")
        await self.flush()
        service = self.service
        reading = asyncio.ensure_future(self.read_raw_line(tag))
        stopping = asyncio.ensure_future(service.stopping.wait())
        deadline = time.monotonic() + self.idle_timeout
        try:
            while True:
                self.sync_selected("IDLE")
                if self.bye:
                    return ANSWERED
                await self.flush()
                changed = asyncio.ensure_future(service.changed.wait())
                done, _ = await asyncio.wait({reading, stopping, changed}, timeout=IDLE_POLL,
                                             return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if reading in done:
                    line = reading.result()
                    if line is None:
                        self.done = True
                        return ANSWERED
                    if line.strip().upper() != b"DONE":
                        raise Bad("expected DONE")
                    return "IDLE terminated"
                if stopping in done or time.monotonic() > deadline:
                    self.bye = "server shutting down" if stopping in done else "autologout; idle for too long"
                    return ANSWERED
        finally:
            for task in (reading, stopping):
                if not task.done():
                    task.cancel()


class ImapService(Service):
    component = "imap"

    def __init__(self, root):
        super().__init__(root)
        from msgsrv.store.mailbox import Store
        from msgsrv.store.users import Users, VerifiedLogins

        self.store = Store(root)
        self.logins = VerifiedLogins(Users(root))
        self.throttle = LoginThrottle()
        self.require_tls = self.config.get_bool("local.requiretls")
        self.tls_context: ssl.SSLContext | None = None
        self.changed = asyncio.Event()

    def pulse(self) -> None:
        """Wake idling sessions of this process: a mailbox changed."""
        self.changed.set()
        self.changed = asyncio.Event()

    def make_tls_context(self) -> ssl.SSLContext | None:
        from msgsrv.tls import TlsError, server_context

        try:
            return server_context(self.root, self.config)
        except (TlsError, OSError) as e:
            self.log(f"TLS unavailable (no STARTTLS, no IMAPS): {e}", "Error")
            return None

    async def serve_on(self, host: str, port: int, context: ssl.SSLContext | None) -> None:
        sock = self.bound(host, port)

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.run_session(ImapSession(self, reader, writer))

        self.servers.append(await asyncio.start_server(client, sock=sock, limit=MAX_LINE + 2, ssl=context,
                                                       ssl_handshake_timeout=30 if context else None))

    async def bind(self) -> None:
        host = self.public_host()
        self.changed = asyncio.Event()
        self.tls_context = self.make_tls_context()
        await self.serve_on(host, self.port("service.imap.port"), None)
        if self.tls_context is not None and self.config.get_bool("service.imap.enablesslport"):
            await self.serve_on(host, self.port("service.imap.sslport"), self.tls_context)


SERVICE = ImapService
