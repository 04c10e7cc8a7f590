"""The watcher line protocol on 127.0.0.1:local.watcher.port. Pure: parse and format only.

Wire: UTF-8 lines ending in "\\n", at most MAX_LINE bytes each.

    client: AUTH <token> [<who>]         first line of every connection (token: data/run/watcher.token;
                                         who: "prog[pid]", recorded in the journal as who asked)
    server: OK | ERR <reason>            ERR closes the connection

Requests (one per line, answered in order):

    PING                                 -> OK pong
    STATUS [pss]                         -> OK <json>          the supervised tree (watcher status); pss:
                                                               with each process's PSS (issue 14)
    START [ha] [COMPONENT...]            -> progress..., OK    start (no names: every enabled one)
    STOP [-f] [COMPONENT...]             -> progress..., OK    stop (no names: everything running)
    RESTART COMPONENT...                 -> progress..., OK    restart their units (an admin's request)
    HUNG <service> <since> <detail...>   -> OK <outcome> <text>  msprobe: SERVICE did not respond to a probe
                                                               begun at SINCE (epoch seconds)
    FAILED <who> <reason...>             -> OK <outcome> <text>  a store utility failed: restart the store group
    UTILITY <name> <pid>                 -> OK                 a store utility runs; keep the connection open,
                                                               BYE when done (closing without BYE = it failed)
    REGISTER <component> <pid>           -> OK                 a server is up; keep the connection open
    BYE                                  -> OK                 orderly unregister before a clean exit
    SHUTDOWN                             -> progress..., OK    stop everything, then the watcher exits

Outcomes of HUNG and FAILED (the watcher decides; the reporter only words it):

    restarting <members>                 a restart of the unit is queued
    already <members>                    a restart of the unit is queued or under way already
    limit <members>: <n> restarts within <w> s   the restart budget is spent: given up (FATAL)
    off <members>                        local.autorestart is no: logged, not restarted
    never <component>                    never restarted automatically (ens)
    stale <members>                      the processes are newer than the probe: already replaced
    down <text>                          nothing to act on (not running, shutting down)

Progress lines before the final OK/ERR:

    T <text>                             text to show without a newline (the dots while waiting)
    L <text>                             a whole line to show
    K                                    keepalive: the request waits in the queue (every KEEPALIVE s)

A client gives every call a deadline (local.watcher.calltimeout): a watcher that sends nothing at
all, not even K, for that long is not answering.
"""

from __future__ import annotations

from collections import namedtuple

MAX_LINE = 4096
KEEPALIVE = 0.25  # seconds between K lines while a request waits (well under any call deadline)
VERBS = ("AUTH", "PING", "STATUS", "START", "STOP", "RESTART", "HUNG", "FAILED", "UTILITY", "REGISTER", "BYE",
         "SHUTDOWN")
OUTCOMES = ("restarting", "already", "limit", "off", "never", "stale", "down")


class ProtocolError(ValueError):
    """A malformed request; the text is sent back after `ERR `."""


# namedtuples, not dataclasses: `import dataclasses` costs start-msg ~5 ms before it launches the watcher
class Request(namedtuple("_Request", "verb args")):
    """One request: VERB (upper case, one of VERBS) and its ARGS (a tuple of words)."""

    __slots__ = ()


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
    return (" ".join((verb, *(" ".join(str(a).split()) for a in args))) + "\n").encode("utf-8")


class Answer(namedtuple("_Answer", "outcome text")):
    """The watcher's answer to HUNG or FAILED: OUTCOME (one of OUTCOMES) and its TEXT."""

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> Answer:
        outcome, _, rest = text.partition(" ")
        if outcome not in OUTCOMES:
            return cls("restarting", text)  # a watcher that answers a bare OK has queued it
        return cls(outcome, rest)

    def format(self) -> str:
        return f"{self.outcome} {self.text}"
