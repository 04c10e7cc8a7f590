"""The mailbox commands of imapd (RFC 3501 §6.3): CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE,
NAMESPACE (RFC 2342), LIST, LSUB, STATUS and APPEND (RFC 4315 APPENDUID), as a mixin of ImapSession.

Mailboxes are the user's Maildir++ folders, hierarchy delimiter `.`; LIST shows parents that exist
only through their children as \\Noselect, CHILDREN attributes (RFC 3348) and, for the usual
names, SPECIAL-USE attributes (RFC 6154). LIST patterns are matched by imapsyntax.ListPattern.
"""

from __future__ import annotations

import calendar
import re

from msgsrv.services.imapreply import Bad, Refused
from msgsrv.services.imapselected import parse_flags
from msgsrv.services.imapsyntax import ListPattern, Str, astring_out, quote
from msgsrv.store.mailbox import INBOX, SEP

SPECIAL_USE = {"sent": "\\Sent", "sent items": "\\Sent", "sent messages": "\\Sent", "drafts": "\\Drafts",
               "trash": "\\Trash", "deleted items": "\\Trash", "deleted messages": "\\Trash",
               "junk": "\\Junk", "spam": "\\Junk", "archive": "\\Archive", "archives": "\\Archive"}


def parse_date_time(text: str) -> float:
    """RFC 3501 date-time "dd-Mon-yyyy hh:mm:ss +zzzz" as seconds since the epoch."""
    m = re.fullmatch(r" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)", text)
    months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    if m is None or m.group(2).lower() not in months:
        raise Bad("invalid date-time")
    day, mon, year = int(m.group(1)), months.index(m.group(2).lower()) + 1, int(m.group(3))
    hh, mm, ss = int(m.group(4)), int(m.group(5)), int(m.group(6))
    offset = (int(m.group(8)) * 60 + int(m.group(9))) * 60 * (1 if m.group(7) == "+" else -1)
    try:
        return calendar.timegm((year, mon, day, hh, mm, ss)) - offset
    except (ValueError, OverflowError):
        raise Bad("invalid date-time") from None


class MailboxCommands:
    """Mixin: needs self.user, self.store, self.view, self.service, want(), mailbox_arg(), send()."""

    async def cmd_CREATE(self, tag, args):
        self.want(args, 1, "CREATE mailbox")
        name = self.mailbox_arg(args[0], creating=True)
        if name == INBOX or self.store.mailbox(self.user, name).exists():
            raise Refused("[ALREADYEXISTS] mailbox already exists")
        self.store.create(self.user, name)
        return "CREATE completed"

    async def cmd_DELETE(self, tag, args):
        self.want(args, 1, "DELETE mailbox")
        name = self.mailbox_arg(args[0])
        if name == INBOX:
            raise Refused("[CANNOT] INBOX cannot be deleted")
        if self.view is not None and self.view.box.name == name:
            raise Refused("[CANNOT] cannot delete the selected mailbox")
        if not self.store.mailbox(self.user, name).exists():
            raise Refused("[NONEXISTENT] no such mailbox")
        self.store.delete(self.user, name)
        self.service.pulse()
        return "DELETE completed"

    async def cmd_RENAME(self, tag, args):
        self.want(args, 2, "RENAME mailbox new-name")
        old = self.mailbox_arg(args[0])
        new = self.mailbox_arg(args[1], creating=True)
        if new == INBOX or self.store.mailbox(self.user, new).exists() or self.store.children(self.user, new):
            raise Refused("[ALREADYEXISTS] target mailbox already exists")
        if not self.store.mailbox(self.user, old).exists() and not self.store.children(self.user, old):
            raise Refused("[NONEXISTENT] no such mailbox")
        self.store.rename(self.user, old, new)
        self.service.pulse()
        return "RENAME completed"

    async def cmd_SUBSCRIBE(self, tag, args, on: bool = True):
        self.want(args, 1, "SUBSCRIBE mailbox")
        self.store.subscribe(self.user, self.mailbox_arg(args[0]), on)
        return f"{'SUBSCRIBE' if on else 'UNSUBSCRIBE'} completed"

    async def cmd_UNSUBSCRIBE(self, tag, args):
        return await self.cmd_SUBSCRIBE(tag, args, on=False)

    async def cmd_NAMESPACE(self, tag, args):
        self.send(f'* NAMESPACE (("" {quote(SEP)})) NIL NIL')  # RFC 2342: one personal namespace
        return "NAMESPACE completed"

    def list_pattern(self, ref: str, pattern: str) -> ListPattern:
        full = ref + pattern if not (ref.endswith(SEP) and pattern.startswith(SEP)) else ref + pattern[1:]
        if full[:5].upper() == INBOX and (len(full) == 5 or full[5] in SEP + "*%"):
            full = INBOX + full[5:]  # RFC 3501 §5.1: INBOX is case-insensitive
        return ListPattern(full, SEP)

    async def cmd_LIST(self, tag, args):
        self.want(args, 2, "LIST reference mailbox")
        if isinstance(args[0], list) or isinstance(args[1], list):
            raise Bad("usage: LIST reference mailbox")
        ref, pattern = str(args[0]), str(args[1])
        if not pattern:  # RFC 3501 §6.3.8: the delimiter and the root of the reference
            root = ref.split(SEP)[0] + SEP if SEP in ref else ""
            self.send(f"* LIST (\\Noselect) {quote(SEP)} {quote(root)}")
            return "LIST completed"
        matcher = self.list_pattern(ref, pattern)
        existing = set(self.store.mailboxes(self.user))
        names = set(existing)
        for name in existing:  # parents that exist only through their children
            parts = name.split(SEP)
            names.update(SEP.join(parts[:i]) for i in range(1, len(parts)))
        parents = {name.rpartition(SEP)[0] for name in names if SEP in name}
        for name in sorted(names, key=lambda n: (n != INBOX, n)):
            await self.breathe()  # thousands of mailboxes: other clients still get their turn
            if not matcher.match(name):
                continue
            attrs = ["\\HasChildren" if name in parents else "\\HasNoChildren"]
            if name not in existing:
                attrs.insert(0, "\\Noselect")
            use = SPECIAL_USE.get(name.lower())
            if use:
                attrs.append(use)
            self.send_bytes(f"* LIST ({' '.join(attrs)}) {quote(SEP)} ".encode() + astring_out(name) + b"\r\n")
        return "LIST completed"

    async def cmd_LSUB(self, tag, args):
        self.want(args, 2, "LSUB reference mailbox")
        if isinstance(args[0], list) or isinstance(args[1], list):
            raise Bad("usage: LSUB reference mailbox")
        matcher = self.list_pattern(str(args[0]), str(args[1]))
        subscribed = self.store.subscriptions(self.user)
        shown: dict[str, str] = {}
        for name in subscribed:
            if matcher.match(name):
                shown[name] = "()"
                continue
            parts = name.split(SEP)  # RFC 3501 §6.3.9: a matching parent of a subscribed name
            for i in range(len(parts) - 1, 0, -1):
                parent = SEP.join(parts[:i])
                if matcher.match(parent):
                    shown.setdefault(parent, "(\\Noselect)")
                    break
        for name in sorted(shown, key=lambda n: (n != INBOX, n)):
            attrs = "()" if name in subscribed else shown[name]
            self.send_bytes(f"* LSUB {attrs} {quote(SEP)} ".encode() + astring_out(name) + b"\r\n")
        return "LSUB completed"

    async def cmd_STATUS(self, tag, args):
        if len(args) != 2 or not isinstance(args[1], list) or not args[1]:
            raise Bad("usage: STATUS mailbox (items)")
        box = self.store.mailbox(self.user, self.mailbox_arg(args[0]))
        if not box.exists():
            raise Refused("[NONEXISTENT] no such mailbox")
        msgs = box.messages()
        floor = box.recent_floor()
        values = {"MESSAGES": lambda: len(msgs), "RECENT": lambda: sum(1 for m in msgs if m.uid >= floor),
                  "UIDNEXT": lambda: box.uidnext, "UIDVALIDITY": lambda: box.uidvalidity,
                  "UNSEEN": lambda: sum(1 for m in msgs if "\\Seen" not in m.flags)}
        out = []
        for item in args[1]:
            key = str(item).upper()
            if isinstance(item, list) or key not in values:
                raise Bad("unknown STATUS item")
            out.append(f"{key} {values[key]()}")
        self.send_bytes(b"* STATUS " + astring_out(box.name) + f" ({' '.join(out)})\r\n".encode())
        return "STATUS completed"

    async def cmd_APPEND(self, tag, args):
        if len(args) < 2 or not isinstance(args[-1], Str):
            raise Bad("usage: APPEND mailbox [(flags)] [date-time] literal")
        message = args[-1].raw or str(args[-1]).encode("utf-8", "surrogateescape")
        middle = args[1:-1]
        flags: frozenset[str] = frozenset()
        date = None
        if middle and isinstance(middle[0], list):
            flags = parse_flags(middle[0]) - {"\\Recent"}
            middle = middle[1:]
        if middle:
            if len(middle) != 1 or not isinstance(middle[0], Str):
                raise Bad("usage: APPEND mailbox [(flags)] [date-time] literal")
            date = parse_date_time(str(middle[0]))
        if len(message) == 0:
            raise Refused("cannot append an empty message")
        box = self.store.mailbox(self.user, self.mailbox_arg(args[0]))
        if not box.exists():
            raise Refused("[TRYCREATE] no such mailbox")
        uid = box.deliver(message, flags, date)
        self.service.pulse()
        return f"[APPENDUID {box.uidvalidity} {uid}] APPEND completed"  # RFC 4315
