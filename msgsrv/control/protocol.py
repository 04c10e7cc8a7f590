"""The watcher line protocol on 127.0.0.1:local.watcher.port. Pure: parse and format only.

Wire: UTF-8 lines ending in "\\n", at most MAX_LINE bytes each.

    client: AUTH <token>                 first line of every connection (token: data/run/watcher.token)
    server: OK | ERR <reason>            ERR closes the connection

Requests (one per line, answered in order):

    PING                                 -> OK pong
    STATUS                               -> OK <json>          the supervised tree (watcher status)
    START [ha] [COMPONENT...]            -> progress..., OK    start (no names: every enabled one)
    STOP [-f] [COMPONENT...]             -> progress..., OK    stop (no names: everything running)
    RESTART COMPONENT...                 -> progress..., OK    restart their units (msprobe, admins)
    FAILED <who> <reason...>             -> OK                 a store utility failed: restart the store group
    REGISTER <component> <pid>           -> OK                 a server is up; keep the connection open
    BYE                                  -> OK                 orderly unregister before a clean exit
    SHUTDOWN                             -> progress..., OK    stop everything, then the watcher exits

Progress lines before the final OK/ERR:

    T <text>                             text to show without a newline (the dots while waiting)
    L <text>                             a whole line to show
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINE = 4096
VERBS = ("AUTH", "PING", "STATUS", "START", "STOP", "RESTART", "FAILED", "REGISTER", "BYE", "SHUTDOWN")


class ProtocolError(ValueError):
    """A malformed request; the text is sent back after `ERR `."""


@dataclass(frozen=True)
class Request:
    verb: str
    args: tuple[str, ...]


def parse(line: bytes) -> Request:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("request is not UTF-8") from None
    text = text.rstrip("\r\n")
    if not text.isprintable():
        raise ProtocolError("request has control characters")
    words = text.split()
    if not words:
        raise ProtocolError("empty request")
    verb = words[0].upper()
    if verb not in VERBS:
        raise ProtocolError(f"unknown request '{words[0][:32]}'")
    return Request(verb, tuple(words[1:]))


def format_request(verb: str, *args: str) -> bytes:
    return (" ".join((verb, *args)) + "\n").encode("utf-8")
