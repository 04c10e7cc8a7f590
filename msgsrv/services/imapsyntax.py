"""IMAP command syntax (RFC 3501 §9): tokens, sequence sets, quoting, LIST patterns. Pure functions.

A command's arguments are tokenized into atoms (str), strings (Str: quoted strings and literals)
and parenthesized lists (list). An atom may carry a bracketed section with spaces inside
(`BODY[HEADER.FIELDS (From To)]<0.100>`). Literals have already been read by the session and stand
in the text as `\\0<index>\\0` (NUL cannot occur in a command, RFC 3501 §9 CHAR8); their octets are
kept in `Str.raw`.

Everything here is linear in its input: sequence sets stay ranges (never expanded into numbers,
so `1:4294967295` costs as much as `1`), and LIST patterns are matched by a bit-parallel automaton
(no regex, no backtracking: issue 13 "Hostile clients").
"""

from __future__ import annotations

import binascii
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence

LITERAL_MARK = "\0"
MAX_NUMBER = 4294967295  # RFC 3501 §9 nz-number / uniqueid: 32 bits


class Str(str):
    """A quoted string or literal (as opposed to an atom)."""

    raw: bytes = b""


class SyntaxProblem(ValueError):
    """The command line does not follow RFC 3501 §9."""


# -- tokens ----------------------------------------------------------------------------------------
def tokenize(text: str, literals: Sequence[bytes] = ()) -> list:
    """Tokens of TEXT; raises SyntaxProblem for unbalanced quotes, parens or brackets."""
    stack: list[list] = [[]]
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == " ":
            i += 1
        elif ch == "(":
            if len(stack) > 32:
                raise SyntaxProblem("parentheses nested too deeply")
            stack.append([])
            i += 1
        elif ch == ")":
            if len(stack) == 1:
                raise SyntaxProblem("unbalanced parenthesis")
            group = stack.pop()
            stack[-1].append(group)
            i += 1
        elif ch == '"':
            i, s = _quoted(text, i + 1)
            stack[-1].append(Str(s))
        elif ch == LITERAL_MARK:
            end = text.find(LITERAL_MARK, i + 1)
            if end < 0:
                raise SyntaxProblem("bad literal")
            raw = literals[int(text[i + 1:end])]
            s = Str(bytes(raw).decode("utf-8", "surrogateescape"))
            s.raw = raw
            stack[-1].append(s)
            i = end + 1
        else:
            i, atom = _atom(text, i)
            stack[-1].append(atom)
    if len(stack) != 1:
        raise SyntaxProblem("unbalanced parenthesis")
    return stack[0]


def _quoted(text: str, i: int) -> tuple[int, str]:
    out = []
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 < len(text) and text[i + 1] in '"\\':
                out.append(text[i + 1])
                i += 2
                continue
            raise SyntaxProblem("invalid escape in quoted string")
        if ch == '"':
            return i + 1, "".join(out)
        if ch in "\r\n":
            raise SyntaxProblem("line end in quoted string")
        out.append(ch)
        i += 1
    raise SyntaxProblem("unterminated quoted string")


def _atom(text: str, i: int, brackets: bool = True) -> tuple[int, str]:
    """An atom from I; with BRACKETS, a `[...]` inside may hold spaces and parentheses (fetch
    attributes); an atom whose brackets do not balance is read again as a plain atom."""
    start, depth = i, 0
    while i < len(text):
        ch = text[i]
        if ch == "[" and brackets:
            depth += 1
        elif ch == "]" and brackets and depth:
            depth -= 1
        elif depth == 0 and ch in " ()":
            break
        elif ord(ch) < 32 or ord(ch) == 127 or (depth == 0 and ch in '"{'):
            raise SyntaxProblem("invalid character in atom")
        i += 1
    if depth != 0:
        return _atom(text, start, brackets=False)
    return i, text[start:i]


def quote(s: str) -> str:
    """S as an IMAP quoted string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def astring_out(data: bytes | str | None) -> bytes:
    """A value for a response: NIL, a quoted string, or a literal when it holds CR, LF, 8-bit or NUL."""
    if data is None:
        return b"NIL"
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    if any(b > 126 or b in (0, 10, 13) for b in raw) or len(raw) > 1024:
        return b"{%d}\r\n" % len(raw) + raw
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


# -- sequence sets ---------------------------------------------------------------------------------
class SequenceSet:
    """An RFC 3501 §9 sequence-set kept as ranges; `*` is resolved against a given largest value.

    Membership and selection use bisection over sorted, merged ranges, so a set costs what its
    text costs, whatever numbers it names.
    """

    def __init__(self, text: str):
        if not text:
            raise SyntaxProblem("empty sequence set")
        self.text = text
        self.items: list[tuple[int | None, int | None]] = []  # None stands for `*`
        for item in text.split(","):
            lo_text, sep, hi_text = item.partition(":")
            lo = _seq_number(lo_text)
            hi = _seq_number(hi_text) if sep else lo
            self.items.append((lo, hi))

    @property
    def has_star(self) -> bool:
        return any(lo is None or hi is None for lo, hi in self.items)

    def ranges(self, largest: int) -> list[tuple[int, int]]:
        """Sorted, merged (lo, hi) ranges with `*` = LARGEST."""
        out = []
        for lo, hi in self.items:
            lo = largest if lo is None else lo
            hi = largest if hi is None else hi
            out.append((lo, hi) if lo <= hi else (hi, lo))
        out.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in out:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return merged

    def select(self, values: Sequence[int], largest: int) -> Iterator[int]:
        """Indexes into the sorted VALUES whose value the set names, ascending."""
        for lo, hi in self.ranges(largest):
            yield from range(bisect_left(values, lo), bisect_right(values, hi))

    def contains(self, value: int, largest: int) -> bool:
        ranges = self.ranges(largest)
        i = bisect_right(ranges, (value, MAX_NUMBER + 1)) - 1
        return i >= 0 and ranges[i][0] <= value <= ranges[i][1]

    def __str__(self) -> str:
        return self.text


def _seq_number(part: str) -> int | None:
    if part == "*":
        return None
    if not part.isdigit() or not part.isascii() or part.startswith("0") or len(part) > 10:
        raise SyntaxProblem("invalid sequence set")
    n = int(part)
    if n > MAX_NUMBER:
        raise SyntaxProblem("invalid sequence set")
    return n


def is_sequence_set(text: str) -> bool:
    try:
        SequenceSet(text)
        return True
    except SyntaxProblem:
        return False


def compact_set(values: Sequence[int]) -> str:
    """`1:3,7` for [1, 2, 3, 7] (sorted input), for COPYUID/APPENDUID codes."""
    out, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out.append(str(values[i]) if i == j else f"{values[i]}:{values[j]}")
        i = j + 1
    return ",".join(out)


# -- LIST patterns (RFC 3501 §6.3.8) ---------------------------------------------------------------
class ListPattern:
    """A LIST/LSUB pattern: `*` matches anything, `%` anything but the delimiter.

    Matching runs a bit-parallel NFA (one int of pattern positions, a few operations per name
    character): O(len(name)) big-int steps, never exponential, whatever the pattern.
    """

    def __init__(self, pattern: str, delimiter: str = "."):
        tokens: list[str] = []
        for ch in pattern:
            if ch in "*%" and tokens and tokens[-1] in ("*", "%"):
                tokens[-1] = "*" if "*" in (ch, tokens[-1]) else "%"  # `%*` = `*%` = `*`, `%%` = `%`
            else:
                tokens.append(ch)
        self.delimiter = delimiter
        self.length = len(tokens)
        self.literal_count = sum(1 for t in tokens if t not in ("*", "%"))
        self.lit: dict[str, int] = {}
        self.star = self.pct = 0
        for i, t in enumerate(tokens):
            bit = 1 << i
            if t == "*":
                self.star |= bit
            elif t == "%":
                self.pct |= bit
            else:
                self.lit[t] = self.lit.get(t, 0) | bit
        self.wild = self.star | self.pct
        self.start = self._closure(1)
        self.accept = 1 << self.length

    def _closure(self, states: int) -> int:
        return states | ((states & self.wild) << 1)  # a wildcard may match nothing (no two in a row)

    def match(self, name: str) -> bool:
        if self.literal_count > len(name):
            return False
        states = self.start
        delim = self.delimiter
        for ch in name:
            nxt = ((states & self.lit.get(ch, 0)) << 1) | (states & self.star)
            if ch != delim:
                nxt |= states & self.pct
            states = self._closure(nxt)
            if not states:
                return False
        return bool(states & self.accept)


# -- modified UTF-7 (RFC 3501 §5.1.3) --------------------------------------------------------------
def valid_mutf7(name: str) -> bool:
    """True when NAME is 7-bit and every `&...-` run is valid modified BASE64 of UTF-16."""
    if not name.isascii():
        return False
    i = 0
    while True:
        i = name.find("&", i)
        if i < 0:
            return True
        end = name.find("-", i + 1)
        if end < 0:
            return False
        chunk = name[i + 1:end].replace(",", "/")
        if chunk:
            if len(chunk) % 4 == 1:
                return False
            try:
                raw = binascii.a2b_base64(chunk + "=" * (-len(chunk) % 4), strict_mode=True)
                raw.decode("utf-16-be")
            except (binascii.Error, UnicodeDecodeError):
                return False
        i = end + 1
