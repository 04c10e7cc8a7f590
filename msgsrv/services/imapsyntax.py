"""IMAP command syntax (RFC 3501 §9): tokens, sequence sets, quoting. Pure functions.

A command's arguments are tokenized into atoms (str), strings (Str: quoted strings and
literals) and parenthesized lists (list). An atom may carry a bracketed section with spaces
inside (`BODY[HEADER.FIELDS (From To)]`). Literals have already been read by the session and
stand in the text as `\\0<index>\\0` (NUL cannot occur in a command, RFC 3501 §9 CHAR8).
"""

from __future__ import annotations

LITERAL_MARK = "\0"


class Str(str):
    """A quoted string or literal (as opposed to an atom)."""


class SyntaxProblem(ValueError):
    """The command line does not follow RFC 3501 §9."""


def tokenize(text: str, literals: list[bytes] | tuple[bytes, ...] = ()) -> list:
    """Tokens of TEXT; raises SyntaxProblem for unbalanced quotes, parens or brackets."""
    stack: list[list] = [[]]
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == " ":
            i += 1
        elif ch == "(":
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
            stack[-1].append(Str(literals[int(text[i + 1:end])].decode("utf-8", "surrogateescape")))
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
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            return i + 1, "".join(out)
        else:
            out.append(ch)
            i += 1
    raise SyntaxProblem("unterminated quoted string")


def _atom(text: str, i: int) -> tuple[int, str]:
    start, depth = i, 0
    while i < len(text):
        ch = text[i]
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif depth == 0 and ch in " ()":
            break
        elif ord(ch) < 32 or ch == '"' and depth == 0:
            raise SyntaxProblem("invalid character in atom")
        i += 1
    if depth != 0:
        raise SyntaxProblem("unbalanced brackets")
    return i, text[start:i]


def quote(s: str) -> str:
    """S as an IMAP quoted string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sequence_set(text: str, largest: int) -> list[int]:
    """Numbers named by an RFC 3501 §9 sequence-set (`1,3:5,7:*`), ascending, duplicates removed.

    `*` stands for LARGEST; a range may be given high to low. Raises SyntaxProblem.
    """
    out: set[int] = set()

    def number(part: str) -> int:
        if part == "*":
            return largest
        if not part.isdigit() or part.startswith("0"):
            raise SyntaxProblem(f"invalid sequence number {part[:20]!r}")
        return int(part)

    if not text:
        raise SyntaxProblem("empty sequence set")
    for item in text.split(","):
        lo_text, sep, hi_text = item.partition(":")
        lo = number(lo_text)
        hi = number(hi_text) if sep else lo
        if lo > hi:
            lo, hi = hi, lo
        if hi - lo > 10_000_000:
            raise SyntaxProblem("sequence range too large")
        out.update(range(lo, hi + 1))
    return sorted(out)


def wildcard_match(pattern: str, name: str) -> bool:
    """RFC 3501 §6.3.8 LIST wildcards: `*` matches anything, `%` anything but the delimiter."""
    import re

    rx = "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, name) is not None
