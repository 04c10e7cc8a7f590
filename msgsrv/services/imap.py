"""ImapService: the IMAP4rev1 server `imapd` (RFC 3501 subset), on `service.imap.port`.

Enough for Python's imaplib and simple mail clients:

- any state: CAPABILITY, NOOP, LOGOUT
- not authenticated: LOGIN (users file, scrypt); AUTHENTICATE is refused with NO
- authenticated: SELECT, EXAMINE, CREATE, DELETE, LIST, LSUB, SUBSCRIBE, UNSUBSCRIBE, STATUS,
  APPEND
- selected: CHECK, CLOSE, UNSELECT (RFC 3691), EXPUNGE, SEARCH (flag keys, ALL, sequence and
  UID sets), FETCH, STORE, COPY and their UID forms

FETCH items: FLAGS, UID, RFC822, RFC822.SIZE, RFC822.HEADER, RFC822.TEXT, INTERNALDATE,
BODY[] / BODY[HEADER] / BODY[TEXT] and their BODY.PEEK forms, macros FAST and ALL (= FAST).
Only system flags are permanent (PERMANENTFLAGS); other keywords are accepted and dropped.

Command lines are limited to 8 KiB (RFC 7162 §4); literals (`{n}`, and `{n+}`, RFC 7888) to
8 KiB except in APPEND (10 MiB). Errors are `<tag> BAD ...` (syntax, unknown command) or
`<tag> NO ...` (refused); after 10 errors in a row, or 30 minutes idle (RFC 3501 §5.4), the
server says `* BYE` and closes.
"""

from __future__ import annotations

import asyncio
import re
import time

from msgsrv.services.base import MAX_LINE, LineSession, LineTooLong, Service
from msgsrv.services.imapsyntax import (
    LITERAL_MARK,
    Str,
    SyntaxProblem,
    quote,
    sequence_set,
    tokenize,
    wildcard_match,
)
from msgsrv.store.mailbox import MailboxError

CAPABILITIES = "IMAP4rev1 LITERAL+ UNSELECT"
MAX_LITERAL = MAX_LINE
MAX_APPEND = 10 * 1024 * 1024
LITERAL_RE = re.compile(rb"\{(\d{1,10})(\+?)\}$")
FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
FLAG_NAMES = {f.upper(): f for f in FLAGS}
TAG_RE = re.compile(r"^[!#$&',\-./0-9:;<=>?@A-Z\[\]^_`a-z|~]{1,64}$")  # RFC 3501 §9 tag: no ( ) { % * " \ +
BODY_ITEMS = {
    "RFC822": ("RFC822", "", False), "RFC822.HEADER": ("RFC822.HEADER", "HEADER", True),
    "RFC822.TEXT": ("RFC822.TEXT", "TEXT", False),
    "BODY[]": ("BODY[]", "", False), "BODY.PEEK[]": ("BODY[]", "", True),
    "BODY[HEADER]": ("BODY[HEADER]", "HEADER", False), "BODY.PEEK[HEADER]": ("BODY[HEADER]", "HEADER", True),
    "BODY[TEXT]": ("BODY[TEXT]", "TEXT", False), "BODY.PEEK[TEXT]": ("BODY[TEXT]", "TEXT", True),
}
SEARCH_FLAG_KEYS = {
    "SEEN": ("\\Seen", True), "UNSEEN": ("\\Seen", False), "DELETED": ("\\Deleted", True),
    "UNDELETED": ("\\Deleted", False), "FLAGGED": ("\\Flagged", True), "UNFLAGGED": ("\\Flagged", False),
    "ANSWERED": ("\\Answered", True), "UNANSWERED": ("\\Answered", False), "DRAFT": ("\\Draft", True),
    "UNDRAFT": ("\\Draft", False),
}


class Refused(Exception):
    """A command failed: `<tag> NO <text>`."""


class Bad(Exception):
    """A command is malformed: `<tag> BAD <text>`."""


def _section(data: bytes, part: str) -> bytes:
    """RFC 3501 §6.4.5: HEADER is up to and including the blank line, TEXT what follows."""
    if not part:
        return data
    end = data.find(b"\r\n\r\n")
    head, text = (data, b"") if end < 0 else (data[:end + 4], data[end + 4:])
    return head if part == "HEADER" else text


def _flag_list(flags) -> str:
    return "(" + " ".join(sorted(flags)) + ")"


def _internaldate(path) -> str:
    try:
        t = path.stat().st_mtime
    except OSError:
        t = time.time()
    return time.strftime('"%d-%b-%Y %H:%M:%S %z"', time.localtime(t))


class ImapSession(LineSession):
    idle_timeout = 30 * 60.0  # RFC 3501 §5.4: at least 30 minutes

    def __init__(self, *args):
        super().__init__(*args)
        self.user: str | None = None
        self.box = None  # the selected Mailbox
        self.view: list[int] = []  # UID of each message sequence number (index + 1)
        self.readonly = False
        self.literals: list[bytes] = []

    # -- framing: a command may span lines through literals (RFC 3501 §4.3, §7.5) ----------------
    async def read_command(self) -> str | None:
        self.literals = []
        line = await self.read_line()
        if line is None:
            return None
        parts = []
        while True:
            if b"\0" in line:
                return "\0"  # NUL is never valid: parse() reports it
            m = LITERAL_RE.search(line)
            if m is None:
                parts.append(line.decode("utf-8", "surrogateescape"))
                return "".join(parts)
            size, nonsync = int(m.group(1)), bool(m.group(2))
            limit = MAX_APPEND if b" APPEND " in line.upper() or (parts and " APPEND " in parts[0].upper()) \
                else MAX_LITERAL
            if size > limit:
                if nonsync:  # the data is already on its way: no way to resynchronize
                    self.send(f"* BYE literal too large (more than {limit} octets)")
                    return None
                raise LineTooLong()
            parts.append(line[:m.start()].decode("utf-8", "surrogateescape"))
            parts.append(f"{LITERAL_MARK}{len(self.literals)}{LITERAL_MARK}")
            if not nonsync:
                self.send("+ Ready for literal data")
                await self.flush()
            self.literals.append(await self.reader.readexactly(size))
            line = await self.read_line()
            if line is None:
                return None

    def parse(self, line: str):
        tag, _, rest = line.partition(" ")
        if not TAG_RE.match(tag):
            return None, None, ""
        verb, _, args = rest.strip().partition(" ")
        return tag, (verb or None), args

    async def dispatch(self, line: str) -> None:
        tag, verb, rest = self.parse(line)
        if tag is None:
            self.protocol_error(None, "command line not understood (missing or invalid tag)")
            return
        if verb is None:
            self.protocol_error(tag, "missing command")
            return
        method = getattr(self, f"cmd_{verb.upper()}", None) if verb.isalpha() else None
        if method is None:
            self.protocol_error(tag, f"unknown command {verb[:40]!r}")
            return
        try:
            args = tokenize(rest, self.literals)
            await method(tag, args)
            self.errors = 0
        except (Bad, SyntaxProblem) as e:
            self.protocol_error(tag, str(e))
        except Refused as e:
            self.send(f"{tag} NO {e}")
        except MailboxError as e:  # unknown mailbox or message, invalid name
            self.send(f"{tag} NO {e}")

    def reply_error(self, tag: str | None, text: str) -> None:
        self.send(f"{tag or '*'} BAD {text}")

    async def greet(self) -> None:
        # RFC 3501 §7.1.1: OK greeting with the capabilities as a response code
        self.send(f"* OK [CAPABILITY {CAPABILITIES}] {self.service.daemon} IMAP4rev1 server ready")

    def on_idle_timeout(self) -> None:
        self.send("* BYE autologout; idle for too long")

    def on_too_many_errors(self) -> None:
        self.send("* BYE too many errors")

    def on_shutdown(self) -> None:
        self.send("* BYE server shutting down")

    # -- state checks ------------------------------------------------------------------------------
    def need_auth(self) -> None:
        if self.user is None:
            raise Bad("log in first")

    def need_selected(self) -> None:
        self.need_auth()
        if self.box is None:
            raise Bad("no mailbox selected")

    @staticmethod
    def want(args: list, n: int, usage: str) -> None:
        if len(args) != n:
            raise Bad(f"usage: {usage}")

    @property
    def store(self):
        return self.service.store

    def mailbox_arg(self, arg) -> str:
        if isinstance(arg, list) or not str(arg):
            raise Bad("invalid mailbox name")
        return str(arg)

    # -- any state (RFC 3501 §6.1) -----------------------------------------------------------------
    async def cmd_CAPABILITY(self, tag, args) -> None:
        self.send(f"* CAPABILITY {CAPABILITIES}")
        self.send(f"{tag} OK CAPABILITY completed")

    async def cmd_NOOP(self, tag, args) -> None:
        if self.box is not None:
            self.update()
        self.send(f"{tag} OK NOOP completed")

    async def cmd_LOGOUT(self, tag, args) -> None:
        self.send(f"* BYE {self.service.daemon} logging out")
        self.send(f"{tag} OK LOGOUT completed")
        self.done = True

    # -- not authenticated (RFC 3501 §6.2) --------------------------------------------------------
    async def cmd_LOGIN(self, tag, args) -> None:
        self.want(args, 2, "LOGIN user password")
        if self.user is not None:
            raise Bad("already logged in")
        user, password = str(args[0]), str(args[1])
        from msgsrv.store.users import Users

        if not await asyncio.to_thread(Users(self.service.root).verify, user, password):
            self.service.log(f"login failed for {user[:64]!r} from {self.peer}", "Warning")
            raise Refused("[AUTHENTICATIONFAILED] Authentication failed")  # RFC 5530
        self.user = user
        self.store.mailbox(user).ensure()
        self.send(f"{tag} OK [CAPABILITY {CAPABILITIES}] LOGIN completed")

    async def cmd_AUTHENTICATE(self, tag, args) -> None:
        raise Refused("AUTHENTICATE is not supported; use LOGIN")

    # -- authenticated (RFC 3501 §6.3) -------------------------------------------------------------
    async def cmd_SELECT(self, tag, args, readonly: bool = False) -> None:
        self.need_auth()
        self.want(args, 1, "SELECT mailbox")
        self.box = None
        box = self.store.mailbox(self.user, self.mailbox_arg(args[0]))
        if not box.exists():
            raise Refused(f"no such mailbox {box.name}")
        msgs = box.messages()
        self.box, self.view, self.readonly = box, [m.uid for m in msgs], readonly
        self.send(f"* {len(msgs)} EXISTS")
        self.send("* 0 RECENT")
        self.send(f"* FLAGS {_flag_list(FLAGS)}")
        unseen = next((i for i, m in enumerate(msgs, 1) if "\\Seen" not in m.flags), None)
        if unseen is not None:
            self.send(f"* OK [UNSEEN {unseen}] first unseen")
        self.send(f"* OK [PERMANENTFLAGS {'()' if readonly else _flag_list(FLAGS)}] permanent flags")
        self.send(f"* OK [UIDVALIDITY {box.uidvalidity}] UIDs valid")
        self.send(f"* OK [UIDNEXT {box.uidnext}] predicted next UID")
        mode, verb = ("READ-ONLY", "EXAMINE") if readonly else ("READ-WRITE", "SELECT")
        self.send(f"{tag} OK [{mode}] {verb} completed")

    async def cmd_EXAMINE(self, tag, args) -> None:
        await self.cmd_SELECT(tag, args, readonly=True)

    async def cmd_CREATE(self, tag, args) -> None:
        self.need_auth()
        self.want(args, 1, "CREATE mailbox")
        self.store.create(self.user, self.mailbox_arg(args[0]).rstrip("/"))
        self.send(f"{tag} OK CREATE completed")

    async def cmd_DELETE(self, tag, args) -> None:
        self.need_auth()
        self.want(args, 1, "DELETE mailbox")
        name = self.mailbox_arg(args[0])
        if self.box is not None and self.box.name == self.store.mailbox(self.user, name).name:
            raise Refused("cannot delete the selected mailbox")
        self.store.delete(self.user, name)
        self.send(f"{tag} OK DELETE completed")

    async def cmd_LIST(self, tag, args, verb: str = "LIST") -> None:
        self.need_auth()
        self.want(args, 2, f"{verb} reference mailbox")
        ref, pattern = str(args[0]), str(args[1])
        if not pattern:
            self.send(f'* {verb} (\\Noselect) "/" ""')  # RFC 3501 §6.3.8: the delimiter
        else:
            for name in self.store.mailboxes(self.user):
                full = ref + pattern
                if wildcard_match(full, name) or (name == "INBOX" and wildcard_match(full.upper(), name)):
                    self.send(f'* {verb} (\\HasNoChildren) "/" {quote(name)}')
        self.send(f"{tag} OK {verb} completed")

    async def cmd_LSUB(self, tag, args) -> None:
        await self.cmd_LIST(tag, args, "LSUB")

    async def cmd_SUBSCRIBE(self, tag, args) -> None:
        self.need_auth()
        self.send(f"{tag} OK SUBSCRIBE completed")

    async def cmd_UNSUBSCRIBE(self, tag, args) -> None:
        self.need_auth()
        self.send(f"{tag} OK UNSUBSCRIBE completed")

    async def cmd_STATUS(self, tag, args) -> None:
        self.need_auth()
        if len(args) != 2 or not isinstance(args[1], list):
            raise Bad("usage: STATUS mailbox (items)")
        box = self.store.mailbox(self.user, self.mailbox_arg(args[0]))
        if not box.exists():
            raise Refused(f"no such mailbox {box.name}")
        msgs = box.messages()
        values = {"MESSAGES": len(msgs), "RECENT": 0, "UIDNEXT": box.uidnext, "UIDVALIDITY": box.uidvalidity,
                  "UNSEEN": sum(1 for m in msgs if "\\Seen" not in m.flags)}
        out = []
        for item in args[1]:
            key = str(item).upper()
            if key not in values:
                raise Bad(f"unknown STATUS item {key[:20]}")
            out.append(f"{key} {values[key]}")
        self.send(f"* STATUS {quote(box.name)} ({' '.join(out)})")
        self.send(f"{tag} OK STATUS completed")

    async def cmd_APPEND(self, tag, args) -> None:
        self.need_auth()
        if len(args) < 2 or not isinstance(args[-1], Str) or not self.literals:
            raise Bad("usage: APPEND mailbox [(flags)] [date] {size}")
        box = self.store.mailbox(self.user, self.mailbox_arg(args[0]))
        if not box.exists():
            raise Refused("[TRYCREATE] no such mailbox")
        flags = frozenset()
        if len(args) > 2 and isinstance(args[1], list):
            flags = frozenset(FLAG_NAMES[str(f).upper()] for f in args[1] if str(f).upper() in FLAG_NAMES)
        uid = box.deliver(self.literals[-1], flags)
        self.send(f"{tag} OK [APPENDUID {box.uidvalidity} {uid}] APPEND completed")  # RFC 4315 code

    # -- selected (RFC 3501 §6.4) ------------------------------------------------------------------
    def update(self) -> None:
        """Report messages that arrived (EXISTS) or vanished elsewhere (EXPUNGE), §7.3.1, §7.4.1."""
        now = {m.uid for m in self.box.messages()}
        for seq in range(len(self.view), 0, -1):
            if self.view[seq - 1] not in now:
                del self.view[seq - 1]
                self.send(f"* {seq} EXPUNGE")
        top = self.view[-1] if self.view else 0
        new = sorted(u for u in now if u > top)
        if new:
            self.view.extend(new)
            self.send(f"* {len(self.view)} EXISTS")

    async def cmd_CHECK(self, tag, args) -> None:
        self.need_selected()
        self.update()
        self.send(f"{tag} OK CHECK completed")

    async def cmd_CLOSE(self, tag, args) -> None:
        self.need_selected()
        if not self.readonly:
            self.box.expunge()  # RFC 3501 §6.4.2: silently, no EXPUNGE responses
        self.box, self.view = None, []
        self.send(f"{tag} OK CLOSE completed")

    async def cmd_UNSELECT(self, tag, args) -> None:
        self.need_selected()
        self.box, self.view = None, []
        self.send(f"{tag} OK UNSELECT completed")

    async def cmd_EXPUNGE(self, tag, args, uids: set[int] | None = None) -> None:
        self.need_selected()
        if self.readonly:
            raise Refused("mailbox is read-only")
        doomed = {m.uid for m in self.box.messages() if m.deleted and m.uid in self.view}
        if uids is not None:
            doomed &= uids
        gone = set(self.box.remove(doomed))
        for seq in range(len(self.view), 0, -1):  # high to low: each number stays valid (§7.4.1)
            if self.view[seq - 1] in gone:
                del self.view[seq - 1]
                self.send(f"* {seq} EXPUNGE")
        self.send(f"{tag} OK EXPUNGE completed")

    def targets(self, text, uid: bool) -> list[tuple[int, int]]:
        """(sequence number, UID) pairs named by a sequence set or, for UID commands, a UID set."""
        if isinstance(text, list) or not text:
            raise Bad("invalid sequence set")
        if not self.view and "*" in str(text):
            return []  # `1:*` in an empty mailbox names no message
        if uid:
            wanted = set(sequence_set(str(text), self.view[-1] if self.view else 0))
            return [(i, u) for i, u in enumerate(self.view, 1) if u in wanted]
        seqs = sequence_set(str(text), len(self.view))
        if seqs and (seqs[0] < 1 or seqs[-1] > len(self.view)):
            raise Bad("invalid message sequence number")
        return [(s, self.view[s - 1]) for s in seqs]

    async def cmd_FETCH(self, tag, args, uid: bool = False) -> None:
        self.need_selected()
        if len(args) != 2:
            raise Bad("usage: FETCH sequence-set items")
        items = args[1] if isinstance(args[1], list) else [args[1]]
        names = [str(i).upper() for i in items]
        if names == ["FAST"] or names == ["ALL"] or names == ["FULL"]:
            names = ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]
        for n in names:
            if n not in BODY_ITEMS and n not in ("FLAGS", "UID", "RFC822.SIZE", "INTERNALDATE"):
                raise Bad(f"unsupported FETCH item {n[:40]}")
        if uid and "UID" not in names:
            names.insert(0, "UID")
        for seq, u in self.targets(args[0], uid):
            try:
                self.send_bytes(self.fetch_one(seq, u, names))
            except MailboxError:
                continue  # expunged by another session meanwhile; reported at the next NOOP
            if self.writer.transport.get_write_buffer_size() > 256 * 1024:
                await self.flush()
        self.send(f"{tag} OK {'UID ' if uid else ''}FETCH completed")

    def fetch_one(self, seq: int, uid: int, names: list[str]) -> bytes:
        msg = self.box.message(uid)
        flags = msg.flags
        parts: list[bytes] = []
        seen = False
        data = None
        for n in names:
            if n == "UID":
                parts.append(f"UID {uid}".encode())
            elif n == "RFC822.SIZE":
                parts.append(f"RFC822.SIZE {msg.size}".encode())
            elif n == "INTERNALDATE":
                parts.append(f"INTERNALDATE {_internaldate(msg.path)}".encode())
            elif n == "FLAGS":
                parts.append(b"FLAGS")  # filled in below, after \Seen may have been set
            else:
                label, section, peek = BODY_ITEMS[n]
                if data is None:
                    data = self.box.read(uid)
                body = _section(data, section)
                parts.append(f"{label} {{{len(body)}}}\r\n".encode() + body)
                seen = seen or not peek
        if seen and not self.readonly and "\\Seen" not in flags:
            flags = self.box.set_flags(uid, add=frozenset({"\\Seen"}))  # §6.4.5: fetching the body sets \Seen
            if "FLAGS" not in names:
                parts.append(b"FLAGS")
        flag_text = f"FLAGS {_flag_list(flags)}".encode()
        parts = [flag_text if p == b"FLAGS" else p for p in parts]
        return f"* {seq} FETCH (".encode() + b" ".join(parts) + b")\r\n"

    async def cmd_STORE(self, tag, args, uid: bool = False) -> None:
        self.need_selected()
        if self.readonly:
            raise Refused("mailbox is read-only")
        if len(args) < 3:
            raise Bad("usage: STORE sequence-set (+|-)FLAGS[.SILENT] (flags)")
        mode = str(args[1]).upper()
        base = mode.removesuffix(".SILENT")
        if base not in ("FLAGS", "+FLAGS", "-FLAGS"):
            raise Bad(f"invalid STORE item {mode[:20]}")
        given = args[2] if isinstance(args[2], list) else args[2:]
        flags = frozenset(FLAG_NAMES[str(f).upper()] for f in given if str(f).upper() in FLAG_NAMES)
        for seq, u in self.targets(args[0], uid):
            try:
                if base == "FLAGS":
                    new = self.box.set_flags(u, replace=flags)
                elif base == "+FLAGS":
                    new = self.box.set_flags(u, add=flags)
                else:
                    new = self.box.set_flags(u, remove=flags)
            except MailboxError:
                continue
            if not mode.endswith(".SILENT"):
                uid_part = f"UID {u} " if uid else ""
                self.send(f"* {seq} FETCH ({uid_part}FLAGS {_flag_list(new)})")
        self.send(f"{tag} OK {'UID ' if uid else ''}STORE completed")

    async def cmd_COPY(self, tag, args, uid: bool = False) -> None:
        self.need_selected()
        self.want(args, 2, "COPY sequence-set mailbox")
        target = self.store.mailbox(self.user, self.mailbox_arg(args[1]))
        if not target.exists():
            raise Refused("[TRYCREATE] no such mailbox")
        for _seq, u in self.targets(args[0], uid):
            try:
                target.deliver(self.box.read(u), self.box.message(u).flags)
            except MailboxError:
                continue
        self.send(f"{tag} OK {'UID ' if uid else ''}COPY completed")

    async def cmd_SEARCH(self, tag, args, uid: bool = False) -> None:
        self.need_selected()
        if args and str(args[0]).upper() == "CHARSET":
            args = args[2:]
        pairs = list(enumerate(self.view, 1))
        msgs = {m.uid: m for m in self.box.messages()}
        i = 0
        while i < len(args):
            key = args[i]
            word = str(key).upper() if not isinstance(key, list) else ""
            if word == "ALL":
                pass
            elif word in SEARCH_FLAG_KEYS:
                flag, present = SEARCH_FLAG_KEYS[word]
                pairs = [(s, u) for s, u in pairs if u in msgs and (flag in msgs[u].flags) == present]
            elif word == "UID" and i + 1 < len(args):
                i += 1
                wanted = {u for _, u in self.targets(args[i], True)}
                pairs = [(s, u) for s, u in pairs if u in wanted]
            elif word and (word[0].isdigit() or word[0] == "*"):
                wanted = {s for s, _ in self.targets(key, False)}
                pairs = [(s, u) for s, u in pairs if s in wanted]
            else:
                raise Bad(f"unsupported SEARCH key {word[:20] or '(list)'}")
            i += 1
        found = " ".join(str(u if uid else s) for s, u in pairs)
        self.send(f"* SEARCH {found}".rstrip())
        self.send(f"{tag} OK {'UID ' if uid else ''}SEARCH completed")

    async def cmd_UID(self, tag, args) -> None:
        if not args:
            raise Bad("usage: UID FETCH|STORE|COPY|SEARCH|EXPUNGE ...")
        sub = str(args[0]).upper()
        if sub == "EXPUNGE":  # RFC 4315 §2.1
            self.need_selected()
            if len(args) != 2:
                raise Bad("usage: UID EXPUNGE uid-set")
            await self.cmd_EXPUNGE(tag, [], {u for _, u in self.targets(args[1], True)})
            return
        method = {"FETCH": self.cmd_FETCH, "STORE": self.cmd_STORE, "COPY": self.cmd_COPY,
                  "SEARCH": self.cmd_SEARCH}.get(sub)
        if method is None:
            raise Bad(f"unknown UID command {sub[:20]}")
        await method(tag, args[1:], uid=True)


class ImapService(Service):
    component = "imap"

    def __init__(self, root):
        super().__init__(root)
        from msgsrv.store.mailbox import Store

        self.store = Store(root)

    async def bind(self) -> None:
        await self.listen(self.port("service.imap.port"), ImapSession, self.public_host())


SERVICE = ImapService
