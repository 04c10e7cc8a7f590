"""The `name = value` line format that configutil lists and `configutil -i` reads back.

    local.autorestart = yes
    local.queuedir = "/var/my queue"
    alarm.msgalarmnoticetemplate = "Subject: %s\\nTo: %s"
    local.autorestart.timeout = 600 [DEFAULT] [REFRESHABLE]

A value is written bare when it is non-empty and holds no white space, quote, backslash or
unprintable character; otherwise it is put in double quotes, with `\\\\`, `\\"`, `\\n`, `\\t`,
`\\r`, and `\\u` with 4 or `\\U` with 8 hex digits for the rest (every character that
str.isprintable() refuses, so a listing line never spans two lines, not even for U+2028).
Marks in brackets may follow the value; reading a line gives them back so the caller can skip
`[DEFAULT]` lines.

Lines written by hand keep the original's looser form: `name=value` with no quoting, spaces
inside the value allowed (`local.queuedir=/var/my queue`).
"""

from __future__ import annotations

DEFAULT = "DEFAULT"
REFRESHABLE = "REFRESHABLE"
NOT_REFRESHABLE = "NOT REFRESHABLE"
MARKS = (DEFAULT, REFRESHABLE, NOT_REFRESHABLE)

_SHORT = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_UNSHORT = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}


def needs_quotes(value: str) -> bool:
    return value == "" or any(ch.isspace() or ch in '"\\' or not ch.isprintable() for ch in value)


def escape(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    if ch == " " or ch.isprintable():
        return ch
    n = ord(ch)
    return f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}"


def quote(value: str) -> str:
    """VALUE as it appears in a listing: bare, or quoted with escapes."""
    if not needs_quotes(value):
        return value
    return '"' + "".join(escape(ch) for ch in value) + '"'


def format_line(name: str, value: str, marks: tuple[str, ...] = ()) -> str:
    return f"{name} = {quote(value)}" + "".join(f" [{m}]" for m in marks)


def _unquote(text: str) -> tuple[str, str]:
    """(value, rest) of TEXT that starts with a double quote; ValueError when it is malformed."""
    out, i, n = [], 1, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            return "".join(out), text[i + 1:]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = text[i + 1:i + 2]
        if esc in _UNSHORT:
            out.append(_UNSHORT[esc])
            i += 2
        elif esc in ("u", "U"):
            width = 4 if esc == "u" else 8
            digits = text[i + 2:i + 2 + width]
            if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits) \
                    or int(digits, 16) > 0x10FFFF:
                raise ValueError(f"bad escape '\\{esc}{digits}' in a quoted value")
            out.append(chr(int(digits, 16)))
            i += 2 + width
        else:
            raise ValueError(f"bad escape '\\{esc}' in a quoted value (use \\\\ for a backslash)")
    raise ValueError("a quoted value has no closing quote")


def _marks(rest: str) -> tuple[str, ...] | None:
    """The ` [MARK]` suffixes of REST, or None when REST is something else."""
    found = []
    rest = rest.strip()
    while rest:
        if not rest.startswith("["):
            return None
        mark, close, rest = rest[1:].partition("]")
        if not close or mark not in MARKS:
            return None
        found.append(mark)
        rest = rest.strip()
    return tuple(found)


def parse_line(line: str) -> tuple[str, str, tuple[str, ...]] | None:
    """(name, value, marks) of one line; None for a blank line or a # comment; ValueError for
    a line that is neither (the message says why)."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    if "=" not in line:
        raise ValueError(f"expected name=value, got '{line}'")
    name, _, raw = line.partition("=")
    name, raw = name.strip(), raw.strip()
    if raw.startswith('"'):
        value, rest = _unquote(raw)
        marks = _marks(rest)
        if marks is None:
            raise ValueError(f"unexpected text after the quoted value of {name}: '{rest.strip()}'")
        return name, value, marks
    word, _, rest = raw.partition(" ")
    marks = _marks(rest) if rest else ()
    if marks:  # `value [DEFAULT]`: a bare value never holds a space, so the split is safe
        return name, word, marks
    return name, raw, ()
