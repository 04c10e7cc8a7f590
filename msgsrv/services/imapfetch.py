"""IMAP FETCH items (RFC 3501 §6.4.5, §7.4.2): parsing the item list and producing each item's
value from a message. Pure code; the session supplies flags, dates and the octets.

Items: FLAGS, UID, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODYSTRUCTURE, BODY, RFC822,
RFC822.HEADER, RFC822.TEXT, BODY[section]<origin.count> and BODY.PEEK[...], where section is
empty, HEADER, HEADER.FIELDS (...), HEADER.FIELDS.NOT (...), TEXT, or a part number with MIME,
HEADER, HEADER.FIELDS [.NOT], TEXT after it; macros ALL, FAST, FULL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from msgsrv.services import imapmime
from msgsrv.services.imapsyntax import SyntaxProblem, tokenize

MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
SIMPLE = ("FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY")
SECTION_RE = re.compile(r"^(BODY|BODY\.PEEK)\[([^\]]*)\](?:<(\d{1,10})\.(\d{1,10})>)?$", re.IGNORECASE)
PART_RE = re.compile(r"^(\d{1,5}(?:\.\d{1,5})*)(?:\.(.*))?$")


@dataclass(frozen=True)
class Item:
    kind: str  # one of SIMPLE, or "SECTION"
    label: str = ""  # the response's name for a SECTION item, e.g. BODY[HEADER.FIELDS (From)]
    peek: bool = True
    path: tuple[int, ...] = ()
    spec: str = ""  # "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: tuple[str, ...] = ()
    origin: int | None = None
    count: int | None = None

    @property
    def needs_data(self) -> bool:
        return self.kind in ("SECTION", "ENVELOPE", "BODYSTRUCTURE", "BODY")

    @property
    def sets_seen(self) -> bool:
        return self.kind == "SECTION" and not self.peek


def parse_items(arg) -> list[Item]:
    """The items of a FETCH argument (an atom or a parenthesized list); raises SyntaxProblem."""
    if isinstance(arg, list):
        if not arg:
            raise SyntaxProblem("empty FETCH item list")
        words = arg
    else:
        macro = MACROS.get(str(arg).upper())
        if macro is not None:
            return [Item(k) for k in macro]
        words = [arg]
    items = []
    for w in words:
        if isinstance(w, list):
            raise SyntaxProblem("invalid FETCH item list")
        items.append(parse_item(str(w)))
    return items


def parse_item(word: str) -> Item:
    upper = word.upper()
    if upper in SIMPLE:
        return Item(upper)
    if upper == "RFC822":
        return Item("SECTION", "RFC822", peek=False)
    if upper == "RFC822.HEADER":
        return Item("SECTION", "RFC822.HEADER", peek=True, spec="HEADER")
    if upper == "RFC822.TEXT":
        return Item("SECTION", "RFC822.TEXT", peek=False, spec="TEXT")
    m = SECTION_RE.match(word)
    if m is None:
        raise SyntaxProblem("invalid FETCH item")
    peek = m.group(1).upper() == "BODY.PEEK"
    section = m.group(2)
    path: tuple[int, ...] = ()
    spec_text = section
    pm = PART_RE.match(section)
    if pm:
        path = tuple(int(n) for n in pm.group(1).split("."))
        if 0 in path:
            raise SyntaxProblem("invalid section part number")
        spec_text = pm.group(2) or ""
    spec, _, rest = spec_text.partition(" ")
    spec = spec.upper()
    fields: tuple[str, ...] = ()
    if spec in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        lists = tokenize(rest.strip())
        if len(lists) != 1 or not isinstance(lists[0], list) or not lists[0] or any(isinstance(f, list) for f in lists[0]):
            raise SyntaxProblem("invalid header field list")
        fields = tuple(str(f) for f in lists[0])
    elif rest.strip() or spec not in ("", "HEADER", "TEXT", "MIME"):
        raise SyntaxProblem("invalid section")
    if spec == "MIME" and not path:
        raise SyntaxProblem("MIME needs a part number")
    origin = count = None
    if m.group(3) is not None:
        origin, count = int(m.group(3)), int(m.group(4))
        if count == 0:
            raise SyntaxProblem("invalid partial range")
    label = f"BODY[{section}]" + (f"<{origin}>" if origin is not None else "")
    return Item("SECTION", label, peek, path, spec, fields, origin, count)


def section_bytes(item: Item, data: bytes, tree: Callable[[], imapmime.Part]) -> bytes | None:
    """The octets ITEM names in the message DATA (None when the part does not exist). TREE gives
    the parsed structure, asked for only when a part number needs it."""
    if not item.path:
        if item.spec == "":
            return data
        header, body = imapmime.split_entity(data)
        if item.spec == "HEADER":
            return header
        if item.spec == "TEXT":
            return body
        return imapmime.fields_subset(header, list(item.fields), item.spec == "HEADER.FIELDS.NOT")
    part = imapmime.find_part(tree(), list(item.path))
    if part is None:
        return None
    if item.spec == "":
        return part.body
    if item.spec == "MIME":
        return part.header
    if part.message is None:
        return None  # HEADER/TEXT of a part that is not a message
    entity = part.message
    if item.spec == "HEADER":
        return entity.header
    if item.spec == "TEXT":
        return entity.body
    return imapmime.fields_subset(entity.header, list(item.fields), item.spec == "HEADER.FIELDS.NOT")


def partial(item: Item, data: bytes) -> bytes:
    if item.origin is None:
        return data
    return data[item.origin:item.origin + item.count]


def internaldate(t: float) -> str:
    """RFC 3501 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz" in the server's time zone."""
    return time.strftime('"%d-%b-%Y %H:%M:%S %z"', time.localtime(t))
