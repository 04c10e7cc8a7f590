"""The selected-state commands of imapd (RFC 3501 §6.4, RFC 4315 UIDPLUS, RFC 6851 MOVE), as a mixin
of ImapSession (services/imap.py): CHECK, CLOSE, UNSELECT, EXPUNGE, SEARCH, FETCH, STORE, COPY,
MOVE and UID.

Each returns the text of its tagged OK or raises Bad / Refused; the session then reports what
other sessions changed (imapview.SelectedView.sync). Work over many messages gives way to other
clients between messages (`breathe`), and sequence sets are resolved against the view, never
expanded (imapsyntax.SequenceSet).
"""

from __future__ import annotations

from collections import OrderedDict

from msgsrv.services import imapfetch, imapmime
from msgsrv.services.imapreply import Bad, Refused
from msgsrv.services.imapsearch import Candidate, compile_search
from msgsrv.services.imapsyntax import compact_set
from msgsrv.services.imapview import flag_list
from msgsrv.store import maildirname
from msgsrv.store.mailbox import MailboxError

SYSTEM_FLAGS = frozenset(("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"))
_SYSTEM_BY_UPPER = {f.upper(): f for f in SYSTEM_FLAGS | {"\\Recent"}}
ATOM_SPECIALS = set('(){ %*"\\]')
EXPUNGEISSUED = "[EXPUNGEISSUED] some of the requested messages no longer exist"


def parse_flags(tokens) -> frozenset[str]:
    """Flags of STORE/APPEND: system flags in their canonical case, keywords as given."""
    out = set()
    for tok in tokens if isinstance(tokens, list) else [tokens]:
        if isinstance(tok, list):
            raise Bad("invalid flag list")
        text = str(tok)
        if text.startswith("\\"):
            flag = _SYSTEM_BY_UPPER.get(text.upper())
            if flag is None:
                raise Bad("invalid system flag")
            out.add(flag)
        elif not text or any(c in ATOM_SPECIALS or ord(c) < 33 or ord(c) > 126 for c in text):
            raise Bad("invalid keyword")
        else:
            out.add(text)
    return frozenset(out)


class StructureCache:
    """Parsed message structures by file (a maildir file's content never changes), bounded by the
    octets of the messages kept, so a session fetching big mail cannot make the cache big."""

    OCTETS = 8 << 20  # all kept messages together (a parsed tree holds about twice its message)
    LARGEST = 1 << 20  # a bigger message is parsed each time, not kept

    def __init__(self):
        self._parts: OrderedDict[tuple[str, str], tuple[imapmime.Part, int]] = OrderedDict()
        self._octets = 0

    def get(self, path, data: bytes) -> imapmime.Part:
        key = (str(path.parent.parent), maildirname.split(path.name)[0])
        hit = self._parts.get(key)
        if hit is not None:
            self._parts.move_to_end(key)
            return hit[0]
        part = imapmime.parse(data)
        if len(data) <= self.LARGEST:
            self._parts[key] = (part, len(data))
            self._octets += len(data)
            while self._octets > self.OCTETS:
                _, (_, size) = self._parts.popitem(last=False)
                self._octets -= size
        return part


STRUCTURES = StructureCache()


class SelectedCommands:
    """Mixin: needs self.view, self.store, self.user, self.service, send/send_bytes, breathe()."""

    async def cmd_CHECK(self, tag, args):
        return "CHECK completed"

    async def cmd_CLOSE(self, tag, args):
        view = self.view
        if not view.readonly:  # RFC 3501 §6.4.2: expunge silently, no EXPUNGE responses
            doomed = [m.uid for m in view.box.messages() if m.deleted and m.uid in view.flags]
            if doomed:
                view.box.remove(doomed)
                self.service.pulse()
        self.view = None
        return "CLOSE completed"

    async def cmd_UNSELECT(self, tag, args):
        self.view = None
        return "UNSELECT completed"

    async def cmd_EXPUNGE(self, tag, args, uids=None):
        view = self.view
        if view.readonly:
            raise Refused("mailbox is read-only")
        if args:
            raise Bad("EXPUNGE takes no arguments")
        doomed = [m.uid for m in view.box.messages() if m.deleted and m.uid in view.flags]
        if uids is not None:
            doomed = [u for u in doomed if u in uids]
        if doomed:
            view.box.remove(doomed)  # the EXPUNGE responses come from the sync that follows
            self.service.pulse()
        return "EXPUNGE completed"

    # -- FETCH -------------------------------------------------------------------------------------
    async def cmd_FETCH(self, tag, args, uid: bool = False):
        if len(args) != 2 or isinstance(args[0], list):
            raise Bad("usage: FETCH sequence-set items")
        items = imapfetch.parse_items(args[1])
        if uid and not any(i.kind == "UID" for i in items):
            items.insert(0, imapfetch.Item("UID"))
        view = self.view
        missing = False
        changed = False
        for seq, u in view.pairs(str(args[0]), uid):
            try:
                reply, seen_set = self.fetch_one(seq, u, items)
            except MailboxError:
                missing = True  # expunged by another session; reported at the next sync
                continue
            changed |= seen_set
            for text in view.announce(view.flags.get(u, ())):
                self.send(text)
            self.send_bytes(reply)
            await self.breathe()
        if changed:
            self.service.pulse()
        if missing:
            raise Refused(EXPUNGEISSUED)
        return f"{'UID ' if uid else ''}FETCH completed"

    def fetch_one(self, seq: int, uid: int, items: list[imapfetch.Item]) -> tuple[bytes, bool]:
        view = self.view
        box = view.box
        if uid in view.gone:
            if any(i.needs_data or i.kind in ("INTERNALDATE", "RFC822.SIZE") for i in items):
                raise MailboxError("expunged")
            msg = None
        else:
            msg = box.message(uid)
        data = None
        parsed: list[imapmime.Part] = []

        def tree() -> imapmime.Part:  # parsed only when an item needs the structure
            if not parsed:
                parsed.append(STRUCTURES.get(msg.path, data))
            return parsed[0]

        seen_set = False
        if not view.readonly and any(i.sets_seen for i in items) and "\\Seen" not in view.flags.get(uid, ()):
            view.flags[uid] = box.set_flags(uid, add=frozenset({"\\Seen"}))  # §6.4.5: the body was read
            msg = box.message(uid)
            seen_set = True
        out: list[bytes] = []
        for item in items:
            kind = item.kind
            if kind == "UID":
                out.append(b"UID %d" % uid)
            elif kind == "FLAGS":
                out.append(f"FLAGS {flag_list(view.shown(uid))}".encode())
            elif kind == "RFC822.SIZE":
                out.append(b"RFC822.SIZE %d" % msg.size)
            elif kind == "INTERNALDATE":
                out.append(f"INTERNALDATE {imapfetch.internaldate(box.internaldate(uid))}".encode())
            else:
                if data is None:
                    data = box.read(uid)
                if kind == "ENVELOPE":
                    out.append(b"ENVELOPE " + imapmime.envelope(tree()))
                elif kind == "BODYSTRUCTURE":
                    out.append(b"BODYSTRUCTURE " + imapmime.body_structure(tree(), True))
                elif kind == "BODY":
                    out.append(b"BODY " + imapmime.body_structure(tree(), False))
                else:
                    value = imapfetch.section_bytes(item, data, tree)
                    if value is None:
                        out.append(item.label.encode() + b" NIL")
                    else:
                        value = imapfetch.partial(item, value)
                        out.append(item.label.encode() + b" {%d}\r\n" % len(value) + value)
        if seen_set and not any(i.kind == "FLAGS" for i in items):
            out.append(f"FLAGS {flag_list(view.shown(uid))}".encode())
        return b"* %d FETCH (" % seq + b" ".join(out) + b")\r\n", seen_set

    # -- STORE -------------------------------------------------------------------------------------
    async def cmd_STORE(self, tag, args, uid: bool = False):
        if len(args) < 3 or isinstance(args[0], list) or isinstance(args[1], list):
            raise Bad("usage: STORE sequence-set (+|-)FLAGS[.SILENT] (flags)")
        view = self.view
        mode = str(args[1]).upper()
        base = mode.removesuffix(".SILENT")
        if base not in ("FLAGS", "+FLAGS", "-FLAGS"):
            raise Bad("invalid STORE item")
        flags = parse_flags(args[2] if len(args) == 3 else args[2:]) - {"\\Recent"}
        pairs = view.pairs(str(args[0]), uid)
        if view.readonly:
            raise Refused("mailbox is read-only")
        for seq, u in pairs:
            if u in view.gone:
                continue  # RFC 2180 §4.2.1: expunged elsewhere; the others are stored
            try:
                if base == "FLAGS":
                    new = view.box.set_flags(u, replace=flags)
                elif base == "+FLAGS":
                    new = view.box.set_flags(u, add=flags)
                else:
                    new = view.box.set_flags(u, remove=flags)
            except MailboxError:
                continue
            view.flags[u] = new
            for text in view.announce(new):
                self.send(text)
            if not mode.endswith(".SILENT"):
                uid_part = f"UID {u} " if uid else ""
                self.send(f"* {seq} FETCH ({uid_part}FLAGS {flag_list(view.shown(u))})")
            await self.breathe()
        self.service.pulse()
        return f"{'UID ' if uid else ''}STORE completed"

    # -- SEARCH ------------------------------------------------------------------------------------
    async def cmd_SEARCH(self, tag, args, uid: bool = False):
        if args and not isinstance(args[0], list) and str(args[0]).upper() == "CHARSET":
            if len(args) < 3 or isinstance(args[1], list):
                raise Bad("usage: SEARCH [CHARSET charset] keys")
            if str(args[1]).upper() not in ("US-ASCII", "UTF-8"):
                raise Refused("[BADCHARSET (US-ASCII UTF-8)] unsupported charset")
            args = args[2:]
        view = self.view
        largest_uid = view.uids[-1] if view.uids else 0
        predicate = compile_search(args, len(view.uids), largest_uid)
        box = view.box
        found = []
        for seq, u in enumerate(list(view.uids), 1):
            if u in view.gone:
                continue
            try:
                msg = box.message(u)
            except MailboxError:
                continue
            flags = msg.flags | {"\\Recent"} if u in view.recent else msg.flags
            cand = Candidate(seq, u, flags, msg.size, lambda u=u: box.internaldate(u), lambda u=u: box.read(u))
            try:
                if predicate(cand):
                    found.append(u if uid else seq)
            except MailboxError:
                pass
            await self.breathe()
        self.send(("* SEARCH " + " ".join(map(str, found))).rstrip())
        return f"{'UID ' if uid else ''}SEARCH completed"

    # -- COPY and MOVE -----------------------------------------------------------------------------
    async def cmd_COPY(self, tag, args, uid: bool = False, move: bool = False):
        verb = "MOVE" if move else "COPY"
        if len(args) != 2 or isinstance(args[0], list):
            raise Bad(f"usage: {verb} sequence-set mailbox")
        view = self.view
        pairs = view.pairs(str(args[0]), uid)
        target = self.store.mailbox(self.user, self.mailbox_arg(args[1]))
        if not target.exists():
            raise Refused("[TRYCREATE] no such mailbox")
        if move and view.readonly:
            raise Refused("mailbox is read-only")
        sources, src_uids = [], []
        for _seq, u in pairs:
            if u in view.gone:
                continue
            try:
                msg = view.box.message(u)
            except MailboxError:
                continue
            sources.append((msg.path, msg.flags, None))
            src_uids.append(u)
        if pairs and not sources:
            raise Refused(EXPUNGEISSUED)
        new_uids = target.copy_in(sources)
        kept = [(s, n) for s, n in zip(src_uids, new_uids) if n]
        code = ""
        if kept:
            code = (f"[COPYUID {target.uidvalidity} {compact_set([s for s, _ in kept])} "
                    f"{compact_set([n for _, n in kept])}] ")
        if move:
            if code:
                self.send(f"* OK {code}Moved")  # RFC 6851 §4.3
            view.box.remove([s for s, _ in kept])  # EXPUNGE responses come from the sync
            code = ""
        self.service.pulse()
        return f"{code}{'UID ' if uid else ''}{verb} completed"

    async def cmd_MOVE(self, tag, args, uid: bool = False):
        return await self.cmd_COPY(tag, args, uid=uid, move=True)

    async def cmd_UID(self, tag, args):
        if not args or isinstance(args[0], list):
            raise Bad("usage: UID FETCH|STORE|SEARCH|COPY|MOVE|EXPUNGE ...")
        sub = str(args[0]).upper()
        if sub == "EXPUNGE":  # RFC 4315 §2.1
            if len(args) != 2 or isinstance(args[1], list):
                raise Bad("usage: UID EXPUNGE uid-set")
            wanted = {u for _, u in self.view.pairs(str(args[1]), True)}
            return "UID " + await self.cmd_EXPUNGE(tag, [], wanted)
        method = {"FETCH": self.cmd_FETCH, "STORE": self.cmd_STORE, "COPY": self.cmd_COPY,
                  "MOVE": self.cmd_MOVE, "SEARCH": self.cmd_SEARCH}.get(sub)
        if method is None:
            raise Bad("unknown UID command")
        return await method(tag, args[1:], uid=True)
