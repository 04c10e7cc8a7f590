"""IMAP SEARCH (RFC 3501 §6.4.4): the search program compiled into a predicate. Pure code.

`compile_search(args, largest_seq, largest_uid)` turns the command's tokens into a function of a
`Candidate` (one message, whose facts are loaded only when a key asks for them: flags and size cost
nothing, header keys parse the header, BODY and TEXT read and decode the message). Strings match
case-insensitively as substrings of the decoded text (RFC 2047 encoded words in headers, transfer
encodings and charsets in bodies: Python's `email` package decodes). Sequence and UID sets stay
ranges (imapsyntax.SequenceSet).
"""

from __future__ import annotations

import datetime
import email.header
import email.utils
from collections.abc import Callable
from dataclasses import dataclass, field

from msgsrv.services import imapmime
from msgsrv.services.imapsyntax import SequenceSet, Str, SyntaxProblem

MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "DELETED": ("\\Deleted", True), "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True), "SEEN": ("\\Seen", True), "RECENT": ("\\Recent", True),
    "UNANSWERED": ("\\Answered", False), "UNDELETED": ("\\Deleted", False), "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False), "UNSEEN": ("\\Seen", False), "OLD": ("\\Recent", False),
}
ADDRESS_KEYS = {"FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc", "SUBJECT": "subject"}
ADDRESS_FIELDS = ("from", "to", "cc", "bcc", "sender", "reply-to")
Predicate = Callable[["Candidate"], bool]


@dataclass
class Candidate:
    """One message as SEARCH sees it; `load` returns its octets when a key needs them."""

    seq: int
    uid: int
    flags: frozenset[str]
    size: int
    internaldate: Callable[[], float]  # called only by date keys (a stat)
    load: Callable[[], bytes]  # called only by header and text keys (a read)
    _part: imapmime.Part | None = None
    _texts: dict = field(default_factory=dict)

    @property
    def part(self) -> imapmime.Part:
        if self._part is None:
            self._part = imapmime.parse(self.load())
        return self._part

    def header_values(self, name: str) -> list[str]:
        """The decoded values of the header fields NAME; address fields also as parsed addresses
        (`name <mailbox@host>`), so comments and odd spacing do not hide an address."""
        key = ("h", name)
        if key not in self._texts:
            values = []
            for n, raw in self.part.fields:
                if n != name:
                    continue
                value = imapmime.field_value(raw)
                if name in ADDRESS_FIELDS:
                    value += " " + " ".join(
                        f"{decode_words(nm or '')} <{mbox or ''}@{host or ''}>"
                        for nm, _, mbox, host in imapmime.parse_addresses(value) if mbox)
                values.append(decode_words(value).casefold())
            self._texts[key] = values
        return self._texts[key]

    def body_text(self) -> str:
        if "body" not in self._texts:
            self._texts["body"] = _decoded_body(self.part).casefold()
        return self._texts["body"]

    def header_text(self) -> str:
        if "header" not in self._texts:
            self._texts["header"] = decode_words(self.part.header.decode("utf-8", "surrogateescape")).casefold()
        return self._texts["header"]


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded (undecodable ones kept as they are)."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (LookupError, ValueError, UnicodeError):
        return value


def _decoded_body(part: imapmime.Part) -> str:
    """The text of every text/* and message/* leaf below PART, transfer encoding and charset undone."""
    if part.children:
        return "\n".join(_decoded_body(c) for c in part.children)
    if part.message is not None:
        return _decoded_body(part.message)
    if part.maintype.lower() != "text":
        return ""
    m = email.message.Message()
    encoding = part.get("content-transfer-encoding")
    if encoding:
        m["Content-Transfer-Encoding"] = encoding
    m.set_payload(part.body.decode("ascii", "surrogateescape"))
    try:
        raw = m.get_payload(decode=True) or b""
    except (ValueError, TypeError):
        raw = part.body
    charset = dict((k.lower(), v) for k, v in part.params).get("charset", "us-ascii")
    try:
        return raw.decode(charset, "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


# -- dates -----------------------------------------------------------------------------------------
def parse_date(text: str) -> datetime.date:
    """RFC 3501 date: `1-Feb-1994` (day of 1 or 2 digits); raises SyntaxProblem."""
    parts = str(text).split("-")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit() or len(parts[2]) != 4:
        raise SyntaxProblem("invalid date")
    month = MONTHS.get(parts[1].lower())
    try:
        return datetime.date(int(parts[2]), month or 0, int(parts[0]))
    except (ValueError, TypeError):
        raise SyntaxProblem("invalid date") from None


def _internal_day(c: Candidate) -> datetime.date:
    return datetime.datetime.fromtimestamp(c.internaldate()).date()


def _sent_day(c: Candidate) -> datetime.date | None:
    value = c.part.get("date")
    parsed = email.utils.parsedate_tz(value) if value else None
    if not parsed:
        return None
    try:
        return datetime.date(*parsed[:3])  # RFC 3501: disregarding time and timezone
    except ValueError:
        return None


# -- compiling -------------------------------------------------------------------------------------
class _Program:
    def __init__(self, args: list, largest_seq: int, largest_uid: int):
        self.args = args
        self.i = 0
        self.largest_seq = largest_seq
        self.largest_uid = largest_uid

    def take(self):
        if self.i >= len(self.args):
            raise SyntaxProblem("missing search argument")
        tok = self.args[self.i]
        self.i += 1
        return tok

    def string(self) -> str:
        tok = self.take()
        if isinstance(tok, list):
            raise SyntaxProblem("expected a string")
        return str(tok)

    def number(self) -> int:
        tok = self.take()
        if isinstance(tok, list) or not str(tok).isdigit() or len(str(tok)) > 20:
            raise SyntaxProblem("expected a number")
        return int(str(tok))

    def all_keys(self) -> Predicate:
        preds = []
        while self.i < len(self.args):
            preds.append(self.key())
        if not preds:
            raise SyntaxProblem("missing search key")
        return _and(preds)

    def key(self) -> Predicate:
        tok = self.take()
        if isinstance(tok, list):
            sub = _Program(tok, self.largest_seq, self.largest_uid)
            return sub.all_keys()
        word = str(tok).upper() if not isinstance(tok, Str) else ""
        if word in FLAG_KEYS:
            flag, present = FLAG_KEYS[word]
            return lambda c: (flag in c.flags) == present
        if word == "ALL":
            return lambda c: True
        if word == "NEW":
            return lambda c: "\\Recent" in c.flags and "\\Seen" not in c.flags
        if word in ("KEYWORD", "UNKEYWORD"):
            kw = self.string().lower()
            present = word == "KEYWORD"
            return lambda c: any(f.lower() == kw for f in c.flags) == present
        if word == "NOT":
            inner = self.key()
            return lambda c: not inner(c)
        if word == "OR":
            a, b = self.key(), self.key()
            return lambda c: a(c) or b(c)
        if word in ("LARGER", "SMALLER"):
            n = self.number()
            return (lambda c: c.size > n) if word == "LARGER" else (lambda c: c.size < n)
        if word in ("BEFORE", "ON", "SINCE"):
            day = parse_date(self.string())
            return _date_key(word, day, _internal_day)
        if word in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            day = parse_date(self.string())
            return _date_key(word[4:], day, _sent_day)
        if word in ADDRESS_KEYS:
            return _header_key(ADDRESS_KEYS[word], self.string())
        if word == "HEADER":
            name = self.string().lower()
            return _header_key(name, self.string())
        if word == "BODY":
            needle = self.string().casefold()
            return lambda c: needle in c.body_text()
        if word == "TEXT":
            needle = self.string().casefold()
            return lambda c: needle in c.header_text() or needle in c.body_text()
        if word == "UID":
            uids = SequenceSet(self.string())
            largest = self.largest_uid
            return lambda c: uids.contains(c.uid, largest)
        text = str(tok)
        if word and (text[0].isdigit() or text[0] == "*"):
            seqs = SequenceSet(text)
            largest = self.largest_seq
            return lambda c: seqs.contains(c.seq, largest)
        raise SyntaxProblem("unknown search key")


def _and(preds: list[Predicate]) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    return lambda c: all(p(c) for p in preds)


def _date_key(op: str, day: datetime.date, get: Callable[[Candidate], datetime.date | None]) -> Predicate:
    def pred(c: Candidate) -> bool:
        d = get(c)
        if d is None:
            return False
        return d < day if op == "BEFORE" else d == day if op == "ON" else d >= day
    return pred


def _header_key(name: str, needle: str) -> Predicate:
    needle = decode_words(needle).casefold()
    return lambda c: any(needle in v for v in c.header_values(name))


def compile_search(args: list, largest_seq: int, largest_uid: int) -> Predicate:
    """The predicate of a SEARCH program (CHARSET already removed); raises SyntaxProblem."""
    return _Program(args, largest_seq, largest_uid).all_keys()
