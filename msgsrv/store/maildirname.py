"""Maildir file names (cr.yp.to/proto/maildir.html, Dovecot's Maildir++ conventions). Pure functions.

A message file is named `<base>[:2,<info>]`:

- base: `<seconds>.M<microseconds>P<pid>Q<counter>.<host>,S=<size>,W=<size>`. `S=` is the file's
  size, `W=` the size with CRLF line ends (Dovecot's "virtual size"); msgsrv stores CRLF, so both are
  the same and no reader needs to open the file to know it.
- info (cur/ only): `2,` then flag letters in ASCII order. System flags are upper case (D=\\Draft,
  F=\\Flagged, R=\\Answered, S=\\Seen, T=\\Deleted); keywords are the letters a-z, each the index of
  a keyword in the mailbox's `dovecot-keywords` file (a=0 ... z=25).
"""

from __future__ import annotations

import itertools
import os
import socket
import time

INFO_SEP = ":2,"
FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}
LETTER_FLAGS = {v: k for k, v in FLAG_LETTERS.items()}
SYSTEM_FLAGS = frozenset(FLAG_LETTERS)
MAX_KEYWORDS = 26  # the letters a-z
_counter = itertools.count(1)
_HOST = None


def _host() -> str:
    """This host's name as the maildir spec wants it: `/` and `:` escaped as octal."""
    global _HOST
    if _HOST is None:
        _HOST = (socket.gethostname() or "localhost").replace("/", "\\057").replace(":", "\\072")
    return _HOST


def unique_base(size: int) -> str:
    """A new base name, unique on this host (time, pid, per-process counter)."""
    now = time.time_ns()
    sec, usec = divmod(now // 1000, 1_000_000)
    return f"{sec}.M{usec}P{os.getpid()}Q{next(_counter)}.{_host()},S={size},W={size}"


def split(name: str) -> tuple[str, str | None]:
    """(base, info letters or None) of a file name in cur/ or new/."""
    base, sep, info = name.partition(INFO_SEP)
    return (base, info) if sep else (name.partition(":")[0], None)


def size_of(base: str) -> int | None:
    """The size with CRLF line ends named by a base name: `W=`, else `S=` (None when it has none)."""
    sizes = {f[:2]: f[2:] for f in base.split(",")[1:] if f[:2] in ("S=", "W=")}
    for key in ("W=", "S="):
        if sizes.get(key, "").isdigit():
            return int(sizes[key])
    return None


def crlf_stored(base: str) -> bool:
    """True when the name says the file already has CRLF line ends (`S=` equals `W=`, as msgsrv
    writes them); Dovecot's own files have LF ends and a larger W=."""
    sizes = {f[:2]: f[2:] for f in base.split(",")[1:] if f[:2] in ("S=", "W=")}
    return "S=" in sizes and sizes.get("S=") == sizes.get("W=")


def flags_of(info: str | None, keywords: list[str]) -> frozenset[str]:
    """The flags (system flags and keywords) that INFO letters stand for."""
    if not info:
        return frozenset()
    out = set()
    for ch in info:
        if ch in LETTER_FLAGS:
            out.add(LETTER_FLAGS[ch])
        elif "a" <= ch <= "z":
            i = ord(ch) - ord("a")
            if i < len(keywords):
                out.add(keywords[i])
    return frozenset(out)


def info_of(flags: frozenset[str] | set[str], keyword_index: dict[str, int]) -> str:
    """The info letters for FLAGS; keywords missing from KEYWORD_INDEX are left out."""
    letters = [FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS]
    letters += [chr(ord("a") + keyword_index[f]) for f in flags if f in keyword_index]
    return "".join(sorted(letters))


def cur_name(base: str, info: str) -> str:
    return f"{base}{INFO_SEP}{info}"
